"""First start with an empty library: add a folder, or try the demo library."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)


class WelcomePage(QWidget):
    """Two ways in: the user's own photos, or a generated demo library to try searching on."""

    add_folder_requested = Signal()
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Welcome to LadderLens")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = QLabel(
            "Find photos by describing them: <i>a red car at night</i>, <i>two kites over a beach</i>.<br>"
            "Results come as a ladder of tiers, best matches first, and when nothing matches "
            "exactly you see the nearest alternatives."
        )
        intro.setTextFormat(Qt.TextFormat.RichText)
        intro.setWordWrap(True)
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro.setMaximumWidth(540)
        intro.setMinimumWidth(280)  # wraps in a narrow window
        self.add_button = QPushButton("Add a folder…")
        self.add_button.setDefault(True)
        self.add_button.setToolTip("Choose a folder of photos; it is read in the background")
        self.demo_button = QPushButton("Try the demo library")
        self.demo_button.setToolTip("Generate a few hundred pictures of simple scenes and search them")
        for button in (self.add_button, self.demo_button):
            button.setMinimumHeight(36)
            button.setMinimumWidth(170)
        self.add_button.clicked.connect(self.add_folder_requested)
        self.demo_button.clicked.connect(self.demo_requested)
        hint = QLabel("You can also drop a folder onto this window.")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.add_button)
        buttons.addSpacing(12)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        center = QHBoxLayout()
        center.addStretch(1)
        center.addWidget(intro)
        center.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addSpacing(12)
        layout.addLayout(center)
        layout.addSpacing(24)
        layout.addLayout(buttons)
        layout.addSpacing(8)
        layout.addWidget(hint)
        layout.addStretch(3)

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons while a first folder or the demo is being set up."""
        self.add_button.setEnabled(not busy)
        self.demo_button.setEnabled(not busy)
