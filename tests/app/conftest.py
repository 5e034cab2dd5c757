"""App fixtures: a real library on the tiny test model, and the main window over it.

Every window gets its own settings file and thumbnail cache in a temporary folder, and URL
opening (``QDesktopServices``) is captured instead of launching a viewer. Teardown closes the
window, which stops its workers, then closes the library.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from app.app_settings import settings_at
from app.main_window import MainWindow
from app.session import LibrarySession
from app.thumbnails import ThumbnailLoader

# The offscreen platform plugin has no window manager: it cannot pass on size hints (dock widgets
# ask), raise a window or grab the keyboard (completer popups ask). Facts of the test platform.
OFFSCREEN_NOISE = r"This plugin does not support (propagateSizeHints\(\)|raise\(\)|grabbing the keyboard)"

DEMO_COUNT = 28
DEMO_SIZE = (128, 96)
BATCH = 8


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.qt_log_ignore(OFFSCREEN_NOISE))


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
def make_window(qtbot, tmp_path):
    """Build a window over a library; closed (workers stopped) at teardown."""
    windows: list[MainWindow] = []

    def make(library, settings_name: str = "settings.ini") -> MainWindow:
        session = LibrarySession(
            library, index_options={"batch_size": BATCH, "workers": 2}, demo_count=12, demo_size=DEMO_SIZE
        )
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


@pytest.fixture
def window(make_window, library):
    return make_window(library)


def wait_indexed(qtbot, window, timeout: int = 60_000):
    """Wait until the session's indexing run (and its follow-ups) has finished."""
    qtbot.waitUntil(
        lambda: not window.session.is_indexing and not window.session.is_refreshing, timeout=timeout
    )


def small_image(path: Path, color=(20, 120, 220)) -> Path:
    Image.new("RGB", (64, 48), color).save(path, "JPEG")
    return path
