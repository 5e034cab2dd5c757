"""Search-as-you-type throttle: the first call at once, then the latest call per delay window."""

from __future__ import annotations

from app.throttle import Throttle


def test_first_call_runs_at_once_and_bursts_collapse_to_the_latest(qtbot):
    calls = []
    throttle = Throttle(calls.append, delay_ms=80)
    throttle("r")
    assert calls == ["r"]
    for text in ("re", "red", "red c", "red car"):
        throttle(text)
    assert calls == ["r"] and throttle.is_pending
    qtbot.waitUntil(lambda: calls == ["r", "red car"], timeout=2000)
    assert not throttle.is_pending


def test_flush_runs_the_pending_call_now_and_cancel_forgets_it(qtbot):
    calls = []
    throttle = Throttle(calls.append, delay_ms=10_000)
    throttle("a")
    throttle("b")
    throttle.flush()
    assert calls == ["a", "b"]
    throttle("c")
    assert throttle.is_pending
    throttle.cancel()
    assert not throttle.is_pending
    qtbot.wait(50)
    assert calls == ["a", "b"]


def test_keyword_arguments_are_passed_through(qtbot):
    calls = []
    throttle = Throttle(lambda text, k=0: calls.append((text, k)), delay_ms=30)
    throttle("x", k=3)
    throttle("y", k=4)
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=2000)
    assert calls == [("x", 3), ("y", 4)]
