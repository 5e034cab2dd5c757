"""Which model is active, what it can do, and a dialog to switch to another one."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)

SPEC_HELP = (
    "<b>starter</b>: the small model bundled with LadderLens.<br>"
    "<b>openclip:ARCH/TAG</b>: an open_clip model, e.g. <i>openclip:ViT-B-32-256/datacomp_s34b_b86k</i> "
    "(downloaded once, then works offline).<br>"
    "<b>file:PATH</b>: a checkpoint file (.safetensors), e.g. one fine-tuned on your own folders."
)


class ModelDialog(QDialog):
    """Asks for a model spec: the starter model, an open_clip name, or a checkpoint file."""

    def __init__(self, current_spec: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Change model")
        self.spec_edit = QLineEdit(current_spec)
        self.spec_edit.setPlaceholderText("starter · openclip:ARCH/TAG · file:PATH")
        self.spec_edit.setMinimumWidth(420)
        help_label = QLabel(SPEC_HELP)
        help_label.setWordWrap(True)
        help_label.setTextFormat(Qt.TextFormat.RichText)
        note = QLabel(
            "Photos are re-read with the new model in the background; until that is done, searches "
            "keep using the current model."
        )
        note.setWordWrap(True)
        self.starter_button = QPushButton("Use the starter model")
        self.file_button = QPushButton("Choose a checkpoint file…")
        self.starter_button.clicked.connect(lambda: self.spec_edit.setText("starter"))
        self.file_button.clicked.connect(self._choose_file)
        row = QHBoxLayout()
        row.addWidget(self.starter_button)
        row.addWidget(self.file_button)
        row.addStretch(1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.spec_edit.textChanged.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Model:"))
        layout.addWidget(self.spec_edit)
        layout.addLayout(row)
        layout.addWidget(help_label)
        layout.addWidget(note)
        layout.addWidget(self.buttons)
        self._update_ok()

    def spec(self) -> str:
        return self.spec_edit.text().strip()

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.spec()))

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.bin);;All files (*)"
        )
        if path:
            self.spec_edit.setText(f"file:{path}")


class ModelBox(QWidget):
    """Shows the active model in plain words; "Change model…" asks for another one."""

    model_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.description = QLabel()
        self.description.setTextFormat(Qt.TextFormat.PlainText)
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pending = QLabel()
        self.pending.setTextFormat(Qt.TextFormat.PlainText)
        self.pending.setWordWrap(True)
        self.pending.hide()
        self.change_button = QPushButton("Change model…")
        self.change_button.clicked.connect(self.open_dialog)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.title)
        layout.addWidget(self.description)
        layout.addWidget(self.pending)
        row = QHBoxLayout()
        row.addWidget(self.change_button)
        row.addStretch(1)
        layout.addLayout(row)
        self._spec = ""
        self.dialog: ModelDialog | None = None

    def set_model(self, spec: str, description: str, is_starter: bool, profile: str | None = None) -> None:
        """Show the active model; ``profile`` names a fine-tune profile answering searches, if any."""
        self._spec = spec
        name = "Starter model <span style='color:#8a6d00'>(bundled)</span>" if is_starter else _escape(spec)
        tuned = f"<br>fine-tuned: <b>{_escape(profile)}</b>" if profile else ""
        self.title.setText(f"<b>{name}</b>{tuned}")
        self.description.setText(description)

    def set_pending(self, text: str | None) -> None:
        """A note about a model switch in progress (None hides it)."""
        self.pending.setText(text or "")
        self.pending.setVisible(bool(text))

    @property
    def spec(self) -> str:
        return self._spec

    def open_dialog(self) -> ModelDialog:
        """Open the (window-modal, non-blocking) dialog; its acceptance emits :attr:`model_requested`."""
        dialog = ModelDialog(self._spec, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.accepted.connect(lambda: self.model_requested.emit(dialog.spec()))
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
