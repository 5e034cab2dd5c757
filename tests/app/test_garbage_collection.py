"""The collector pause around model loading: off inside (across threads), frozen and back on after."""

from __future__ import annotations

import gc
import threading

import pytest

from app.garbage_collection import collector_paused
from app.session import _model_loaded_quietly


@pytest.fixture(autouse=True)
def _collector_restored():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_the_pause_holds_until_the_last_thread_leaves_then_freezes():
    assert gc.isenabled()
    gc.unfreeze()
    inside, leave = threading.Event(), threading.Event()
    seen = []

    def other():
        with collector_paused():
            inside.set()
            assert leave.wait(10)
        seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
        assert not gc.isenabled()
        survivor = [object() for _ in range(10)]
    assert not gc.isenabled()  # the other thread is still loading
    assert gc.get_freeze_count() == 0
    leave.set()
    thread.join(10)
    assert seen == [True] and gc.isenabled()
    assert gc.get_freeze_count() > len(survivor)


def test_a_collector_turned_off_by_someone_else_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_only_the_first_step_of_a_run_is_quiet_and_the_result_comes_through():
    states = []

    def run():
        states.append(gc.isenabled())
        yield "loaded"
        states.append(gc.isenabled())
        yield "next"
        return "report"

    quiet = _model_loaded_quietly(run())
    assert next(quiet) == "loaded"
    assert next(quiet) == "next"
    with pytest.raises(StopIteration) as stop:
        next(quiet)
    assert stop.value.value == "report"
    assert states == [False, True]


def test_closing_a_quiet_run_closes_the_run():
    closed = []

    def run():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    quiet = _model_loaded_quietly(run())
    assert next(quiet) == 1
    quiet.close()
    assert closed == [True] and gc.isenabled()
