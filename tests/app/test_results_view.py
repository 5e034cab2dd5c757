"""The tiered results grid: one model of header + photo rows, a delegate, keyboard navigation."""

from __future__ import annotations

import collections
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPalette, QPixmap

from app.results_model import HeaderRow, PhotoRow, ResultsModel, Role
from app.results_view import ResultsView
from app.tier_colors import tier_color
from core.grading import grade


def query_scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A query's ``n`` best scores (4 clear matches, 8 related, the rest loose), best first, and
    the library's background scores."""
    rng = np.random.default_rng(seed)
    background = rng.normal(0.10, 0.03, 2000)
    scores = np.sort(
        np.concatenate(
            [rng.normal(0.32, 0.005, 4), rng.normal(0.22, 0.01, 8), rng.normal(0.15, 0.01, n - 12)]
        )
    )[::-1]
    return scores, background


def graded(seed: int = 0, n: int = 30):
    """Tiers and hits from the real grading of a query with a few clear matches."""
    scores, background = query_scores(seed, n)
    g = grade(scores, background)
    hits = [
        SimpleNamespace(
            photo_id=100 + i,
            path=f"/photos/img_{i:03d}.jpg",
            score=float(s),
            z=float(g.z[i]),
            tier=int(g.tier_of[i]),
        )
        for i, s in enumerate(scores)
    ]
    return g, hits


def _shown_grid(qtbot, thumbnails=None) -> tuple[ResultsModel, ResultsView]:
    model = ResultsModel(thumbnails)
    view = ResultsView()
    view.setModel(model)
    qtbot.addWidget(view)
    view.resize(760, 900)
    view.show()
    qtbot.waitExposed(view)
    return model, view


@pytest.fixture
def grid(qtbot):
    return _shown_grid(qtbot)


def test_rows_are_each_tier_header_then_its_photos_best_first(grid):
    model, _ = grid
    g, hits = graded()
    shuffled = list(reversed(hits))
    model.set_results(g.tiers, shuffled, g.long_tail)
    assert len(g.tiers) >= 2
    rows = [model.row(i) for i in range(model.rowCount())]
    assert sum(isinstance(r, HeaderRow) for r in rows) == len(g.tiers)
    assert sum(isinstance(r, PhotoRow) for r in rows) == len(hits)
    current_rank = None
    last_score = np.inf
    for r in rows:
        if isinstance(r, HeaderRow):
            assert current_rank is None or r.rank == current_rank + 1
            current_rank, last_score = r.rank, np.inf
            assert r.count == sum(h.tier == r.rank for h in hits)
        else:
            assert r.tier == current_rank
            assert r.score <= last_score
            last_score = r.score
    assert isinstance(rows[0], HeaderRow) and rows[0].rank == 1


def test_headers_are_not_selectable_and_photos_carry_their_numbers(grid):
    model, _ = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    header = model.index(0)
    photo = model.index(1)
    assert header.data(Role.IS_HEADER) is True
    assert not model.flags(header) & Qt.ItemFlag.ItemIsSelectable
    assert model.flags(photo) & Qt.ItemFlag.ItemIsSelectable
    best = hits[0]
    assert photo.data(Role.PHOTO_ID) == best.photo_id
    assert photo.data(Role.SCORE) == pytest.approx(best.score)
    tip = photo.data(Qt.ItemDataRole.ToolTipRole)
    assert f"{best.score:.3f}" in tip and f"{best.z:+.1f}" in tip and g.tiers[0].label in tip
    assert str(g.tiers[0].count) in header.data(Qt.ItemDataRole.ToolTipRole)


def test_tier_filter_shows_one_tier_and_clears(grid, qtbot):
    model, _ = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    second = g.tiers[1]
    with qtbot.waitSignal(model.filter_changed) as blocker:
        model.set_tier_filter(second.rank)
    assert blocker.args == [second.rank]
    rows = [model.row(i) for i in range(model.rowCount())]
    assert isinstance(rows[0], HeaderRow) and rows[0].rank == second.rank
    assert {r.tier for r in rows[1:]} == {second.rank} and len(rows) == second.count + 1
    model.set_tier_filter(None)
    assert model.rowCount() == len(hits) + len(g.tiers)
    model.set_tier_filter(99)  # no such tier: shows everything
    assert model.tier_filter is None


def test_headers_span_the_width_and_each_tier_starts_a_new_line(grid, qtbot):
    model, view = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    qtbot.waitUntil(lambda: view.visualRect(model.index(1)).isValid(), timeout=2000)
    viewport_width = view.viewport().width()
    for r in model.header_rows():
        rect = view.visualRect(model.index(r))
        assert rect.width() > 0.9 * viewport_width
        if r + 1 < model.rowCount():
            below = view.visualRect(model.index(r + 1))
            assert below.top() >= rect.bottom()
            assert below.left() <= rect.left() + 5
    view.resize(520, 900)
    qtbot.waitUntil(lambda: view.visualRect(model.index(0)).width() < 520, timeout=2000)


def test_arrow_keys_skip_headers_and_enter_opens_details(grid, qtbot):
    model, view = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    view.setFocus()
    assert view.select_first_photo()
    visited = [view.current_photo_id()]
    for _ in range(len(hits) + 3):
        qtbot.keyClick(view, Qt.Key.Key_Right)
        visited.append(view.current_photo_id())
    assert None not in visited
    assert visited[-1] == hits[-1].photo_id
    seen_order = list(dict.fromkeys(visited))
    assert seen_order == [h.photo_id for h in sorted(hits, key=lambda h: (h.tier, -h.score))]
    # Down from the last photo of tier 1 lands on a photo of tier 2, not on its header.
    first_tier_last = max(r for r in model.photo_rows() if model.row(r).tier == 1)
    view.setCurrentIndex(model.index(first_tier_last))
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert model.row(view.currentIndex()).__class__ is PhotoRow
    assert model.row(view.currentIndex()).tier == 2
    with qtbot.waitSignal(view.activated_photo) as blocker:
        qtbot.keyClick(view, Qt.Key.Key_Return)
    assert blocker.args == [view.current_photo_id()]


def test_mouse_selects_photos_and_ignores_headers(grid, qtbot):
    model, view = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    photo_rect = view.visualRect(model.index(2))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=photo_rect.center())
    assert view.current_photo_id() == model.index(2).data(Role.PHOTO_ID)
    header_rect = view.visualRect(model.index(0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=header_rect.center())
    assert all(not i.data(Role.IS_HEADER) for i in view.selectionModel().selectedIndexes())
    with qtbot.waitSignal(view.activated_photo) as blocker:
        # A real double click is press, release, double-click, release.
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=photo_rect.center())
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=photo_rect.center())
    assert blocker.args == [model.index(2).data(Role.PHOTO_ID)]


def test_empty_results_and_painting(grid, qtbot):
    model, view = grid
    model.set_results([], [], True)
    assert model.rowCount() == 0 and model.rowCount(model.index(0)) == 0
    assert model.data(QModelIndex()) is None
    g, hits = graded()
    model.set_results(g.tiers, hits, True)
    image = view.grab()  # paints every visible header and cell through the delegate
    assert not image.isNull()


def test_file_names_are_not_read_as_markup(grid):
    model, _ = grid
    g, hits = graded()
    hits[0].path = "/photos/<i>odd & name.jpg"
    model.set_results(g.tiers, hits, g.long_tail)
    tip = model.index(1).data(Qt.ItemDataRole.ToolTipRole)
    assert "&lt;i&gt;odd &amp; name.jpg" in tip and "<i>" not in tip


def _page_and_more(first: int = 30, total: int = 54, seed: int = 3):
    """A search's first ``first`` candidates graded, and the ``total`` a larger search returns."""
    scores, background = query_scores(seed, total)
    g = grade(scores[:first], background)
    page = [
        SimpleNamespace(photo_id=100 + i, path=f"/p/{i}.jpg", score=float(s), z=float(z), tier=int(t))
        for i, (s, z, t) in enumerate(zip(scores[:first], g.z, g.tier_of, strict=True))
    ]
    larger = [
        SimpleNamespace(photo_id=100 + i, path=f"/p/{i}.jpg", score=float(s), z=0.0)
        for i, s in enumerate(scores)
    ]
    return g, page, larger


def _rows(model):
    return [model.row(i) for i in range(model.rowCount())]


def test_the_end_of_the_grid_asks_for_more_once_and_more_goes_below_the_tiers(grid, qtbot):
    model, view = grid
    g, page, larger = _page_and_more()
    asked = []
    model.more_requested.connect(lambda: asked.append(model.rowCount()))
    model.set_results(g.tiers, page, g.long_tail, more_available=True)
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=2000)  # the page is taller than the view
    assert model.canFetchMore(QModelIndex()) and asked == []  # the end is not in sight yet

    # The user picks a photo, then scrolls to the end: one request, however often the end is hit.
    target = model.index(model.photo_rows()[5])
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(target).center())
    picked = view.current_photo_id()
    bar.triggerAction(bar.SliderAction.SliderToMaximum)
    qtbot.waitUntil(lambda: asked != [], timeout=2000)
    bar.triggerAction(bar.SliderAction.SliderPageStepSub)
    bar.triggerAction(bar.SliderAction.SliderToMaximum)
    assert len(asked) == 1 and model.is_fetching_more and not model.canFetchMore(QModelIndex())

    before, position = _rows(model), bar.value()
    assert model.append_more(larger[:42], more_available=True) == 12  # the 30 shown come back: skipped
    rows = _rows(model)
    assert rows[: len(before)] == before  # the tiers and their photos stay as they were
    header = rows[len(before)]
    assert isinstance(header, HeaderRow) and header.label == "More results" and header.count == 12
    assert [r.photo_id for r in rows[len(before) + 1 :]] == [h.photo_id for h in larger[30:42]]
    photo_scores = [r.score for r in rows if isinstance(r, PhotoRow)]
    assert photo_scores == sorted(photo_scores, reverse=True)  # best first, all the way down
    assert view.current_photo_id() == picked
    assert [i.data(Role.PHOTO_ID) for i in view.selectionModel().selectedIndexes()] == [picked]
    assert bar.value() == position
    assert model.canFetchMore(QModelIndex())

    # The next page grows the same section; its header says so.
    changed = []
    model.dataChanged.connect(lambda a, b, roles=(): changed.append(a.row()))
    assert model.append_more(larger, more_available=False) == 12
    assert changed == [len(before)] and model.row(len(before)).count == 24
    assert model.more_count == 24 and not model.canFetchMore(QModelIndex())
    tip = model.index(model.rowCount() - 1).data(Qt.ItemDataRole.ToolTipRole)
    assert "below the graded tiers" in tip
    assert model.index(len(before)).data(Qt.ItemDataRole.ToolTipRole).startswith("More results: 24 photos")


def test_more_under_a_tier_filter_and_an_empty_answer(grid, qtbot):
    model, _view = grid
    g, page, larger = _page_and_more()
    model.set_results(g.tiers, page, g.long_tail, more_available=True)
    model.set_tier_filter(g.tiers[0].rank)
    assert not model.canFetchMore(QModelIndex())  # a tier shown alone is complete
    model.fetchMore(QModelIndex())
    assert not model.is_fetching_more
    shown = _rows(model)
    assert model.append_more(larger[:40], more_available=True) == 10  # arriving while filtered
    assert _rows(model) == shown  # ... stays out of sight
    model.set_tier_filter(None)
    rows = _rows(model)
    assert rows[-11].label == "More results" and [r.photo_id for r in rows[-10:]] == [
        h.photo_id for h in larger[30:40]
    ]
    assert model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.append_more(larger[:40], more_available=True) == 0  # nothing new: no more asking
    assert not model.canFetchMore(QModelIndex()) and not model.is_fetching_more
    # A new search starts afresh.
    model.set_results(g.tiers, page, g.long_tail, more_available=False)
    assert model.more_count == 0 and not model.canFetchMore(QModelIndex())


def test_layout_and_paint_enter_python_only_through_the_views_pass_methods(grid):
    """Qt's item-by-item calls (row counts, flags, size hints, cells) happen inside one Python call
    per pass, with the interpreter lock already held, not each on its own from the event loop."""
    from PySide6.QtWidgets import QApplication

    model, view = grid
    g, page, _ = _page_and_more(first=40, total=60)
    model.set_results(g.tiers, page, g.long_tail, more_available=True)
    view.viewport().update()
    me = sys._getframe().f_code
    entries: collections.Counter = collections.Counter()

    def hook(frame, event, arg):
        if event == "call" and frame.f_back is not None and frame.f_back.f_code is me:
            entries[frame.f_code.co_name] += 1

    sys.setprofile(hook)
    try:
        for _ in range(5):
            QApplication.processEvents()
    finally:
        sys.setprofile(None)
    assert "viewportEvent" in entries and {"timerEvent", "doItemsLayout"} & set(entries)  # paint, layout
    assert not {"rowCount", "flags", "data", "sizeHint", "paint", "index"} & set(entries)


class _SolidThumbnails(QObject):
    """Thumbnails that are always ready: one solid colour, landscape (4:3)."""

    ready = Signal(str, int)
    failed = Signal(str, int, str)

    def __init__(self) -> None:
        super().__init__()
        image = QImage(160, 120, QImage.Format.Format_RGB32)
        image.fill(QColor("#ff0000"))
        self._pixmap = QPixmap.fromImage(image)

    def pixmap(self, path: str, side: int) -> QPixmap:
        return self._pixmap

    def error(self, path: str, side: int) -> None:
        return None


def test_a_cell_shows_its_thumbnail_and_under_it_a_tier_dot_and_its_score(qtbot):
    model, view = _shown_grid(qtbot, _SolidThumbnails())
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    first = model.photo_rows()[0]
    qtbot.waitUntil(lambda: view.visualRect(model.index(first)).isValid(), timeout=2000)
    rect = view.visualRect(model.index(first))
    image = view.viewport().grab().toImage()
    red = [
        (x, y)
        for y in range(rect.top(), rect.bottom() + 1)
        for x in range(rect.left(), rect.right() + 1)
        if image.pixelColor(x, y) == QColor("#ff0000")
    ]
    xs, ys = sorted({x for x, _ in red}), sorted({y for _, y in red})
    assert len(xs) == 160 and len(ys) == 120  # drawn at its size, centred across the cell
    assert abs((xs[0] - rect.left()) - (rect.right() - xs[-1])) <= 1
    caption = [(x, y) for y in range(ys[-1] + 1, rect.bottom() + 1) for x in range(xs[0], xs[-1] + 1)]
    dot = QColor(tier_color(model.level_of(model.row(first).tier)))
    assert any(image.pixelColor(x, y) == dot for x, y in caption)  # the tier's dot
    text = view.palette().color(QPalette.ColorRole.Text)
    assert any(image.pixelColor(x, y) == text for x, y in caption)  # the score, in the text colour


def test_sizes_follow_the_font_and_the_width(grid, qtbot):
    model, view = grid
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    header, cell = model.header_rows()[0], model.photo_rows()[0]
    qtbot.waitUntil(lambda: view.visualRect(model.index(cell)).isValid(), timeout=2000)
    header_width = view.visualRect(model.index(header)).width()
    cell_height = view.visualRect(model.index(cell)).height()
    font = QFont(view.font())
    font.setPointSizeF(font.pointSizeF() * 2)
    view.setFont(font)  # a taller caption line: taller cells
    qtbot.waitUntil(lambda: view.visualRect(model.index(cell)).height() > cell_height, timeout=2000)
    view.resize(520, 900)  # headers span the new width
    qtbot.waitUntil(lambda: view.visualRect(model.index(header)).width() < header_width - 200, timeout=2000)


def test_a_header_too_wide_for_a_narrow_grid_is_elided_not_cut(grid):
    _, view = grid
    delegate, font = view.itemDelegate(), view.font()
    row = HeaderRow(1, "Best matches", 2, 0.72, 0.81, 0)
    whole = delegate.header_detail(font, row, 1000)
    assert whole == "2 photos · scores 0.810 – 0.720"
    fm = QFontMetrics(font)
    narrow = fm.horizontalAdvance(whole) // 2
    shown = delegate.header_detail(font, row, narrow)
    assert shown.endswith("…") and whole.startswith(shown[:-1]) and fm.horizontalAdvance(shown) <= narrow
    alone = HeaderRow(1, "Best matches", 1, 0.81, 0.81, 0)
    assert delegate.header_detail(font, alone, 1000) == "1 photo · score 0.810"


def test_tier_colours_follow_relevance_not_rank():
    """Green always means a match: a long-tail query's first tier gets the colour of "close"."""
    from core.grading import as_long_tail

    model = ResultsModel()
    g, hits = graded()
    model.set_results(g.tiers, hits, g.long_tail)
    assert not g.long_tail and model.level_of(1) == 0 and tier_color(0) == QColor("#2e9e5b")
    lt = as_long_tail(g)
    model.set_results(lt.tiers, hits, lt.long_tail)
    assert model.level_of(1) == 1 and tier_color(model.level_of(1)) != tier_color(0)
    assert [t.level for t in model.tiers] == sorted(t.level for t in model.tiers)


def test_a_photos_checked_details_are_kept_and_told():
    """What a photo gets wrong of the query travels with its row, into its tooltip; a bare hit (or
    a query graded on scores alone) says nothing of details."""
    from app.results_model import differs_text, rows_from_hits

    assert differs_text(None) == ""
    assert differs_text(()) == "no difference found"
    assert differs_text(("colour",)) == "colour differs"
    assert differs_text(("count", "colour", "time")) == "count, colour and time differ"

    g, hits = graded()
    for h, d in zip(hits, [(), ("colour",), ("colour", "place")] * 10, strict=False):
        h.differs = d
    checked = rows_from_hits(hits, details_checked=True)
    assert [r.differs for r in checked[:3]] == [(), ("colour",), ("colour", "place")]
    assert all(r.differs is None for r in rows_from_hits(hits))  # not checked: unknown, not "none"

    model = ResultsModel()
    model.set_results(g.tiers, checked, g.long_tail)
    tips = {
        model.row(i).photo_id: model.index(i).data(Qt.ItemDataRole.ToolTipRole) for i in model.photo_rows()
    }
    assert "colour and place differ" in tips[hits[2].photo_id]
    assert "no difference found" in tips[hits[0].photo_id]
    model.set_results(g.tiers, hits, g.long_tail)  # bare hits
    assert all(model.row(i).differs is None for i in model.photo_rows())
    assert "differ" not in model.index(model.photo_rows()[0]).data(Qt.ItemDataRole.ToolTipRole)
