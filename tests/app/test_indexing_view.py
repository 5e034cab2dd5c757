"""While a library is read: the stage, counts and time left, and the photos just read."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import Qt

from app.indexing_view import RECENT, IndexingView
from app.thumbnails import ThumbnailLoader
from core.indexer import IndexProgress


def test_stage_counts_and_photos_as_they_arrive(qtbot, tmp_path):
    loader = ThumbnailLoader(cache_dir=tmp_path / "thumbs")
    view = IndexingView(loader)
    qtbot.addWidget(view)
    assert view.bar.maximum() == 0  # busy until a total is known
    view.show_progress(IndexProgress("scan", 40, None))
    assert view.stage.text() == "Looking for photos"
    paths = []
    for i in range(RECENT + 3):
        path = tmp_path / f"p{i}.jpg"
        Image.new("RGB", (64, 48), (i * 8 % 255, 90, 160)).save(path)
        paths.append(str(path))
        view.show_progress(IndexProgress("embed", i + 1, 100, rate=12.5, eta_s=90, path=str(path)))
    assert view.stage.text() == "Reading photos"
    assert "27 of 100" in view.detail.text() and "about" in view.detail.text()
    assert (view.bar.minimum(), view.bar.maximum(), view.bar.value()) == (0, 100, 27)
    shown = view.recent_paths()
    assert shown == paths[::-1][:RECENT]  # newest first, the oldest dropped
    qtbot.waitUntil(lambda: not view.recent.item(0).icon().isNull(), timeout=10_000)  # thumbnails come in
    view.reset()
    assert view.recent.count() == 0 and view.bar.maximum() == 0
    loader.shutdown()


def test_the_window_shows_it_while_reading_with_nothing_searched(window, qtbot, monkeypatch, tmp_path):
    session = window.session
    monkeypatch.setattr(type(session), "is_indexing", property(lambda self: True))
    window._has_folders, window._indexed = True, 0
    window._update_page()
    assert window.grid_stack.currentWidget() is window.indexing_view
    path = tmp_path / "one.jpg"
    Image.new("RGB", (32, 32), "red").save(path)
    window._on_index_progress(IndexProgress("embed", 1, 10, path=str(path)))
    assert window.indexing_view.recent_paths() == [str(path)]
    assert window.indexing_view.recent.item(0).data(Qt.ItemDataRole.UserRole) == str(path)
