"""Keep Python's cyclic garbage collector from stalling the window.

A full collection walks every object the interpreter tracks, holding the interpreter lock, in
whichever thread happens to trigger it. Once torch, open_clip and a model are loaded that is
millions of objects: measured with benchmarks/bench_gui.py, full collections held the lock for
100-400 ms at a time, while the model loaded (five of them, 690 ms in all) and now and then
during indexing (a search thread allocating its results triggered one of 393 ms). The window
cannot paint while another thread holds the lock.

So the first import of the model runtime and the loading of a model run with the collector
paused (:func:`collector_paused`), and the objects alive afterwards (modules, functions,
the model's parameters: they live as long as the app) are moved out of the collector's sight with
``gc.freeze()``. Later collections only walk objects made since: a few milliseconds. Frozen
objects are still freed when their reference count drops; only reference cycles among them are
never collected, which for objects that stay loaded costs nothing.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_paused = 0  # how many threads are inside collector_paused()
_was_enabled = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with automatic collections off, then freeze what survived (thread-safe).

    The collector is process-wide: the pause is reference-counted across threads and ends
    when the last thread leaves; only then is the heap frozen and collection resumed.
    """
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0:
                freeze_heap()
                if _was_enabled:
                    gc.enable()


def freeze_heap() -> None:
    """Move every object alive now out of future collections' way (``gc.freeze()``, which only
    links lists: instant; ``gc.get_freeze_count()`` would walk them all, so it is not logged)."""
    gc.freeze()


__all__ = ["collector_paused", "freeze_heap"]
