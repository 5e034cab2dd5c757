"""The filter row: a folder and a range of days, as a PhotoFilter."""

from __future__ import annotations

from PySide6.QtCore import QDate

from app.filter_bar import ANY_DAY, FilterBar
from core.query import PhotoFilter


def test_folder_and_days_make_one_filter_and_clear_resets_it(qtbot):
    bar = FilterBar()
    qtbot.addWidget(bar)
    seen = []
    bar.changed.connect(seen.append)
    assert bar.photo_filter() is None and not bar.clear_button.isEnabled()
    bar.set_folders(["/photos/trips", "/photos/home"])
    assert [bar.folder_combo.itemText(i) for i in range(3)] == ["All folders", "trips", "home"]
    bar.folder_combo.setCurrentIndex(1)
    bar.from_edit.setDate(QDate(2023, 7, 1))
    bar.to_edit.setDate(QDate(2023, 7, 31))
    want = PhotoFilter(("/photos/trips",), "2023-07-01", "2023-07-31")
    assert bar.photo_filter() == want and seen[-1] == want and bar.clear_button.isEnabled()
    assert len(seen) == 3  # one per change
    bar.to_edit.setDate(QDate(2023, 6, 1))  # backwards: read the right way round
    assert bar.photo_filter() == PhotoFilter(("/photos/trips",), "2023-06-01", "2023-07-01")
    bar.clear()
    assert bar.photo_filter() is None and seen[-1] is None
    assert bar.from_edit.date() == ANY_DAY and bar.from_edit.text() == "any day"


def test_a_folder_that_goes_away_drops_out_of_the_filter(qtbot):
    bar = FilterBar()
    qtbot.addWidget(bar)
    bar.set_folders(["/photos/trips", "/photos/home"])
    bar.set_filter(PhotoFilter(("/photos/home",)))
    assert bar.photo_filter() == PhotoFilter(("/photos/home",))
    with qtbot.waitSignal(bar.changed) as blocker:
        bar.set_folders(["/photos/trips"])
    assert blocker.args == [None] and bar.photo_filter() is None
    bar.set_folders(["/photos/trips"])  # the same list: nothing changes
    assert bar.folder_combo.count() == 2
