"""One writer at a time per library, across processes (the app, the CLI, a fine-tune).

An indexing run walks a folder, embeds what changed and then sweeps the photos it did not find.
Two runs on one library at once would each sweep what the other had just written, and each keeps
its own copy of the search index and vector file offsets in memory. So every run that changes a
library's photos, vectors or index holds the library's writer lock (a lock file beside the
catalog, via the ``filelock`` package: ``flock`` on POSIX, ``msvcrt`` locking on Windows, released
by the system if the process dies). Readers (searches) never take it.

Whoever waits for the lock says so ("another LadderLens is indexing this library; waiting"), and
after getting it reloads what the other writer changed (see :class:`core.library.Library`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from core.errors import LibraryError

logger = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"
WAITING_MESSAGE = "another LadderLens is indexing this library; waiting for it to finish"
POLL_S = 0.5


class WriterLock:
    """The library's inter-process writer lock (re-entrant within one :class:`WriterLock`)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.path = Path(root) / LOCK_NAME
        self._lock = FileLock(self.path, thread_local=False)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another writer holds it."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        except OSError as exc:  # a read-only library: nothing can be written anyway
            raise LibraryError(f"Cannot lock the library for writing ({self.path}): {exc.strerror}.") from exc
        return True

    def wait(self) -> Iterator[None]:
        """Take the lock, yielding every :data:`POLL_S` seconds while another writer holds it.

        Each yield is a point where the caller may report the wait or give up (closing the
        generator gives up without the lock).
        """
        if self.try_acquire():
            return
        logger.warning(WAITING_MESSAGE)
        while True:
            yield
            try:
                self._lock.acquire(timeout=POLL_S)
                return
            except Timeout:
                continue

    def acquire(self) -> None:
        """Take the lock, waiting as long as it takes (with a warning when it has to wait)."""
        for _ in self.wait():
            pass

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
