"""The teardown check of tests/app/conftest.py sees threads and busy thread pools left behind."""

from __future__ import annotations

import threading

from app.workers import Worker, WorkerPool
from tests.app.conftest import leftovers, running_threads


def test_a_python_thread_left_running_is_reported_until_it_ends():
    before = running_threads()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(30,), name="forgotten")
    thread.start()
    try:
        found = leftovers(before, grace_s=0)
        assert len(found) == 1 and "'forgotten'" in found[0] and "wait" in found[0]
    finally:
        stop.set()
        thread.join(30)
    assert leftovers(before, grace_s=0) == []


def test_a_busy_pool_and_its_thread_are_reported_until_shut_down(qtbot):
    before = running_threads()
    pool = WorkerPool(max_threads=1, name="probe")
    entered, stop = threading.Event(), threading.Event()

    def job():
        entered.set()
        while not stop.wait(0.01):
            yield None

    pool.start(Worker(job))
    try:
        assert entered.wait(30)
        found = leftovers(before, grace_s=0)
        assert "1 busy thread(s) in the probe pool" in found
        assert any(f.startswith("thread ") and "job" in f for f in found)  # the pool thread, in job()
    finally:
        stop.set()
        assert pool.shutdown(30_000)
    assert leftovers(before, grace_s=0) == []
