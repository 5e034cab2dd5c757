"""Thumbnails: decoded in the background, cached on disk by (path, size, mtime, side)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from app.thumbnails import ThumbnailLoader, cache_key, make_thumbnail


@pytest.fixture
def loader(qtbot, tmp_path):
    loader = ThumbnailLoader(cache_dir=tmp_path / "thumbs")
    yield loader
    assert loader.shutdown()


def _photo(path, size=(640, 480), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path, "JPEG")
    return str(path)


def test_thumbnail_arrives_in_the_background_and_is_cached(loader, qtbot, tmp_path):
    path = _photo(tmp_path / "red.jpg")
    assert loader.pixmap(path, 64) is None  # requested, not ready yet
    with qtbot.waitSignal(loader.ready, timeout=10_000) as blocker:
        pass
    assert blocker.args == [path, 64]
    pix = loader.pixmap(path, 64)
    assert pix is not None and max(pix.width(), pix.height()) == 64
    assert pix.width() == 64 and pix.height() == 48
    cached = list((tmp_path / "thumbs").glob("*.jpg"))
    assert len(cached) == 1


def test_the_disk_cache_is_keyed_by_size_and_mtime(tmp_path):
    path = _photo(tmp_path / "a.jpg", color=(10, 200, 10))
    cache = tmp_path / "c"
    first = make_thumbnail(path, 32, cache)
    stat = os.stat(path)
    # Same size and mtime, different pixels: the cached thumbnail is served.
    size_before = stat.st_size
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(bytes(data[:-2]) + b"\0\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == size_before
    again = make_thumbnail(path, 32, cache)
    assert again.size() == first.size()
    assert again.pixelColor(5, 5).green() > 150
    # A new version of the file (new mtime) gets a new thumbnail.
    _photo(tmp_path / "a.jpg", color=(10, 10, 200))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = make_thumbnail(path, 32, cache)
    assert fresh.pixelColor(5, 5).blue() > 150
    assert cache_key(path, 1, 2, 32) != cache_key(path, 1, 3, 32)


def test_a_failed_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A full disk mid-write: the thumbnail is still made, and the cache holds nothing half-written
    (neither in place nor as a leftover temporary file)."""
    path = _photo(tmp_path / "a.jpg")
    cache = tmp_path / "c"
    written = []

    def full_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\xff\xd8 half a JPEG")
        written.append(Path(fp).name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    image = make_thumbnail(path, 32, cache)
    assert not image.isNull() and max(image.width(), image.height()) == 32
    assert written and str(os.getpid()) in written[0]  # named for this process: windows share the cache
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    make_thumbnail(path, 32, cache)
    assert [p.suffix for p in cache.iterdir()] == [".jpg"]


def test_unreadable_files_report_why(loader, qtbot, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with qtbot.waitSignal(loader.failed, timeout=10_000) as blocker:
        loader.request(str(bad), 64)
    assert blocker.args[0] == str(bad)
    assert loader.error(str(bad), 64) == "not an image"
    assert loader.pixmap(str(bad), 64) is None  # not requested again
    missing = str(tmp_path / "gone.jpg")
    with qtbot.waitSignal(loader.failed, timeout=10_000):
        loader.request(missing, 64)
    assert loader.error(missing, 64) == "file not found"


def test_results_made_together_reach_the_gui_in_one_batch(loader, qtbot, tmp_path, monkeypatch):
    paths = [_photo(tmp_path / f"p{i}.jpg", color=(20 * i, 90, 90)) for i in range(6)]
    arrivals = []
    real = loader._on_arrived
    monkeypatch.setattr(loader, "_on_arrived", lambda: (arrivals.append(len(loader._outbox)), real()))
    loader._relay.arrived.disconnect()
    loader._relay.arrived.connect(loader._on_arrived)
    ready = []
    loader.ready.connect(lambda p, side: ready.append(p))
    for p in paths:
        loader.request(p, 48)
    assert loader.wait_for_done(30_000)  # every thumbnail is made before the GUI thread looks
    qtbot.waitUntil(lambda: len(ready) == len(paths), timeout=10_000)
    assert sorted(ready) == sorted(paths)
    assert arrivals == [len(paths)]  # one wake-up of the GUI thread for all of them


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_thumbnails_are_made_below_the_gui_threads_priority(loader, qtbot, tmp_path, monkeypatch):
    from app import thumbnails

    seen = []
    real = thumbnails.make_thumbnail

    def spy(path, side, cache):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(path, side, cache)

    monkeypatch.setattr(thumbnails, "make_thumbnail", spy)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with qtbot.waitSignal(loader.ready, timeout=10_000):
        loader.request(_photo(tmp_path / "n.jpg"), 32)
    assert seen == [min(19, before + thumbnails.THUMBNAIL_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_the_disk_cache_is_bounded_least_recently_used_first(tmp_path):
    import os

    from app.thumbnails import prune_cache

    cache = tmp_path / "thumbs"
    cache.mkdir()
    for i in range(10):
        path = cache / f"{i:02d}-256.jpg"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # 00 is the least recently used
    (cache / "notes.txt").write_text("not a thumbnail")
    assert prune_cache(cache, limit_bytes=4500) == 6
    assert sorted(p.name for p in cache.iterdir()) == [
        "06-256.jpg",
        "07-256.jpg",
        "08-256.jpg",
        "09-256.jpg",
        "notes.txt",
    ]
    assert prune_cache(cache, limit_bytes=4500) == 0
    assert prune_cache(tmp_path / "missing", limit_bytes=0) == 0


def test_the_app_writes_a_rotating_log_file(tmp_path):
    import logging

    from app.log_file import install_log_file

    path = install_log_file(tmp_path / "logs")
    assert path == tmp_path / "logs" / "ladderlens.log"
    logging.getLogger("core.library").warning("something to look at later")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "something to look at later" in path.read_text(encoding="utf-8")
    assert install_log_file(tmp_path / "logs") == path  # once per file
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "baseFilename", "") == str(path)]:
        root.removeHandler(handler)
        handler.close()
