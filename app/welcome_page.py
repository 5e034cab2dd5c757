"""First start with an empty library: add a folder, or try the demo library, and a word on which
model reads the photos (the bundled one knows only the demo scenes)."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

INTRO_TEXT = (
    "Find photos by describing them: <i>a red car at night</i>, <i>two kites over a beach</i>.<br>"
    "Results come as a ladder of tiers, best matches first, and when nothing matches "
    "exactly you see the nearest alternatives."
)
MODEL_TEXT = (
    "The bundled starter model only knows the demo's simple scenes (cars, kites, boats… in eight "
    "colours); it cannot find things in real photos. For your own photos, choose a model made for "
    "real photos: it is downloaded once, then works offline."
)


class WelcomePage(QWidget):
    """Two ways in: the user's own photos, or a generated demo library to try searching on; and a
    way to the model picker, since the bundled model only knows the demo scenes."""

    add_folder_requested = Signal()
    demo_requested = Signal()
    choose_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Welcome to LadderLens")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = _centred_text(INTRO_TEXT, Qt.TextFormat.RichText)
        self.model_note = _centred_text(MODEL_TEXT, Qt.TextFormat.PlainText)
        self.add_button = QPushButton("Add a folder…")
        self.add_button.setDefault(True)
        self.add_button.setToolTip(
            "Choose a folder of photos; it is read in the background (you are asked which model reads it)"
        )
        self.demo_button = QPushButton("Try the demo library")
        self.demo_button.setToolTip("Generate a few hundred pictures of simple scenes and search them")
        self.model_button = QPushButton("Choose a model…")
        self.model_button.setToolTip("Pick a model for real photos (downloaded once)")
        for button in (self.add_button, self.demo_button):
            button.setMinimumHeight(36)
            button.setMinimumWidth(170)
        self.add_button.clicked.connect(self.add_folder_requested)
        self.demo_button.clicked.connect(self.demo_requested)
        self.model_button.clicked.connect(self.choose_model_requested)
        hint = QLabel("You can also drop a folder onto this window.")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)

        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addSpacing(12)
        layout.addLayout(_centred_row(intro))
        layout.addSpacing(24)
        layout.addLayout(_centred_row(self.add_button, 12, self.demo_button))
        layout.addSpacing(8)
        layout.addWidget(hint)
        layout.addSpacing(24)
        layout.addLayout(_centred_row(self.model_note))
        layout.addLayout(_centred_row(self.model_button))
        layout.addStretch(3)

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons while a first folder or the demo is being set up."""
        self.add_button.setEnabled(not busy)
        self.demo_button.setEnabled(not busy)
        self.model_button.setEnabled(not busy)


def _centred_text(text: str, text_format: Qt.TextFormat) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(text_format)
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setMaximumWidth(540)
    label.setMinimumWidth(280)  # wraps in a narrow window
    return label


def _centred_row(*items: QWidget | int) -> QHBoxLayout:
    """A row of widgets (an int: spacing) between two stretches."""
    row = QHBoxLayout()
    row.addStretch(1)
    for item in items:
        if isinstance(item, int):
            row.addSpacing(item)
        else:
            row.addWidget(item)
    row.addStretch(1)
    return row
