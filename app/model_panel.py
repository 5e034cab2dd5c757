"""Which model is active, what it can do, and the way to another one: the model picker.

With a session to follow, the panel also reports a switch's download and outcome to the open
picker, and asks before the bundled starter model (which knows only the demo scenes) would read a
folder of the user's own photos.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from app.model_picker import ModelPicker, same_spec, size_text
from app.session import DEMO_FOLDER
from app.workers import WorkerPool
from core.model_catalog import DEFAULT_SPEC, find_entry, model_choices

logger = logging.getLogger(__name__)

STARTER_PROMPT_TITLE = "Choose a model for your photos"
STARTER_PROMPT_TEXT = (
    "LadderLens is using its bundled starter model. It knows only the demo's scene world (cars, "
    "kites, boats… in eight colours) and will not find things in your own photos."
)


class ModelBox(QWidget):
    """Shows the active model in plain words; "Change model…" opens the model picker.

    Args:
        session: the :class:`app.session.LibrarySession` whose model this is, or None. With it, a
            switch's download progress and failure show in the open picker, and folders of the
            user's own photos are held for a question while the starter model would read them.
    """

    model_requested = Signal(str)

    def __init__(self, session: Any = None, parent: QWidget | None = None) -> None:
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
        self.dialog: ModelPicker | None = None
        self.prompt: QMessageBox | None = None
        self.session = session
        self.speed_pool = WorkerPool(max_threads=1, parent=self, name="model speed")
        self.held_folders: list[str] = []
        self.keep_starter = False  # the user chose to read their folders with the starter anyway
        if session is not None:
            self._follow(session)

    def _follow(self, session: Any) -> None:
        session.download_progress.connect(self._on_download)
        session.index_progress.connect(self._on_index_progress)
        session.index_finished.connect(self._on_index_finished)
        session.index_failed.connect(self._on_switch_failed)
        session.model_failed.connect(self._on_switch_failed)
        for signal in (session.index_started, session.index_failed, session.library_changed):
            signal.connect(self._update_busy)

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

    # ------------------------------------------------------------------ the picker

    def open_dialog(self) -> ModelPicker:
        """Open the (window-modal, non-blocking) model picker, or bring back the open one.

        "Use this model" emits :attr:`model_requested`; with a session the picker stays open until
        the new model is loaded or has failed.
        """
        if self.dialog is not None:
            self.dialog.raise_()
            return self.dialog
        current = self._current_spec()
        dialog = ModelPicker(
            current, model_choices(), self, pool=self.speed_pool, wait_for_outcome=self.session is not None
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.use_requested.connect(self.model_requested)
        dialog.finished.connect(self._on_dialog_finished)
        self.dialog = dialog
        self._update_busy()
        dialog.open()
        return dialog

    def _current_spec(self) -> str:
        if self.session is not None:
            return str(self.session.model_spec)
        return self._spec

    def _on_dialog_finished(self, _result: int) -> None:
        self.dialog = None
        self._release_folders()

    def _update_busy(self, *_args: Any) -> None:
        if self.dialog is not None and self.session is not None:
            self.dialog.set_busy(bool(self.session.is_indexing) and self.dialog.awaiting is None)

    def _on_download(self, progress: Any) -> None:
        if self.dialog is not None:
            self.dialog.show_download(progress)

    def _on_index_progress(self, record: Any) -> None:
        # The first record after the "model" step means the new model is loaded.
        if self.dialog is not None and getattr(record, "phase", None) != "model":
            self.dialog.model_loaded()

    def _on_index_finished(self, _report: Any) -> None:
        if self.dialog is not None:
            self.dialog.model_loaded()
        self._update_busy()

    def _on_switch_failed(self, message: str) -> None:
        if self.dialog is not None:
            self.dialog.show_failure(message)

    # ------------------------------------------------------------------ the starter and the user's own photos

    def hold_folder(self, path: str) -> bool:
        """Before ``path`` is added: when the bundled starter model would read it and it is not the
        demo library, hold it and ask whether to choose a model for real photos first.

        True when the folder is held; it is added through the session once the question (and the
        picker, if chosen) is answered: after the picker closes, whatever model is then in use reads
        it; "Keep the starter model" adds it at once; Cancel drops it.
        """
        if self.session is None or self.keep_starter or not self._starter_reads(path):
            return False
        self.held_folders.append(path)
        if self.prompt is None and self.dialog is None:
            self._ask_about_starter()
        return True

    def _starter_reads(self, path: str) -> bool:
        if not same_spec(str(self.session.model_spec), "starter") or not self.pending.isHidden():
            return False  # another model answers, or a switch is under way
        demo = Path(self.session.root) / DEMO_FOLDER
        try:
            return not Path(path).resolve().is_relative_to(demo.resolve())
        except OSError:
            return True

    def _ask_about_starter(self) -> None:
        default = find_entry(DEFAULT_SPEC)
        size = f" ({size_text(default)}, downloaded once)" if default else ""
        prompt = QMessageBox(
            QMessageBox.Icon.Question, STARTER_PROMPT_TITLE, STARTER_PROMPT_TEXT, parent=self
        )
        prompt.setInformativeText(
            f"Choose a model made for real photos first? {default.name if default else 'ViT-B/32'} is "
            f"recommended{size}. Your folder is added either way."
        )
        self.prompt_choose = prompt.addButton("Choose a model…", QMessageBox.ButtonRole.AcceptRole)
        self.prompt_keep = prompt.addButton("Keep the starter model", QMessageBox.ButtonRole.DestructiveRole)
        prompt.addButton(QMessageBox.StandardButton.Cancel)
        prompt.setDefaultButton(self.prompt_choose)
        prompt.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        prompt.finished.connect(lambda _r: self._on_prompt_answered(prompt.clickedButton()))
        self.prompt = prompt
        prompt.open()

    def _on_prompt_answered(self, button: Any) -> None:
        self.prompt = None
        if button is self.prompt_choose:
            picker = self.open_dialog()
            picker.set_context(
                "Pick a model for your photos. Your folder is added when this window closes, and "
                "read by the model in use then."
            )
            picker.select(DEFAULT_SPEC)
            return
        if button is self.prompt_keep:
            self.keep_starter = True
            self._release_folders()
            return
        self.held_folders.clear()

    def _release_folders(self) -> None:
        held, self.held_folders = self.held_folders, []
        if self.session is None or self.session.is_closed:
            return
        for path in held:
            self.session.add_folder(path)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
