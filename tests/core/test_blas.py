"""single_threaded(): BLAS limited to one thread inside, restored after the last user leaves.

The limit is process-wide, so the checks run in a fresh interpreter: threads left searching by
other tests in this process would change it underneath them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("threadpoolctl")

REPO = Path(__file__).resolve().parents[2]

CHECKS = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, {repo!r})
    import numpy as np
    import threadpoolctl
    from core.blas import single_threaded

    def blas_threads():
        return {{l["num_threads"] for l in threadpoolctl.threadpool_info()
                 if l["user_api"] == "blas" and "numpy" in l["filepath"]}}

    if not blas_threads():
        sys.exit(3)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {{2}}
        with single_threaded():
            assert blas_threads() == {{1}}
            with single_threaded():  # re-entrant
                assert blas_threads() == {{1}}
            assert blas_threads() == {{1}}
            a = np.ones((64, 64), np.float32)
            assert float((a @ a)[0, 0]) == 64.0
        assert blas_threads() == {{2}}

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
            assert blas_threads() == {{1}}
        assert blas_threads() == {{2}}
    """
)


def test_limited_inside_shared_between_users_and_restored_after():
    proc = subprocess.run(
        [sys.executable, "-c", CHECKS.format(repo=str(REPO))], capture_output=True, text=True, timeout=120
    )
    if proc.returncode == 3:
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    assert proc.returncode == 0, proc.stderr
