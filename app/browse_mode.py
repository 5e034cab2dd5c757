"""Browsing without a query: the library's photos in the grid, newest first by month or by folder.

*View ▸ All photos* (Ctrl+Shift+A, or the *All photos* button) shows them whenever nothing is
searched; typing a query shows its results instead, and clearing it comes back here. The filter row
applies too. At most :data:`app.session.BROWSE_LIMIT` photos are listed (the summary says how many
there are in all, and that Filters narrow them).
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QToolButton

from app.results_model import PhotoRow
from app.session import BrowseRequest

ORDERS = (("date", "Newest first"), ("folder", "By folder"))


def month_label(day: str) -> str:
    """ "July 2023" for "2023-07-15" (the day as given when it is not a date)."""
    try:
        year, month = int(day[:4]), int(day[5:7])
        return f"{calendar.month_name[month]} {year}"
    except (ValueError, IndexError):
        return day or "No date"


def group_photos(photos: Sequence[Any], order: str) -> list[tuple[str, list[PhotoRow]]]:
    """The photos (``BrowsedPhoto``: photo_id, path, day, folder) in groups, in their order: by month
    for "date", by folder for "folder"."""

    def key(p: Any) -> str:
        return (
            month_label(p.day) if order == "date" else (os.path.basename(p.folder.rstrip("/\\")) or p.folder)
        )

    nan = float("nan")
    return [
        (label, [PhotoRow(p.photo_id, p.path, nan, nan, 0, note=p.day) for p in members])
        for label, members in ((k, list(g)) for k, g in groupby(photos, key=key))
    ]


def browse_summary(shown: int, total: int, order: str, where: Any) -> str:
    """E.g. "All 1,234 photos, newest first", or "The newest 3,000 of 12,345 photos, ..."."""
    how = "newest first" if order == "date" else "by folder"
    scope = f" {where.describe()}" if where is not None else ""
    if total == 0:
        return f"No photos{scope}."
    if shown >= total:
        return f"All {total:,} photo{'s' if total != 1 else ''}{scope}, {how}"
    first = "The newest" if order == "date" else "The first"
    return f"{first} {shown:,} of {total:,} photos{scope}, {how} (Filters narrow them)"


class BrowseMode(QObject):
    """The *All photos* mode of a window (its grid, summary, filter bar, search bar and session)."""

    def __init__(self, window: Any, settings: QSettings) -> None:
        super().__init__(window)
        self.window = window
        self.settings = settings
        self._seq = 0
        self.showing = False  # the grid shows browsed photos now
        self.action = QAction("&All photos", window, checkable=True)
        self.action.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.action.setToolTip("Show the library's photos while nothing is searched (Ctrl+Shift+A)")
        self.button = QToolButton()
        self.button.setDefaultAction(self.action)
        self.sort_combo = QComboBox()
        for order, label in ORDERS:
            self.sort_combo.addItem(label, order)
        self.sort_combo.setToolTip("How photos are listed while nothing is searched")
        self.sort_combo.setVisible(False)
        on = settings.value("view/browse", False)
        self.action.setChecked(on is True or str(on).lower() in ("1", "true", "yes"))
        self.sort_combo.setVisible(self.action.isChecked())
        order = settings.value("view/browse_order", "date")
        self.sort_combo.setCurrentIndex(max(self.sort_combo.findData(order), 0))
        self.action.toggled.connect(self._on_toggled)
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        window.session.browse_finished.connect(self._on_finished)
        window.session.browse_failed.connect(window.show_error)

    @property
    def order(self) -> str:
        return str(self.sort_combo.currentData())

    def idle(self) -> bool:
        """Nothing is searched: no words and no example photo."""
        w = self.window
        return not w.search_bar.text().strip() and w._photo_query is None

    def refresh(self) -> bool:
        """List the photos again when browsing and nothing is searched; True when asked for."""
        if not self.action.isChecked() or not self.idle():
            return False
        self._seq += 1
        request = BrowseRequest(order=self.order, where=self.window.filter_bar.photo_filter(), seq=self._seq)
        self.window.session.browse(request)
        return True

    def leave(self) -> None:
        """A search takes over the grid."""
        self.showing = False

    def save(self) -> None:
        self.settings.setValue("view/browse", self.action.isChecked())
        self.settings.setValue("view/browse_order", self.order)

    def _on_toggled(self, on: bool) -> None:
        self.sort_combo.setVisible(on)
        if on:
            self.refresh()
        elif self.showing:
            self.showing = False
            self.window.clear_results()

    def _on_finished(self, request: BrowseRequest, page: tuple[list[Any], int]) -> None:
        if request.seq != self._seq or not self.action.isChecked() or not self.idle():
            return  # a newer listing, or a search, has the grid now
        photos, total = page
        w = self.window
        w.results_model.set_browse(group_photos(photos, request.order))
        w.tier_plot.setVisible(False)  # no scores to show
        w.results_summary.setText(browse_summary(len(photos), total, request.order, request.where))
        self.showing = True
        w.grid_stack.setCurrentWidget(w.results_view if photos else w.empty_label)
        if not photos:
            w.empty_label.setText("No photos here." if request.where is not None else "No photos yet.")
