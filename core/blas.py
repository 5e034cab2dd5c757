"""Keep numpy's BLAS on one thread for the small, latency-critical products of a search.

A query's products (the exact scan of a small library, the background sample of 4096
vectors) take well under a millisecond to a few milliseconds on one core. Left to itself,
OpenBLAS splits them over all cores, which pays off on an idle machine only: when the CPU is
busy (indexing in the background, a training run, other programs) the extra thread waits for a
time slice and a 0.4 ms product takes 15-20 ms (measured with benchmarks/bench_query.py on a
loaded 2-core machine). Searches therefore run their products single-threaded.

The limit is process-wide (that is how BLAS libraries work), so it is reference-counted: it is
set when the first search enters and restored when the last one leaves. Without
``threadpoolctl`` installed this is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import numpy as np  # noqa: F401  (BLAS must be loaded before the controller looks for it)

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_users = 0
_limiter = None
_controller = None
_unavailable = False


def _get_controller():
    global _controller, _unavailable
    if _controller is None and not _unavailable:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            logger.debug("threadpoolctl is not installed: BLAS threads are left as they are")
            _unavailable = True
            return None
        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with numpy's BLAS limited to one thread (thread-safe, re-entrant)."""
    global _users, _limiter
    with _lock:
        if _users == 0:
            controller = _get_controller()
            if controller is not None:
                try:
                    _limiter = controller.limit(limits=1, user_api="blas")
                except Exception:  # a BLAS library that refuses: run as it is
                    logger.debug("could not limit BLAS threads", exc_info=True)
                    _limiter = None
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None
