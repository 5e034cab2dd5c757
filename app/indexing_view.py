"""What the main area shows while a library is read and nothing is searched yet: the stage, how far
it is (counts, speed, time left), and the photos just read, as they arrive."""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QProgressBar, QVBoxLayout, QWidget

from app.library_panel import PHASE_TEXT, progress_text

RECENT = 24  # photos just read, shown newest first
THUMB = 96


class IndexingView(QWidget):
    """Fed with ``IndexProgress`` records (:meth:`show_progress`); thumbnails come from a
    ``ThumbnailLoader`` (its ``ready`` signal fills them in)."""

    def __init__(self, thumbnails: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("indexingView")
        self.thumbnails = thumbnails
        self.stage = QLabel()
        font = self.stage.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.stage.setFont(font)
        self.stage.setWordWrap(True)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.hint = QLabel("You can search as soon as the first photos are read.")
        self.hint.setWordWrap(True)
        self.hint.setEnabled(False)
        self.recent = QListWidget()
        self.recent.setViewMode(QListWidget.ViewMode.IconMode)
        self.recent.setIconSize(QSize(THUMB, THUMB))
        self.recent.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.recent.setMovement(QListWidget.Movement.Static)
        self.recent.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.recent.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.recent.setAccessibleName("Photos just read")
        layout = QVBoxLayout(self)
        layout.addWidget(self.stage)
        layout.addWidget(self.detail)
        layout.addWidget(self.bar)
        layout.addWidget(self.hint)
        layout.addWidget(QLabel("Just read:"))
        layout.addWidget(self.recent, 1)
        self._paths: deque[str] = deque(maxlen=RECENT)
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_thumbnail)
        self.reset()

    def reset(self) -> None:
        self.stage.setText("Reading your photos")
        self.detail.setText("Starting…")
        self.bar.setRange(0, 0)  # busy until a total is known
        self._paths.clear()
        self.recent.clear()

    def show_progress(self, progress: Any) -> None:
        phase = str(getattr(progress, "phase", ""))
        self.stage.setText(PHASE_TEXT.get(phase, phase.capitalize() or "Reading your photos"))
        self.detail.setText(progress_text(progress))
        done, total = getattr(progress, "done", 0) or 0, getattr(progress, "total", None)
        if total:
            self.bar.setRange(0, int(total))
            self.bar.setValue(min(int(done), int(total)))
        else:
            self.bar.setRange(0, 0)
        path = getattr(progress, "path", None)
        if phase == "embed" and path and path not in self._paths:
            self._add(path)

    def recent_paths(self) -> list[str]:
        """The photos just read, newest first."""
        return [self.recent.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.recent.count())]

    def _add(self, path: str) -> None:
        if len(self._paths) == self._paths.maxlen:
            self.recent.takeItem(self.recent.count() - 1)
        self._paths.appendleft(path)
        item = QListWidgetItem(path.replace("\\", "/").rsplit("/", 1)[-1])
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setToolTip(path)
        pixmap = self.thumbnails.pixmap(path, THUMB) if self.thumbnails is not None else None
        if pixmap is not None:
            item.setIcon(QIcon(pixmap))
        elif self.thumbnails is not None:
            self.thumbnails.request(path, THUMB)
        self.recent.insertItem(0, item)

    def _on_thumbnail(self, path: str, side: int) -> None:
        if side != THUMB or path not in self._paths:
            return
        pixmap: QPixmap | None = self.thumbnails.pixmap(path, THUMB)
        if pixmap is None:
            return
        for i in range(self.recent.count()):
            item = self.recent.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                item.setIcon(QIcon(pixmap))
