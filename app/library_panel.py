"""The library panel: folders and their state, indexing progress, and the files that failed."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)

PHASE_TEXT = {
    "wait": "Waiting for another LadderLens indexing this library",
    "scan": "Looking for photos",
    "embed": "Reading photos",
    "sweep": "Tidying up",
    "index": "Updating the search index",
    "done": "Done",
    "demo": "Making the demo photos",
    "model": "Loading the model",
}


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def progress_text(progress: Any) -> str:
    """One line for an ``IndexProgress``-like record: phase, counts, rate, time left."""
    phase = str(getattr(progress, "phase", ""))
    parts = [PHASE_TEXT.get(phase, phase.capitalize())]
    done = getattr(progress, "done", None)
    total = getattr(progress, "total", None)
    if done is not None and total:
        parts.append(f"{done:,} of {total:,}")
    elif done:
        parts.append(f"{done:,}")
    rate = getattr(progress, "rate", None)
    if rate:
        parts.append(f"{rate:.0f} photos/s" if rate >= 10 else f"{rate:.1f} photos/s")
    eta = format_duration(getattr(progress, "eta_s", None))
    if eta:
        parts.append(f"about {eta} left")
    failed = getattr(progress, "failed", 0) or 0
    if failed:
        parts.append(f"{failed} failed")
    return " · ".join(parts)


def report_text(report: Any) -> str:
    """One line summing up an ``IndexReport``-like record."""
    head = "Indexing stopped" if getattr(report, "cancelled", False) else "Library up to date"
    parts = []
    embedded = getattr(report, "embedded", 0) or 0
    reused = getattr(report, "reused", 0) or 0
    failed = getattr(report, "failed", 0) or 0
    removed = getattr(report, "removed", 0) or 0
    if embedded:
        parts.append(f"{embedded:,} new")
    if reused:
        parts.append(f"{reused:,} recognised")
    if removed:
        parts.append(f"{removed:,} removed")
    if failed:
        parts.append(f"{failed:,} could not be read")
    offline = getattr(report, "offline_folders", None) or []
    if offline:
        parts.append(f"{len(offline)} folder{'s' if len(offline) != 1 else ''} offline")
    elapsed = format_duration(getattr(report, "elapsed_s", None))
    if elapsed:
        parts.append(f"in {elapsed}")
    return head + (": " + ", ".join(parts) if parts else "")


def _last_scan_text(value: Any) -> str:
    if value is None or value == "":
        return "never"
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value)).strftime("%Y-%m-%d %H:%M")
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value).replace("T", " ")[:16]


def _set_item_data(item: QStandardItem, role: int, value: Any) -> None:
    """Set a role of an item only when it changes (no needless repaint)."""
    if item.data(role) != value:
        item.setData(value, role)


class FoldersModel(QStandardItemModel):
    """The library's folders: name, searchable photos, failures, state (details in the tooltip).

    The values live in Qt's item model: views read them without calling into Python (each call
    from Qt into Python waits for the interpreter lock, which indexing threads hold often), and a
    refresh with the same folders updates the cells that changed instead of resetting the table,
    so the selected folder stays selected.
    """

    HEADERS = ("Folder", "Photos", "Failed", "State")
    OFFLINE_COLOR = QColor("#b25a00")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(list(self.HEADERS))
        self._folders: list[Any] = []

    def set_folders(self, folders: Sequence[Any]) -> None:
        folders = list(folders)
        if [str(f.path) for f in folders] != self.paths():
            self.setRowCount(0)
            self.setRowCount(len(folders))
            for r in range(len(folders)):
                for c in range(len(self.HEADERS)):
                    self.setItem(r, c, QStandardItem())
        self._folders = folders
        for r, f in enumerate(folders):
            self._fill_row(r, f)

    def _fill_row(self, row: int, f: Any) -> None:
        offline = str(getattr(f, "state", "online")) == "offline"
        photos = int(getattr(f, "photos", 0) or 0)
        indexed = int(getattr(f, "indexed", photos) or 0)
        texts = (
            os.path.basename(os.path.normpath(str(f.path))) or str(f.path),
            f"{indexed:,}" if indexed == photos else f"{indexed:,} / {photos:,}",
            f"{int(getattr(f, 'failures', 0) or 0):,}",
            "offline" if offline else "online",
        )
        lines = [str(f.path), f"{indexed:,} of {photos:,} photos searchable"]
        lines.append(f"last scan: {_last_scan_text(getattr(f, 'last_scan', None))}")
        if offline:
            lines.append("This folder cannot be reached (a disconnected drive?). Its photos stay searchable.")
        tip = "\n".join(lines)
        right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for col, text in enumerate(texts):
            item = self.item(row, col)
            item.setEditable(False)
            _set_item_data(item, Qt.ItemDataRole.DisplayRole, text)
            _set_item_data(item, Qt.ItemDataRole.ToolTipRole, tip)
            _set_item_data(item, Qt.ItemDataRole.ForegroundRole, self.OFFLINE_COLOR if offline else None)
            if col in (1, 2):
                _set_item_data(item, Qt.ItemDataRole.TextAlignmentRole, right)

    def folder(self, row: int) -> Any:
        return self._folders[row]

    def paths(self) -> list[str]:
        return [str(f.path) for f in self._folders]


class FailuresModel(QStandardItemModel):
    """Files that could not be indexed, and why (values held by Qt, as in :class:`FoldersModel`)."""

    HEADERS = ("File", "Reason")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(list(self.HEADERS))
        self._rows: list[tuple[str, str]] = []

    def set_failures(self, failures: Sequence[Any]) -> None:
        rows = [(str(f.path), str(f.reason)) for f in failures]
        if rows == self._rows:
            return  # unchanged: the list is not rebuilt (it can be long)
        self._rows = rows
        self.setRowCount(0)
        for path, reason in rows:
            tip = f"{path}\n{reason}"
            items = [QStandardItem(os.path.basename(path)), QStandardItem(reason)]
            for item in items:
                item.setToolTip(tip)
                item.setEditable(False)
            self.appendRow(items)

    def reasons(self) -> dict[str, str]:
        return dict(self._rows)


class IndexProgressBox(QWidget):
    """Progress bar, a line of text (phase, counts, rate, time left) and a Cancel button."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing; what is done so far is kept")
        self.cancel_button.clicked.connect(self._on_cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.label)
        self.set_idle("")

    def set_running(self, text: str = "Starting…") -> None:
        self.bar.show()
        self.bar.setRange(0, 0)
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.label.setText(text)

    def show_progress(self, progress: Any) -> None:
        done = getattr(progress, "done", None)
        total = getattr(progress, "total", None)
        if total:
            self.bar.setRange(0, int(total))
            self.bar.setValue(min(int(done or 0), int(total)))
        else:
            self.bar.setRange(0, 0)
        self.label.setText(progress_text(progress))

    def set_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText("Stopping after the current batch…")

    def set_idle(self, text: str) -> None:
        self.bar.hide()
        self.cancel_button.hide()
        self.label.setText(text)
        self.label.setVisible(bool(text))

    def _on_cancel(self) -> None:
        self.set_cancelling()
        self.cancel_requested.emit()


class LibraryPanel(QWidget):
    """Folders (add, remove, re-scan), indexing progress and failures. Holds no library logic."""

    folder_chosen = Signal(str)
    remove_requested = Signal(str)
    rescan_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folders_model = FoldersModel(self)
        self.failures_model = FailuresModel(self)

        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self._build_folders_view()
        buttons = self._build_folder_buttons()
        self.progress = IndexProgressBox()
        self.progress.cancel_requested.connect(self.cancel_requested)
        self._build_failures_box()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 8)
        layout.addWidget(self.summary)
        layout.addWidget(self.folders_view)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.failures_box, 1)
        layout.addStretch(0)
        self.folders_view.selectionModel().selectionChanged.connect(self._update_buttons)
        self._fit_folders_height()
        self._indexing = False
        self._update_buttons()

    # ------------------------------------------------------------------ construction

    def _build_folders_view(self) -> None:
        """The table of folders: one row each, the path stretched, the counts as wide as they need."""
        self.folders_view = QTableView()
        self.folders_view.setTabKeyNavigation(False)  # Tab leaves the table; arrows move in it
        self.folders_view.setModel(self.folders_model)
        self.folders_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.folders_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.folders_view.verticalHeader().hide()
        self.folders_view.setShowGrid(False)
        self.folders_view.setAlternatingRowColors(True)
        self.folders_view.setWordWrap(False)
        header = self.folders_view.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(FoldersModel.HEADERS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.folders_view.setAccessibleName("Library folders")

    def _build_folder_buttons(self) -> QHBoxLayout:
        """Add folder, Remove and Re-scan, in a row under the folders."""
        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the folder from the library (the photos stay on disk)")
        self.rescan_button = QPushButton("Re-scan")
        self.rescan_button.setToolTip("Look for new, changed and deleted photos in every folder")
        self.add_button.clicked.connect(self.choose_folder)
        self.remove_button.clicked.connect(self._on_remove)
        self.rescan_button.clicked.connect(self.rescan_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.rescan_button)
        buttons.addStretch(1)
        return buttons

    def _build_failures_box(self) -> None:
        """The files that could not be read, in a box hidden while there are none."""
        self.failures_box = QGroupBox("Files that could not be read")
        self.failures_view = QTableView()
        self.failures_view.setTabKeyNavigation(False)
        self.failures_view.setModel(self.failures_model)
        self.failures_view.verticalHeader().hide()
        self.failures_view.setShowGrid(False)
        self.failures_view.setWordWrap(False)
        self.failures_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        fh = self.failures_view.horizontalHeader()
        fh.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        fh.setStretchLastSection(True)
        self.failures_view.setAccessibleName("Files that could not be read")
        fl = QVBoxLayout(self.failures_box)
        fl.addWidget(self.failures_view)
        self.failures_box.hide()

    # ------------------------------------------------------------------ state in

    def set_folders(self, folders: Sequence[Any]) -> None:
        self.folders_model.set_folders(folders)
        self._fit_folders_height()
        self._update_buttons()

    def _fit_folders_height(self) -> None:
        """As tall as its rows (between 3 and 10 of them): the space left goes to the failures list."""
        view = self.folders_view
        rows = min(max(self.folders_model.rowCount(), 3), 10)
        row_height = view.verticalHeader().defaultSectionSize()
        frame = 2 * view.frameWidth()
        view.setFixedHeight(view.horizontalHeader().sizeHint().height() + rows * row_height + frame)

    def set_failures(self, failures: Sequence[Any]) -> None:
        self.failures_model.set_failures(failures)
        self.failures_box.setTitle(f"Files that could not be read ({len(failures):,})")
        self.failures_box.setVisible(bool(failures))
        if failures:
            self.failures_view.resizeColumnToContents(0)

    def set_summary(self, text: str) -> None:
        self.summary.setText(text)

    def set_indexing(self, running: bool) -> None:
        self._indexing = running
        if running:
            self.progress.set_running()
        self._update_buttons()

    # ------------------------------------------------------------------ user actions

    def selected_folder(self) -> str | None:
        rows = self.folders_view.selectionModel().selectedRows()
        if not rows:
            return None
        return str(self.folders_model.folder(rows[0].row()).path)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.folder_chosen.emit(path)

    def _on_remove(self) -> None:
        path = self.selected_folder()
        if path is None:
            return
        answer = QMessageBox.question(
            self,
            "Remove folder",
            f"Remove {path} from the library?\n\nThe photos stay on disk; they are no longer searched.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_requested.emit(path)

    def _update_buttons(self) -> None:
        has_folders = self.folders_model.rowCount() > 0
        self.remove_button.setEnabled(self.selected_folder() is not None and not self._indexing)
        self.rescan_button.setEnabled(has_folders and not self._indexing)
