"""The tier inspector: bands and chips at the right place, clicks filter, painting works."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QPoint, Qt

from app.tier_plot import TierPlot, _nice_ticks
from tests.app.test_results_view import graded


@pytest.fixture
def plot(qtbot):
    widget = TierPlot()
    qtbot.addWidget(widget)
    widget.resize(700, 200)
    widget.show()
    qtbot.waitExposed(widget)
    g, hits = graded()
    rng = np.random.default_rng(1)
    widget.set_data(
        g.tiers, [h.score for h in hits], [h.tier for h in hits], rng.normal(0.10, 0.03, 2000), g.long_tail
    )
    return widget, g


def test_bands_sit_where_their_scores_are(plot):
    widget, g = plot
    assert widget.has_data()
    xs = []
    for tier in g.tiers:
        rect = widget.band_rect(tier.rank)
        assert rect is not None
        assert rect.left() <= widget.x_of(tier.min_score) + 1e-6
        assert rect.right() >= widget.x_of(tier.max_score) - 1e-6
        xs.append(widget.x_of((tier.min_score + tier.max_score) / 2))
    assert xs == sorted(xs, reverse=True)  # best tier furthest right
    assert widget.score_at(widget.x_of(0.2)) == pytest.approx(0.2)


def test_clicking_a_band_then_again_toggles_the_filter(plot, qtbot):
    widget, g = plot
    band = widget.band_rect(g.tiers[0].rank)
    with qtbot.waitSignal(widget.tier_clicked) as blocker:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=band.center().toPoint())
    assert blocker.args == [g.tiers[0].rank] and widget.selected == g.tiers[0].rank
    with qtbot.waitSignal(widget.tier_clicked) as blocker:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=band.center().toPoint())
    assert blocker.args == [None] and widget.selected is None


def test_chips_select_a_tier_and_all_clears(plot, qtbot):
    widget, g = plot
    last = g.tiers[-1].rank
    with qtbot.waitSignal(widget.tier_clicked) as blocker:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.chip_rect(last).center())
    assert blocker.args == [last]
    with qtbot.waitSignal(widget.tier_clicked) as blocker:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.chip_rect(None).center())
    assert blocker.args == [None]
    chips = [widget.chip_rect(t.rank) for t in g.tiers]
    assert all(widget.rect().contains(c) for c in chips)  # every chip is visible at this width


def test_clicking_empty_space_does_nothing(plot, qtbot):
    widget, _ = plot
    with qtbot.assertNotEmitted(widget.tier_clicked):
        qtbot.mouseClick(
            widget, Qt.MouseButton.LeftButton, pos=QPoint(widget.width() - 3, widget.height() - 3)
        )


def _drawn(widget, qtbot):
    """The plot's picture, once the pending one is drawn."""
    qtbot.waitUntil(lambda: not widget.picture_pending, timeout=2000)
    return widget.grab().toImage()


def test_paints_with_data_and_empty(plot, qtbot):
    widget, _ = plot
    plain = _drawn(widget, qtbot)
    assert not plain.isNull()
    widget.set_selected(2)
    assert widget.picture_pending
    assert widget.grab().toImage() == plain  # until its turn comes, the picture before it stays up
    selected = _drawn(widget, qtbot)
    assert selected != plain  # the selection is drawn (the cached picture was redrawn)
    widget.set_selected(None)
    assert _drawn(widget, qtbot) == plain
    widget.resize(500, 220)
    assert widget.grab().toImage().size() != plain.size()
    widget.clear()
    assert not widget.has_data()
    assert not widget.grab().isNull()


def test_ticks_are_round_and_inside_the_range():
    ticks = _nice_ticks(0.031, 0.347, 5)
    assert 2 <= len(ticks) <= 8
    assert all(0.031 <= t <= 0.347 for t in ticks)
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    assert _nice_ticks(1.0, 1.0, 4) == []


@pytest.mark.parametrize(("lo", "hi"), [(-0.45, 0.85), (-0.4, 0.9), (0.05, 0.95), (0.31, 0.42), (-1.0, 1.0)])
def test_a_narrow_plot_still_gets_a_scale(lo, hi):
    """Two ticks asked for (a plot under 270 px): at least two inside the range, evenly spaced,
    not the one '0.00' a step of 1 leaves inside [-0.45, 0.85]."""
    ticks = _nice_ticks(lo, hi, 2)
    assert 2 <= len(ticks) <= 4, ticks
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
    assert np.allclose(np.diff(ticks), ticks[1] - ticks[0])
    assert "-0.00" not in [f"{t:.2f}" for t in ticks]


def test_ticks_include_both_ends_of_the_range():
    assert _nice_ticks(0.0, 0.3, 4) == [0.0, 0.1, 0.2, 0.3]
    assert _nice_ticks(0.1, 0.7, 8)[-1] == 0.7


def test_tick_labels_have_the_decimals_their_step_needs(plot):
    widget, g = plot
    widget.resize(300, 200)
    background = np.linspace(0.121, 0.189, 200)  # a narrow range: ticks 0.025 apart
    widget.set_data(g.tiers, [0.18, 0.185], [g.tiers[0].rank] * 2, background, g.long_tail)
    labels = widget.tick_labels()
    assert len(labels) >= 2
    for x, text, _ in labels:
        assert float(text) == pytest.approx(widget.score_at(x), abs=1e-6)


@pytest.mark.parametrize("low", [-0.59, -0.41, -0.2, 0.01])
@pytest.mark.parametrize("width", [300, 700])
def test_tick_labels_stay_under_their_ticks_and_clear_of_the_axis_title(plot, low, width):
    """A tick near an end of the axis keeps its label inside the plot's span: the first one does
    not run into "score" (it read "score-0.60"), the last one is not cut at the right edge."""
    widget, g = plot
    widget.resize(width, 200)
    rng = np.random.default_rng(2)
    background = np.concatenate([[low], rng.uniform(low, 0.5, 500)])
    widget.set_data(g.tiers, [0.55, 0.6], [g.tiers[0].rank] * 2, background, g.long_tail)
    labels = widget.tick_labels()
    assert len(labels) >= 2
    plot_left = widget._plot_rect().left()
    for x, text, rect in labels:
        assert rect.left() >= plot_left - 2 and rect.right() <= widget.width()
        assert rect.left() <= x <= rect.right()  # still under its tick
        assert float(text) == pytest.approx(widget.score_at(x), abs=1e-6)  # names its tick's value
    assert all(a[2].right() < b[2].left() for a, b in itertools.pairwise(labels))


def test_new_data_is_drawn_in_a_turn_of_the_event_loop_of_its_own(plot, qtbot, monkeypatch):
    widget, g = plot
    qtbot.wait(20)
    in_paint = []
    drawn = []  # for each picture drawn: was it drawn inside a paint pass?
    real_paint, real_render = TierPlot.paintEvent, widget._render

    def paint(self, event):
        in_paint.append(True)
        try:
            real_paint(self, event)
        finally:
            in_paint.pop()

    monkeypatch.setattr(TierPlot, "paintEvent", paint)
    monkeypatch.setattr(widget, "_render", lambda device: (drawn.append(bool(in_paint)), real_render(device)))
    rng = np.random.default_rng(2)
    scores = sorted(rng.uniform(0.1, 0.3, 12), reverse=True)
    widget.set_data(g.tiers, scores, [g.tiers[0].rank] * 12, rng.normal(0.1, 0.03, 500), False)
    assert drawn == []  # not in the caller's turn (where a new page of results is being made)
    QCoreApplication.sendPostedEvents()  # the next turn (where the new page is laid out and painted)
    assert drawn == []
    QCoreApplication.sendPostedEvents()  # the one after
    assert drawn == [False]
    qtbot.waitUntil(lambda: len(drawn) == 1, timeout=2000)
    before = widget.grab().toImage()
    assert drawn == [False]  # drawn before the paint pass, which only copies it
    widget.set_selected(g.tiers[0].rank)
    qtbot.waitUntil(lambda: len(drawn) == 2, timeout=2000)
    assert drawn == [False, False]
    assert widget.grab().toImage() != before  # the selected tier is highlighted


def test_the_inspector_colours_tiers_by_relevance_not_rank(qtbot):
    """A long-tail query's first tier is drawn in the colour of 'close', never of a match."""
    from app.tier_colors import tier_color
    from core.grading import as_long_tail, grade

    rng = np.random.default_rng(3)
    scores = np.sort(np.concatenate([[0.9, 0.88, 0.87], rng.normal(0.3, 0.05, 40)]))[::-1]
    graded = as_long_tail(grade(scores, rng.normal(0.2, 0.05, 500)))
    plot = TierPlot()
    qtbot.addWidget(plot)
    plot.set_data(graded.tiers, scores, graded.tier_of, rng.normal(0.2, 0.05, 500), long_tail=True)
    assert [t.level for t in plot.tiers] == [t.level for t in graded.tiers]
    assert plot.tiers[0].level == 1 and tier_color(plot.tiers[0].level) != tier_color(0)


def test_the_keyboard_steps_through_the_tiers(plot, qtbot):
    widget, g = plot
    clicked = []
    widget.tier_clicked.connect(clicked.append)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus)
    ranks = [t.rank for t in g.tiers]
    qtbot.keyClick(widget, Qt.Key.Key_Right)
    assert widget.selected == ranks[0]
    qtbot.keyClick(widget, Qt.Key.Key_End)
    assert widget.selected == ranks[-1]
    qtbot.keyClick(widget, Qt.Key.Key_Right)  # the last one: stays, nothing emitted
    qtbot.keyClick(widget, Qt.Key.Key_Left)
    assert widget.selected == ranks[-2]
    qtbot.keyClick(widget, Qt.Key.Key_Escape)  # back to every tier
    assert widget.selected is None
    assert clicked == [ranks[0], ranks[-1], ranks[-2], None]
    widget.grab()  # paints with the focus ring


def test_chips_show_counts_only_when_their_labels_do_not_fit(plot, qtbot):
    widget, g = plot
    assert len(g.tiers) >= 3
    assert not widget.compact_chips
    widget.resize(260, 200)
    assert widget.compact_chips
    assert all(rect.right() <= widget.width() for rect in (widget.chip_rect(t.rank) for t in g.tiers))
    widget.grab()
    # At its narrowest, with large counts in every tier, the chips keep their dots only.
    many = [dataclasses.replace(t, count=12345) for t in widget._tiers]
    widget.set_data(many, [], [], [0.1, 0.2], False)
    widget.resize(widget.minimumSize().width(), 200)
    assert widget.chip_mode == "dots"
    assert all(rect.right() <= widget.width() for rect in (widget.chip_rect(t.rank) for t in g.tiers))
    rank = g.tiers[-1].rank
    with qtbot.waitSignal(widget.tier_clicked) as blocker:  # a dot is still a chip to click
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.chip_rect(rank).center())
    assert blocker.args == [rank]
    widget.grab()
