"""Optimal 1-D k-means by dynamic programming, and the silhouette of a 1-D clustering.

In 1-D every k-means optimum splits the sorted values into contiguous segments, and the best
split for every k up to k_max comes out of one dynamic programme over the split points (the
classic optimal 1-D k-means, as in Ckmeans.1d.dp, Wang & Song, R Journal 2011). It is exact
(the globally optimal sum of squares) and deterministic, unlike Lloyd's algorithm, which can
stop at a poor local optimum.

Two callers use it:

* :mod:`core.grading` clusters one query's top scores (a few hundred values at most) with
  :func:`kmeans_1d` and :func:`silhouette_1d`, on numpy.
* :mod:`trainer.levels` clusters every row of a batch at once for the adaptive ladder levels,
  with :func:`optimal_splits` on torch tensors (on the tensors' device), over rows reduced to
  their distinct values with multiplicities; its silhouette of any labelling (a reference for
  its own silhouettes of contiguous splits) is :func:`silhouette_rows`.

:func:`optimal_splits` takes the array module as an argument (numpy or torch) and uses only
the functions and operators the two share, so this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

# ---------------------------------------------------------------------- the dynamic programme


def optimal_splits(
    w: Any, s: Any, ks: Sequence[int], *, q: Any = None, xp: ModuleType = np, allow_empty: bool = True
) -> Any:
    """Best split of every row into k segments for each k, with boundaries among candidates.

    A segment [start, end) costs its weighted sum of squared deviations, q[end] - q[start] -
    gain, with gain = (s[end] - s[start])**2 / (w[end] - w[start]). The q terms telescope along
    a split, so without ``q`` the programme maximises the total gain, which is the same as
    minimising the total cost and spares a table operation. With ``q`` it minimises the costs
    themselves (the first segment's cost floored at 0), which rounds differently: the two can
    pick different splits among splits of equal cost. Ties go to the first optimum: the
    smallest start of the last segment, then of the one before, and so on.

    Args:
        w, s: (G, C+1) prefix sums of weights and of weighted values at ascending candidate
            boundaries, the first at 0, the last at the end of the row. The values should be
            centred (their mean subtracted) for precision. Weights are whole counts.
        ks: Numbers of segments to split into, each at least 1.
        q: Optional (G, C+1) prefix sums of weighted squared values (see above).
        xp: The module of the arrays: numpy or torch (on any device).
        allow_empty: Whether a segment may be empty. True: an empty segment gains 0, so an
            optimum only has one when the row has fewer than k distinct values, and the
            caller must check the weights of the segments. False: every segment holds at
            least one candidate interval (needs C >= max(ks)), so rounding noise between
            nearly equal values never leaves a segment empty.

    Returns:
        (G, len(ks), K+1) int64 candidate indices of the boundaries, K = max(ks): first 0, last
        C; for k < K the tail repeats C.
    """
    g, c1 = w.shape
    # score[row, end, start]: what segment [start, end) adds to the split (gain, or -cost).
    # Weights are whole counts, so clamping them at 1 only touches empty segments, whose gain
    # is 0 whatever the weight.
    scratch = w[:, :, None] - w[:, None, :]
    xp.clip(scratch, 1.0, None, out=scratch)
    score = s[:, :, None] - s[:, None, :]
    score *= score
    score /= scratch
    if q is not None:
        score -= q[:, :, None] - q[:, None, :]
    # start > end is impossible; start == end is an empty segment
    score += xp.triu(xp.full((c1, c1), -xp.inf, dtype=w.dtype, device=w.device), 1 if allow_empty else 0)
    k_max = max(ks)
    # best[j][row, end]: greatest score of j+1 segments covering [0, end)
    best = [score[:, :, 0] if q is None else xp.clip(score[:, :, 0], None, 0.0)]
    for _ in range(2, k_max):  # a handful of k, not rows
        best.append(xp.amax(xp.add(score, best[-1][:, None, :], out=scratch), axis=2))
    out = xp.full((g, len(ks), k_max + 1), c1 - 1, dtype=xp.int64, device=w.device)
    out[:, :, 0] = 0
    rows = xp.arange(g, device=w.device)
    for i, k in enumerate(ks):
        tail = score[:, -1, :]  # segments ending at the end of the row
        for j in range(k, 1, -1):  # walk back from the last segment; first maximum on ties
            end = xp.argmax(best[j - 2] + tail, axis=1)
            out[:, i, j - 1] = end
            if j > 2:
                tail = score[rows, end]
    return out


def sorted_segment_starts(xs: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Start of each segment of the optimal split of the ascending values ``xs`` into k.

    Every segment holds at least one value; ``k <= xs.size`` for every k of ``ks``.

    Returns:
        (len(ks), K) int64, K = max(ks): row i holds the ks[i] starts (the first 0), then
        ``xs.size`` for the unused segments.
    """
    # Centre the data: the prefix sums lose precision on large offsets.
    centred = xs - xs.mean()
    w = np.arange(xs.size + 1, dtype=np.float64)[None, :]
    s = np.concatenate([[0.0], np.cumsum(centred)])[None, :]
    q = np.concatenate([[0.0], np.cumsum(centred * centred)])[None, :]
    return optimal_splits(w, s, ks, q=q, allow_empty=False)[0, :, :-1]


def segment_labels(n: int, starts: Sequence[int]) -> np.ndarray:
    """(n,) int64: the number of the segment each of n sorted values is in, given the starts."""
    labels = np.zeros(n, np.int64)
    for c, start in enumerate(starts):
        labels[start:] = c
    return labels


# ---------------------------------------------------------------------- k-means of one row


def kmeans_1d(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Optimal 1-D k-means (minimum within-cluster sum of squares) by dynamic programming.

    Args:
        values: 1-D finite values, any order.
        k: Number of clusters, ``1 <= k``; more clusters than distinct values leaves some empty
            in effect, so ``k`` is reduced to the number of distinct values.

    Returns:
        ``(labels, centres)``: per value (input order) its cluster, numbered by ascending centre,
        and the cluster means. Clusters are contiguous ranges of the sorted values.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    if not np.isfinite(x).all():
        raise ValueError("kmeans_1d needs finite values")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(x, kind="stable")
    xs = x[order]
    k = min(k, int(np.unique(xs).size))
    sorted_labels = segment_labels(xs.size, sorted_segment_starts(xs, (k,))[0, :k])
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    centres = np.array([xs[sorted_labels == c].mean() for c in range(k)])
    return labels, centres


# ---------------------------------------------------------------------- silhouette


def silhouette_1d(values: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a 1-D clustering (absolute distance), in O(n log n).

    Same definition as scikit-learn's ``silhouette_score``: a point alone in its cluster scores 0.

    Raises:
        ValueError: fewer than 2 or more than ``n - 1`` clusters.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    lab = np.asarray(labels).ravel()
    if x.size != lab.size:
        raise ValueError("values and labels differ in length")
    names, lab = np.unique(lab, return_inverse=True)
    if not 2 <= names.size <= x.size - 1:
        raise ValueError(f"silhouette needs 2..n-1 clusters, got {names.size} for {x.size} values")
    return _mean_silhouette(x, lab, names.size)


def silhouette_rows(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean silhouette of each row of a (G, N) 1-D clustering, any labels; NaN where undefined.

    Each row as :func:`silhouette_1d`, but a row with fewer than 2 or more than N - 1 clusters
    gives NaN instead of an error.
    """
    x = np.asarray(values, dtype=np.float64)
    lab = np.asarray(labels)
    if x.shape != lab.shape or x.ndim != 2:
        raise ValueError(f"values and labels must be matching 2-D arrays, got {x.shape} and {lab.shape}")
    out = np.full(x.shape[0], np.nan)
    for row in range(x.shape[0]):  # a reference for tests and diagnostics, not a hot path
        names, inverse = np.unique(lab[row], return_inverse=True)
        if 2 <= names.size <= x.shape[1] - 1:
            out[row] = _mean_silhouette(x[row], inverse, names.size)
    return out


def _mean_silhouette(x: np.ndarray, lab: np.ndarray, n_clusters: int) -> float:
    """The mean silhouette of values ``x`` in clusters ``lab`` numbered 0..n_clusters-1."""
    # mean |x_i - y| over a cluster's sorted members y via prefix sums: O(log n) per point.
    dist_sum = np.empty((n_clusters, x.size))
    sizes = np.empty(n_clusters, np.int64)
    for c in range(n_clusters):
        ys = np.sort(x[lab == c])
        sizes[c] = ys.size
        pre = np.concatenate([[0.0], np.cumsum(ys)])
        below = np.searchsorted(ys, x, side="right")
        dist_sum[c] = (below * x - pre[below]) + ((pre[-1] - pre[below]) - (ys.size - below) * x)
    own = dist_sum[lab, np.arange(x.size)]
    own_size = sizes[lab]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = own / (own_size - 1)
        others = dist_sum / sizes[:, None]
    others[lab, np.arange(x.size)] = np.inf
    b = others.min(axis=0)
    denom = np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(denom > 0, (b - a) / denom, 0.0)
    s[own_size == 1] = 0.0
    return float(s.mean())
