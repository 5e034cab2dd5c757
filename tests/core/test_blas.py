"""single_threaded(): BLAS limited to one thread inside, restored after the last user leaves."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.blas import single_threaded

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (other libraries, e.g. torch's, may load theirs later)."""
    return [
        lib["num_threads"]
        for lib in threadpoolctl.threadpool_info()
        if lib["user_api"] == "blas" and "numpy" in lib["filepath"]
    ]


@pytest.fixture
def two_threads(monkeypatch):
    if not blas_threads():
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    # Start from no user: a search still running in a thread left by another test would
    # otherwise hold the process-wide limit and make these tests depend on test order.
    import core.blas

    monkeypatch.setattr(core.blas, "_users", 0)
    monkeypatch.setattr(core.blas, "_limiter", None)
    monkeypatch.setattr(core.blas, "_controller", None)  # libraries loaded since are seen too
    monkeypatch.setattr(core.blas, "_unavailable", False)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        yield


def test_limited_inside_and_restored_after(two_threads):
    assert set(blas_threads()) == {2}
    with single_threaded():
        assert set(blas_threads()) == {1}
        with single_threaded():  # re-entrant
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
        a = np.ones((64, 64), np.float32)
        assert float((a @ a)[0, 0]) == 64.0
    assert set(blas_threads()) == {2}


def test_overlapping_users_leave_the_original_setting(two_threads):
    inside, release = threading.Event(), threading.Event()

    def other():
        with single_threaded():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with single_threaded():
        pass
    release.set()
    t.join(10)
    assert not t.is_alive()
    with single_threaded():
        assert set(blas_threads()) == {1}
    assert set(blas_threads()) == {2}
