"""The tier inspector: where this query's results sit in the library's score distribution.

A QPainter widget (no plotting dependency). The x axis is the query's similarity score. Drawn:

* the background: a histogram of the query's scores over (a sample of) the whole library, grey;
* the results: one tick per shown photo in a strip under the axis, coloured by tier;
* each tier as a coloured band spanning its score range, with its label and count in a row of
  chips above the plot.

Clicking a band or a chip emits :attr:`TierPlot.tier_clicked` with the tier's rank; clicking the
selected tier again, or the "All" chip, emits ``None``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QLineF, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QPolygonF,
    QResizeEvent,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from app.results_model import TierLike, format_score
from app.tier_colors import level_of, tier_color

logger = logging.getLogger(__name__)

BINS = 48
MARGIN = 10
CHIP_HEIGHT = 24
RUG_HEIGHT = 14
AXIS_HEIGHT = 18
MINIMUM_SIZE = QSize(240, 150)
CHIP_MODES = ("labels", "counts", "dots")


@dataclass(frozen=True)
class PlotTier:
    rank: int
    label: str
    count: int
    min_score: float
    max_score: float
    level: int = 3  # relevance level (0 = match): what its colour says


class TierPlot(QWidget):
    """Score distribution of one query, with its tiers as clickable bands."""

    tier_clicked = Signal(object)  # rank or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        # Sizes are set, not computed by overriding sizeHint(): layouts ask for size hints often
        # (every status message), and each Python override answers only with the interpreter lock,
        # which busy worker threads make the GUI thread wait for.
        self.setMinimumSize(MINIMUM_SIZE)
        self.setMouseTracking(True)
        # Tab reaches it; Left/Right step the tier shown alone, Home (or Esc) shows them all.
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Tier inspector")
        self._tiers: list[PlotTier] = []
        self._scores = np.zeros(0)
        self._score_tiers = np.zeros(0, np.int64)
        self._background = np.zeros(0)
        self._given_hist: tuple[np.ndarray, np.ndarray] | None = None
        self._long_tail = False
        self._selected: int | None = None
        self._hist = np.zeros(0)
        self._edges = np.zeros(0)
        self._lo = 0.0
        self._hi = 1.0
        self._chips: list[tuple[QRect, int | None]] = []
        self._chip_mode = "labels"  # "labels", "counts" or "dots": the most that fits the width
        self._cache: QPixmap | None = None
        self._last: QPixmap | None = None  # the picture drawn last (shown until the next is drawn)
        self._render_scheduled = False
        self._plot_cache: tuple[QSize, QRect] | None = None

    # ------------------------------------------------------------------ data

    def set_data(
        self,
        tiers: Sequence[TierLike],
        scores: Sequence[float] | np.ndarray,
        score_tiers: Sequence[int] | np.ndarray,
        background: Sequence[float] | np.ndarray,
        long_tail: bool = False,
        histogram: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Show one query: its tiers, the shown results' scores and tiers, and the background.

        Args:
            background: The query's scores over a sample of the library (a histogram is drawn).
            histogram: ``(counts, edges)`` of the background, used when ``background`` is empty.
        """
        self._tiers = [
            PlotTier(t.rank, t.label, t.count, float(t.min_score), float(t.max_score), level_of(t))
            for t in tiers
        ]
        self._tiers.sort(key=lambda t: t.rank)
        self._scores = np.asarray(scores, dtype=np.float64).ravel()
        self._score_tiers = np.asarray(score_tiers, dtype=np.int64).ravel()
        bg = np.asarray(background, dtype=np.float64).ravel()
        self._background = bg[np.isfinite(bg)]
        self._long_tail = bool(long_tail)
        self._cache = None
        self._given_hist = None
        if histogram is not None and self._background.size == 0:
            counts, edges = (np.asarray(a, dtype=np.float64).ravel() for a in histogram)
            if counts.size and edges.size == counts.size + 1 and np.isfinite(edges).all():
                self._given_hist = (counts, edges)
        self._selected = None
        self._compute_range()
        self._invalidate()

    def clear(self) -> None:
        self.set_data([], [], [], [], False)

    def add_results(self, scores: Sequence[float] | np.ndarray) -> None:
        """Add ticks (grey) for results shown below the graded tiers; the tiers stay as they are."""
        extra = np.asarray(scores, dtype=np.float64).ravel()
        if extra.size == 0:
            return
        n = min(self._scores.size, self._score_tiers.size)
        self._scores = np.concatenate([self._scores[:n], extra])
        self._score_tiers = np.concatenate([self._score_tiers[:n], np.zeros(extra.size, np.int64)])
        self._compute_range()
        self._invalidate()

    def set_selected(self, rank: int | None) -> None:
        """Highlight one tier (what the grid is filtered to); None highlights none."""
        if rank != self._selected:
            self._selected = rank
            self._invalidate()

    @property
    def selected(self) -> int | None:
        return self._selected

    @property
    def picture_pending(self) -> bool:
        """A new picture (new data, selection) waits for its turn of the event loop; until it is
        drawn, repaints show the picture before it."""
        return self._render_scheduled

    @property
    def tiers(self) -> list[PlotTier]:
        return list(self._tiers)

    def has_data(self) -> bool:
        return bool(self._tiers)

    def _compute_range(self) -> None:
        finite_scores = self._scores[np.isfinite(self._scores)]
        values = np.concatenate([self._background, finite_scores])
        if self._given_hist is not None:
            values = np.concatenate([values, self._given_hist[1][[0, -1]]])
        if values.size == 0:
            self._lo, self._hi = 0.0, 1.0
            self._hist = np.zeros(0)
            self._edges = np.zeros(0)
            return
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo
        if span < 1e-9:
            lo, hi, span = lo - 0.05, hi + 0.05, 0.1
        self._lo, self._hi = lo - 0.03 * span, hi + 0.03 * span
        if self._background.size:
            counts, edges = np.histogram(self._background, bins=BINS, range=(self._lo, self._hi))
            self._hist = counts.astype(np.float64)
            self._edges = edges
        elif self._given_hist is not None:
            self._hist, self._edges = self._given_hist
        else:
            self._hist = np.zeros(0)
            self._edges = np.zeros(0)

    # ------------------------------------------------------------------ geometry

    def _plot_rect(self) -> QRect:
        if self._plot_cache is not None and self._plot_cache[0] == self.size():
            return QRect(self._plot_cache[1])
        rect = self._compute_plot_rect()
        self._plot_cache = (self.size(), QRect(rect))
        return rect

    def _compute_plot_rect(self) -> QRect:
        fm = QFontMetrics(self.font())
        top = MARGIN + CHIP_HEIGHT + 8
        bottom = self.height() - MARGIN - AXIS_HEIGHT - RUG_HEIGHT - 4
        left = MARGIN + fm.horizontalAdvance("library") + 8
        return QRect(left, top, max(10, self.width() - left - MARGIN), max(10, bottom - top))

    def x_of(self, score: float) -> float:
        """The widget x coordinate of ``score``."""
        plot = self._plot_rect()
        return plot.left() + (score - self._lo) / (self._hi - self._lo) * plot.width()

    def _level_of_rank(self, rank: int) -> int:
        tier = next((t for t in self._tiers if t.rank == rank), None)
        return 3 if tier is None else level_of(tier)

    def _xs_of(self, scores: np.ndarray, plot: QRect) -> np.ndarray:
        """:meth:`x_of` for an array of scores, within ``plot``."""
        return plot.left() + (scores - self._lo) / (self._hi - self._lo) * plot.width()

    def score_at(self, x: float) -> float:
        plot = self._plot_rect()
        return self._lo + (x - plot.left()) / max(1, plot.width()) * (self._hi - self._lo)

    def band_rect(self, rank: int) -> QRectF | None:
        """The clickable area of tier ``rank`` (at least a few pixels wide)."""
        for tier in self._tiers:
            if tier.rank == rank:
                plot = self._plot_rect()
                x0, x1 = self.x_of(tier.min_score), self.x_of(tier.max_score)
                if x1 - x0 < 6:
                    mid = (x0 + x1) / 2
                    x0, x1 = mid - 3, mid + 3
                return QRectF(x0, plot.top(), x1 - x0, plot.height() + RUG_HEIGHT + 4)
        return None

    def chip_rect(self, rank: int | None) -> QRect | None:
        """The clickable chip of tier ``rank`` (None: the "All" chip)."""
        self._layout_chips()
        for rect, r in self._chips:
            if r == rank:
                return rect
        return None

    def _layout_chips(self) -> None:
        """Chips with their labels when they fit the width, else with their counts only, else
        (the narrowest plot, with many results) their coloured dots only; the tooltip always
        has the label and count, and so do the grid's tier headers."""
        for mode in CHIP_MODES:
            self._chip_mode = mode
            self._chips = self._chip_row()
            if not self._chips or self._chips[-1][0].right() <= self.width() - MARGIN:
                break

    def _chip_row(self) -> list[tuple[QRect, int | None]]:
        bold = QFont(self.font())
        bold.setBold(True)
        fm = QFontMetrics(bold)
        x = MARGIN
        chips: list[tuple[QRect, int | None]] = []
        if self._tiers:
            w = fm.horizontalAdvance("All") + 20
            chips.append((QRect(x, MARGIN, w, CHIP_HEIGHT), None))
            x += w + 6
        for tier in self._tiers:
            text = self._chip_text(tier)
            w = fm.horizontalAdvance(text) + 30 if text else 26  # a dot alone: 9 + 8 + 9
            chips.append((QRect(x, MARGIN, w, CHIP_HEIGHT), tier.rank))
            x += w + 6
        return chips

    def _chip_text(self, tier: PlotTier) -> str:
        return {"labels": f"{tier.label} · {tier.count}", "counts": f"{tier.count}"}.get(self._chip_mode, "")

    @property
    def compact_chips(self) -> bool:
        """Whether the chips leave their labels out (too narrow for them)."""
        self._layout_chips()
        return self._chip_mode != "labels"

    @property
    def chip_mode(self) -> str:
        """What the chips show at this width: "labels", "counts" or "dots"."""
        self._layout_chips()
        return self._chip_mode

    # ------------------------------------------------------------------ keyboard

    def keyPressEvent(self, event: QKeyEvent) -> None:
        choices: list[int | None] = [None, *(t.rank for t in self._tiers)]
        key = event.key()
        if not self._tiers or key not in (
            Qt.Key.Key_Left,
            Qt.Key.Key_Right,
            Qt.Key.Key_Home,
            Qt.Key.Key_End,
            Qt.Key.Key_Escape,
        ):
            super().keyPressEvent(event)
            return
        if key == Qt.Key.Key_Escape and self._selected is None:
            event.ignore()  # nothing to clear here: the window decides
            return
        now = choices.index(self._selected) if self._selected in choices else 0
        target = {
            Qt.Key.Key_Left: max(now - 1, 0),
            Qt.Key.Key_Right: min(now + 1, len(choices) - 1),
            Qt.Key.Key_Home: 0,
            Qt.Key.Key_Escape: 0,
            Qt.Key.Key_End: len(choices) - 1,
        }[Qt.Key(key)]
        if choices[target] != self._selected:
            self.set_selected(choices[target])
            self.tier_clicked.emit(choices[target])
        event.accept()

    def focusInEvent(self, event) -> None:
        super().focusInEvent(event)
        self._invalidate()

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self._invalidate()

    def _hit(self, pos: QPointF) -> tuple[bool, int | None]:
        """What is under ``pos``: (True, rank or None for "All") or (False, None) for nothing."""
        self._layout_chips()
        for rect, rank in self._chips:
            if rect.contains(pos.toPoint()):
                return True, rank
        # Bands: the best tier wins where narrow bands overlap.
        for tier in self._tiers:
            rect = self.band_rect(tier.rank)
            if rect is not None and rect.contains(pos):
                return True, tier.rank
        return False, None

    # ------------------------------------------------------------------ events

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        hit, rank = self._hit(event.position())
        if not hit:
            super().mousePressEvent(event)
            return
        if rank is not None and rank == self._selected:
            rank = None
        self.set_selected(rank)
        self.tier_clicked.emit(rank)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        hit, _ = self._hit(event.position())
        self.setCursor(Qt.CursorShape.PointingHandCursor if hit else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def event(self, event) -> bool:
        if event.type() == event.Type.ToolTip and isinstance(event, QHelpEvent):
            hit, rank = self._hit(QPointF(event.pos()))
            text = ""
            if hit and rank is None:
                text = "Show every tier"
            elif hit:
                tier = next(t for t in self._tiers if t.rank == rank)
                text = (
                    f"{tier.label}: {tier.count} photo{'s' if tier.count != 1 else ''}, scores "
                    f"{format_score(tier.min_score)} to {format_score(tier.max_score)}. "
                    "Click to show only this tier."
                )
            elif self._plot_rect().contains(event.pos()) and self._tiers:
                text = f"score {format_score(self.score_at(event.pos().x()))}"
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    # ------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:
        # The picture changes only with the data, the selection or the size: it is drawn once into
        # a pixmap, and repaints (hover, tooltips, overlapping windows) copy it.
        # While a new picture waits for its turn (see _invalidate), the one before it stays up.
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._shown() if self._render_scheduled else self._picture())
        painter.end()

    def _shown(self) -> QPixmap:
        """The picture on screen now: the last one drawn, if it still fits the widget."""
        last = self._last
        return last if self._fits(last) else self._picture()

    def _fits(self, picture: QPixmap | None) -> bool:
        """Whether ``picture`` has the widget's size at its pixel ratio."""
        ratio = self.devicePixelRatioF()
        if picture is None:
            return False
        return picture.size() == self.size() * ratio and picture.devicePixelRatio() == ratio

    def _picture(self) -> QPixmap:
        cache = self._cache
        if not self._fits(cache):
            ratio = self.devicePixelRatioF()
            cache = QPixmap(self.size() * ratio)
            cache.setDevicePixelRatio(ratio)
            cache.fill(Qt.GlobalColor.transparent)
            self._render(cache)
            self._cache = self._last = cache
        return cache

    def _invalidate(self) -> None:
        """Draw the new picture in a turn of the event loop of its own, then show it.

        New data comes with a new page of results, whose layout and paint run in the event loop's
        next turn; drawn there too, the plot made that turn longer. So the picture is drawn a turn
        later still (two zero-timer hops: an event posted while posted events are being delivered
        waits for the next turn), and input and timers are handled in between.
        """
        self._cache = None
        if not self._render_scheduled:
            self._render_scheduled = True
            QTimer.singleShot(0, self, self._render_next_turn)

    def _render_next_turn(self) -> None:
        QTimer.singleShot(0, self, self._render_now)

    def _render_now(self) -> None:
        self._render_scheduled = False
        if self.isVisible() and self._cache is None:
            self._picture()
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._cache = None
        super().resizeEvent(event)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._cache = None
            self._plot_cache = None
        super().changeEvent(event)

    def _render(self, device: QPixmap) -> None:
        painter = QPainter(device)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setFont(self.font())
        pal = self.palette()
        painter.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        if not self._tiers:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter,
                "Search to see how the results stand out from the rest of the library.",
            )
            painter.end()
            return
        plot = self._plot_rect()
        self._paint_bands(painter, plot)
        self._paint_background(painter, plot)
        self._paint_rug(painter, plot)
        self._paint_axis(painter, plot, pal)
        self._paint_chips(painter, pal)
        self._paint_legend(painter, pal)
        painter.end()

    def _paint_bands(self, painter: QPainter, plot: QRect) -> None:
        for tier in self._tiers:
            rect = self.band_rect(tier.rank)
            if rect is None:
                continue
            color = QColor(tier_color(level_of(tier)))
            selected = self._selected == tier.rank
            dimmed = self._selected is not None and not selected
            color.setAlpha(30 if dimmed else 90 if selected else 55)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRect(rect)
            edge = QColor(tier_color(level_of(tier)))
            edge.setAlpha(60 if dimmed else 200)
            painter.setPen(QPen(edge, 2 if selected else 1))
            painter.drawLine(QPointF(rect.left(), plot.top()), QPointF(rect.left(), plot.bottom()))

    def _paint_background(self, painter: QPainter, plot: QRect) -> None:
        pal = self.palette()
        if self._hist.size == 0 or self._hist.max() <= 0:
            return
        # The histogram's outline as one polygon: each bin's top edge, closed along the bottom.
        xs = self._xs_of(self._edges, plot)
        ys = plot.bottom() - self._hist / self._hist.max() * (plot.height() - 4)
        outline = np.empty((2 * ys.size + 2, 2))
        outline[1:-1:2, 0], outline[2:-1:2, 0] = xs[:-1], xs[1:]
        outline[1:-1, 1] = np.repeat(ys, 2)
        outline[0] = xs[0], plot.bottom()
        outline[-1] = xs[-1], plot.bottom()
        path = QPainterPath()
        path.addPolygon(QPolygonF([QPointF(x, y) for x, y in outline.tolist()]))
        path.closeSubpath()
        fill = QColor(pal.color(QPalette.ColorRole.Text))
        fill.setAlpha(45)
        painter.setPen(QPen(QColor(pal.color(QPalette.ColorRole.Text).lighter(150)), 1))
        painter.setBrush(fill)
        painter.drawPath(path)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        fm = QFontMetrics(self.font())
        painter.drawText(
            QRect(MARGIN, plot.bottom() - fm.height(), plot.left() - MARGIN - 4, fm.height()),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            "library",
        )

    def _paint_rug(self, painter: QPainter, plot: QRect) -> None:
        top = plot.bottom() + 3
        fm = QFontMetrics(self.font())
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            QRect(MARGIN, top, plot.left() - MARGIN - 4, RUG_HEIGHT),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            "results",
        )
        del fm
        scores, ranks = self._scores, self._score_tiers[: self._scores.size]
        finite = np.isfinite(scores[: ranks.size])
        xs = self._xs_of(scores[: ranks.size], plot)
        for rank in np.unique(ranks[finite]):
            color = QColor(tier_color(self._level_of_rank(int(rank))))
            if self._selected is not None and rank != self._selected:
                color.setAlpha(70)
            painter.setPen(QPen(color, 1.5))
            lines = [QLineF(x, top, x, top + RUG_HEIGHT) for x in xs[finite & (ranks == rank)].tolist()]
            painter.drawLines(lines)

    def _paint_axis(self, painter: QPainter, plot: QRect, pal: QPalette) -> None:
        y = plot.bottom() + RUG_HEIGHT + 6
        painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        painter.drawLine(plot.left(), y, plot.right(), y)
        fm = QFontMetrics(self.font())
        for x, text, rect in self.tick_labels():
            painter.drawLine(QPointF(x, y), QPointF(x, y + 3))
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
            painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            QRect(MARGIN, y + 3, plot.left() - MARGIN - 4, fm.height()),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            "score",
        )

    def tick_labels(self) -> list[tuple[float, str, QRectF]]:
        """The axis's ticks: (x, label, the label's rectangle). A label is centred under its tick,
        but kept between the plot's left edge (where "score" is written) and the widget's right
        edge: a tick near an end has its label moved inwards rather than cut or overlapping."""
        plot = self._plot_rect()
        fm = QFontMetrics(self.font())
        y = plot.bottom() + RUG_HEIGHT + 6
        values = _nice_ticks(self._lo, self._hi, max(2, plot.width() // 90))
        # Two decimals, or as many as the step needs (0.025 apart: "0.125", not "0.12").
        decimals = next((d for d in (2, 3, 4) if all(abs(round(v, d) - v) < 1e-9 for v in values)), 4)
        labels = []
        for value in values:
            x = self.x_of(value)
            text = f"{value:.{decimals}f}"
            w = fm.horizontalAdvance(text) + 4
            left = min(max(x - w / 2, plot.left() - 2), self.width() - MARGIN / 2 - w)
            labels.append((x, text, QRectF(left, y + 3, w, fm.height())))
        return labels

    def _paint_legend(self, painter: QPainter, pal: QPalette) -> None:
        """What the plot shows, right-aligned on the chips' row when there is room for it."""
        chips_right = max((rect.right() for rect, _ in self._chips), default=MARGIN)
        fm = QFontMetrics(self.font())
        width = fm.horizontalAdvance(LEGEND)
        if chips_right + 24 + width > self.width() - MARGIN:
            return
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            QRect(self.width() - MARGIN - width, MARGIN, width, CHIP_HEIGHT),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            LEGEND,
        )

    def _paint_chips(self, painter: QPainter, pal: QPalette) -> None:
        self._layout_chips()
        for rect, rank in self._chips:
            selected = rank == self._selected
            if rank is None:
                color = pal.color(QPalette.ColorRole.Mid)
                text = "All"
            else:
                tier = next(t for t in self._tiers if t.rank == rank)
                color = tier_color(level_of(tier))
                text = self._chip_text(tier)
            fill = QColor(color)
            fill.setAlpha(220 if selected else 40)
            painter.setPen(QPen(color, 1))
            painter.setBrush(fill)
            painter.drawRoundedRect(
                QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), CHIP_HEIGHT / 2, CHIP_HEIGHT / 2
            )
            text_rect = rect.adjusted(10, 0, -8, 0)
            if rank is not None:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor("white") if selected else color)
                painter.drawEllipse(QRectF(rect.left() + 9, rect.center().y() - 4, 8, 8))
                text_rect = rect.adjusted(22, 0, -8, 0)
            painter.setPen(QColor("white") if selected else pal.color(QPalette.ColorRole.Text))
            font = QFont(self.font())
            font.setBold(selected)
            painter.setFont(font)
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
            painter.setFont(self.font())
            if selected and self.hasFocus():  # where the keyboard is
                painter.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2, Qt.PenStyle.DotLine))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(
                    QRectF(rect).adjusted(-2, -2, 2, 2), CHIP_HEIGHT / 2 + 2, CHIP_HEIGHT / 2 + 2
                )


LEGEND = "grey: this query's scores over the whole library · ticks: the results"


def _nice_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round tick values in [lo, hi], at most about ``max_ticks`` of them, and at least two: one
    tick alone gives no scale (a narrow plot asks for two, and the round step that fits two into
    the span can leave only one inside it)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return []
    raw = span / max(1, max_ticks)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (10, 5, 2.5, 2, 1, 0.5, 0.25, 0.2, 0.1)]
    fitting = [step for step in steps if step >= raw][-1]  # the smallest round step that fits
    for step in steps[steps.index(fitting) :]:
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)  # ends included
        ticks = [round(i * step, 10) + 0.0 for i in range(first, last + 1)]
        if len(ticks) >= 2:
            return ticks
    return ticks
