"""Grade one query's candidates into relevance tiers, best first (numpy only, pure functions).

Scores of one query are only comparable with each other, so the grading is per query and
adaptive, like the adaptive ladder loss:

1. **Calibrate.** ``z = (score - mean_bg) / std_bg`` where the background is the query's scores
   over the library (or a random sample of it). A z of 4 means "far above what this query
   scores on an arbitrary photo", whatever the model's raw cosine range.
2. **Cluster.** The top candidates (those with ``z >= z_floor``, at least ``min_tiered`` and at
   most ``max_tiered`` of them) are clustered in 1-D for k = 2..4 and the k with the best
   silhouette is kept. The clustering is *exact* (globally optimal sum of squares) by dynamic
   programming over the sorted scores, as in Ckmeans.1d.dp (Wang & Song, R Journal 2011; see
   :mod:`core.kmeans1d`): for at most a few hundred values this costs well under a millisecond
   and, unlike Lloyd's algorithm, it is deterministic and never stuck in a poor local optimum.
   Candidates below the top-N join the last tier, so every candidate has a tier and tiers stay
   contiguous.
3. **Gate.** An absolute test (:class:`MatchGate`) decides whether the top tier is a *match* at
   all: its median z must clear ``min_top_z``, and it must stand out, either from the next
   tier (the difference of their median z, ``min_separation_z``) or from chance: in a library
   of N photos the r-th best of N background draws reaches about ``z = Phi^-1(1 - r/N)`` (normal
   approximation), and the top tier must beat that by ``min_excess_z``. A query whose best
   candidates are just the upper tail of the background, a smooth slope of scores, fails both
   however high the slope starts; a plateau of many equally good matches passes the second.
   When the gate fails the query is *long tail*: nothing matches; the tiers are still shown,
   as alternatives.

That statistical grading is what a query gets when nothing better is known. A query that names
checkable attributes (a count, a colour, an object, a place, a time of day) is graded on
*evidence* instead (:func:`grade_by_mismatches`): for each candidate, how many of the attributes
the query names a counterfactual variant of the query describes clearly better
(:mod:`core.lexicon`, :mod:`core.search`). Tiers are then "matches everything", "one detail
differs", and so on, and the query is a match exactly when some candidate differs in nothing.

Every tier carries a *level*, the relevance it stands for whatever its rank: 0 a match, 1 close
(one detail differs), 2 partly related, 3 loosely related. The app colours tiers by level, so a
colour means the same thing in every result (the first tier of a long-tail query is never shown
in the colour of a match).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .kmeans1d import segment_labels, silhouette_1d, sorted_segment_starts

logger = logging.getLogger(__name__)

MATCH_LABELS = ("Best matches", "Related", "Loosely related", "Distant")
LEVEL_LABELS = ("Best matches", "One detail differs", "Two details differ", "Loosely related")
MAX_LEVEL = len(LEVEL_LABELS) - 1
LONG_TAIL_LABELS = (
    "Nearest alternatives",
    "Further alternatives",
    "Distant alternatives",
    "Remote alternatives",
)
K_RANGE = (2, 4)
_STD_FLOOR = 1e-6
_EQUAL = 1e-9


@dataclass(frozen=True)
class MatchGate:
    """When the top tier counts as a match. The thresholds depend on the model: calibrate them.

    The defaults are set on synthetic score sets (a top tier at z >= 3 standing a full
    background standard deviation above the next tier reads as a match); the trainer
    calibrates them per model on the scene world, whose ground truth says which queries match.

    Attributes:
        min_top_z: The top tier's median z must be at least this (3.0: about one photo in 700
            of a normal background scores that high by chance).
        min_separation_z: The top tier's median z minus the next tier's median z must be at
            least this (a smooth slope of scores cut in two separates by little).
        min_excess_z: Or the top tier's median z must beat the z that chance gives its median rank
            in a library of this size (needs ``library_size``; a smooth slope of matches that fills
            all the candidates has no separation but a large excess).
        min_gap_z: Empty space between the top tier's lowest score and the next tier's highest,
            in background standard deviations (0: not tested).
        min_top_score: Optional raw-score floor for the best candidate (cosine, model-specific).
    """

    min_top_z: float = 3.0
    min_separation_z: float = 1.0
    min_excess_z: float = 1.0
    min_gap_z: float = 0.0
    min_top_score: float | None = None

    def passes(
        self, top_z: float, separation_z: float, gap_z: float, top_score: float, excess_z: float = math.nan
    ) -> bool:
        """Whether a top tier with these statistics is a match (NaN never passes a test)."""
        if not (math.isfinite(top_z) and top_z >= self.min_top_z):
            return False
        if not (separation_z >= self.min_separation_z or excess_z >= self.min_excess_z):
            return False
        if not gap_z >= self.min_gap_z:
            return False
        return self.min_top_score is None or top_score >= self.min_top_score


@dataclass(frozen=True)
class Tier:
    """One rung of the ladder. ``rank`` 1 is the best tier."""

    rank: int
    label: str
    count: int
    min_score: float
    max_score: float
    min_z: float = math.nan
    max_z: float = math.nan
    level: int = 0  # the relevance it stands for: 0 match, 1 close, 2 partly, 3 loosely related

    def to_dict(self) -> dict:
        """The JSON shape: rank (0 = best, a position in the result's tier list), label, count,
        min_score, max_score."""
        return {
            "rank": self.rank - 1,
            "label": self.label,
            "count": int(self.count),
            "min_score": float(self.min_score),
            "max_score": float(self.max_score),
        }


@dataclass(frozen=True)
class Grading:
    """The result of :func:`grade`.

    Attributes:
        tiers: Best first; counts sum to the number of finite candidates.
        tier_of: Per candidate (input order), the ``rank`` of its tier; 0 for a non-finite score.
        z: Per candidate, its calibrated score (NaN for a non-finite score).
        long_tail: True when the gate says the top tier is not a match.
        background_mean: Mean of the background scores (the calibration).
        background_std: Their standard deviation (floored to stay positive).
        boundaries: Score thresholds between consecutive tiers, descending (``len(tiers) - 1``).
        top_z: Median z of the top tier (what the gate tested).
        separation_z: Median z of the top tier minus that of the next (inf with one tier).
        excess_z: Median z of the top tier minus the z chance gives its median rank in a
            library of ``library_size`` photos (NaN when the size is not given).
        gap_z: Empty space between the top tier and the next, in background standard deviations.
        k: Number of clusters chosen; ``silhouette`` its score (NaN when not clustered).
        histogram_counts: Background score histogram, for drawing the distribution.
        histogram_edges: Its bin edges (``len(counts) + 1``), spanning background and candidates.
    """

    tiers: list[Tier]
    tier_of: np.ndarray
    z: np.ndarray
    long_tail: bool
    background_mean: float
    background_std: float
    boundaries: list[float] = field(default_factory=list)
    top_z: float = math.nan
    separation_z: float = math.nan
    excess_z: float = math.nan
    gap_z: float = math.nan
    k: int = 0
    silhouette: float = math.nan
    histogram_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    histogram_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mismatches: np.ndarray | None = None  # per candidate, attributes that differ (-1: not known)
    graded_on: str = "scores"  # "scores" (statistical) or "evidence" (counterfactual variants)


# ---------------------------------------------------------------------- grading


def grade(
    scores_desc: np.ndarray,
    background: np.ndarray,
    *,
    gate: MatchGate | None = None,
    library_size: int | None = None,
    z_floor: float = 1.5,
    min_tiered: int = 12,
    max_tiered: int = 200,
    histogram_bins: int = 40,
) -> Grading:
    """Grade a query's candidate scores into tiers.

    Args:
        scores_desc: The candidates' scores (any order is accepted; best first is usual).
        background: The same query's scores over the library or a random sample of it. When it
            has fewer than two finite values the candidates calibrate themselves.
        gate: The match test; :class:`MatchGate` defaults when None.
        library_size: Photos searched (for the gate's comparison with chance); None skips it.
        z_floor: Candidates above this z are clustered (subject to the two bounds below).
        min_tiered: Cluster at least this many of the top candidates (when there are that many).
        max_tiered: Cluster at most this many; the rest join the last tier.
        histogram_bins: Bins of the background histogram in the result.

    Never raises on degenerate input (no candidates, one, all equal, NaN).
    """
    gate = gate or MatchGate()
    s = np.asarray(scores_desc, dtype=np.float64).ravel()
    bg = np.asarray(background, dtype=np.float64).ravel()
    bg = bg[np.isfinite(bg)]
    finite = np.isfinite(s)
    mean, std = _calibration(bg, s[finite])
    z = np.full(s.size, np.nan)
    z[finite] = (s[finite] - mean) / std
    tier_of = np.zeros(s.size, np.int64)
    counts, edges = _histogram(bg, s[finite], histogram_bins)

    pos = np.flatnonzero(finite)
    order = pos[np.argsort(-s[pos], kind="stable")]  # candidate positions, best first
    v = s[order]
    n_total = v.size
    if n_total == 0:
        return Grading([], tier_of, z, True, mean, std, histogram_counts=counts, histogram_edges=edges)

    n_above = int(np.count_nonzero(z[order] >= z_floor))
    n = min(n_total, max(n_above, min_tiered), max_tiered)
    best_k, best_sil, labels = _cluster_head(v[:n])
    # The tail (beyond the clustered head) joins the last tier.
    ranks = np.concatenate([labels, np.full(n_total - n, best_k - 1, np.int64)]) + 1
    tier_of[order] = ranks

    rungs = [_rung(r, v[ranks == r], mean, std) for r in range(1, best_k + 1)]
    stats = _gate_statistics(rungs, std, library_size)
    matched = gate.passes(stats.top_z, stats.separation_z, stats.gap_z, float(v[0]), stats.excess_z)
    tiers = _statistical_tiers(rungs, matched)
    return Grading(
        tiers=tiers,
        tier_of=tier_of,
        z=z,
        long_tail=not matched,
        background_mean=mean,
        background_std=std,
        boundaries=_boundaries(tiers),
        top_z=stats.top_z,
        separation_z=float(stats.separation_z),
        excess_z=float(stats.excess_z),
        gap_z=float(stats.gap_z),
        k=best_k,
        silhouette=best_sil,
        histogram_counts=counts,
        histogram_edges=edges,
    )


def _calibration(bg: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the background, or of the candidates when it has fewer than two values."""
    calib = bg if bg.size >= 2 else cand
    mean = float(calib.mean()) if calib.size else 0.0
    std = max(float(calib.std()), _STD_FLOOR) if calib.size >= 2 else 1.0
    return mean, std


def _cluster_head(head: np.ndarray) -> tuple[int, float, np.ndarray]:
    """(k, silhouette, labels) of the best-silhouette k-means split of the descending ``head``.

    Labels are 0 for the best cluster. One cluster (silhouette NaN) when the head is too small
    or too flat to split.
    """
    n = head.size
    best_k, best_sil, labels = 1, math.nan, np.zeros(n, np.int64)
    distinct = int(np.unique(head).size)
    if not (n >= 3 and head[0] - head[-1] > _EQUAL * max(1.0, abs(head[0])) and distinct >= 2):
        return best_k, best_sil, labels
    kmax = min(K_RANGE[1], n - 1, distinct)
    ks = range(K_RANGE[0], kmax + 1)
    starts = sorted_segment_starts(head[::-1].copy(), ks)  # ascending for the DP
    for k, k_starts in zip(ks, starts, strict=True):
        asc = segment_labels(n, k_starts[:k])
        lab = (k - 1 - asc)[::-1]  # back to descending order, 0 = best
        sil = silhouette_1d(head, lab)
        if math.isnan(best_sil) or sil > best_sil + 1e-12:
            best_k, best_sil, labels = k, sil, lab
    return best_k, best_sil, labels


class _Rung(NamedTuple):
    """One statistical tier before it is labelled."""

    rank: int
    count: int
    min_score: float
    max_score: float
    z: np.ndarray  # the members' calibrated scores


def _rung(rank: int, members: np.ndarray, mean: float, std: float) -> _Rung:
    zs = (members - mean) / std
    return _Rung(rank, members.size, float(members.min()), float(members.max()), zs)


class _GateStatistics(NamedTuple):
    """What the match gate tests of the top tier (see :class:`Grading`)."""

    top_z: float
    separation_z: float
    gap_z: float
    excess_z: float


def _gate_statistics(rungs: list[_Rung], std: float, library_size: int | None) -> _GateStatistics:
    top = rungs[0]
    top_z = float(np.median(top.z))
    if len(rungs) >= 2:
        separation_z = top_z - float(np.median(rungs[1].z))
        gap_z = (top.min_score - rungs[1].max_score) / std
    else:
        separation_z = gap_z = math.inf
    excess_z = math.nan
    if library_size is not None and library_size > 0:
        median_rank = (top.count + 1) / 2  # ranks 1..count of the top tier
        chance = NormalDist().inv_cdf(min(max(1.0 - (median_rank - 0.5) / library_size, 1e-12), 1 - 1e-12))
        excess_z = top_z - chance
    return _GateStatistics(top_z, separation_z, gap_z, excess_z)


def _statistical_tiers(rungs: list[_Rung], matched: bool) -> list[Tier]:
    """The tiers of a statistical grading: labelled as matches, or as alternatives."""
    labels_text = MATCH_LABELS if matched else LONG_TAIL_LABELS
    return [
        Tier(
            r.rank,
            labels_text[r.rank - 1],
            int(r.count),
            r.min_score,
            r.max_score,
            float(r.z.min()),
            float(r.z.max()),
            level=min(r.rank - 1 if matched else r.rank, MAX_LEVEL),
        )
        for r in rungs
    ]


def _boundaries(tiers: list[Tier]) -> list[float]:
    """Score thresholds between consecutive tiers, halfway between them."""
    return [(tiers[i].min_score + tiers[i + 1].max_score) / 2 for i in range(len(tiers) - 1)]


def isotonic_increasing(y: np.ndarray) -> np.ndarray:
    """The least-squares non-decreasing fit of ``y`` (pool adjacent violators), O(n)."""
    means: list[float] = []
    sizes: list[int] = []
    for value in np.asarray(y, dtype=np.float64).ravel().tolist():
        means.append(value)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m, n = means.pop(), sizes.pop()
            means[-1] = (means[-1] * sizes[-1] + m * n) / (sizes[-1] + n)
            sizes[-1] += n
    return np.repeat(np.asarray(means), sizes)


def grade_by_mismatches(
    base: Grading, scores: np.ndarray, mismatches: np.ndarray, *, known: bool = True
) -> Grading:
    """Re-grade a query's candidates on evidence: how many named attributes each one gets wrong.

    Tiers stay contiguous in score order (results are listed best score first): the level of each
    candidate is the non-decreasing least-squares fit of its mismatch count (capped at
    :data:`MAX_LEVEL`) along the ranking, rounded, and each run of one level is a tier. The query
    matches when some candidate gets nothing wrong; then the tiers down to the first such
    candidate are its "Best matches" even where the fit put them a level lower.

    Args:
        base: The statistical grading of the same candidates (its calibration, z and histogram
            are kept).
        scores: The candidates' scores, in the order of ``base``.
        mismatches: Per candidate, the number of named attributes a variant of the query describes
            clearly better; negative where unknown (counted as loosely related).
        known: False when the query has words the model does not know: nothing can match then.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    m = np.asarray(mismatches, dtype=np.int64).ravel()
    if s.size != base.tier_of.size or m.size != s.size:
        raise ValueError("scores and mismatches must have one entry per candidate of the grading")
    finite = np.flatnonzero(np.isfinite(s))
    order = finite[np.argsort(-s[finite], kind="stable")]
    if order.size == 0:
        return base
    y = np.where(m[order] < 0, MAX_LEVEL, np.minimum(m[order], MAX_LEVEL)).astype(np.float64)
    level = np.floor(isotonic_increasing(y) + 0.5).astype(np.int64)
    exact = np.flatnonzero(y == 0)
    matched = bool(known and exact.size)
    if matched:
        level[: exact[0] + 1] = 0
    elif level[0] == 0:
        level[level == 0] = 1  # nothing matches: no tier may claim to
    tier_of = np.zeros(s.size, np.int64)
    tiers: list[Tier] = []
    start = 0
    for end in [*np.flatnonzero(np.diff(level)) + 1, level.size]:
        members = s[order[start:end]]
        zs = base.z[order[start:end]]
        lv = int(level[start])
        rank = len(tiers) + 1
        tier_of[order[start:end]] = rank
        tiers.append(
            Tier(
                rank,
                _evidence_label(lv, matched, rank),
                int(end - start),
                float(members.min()),
                float(members.max()),
                float(np.nanmin(zs)),
                float(np.nanmax(zs)),
                level=lv,
            )
        )
        start = end
    top = base.z[order[tier_of[order] == 1]]
    return replace(
        base,
        tiers=tiers,
        tier_of=tier_of,
        long_tail=not matched,
        boundaries=_boundaries(tiers),
        top_z=float(np.median(top)) if top.size else math.nan,
        k=len(tiers),
        silhouette=math.nan,
        mismatches=m.copy(),
        graded_on="evidence",
    )


def as_long_tail(grading: Grading) -> Grading:
    """The same tiers, relabelled as alternatives (nothing matches), each a level lower."""
    if grading.long_tail:
        return grading
    tiers = [
        replace(
            t,
            label=LONG_TAIL_LABELS[min(t.rank, len(LONG_TAIL_LABELS)) - 1],
            level=min(t.level + 1, MAX_LEVEL),
        )
        for t in grading.tiers
    ]
    return replace(grading, tiers=tiers, long_tail=True)


def _evidence_label(level: int, matched: bool, rank: int) -> str:
    label = LEVEL_LABELS[min(level, MAX_LEVEL)]
    if not matched and rank == 1:
        return "Nearest alternatives" + (f" ({label.lower()})" if 0 < level < MAX_LEVEL else "")
    return label


def _histogram(bg: np.ndarray, cand: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([bg, cand])
    if both.size == 0 or bins < 1:
        return np.zeros(0, np.int64), np.zeros(0)
    lo, hi = float(both.min()), float(both.max())
    if hi - lo < _EQUAL:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(bg, bins=bins, range=(lo, hi))
    return counts.astype(np.int64), edges
