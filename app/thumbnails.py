"""Thumbnails made in the background and cached on disk and in memory.

A request names a photo path and a side length. A pool thread stats the file, looks for a cached
JPEG under ``<cache>/thumbnails`` keyed by (path, size, mtime, side), and otherwise decodes the photo
with :func:`core.decode.open_image` at a small target side (the JPEG fast path decodes a 12 MP photo
at a fraction of its size), writes the cached file atomically and hands back a ``QImage``. The GUI
thread only turns finished ``QImage``s into ``QPixmap``s: it never decodes a photo.

The views ask for thumbnails while painting; requests are de-duplicated, and :meth:`forget_pending`
drops queued requests that no longer matter (a new search replaced the grid).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, Signal
from PySide6.QtGui import QImage, QPixmap

from app.workers import lower_thread_priority, new_thread_pool
from core import paths
from core.decode import open_image
from core.errors import DecodeError

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85
MEMORY_ITEMS = 3000
# Thumbnails are made at a lower CPU priority than the GUI thread (which paints them) and a higher
# one than indexing: on a busy two-core machine the GUI thread otherwise waits for a CPU behind
# the thumbnail threads while it lays out and paints a new page of results.
THUMBNAIL_NICENESS = 3


def thumbnail_dir() -> Path:
    return paths.cache_dir() / "thumbnails"


CACHE_LIMIT_BYTES = 512 << 20  # thumbnails kept on disk; the least recently used go first
_PRUNE_EVERY = 200  # thumbnails written between checks of the cache's size


# The names :func:`cache_key` gives thumbnails: only files named so are counted or deleted, so a
# cache folder that holds other files (a photo folder chosen by mistake) loses none of them.
_THUMBNAIL_NAME = re.compile(r"[0-9a-f]+-[0-9]+\.jpg")


def is_thumbnail_name(name: str) -> bool:
    """Whether a file name is one the cache gives its thumbnails."""
    return _THUMBNAIL_NAME.fullmatch(name) is not None


def _cache_entries(cache: Path) -> list[tuple[float, int, str]]:
    """(modified time, size, path) of every thumbnail file in ``cache``; empty when it cannot be read."""
    entries = []
    try:
        with os.scandir(cache) as it:
            for entry in it:
                if is_thumbnail_name(entry.name) and entry.is_file():
                    st = entry.stat()
                    entries.append((st.st_mtime, st.st_size, entry.path))
    except OSError:
        return []
    return entries


def cache_usage(cache: Path) -> tuple[int, int]:
    """(thumbnail files, bytes) in ``cache``."""
    entries = _cache_entries(cache)
    return len(entries), sum(size for _, size, _ in entries)


def prune_cache(cache: Path, limit_bytes: int = CACHE_LIMIT_BYTES) -> int:
    """Delete the least recently used thumbnails until the cache holds at most ``limit_bytes``;
    returns how many were deleted. (A thumbnail read from the cache is touched, so "used" means
    shown, not only made.) Only thumbnails (files named as :func:`cache_key` names them) are
    deleted: nothing else in the folder."""
    entries = _cache_entries(cache)
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in sorted(entries):
        if total <= limit_bytes:
            break
        with contextlib.suppress(OSError):
            os.remove(path)
            total -= size
            removed += 1
    if removed:
        logger.info("thumbnail cache pruned: %d files removed, %.0f MB kept", removed, total / (1 << 20))
    return removed


def clear_cache(cache: Path) -> int:
    """Delete every thumbnail in ``cache`` (they are made again when shown); returns how many."""
    return prune_cache(cache, 0)


def cache_key(path: str, size: int, mtime_ns: int, side: int) -> str:
    """Stable file name for one thumbnail of one version of a photo."""
    digest = hashlib.sha1(f"{path}\0{size}\0{mtime_ns}\0{side}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest}-{side}.jpg"


def make_thumbnail(path: str, side: int, cache: Path | None) -> QImage:
    """The thumbnail of ``path`` with its longer side at most ``side`` pixels (any thread).

    Raises:
        DecodeError: the photo cannot be read.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DecodeError(path, "file not found" if isinstance(exc, FileNotFoundError) else str(exc)) from exc
    cached = cache / cache_key(path, st.st_size, st.st_mtime_ns, side) if cache is not None else None
    if cached is not None and cached.is_file():
        image = QImage(str(cached))
        if not image.isNull():
            with contextlib.suppress(OSError):
                os.utime(cached)  # recently used: pruning keeps it
            return image
    decoded = open_image(path, target_side=side)
    pil = decoded.image
    if max(pil.size) > side:
        pil = pil.copy()
        pil.thumbnail((side, side))
    if cached is not None:
        _write_cached(pil, cached)
    rgb = pil.convert("RGB") if pil.mode != "RGB" else pil
    data = rgb.tobytes()
    image = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: `data` goes away with this frame


def _write_cached(pil: Image.Image, cached: Path) -> None:
    """Store a thumbnail whole or not at all: written beside its place under a name of this process
    and thread (two LadderLens windows may share the cache), then renamed into place."""
    tmp = cached.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        pil.save(tmp, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, cached)
    except OSError as exc:  # a read-only or full cache only costs speed
        logger.debug("thumbnail cache not written: %s", exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


class _Relay(QObject):
    arrived = Signal()  # results are waiting in the loader's outbox (sent once per batch)


class _Drain(QRunnable):
    """Makes queued thumbnails, newest request first, until the queue is empty.

    A few long-running drains instead of one task per thumbnail: starting a pool task costs the GUI
    thread a thread wake-up (and the interpreter lock) each time, and a grid asks for dozens at once.
    """

    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        restore = lower_thread_priority(THUMBNAIL_NICENESS)
        try:
            self._drain()
        finally:
            if restore is not None:
                restore()

    def _drain(self) -> None:
        loader = self._loader
        while (key := loader._next_request()) is not None:
            path, side = key
            if loader.cache_dir is not None and loader._count_made() % _PRUNE_EVERY == 0:
                prune_cache(loader.cache_dir, loader.cache_limit)  # at the first thumbnail, then now and then
            try:
                image = make_thumbnail(path, side, loader.cache_dir)
                error = ""
            except DecodeError as exc:
                image, error = QImage(), exc.reason
            except Exception as exc:  # never lose the pool thread to a bad file
                logger.debug("thumbnail failed for %s", path, exc_info=True)
                image, error = QImage(), str(exc) or type(exc).__name__
            loader._deliver(path, side, image, error)


class ThumbnailLoader(QObject):
    """Asynchronous, cached thumbnails; ``ready(path, side)`` is emitted when one can be had."""

    ready = Signal(str, int)
    failed = Signal(str, int, str)

    def __init__(
        self,
        cache_dir: Path | None = None,
        threads: int = 2,
        parent: QObject | None = None,
        cache_limit: int = CACHE_LIMIT_BYTES,
    ) -> None:
        super().__init__(parent)
        self.cache_limit = cache_limit
        self._made = 0
        # PIL imports its common format plugins at its first open: here, on the thread that makes
        # the loader, instead of in the first thumbnail threads while the window shows a new page
        # (an import holds the interpreter lock and the import lock for some milliseconds).
        Image.preinit()
        self.cache_dir = thumbnail_dir() if cache_dir is None else cache_dir
        self._threads = max(1, threads)
        self._pool = new_thread_pool(self, self._threads, "thumbnails")
        self._relay = _Relay(self)
        self._relay.arrived.connect(self._on_arrived)
        self._outbox: list[tuple[str, int, QImage, str]] = []  # made, not yet handed to the GUI
        self._memory: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self._failed: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._queue: OrderedDict[tuple[str, int], None] = OrderedDict()  # waiting, newest last
        self._in_progress: set[tuple[str, int]] = set()
        self._drains = 0
        self._closed = False

    def pixmap(self, path: str, side: int) -> QPixmap | None:
        """The thumbnail if it is ready; otherwise None, and it is requested."""
        key = (path, side)
        pix = self._memory.get(key)
        if pix is not None:
            self._memory.move_to_end(key)
            return pix
        if key not in self._failed:
            self.request(path, side)
        return None

    def error(self, path: str, side: int) -> str | None:
        """Why the thumbnail could not be made, if it could not."""
        return self._failed.get((path, side))

    def request(self, path: str, side: int) -> None:
        """Ask for a thumbnail; the newest requests are served first (what the grid shows now)."""
        key = (path, side)
        with self._lock:
            if self._closed or key in self._in_progress:
                return
            self._queue[key] = None
            self._queue.move_to_end(key)
            start = self._drains < self._threads
            if start:
                self._drains += 1
        if start:
            self._pool.start(_Drain(self))

    def _count_made(self) -> int:
        """Thumbnails asked of the pool threads so far (before this one)."""
        with self._lock:
            made, self._made = self._made, self._made + 1
        return made

    def forget_pending(self) -> None:
        """Drop requests that have not started (the views will ask again for what they still show)."""
        with self._lock:
            self._queue.clear()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        with self._lock:
            self._closed = True
            self._queue.clear()
        return self._pool.waitForDone(timeout_ms)

    def wait_for_done(self, timeout_ms: int = -1) -> bool:
        """Block until every queued thumbnail is made (benchmarks and scripts; not for the GUI)."""
        return self._pool.waitForDone(timeout_ms)

    def _next_request(self) -> tuple[str, int] | None:
        with self._lock:
            if not self._queue or self._closed:
                self._drains -= 1
                return None
            key, _ = self._queue.popitem(last=True)
            self._in_progress.add(key)
            return key

    def _deliver(self, path: str, side: int, image: QImage, error: str) -> None:
        """Pool thread: hand a result to the GUI thread. One signal wakes it for everything made
        until it runs: each wake-up costs the GUI thread the interpreter lock once."""
        with self._lock:
            self._outbox.append((path, side, image, error))
            first = len(self._outbox) == 1
        if first:
            self._relay.arrived.emit()

    def _on_arrived(self) -> None:
        with self._lock:
            batch, self._outbox = self._outbox, []
        for item in batch:
            self._on_done(*item)

    def _on_done(self, path: str, side: int, image: QImage, error: str) -> None:
        key = (path, side)
        with self._lock:
            self._in_progress.discard(key)
        if error or image.isNull():
            self._failed[key] = error or "not an image"
            self.failed.emit(path, side, self._failed[key])
            return
        self._memory[key] = QPixmap.fromImage(image)
        while len(self._memory) > MEMORY_ITEMS:
            self._memory.popitem(last=False)
        self.ready.emit(path, side)
