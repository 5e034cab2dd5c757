"""The profile switcher: which fine-tune profile answers searches, or the model alone.

A combo box lists "the model alone" and every saved profile version with its measured gain.
Profiles made on another base model are listed but disabled, with the reason as a tooltip.
Choosing one switches in a worker (an adapter profile seen for the first time transforms the
stored vectors; going back to the model alone is instant) and emits :attr:`ProfileSwitcher.switched`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QWidget

from app.errors_text import user_message
from app.session import LibrarySession
from app.workers import Worker, WorkerPool

logger = logging.getLogger(__name__)

BASE_LABEL = "Model alone (no fine-tune)"


def profile_label(info: Any) -> str:
    """``name vN``, with the held-out gain when the profile recorded one."""
    heldout = (info.report or {}).get("heldout") if hasattr(info, "report") else None
    text = info.label
    if heldout:
        before, after = heldout["base"], heldout["finetuned"]
        text += f" (held-out R@1 {before['R@1']:.2f} → {after['R@1']:.2f})"
    if info.mode == "full":
        text += " [full]"
    return text


class ProfileSwitcher(QWidget):
    """Lists the profiles of a session's library and switches between them in the background."""

    switched = Signal(object)  # the ProfileInfo now answering searches, or None
    failed = Signal(str)

    def __init__(
        self, session: LibrarySession, pool: WorkerPool | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.pool = pool or WorkerPool(max_threads=1, parent=self, name="profiles")
        self.combo = QComboBox()
        # as wide as the panel allows, and never what keeps a narrow window from shrinking
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(10)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(80)
        self.busy.hide()
        self.message = QLabel()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Search with:"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.busy)
        layout.addWidget(self.message)
        self._worker: Worker | None = None
        self._updating = False
        self.combo.currentIndexChanged.connect(self._on_chosen)
        # a narrow panel cuts the label short: the whole of it on hover
        self.combo.currentTextChanged.connect(self.combo.setToolTip)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the profiles and the active one (call after a fine-tune or a model change)."""
        self._updating = True
        try:
            self.combo.clear()
            self.combo.addItem(BASE_LABEL, None)
            choices = self.session.profile_choices()
            model = self.combo.model()
            for info in choices.profiles:
                self.combo.addItem(profile_label(info), (info.name, info.version))
                row = self.combo.count() - 1
                if not choices.usable(info) and isinstance(model, QStandardItemModel):
                    item = model.item(row)
                    item.setEnabled(False)
                    item.setToolTip(f"made on another model: {info.base_spec}")
                if choices.is_active(info):
                    self.combo.setCurrentIndex(row)
        finally:
            self._updating = False

    @property
    def is_switching(self) -> bool:
        return self._worker is not None

    def choose(self, name: str | None, version: int | None = None) -> None:
        """Select a profile (None: the model alone; no version: its latest) as if the user picked it.

        Raises:
            KeyError: it is not in the list.
        """
        rows = []
        for row in range(self.combo.count()):
            data = self.combo.itemData(row)
            if data is None and name is None:
                rows.append((0, row))
            elif data is not None and name is not None and data[0] == name and version in (None, data[1]):
                rows.append((data[1], row))
        if not rows:
            raise KeyError(f"no profile {name} v{version} in the list")
        self.combo.setCurrentIndex(max(rows)[1])

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        return self.pool.shutdown(timeout_ms)

    def _on_chosen(self, row: int) -> None:
        if self._updating or row < 0 or self._worker is not None:
            return
        data = self.combo.itemData(row)
        name, version = data if data is not None else (None, None)
        worker = Worker(self.session.use_profile, name, version)
        worker.returned.connect(self._on_switched)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.combo.setEnabled(False)
        self.busy.show()
        self.message.hide()
        self.pool.start(worker)

    def _on_switched(self, info: Any) -> None:
        self.switched.emit(info)

    def _on_error(self, exc: BaseException) -> None:
        text = user_message(exc, "switching the profile")
        self.message.setText(text)
        self.message.setToolTip(text)
        self.message.show()
        self.failed.emit(text)

    def _on_finished(self) -> None:
        self._worker = None
        self.busy.hide()
        self.combo.setEnabled(True)
        self.refresh()
