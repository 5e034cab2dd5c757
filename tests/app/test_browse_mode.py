"""Browsing without a query: photos by month or by folder, filters, and searches taking over."""

from __future__ import annotations

from types import SimpleNamespace

from PySide6.QtCore import Qt

from app.browse_mode import browse_summary, group_photos, month_label
from core.query import PhotoFilter
from tests.app.test_main_window import _index_folder, _search_typed


def _photo(pid, day, folder="/p/trips"):
    return SimpleNamespace(photo_id=pid, path=f"{folder}/{pid}.jpg", day=day, folder=folder)


def test_groups_by_month_or_folder_in_the_order_given():
    photos = [
        _photo(1, "2023-07-30"),
        _photo(2, "2023-07-01"),
        _photo(3, "2023-06-11"),
        _photo(4, "2021-12-24"),
    ]
    groups = group_photos(photos, "date")
    assert [(label, [r.photo_id for r in rows]) for label, rows in groups] == [
        ("July 2023", [1, 2]),
        ("June 2023", [3]),
        ("December 2021", [4]),
    ]
    assert groups[0][1][0].note == "2023-07-30"
    by_folder = group_photos([_photo(1, "2023-01-01", "/p/a"), _photo(2, "2023-01-01", "/p/b/")], "folder")
    assert [label for label, _ in by_folder] == ["a", "b"]
    assert month_label("") == "No date" and month_label("2023-13-01") == "2023-13-01"


def test_the_summary_says_how_many_there_are():
    assert browse_summary(12, 12, "date", None) == "All 12 photos, newest first"
    july = PhotoFilter(taken_from="2023-07-01", taken_to="2023-07-31")
    assert browse_summary(3000, 12345, "date", july) == (
        "The newest 3,000 of 12,345 photos taken 2023-07-01 to 2023-07-31, newest first (Filters narrow them)"
    )
    assert browse_summary(0, 0, "folder", None) == "No photos."


def test_all_photos_when_nothing_is_searched(window, photos, qtbot):
    _index_folder(qtbot, window, photos)
    model, browse = window.results_model, window.browse
    assert model.rowCount() == 0  # off by default: an empty grid until something is searched
    qtbot.keyClick(
        window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert browse.action.isChecked() and browse.sort_combo.isVisible()
    qtbot.waitUntil(lambda: browse.showing, timeout=10_000)
    total = window.session.library.status().photos
    assert len(model.photo_rows()) == total and not window.tier_plot.isVisible()
    assert window.results_summary.text() == f"All {total} photos, newest first"
    days = [model.row(r).note for r in model.photo_rows()]
    assert days == sorted(days, reverse=True)
    # By folder: grouped by the folders' names.
    browse.sort_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: window.results_summary.text().endswith("by folder"), timeout=10_000)
    # A search takes over the grid; clearing it comes back to the photos.
    result = _search_typed(qtbot, window, "red car")
    assert not browse.showing and len(model.photo_rows()) == len(result.hits) and window.tier_plot.isVisible()
    qtbot.keyClick(window.results_view, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: browse.showing and len(model.photo_rows()) == total, timeout=10_000)
    # Filters apply while browsing.
    window.filter_action.setChecked(True)
    first_folder = window.session.folders()[0].path
    window.filter_bar.set_filter(PhotoFilter(folders=(first_folder,), taken_to="1990-01-01"))
    qtbot.waitUntil(lambda: window.grid_stack.currentWidget() is window.empty_label, timeout=10_000)
    assert window.results_summary.text().startswith("No photos in ")
    # Off again: the grid empties, and the choice is remembered.
    window.filter_action.setChecked(False)
    browse.action.setChecked(False)
    assert model.rowCount() == 0
    window.save_state()
    assert window.settings.value("view/browse") in (False, "false")
