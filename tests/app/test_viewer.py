"""The full-size viewer: stepping through photos, zoom, errors, and the keys."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.viewer import MAX_SIDE, PhotoViewer, decode_for_viewing


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, (size, colour) in enumerate([((400, 300), "red"), ((300, 500), "green"), ((640, 480), "blue")]):
        path = tmp_path / f"p{i}.jpg"
        Image.new("RGB", size, colour).save(path)
        paths.append((100 + i, str(path)))
    return paths


@pytest.fixture
def viewer(qtbot):
    widget = PhotoViewer()
    qtbot.addWidget(widget)
    yield widget
    widget.pool.shutdown()


def _shown(qtbot, viewer, index):
    qtbot.waitUntil(lambda: viewer.index == index and viewer.is_loaded(), timeout=10_000)


def test_steps_through_the_photos_and_stops_at_the_ends(qtbot, viewer, photos):
    changed = []
    viewer.current_changed.connect(changed.append)
    viewer.show_photos(photos, 1)
    _shown(qtbot, viewer, 1)
    assert viewer.isVisible() and viewer.error() is None
    assert "p1.jpg" in viewer.caption.text() and "2 of 3" in viewer.caption.text()
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    _shown(qtbot, viewer, 2)
    qtbot.keyClick(viewer, Qt.Key.Key_Right)  # the last one: stays
    assert viewer.index == 2
    qtbot.keyClick(viewer, Qt.Key.Key_Home)
    _shown(qtbot, viewer, 0)
    qtbot.keyClick(viewer, Qt.Key.Key_Left)  # the first one: stays
    assert viewer.index == 0
    qtbot.keyClick(viewer, Qt.Key.Key_End)
    _shown(qtbot, viewer, 2)
    assert changed == [101, 102, 100, 102]
    assert viewer.picture.pixmap().width() > 0


def test_zoom_keys_fit_and_full_size(qtbot, viewer, photos):
    viewer.resize(500, 400)
    viewer.show_photos(photos, 2)  # 640 x 480: larger than the window, so fitted below 100 %
    _shown(qtbot, viewer, 2)
    assert viewer.zoom is None
    fitted = viewer.picture.pixmap().width()
    assert fitted < 640
    qtbot.keyClick(viewer, Qt.Key.Key_1)
    assert viewer.zoom == 1.0 and viewer.picture.pixmap().width() == 640
    qtbot.keyClick(viewer, Qt.Key.Key_Plus)
    assert viewer.zoom == 1.5 and viewer.picture.pixmap().width() == 960
    qtbot.keyClick(viewer, Qt.Key.Key_Minus)
    qtbot.keyClick(viewer, Qt.Key.Key_Minus)
    assert viewer.zoom == pytest.approx(0.67) and viewer.picture.pixmap().width() == round(640 * 0.67)
    qtbot.keyClick(viewer, Qt.Key.Key_0)
    assert viewer.zoom is None and viewer.picture.pixmap().width() == fitted
    for _ in range(20):
        qtbot.keyClick(viewer, Qt.Key.Key_Minus)
    assert viewer.zoom == 0.1  # the smallest step, not below


def test_a_damaged_or_missing_photo_says_why_and_the_others_still_show(qtbot, viewer, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "gone.jpg"
    viewer.show_photos([(1, str(broken)), (2, str(missing)), photos[0]], 0)
    _shown(qtbot, viewer, 0)
    assert viewer.error() and viewer.picture.text().startswith("Cannot show this photo:")
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    _shown(qtbot, viewer, 1)
    assert "not found" in viewer.error()
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    _shown(qtbot, viewer, 2)
    assert viewer.error() is None and viewer.picture.pixmap().width() > 0


def test_escape_and_space_close(qtbot, viewer, photos):
    viewer.show_photos(photos, 0)
    _shown(qtbot, viewer, 0)
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    assert not viewer.isVisible()
    viewer.show_photos(photos, 0)
    assert viewer.isVisible()
    qtbot.keyClick(viewer, Qt.Key.Key_Space)
    assert not viewer.isVisible()


def test_an_empty_list_opens_nothing(qtbot, viewer):
    viewer.show_photos([], 0)
    assert not viewer.isVisible() and viewer.current is None


def test_huge_photos_are_scaled_to_the_largest_side_shown(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("RGB", (MAX_SIDE * 2, 100), "white").save(path)
    image = decode_for_viewing(str(path))
    assert image.width() == MAX_SIDE and image.height() == 50
