"""A dialog to choose the model that reads the photos: recommended models with what each is good
for, its download size, whether it is on this computer, and how fast it ran here.

"Use this model" only asks for the switch (:attr:`ModelPicker.use_requested`); whoever opened the
dialog hands it to the session, which downloads the weights with progress and reads the photos
again. The dialog then shows how the switch goes: it closes once the new model is loaded, or says
plainly why it could not be used, and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.errors_text import user_message
from app.workers import Worker, WorkerPool
from core.errors import ModelError
from core.model_catalog import CatalogEntry, ModelChoice, SpeedRecord, measure_and_record
from core.models import ModelSpec

logger = logging.getLogger(__name__)

SPEC_HELP = (
    "<b>starter</b>: the small model bundled with LadderLens.<br>"
    "<b>openclip:ARCH/TAG</b>: an open_clip model, e.g. <i>openclip:ViT-B-32-256/datacomp_s34b_b86k</i> "
    "(downloaded once, then works offline).<br>"
    "<b>file:PATH</b>: a checkpoint file (.safetensors), e.g. one fine-tuned on your own folders."
)
COLUMNS = ("Model", "Good for", "Download", "On this computer", "Speed here")
SPEC_ROLE = Qt.ItemDataRole.UserRole


def size_text(entry: CatalogEntry) -> str:
    if entry.is_starter:
        return f"{entry.size_mb:,} MB, included" if entry.size_mb else "included"
    return f"about {entry.size_mb:,} MB"


def speed_text(record: SpeedRecord | None) -> str:
    if record is None:
        return "not measured yet"
    rate = record.images_per_second
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
    return f"{shown} photos/s ({record.device.upper()})"


def same_spec(a: str, b: str) -> bool:
    """Whether two spec texts name the same model (texts that are no spec compare as text)."""
    try:
        return str(ModelSpec.parse(a)) == str(ModelSpec.parse(b))
    except ModelError:
        return a.strip() == b.strip()


def looks_offline(message: str) -> bool:
    text = message.lower()
    return "offline" in text or "cannot be downloaded" in text or "unreachable" in text


class ModelPicker(QDialog):
    """Lists the recommended models; "Use this model" emits :attr:`use_requested` with a spec.

    Attributes:
        wait_for_outcome: stay open after "Use this model" until :meth:`model_loaded` or
            :meth:`show_failure` (set when someone reports the switch's outcome back).
        measure: loads a model and times it (in a worker); ``(spec) -> SpeedRecord``.
    """

    use_requested = Signal(str)
    speed_measured = Signal(str, object)  # spec, SpeedRecord

    def __init__(
        self,
        current_spec: str,
        choices: list[ModelChoice],
        parent: QWidget | None = None,
        *,
        pool: WorkerPool | None = None,
        wait_for_outcome: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a model")
        self.current_spec = current_spec
        self.choices = list(choices)
        self.wait_for_outcome = wait_for_outcome
        self.measure: Callable[[str], SpeedRecord] = measure_and_record
        self._pool = pool or WorkerPool(max_threads=1, parent=self, name="model speed")
        self._awaiting: str | None = None
        self._measuring: str | None = None
        self._busy = False
        self._syncing = False
        self._build()
        self._fill_table()
        self._select_spec(current_spec)
        self._update()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        intro = QLabel(
            "The model is what understands your descriptions and your photos. Models for real photos "
            "are downloaded once, then work offline."
        )
        intro.setWordWrap(True)
        self.context = _plain_label()
        self.context.hide()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumSize(820, 260)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.table.itemDoubleClicked.connect(lambda _item: self.accept())
        self.details = _plain_label()
        self.use_button = QPushButton("Use this model")
        self.use_button.setDefault(True)
        self.use_button.clicked.connect(self.accept)
        self.measure_button = QPushButton("Measure speed")
        self.measure_button.setToolTip("Time the model on this computer with a few generated pictures")
        self.measure_button.clicked.connect(self.measure_selected)
        self.other_button = QPushButton("Other model…")
        self.other_button.setCheckable(True)
        self.other_button.setToolTip("An open_clip model by name, or a checkpoint file")
        self.other_button.toggled.connect(self._show_other)
        self.other_box = self._build_other_box()
        self.status = _plain_label()
        self.status.hide()
        note = QLabel(
            "After a switch your photos are read again in the background; until that is done, "
            "searches keep using the current model."
        )
        note.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self._lay_out(intro, note)

    def _build_other_box(self) -> QWidget:
        box = QWidget()
        self.spec_edit = QLineEdit(self.current_spec)
        self.spec_edit.setPlaceholderText("starter · openclip:ARCH/TAG · file:PATH")
        self.spec_edit.textChanged.connect(self._on_spec_typed)
        self.starter_button = QPushButton("Use the starter model")
        self.starter_button.clicked.connect(lambda: self.spec_edit.setText("starter"))
        self.file_button = QPushButton("Choose a checkpoint file…")
        self.file_button.clicked.connect(self._choose_file)
        help_label = QLabel(SPEC_HELP)
        help_label.setWordWrap(True)
        help_label.setTextFormat(Qt.TextFormat.RichText)
        row = QHBoxLayout()
        row.addWidget(self.starter_button)
        row.addWidget(self.file_button)
        row.addStretch(1)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Model:"))
        layout.addWidget(self.spec_edit)
        layout.addLayout(row)
        layout.addWidget(help_label)
        box.hide()
        return box

    def _lay_out(self, intro: QLabel, note: QLabel) -> None:
        actions = QHBoxLayout()
        actions.addWidget(self.use_button)
        actions.addWidget(self.measure_button)
        actions.addStretch(1)
        actions.addWidget(self.other_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.context)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addLayout(actions)
        layout.addWidget(self.other_box)
        layout.addWidget(self.status)
        layout.addWidget(note)
        layout.addWidget(self.buttons)

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.choices))
        for row, choice in enumerate(self.choices):
            entry = choice.entry
            current = same_spec(entry.spec, self.current_spec)
            name = entry.name + (" (in use)" if current else "")
            cells = (
                name,
                entry.good_for,
                size_text(entry),
                self._state_text(choice),
                speed_text(choice.speed),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(SPEC_ROLE, entry.spec)
                item.setToolTip(entry.spec if column == 0 else text)
                if current:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)

    @staticmethod
    def _state_text(choice: ModelChoice) -> str:
        if choice.entry.is_starter:
            return "included" if choice.cached else "not installed"
        return "downloaded" if choice.cached else "not downloaded"

    # ------------------------------------------------------------------ what is chosen

    def spec(self) -> str:
        """The chosen model's spec (a row's, or what was typed under "Other model…")."""
        return self.spec_edit.text().strip()

    def row_of(self, spec: str) -> int:
        """The table row of ``spec``; -1 when it is not listed."""
        return next((i for i, c in enumerate(self.choices) if same_spec(c.entry.spec, spec)), -1)

    def choice(self, spec: str) -> ModelChoice | None:
        row = self.row_of(spec)
        return self.choices[row] if row >= 0 else None

    def select(self, spec: str) -> None:
        """Choose ``spec``'s row (when it is listed), as a click on it would."""
        row = self.row_of(spec)
        if row >= 0:
            self.table.selectRow(row)

    def _select_spec(self, spec: str) -> None:
        row = self.row_of(spec)
        self._syncing = True
        try:
            if row >= 0:
                self.table.selectRow(row)
            else:
                self.table.clearSelection()
        finally:
            self._syncing = False
        self._show_details()

    def _on_row_selected(self) -> None:
        if self._syncing:
            return
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self._syncing = True
            try:
                self.spec_edit.setText(self.choices[rows[0].row()].entry.spec)
            finally:
                self._syncing = False
        self._show_details()
        self._update()

    def _on_spec_typed(self, text: str) -> None:
        if not self._syncing:
            self._select_spec(text)
        self._update()

    def _show_details(self) -> None:
        choice = self.choice(self.spec())
        if choice is None:
            self.details.setText(f"{self.spec()}: a model named by hand." if self.spec() else "")
            return
        entry = choice.entry
        parts = [f"{entry.name} ({entry.spec}). {entry.good_for}"]
        if entry.imagenet_top1 is not None:
            parts.append(f"Published ImageNet zero-shot accuracy: {entry.imagenet_top1:.1f}%.")
        parts.append(f"Download: {size_text(entry)} ({entry.size_source}).")
        self.details.setText(" ".join(parts))

    def _show_other(self, shown: bool) -> None:
        self.other_box.setVisible(shown)
        if shown:
            self.spec_edit.setFocus()

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.bin);;All files (*)"
        )
        if path:
            self.spec_edit.setText(f"file:{path}")
            self.other_button.setChecked(True)

    def _update(self) -> None:
        spec = self.spec()
        idle = self._awaiting is None and not self._busy
        self.use_button.setEnabled(idle and bool(spec) and not same_spec(spec, self.current_spec))
        choice = self.choice(spec)
        self.measure_button.setEnabled(
            idle and self._measuring is None and choice is not None and choice.cached
        )

    def set_context(self, text: str) -> None:
        """A line over the table saying why the dialog opened (empty: none)."""
        self.context.setText(text)
        self.context.setVisible(bool(text))

    def set_busy(self, busy: bool) -> None:
        """While photos are being read, no switch can start and timings would be off."""
        self._busy = busy
        self._update()

    # ------------------------------------------------------------------ using a model

    def accept(self) -> None:
        """Ask for the chosen model; the dialog stays open for the outcome when told to wait."""
        spec = self.spec()
        if self._awaiting is not None or not spec:
            return
        if same_spec(spec, self.current_spec):
            super().accept()
            return
        try:
            ModelSpec.parse(spec)
        except ModelError as exc:
            self._say(str(exc))
            return
        self._awaiting = spec
        self._say(self._starting_text(spec))
        self._update()
        self.use_requested.emit(spec)
        if not self.wait_for_outcome:
            super().accept()

    @property
    def awaiting(self) -> str | None:
        """The model asked for, until the switch is known to have started or failed."""
        return self._awaiting

    def _starting_text(self, spec: str) -> str:
        choice = self.choice(spec)
        if choice is not None and not choice.cached and not choice.entry.is_starter:
            return f"Downloading {choice.entry.name} ({size_text(choice.entry)}); only the first time…"
        return f"Loading {choice.entry.name if choice else spec}…"

    def show_download(self, progress: Any) -> None:
        """A download's progress (:class:`core.models.DownloadProgress`) while a switch waits on it."""
        if self._awaiting is None:
            return
        done = progress.done_bytes / 1e6
        if progress.total_bytes:
            text = (
                f"Downloading: {done:,.0f} of {progress.total_bytes / 1e6:,.0f} MB ({progress.fraction:.0%})"
            )
        else:
            text = f"Downloading: {done:,.0f} MB"
        self._say(text + "; only the first time.")

    def model_loaded(self) -> None:
        """The model asked for is loaded and the photos are being read with it: close."""
        if self._awaiting is not None:
            self._awaiting = None
            self.done(QDialog.DialogCode.Accepted)

    def show_failure(self, message: str) -> None:
        """The switch could not start: say why in plain words; the current model stays."""
        if self._awaiting is None:
            return
        spec, self._awaiting = self._awaiting, None
        choice = self.choice(spec)
        name = choice.entry.name if choice else spec
        current = self.choice(self.current_spec)
        still = current.entry.name if current else self.current_spec
        if looks_offline(message):
            headline = (
                f"{name} could not be downloaded: this computer seems to be offline, or the download "
                "site cannot be reached."
            )
        else:
            headline = f"{name} could not be used."
        self._say(f"{headline} Nothing was changed: LadderLens still uses {still}.\n\n{message}")
        self._update()

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    # ------------------------------------------------------------------ speed

    def measure_selected(self) -> Worker | None:
        """Time the selected (downloaded) model in a worker; its row shows the result."""
        choice = self.choice(self.spec())
        if choice is None or not choice.cached or self._measuring is not None:
            return None
        spec = choice.entry.spec
        self._measuring = spec
        self._say(f"Measuring {choice.entry.name} on this computer…")
        self._update()
        worker = Worker(self.measure, spec)
        worker.returned.connect(self._on_measured)
        worker.errored.connect(self._on_measure_failed)
        worker.finished.connect(self._on_measure_finished)
        return self._pool.start(worker)

    def _on_measured(self, record: SpeedRecord) -> None:
        spec = self._measuring or ""
        row = self.row_of(spec)
        if row < 0:
            return
        old = self.choices[row]
        self.choices[row] = ModelChoice(old.entry, old.cached, record)
        self.table.item(row, COLUMNS.index("Speed here")).setText(speed_text(record))
        self._say(f"{old.entry.name}: {speed_text(record)} on this computer.")
        self.speed_measured.emit(spec, record)

    def _on_measure_failed(self, exc: BaseException) -> None:
        self._say(f"Could not measure {self._measuring}: {user_message(exc, 'measuring the model')}")

    def _on_measure_finished(self) -> None:
        self._measuring = None
        self._update()


def _plain_label() -> QLabel:
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label
