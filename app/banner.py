"""A coloured line of text across the window: notices and errors without a modal dialog."""

from __future__ import annotations

import logging
from enum import Enum

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

logger = logging.getLogger(__name__)


class BannerKind(Enum):
    INFO = ("#e8f1fb", "#1d4f80", "#9cc0e6")
    NOTICE = ("#fff4d6", "#6b4e00", "#e6c766")
    ERROR = ("#fde8e8", "#8a1c1c", "#e6a0a0")


class Banner(QFrame):
    """Shows one message; closable when ``closable`` is set."""

    closed = Signal()

    def __init__(self, closable: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.setVisible(closable)
        self.close_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = BannerKind.INFO
        self.hide()

    def show_message(self, text: str, kind: BannerKind = BannerKind.INFO) -> None:
        if kind is not self.kind or not self.styleSheet():
            bg, fg, border = kind.value
            self.setStyleSheet(
                f"QFrame#banner {{ background: {bg}; border: 1px solid {border}; border-radius: 4px; }}"
                f"QFrame#banner QLabel {{ color: {fg}; }}"
            )
        self.kind = kind
        if self.label.text() != text:
            self.label.setText(text)
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()
