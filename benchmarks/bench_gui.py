"""GUI responsiveness: event-loop stalls while indexing and searching, and keystroke-to-results time.

    python benchmarks/bench_gui.py                 # both measurements
    python benchmarks/bench_gui.py latency --photos 1000
    python benchmarks/bench_gui.py keystroke --library-size 10000

latency: the real main window (offscreen) indexes a demo library of ``--photos`` photos (1024x768
JPEGs rendered once and cached under ``benchmarks/out``) while a query is typed into the search
bar every 400 ms and the grid is scrolled. A 5 ms repeating timer records the event loop's gaps;
a *stall* is a gap beyond the timer interval. Reported separately for the model load (the first
run imports torch and builds the model in a worker thread) and for the indexing proper.
Goal: no stall over 50 ms. The same probe on the idle window first gives the machine's own
baseline (a busy shared machine stalls an idle loop too).

keystroke: a library of ``--library-size`` small distinct images (noise textures, built and
indexed once, cached under ``benchmarks/out``). For each query the text minus its last letter
is put in the search bar, then the last key is pressed; the time is measured from the key press
to the end of the first paint of the grid showing that query's results (thumbnails arrive
afterwards; the time until every visible thumbnail is painted is reported too). Fresh queries
(phrase not cached) and repeated ones (cached phrase vector) are reported apart.
Goal: under 150 ms.

The model is the bundled starter model when its weights are installed, else a model of the same
architecture with random weights (the same compute; ``--model`` picks another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
OUT = HERE / "out"

TICK_MS = 5
BASELINE_S = 5.0
STALL_GOAL_MS = 50
KEYSTROKE_GOAL_MS = 150
QUERIES = (
    "a red car in the city at night",
    "two kites over a meadow",
    "a yellow balloon in the snow",
    "three boats at sunset",
    "a white house in the desert",
    "green trees on a beach",
    "a purple kite at night",
    "an orange car on the beach",
    "black houses in the city",
    "blue balloons over the desert",
    "one tree in the snow at sunset",
    "two cars in a meadow",
)


# ---------------------------------------------------------------------- setup


def _model_spec(requested: str | None) -> tuple[str, str]:
    """(spec, description) of the model to measure with."""
    if requested:
        return requested, requested
    from core.models import starter_weights_path

    if starter_weights_path().exists():
        return "starter", "starter (bundled weights)"
    return _random_starter(), "starter architecture, random weights"


def _random_starter() -> str:
    import torch

    from core.models import STARTER_ARCH, create_architecture, register_bundled_configs, save_checkpoint

    path = OUT / "random-starter.safetensors"
    if not path.exists():
        register_bundled_configs()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_architecture(STARTER_ARCH)
        OUT.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, path, STARTER_ARCH)
    return f"file:{path}"


def _demo_photos(count: int) -> Path:
    from trainer.demo_library import write_demo_library

    folder = OUT / f"gui-demo-{count}"
    t0 = time.perf_counter()
    write_demo_library(folder, count=count, seed=7, size=(1024, 768))
    elapsed = time.perf_counter() - t0
    if elapsed > 2:
        print(f"rendered the demo photos in {elapsed:.0f} s (cached in {folder})")
    return folder


def _noise_images(count: int) -> Path:
    """``count`` distinct small JPEGs: smooth colour noise, cheap to make and to decode."""
    import numpy as np
    from PIL import Image

    folder = OUT / f"gui-noise-{count}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((96, 72), Image.Resampling.BICUBIC)
        image.save(sub / f"N{i:05d}.jpg", quality=85)
    marker.touch()
    return folder


def _app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["bench_gui"])


def _window(library, work: Path, **session_options):
    from app.app_settings import settings_at
    from app.main_window import MainWindow
    from app.session import LibrarySession
    from app.thumbnails import ThumbnailLoader

    session = LibrarySession(library, **session_options)
    thumbnails = ThumbnailLoader(cache_dir=work / "thumbnails")
    window = MainWindow(session, settings_at(work / "settings.ini"), thumbnails)
    window.resize(1400, 900)
    window.show()
    return window


def _pump(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.001)
    return False


# ---------------------------------------------------------------------- latency


class LoopProbe:
    """Records the gaps between ticks of a repeating timer: the event loop's stalls."""

    def __init__(self, interval_ms: int = TICK_MS) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.gaps: list[tuple[float, float]] = []  # (time, gap seconds)
        self._last = None
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now, now - self._last))
        self._last = now

    def stalls_ms(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [max(0.0, (g - self.interval) * 1000) for t, g in self.gaps if start <= t <= end]


def _summary(stalls: list[float]) -> dict:
    if not stalls:
        return {"ticks": 0}
    ordered = sorted(stalls)
    return {
        "ticks": len(stalls),
        "max_ms": round(ordered[-1], 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "over_50ms": sum(s > STALL_GOAL_MS for s in stalls),
        "over_16ms": sum(s > 16 for s in stalls),
    }


class _Typist:
    """A user typing queries at 15 keys a second, pressing Enter, scrolling the grid, pausing."""

    KEY_S = 1 / 15
    PAUSE_S = 0.6

    def __init__(self, window, queries) -> None:
        self.window = window
        self.queries = 0
        self._texts = list(queries)
        self._text = ""
        self._pos = 0
        self._next = 0.0

    def step(self, now: float) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        if now < self._next:
            return
        edit = self.window.search_bar.edit
        if self._pos == 0:
            self._text = self._texts[self.queries % len(self._texts)]
            edit.clear()
        if self._pos < len(self._text):
            QTest.keyClick(edit, self._text[self._pos])
            self._pos += 1
            self._next = now + self.KEY_S
            return
        QTest.keyClick(edit, Qt.Key.Key_Return)
        bar = self.window.results_view.verticalScrollBar()
        bar.setValue(bar.value() + 150)
        self.queries += 1
        self._pos = 0
        self._next = now + self.PAUSE_S


def bench_latency(photos: int, model: str | None) -> dict:

    from core.library import Library

    spec, model_text = _model_spec(model)
    folder = _demo_photos(photos)
    app = _app()
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["LADDERLENS_CACHE"] = str(work / "cache")
    library = Library.open(work / "library", model=spec)
    window = _window(library, work)
    _pump(app, lambda: False, 0.5)

    probe = LoopProbe()
    # Baseline: the same window, idle, for a few seconds: what the machine itself costs the loop.
    probe.start()
    baseline_start = time.perf_counter()
    _pump(app, lambda: False, BASELINE_S)
    baseline = _summary(probe.stalls_ms(baseline_start, time.perf_counter()))
    probe.stop()
    probe.gaps.clear()
    marks: dict[str, float] = {}
    records = []
    window.session.index_progress.connect(
        lambda p: (marks.setdefault("first_progress", time.perf_counter()), records.append(p))
    )
    probe.start()
    marks["start"] = time.perf_counter()
    window.add_folder(str(folder))
    typist = _Typist(window, QUERIES)
    while window.session.is_indexing:
        app.processEvents()
        if "first_progress" in marks:
            typist.step(time.perf_counter())
        time.sleep(0.0005)
    marks["end"] = time.perf_counter()
    _pump(app, lambda: False, 0.3)
    probe.stop()
    status = library.status()
    first = marks.get("first_progress", marks["end"])
    result = {
        "photos": photos,
        "indexed": status.indexed,
        "model": model_text,
        "queries_typed": typist.queries,
        "model_load_s": round(first - marks["start"], 2),
        "index_s": round(marks["end"] - first, 2),
        "rate_photos_s": round(status.indexed / max(1e-6, marks["end"] - first), 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "idle_baseline": baseline,
        "model_load": _summary(probe.stalls_ms(marks["start"], first)),
        "indexing": _summary(probe.stalls_ms(first, marks["end"])),
        "worst_stalls_ms": sorted((round(s, 1) for s in probe.stalls_ms()), reverse=True)[:8],
    }
    window.close()
    library.close()
    return result


# ---------------------------------------------------------------------- keystroke


def _indexed_noise_library(size: int, spec: str) -> Path:
    from core.library import Library

    tag = hashlib.sha1(spec.encode()).hexdigest()[:8]
    root = OUT / f"gui-library-{size}-{tag}"
    folder = _noise_images(size)
    with Library.open(root, model=spec) as library:
        if library.status().indexed < size:
            library.add_folder(folder)
            t0 = time.perf_counter()
            report = library.index()
            done = report.embedded + report.reused
            print(f"indexed {done} photos in {time.perf_counter() - t0:.0f} s ({root})")
    return root


def bench_keystroke(size: int, model: str | None, repeats: int) -> dict:
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtTest import QTest

    from core.library import Library

    spec, model_text = _model_spec(model)
    root = _indexed_noise_library(size, spec)
    app = _app()
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["LADDERLENS_CACHE"] = str(work / "cache")
    library = Library.open(root, model=spec)
    window = _window(library, work)
    viewport = window.results_view.viewport()
    state: dict = {}

    class PaintWatch(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and state.get("armed") and "painted" not in state:
                # The paint runs right after this filter returns; a zero timer fires once it is done.
                QTimer.singleShot(0, lambda: state.setdefault("painted", time.perf_counter()))
            return False

    watch = PaintWatch()
    viewport.installEventFilter(watch)
    window.results_shown.connect(lambda _r: state.__setitem__("armed", True))

    # Warm up: load the model and the search index once (the first search of a session).
    t0 = time.perf_counter()
    window.search_bar.set_text("warm up")
    window.search_now()
    _pump(app, lambda: window.last_request is not None, 120)
    warmup = time.perf_counter() - t0
    _pump(app, lambda: False, 0.4)

    def one(query: str) -> tuple[float, float]:
        window.search_bar.edit.setText(query[:-1])  # setText does not count as typing
        _pump(app, lambda: not window.throttle.is_pending, 2)
        _pump(app, lambda: False, 0.35)  # the throttle is idle again: the next key searches at once
        state.clear()
        start = time.perf_counter()
        QTest.keyClick(window.search_bar.edit, query[-1])
        _pump(app, lambda: "painted" in state, 30)
        painted = state["painted"] - start
        window.thumbnails.wait_for_done(30_000)
        _pump(app, lambda: False, 0.05)
        return painted, time.perf_counter() - start

    fresh, thumbs = [], []
    for query in QUERIES:
        painted, with_thumbs = one(query)
        fresh.append(painted * 1000)
        thumbs.append(with_thumbs * 1000)
    cached = [one(q)[0] * 1000 for q in QUERIES[:repeats]]
    window.close()
    library.close()

    def stats(values: list[float]) -> dict:
        return {
            "n": len(values),
            "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(sorted(values)[int(0.9 * (len(values) - 1))], 1),
            "max_ms": round(max(values), 1),
        }

    return {
        "library_size": size,
        "model": model_text,
        "first_search_s": round(warmup, 2),
        "fresh_query": stats(fresh),
        "cached_query": stats(cached),
        "until_thumbnails_painted": stats(thumbs),
    }


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", nargs="?", choices=("all", "latency", "keystroke"), default="all")
    parser.add_argument("--photos", type=int, default=1000, help="photos indexed in the latency run")
    parser.add_argument("--library-size", type=int, default=10_000, help="photos in the keystroke run")
    parser.add_argument("--model", default=None, help="model spec (default: starter, else its random twin)")
    parser.add_argument("--repeats", type=int, default=6, help="cached queries in the keystroke run")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval (default: the app's)"
    )
    args = parser.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    else:
        from app.main import tune_interpreter

        tune_interpreter()
    OUT.mkdir(parents=True, exist_ok=True)

    results: dict = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "switch_interval_s": sys.getswitchinterval(),
    }
    if args.what in ("all", "latency"):
        results["latency"] = bench_latency(args.photos, args.model)
        print(json.dumps(results["latency"], indent=2))
    if args.what in ("all", "keystroke"):
        results["keystroke"] = bench_keystroke(args.library_size, args.model, args.repeats)
        print(json.dumps(results["keystroke"], indent=2))
    path = OUT / "bench_gui.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
