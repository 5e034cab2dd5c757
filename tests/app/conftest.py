"""App fixtures: a real library on the tiny test model, and the main window over it.

Every window gets its own settings file and thumbnail cache in a temporary folder, and URL
opening (``QDesktopServices``) is captured instead of launching a viewer. Teardown closes the
window, which stops its workers, then closes the library.

Every app test is checked for work left behind: a test whose fixtures end with a Python thread
it started still alive, a thread-pool thread still running Python code, or a busy app thread pool
fails (its teardown errors, listing the threads and where they are).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from app.app_settings import settings_at
from app.main_window import MainWindow
from app.photo_actions import release_in_process_clipboard
from app.session import LibrarySession
from app.thumbnails import ThumbnailLoader
from app.workers import app_thread_pools, busy_pools

# The offscreen platform plugin has no window manager: it cannot pass on size hints (dock widgets
# ask), raise a window or grab the keyboard (completer popups ask). Facts of the test platform.
OFFSCREEN_NOISE = r"This plugin does not support (propagateSizeHints\(\)|raise\(\)|grabbing the keyboard)"

DEMO_COUNT = 28
DEMO_SIZE = (128, 96)
BATCH = 8


LEFTOVER_GRACE_S = 1.0  # threads told to stop get this long to be gone before a test fails for them


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.qt_log_ignore(OFFSCREEN_NOISE))


# ---------------------------------------------------------------------- work left behind


def running_threads() -> dict[int, str]:
    """Threads other than the main one that are alive (Python threads) or running Python code now
    (thread-pool threads, which Python only knows while they run Python); ident -> name."""
    main = threading.main_thread().ident
    known = {t.ident: t for t in threading.enumerate()}
    found = {
        ident: t.name
        for ident, t in known.items()
        if ident != main and not isinstance(t, threading._DummyThread) and t.is_alive()
    }
    for ident in sys._current_frames():
        if ident != main and ident not in found:
            thread = known.get(ident)
            found[ident] = thread.name if thread is not None else f"thread {ident}"
    return found


def leftovers(before: dict[int, str], grace_s: float = LEFTOVER_GRACE_S) -> list[str]:
    """What is still at work that was not at work in ``before``, after up to ``grace_s`` to finish."""
    deadline = time.monotonic() + grace_s
    while True:
        threads = {i: n for i, n in running_threads().items() if i not in before}
        pools = busy_pools()
        if (not threads and not pools) or time.monotonic() >= deadline:
            break
        threading.Event().wait(0.02)
    frames = sys._current_frames()
    found = []
    for ident, name in threads.items():
        frame = frames.get(ident)
        where = "".join(traceback.format_stack(frame, limit=4)) if frame is not None else "  (no frame)\n"
        found.append(f"thread {name!r} still running:\n{where}")
    found.extend(f"{count} busy thread(s) in the {name} pool" for name, count in pools)
    return found


def _stop_leftovers(before: dict[int, str]) -> None:
    """Give whatever was left behind time to end, so the next test starts clean."""
    for thread in threading.enumerate():
        foreign = isinstance(thread, threading._DummyThread)
        if thread.ident not in before and thread is not threading.main_thread() and not foreign:
            thread.join(30)
    for pool in app_thread_pools():
        with contextlib.suppress(RuntimeError):  # deleted meanwhile
            pool.waitForDone(30_000)


@pytest.fixture(autouse=True)
def _nothing_left_running():
    """Fail a test that leaves threads or busy thread pools behind once its fixtures are torn down.

    Autouse fixtures are set up first, so this teardown runs after every other fixture's.
    """
    before = running_threads()
    yield
    found = leftovers(before)
    if found:
        _stop_leftovers(before)
        pytest.fail("work left running after the test:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _clipboard_released():
    """The app's own exit step, once the tests are done: the offscreen platform's clipboard would
    otherwise free copied mime data after Python has finished, and the test process would crash."""
    yield
    release_in_process_clipboard()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Demo photos (small), two byte-identical copies of one of them, and two unreadable files."""
    from trainer.demo_library import write_demo_library

    root = tmp_path_factory.mktemp("photos")
    write_demo_library(root, count=DEMO_COUNT, seed=11, size=DEMO_SIZE)
    first = sorted(root.rglob("*.jpg"))[0]
    shutil.copyfile(first, root / "copy-a.jpg")
    shutil.copyfile(first, root / "copy-b.jpg")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "empty.jpg").write_bytes(b"")
    return root


def photo_count(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.jpg"))


@pytest.fixture
def photos(photo_dir, tmp_path) -> Path:
    """A private copy of :func:`photo_dir` (tests may change it)."""
    dest = tmp_path / "photos"
    shutil.copytree(photo_dir, dest)
    return dest


@pytest.fixture
def model_spec(tiny_checkpoint) -> str:
    return f"file:{tiny_checkpoint}"


@pytest.fixture
def library(tmp_path, model_spec):
    from core.library import Library

    lib = Library.open(tmp_path / "library", model=model_spec)
    yield lib
    lib.close()


class UrlRecorder(QObject):
    """Receives the URLs the app asks the desktop to open."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def opened_urls(qtbot):
    recorder = UrlRecorder()
    QDesktopServices.setUrlHandler("file", recorder, "open")
    yield recorder.urls
    QDesktopServices.unsetUrlHandler("file")


@pytest.fixture
def make_window(qtbot, tmp_path, library):
    """Build a window over a library; at teardown each window is closed and its session's and
    thumbnail loader's workers are waited for, before ``library`` (a dependency) is closed."""
    windows: list[MainWindow] = []

    def make(library, settings_name: str = "settings.ini", separate_process: bool = False) -> MainWindow:
        # Indexing in a separate process (the app's default) costs each session a second start of
        # torch and the model; the flows that index through it ask for it.
        options = {"batch_size": BATCH, "workers": 2, "separate_process": separate_process}
        session = LibrarySession(library, index_options=options, demo_count=12, demo_size=DEMO_SIZE)
        thumbnails = ThumbnailLoader(cache_dir=tmp_path / "thumbnails")
        window = MainWindow(session, settings_at(tmp_path / settings_name), thumbnails)
        qtbot.addWidget(window)
        window.resize(1200, 800)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        qtbot.waitUntil(lambda: not window.session.is_refreshing, timeout=30_000)  # the first read
        return window

    yield make
    for window in windows:
        window.close()
        assert window.session.is_closed
        assert window.session.close(30_000), "the session's workers did not stop"
        assert window.thumbnails.shutdown(30_000), "thumbnails were still being made"


@pytest.fixture
def window(make_window, library):
    return make_window(library)


@pytest.fixture
def app_window(make_window, library):
    """A window indexing as the app does by default: photos decoded and embedded in a child process."""
    return make_window(library, separate_process=True)


def wait_indexed(qtbot, window, timeout: int = 60_000):
    """Wait until the session's indexing run (and its follow-ups) has finished."""
    qtbot.waitUntil(
        lambda: not window.session.is_indexing and not window.session.is_refreshing, timeout=timeout
    )


def small_image(path: Path, color=(20, 120, 220)) -> Path:
    Image.new("RGB", (64, 48), color).save(path, "JPEG")
    return path


class Gate:
    """Holds an indexing run after its first progress record, inside the worker's ``next()`` call
    (past its cancellation check), until :meth:`release`."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.opened = threading.Event()

    def wait_held(self) -> None:
        assert self.held.wait(30)

    def release(self) -> None:
        self.opened.set()


def gate_indexing(monkeypatch, library) -> Gate:
    gate = Gate()
    real = library.iter_index

    def gated(*args, **kwargs):
        run = real(*args, **kwargs)
        first = True
        try:
            while True:
                record = next(run)
                yield record
                if first:
                    first = False
                    gate.held.set()
                    assert gate.opened.wait(30)
        except StopIteration as stop:
            return stop.value
        finally:
            run.close()

    monkeypatch.setattr(library, "iter_index", gated)
    return gate
