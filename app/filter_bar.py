"""The filter row under the search bar: one library folder, and a range of days the photos were taken.

Filters combine with whatever is searched (text, an example photo, both): "a red car" in the folder
"trips", taken in July 2023. A photo without an EXIF date counts by its file's date.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import QComboBox, QDateEdit, QHBoxLayout, QLabel, QPushButton, QWidget

from core.query import PhotoFilter

ANY_DAY = QDate(1900, 1, 1)  # the dates' lowest value, shown as "any day"


class FilterBar(QWidget):
    """Folder and date filters; :attr:`changed` carries the :class:`PhotoFilter` (None: no filter)."""

    changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("filterBar")
        self.folder_combo = QComboBox()
        self.folder_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.folder_combo.setMinimumContentsLength(12)
        self.folder_combo.setToolTip("Only photos of one library folder")
        self.folder_combo.addItem("All folders", None)
        self.from_edit = self._date_edit("Only photos taken on or after this day")
        self.to_edit = self._date_edit("Only photos taken on or before this day")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Search every photo again")
        self.clear_button.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Folder:"))
        layout.addWidget(self.folder_combo, 1)
        layout.addWidget(QLabel("Taken:"))
        layout.addWidget(self.from_edit)
        layout.addWidget(QLabel("to"))
        layout.addWidget(self.to_edit)
        layout.addWidget(self.clear_button)
        self._last: PhotoFilter | None = None
        self.folder_combo.currentIndexChanged.connect(self._emit)
        self.from_edit.dateChanged.connect(self._emit)
        self.to_edit.dateChanged.connect(self._emit)
        self._update_clear()

    def _date_edit(self, tip: str) -> QDateEdit:
        edit = QDateEdit()
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd")
        edit.setMinimumDate(ANY_DAY)
        edit.setSpecialValueText("any day")  # shown at the minimum date
        edit.setDate(ANY_DAY)
        edit.setToolTip(tip + " (photos without an EXIF date count by their file's date)")
        return edit

    # ------------------------------------------------------------------ public

    def set_folders(self, paths: Sequence[str]) -> None:
        """The library's folders to choose from (the choice is kept while its folder exists)."""
        current = self.folder_combo.currentData()
        wanted = [None, *paths]
        have = [self.folder_combo.itemData(i) for i in range(self.folder_combo.count())]
        if have == wanted:
            return
        self.folder_combo.blockSignals(True)
        try:
            self.folder_combo.clear()
            self.folder_combo.addItem("All folders", None)
            for path in paths:
                self.folder_combo.addItem(os.path.basename(path.rstrip("/\\")) or path, path)
                self.folder_combo.setItemData(
                    self.folder_combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole
                )
            index = self.folder_combo.findData(current) if current in paths else 0
            self.folder_combo.setCurrentIndex(max(index, 0))
        finally:
            self.folder_combo.blockSignals(False)
        if current is not None and current not in paths:
            self._emit()  # the folder chosen is gone

    def set_filter(self, where: PhotoFilter | None) -> None:
        """Show ``where`` (emits :attr:`changed` when it differs from what was shown)."""
        where = where or PhotoFilter()
        folder = where.folders[0] if where.folders else None
        self.folder_combo.setCurrentIndex(max(self.folder_combo.findData(folder), 0) if folder else 0)
        self.from_edit.setDate(
            QDate.fromString(where.taken_from, "yyyy-MM-dd") if where.taken_from else ANY_DAY
        )
        self.to_edit.setDate(QDate.fromString(where.taken_to, "yyyy-MM-dd") if where.taken_to else ANY_DAY)

    def photo_filter(self) -> PhotoFilter | None:
        """The filter shown, or None when it keeps every photo. A range given backwards is
        read the right way round."""
        folder = self.folder_combo.currentData()
        taken_from, taken_to = self._day(self.from_edit), self._day(self.to_edit)
        if taken_from and taken_to and taken_from > taken_to:
            taken_from, taken_to = taken_to, taken_from
        where = PhotoFilter((folder,) if folder else (), taken_from, taken_to)
        return None if where.is_empty else where

    def clear(self) -> None:
        self.set_filter(None)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _day(edit: QDateEdit) -> str | None:
        return None if edit.date() == ANY_DAY else edit.date().toString("yyyy-MM-dd")

    def _emit(self, *_args) -> None:
        where = self.photo_filter()
        self._update_clear()
        if where != self._last:
            self._last = where
            self.changed.emit(where)

    def _update_clear(self) -> None:
        self.clear_button.setEnabled(self.photo_filter() is not None)
