"""The search bar: free text with history, and a chip for a photo query ("more like this")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QStringListModel, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import QCompleter, QHBoxLayout, QLineEdit, QToolButton, QWidget

from core.scanner import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

PLACEHOLDER = 'Describe a photo: red car at night · beach -snow · "kite" + "sunset"   (Ctrl+F)'


def local_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders named by a drag's URLs."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


class QueryEdit(QLineEdit):
    """A line edit that takes a dropped image file as a query instead of pasting its path.

    ``down_handler``, when set, is offered the Down key (when no completion list is open); it
    returns True when it took it (the window moves into the results). A key handler rather than an
    event filter: a filter would run Python for every event of the edit (the cursor blinking).
    """

    image_dropped = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.down_handler: Callable[[], bool] | None = None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        paths = local_paths(event.mimeData())
        if paths and is_image_path(paths[0]):
            event.acceptProposedAction()
            return
        super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        paths = local_paths(event.mimeData())
        if paths and is_image_path(paths[0]):
            event.acceptProposedAction()
            return
        super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if paths and is_image_path(paths[0]):
            event.acceptProposedAction()
            self.image_dropped.emit(str(paths[0]))
            return
        super().dropEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            event.ignore()  # the window decides what Escape clears
            return
        if event.key() == Qt.Key.Key_Down and self.down_handler is not None:
            popup = self.completer().popup() if self.completer() is not None else None
            if not (popup is not None and popup.isVisible()) and self.down_handler():
                event.accept()
                return
        super().keyPressEvent(event)


class SearchBar(QWidget):
    """Signals what the user asks for; the window decides when and how to search."""

    text_edited = Signal(str)  # every edit (search-as-you-type goes through a throttle)
    submitted = Signal(str)  # Enter: search now
    image_query = Signal(str)  # a dropped image file
    photo_query_cleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QueryEdit()
        self.edit.setPlaceholderText(PLACEHOLDER)
        self.edit.setClearButtonEnabled(True)
        self.edit.setAccessibleName("Search")
        self.edit.setMinimumWidth(240)
        font = self.edit.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.edit.setFont(font)
        self.edit.setMinimumHeight(self.edit.fontMetrics().height() + 14)
        self.history_model = QStringListModel(self)
        self.completer = QCompleter(self.history_model, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.edit.setCompleter(self.completer)
        self.chip = QToolButton()
        self.chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.chip.setAutoRaise(False)
        self.chip.setToolTip("Searching for photos like this one; click to remove")
        self.chip.hide()
        self.chip.clicked.connect(self.clear_photo_query)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.chip)
        layout.addWidget(self.edit, 1)
        self.edit.textEdited.connect(self.text_edited)
        self.edit.returnPressed.connect(lambda: self.submitted.emit(self.edit.text()))
        self.edit.image_dropped.connect(self.image_query)

    def text(self) -> str:
        return self.edit.text()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)

    def set_history(self, items: list[str]) -> None:
        self.history_model.setStringList(items)

    def set_photo_query(self, label: str | None, *, unlike: bool = False) -> None:
        """Show (or hide, with None) the chip naming the photo the search is like (or, with
        ``unlike``, moves away from)."""
        if label:
            self.chip.setText(f"{'Not like' if unlike else 'Like'}: {label}  ✕")
            self.chip.show()
        else:
            self.chip.hide()

    def has_photo_query(self) -> bool:
        return not self.chip.isHidden()

    def clear_photo_query(self) -> None:
        if self.has_photo_query():
            self.chip.hide()
            self.photo_query_cleared.emit()

    def focus(self) -> None:
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()
