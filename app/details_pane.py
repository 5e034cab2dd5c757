"""The details pane: a larger preview of one photo, its facts and what can be done with it."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QKeySequence, QPixmap, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.results_model import differs_text, format_score, format_z
from app.thumbnails import ThumbnailLoader

logger = logging.getLogger(__name__)

PREVIEW_SIDE = 480


@dataclass(frozen=True)
class PhotoDetails:
    """Everything the pane shows about one photo (plain values)."""

    photo_id: int
    path: str
    size: int | None = None
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    score: float = math.nan
    z: float = math.nan
    tier: int = 0
    tier_label: str = ""
    differs: tuple[str, ...] | None = None  # what it gets wrong of the query; None: not checked


def format_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


class _Preview(QLabel):
    """A label that scales its pixmap to fit, keeping the aspect ratio."""

    def __init__(self) -> None:
        super().__init__()
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(160, 120))
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setFrameShape(QFrame.Shape.NoFrame)

    def set_image(self, pixmap: QPixmap | None, message: str = "") -> None:
        self._pixmap = pixmap
        if pixmap is None:
            self.clear()
            self.setText(message)
        else:
            self._rescale()
        self.updateGeometry()

    def hasHeightForWidth(self) -> bool:
        return True

    def minimumSizeHint(self) -> QSize:
        # A label's hint is its pixmap's size, and the pixmap is scaled to the label: without this
        # the pane could never become narrower than the widest it has been.
        return self.minimumSize()

    def heightForWidth(self, width: int) -> int:
        """As tall as the photo at this width (4:3 until a photo is shown), within limits."""
        if self._pixmap is None or self._pixmap.width() == 0:
            return max(160, width * 3 // 4)
        return max(120, min(width * self._pixmap.height() // self._pixmap.width(), 2 * width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            return
        target = self.contentsRect().size()
        self.setPixmap(
            self._pixmap.scaled(
                target, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )


class DetailsPane(QWidget):
    """Shows one photo; its buttons open it, show its folder, copy its path or search for similar photos."""

    more_like_this = Signal(int)  # photo id
    not_like_this = Signal(int)  # photo id: the search moves away from it
    closed = Signal()
    tags_added = Signal(int, list)  # photo id, tags as typed (the library normalises them)
    tags_removed = Signal(int, list)  # photo id, tags given in the app

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._thumbnails = thumbnails
        self._details: PhotoDetails | None = None
        self._tags: Any = None
        self.setMinimumWidth(220)

        self.preview = _Preview()
        self._build_name_label()
        form = self._build_facts_form()
        self._add_tag_rows(form)
        buttons = self._build_buttons()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.preview)
        layout.addWidget(self.name_label)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addStretch(1)
        thumbnails.ready.connect(self._on_thumbnail)
        thumbnails.failed.connect(self._on_thumbnail)
        self.show_details(None)

    # ------------------------------------------------------------------ construction

    def _build_name_label(self) -> None:
        """The file name, bold and a little larger, selectable."""
        self.name_label = QLabel()
        self.name_label.setTextFormat(Qt.TextFormat.PlainText)  # file names are not markup
        self.name_label.setWordWrap(True)
        font = self.name_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.name_label.setFont(font)
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def _build_facts_form(self) -> QFormLayout:
        """The photo's folder, date and size, and its score, z and tier for the current query."""
        self.path_value = QLabel()
        self.path_value.setTextFormat(Qt.TextFormat.PlainText)
        self.path_value.setWordWrap(True)
        self.path_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.date_value = QLabel()
        self.size_value = QLabel()
        self.score_value = QLabel()
        self.z_value = QLabel()
        self.tier_value = QLabel()
        self.tier_value.setWordWrap(True)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.addRow("Folder", self.path_value)
        form.addRow("Taken", self.date_value)
        form.addRow("Size", self.size_value)
        form.addRow("Score", self.score_value)
        form.addRow("z", self.z_value)
        form.addRow("Tier", self.tier_value)
        self.z_value.setToolTip("How far above this query's typical score, in standard deviations")
        return form

    def _add_tag_rows(self, form: QFormLayout) -> None:
        """Tags: those on disk (folders, tags.txt, XMP) are shown; those given here can be edited."""
        self.disk_tags_value = QLabel()
        self.disk_tags_value.setTextFormat(Qt.TextFormat.PlainText)
        self.disk_tags_value.setWordWrap(True)
        self.disk_tags_value.setToolTip("From the photo's folder names, tags.txt files and XMP sidecar")
        self.given_tags = QListWidget()
        self.given_tags.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.given_tags.setMaximumHeight(72)
        self.given_tags.setToolTip("Tags given here; fine-tuning learns them too. Delete removes them.")
        self.remove_tags_button = QPushButton("Remove")
        self.remove_tags_button.setEnabled(False)
        self.tag_edit = QLineEdit()
        self.tag_edit.setPlaceholderText("Add tags, comma separated")
        self.tag_edit.setClearButtonEnabled(True)
        self.tag_edit.returnPressed.connect(self._on_tags_typed)
        self.remove_tags_button.clicked.connect(self._remove_selected_tags)
        self.given_tags.itemSelectionChanged.connect(
            lambda: self.remove_tags_button.setEnabled(bool(self.given_tags.selectedItems()))
        )
        QShortcut(QKeySequence.StandardKey.Delete, self.given_tags, self._remove_selected_tags)
        given_row = QHBoxLayout()
        given_row.setContentsMargins(0, 0, 0, 0)
        given_row.addWidget(self.given_tags, 1)
        given_row.addWidget(self.remove_tags_button, 0, Qt.AlignmentFlag.AlignTop)
        form.addRow("Tags", self.disk_tags_value)
        form.addRow("Your tags", given_row)
        form.addRow("", self.tag_edit)

    def _build_buttons(self) -> QGridLayout:
        """Two columns, so the pane stays narrow: Open, Show in folder; Copy path, More like
        this; Not like this."""
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the photo in the default viewer")
        self.folder_button = QPushButton("Show in folder")
        self.copy_button = QPushButton("Copy path")
        self.like_button = QPushButton("More like this")
        self.like_button.setToolTip(
            "Search for photos that look like this one (with the words typed, if any)"
        )
        self.unlike_button = QPushButton("Not like this")
        self.unlike_button.setToolTip("Keep searching for the words typed, away from photos like this one")
        self.open_button.clicked.connect(self.open_photo)
        self.folder_button.clicked.connect(self.show_in_folder)
        self.copy_button.clicked.connect(self.copy_path)
        self.like_button.clicked.connect(self._on_more_like_this)
        self.unlike_button.clicked.connect(self._on_not_like_this)
        grid = QGridLayout()
        order = (self.open_button, self.folder_button, self.copy_button, self.like_button, self.unlike_button)
        for i, button in enumerate(order):
            grid.addWidget(button, i // 2, i % 2)
        return grid

    # ------------------------------------------------------------------ the photo shown

    @property
    def details(self) -> PhotoDetails | None:
        return self._details

    def show_details(self, details: PhotoDetails | None) -> None:
        if details is None or self._details is None or details.photo_id != self._details.photo_id:
            self.set_tags(None)  # until the new photo's tags are read
        self._details = details
        self.tag_edit.setEnabled(details is not None)
        for button in (
            self.open_button,
            self.folder_button,
            self.copy_button,
            self.like_button,
            self.unlike_button,
        ):
            button.setEnabled(details is not None)
        if details is None:
            self.preview.set_image(None, "Select a photo to see it here.")
            for label in (self.name_label, self.path_value, self.date_value, self.size_value):
                label.clear()
            for label in (self.score_value, self.z_value, self.tier_value):
                label.clear()
            return
        path = Path(details.path)
        self.name_label.setText(path.name)
        self.path_value.setText(str(path.parent))
        self.path_value.setToolTip(details.path)
        self.date_value.setText(_format_date(details.taken_at))
        dims = f"{details.width} × {details.height} px" if details.width and details.height else ""
        self.size_value.setText(
            ", ".join(p for p in (dims, format_bytes(details.size)) if p and p != "–") or "–"
        )
        self.score_value.setText(format_score(details.score))
        self.z_value.setText(format_z(details.z))
        if details.tier:
            tier = f"{details.tier} · {details.tier_label}"
        else:  # below the graded tiers, or unknown
            tier = f"below the tiers ({details.tier_label})" if details.tier_label else "–"
        # What this photo gets wrong of the query, when that was checked: a tier is named for most
        # of its photos and keeps to the score order, so one photo's details can differ from its name.
        differs = differs_text(details.differs)
        self.tier_value.setText(f"{tier}\n{differs[0].upper()}{differs[1:]}" if differs else tier)
        self._load_preview()

    def _load_preview(self) -> None:
        if self._details is None:
            return
        pix = self._thumbnails.pixmap(self._details.path, PREVIEW_SIDE)
        if pix is not None:
            self.preview.set_image(pix)
            return
        error = self._thumbnails.error(self._details.path, PREVIEW_SIDE)
        self.preview.set_image(None, f"No preview: {error}" if error else "Loading preview…")

    def _on_thumbnail(self, path: str, side: int, *_: object) -> None:
        if self._details is not None and side == PREVIEW_SIDE and path == self._details.path:
            self._load_preview()

    # ------------------------------------------------------------------ tags

    def set_tags(self, tags: Any) -> None:
        """Show a photo's tags (a ``core.library.PhotoTags``; ignored unless it is the photo shown;
        ``None`` clears them)."""
        if tags is not None and (self._details is None or tags.photo_id != self._details.photo_id):
            return
        self._tags = tags
        self.given_tags.clear()
        if tags is None:
            self.disk_tags_value.setText("")
            return
        self.disk_tags_value.setText(", ".join(tags.on_disk) or "–")
        self.given_tags.addItems(list(tags.given))

    @property
    def tags(self) -> Any:
        return self._tags

    def _on_tags_typed(self) -> None:
        parts = [part.strip() for part in self.tag_edit.text().split(",")]
        parts = [part for part in parts if part]
        if self._details is None or not parts:
            return
        self.tag_edit.clear()
        self.tags_added.emit(self._details.photo_id, parts)

    def _remove_selected_tags(self) -> None:
        chosen = [item.text() for item in self.given_tags.selectedItems()]
        if self._details is not None and chosen:
            self.tags_removed.emit(self._details.photo_id, chosen)

    # ------------------------------------------------------------------ actions

    def open_photo(self) -> bool:
        if self._details is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(self._details.path))

    def show_in_folder(self) -> bool:
        if self._details is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(self._details.path)))

    def copy_path(self) -> None:
        if self._details is not None:
            QGuiApplication.clipboard().setText(self._details.path)

    def _on_more_like_this(self) -> None:
        if self._details is not None:
            self.more_like_this.emit(self._details.photo_id)

    def _on_not_like_this(self) -> None:
        if self._details is not None:
            self.not_like_this.emit(self._details.photo_id)


def _format_date(taken_at: str | None) -> str:
    if not taken_at:
        return "–"
    return taken_at.replace("T", " ")
