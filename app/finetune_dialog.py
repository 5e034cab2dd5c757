"""The fine-tune dialog: choose a tagged folder, preview its tags, train, watch, then apply or discard.

:class:`FinetuneJobs` runs each step of a fine-tune in a :class:`~app.workers.Worker` (previewing
the tags, training, saving and switching to the profile: the session's profile jobs) and reports
plain records through its signals; :class:`FinetuneDialog` only shows them. Cancelling closes the
training generator at its next step: nothing is saved, the library is untouched. A finished
fine-tune is kept in memory until the user applies it (saved as a new profile version and switched
to) or discards it.

:class:`LossPlot` draws the training loss per step and the validation score per epoch, on axes
that start at 0 and span at least :data:`MIN_SPAN`, so noise never fills the plot.

Everything but the recommendation and the buttons sits in a scroll area: the dialog fits a
600-pixel-high screen.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.errors_text import user_message
from app.session import LibrarySession, TagPreview
from app.workers import Worker, WorkerPool

logger = logging.getLogger(__name__)

LOSSES = (
    ("infonce+adaptive", "Adaptive ladder + InfoNCE: graded relevance (recommended)"),
    ("infonce+triplet", "Triplet + InfoNCE: exact matches only"),
    ("infonce", "InfoNCE (CLIP)"),
    ("adaptive", "Adaptive ladder alone"),
    ("triplet", "Triplet alone"),
)
MODES = (
    ("adapter", "Adapter: fast, on the stored vectors (recommended)"),
    ("full", "Full: last blocks of the model (GPU advised; re-reads every photo)"),
)
MIN_SPAN = 0.1  # the least span of a plot axis: scores live in [0, 1], so 0.1 is a tenth of it
SINGLE_PHOTO_NOTE = "only one photo: nothing reliable to learn"
SINGLE_PHOTO_WHY = (
    "One photo cannot be both learned from and held out to check the result, so the fine-tune "
    "learns nothing reliable about such a tag: tag a few more photos with it."
)
SIZE = (640, 720)  # the dialog's size when the screen has room


# ---------------------------------------------------------------------------------------- the work


class FinetuneJobs(QObject):
    """The fine-tune steps of one session's library, run in workers; at most one step at a time."""

    preview_ready = Signal(object)  # TagPreview
    progress = Signal(object)  # trainer.finetune.FinetuneProgress, or core.profiles.ProfileProgress
    trained = Signal(object)  # trainer.finetune.FinetuneResult
    applied = Signal(object)  # core.profiles.ProfileInfo
    failed = Signal(str)  # a message for the user
    cancelled = Signal()
    busy_changed = Signal(bool)

    def __init__(
        self, session: LibrarySession, pool: WorkerPool | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.pool = pool or WorkerPool(max_threads=1, parent=self, name="fine-tune")
        self._worker: Worker | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def preview(self, root: str) -> Worker | None:
        return self._run(self.session.iter_preview_tags, (root,), self.preview_ready, "reading the tags")

    def start(self, root: str, config: Any) -> Worker | None:
        return self._run(self.session.iter_finetune, (root, config), self.trained, "fine-tuning")

    def apply(self, result: Any, name: str) -> Worker | None:
        args = (result, name)
        return self._run(self.session.iter_apply_finetune, args, self.applied, "applying the fine-tune")

    def cancel(self) -> None:
        """Stop the running step at its next cancellation point (nothing is kept)."""
        if self._worker is not None:
            self._worker.quit()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        return self.pool.shutdown(timeout_ms)

    def _run(self, func, args: tuple, done: Signal, doing: str) -> Worker | None:
        if self._worker is not None:
            logger.info("a fine-tune step is running; ignoring the request for %s", doing)
            return None
        worker = Worker(func, *args)
        worker.yielded.connect(self.progress.emit)
        # The step is over for the dialog when its outcome arrives (slots run in connection order),
        # so the buttons its outcome enables work at once; the pool runs one worker at a time, so
        # a next step waits for this worker's thread to return.
        ref = weakref.ref(worker)  # not the worker itself: Qt holds connections out of the collector's sight
        for outcome in (worker.returned, worker.errored, worker.aborted, worker.finished):
            outcome.connect(lambda *_a, ref=ref: self._settle(ref()))
        worker.returned.connect(done.emit)
        worker.errored.connect(lambda exc: self.failed.emit(user_message(exc, doing)))
        worker.aborted.connect(self.cancelled.emit)
        self._worker = worker
        self.busy_changed.emit(True)
        self.pool.start(worker)
        return worker

    def _settle(self, worker: Worker | None) -> None:
        if worker is not None and self._worker is worker:
            self._worker = None
            self.busy_changed.emit(False)


# ---------------------------------------------------------------------------------------- the plot


def axis_range(values: Sequence[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """The (low, high) of a plot axis for ``values``: from 0 (or the lowest value when below 0)
    to the highest value, at least ``min_span`` apart, the top rounded up to a round number."""
    low = min(0.0, *values) if values else 0.0
    high = max(max(values, default=low), low + min_span)
    return low, low + _round_up(high - low)


def _round_up(span: float) -> float:
    """The least of 1, 2, 2.5, 5 times a power of ten that is at least ``span`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(span))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= span * (1 - 1e-9):
            return step * power
    return 10.0 * power


class LossPlot(QWidget):
    """Training loss per step (left scale) and validation score per epoch (right scale), both
    from 0 (:func:`axis_range`), with titled axes."""

    LOSS_COLOR = QColor(70, 110, 200)
    SCORE_COLOR = QColor(210, 120, 30)
    MARGINS = (50, 10, 50, 30)  # left, top, right, bottom: room for the scales and the titles

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.losses: list[tuple[int, float]] = []
        self.scores: list[tuple[int, float]] = []
        self.total_steps = 1
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        self.losses.clear()
        self.scores.clear()
        self.total_steps = 1
        self.update()

    def add_loss(self, step: int, loss: float, total: int | None) -> None:
        if math.isfinite(loss):
            self.losses.append((step, loss))
        if total:
            self.total_steps = max(total, 1)
        self.update()

    def add_score(self, step: int, score: float) -> None:
        if math.isfinite(score):
            self.scores.append((step, score))
            self.update()

    def loss_range(self) -> tuple[float, float]:
        """The loss axis: from 0 to the highest loss (:func:`axis_range`)."""
        return axis_range([v for _, v in self.losses])

    def score_range(self) -> tuple[float, float]:
        """The score axis: from 0 to the highest score, at least :data:`MIN_SPAN` high."""
        return axis_range([v for _, v in self.scores])

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        left, top, right, bottom = self.MARGINS
        rect = QRectF(self.rect()).adjusted(left, top, -right, -bottom)
        text = self.palette().color(QPalette.ColorRole.Text)
        painter.setPen(QPen(text, 1))
        painter.drawRect(rect)
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6))
        painter.setFont(font)
        painter.drawText(
            QRectF(rect.left(), rect.bottom() + 14, rect.width(), 14),
            Qt.AlignmentFlag.AlignCenter,
            f"training steps (0 to {self.total_steps})",
        )
        self._axis_title(painter, rect, "training loss", self.LOSS_COLOR, left=True)
        self._axis_title(painter, rect, "validation score", self.SCORE_COLOR, left=False)
        if not self.losses and not self.scores:
            painter.setPen(QPen(text, 1))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "loss and validation score appear here")
        self._series(painter, rect, self.losses, self.loss_range(), self.LOSS_COLOR, left=True)
        self._series(painter, rect, self.scores, self.score_range(), self.SCORE_COLOR, left=False, dots=True)
        painter.end()

    @staticmethod
    def _axis_title(painter: QPainter, rect: QRectF, title: str, color: QColor, left: bool) -> None:
        """``title`` written upwards along the outer edge of the left or right scale."""
        painter.save()
        painter.setPen(QPen(color))
        x = rect.left() - 42 if left else rect.right() + 42
        painter.translate(x, rect.center().y())
        painter.rotate(-90)
        painter.drawText(
            QRectF(-rect.height() / 2, -7, rect.height(), 14), Qt.AlignmentFlag.AlignCenter, title
        )
        painter.restore()

    def _series(
        self,
        painter: QPainter,
        rect: QRectF,
        points: list[tuple[int, float]],
        scale: tuple[float, float],
        color: QColor,
        left: bool,
        dots: bool = False,
    ) -> None:
        low, high = scale
        painter.setPen(QPen(color))
        x = rect.left() - 34 if left else rect.right() + 2
        for value in (low, (low + high) / 2, high):
            y = rect.bottom() - rect.height() * (value - low) / (high - low)
            painter.drawText(QRectF(x, y - 6, 32, 12), Qt.AlignmentFlag.AlignCenter, f"{value:.3g}")
        if not points:
            return

        def at(step: int, value: float) -> QPointF:
            x = rect.left() + rect.width() * min(step / self.total_steps, 1.0)
            y = rect.bottom() - rect.height() * (value - low) / (high - low)
            return QPointF(x, y)

        path = QPainterPath(at(*points[0]))
        for point in points[1:]:
            path.lineTo(at(*point))
        painter.setPen(QPen(color, 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
        if dots:
            painter.setBrush(color)
            for point in points:
                painter.drawEllipse(at(*point), 2.5, 2.5)


# ---------------------------------------------------------------------------------------- the dialog


class FinetuneDialog(QDialog):
    """Choose a tagged folder, see its tags, fine-tune with live progress, then apply or discard.

    Emits :attr:`profile_applied` with the new profile once it answers searches.
    """

    profile_applied = Signal(object)

    def __init__(self, session: LibrarySession, parent: QWidget | None = None, *, root: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on your tagged folders")
        self.jobs = FinetuneJobs(session, parent=self)
        self.result: Any = None
        self.preview: TagPreview | None = None

        content = QWidget()
        column = QVBoxLayout(content)
        column.addWidget(_intro_label())
        column.addLayout(self._build_root_row(root))
        self._build_tag_table()
        column.addWidget(self.summary)
        column.addWidget(self.warning_label)
        column.addWidget(self.tag_table, 1)
        column.addLayout(self._build_settings_form())
        self._build_progress_views()
        column.addWidget(self.progress_bar)
        column.addWidget(self.status_label)
        column.addWidget(self.plot, 1)
        column.addWidget(self.report_view, 1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll, 1)
        # outside the scroll area, always in sight: the recommendation and the buttons
        layout.addWidget(self.verdict_label)
        layout.addLayout(self._build_buttons())
        self._fit_to_screen()

        self._connect_signals()
        self._update_buttons()
        if root:
            self.read_tags()

    # -- construction

    def _build_root_row(self, root: str) -> QHBoxLayout:
        """The tagged folder's path, with buttons to choose it and to read its tags."""
        self.root_edit = QLineEdit(root)
        self.root_edit.setPlaceholderText("a folder of tagged sub-folders")
        self.browse_button = QPushButton("Choose…")
        self.scan_button = QPushButton("Read tags")
        row = QHBoxLayout()
        row.addWidget(self.root_edit, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.scan_button)
        return row

    def _fit_to_screen(self) -> None:
        """Open at :data:`SIZE`, or smaller on a small screen (the content scrolls)."""
        width, height = SIZE
        screen = self.screen()
        if screen is not None:
            room = screen.availableGeometry()
            width, height = min(width, room.width() - 20), min(height, room.height() - 40)
        self.resize(max(width, 400), max(height, 300))

    def _build_tag_table(self) -> None:
        """The preview's summary line, the warning about tags with one photo, and the table of
        tags with their photo counts."""
        self.summary = QLabel("Choose a folder to see its tags.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setTextFormat(Qt.TextFormat.PlainText)
        self.warning_label.setStyleSheet("font-weight: bold;")
        self.warning_label.hide()
        self.tag_model = QStandardItemModel(0, 3, self)
        self.tag_model.setHorizontalHeaderLabels(["Tag", "Photos", "Note"])
        self.tag_table = QTableView()
        self.tag_table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move in it
        self.tag_table.setModel(self.tag_model)
        self.tag_table.setSortingEnabled(True)
        self.tag_table.verticalHeader().hide()
        header = self.tag_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tag_table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.tag_table.setMinimumHeight(120)

    def _build_settings_form(self) -> QFormLayout:
        """The profile's name and the training settings: mode, loss, epochs."""
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("profile name")
        self.mode_combo = QComboBox()
        for key, label in MODES:
            self.mode_combo.addItem(label, key)
        self.loss_combo = QComboBox()
        for key, label in LOSSES:
            self.loss_combo.addItem(label, key)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(40)
        self.epochs_spin.setToolTip(
            "at most this many passes; training stops earlier when it stops improving"
        )
        form = QFormLayout()
        form.addRow("Profile name:", self.name_edit)
        form.addRow("Mode:", self.mode_combo)
        form.addRow("Loss:", self.loss_combo)
        form.addRow("Epochs (at most):", self.epochs_spin)
        return form

    def _build_progress_views(self) -> None:
        """The progress bar, the status line, the loss plot and the final report."""
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setWordWrap(True)
        self.plot = LossPlot()
        self.verdict_label = QLabel()
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setTextFormat(Qt.TextFormat.PlainText)
        self.verdict_label.setStyleSheet("font-weight: bold;")
        self.verdict_label.hide()
        self.report_view = QPlainTextEdit()
        self.report_view.setReadOnly(True)
        self.report_view.setFont(QFont("monospace"))
        self.report_view.setMinimumHeight(200)
        self.report_view.hide()

    def _build_buttons(self) -> QHBoxLayout:
        """Train and Cancel on the left; Apply, Discard and Close on the right."""
        self.start_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.apply_button = QPushButton("Apply")
        self.discard_button = QPushButton("Discard")
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.discard_button)
        buttons.addWidget(self.close_button)
        return buttons

    def _connect_signals(self) -> None:
        self.browse_button.clicked.connect(self._browse)
        self.scan_button.clicked.connect(self.read_tags)
        self.root_edit.returnPressed.connect(self.read_tags)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.apply_button.clicked.connect(self.apply)
        self.discard_button.clicked.connect(self.discard)
        self.close_button.clicked.connect(self.reject)
        self.jobs.preview_ready.connect(self._on_preview)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.trained.connect(self._on_trained)
        self.jobs.applied.connect(self._on_applied)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.cancelled.connect(self._on_cancelled)
        self.jobs.busy_changed.connect(lambda _busy: self._update_buttons())

    # -- actions

    def read_tags(self) -> None:
        root = self.root_edit.text().strip()
        if not root:
            return
        self.preview = None
        self.tag_model.removeRows(0, self.tag_model.rowCount())
        self.warning_label.hide()
        self.summary.setText("Reading tags…")
        if not self.name_edit.text():
            from core.profiles import suggest_profile_name

            self.name_edit.setText(suggest_profile_name(Path(root).name))
        self.jobs.preview(root)
        self._update_buttons()

    def config(self) -> Any:
        from trainer.finetune import FinetuneConfig

        return FinetuneConfig(
            mode=self.mode_combo.currentData(),
            loss=self.loss_combo.currentData(),
            epochs=self.epochs_spin.value(),
        )

    def start(self) -> None:
        if self.preview is None or self.jobs.busy:
            return
        self.result = None
        self.plot.clear()
        self._hide_report()
        self.status_label.setText("Starting…")
        self.jobs.start(self.preview.root, self.config())
        self._update_buttons()

    def apply(self) -> None:
        if self.result is None or self.jobs.busy:
            return
        from core.errors import ProfileError
        from core.profiles import clean_profile_name

        try:
            name = clean_profile_name(self.name_edit.text() or "my-photos")
        except ProfileError as e:
            self.status_label.setText(str(e))
            return
        self.status_label.setText(f"Saving and applying profile {name}…")
        self.jobs.apply(self.result, name)
        self._update_buttons()

    def discard(self) -> None:
        self.result = None
        self._hide_report()
        self.status_label.setText("Fine-tune discarded; nothing was saved.")
        self._update_buttons()

    def reject(self) -> None:
        """Closing stops a running step (nothing half-applied) and forgets an unapplied result."""
        self.jobs.cancel()
        self.jobs.shutdown()
        super().reject()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the tagged folder", self.root_edit.text())
        if path:
            self.root_edit.setText(path)
            self.read_tags()

    # -- results

    def _on_preview(self, preview: TagPreview) -> None:
        self.preview = preview
        self.tag_table.setSortingEnabled(False)
        for tag, count in preview.counts:
            self.tag_model.appendRow(_tag_row(tag, count))
        self.tag_table.setSortingEnabled(True)
        self.tag_table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        single = single_photo_tags(preview.counts)
        self.warning_label.setText(single_photo_warning(single))
        self.warning_label.setVisible(bool(single))
        parts = [f"{preview.photos} tagged photos with {len(preview.counts)} tags."]
        if preview.not_indexed:
            parts.append(f"{preview.not_indexed} tagged photos are not indexed yet and will be left out.")
        if preview.untagged:
            parts.append(f"{preview.untagged} photos have no tag.")
        if preview.empty_folders:
            parts.append(f"{len(preview.empty_folders)} folders hold no photos.")
        if preview.problems:
            parts.append(f"{len(preview.problems)} tag files could not be read (they are skipped).")
        self.summary.setText(" ".join(parts))
        self._update_buttons()

    def _on_progress(self, record: Any) -> None:
        phase = getattr(record, "phase", "")
        total = getattr(record, "total", None)
        done = getattr(record, "done", 0)
        if total:
            self.progress_bar.setRange(0, int(total))
            self.progress_bar.setValue(int(min(done, total)))
        else:
            self.progress_bar.setRange(0, 0)
        loss = getattr(record, "loss", None)
        if phase == "train" and loss is not None:
            self.plot.add_loss(done, loss, total)
            self.status_label.setText(f"Epoch {record.epoch} of at most {record.epochs} · loss {loss:.4f}")
        elif phase == "validate" and record.metrics:
            m = record.metrics
            self.plot.add_score(done, m.get("score", math.nan))
            self.status_label.setText(
                f"Epoch {record.epoch}: validation R@1 {m.get('R@1', math.nan):.3f}, "
                f"CS {m.get('CS', math.nan):.3f}"
            )
        elif phase:
            message = getattr(record, "message", "")
            self.status_label.setText(f"{phase.capitalize()}{': ' + message if message else '…'}")

    def _on_trained(self, result: Any) -> None:
        from trainer.finetune import VERDICTS, format_report, report_verdict

        self.result = result
        verdict, reason = report_verdict(result.report)
        self.verdict_label.setText(f"{VERDICTS[verdict]}. {reason}")
        self.verdict_label.show()
        self.report_view.setPlainText(format_report(result.report))
        self.report_view.show()
        self.status_label.setText("Done. Apply makes searches use it; Discard forgets it.")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self._update_buttons()
        QTimer.singleShot(0, self._show_report_in_full)

    def _show_report_in_full(self) -> None:
        """Scroll the content so the report, at its foot, is in sight once it is laid out."""
        self.scroll.widget().layout().activate()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        top = self.report_view.mapTo(self.scroll.widget(), QPoint(0, 0)).y()
        self.scroll.ensureVisible(0, top + self.report_view.height(), 0, 0)
        self.scroll.ensureVisible(0, top, 0, 0)  # its top first when it is taller than the view

    def _hide_report(self) -> None:
        self.verdict_label.hide()
        self.report_view.hide()

    def _on_applied(self, info: Any) -> None:
        self.result = None
        self.status_label.setText(f"Searches now use profile {info.label}.")
        self._update_buttons()
        self.profile_applied.emit(info)

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(message)
        if self.preview is None:
            self.summary.setText(message)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_buttons()

    def _on_cancelled(self) -> None:
        self.status_label.setText("Cancelled; nothing was changed.")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.jobs.busy
        self.start_button.setEnabled(not busy and self.preview is not None and self.preview.photos > 0)
        self.cancel_button.setEnabled(busy)
        self.apply_button.setEnabled(not busy and self.result is not None)
        self.discard_button.setEnabled(not busy and self.result is not None)
        self.scan_button.setEnabled(not busy)
        self.browse_button.setEnabled(not busy)


def single_photo_tags(counts: Sequence[tuple[str, int]]) -> list[str]:
    """The tags of a preview's ``counts`` that only one photo carries, sorted."""
    return sorted(tag for tag, count in counts if count == 1)


def single_photo_warning(tags: Sequence[str], most: int = 12) -> str:
    """The warning, before training, about the ``tags`` that have a single photo ("" for none)."""
    if not tags:
        return ""
    named = ", ".join(f"'{tag}'" for tag in tags[:most])
    more = f" and {len(tags) - most} more" if len(tags) > most else ""
    which = f"Tag {named} has" if len(tags) == 1 else f"{len(tags)} tags have"
    listed = "" if len(tags) == 1 else f": {named}{more}"
    return f"Warning: {which} only one photo{listed}. {SINGLE_PHOTO_WHY}"


def _tag_row(tag: str, count: int) -> list[QStandardItem]:
    """A row of the tag table; a tag with one photo is marked, with the reason as its tooltip."""
    number = QStandardItem()
    number.setData(count, Qt.ItemDataRole.DisplayRole)
    row = [QStandardItem(tag), number, QStandardItem(SINGLE_PHOTO_NOTE if count == 1 else "")]
    if count == 1:
        for item in row:
            item.setToolTip(SINGLE_PHOTO_WHY)
            item.setForeground(QColor(200, 80, 0))
    return row


def _intro_label() -> QLabel:
    intro = QLabel(
        "Sub-folder names are tags (nested folders add their parents' tags); XMP keywords and "
        "tags.txt files add more. The fine-tune learns your words and how related your photos are, "
        "and keeps part of them aside to measure the gain. The model itself is never changed: the "
        "result is a profile you can switch off at any time."
    )
    intro.setWordWrap(True)
    return intro
