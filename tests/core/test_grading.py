"""Grading: tiers and the match gate on hand-made score sets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from core.grading import LONG_TAIL_LABELS, MATCH_LABELS, MatchGate, grade
from core.kmeans1d import kmeans_1d, silhouette_1d


def three_tiers(rng: np.random.Generator) -> np.ndarray:
    return np.sort(
        np.concatenate([rng.normal(0.40, 0.004, 6), rng.normal(0.33, 0.004, 25), rng.normal(0.26, 0.004, 70)])
    )[::-1]


@pytest.fixture
def background() -> np.ndarray:
    return np.random.default_rng(0).normal(0.18, 0.03, 4000)


# ---------------------------------------------------------------------- grade


def check_tiers(g, scores: np.ndarray) -> None:
    finite = np.isfinite(scores)
    assert sum(t.count for t in g.tiers) == int(finite.sum())
    assert [t.rank for t in g.tiers] == list(range(1, len(g.tiers) + 1))
    for upper, lower in itertools.pairwise(g.tiers):
        assert upper.min_score >= lower.max_score, "tiers are ordered and do not overlap"
    for t in g.tiers:
        members = scores[g.tier_of == t.rank]
        assert members.size == t.count
        assert members.min() == pytest.approx(t.min_score) and members.max() == pytest.approx(t.max_score)
    # Every candidate between two tiers' bounds belongs to one of them (contiguous in score).
    ranks_by_score = g.tier_of[finite][np.argsort(-scores[finite], kind="stable")]
    assert np.all(np.diff(ranks_by_score) >= 0)
    assert len(g.boundaries) == len(g.tiers) - 1


def test_clear_three_tier_data_gives_three_matching_tiers(background):
    scores = three_tiers(np.random.default_rng(3))
    g = grade(scores, background)
    assert g.k == 3 and [t.count for t in g.tiers] == [6, 25, 70]
    assert not g.long_tail
    assert [t.label for t in g.tiers] == list(MATCH_LABELS[:3])
    check_tiers(g, scores)
    np.testing.assert_allclose(g.z, (scores - background.mean()) / background.std())
    assert g.background_mean == pytest.approx(background.mean())
    assert g.tiers[1].max_score < g.boundaries[0] < g.tiers[0].min_score
    assert g.top_z > 6 and g.separation_z > 2 and g.gap_z > 1
    assert g.histogram_counts.sum() == background.size
    assert g.histogram_edges[0] <= background.min() and g.histogram_edges[-1] >= scores.max()


def test_chosen_k_has_the_best_silhouette(background):
    rng = np.random.default_rng(4)
    for _ in range(10):
        scores = np.sort(rng.normal(0.3, 0.03, 40))[::-1]
        g = grade(scores, background, z_floor=-10)  # cluster all 40
        best = max(silhouette_1d(scores, kmeans_1d(scores, k)[0]) for k in (2, 3, 4))
        assert g.silhouette == pytest.approx(best)
        assert g.silhouette == pytest.approx(silhouette_1d(scores, g.tier_of))
        check_tiers(g, scores)


def test_flat_distribution_is_long_tail(background):
    scores = np.linspace(0.31, 0.28, 120)  # high z, but a smooth slope: no tier stands apart
    g = grade(scores, background)
    assert g.long_tail
    assert g.top_z > 3 and g.separation_z < 1, "it is the separation, not the level, that fails"
    assert g.tiers[0].label == LONG_TAIL_LABELS[0]
    assert all(t.label in LONG_TAIL_LABELS for t in g.tiers)
    check_tiers(g, scores)


def test_low_top_tier_is_long_tail(background):
    scores = np.concatenate([[0.22, 0.219, 0.218], np.linspace(0.17, 0.15, 40)])  # z about 1.3
    g = grade(scores, background)
    assert g.long_tail and g.separation_z > 1 and g.gap_z > 1 and g.top_z < 3
    assert grade(scores, background, gate=MatchGate(min_top_z=1.0)).long_tail is False


def test_gate_raw_score_floor(background):
    scores = three_tiers(np.random.default_rng(5))
    assert not grade(scores, background, gate=MatchGate(min_top_score=0.3)).long_tail
    assert grade(scores, background, gate=MatchGate(min_top_score=0.5)).long_tail


def test_only_the_head_is_clustered_and_the_tail_joins_the_last_tier(background):
    rng = np.random.default_rng(6)
    scores = np.concatenate([three_tiers(rng), np.linspace(0.2, 0.1, 300)])
    g = grade(scores, background, max_tiered=101)
    assert [t.count for t in g.tiers][:2] == [6, 25]
    assert g.tiers[-1].count == 70 + 300 and g.tiers[-1].min_score == pytest.approx(0.1)
    check_tiers(g, scores)


def test_candidates_in_any_order(background):
    scores = three_tiers(np.random.default_rng(7))
    shuffled = np.random.default_rng(8).permutation(scores)
    g = grade(shuffled, background)
    assert [t.count for t in g.tiers] == [6, 25, 70]
    check_tiers(g, shuffled)


@pytest.mark.parametrize(
    "scores",
    [[], [0.5], [0.5, 0.2], [0.3] * 10, [np.nan, 0.31, 0.3, np.nan, 0.1], [np.nan, np.nan], [0.3, 0.3, 0.1]],
)
def test_degenerate_input_never_raises(scores, background):
    s = np.asarray(scores, dtype=np.float64)
    g = grade(s, background)
    assert g.tier_of.shape == g.z.shape == s.shape
    assert np.all(g.tier_of[~np.isfinite(s)] == 0) and np.all(np.isnan(g.z[~np.isfinite(s)]))
    if np.isfinite(s).sum() == 0:
        assert g.tiers == [] and g.long_tail
    else:
        check_tiers(g, s)
        assert 1 <= len(g.tiers) <= 4
    if s.size and np.isfinite(s).all() and np.unique(s).size == 1:
        assert len(g.tiers) == 1 and math.isinf(g.separation_z)


def test_without_background_the_candidates_calibrate_themselves():
    scores = np.array([0.5, 0.4, 0.1])
    for bg in ([], [0.2], [np.nan, np.nan, 0.2]):
        g = grade(scores, np.asarray(bg, dtype=np.float64))
        np.testing.assert_allclose(g.z, (scores - scores.mean()) / scores.std())
        check_tiers(g, scores)
    g = grade(scores, np.full(50, 0.2))  # zero spread: the std is floored, z stays finite
    assert np.isfinite(g.z).all()


def test_the_upper_tail_of_the_background_is_long_tail(background):
    """A query that matches nothing: its best candidates are just the top of a large library."""
    library = np.random.default_rng(9).normal(background.mean(), background.std(), 200_000)
    scores = np.sort(library)[::-1][:100]
    g = grade(scores, background)
    assert g.top_z > 3.5, "high z alone: a large library always has some"
    assert g.long_tail and math.isnan(g.excess_z)
    sized = grade(scores, background, library_size=library.size)
    assert sized.long_tail and abs(sized.excess_z) < 0.5, "no better than chance in a library this big"


def test_a_plateau_of_matches_filling_the_candidates_is_a_match(background):
    """Hundreds of equally relevant photos: the top 100 form a smooth slope far above chance."""
    scores = background.mean() + background.std() * np.linspace(7.5, 5.75, 100)
    assert grade(scores, background).long_tail, "without the library size only separation counts"
    g = grade(scores, background, library_size=1_000_000)
    assert not g.long_tail and g.excess_z > 2 and g.separation_z < 1
    assert grade(scores, background, library_size=1_000_000, gate=MatchGate(min_excess_z=3.5)).long_tail


def test_many_matches_on_a_smooth_slope_are_still_matches(background):
    """Dozens of relevant photos with steadily falling scores, then the background's top."""
    matches = np.linspace(0.37, 0.30, 60)  # z about 6.3 down to 4
    rest = np.sort(np.random.default_rng(10).normal(0.18, 0.03, 100_000))[::-1][:140]
    scores = np.concatenate([matches, rest])
    g = grade(scores, background)
    assert not g.long_tail
    assert g.gap_z < 0.5, "no clean gap: the separation carries the decision"
    assert g.tiers[0].min_score >= 0.30 - 1e-9


def test_gate_gap_and_separation_thresholds(background):
    scores = three_tiers(np.random.default_rng(5))
    g = grade(scores, background)
    assert grade(scores, background, gate=MatchGate(min_gap_z=g.gap_z * 0.9)).long_tail is False
    assert grade(scores, background, gate=MatchGate(min_gap_z=g.gap_z * 1.1)).long_tail is True
    assert grade(scores, background, gate=MatchGate(min_separation_z=g.separation_z * 1.1)).long_tail
