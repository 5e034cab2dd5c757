"""GUI responsiveness: event-loop stalls while indexing and searching, and keystroke-to-results time.

    python benchmarks/bench_gui.py                 # both measurements
    python benchmarks/bench_gui.py latency --photos 1000
    python benchmarks/bench_gui.py keystroke --library-size 10000
    python benchmarks/bench_gui.py passes --photos 1000

latency: the real main window (offscreen) indexes a demo library of ``--photos`` photos (1024x768
JPEGs rendered once and cached under ``benchmarks/out``) while a query is typed into the search
bar every 400 ms and the grid is scrolled. A 5 ms repeating timer records the event loop's gaps;
a *stall* is a gap beyond the timer interval. The loop runs as the app's does (it waits for
events; a 10 ms timer drives the typing). Reported separately for the start (loading the
model, walking the folder; until the first photos are embedded) and for the indexing proper.
Goal: no stall over 50 ms. The same probe on the idle window first gives the machine's own
baseline (a busy shared machine stalls an idle loop too).

keystroke: a library of ``--library-size`` small distinct images (noise textures, built and
indexed once, cached under ``benchmarks/out``). For each query the text minus its last letter
is put in the search bar, then the last key is pressed; the time is measured from the key press
to the end of the first paint of the grid showing that query's results (thumbnails arrive
afterwards; the time until every visible thumbnail is painted is reported too). Fresh queries
(phrase not cached) and repeated ones (cached phrase vector) are reported apart.
Goal: under 150 ms.

passes: no indexing; for each of 24 queries typed into the window on an indexed demo library, the
GUI thread's CPU time in the longest single event it handled until the page and its thumbnails
were painted (each event timed through ``QApplication.notify``). This is the app's own share of
a stall: what a busy machine can only stretch.

The model is the bundled starter model when its weights are installed, else a model of the same
architecture with random weights (the same compute; ``--model`` picks another).

Before and after, side by side (the machine is shared and its load drifts):

    python benchmarks/bench_gui.py ab --baseline REV --rounds 3            # latency
    python benchmarks/bench_gui.py ab --baseline REV --rounds 3 --measure keystroke

runs the measurement in fresh processes, alternating the ``app`` package of git revision REV
(``--app-from REV``: core and the benchmark stay the current ones) with the current one, in the
order ABBA..., and pools the rounds of each. ``--watchdog`` explains late ticks: a thread samples
every thread's Python stack every 3 ms, and each tick later than 30 ms is reported with what the
GUI thread and the others were running meanwhile.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
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
if "--app-from" in sys.argv:  # the app package of another revision (exported by `ab`), before ROOT
    sys.path.insert(0, sys.argv[sys.argv.index("--app-from") + 1])
OUT = HERE / "out"

TICK_MS = 5
BASELINE_S = 5.0
STALL_GOAL_MS = 50
WATCH_MS = 30  # late ticks beyond this are explained by --watchdog
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


class EventTimes:
    """Times every event the GUI thread handles, through ``QApplication.notify`` (which adds a
    little to each): wall-clock start and end and the thread's CPU time of each outermost event."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, float, str, int]] = []  # (start, end, cpu ms, receiver, type)
        self._depth = 0

    def application(self):
        """A new ``QApplication`` whose events are recorded here."""
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is not None:
            raise SystemExit("timing events needs a process of its own: run this measurement alone")
        times = self

        class TimedApp(QApplication):
            def notify(self, receiver, event):
                times._depth += 1
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    return super().notify(receiver, event)
                finally:
                    times._depth -= 1
                    if times._depth == 0:
                        times.events.append(
                            (
                                start,
                                time.perf_counter(),
                                (time.thread_time() - cpu) * 1000,
                                type(receiver).__name__,
                                int(event.type().value),
                            )
                        )

        return TimedApp(["bench_gui"])

    def cpu_ms(self) -> list[float]:
        return [e[2] for e in self.events]

    def within(self, start: float, end: float, top: int = 6) -> dict:
        """The events that overlapped ``[start, end]``: how many, their CPU time, the longest ones."""
        from PySide6.QtCore import QEvent

        inside = [e for e in self.events if e[1] >= start and e[0] <= end]
        inside.sort(key=lambda e: -e[2])

        def name(kind: int) -> str:
            try:
                return QEvent.Type(kind).name
            except ValueError:
                return str(kind)

        return {
            "events": len(inside),
            "events_cpu_ms": round(sum(e[2] for e in inside), 1),
            "longest_events": [
                f"{name(kind)} -> {receiver}: {cpu:.1f} ms CPU, {1000 * (b - a):.1f} ms wall"
                for a, b, cpu, receiver, kind in inside[:top]
            ],
        }


def _window(library, work: Path, **session_options):
    """The main window on ``library``, opened as ``app.main.run`` opens it (the model runtime is
    imported first, where the app has that step)."""
    from app import main as app_main
    from app.app_settings import settings_at
    from app.main_window import MainWindow
    from app.session import LibrarySession
    from app.thumbnails import ThumbnailLoader

    if hasattr(app_main, "load_runtime"):
        app_main.load_runtime()
    session = LibrarySession(library, **session_options)
    thumbnails = ThumbnailLoader(cache_dir=work / "thumbnails")
    window = MainWindow(session, settings_at(work / "settings.ini"), thumbnails)
    window.resize(1400, 900)
    window.show()
    return window


def _all_but_last_key(app, window, query: str) -> None:
    """Put ``query`` less its last letter in the search bar and wait until the next key press
    searches at once (setText does not count as typing; the throttle is idle again)."""
    window.search_bar.edit.setText(query[:-1])
    _pump(app, lambda: not window.throttle.is_pending, 2)
    _pump(app, lambda: False, 0.35)


def _run_loop(seconds: float, step=None, every_ms: int = 10) -> None:
    """Run the event loop as the app runs it (waiting for events, not polling) for ``seconds``,
    or until ``step`` (called every ``every_ms``) returns False."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    loop = QEventLoop()
    timers = []
    if seconds != float("inf"):
        end = QTimer()
        end.setSingleShot(True)
        end.setTimerType(Qt.TimerType.PreciseTimer)
        end.timeout.connect(loop.quit)
        end.start(round(seconds * 1000))
        timers.append(end)
    if step is not None:
        ticker = QTimer()
        ticker.setInterval(every_ms)
        ticker.timeout.connect(lambda: step() or loop.quit())
        ticker.start()
        timers.append(ticker)
    loop.exec()
    for timer in timers:
        timer.stop()


def _pump(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.001)
    return False


# ---------------------------------------------------------------------- latency


_OUTSIDE_PROBE = """
import os, sys, threading, time
pid = int(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
gaps, samples, seen, last = [], [], {}, time.perf_counter()
while not stop.wait(0.002):
    now = time.perf_counter()
    if now - last > 0.012:
        gaps.append((last, now))
    last = now
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu, wait, _ = f.read().split()
            samples.append((now, int(tid), int(cpu), int(wait)))
            if tid not in seen:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    seen[tid] = (f.read().strip().replace(" ", "_"), fields[16])  # name, nice
    except OSError:
        pass
out = [f"T {tid} {name} {nice}" for tid, (name, nice) in seen.items()]
out += [f"G {a} {b}" for a, b in gaps]
out += [f"S {t} {tid} {c} {w}" for t, tid, c, w in samples]
print("\\n".join(out))
"""


def _stack(frame, depth: int = 8) -> tuple[str, ...]:
    """The innermost ``depth`` frames of a stack, innermost first, as 'file:line function'."""
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(out)


class StallWatchdog:
    """Samples the Python stack of every thread every few milliseconds, from a thread of its own.

    The GUI thread's late ticks are then explained by the samples taken while it was late: what the
    GUI thread itself was running (a slot of the app, or waiting in the event loop for the
    interpreter lock), and what the other threads were running. A sampler that could not run for a
    while (a gap between its samples) was kept from the interpreter lock too: the samples on both
    sides of the gap name the thread that held it.
    """

    def __init__(self, gui_ident: int, period_s: float = 0.003) -> None:
        import threading
        from collections import deque

        self.gui_ident = gui_ident
        self.period_s = period_s
        self.samples: deque = deque(maxlen=200_000)  # (time, {thread name: stack})
        self.machine_gaps: list[tuple[float, float]] = []  # (start, end) of the outside probe's gaps
        self._stop = threading.Event()
        self._names: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, name="stall-watchdog", daemon=True)
        self._outside = None

    def start(self) -> None:
        import subprocess

        # A process of its own ticking every 2 ms: its gaps are the machine's (other programs, the
        # scheduler), not this process's interpreter lock. The same clock (CLOCK_MONOTONIC on Linux).
        # It also reads every thread's scheduler statistics (CPU time, time waiting for a CPU), which
        # tell a thread that held the interpreter lock while the scheduler left it waiting.
        self._outside = subprocess.Popen(
            [sys.executable, "-c", _OUTSIDE_PROBE, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.period_s > 0:
            self._thread.start()

    def stop(self) -> None:
        import threading

        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.tid_names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        self.tid_names[os.getpid()] = "GUI"
        self.tid_nice: dict[str, int] = {}
        if self._outside is not None:
            out, _ = self._outside.communicate("stop\n", timeout=60)
            self.sched = {}
            for line in out.splitlines():
                kind, *fields = line.split()
                if kind == "T":  # a thread: its OS name and nice value
                    tid, name, nice = int(fields[0]), fields[1], int(fields[2])
                    self.tid_names.setdefault(tid, f"{name}/{tid}")
                    self.tid_nice[self.tid_names[tid]] = nice
                elif kind == "G":  # the outside probe's own gap
                    self.machine_gaps.append((float(fields[0]), float(fields[1])))
                elif kind == "S":  # a thread's scheduler counters
                    t, tid, cpu, wait = float(fields[0]), int(fields[1]), int(fields[2]), int(fields[3])
                    self.sched.setdefault(tid, []).append((t, cpu, wait))

    def scheduler(self, start: float, end: float) -> dict[str, tuple[float, float]]:
        """Per thread: (ms on a CPU, ms runnable but waiting for one) within ``[start, end]``."""
        import bisect

        out = {}
        for tid, rows in getattr(self, "sched", {}).items():
            times = [r[0] for r in rows]
            i, j = bisect.bisect_left(times, start) - 1, bisect.bisect_right(times, end)
            if i < 0 or j >= len(rows):
                continue
            cpu = (rows[j][1] - rows[i][1]) / 1e6
            wait = (rows[j][2] - rows[i][2]) / 1e6
            if cpu >= 1 or wait >= 1:
                out[self.tid_names.get(tid, f"tid {tid}")] = (round(cpu, 1), round(wait, 1))
        return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))

    def machine_share(self, start: float, end: float) -> float:
        """The part of ``[start, end]`` during which the outside probe was stalled too (0..1)."""
        covered = sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.machine_gaps)
        return covered / max(end - start, 1e-9)

    def _run(self) -> None:
        import threading

        me = threading.get_ident()
        while not self._stop.wait(self.period_s):
            now = time.perf_counter()
            frames = sys._current_frames()
            if len(self._names) != len(frames):
                self._names = {t.ident: t.name for t in threading.enumerate()}
            snap = {}
            for ident, frame in frames.items():
                if ident == me:
                    continue
                name = "GUI" if ident == self.gui_ident else self._names.get(ident, f"pool-{ident % 10_000}")
                snap[name] = _stack(frame)
            self.samples.append((now, snap))

    def explain(self, start: float, end: float) -> dict:
        """What the threads ran between ``start`` and ``end`` (a late tick), from the samples."""
        inside = [(t, snap) for t, snap in self.samples if start <= t <= end + self.period_s]
        times = [t for t, _ in inside]
        gaps = [b - a for a, b in zip([start, *times], [*times, end], strict=True)]
        longest = max(gaps) if gaps else end - start
        threads: dict[str, dict[tuple[str, ...], int]] = {}
        for _t, snap in inside:
            for name, stack in snap.items():
                top = stack[:3]
                threads.setdefault(name, {})
                threads[name][top] = threads[name].get(top, 0) + 1
        around = {}
        if longest > 4 * self.period_s:  # the sampler itself was kept out: who ran before and after
            near = [(t, snap) for t, snap in self.samples if start - 0.05 <= t <= end + 0.05]
            pairs = list(itertools.pairwise(near))
            if pairs:
                a, b = max(pairs, key=lambda ab: ab[1][0] - ab[0][0])
                around = {
                    "gap_ms": round(1000 * (b[0] - a[0]), 1),
                    "before": {n: " <- ".join(st[:4]) for n, st in a[1].items()},
                    "after": {n: " <- ".join(st[:4]) for n, st in b[1].items()},
                }
        return {
            "machine_stalled_share": round(self.machine_share(start, end), 2),
            "cpu_and_wait_ms": self.scheduler(start, end),
            "samples": len(inside),
            "longest_sampler_gap_ms": round(1000 * longest, 1),
            "around_longest_gap": around,
            "threads": {
                name: [(" <- ".join(top), n) for top, n in sorted(c.items(), key=lambda x: -x[1])[:3]]
                for name, c in threads.items()
            },
        }


class GcPauses:
    """Records every garbage collection: its generation and how long it held the interpreter."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (start, generation, seconds)
        self._start = 0.0

    def __enter__(self) -> GcPauses:
        import gc

        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc) -> None:
        import gc

        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
        else:
            self.pauses.append((self._start, int(info["generation"]), now - self._start))

    def summary(self, start: float, end: float) -> dict:
        out = {}
        for gen in (0, 1, 2):
            ms = [1000 * d for t, g, d in self.pauses if g == gen and start <= t <= end]
            if ms:
                out[f"gen{gen}"] = {"n": len(ms), "max_ms": round(max(ms), 1), "total_ms": round(sum(ms), 1)}
        return out


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


def _peak_rss_mib() -> dict[str, int]:
    """Peak resident memory of this process and of each child it started (the indexing process)."""
    import resource

    out = {"app": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[1] != me:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[f"child {entry.name}"] = int(line.split()[1]) // 1024
    return out


def _schedstat() -> tuple[int, int]:
    """The calling thread's (ns on a CPU, ns runnable but waiting for one), from the scheduler;
    (0, 0) where the system does not tell."""
    try:
        on_cpu, waiting, _ = Path("/proc/thread-self/schedstat").read_text().split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return 0, 0


def _sched_share(sched: dict[str, tuple[int, int]], seconds: float) -> dict:
    """The GUI thread's CPU time and its time waiting for a CPU, in ms per second of indexing."""
    if "start" not in sched or seconds <= 0:
        return {}
    (cpu0, wait0), (cpu1, wait1) = sched["start"], sched["end"]
    return {
        "cpu_ms_per_s": round((cpu1 - cpu0) / 1e6 / seconds, 1),
        "waiting_for_cpu_ms_per_s": round((wait1 - wait0) / 1e6 / seconds, 1),
    }


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
        "over_30ms": sum(s > 30 for s in stalls),
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
        if now < self._next:  # (before any import: this runs in the GUI thread's every turn)
            return
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

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


def bench_latency(
    photos: int,
    model: str | None,
    watchdog: bool = False,
    profile: Path | None = None,
    stacks: bool = True,
    events: bool = False,
) -> dict:

    from core.library import Library

    spec, model_text = _model_spec(model)
    folder = _demo_photos(photos)
    timed = EventTimes() if events else None
    app = timed.application() if timed is not None else _app()
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["LADDERLENS_CACHE"] = str(work / "cache")
    library = Library.open(work / "library", model=spec)
    window = _window(library, work)
    _pump(app, lambda: False, 0.5)

    # The window asks before the bundled starter reads a folder other than the demo library. These
    # are scene-world photos (what the starter was trained on): answered "Keep the starter model",
    # as a user would, before the measured run (the question's dialog is not what is measured).
    window.model_box.keep_starter = True
    probe = LoopProbe()
    # Baseline: the same window, idle, for a few seconds: what the machine itself costs the loop.
    probe.start()
    baseline_start = time.perf_counter()
    _run_loop(BASELINE_S)
    baseline = _summary(probe.stalls_ms(baseline_start, time.perf_counter()))
    probe.stop()
    probe.gaps.clear()
    marks: dict[str, float] = {}
    records = []
    window.session.index_progress.connect(
        # The indexing proper starts with the first photos embedded (the model is loaded by then).
        lambda p: (
            p.phase in ("embed", "done") and marks.setdefault("first_progress", time.perf_counter()),
            records.append(p),
        )
    )
    dog = None
    if watchdog:
        import threading

        dog = StallWatchdog(threading.get_ident(), period_s=0.003 if stacks else 0.0)
        dog.start()
    gc_pauses = GcPauses().__enter__()
    probe.start()
    marks["start"] = time.perf_counter()
    window.add_folder(str(folder))
    typist = _Typist(window, QUERIES)
    profiler = None
    sched: dict[str, tuple[int, int]] = {}

    def step() -> bool:  # in the event loop, every few milliseconds: False ends the run
        if not window.session.is_indexing:
            return False
        nonlocal profiler
        if "first_progress" in marks:
            if not sched:
                sched["start"] = _schedstat()
            if profile is not None and profiler is None:
                import cProfile

                profiler = cProfile.Profile()  # the GUI thread's Python calls (and the Qt code they enter)
                profiler.enable()
            typist.step(time.perf_counter())
        return True

    _run_loop(float("inf"), step)
    marks["end"] = time.perf_counter()
    sched["end"] = _schedstat()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    _run_loop(0.3)
    probe.stop()
    gc_pauses.__exit__()
    peak_rss = _peak_rss_mib()
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
        "peak_rss_mib": peak_rss,
        "idle_baseline": baseline,
        "model_load": _summary(probe.stalls_ms(marks["start"], first)),
        "indexing": _summary(probe.stalls_ms(first, marks["end"])),
        "gui_thread_while_indexing": _sched_share(sched, marks["end"] - first),
        "worst_stalls_ms": sorted((round(s, 1) for s in probe.stalls_ms()), reverse=True)[:8],
        "gc_model_load": gc_pauses.summary(marks["start"], first),
        "gc_indexing": gc_pauses.summary(first, marks["end"]),
        "_indexing_stalls_ms": [round(s, 2) for s in probe.stalls_ms(first, marks["end"])],
    }
    if dog is not None:
        dog.stop()
        result["thread_nice"] = dog.tid_nice
    if dog is not None or timed is not None:
        late = [(t - gap, t, gap) for t, gap in probe.gaps if (gap - probe.interval) * 1000 > WATCH_MS]
        late.sort(key=lambda x: -x[2])
        result["late_ticks_explained"] = [
            {
                "stall_ms": round((gap - probe.interval) * 1000, 1),
                "at_s": round(a - marks["start"], 2),
                "gc_ms": [round(1000 * d, 1) for t, _, d in gc_pauses.pauses if a - d <= t <= b and d > 5e-3],
            }
            | (dog.explain(a, b) if dog is not None else {})
            | (timed.within(a, b) if timed is not None else {})
            for a, b, gap in late[:12]
        ]
    window.close()
    library.close()
    if not status.indexed:
        raise SystemExit(f"latency: the window indexed none of the {photos} photos; nothing was measured")
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
        _all_but_last_key(app, window, query)
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
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "fresh_query": stats(fresh),
        "cached_query": stats(cached),
        "until_thumbnails_painted": stats(thumbs),
        "_raw_ms": {"fresh_query": fresh, "cached_query": cached, "until_thumbnails_painted": thumbs},
    }


# ---------------------------------------------------------------------- passes


def bench_passes(photos: int, model: str | None, rounds: int = 2) -> dict:
    """The GUI thread's CPU time in the longest single event (one turn of the event loop) per query.

    No indexing runs: this is the app's own work for a new page of results (layout, painting, the
    tier inspector, thumbnails arriving), the part of a stall that no scheduler can take away.
    Every event is timed through ``QApplication.notify`` (which adds a little to each).
    """
    from PySide6.QtTest import QTest

    from core.library import Library

    timed = EventTimes()
    app = timed.application()
    spec, model_text = _model_spec(model)
    folder = _demo_photos(photos)
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["LADDERLENS_CACHE"] = str(work / "cache")
    library = Library.open(work / "library", model=spec)
    library.add_folder(folder)
    library.index()
    window = _window(library, work)
    window.search_bar.set_text("warm up")
    window.search_now()
    _pump(app, lambda: window.last_request is not None, 120)
    _pump(app, lambda: False, 0.5)
    longest = []
    for _ in range(rounds):
        for query in QUERIES:
            _all_but_last_key(app, window, query)
            seq = window.last_request.seq if window.last_request else 0
            timed.events.clear()
            QTest.keyClick(window.search_bar.edit, query[-1])
            _pump(app, lambda s=seq: window.last_request is not None and window.last_request.seq != s, 30)
            _pump(app, lambda: False, 0.05)
            window.thumbnails.wait_for_done(30_000)
            _pump(app, lambda: False, 0.1)
            longest.append(max(timed.cpu_ms()))
    window.close()
    library.close()
    return {
        "photos": photos,
        "model": model_text,
        "queries": len(longest),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "longest_event_cpu_ms": {
            "median": round(statistics.median(longest), 1),
            "p90": round(sorted(longest)[int(0.9 * (len(longest) - 1))], 1),
            "max": round(max(longest), 1),
        },
        "_raw_ms": [round(v, 2) for v in longest],
    }


# ---------------------------------------------------------------------- before / after


def _export_app(rev: str) -> Path:
    """The ``app`` package of git revision ``rev``, exported under ``benchmarks/out``; the folder
    to put first on ``sys.path``."""
    import subprocess

    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = OUT / f"app-{sha}"
    if not (dest / "app" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "app"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _pooled_latency(runs: list[dict]) -> dict:
    stalls = [s for r in runs for s in r["_indexing_stalls_ms"]]
    summary = _summary(stalls)
    summary["per_run_over_50ms"] = [r["indexing"]["over_50ms"] for r in runs]
    summary["per_run_over_30ms"] = [r["indexing"].get("over_30ms") for r in runs]
    summary["per_run_max_ms"] = [r["indexing"]["max_ms"] for r in runs]
    summary["per_run_p99_ms"] = [r["indexing"]["p99_ms"] for r in runs]
    shares = [r.get("gui_thread_while_indexing") or {} for r in runs]
    summary["gui_cpu_ms_per_s"] = [s.get("cpu_ms_per_s") for s in shares]
    summary["gui_waiting_for_cpu_ms_per_s"] = [s.get("waiting_for_cpu_ms_per_s") for s in shares]
    summary["load_average_1min"] = [r["load_average"][0] for r in runs]
    summary["rate_photos_s"] = [r["rate_photos_s"] for r in runs]
    summary["model_load_max_ms"] = [r["model_load"].get("max_ms") for r in runs]
    summary["idle_max_ms"] = [r["idle_baseline"].get("max_ms") for r in runs]
    return summary


def _pooled_keystroke(runs: list[dict]) -> dict:
    out = {}
    for key in ("fresh_query", "cached_query", "until_thumbnails_painted"):
        values = sorted(v for r in runs for v in r["_raw_ms"][key])
        out[key] = {
            "n": len(values),
            "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(values[int(0.9 * (len(values) - 1))], 1),
            "max_ms": round(values[-1], 1),
        }
    out["load_average_1min"] = [r["load_average"][0] for r in runs]
    return out


def _pooled_passes(runs: list[dict]) -> dict:
    values = sorted(v for r in runs for v in r["_raw_ms"])
    return {
        "queries": len(values),
        "longest_event_cpu_ms": {
            "median": round(statistics.median(values), 1),
            "p90": round(values[int(0.9 * (len(values) - 1))], 1),
            "max": round(values[-1], 1),
        },
        "load_average_1min": [r["load_average"][0] for r in runs],
    }


def bench_ab(baseline: str, rounds: int, measure: str, extra: list[str]) -> dict:
    """Alternate the app of ``baseline`` (A) and the current one (B) in fresh processes, ABBA..."""
    import subprocess

    app_dir = _export_app(baseline)
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    order = []
    for r in range(rounds):
        order += ["baseline", "current"] if r % 2 == 0 else ["current", "baseline"]
    for i, variant in enumerate(order):
        out = OUT / f"bench_gui_ab_{i}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), measure, "--json", str(out), *extra]
        if variant == "baseline":
            cmd += ["--app-from", str(app_dir)]
        print(f"[{i + 1}/{len(order)}] {variant} ({measure})", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        runs[variant].append(json.loads(out.read_text(encoding="utf-8"))[measure])
    pooled = {"latency": _pooled_latency, "keystroke": _pooled_keystroke, "passes": _pooled_passes}[measure]
    return {
        "baseline_rev": baseline,
        "rounds": rounds,
        "order": order,
        "baseline": pooled(runs["baseline"]),
        "current": pooled(runs["current"]),
    }


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what", nargs="?", choices=("all", "latency", "keystroke", "passes", "ab"), default="all"
    )
    parser.add_argument("--baseline", default="HEAD", help="ab: git revision of the app to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="ab: runs of each variant")
    parser.add_argument(
        "--measure", choices=("latency", "keystroke", "passes"), default="latency", help="ab: what"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--app-from", default=None, help=argparse.SUPPRESS)  # read at import time
    parser.add_argument("--photos", type=int, default=1000, help="photos indexed in the latency run")
    parser.add_argument("--library-size", type=int, default=10_000, help="photos in the keystroke run")
    parser.add_argument("--model", default=None, help="model spec (default: starter, else its random twin)")
    parser.add_argument("--repeats", type=int, default=6, help="cached queries in the keystroke run")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval (default: the app's)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="latency: write the GUI thread's cProfile stats (while indexing) to this file",
    )
    parser.add_argument(
        "--no-stacks",
        action="store_true",
        help="with --watchdog: only the scheduler counters (read from another process), no stack "
        "sampling thread competing for the interpreter lock",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help=f"latency: time every event of the GUI thread; list those of each late tick (> {WATCH_MS} ms)",
    )
    parser.add_argument(
        "--watchdog",
        action="store_true",
        help=f"sample every thread's stack and explain late ticks (> {WATCH_MS} ms); adds some load",
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
        "app": str(Path(sys.modules["app"].__file__).parent) if "app" in sys.modules else "",
    }
    if args.what == "ab":
        extra = ["--photos", str(args.photos), "--library-size", str(args.library_size)]
        if args.model:
            extra += ["--model", args.model]
        results["ab"] = bench_ab(args.baseline, args.rounds, args.measure, extra)
        print(json.dumps(results["ab"], indent=2))
    if args.what in ("all", "latency"):
        results["latency"] = bench_latency(
            args.photos,
            args.model,
            args.watchdog,
            args.profile,
            stacks=not args.no_stacks,
            events=args.events,
        )
        print(json.dumps({k: v for k, v in results["latency"].items() if not k.startswith("_")}, indent=2))
    if args.what == "passes":
        results["passes"] = bench_passes(args.photos, args.model)
        print(json.dumps({k: v for k, v in results["passes"].items() if not k.startswith("_")}, indent=2))
    if args.what in ("all", "keystroke"):
        results["keystroke"] = bench_keystroke(args.library_size, args.model, args.repeats)
        print(json.dumps({k: v for k, v in results["keystroke"].items() if not k.startswith("_")}, indent=2))
    text = json.dumps(results, indent=2)
    for path in (OUT / "bench_gui.json", args.json):
        if path is not None:
            path.write_text(text, encoding="utf-8")
    print(f"written {args.json or OUT / 'bench_gui.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
