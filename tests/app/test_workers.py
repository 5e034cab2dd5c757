"""The generator worker and its pool: signals, return values, errors, cancellation, ownership."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

from app.workers import Worker, WorkerPool


@pytest.fixture
def pool(qtbot):
    pool = WorkerPool(max_threads=2)
    yield pool
    assert pool.shutdown(10_000)


def _collect(worker: Worker) -> dict:
    seen: dict = {"yielded": [], "returned": [], "errored": [], "aborted": 0, "started": 0}
    worker.started.connect(lambda: seen.__setitem__("started", seen["started"] + 1))
    worker.yielded.connect(seen["yielded"].append)
    worker.returned.connect(seen["returned"].append)
    worker.errored.connect(seen["errored"].append)
    worker.aborted.connect(lambda: seen.__setitem__("aborted", seen["aborted"] + 1))
    return seen


def test_generator_yields_then_returns_in_the_gui_thread(qtbot, pool):
    threads = set()

    def job(n):
        threads.add(threading.get_ident())
        for i in range(n):
            yield i * i
        return "done"

    worker = Worker(job, 4)
    seen = _collect(worker)
    gui_thread = []
    worker.yielded.connect(lambda _v: gui_thread.append(threading.get_ident()))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pool.start(worker)
    assert seen["yielded"] == [0, 1, 4, 9]
    assert seen["returned"] == ["done"]
    assert seen["errored"] == [] and seen["aborted"] == 0 and seen["started"] == 1
    assert threads and threading.get_ident() not in threads  # the job ran in a pool thread
    assert set(gui_thread) == {threading.get_ident()}  # slots ran in the GUI thread


def test_plain_function_returns_its_value(qtbot, pool):
    worker = Worker(lambda a, b: a + b, 2, b=3)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pool.start(worker)
    assert seen["returned"] == [5]


def test_an_exception_is_delivered_as_data(qtbot, pool):
    def job():
        yield 1
        raise ValueError("bad input")

    worker = Worker(job)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pool.start(worker)
    assert seen["yielded"] == [1]
    assert len(seen["errored"]) == 1 and isinstance(seen["errored"][0], ValueError)
    assert seen["returned"] == []


def test_quit_closes_the_generator_at_its_next_yield(qtbot, pool):
    gate = threading.Event()
    cleaned = threading.Event()
    steps = []

    def job():
        try:
            for i in range(1000):
                steps.append(i)
                if i == 1:
                    gate.wait(5)
                yield i
            return "finished"
        finally:
            cleaned.set()

    worker = Worker(job)
    seen = _collect(worker)
    worker.yielded.connect(lambda v: worker.quit() if v == 0 else None)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pool.start(worker)
        qtbot.waitUntil(lambda: worker.abort_requested, timeout=5000)
        gate.set()
    assert cleaned.is_set()  # the generator's finally block ran
    assert seen["aborted"] == 1 and seen["returned"] == []
    assert len(steps) <= 3


def test_pool_keeps_unreferenced_workers_alive_until_finished(qtbot, pool):
    results = []
    release = threading.Event()

    def job():
        # Bounded only against a test that fails before releasing it. A short bound can run out
        # first on a loaded machine, and the worker then finishes before the test listens for it.
        release.wait(60)
        yield 1
        return 2

    worker = Worker(job)
    worker.returned.connect(results.append)
    done = worker.finished
    pool.start(worker)
    del worker
    gc.collect()
    try:
        assert len(pool.active) == 1
        with qtbot.waitSignal(done, timeout=30_000):
            release.set()
    finally:
        release.set()
    assert results == [2]
    qtbot.waitUntil(lambda: not pool.active, timeout=5000)


def test_shutdown_stops_running_and_drops_queued_workers(qtbot):
    pool = WorkerPool(max_threads=1)
    started = threading.Event()
    ran = []

    def endless(tag):
        ran.append(tag)
        started.set()
        while True:
            yield tag

    first, second = Worker(endless, "a"), Worker(endless, "b")
    pool.start(first)
    pool.start(second)
    assert started.wait(5)
    assert pool.shutdown(10_000)
    assert first.is_done and second.is_done
    assert ran == ["a"]  # the queued worker never ran


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_a_worker_can_run_at_a_lower_priority(qtbot, pool):
    seen = []

    def job():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield 1

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = Worker(job)
    worker.niceness = 5
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pool.start(worker)
    assert seen == [min(19, before + 5)] or seen == [before + 5]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the GUI thread is untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_a_pooled_thread_left_low_is_not_lowered_again(qtbot, monkeypatch):
    from app import workers

    pool = WorkerPool(max_threads=1)  # one thread: the second job runs where the first ran
    app_level = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen = []

    def job():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield 1

    # As for a user who may not raise a priority back: the thread stays where the first job left it.
    monkeypatch.setattr(workers.os, "setpriority", _setpriority_without_raising)
    for _ in range(2):
        worker = Worker(job)
        worker.niceness = 4
        with qtbot.waitSignal(worker.finished, timeout=5000):
            pool.start(worker)
    assert pool.shutdown(10_000)
    assert seen == [min(19, app_level + 4)] * 2


_real_setpriority = os.setpriority


def _setpriority_without_raising(which, who, prio):
    if prio < os.getpriority(which, who):
        raise PermissionError("raising a priority needs privileges")
    _real_setpriority(which, who, prio)


def test_finished_workers_are_not_kept_alive(qtbot):
    import weakref

    pool = WorkerPool(max_threads=1)
    refs = []
    for i in range(5):
        worker = Worker(lambda n=i: n)
        refs.append(weakref.ref(worker))
        with qtbot.waitSignal(worker.finished, timeout=5000):
            pool.start(worker)
        del worker
    assert pool.shutdown(10_000)

    def freed() -> bool:
        gc.collect()
        return all(r() is None for r in refs)

    qtbot.waitUntil(freed, timeout=5000)  # each search's worker, signals and arguments are freed
