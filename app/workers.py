"""Background work for the GUI: a generator (or a plain function) run by a ``QRunnable``.

The shape follows superqt's ``utils/_qthreading.py``: a worker emits ``started``, then ``yielded``
for every value its generator yields, then ``returned`` with its return value or ``errored`` with the
exception, and always ``finished`` last. Every ``yield`` is a cancellation point: :meth:`Worker.quit`
asks the worker to stop, and at its next ``yield`` the generator is closed (``GeneratorExit`` runs its
``finally`` blocks, so the library it works on stays consistent) and ``aborted`` is emitted instead
of ``returned``.

Workers never touch widgets. They emit plain data; the signals object lives in the GUI thread, so
connected slots run there (queued connections). :class:`WorkerPool` keeps a reference to every
worker until it has finished (a worker collected mid-run would take its signals with it), and not
longer.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

logger = logging.getLogger(__name__)

_POOLS: weakref.WeakSet[QThreadPool] = weakref.WeakSet()


def new_thread_pool(
    parent: QObject | None = None, max_threads: int | None = None, name: str = ""
) -> QThreadPool:
    """A ``QThreadPool`` for the app's background work, known to :func:`busy_pools`."""
    pool = QThreadPool(parent)
    pool.setObjectName(name)
    if max_threads is not None:
        pool.setMaxThreadCount(max_threads)
    _POOLS.add(pool)
    return pool


def app_thread_pools() -> list[QThreadPool]:
    """Qt's global thread pool and every pool made by :func:`new_thread_pool` that still exists."""
    return [QThreadPool.globalInstance(), *list(_POOLS)]


def busy_pools() -> list[tuple[str, int]]:
    """(object name, busy threads) of every app thread pool (and Qt's global one) still at work.

    Teardown checks use it: a window or session that was closed must leave none busy.
    """
    busy = []
    for pool in app_thread_pools():
        try:
            active = pool.activeThreadCount()
            name = pool.objectName() or "global QThreadPool"
        except RuntimeError:  # its C++ object is gone: so are its threads
            continue
        if active > 0:
            busy.append((name, active))
    return busy


class WorkerSignals(QObject):
    """The signals of one worker (a ``QRunnable`` cannot carry signals itself)."""

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()


class Worker(QRunnable):
    """Run ``func(*args, **kwargs)`` in a thread pool; a generator function is iterated to its end.

    Connect to :attr:`signals` before the worker is started. :meth:`quit` is safe from any thread.
    """

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.niceness = 0  # > 0: run at a lower CPU priority (see :func:`lower_thread_priority`)
        self.signals = WorkerSignals()
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._abort = threading.Event()
        self._done = threading.Event()
        self.name = getattr(func, "__name__", type(func).__name__)

    # Convenience aliases, so callers can write ``worker.yielded.connect(...)``.
    @property
    def started(self) -> Signal:
        return self.signals.started

    @property
    def yielded(self) -> Signal:
        return self.signals.yielded

    @property
    def returned(self) -> Signal:
        return self.signals.returned

    @property
    def errored(self) -> Signal:
        return self.signals.errored

    @property
    def aborted(self) -> Signal:
        return self.signals.aborted

    @property
    def finished(self) -> Signal:
        return self.signals.finished

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    @property
    def is_done(self) -> bool:
        """True once :meth:`run` has returned (or the worker was dropped before it ran)."""
        return self._done.is_set()

    def quit(self) -> None:
        """Ask the worker to stop at its next cancellation point (the next ``yield``)."""
        self._abort.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the worker has finished running; False on timeout."""
        return self._done.wait(timeout_s)

    def run(self) -> None:
        signals = self.signals
        restore = lower_thread_priority(self.niceness) if self.niceness > 0 else None
        try:
            signals.started.emit()
            if self._abort.is_set():
                signals.aborted.emit()
                return
            result = self._func(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                finished, result = self._drive(result)
                if not finished:
                    signals.aborted.emit()
                    return
            signals.returned.emit(result)
        except Exception as exc:  # every error reaches the GUI as data, never as a crash
            logger.debug("worker %s failed", self.name, exc_info=True)
            signals.errored.emit(exc)
        finally:
            if restore is not None:
                restore()
            signals.finished.emit()
            self._done.set()

    def _drive(self, gen: Generator[Any, Any, Any]) -> tuple[bool, Any]:
        """Iterate ``gen``; (True, return value) at its end, (False, None) when stopped at a yield."""
        try:
            while True:
                if self._abort.is_set():
                    return False, None
                try:
                    value = next(gen)
                except StopIteration as stop:
                    return True, stop.value
                self.signals.yielded.emit(value)
        finally:
            gen.close()


def lower_thread_priority(niceness: int) -> Callable[[], None] | None:
    """Run the calling thread ``niceness`` below the app's own CPU priority (Linux: per-thread nice).

    Threads it starts afterwards (decode threads, the model's compute threads) inherit the lower
    priority, so a long indexing run leaves the GUI thread the CPU when it needs it. The level is
    relative to the main thread's, not to the calling thread's: a pool thread whose priority could
    not be raised back after its last job (that needs privileges) is not lowered again and again.
    Returns a function restoring the previous priority, or None when nothing was changed (or
    per-thread priorities are not available).
    """
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)
        before = os.getpriority(os.PRIO_PROCESS, tid)
        if before >= target:
            return None
        os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:
        logger.debug("thread priority unchanged: %s", exc)
        return None

    def restore() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, before)
        except OSError as exc:  # raising a priority back may need privileges: the thread is pooled anyway
            logger.debug("thread priority not restored: %s", exc)

    return restore


class WorkerPool(QObject):
    """A thread pool that owns its workers until they finish, and can stop them all."""

    def __init__(
        self, max_threads: int | None = None, parent: QObject | None = None, *, name: str = "workers"
    ) -> None:
        super().__init__(parent)
        self._pool = new_thread_pool(self, max_threads, name)
        self._workers: set[Worker] = set()

    @property
    def active(self) -> list[Worker]:
        return [w for w in self._workers if not w.is_done]

    def start(self, worker: Worker, priority: int = 0) -> Worker:
        """Start ``worker``; the pool holds it until its ``finished`` signal has been delivered.

        Qt's pool is given the worker's ``run`` method, not the runnable itself: PySide makes a
        pool the owner of every ``QRunnable`` passed to it, for as long as the pool lives, so each
        worker (its signals, its arguments) stayed in memory after it had finished.
        """
        self._workers.add(worker)
        # A weak reference: a connection is held by Qt, where Python's collector cannot see a
        # cycle through it (worker -> signals -> connection -> worker would never be freed).
        worker.signals.finished.connect(functools.partial(self._forget, weakref.ref(worker)))
        self._pool.start(worker.run, priority)
        return worker

    def _forget(self, ref: weakref.ref[Worker]) -> None:
        worker = ref()
        if worker is not None:
            # Not now: this runs inside the delivery of ``finished``, and the worker's signals
            # must outlive it, for the slots connected after this one.
            QTimer.singleShot(0, self, lambda: self._workers.discard(worker))

    def quit_all(self) -> None:
        """Ask every worker to stop: running ones at their next yield; queued ones end as soon
        as their turn comes, without running their function (they emit ``aborted``)."""
        for worker in list(self._workers):
            worker.quit()

    def wait_for_done(self, timeout_ms: int = -1) -> bool:
        """Block until every started worker has returned from ``run`` (False on timeout)."""
        return self._pool.waitForDone(timeout_ms)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop every worker and wait for them; True when all are done."""
        self.quit_all()
        return self.wait_for_done(timeout_ms)
