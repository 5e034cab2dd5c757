"""The results grid: one ``QListView`` in a wrapping left-to-right flow, painted by a delegate.

Photo rows are fixed-size cells (thumbnail, score badge); header rows span the viewport's width,
so each tier starts on a new line under its header. The view keeps the delegate told of its
viewport width and re-lays items out when it changes.

Laying the grid out and painting it call the Python model and delegate hundreds of times (row
counts, flags, size hints, cells). Each call from Qt's C++ into Python must take the interpreter
lock, and while indexing runs, worker threads hold it for up to the switch interval at a time: a
grid of 60 results took over a second to appear next to three threads running Python. So the
view enters Python once per pass instead: :class:`ResultsView` overrides the entry points of a
pass (``doItemsLayout``, ``paintEvent``, ``viewportEvent``, ``timerEvent``, model signals...)
and runs Qt's own implementation from there, with the lock already held, so the calls made during
the pass take it without waiting.
"""

from __future__ import annotations

import logging
import math
import os

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimerEvent,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QResizeEvent,
    QStaticText,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.results_model import (
    MORE_RANK,
    THUMB_SIDE,
    HeaderRow,
    PhotoRow,
    ResultsModel,
    Role,
    format_score,
    format_z,
)
from app.tier_colors import tier_color

logger = logging.getLogger(__name__)

CELL_PADDING = 6
SPACING = 6
HEADER_HEIGHT = 40
THUMB_SIDES = (96, 128, 160, 224, 320)  # thumbnail sizes the size slider steps through
CAPTION_CACHE = 4000  # captions (score text, elided name) kept ready for painting

# Painting runs for every visible cell: flags, enum values and their combinations are looked up
# once, here (each lookup of a Qt enum member through its class costs a Python attribute search).
_LEFT = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
_SELECTED = QStyle.StateFlag.State_Selected
_HOVERED = QStyle.StateFlag.State_MouseOver
_FOCUSED = QStyle.StateFlag.State_HasFocus
_NO_PEN = Qt.PenStyle.NoPen
_NO_BRUSH = Qt.BrushStyle.NoBrush
_DOT_LINE = Qt.PenStyle.DotLine
_ANTIALIASING = QPainter.RenderHint.Antialiasing
_SMOOTH_PIXMAPS = QPainter.RenderHint.SmoothPixmapTransform
_KEEP_ASPECT = Qt.AspectRatioMode.KeepAspectRatio
_TEXT = QPalette.ColorRole.Text
_PLACEHOLDER = QPalette.ColorRole.PlaceholderText
_HIGHLIGHT = QPalette.ColorRole.Highlight
_MIDLIGHT = QPalette.ColorRole.Midlight
_ALTERNATE_BASE = QPalette.ColorRole.AlternateBase


class ResultsDelegate(QStyledItemDelegate):
    """Paints tier headers and photo cells; never creates a widget per photo."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header_width = 600
        self.thumb_side = THUMB_SIDE  # the thumbnails' box width (the size slider changes it)
        self._metrics: dict[str, QFontMetrics] = {}  # by font key
        self._last: tuple[QFont, str, QFontMetrics] | None = None  # the font asked for last
        self._captions: dict[tuple[str, float, str, str], tuple[QStaticText, int, QStaticText]] = {}
        self._tier_colors: dict[int, QColor] = {}
        self._title_fonts: dict[str, tuple[QFont, QFontMetrics]] = {}  # headers' titles, by font key
        # (font, header width, header size, cell size) for the font asked for last
        self._sizes: tuple[QFont, int, QSize, QSize] | None = None

    def _fm(self, font: QFont) -> tuple[str, QFontMetrics]:
        # Layout asks for a size hint per row and painting for metrics per cell, nearly always with
        # the view's font: comparing fonts costs a tenth of computing a font's key.
        last = self._last
        if last is not None and last[0] == font:
            return last[1], last[2]
        key = font.key()
        fm = self._metrics.get(key)
        if fm is None:
            fm = self._metrics[key] = QFontMetrics(font)
        self._last = (QFont(font), key, fm)
        return key, fm

    @property
    def thumb_box_height(self) -> int:
        return self.thumb_side * 4 // 5  # landscape photos fill it; portrait ones are centred in it

    def set_thumb_side(self, side: int) -> None:
        self.thumb_side = int(side)
        self._sizes = None
        self._captions.clear()

    def cell_size(self, option: QStyleOptionViewItem) -> QSize:
        line = self._fm(option.font)[1].height()
        return QSize(self.thumb_side + 2 * CELL_PADDING, self.thumb_box_height + 2 * CELL_PADDING + line + 4)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        # Asked for every row laid out and every cell painted (the view places a cell by its size).
        font = option.font
        sizes = self._sizes
        if sizes is None or sizes[1] != self.header_width or sizes[0] != font:
            line = self._fm(font)[1].height()
            header = QSize(max(200, self.header_width), max(HEADER_HEIGHT, 2 * line + 10))
            sizes = self._sizes = (QFont(font), self.header_width, header, self.cell_size(option))
        return sizes[2] if _model(index).is_header(index.row()) else sizes[3]

    def _title_font(self, font: QFont) -> tuple[QFont, QFontMetrics]:
        """The font of a header's title (bold, a little larger) and its metrics."""
        key = self._fm(font)[0]
        title = self._title_fonts.get(key)
        if title is None:
            title_font = QFont(font)
            title_font.setBold(True)
            title_font.setPointSizeF(font.pointSizeF() * 1.1)
            title = self._title_fonts[key] = (title_font, QFontMetrics(title_font))
        return title

    def _caption(self, font: QFont, row: PhotoRow, width: int) -> tuple[QStaticText, int, QStaticText]:
        """(score text, where the name starts, the name elided to fit): the same at every repaint,
        laid out once (static texts keep their glyph layout between paints)."""
        key, fm = self._fm(font)
        cache_key = (row.path, row.score, key, row.note)
        caption = self._captions.get(cache_key)
        if caption is None:
            if len(self._captions) >= CAPTION_CACHE:
                self._captions.clear()
            score_text = row.note or format_score(row.score)
            name_left = 12 + fm.horizontalAdvance(score_text) + 8
            name = fm.elidedText(os.path.basename(row.path), Qt.TextElideMode.ElideMiddle, width - name_left)
            caption = self._captions[cache_key] = (_static_text(score_text), name_left, _static_text(name))
        return caption

    def _tier_color(self, level: int) -> QColor:
        color = self._tier_colors.get(level)
        if color is None:
            color = self._tier_colors[level] = tier_color(level)
        return color

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        # The rows are read from the model directly (one Python call, not one per role).
        model = _model(index)
        row = model.row(index.row())
        if row is None:
            return
        painter.save()
        try:
            painter.setRenderHint(_ANTIALIASING, True)
            if isinstance(row, HeaderRow):
                self._paint_header(painter, option, row)
            else:
                self._paint_photo(painter, option, model, row)
        finally:
            painter.restore()

    def _paint_header(self, painter: QPainter, option: QStyleOptionViewItem, row: HeaderRow) -> None:
        rect: QRect = option.rect
        color = self._tier_color(row.level)
        pal: QPalette = option.palette
        band = QRect(rect.left(), rect.top() + 4, rect.width(), rect.height() - 6)
        fill = QColor(color)
        fill.setAlpha(36)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(band, 4, 4)
        painter.setBrush(color)
        painter.drawRoundedRect(QRect(band.left(), band.top(), 5, band.height()), 2, 2)

        title_font, fm = self._title_font(option.font)
        painter.setFont(title_font)
        # Headers are not enabled items (so the cursor skips them); paint them in active colours anyway.
        active = QPalette.ColorGroup.Active
        painter.setPen(pal.color(active, QPalette.ColorRole.Text))
        text_rect = band.adjusted(14, 0, -10, 0)
        title = row.label
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, title)
        painter.setFont(option.font)
        detail_rect = text_rect.adjusted(fm.horizontalAdvance(title) + 14, 0, 0, 0)
        detail = self.header_detail(option.font, row, detail_rect.width())
        painter.setPen(pal.color(active, QPalette.ColorRole.PlaceholderText))
        painter.drawText(detail_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, detail)

    def header_detail(self, font: QFont, row: HeaderRow, width: int) -> str:
        """A header's count and score range, elided to ``width`` pixels (a narrow grid shows
        "2 photos · sc…" rather than a word cut off at the edge)."""
        lo, hi = row.min_score, row.max_score
        where = ", not graded into the tiers above" if row.rank == MORE_RANK else ""
        photos = f"{row.count} photo{'s' if row.count != 1 else ''}{where}"
        graded = math.isfinite(lo) and math.isfinite(hi)  # browsing: groups of photos, not tiers
        scores = (
            f"score {format_score(hi)}"
            if row.count == 1
            else f"scores {format_score(hi)} – {format_score(lo)}"
        )
        detail = f"{photos} · {scores}" if graded else photos
        return self._fm(font)[1].elidedText(detail, Qt.TextElideMode.ElideRight, max(0, width))

    def _paint_photo(
        self, painter: QPainter, option: QStyleOptionViewItem, model: ResultsModel, row: PhotoRow
    ) -> None:
        rect: QRect = option.rect
        pal: QPalette = option.palette
        state = option.state
        cell = rect.adjusted(1, 1, -1, -1)
        if state & _SELECTED:
            highlight = pal.color(_HIGHLIGHT)
            painter.setPen(QPen(highlight, 2))
            fill = QColor(highlight)
            fill.setAlpha(60)
            painter.setBrush(fill)
            painter.drawRoundedRect(cell, 6, 6)
        elif state & _HOVERED:
            painter.setPen(_NO_PEN)
            painter.setBrush(pal.color(_MIDLIGHT))
            painter.drawRoundedRect(cell, 6, 6)
        if state & _FOCUSED:
            painter.setPen(QPen(pal.color(_HIGHLIGHT), 1, _DOT_LINE))
            painter.setBrush(_NO_BRUSH)
            painter.drawRoundedRect(cell.adjusted(1, 1, -1, -1), 6, 6)

        left, top = rect.left() + CELL_PADDING, rect.top() + CELL_PADDING
        side, box_height = self.thumb_side, self.thumb_box_height
        thumb_box = QRect(left, top, side, box_height)
        pix, error = model.thumbnail(row)
        if pix is not None and not pix.isNull():
            size = pix.size().scaled(side, box_height, _KEEP_ASPECT)
            w, h = size.width(), size.height()
            # Centred across, resting on the box's bottom: captions sit right under the picture.
            target = QRect(left + (side - w) // 2, top + box_height - h, w, h)
            painter.setRenderHint(_SMOOTH_PIXMAPS, True)
            painter.drawPixmap(target, pix)
        else:
            painter.setPen(_NO_PEN)
            painter.setBrush(pal.color(_ALTERNATE_BASE))
            painter.drawRoundedRect(thumb_box.adjusted(8, 8, -8, -8), 4, 4)
            if error:
                painter.setPen(pal.color(_PLACEHOLDER))
                painter.drawText(
                    thumb_box.adjusted(12, 12, -12, -12),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    f"No preview\n{error}",
                )

        # Caption: a tier-coloured dot, the score, the file name (elided).
        font = option.font
        line_top = top + box_height + 3  # 4 px under the box (whose bottom row is the last inside)
        line_height = self._fm(font)[1].height()
        painter.setPen(_NO_PEN)
        painter.setBrush(self._tier_color(model.level_of(row.tier)))
        painter.drawEllipse(QRectF(left, line_top + (line_height - 1) // 2 - 4, 8, 8))
        score_text, name_left, name = self._caption(font, row, side)
        painter.setFont(font)
        painter.setPen(pal.color(_TEXT))
        painter.drawStaticText(left + 12, line_top, score_text)
        painter.setPen(pal.color(_PLACEHOLDER))
        painter.drawStaticText(left + name_left, line_top, name)


def _static_text(text: str) -> QStaticText:
    static = QStaticText(text)
    static.setTextFormat(Qt.TextFormat.PlainText)
    return static


def _model(index: QModelIndex | QPersistentModelIndex) -> ResultsModel:
    model = index.model()
    if not isinstance(model, ResultsModel):
        raise TypeError("ResultsDelegate paints a ResultsModel")
    return model


class ResultsView(QListView):
    """The grid; Enter (or a double click) asks for the details of the current photo."""

    activated_photo = Signal(int)  # photo id: Enter, Space or a double click
    current_photo_changed = Signal(object)  # photo id or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._delegate = ResultsDelegate(self)
        self.setItemDelegate(self._delegate)
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.setUniformItemSizes(False)
        self.setSpacing(SPACING // 2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setMouseTracking(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setDragEnabled(True)  # photos drag out as files
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setAccessibleName("Search results")
        self.doubleClicked.connect(self._on_activated)
        self._update_header_width()

    def setModel(self, model) -> None:
        super().setModel(model)
        if isinstance(model, ResultsModel):
            # Sharp thumbnails on high-density screens: ask for them in device pixels.
            model.thumb_pixels = self._thumb_pixels()
        if model is not None:
            self.selectionModel().currentChanged.connect(self._on_current_changed)

    def _thumb_pixels(self) -> int:
        side = self._delegate.thumb_side
        return max(side, round(side * self.devicePixelRatioF()))  # sharp on high-density screens

    @property
    def thumb_side(self) -> int:
        return self._delegate.thumb_side

    def set_thumb_side(self, side: int) -> None:
        """Show thumbnails ``side`` pixels wide (one of :data:`THUMB_SIDES` or anything between)."""
        side = min(max(int(side), THUMB_SIDES[0]), THUMB_SIDES[-1])
        if side == self._delegate.thumb_side:
            return
        self._delegate.set_thumb_side(side)
        model = self.model()
        if isinstance(model, ResultsModel):
            model.thumb_pixels = self._thumb_pixels()
        current = self.currentIndex()
        self.scheduleDelayedItemsLayout()
        self.viewport().update()
        if current.isValid():
            self.scrollTo(current)

    def current_photo_id(self) -> int | None:
        idx = self.currentIndex()
        if not idx.isValid() or idx.data(Role.IS_HEADER):
            return None
        return int(idx.data(Role.PHOTO_ID))

    def selected_photo_ids(self) -> list[int]:
        return [
            int(i.data(Role.PHOTO_ID))
            for i in self.selectionModel().selectedIndexes()
            if not i.data(Role.IS_HEADER)
        ]

    def select_photos(self, photo_ids: list[int], current: int | None) -> None:
        """Select those of ``photo_ids`` that are shown and make ``current`` the current one (if shown)."""
        model = self.model()
        if not isinstance(model, ResultsModel):
            return
        selection = QItemSelection()
        for pid in photo_ids:
            idx = model.index_of_photo(pid)
            if idx.isValid():
                selection.select(idx, idx)
        flags = QItemSelectionModel.SelectionFlag
        self.selectionModel().select(selection, flags.ClearAndSelect)
        idx = model.index_of_photo(current) if current is not None else QModelIndex()
        if idx.isValid():
            self.selectionModel().setCurrentIndex(idx, flags.NoUpdate)
            self.scrollTo(idx)

    def select_first_photo(self) -> bool:
        model = self.model()
        if model is None:
            return False
        for r in range(model.rowCount()):
            idx = model.index(r, 0)
            if not idx.data(Role.IS_HEADER):
                self.setCurrentIndex(idx)
                return True
        return False

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            idx = self.currentIndex()
            if idx.isValid() and not idx.data(Role.IS_HEADER):
                self._on_activated(idx)
                event.accept()
                return
        if event.key() == Qt.Key.Key_Escape:
            event.ignore()  # the window decides what Escape clears
            return
        super().keyPressEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._update_header_width()
        super().resizeEvent(event)
        self.scheduleDelayedItemsLayout()

    # Entry points of a layout or paint pass: Qt's implementation runs under the interpreter lock
    # taken once here (see the module docstring).

    def doItemsLayout(self) -> None:
        super().doItemsLayout()

    def updateGeometries(self) -> None:
        super().updateGeometries()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)

    def viewportEvent(self, event: QEvent) -> bool:
        return super().viewportEvent(event)

    def dataChanged(
        self,
        top_left: QModelIndex | QPersistentModelIndex,
        bottom_right: QModelIndex | QPersistentModelIndex,
        roles: list[int] | None = None,
    ) -> None:
        super().dataChanged(top_left, bottom_right, roles or [])

    def reset(self) -> None:
        super().reset()

    def rowsInserted(self, parent: QModelIndex | QPersistentModelIndex, first: int, last: int) -> None:
        super().rowsInserted(parent, first, last)

    def timerEvent(self, event: QTimerEvent) -> None:  # the delayed layout, fetching more, autoscroll
        super().timerEvent(event)

    def verticalScrollbarValueChanged(self, value: int) -> None:
        super().verticalScrollbarValueChanged(value)

    def _update_header_width(self) -> None:
        self._delegate.header_width = max(200, self.viewport().width() - 2 * self.spacing() - 2)

    def _on_activated(self, index: QModelIndex) -> None:
        if index.isValid() and not index.data(Role.IS_HEADER):
            self.activated_photo.emit(int(index.data(Role.PHOTO_ID)))

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and not current.data(Role.IS_HEADER):
            self.current_photo_changed.emit(int(current.data(Role.PHOTO_ID)))
        else:
            self.current_photo_changed.emit(None)


__all__ = ["ResultsDelegate", "ResultsView", "format_score", "format_z"]
