"""Adaptive relevance levels: batched 1-D k-means with silhouette model selection.

The adaptive ladder loss (Zhou et al., IEEE TMM 2023) splits each query's relevance degrees
into levels: it clusters the values of one row in 1-D with k-means for every k in a range,
keeps the k with the highest silhouette score and numbers the clusters from the most relevant
(level 0) down. The reference implementation calls scikit-learn once per row and per k; here
every row and every k of a batch is clustered at once, on the tensor's device, with no loop
over rows.

How, and why it is exact where it matters:

* Each row is sorted (numpy's vectorised sort on the CPU, much faster there than torch's) and
  reduced to its distinct values with multiplicities. Relevance degrees computed from tags or
  attributes take few distinct values (a few dozen), so this shrinks a row of hundreds of
  candidates to a few dozen weighted points, without changing any result.
* In 1-D every k-means solution splits the sorted values into contiguous segments, and the
  best split for every k up to k_max comes out of one dynamic programme over split points
  (the classic optimal 1-D k-means, as in Ckmeans.1d.dp), batched over rows. A row with at
  most ``EXACT_MAX_DISTINCT`` distinct values gets the globally optimal k-means split, for
  every k, deterministically (scikit-learn's k-means++ only approximates it).
* A row with more distinct values (continuous relevance) is cut into ``COARSE_BINS``
  consecutive groups; the programme finds the best split at group edges, and Lloyd
  iterations then polish it on the full row until no boundary moves (at most ``max_iter``).
  The result is a proper k-means fixed point next to the coarse optimum. Lloyd steps are
  ``searchsorted`` of centroid midpoints plus prefix sums: O(k log N) per row.
* The silhouette is exact in O(N) per row: every cluster other than a point's own lies
  wholly on one side of it, so the mean distance to it is the distance to its mean, and the
  nearest one is a neighbouring segment; the mean distance within the own segment comes from
  prefix sums. Ties between values (multiplicities) are handled exactly.

A k is *invalid* for a row when the silhouette is undefined there: fewer than k distinct
values, or k >= N (every point would be alone). A row with no valid k in the range is one
single level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

EXACT_MAX_DISTINCT = 48
"""Rows with at most this many distinct values get the exact optimal k-means split."""

SAME_VALUE_RTOL = 1e-6
"""Values of a row closer than this fraction of the row's range are one value (so that rounding
noise, e.g. 0.6 against 0.6000000000000001, does not split a level)."""

COARSE_BINS = 16
"""Rows with more distinct values are first split optimally at the edges of this many groups of
consecutive values, or at one of their ``COARSE_GAPS`` widest gaps."""

COARSE_GAPS = 16

DEFAULT_MAX_ITER = 50
"""Cap on the Lloyd steps that polish a coarse split (they stop as soon as nothing moves)."""


@dataclass(frozen=True)
class KMeans1D:
    """A k-means split of each row of a (G, N) tensor.

    Attributes:
        labels: (G, N) int64 cluster of each value; 0 is the cluster with the LOWEST mean.
        centroids: (G, k) cluster means, ascending (float64; float32 on MPS); +inf if empty.
        counts: (G, k) int64 cluster sizes.
        inertia: (G,) within-cluster sum of squared deviations; +inf where not valid.
        valid: (G,) bool, False where the row has fewer than k distinct values.
    """

    labels: Tensor
    centroids: Tensor
    counts: Tensor
    inertia: Tensor
    valid: Tensor


@dataclass(frozen=True)
class LevelAssignment:
    """Adaptive levels of each row of a (G, N) tensor.

    Attributes:
        levels: (G, N) int64; 0 is the cluster with the HIGHEST mean, k-1 the lowest.
        k: (G,) int64 number of clusters chosen for the row; 1 where no k of the range is valid
            (then every level is 0).
        silhouette: (G,) silhouette score of the chosen split; NaN where k is 1.
    """

    levels: Tensor
    k: Tensor
    silhouette: Tensor


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 for the clustering arithmetic, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


# ---------------------------------------------------------------------------------------------
# rows as sorted distinct values with multiplicities


@dataclass(frozen=True)
class _Compressed:
    """Each row as ascending distinct values, padded at the end with weight 0."""

    values: Tensor  # (G, M) ascending, minus the row mean; padding repeats the row max
    weights: Tensor  # (G, M) multiplicity of each value (0 for padding), work dtype
    prefix_w: Tensor  # (G, M+1) prefix sums of weights
    prefix_s: Tensor  # (G, M+1) prefix sums of weight * value
    prefix_q: Tensor  # (G, M+1) prefix sums of weight * value**2
    shift: Tensor  # (G, 1) row mean that was subtracted
    distinct: Tensor  # (G,) number of distinct values
    n: int  # original row length
    raw: Tensor  # (G, N) original values (float32 or float64)
    raw_sorted: Tensor  # (G, M) distinct original values (work dtype), padded with the row maximum


def _check_values(values: Tensor) -> None:
    if values.ndim != 2:
        raise ValueError(f"expected a (rows, values) matrix, got shape {tuple(values.shape)}")
    if values.shape[1] == 0:
        raise ValueError("cannot cluster rows with no values")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values to cluster must be finite")


def _prefix(x: Tensor) -> Tensor:
    return torch.cat([x.new_zeros(x.shape[0], 1), x.cumsum(1)], dim=1)


def _with_prefix(vals: Tensor, weights: Tensor, distinct: Tensor, raw: Tensor) -> _Compressed:
    n = raw.shape[1]
    shift = (vals * weights).sum(dim=1, keepdim=True) / n
    raw_sorted = vals
    vals = vals - shift
    wv = weights * vals
    return _Compressed(
        values=vals,
        weights=weights,
        prefix_w=_prefix(weights),
        prefix_s=_prefix(wv),
        prefix_q=_prefix(wv * vals),
        shift=shift,
        distinct=distinct,
        n=n,
        raw=raw,
        raw_sorted=raw_sorted,
    )


def _sort_rows(x: Tensor) -> Tensor:
    if x.device.type == "cpu":
        # numpy's vectorised sort is far faster than torch's on the CPU for many short rows
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return torch.sort(x, dim=1).values


def _compress_sorted(values: Tensor) -> _Compressed:
    """Exact distinct values of every row, by sorting each row."""
    g, n = values.shape
    raw = values.detach()
    if raw.dtype not in (torch.float32, torch.float64):
        raw = raw.to(torch.float32)  # exact for half precision, bfloat16 and small integers
    v = _sort_rows(raw).to(work_dtype(values.device))
    gaps = v[:, 1:] - v[:, :-1]
    new = gaps > SAME_VALUE_RTOL * (v[:, -1:] - v[:, :1])  # a new distinct value starts
    distinct = new.sum(dim=1) + 1
    m = int(distinct.max())
    if int(distinct.min()) == n:  # all distinct: nothing to merge
        vals, weights = v, torch.ones_like(v)
    else:
        starts = torch.cat([new.new_ones(g, 1), new], dim=1)
        seg = starts.cumsum(1) - 1
        # a run of equal values is represented by its first (smallest) value: one non-zero term
        # per run, so the sum is exact whatever the order of the additions
        vals = v.new_zeros(g, m).scatter_add_(1, seg, v * starts)
        weights = v.new_zeros(g, m).scatter_add_(1, seg, torch.ones_like(v))
        vals = vals + (weights == 0) * v[:, -1:]  # padding repeats the row maximum
    return _with_prefix(vals, weights, distinct, raw)


def _compress(values: Tensor) -> _Compressed:
    return _compress_sorted(values)


def _entry_levels(rows: _Compressed, bounds: Tensor, top: Tensor) -> Tensor:
    """Level ``top - cluster`` of every original entry (G, N), clusters ascending from 0.

    ``bounds`` (G, K+1) splits each row's distinct values; ``top`` (G,) is k - 1 for levels
    numbered from the most relevant, or 0 with bounds that split nothing.
    """
    inner = bounds[:, 1:-1]
    m = rows.raw_sorted.shape[1]
    # smallest value of every cluster but the first; +inf for the unused ones
    first = rows.raw_sorted.gather(1, inner.clamp(max=m - 1))
    first = torch.where(inner < rows.distinct[:, None], first, float("inf")).to(rows.raw.dtype)
    out = top[:, None].expand_as(rows.raw).clone()
    for j in range(first.shape[1]):  # k - 1 boundaries, not rows
        out -= (rows.raw >= first[:, j : j + 1]).long()
    return out


SIZE_CLASSES = (16, 32)
"""Rows are processed in groups by their number of distinct values (up to 16, up to 32, up to
``EXACT_MAX_DISTINCT``, more), each group padded only to its own widest row: the cost of the
exact split grows with the square of that width. A loop over these few groups, not over rows."""


def _size_classes(rows: _Compressed) -> list[tuple[Tensor | None, _Compressed]]:
    """(row indices, those rows trimmed to their own width) for each non-empty size class.

    Row indices are None when one class holds every row (nothing to select or put back).
    """
    limits = [c for c in SIZE_CLASSES if c < EXACT_MAX_DISTINCT] + [EXACT_MAX_DISTINCT]
    cls = torch.bucketize(rows.distinct, torch.tensor(limits, device=rows.distinct.device))
    counts = torch.bincount(cls, minlength=len(limits) + 1).tolist()
    if max(counts) == rows.distinct.shape[0]:
        return [(None, rows)]
    out: list[tuple[Tensor | None, _Compressed]] = []
    for c, count in enumerate(counts):
        if count:
            idx = (cls == c).nonzero().squeeze(1)
            out.append((idx, _select_rows(rows, idx)))
    return out


def _select_rows(rows: _Compressed, idx: Tensor) -> _Compressed:
    m = int(rows.distinct[idx].max())
    return _Compressed(
        values=rows.values[idx, :m],
        weights=rows.weights[idx, :m],
        prefix_w=rows.prefix_w[idx, : m + 1],
        prefix_s=rows.prefix_s[idx, : m + 1],
        prefix_q=rows.prefix_q[idx, : m + 1],
        shift=rows.shift[idx],
        distinct=rows.distinct[idx],
        n=rows.n,
        raw=rows.raw[idx],
        raw_sorted=rows.raw_sorted[idx, :m],
    )


def _gather_rows(table: Tensor, idx: Tensor) -> Tensor:
    """table (G, T) indexed by idx (G, *rest) along the last dim -> (G, *rest)."""
    return table.gather(1, idx.reshape(idx.shape[0], -1)).view(idx.shape)


# ---------------------------------------------------------------------------------------------
# optimal splits by dynamic programming


def _optimal_bounds(rows: _Compressed, cand: Tensor, ks: tuple[int, ...]) -> Tensor:
    """Best split of every row into k segments for each k, with boundaries among ``cand``.

    Args:
        cand: (G, C+1) ascending candidate boundary positions in [0, M], first 0, last M.

    Returns:
        (G, len(ks), K+1) boundaries in [0, M], K = max(ks); for k < K the tail repeats M
        (empty segments). Rows where every split has an empty segment (fewer than k distinct
        values) get arbitrary boundaries: validity is checked from the weights.
    """
    g, c1 = cand.shape
    w = rows.prefix_w.gather(1, cand)
    s = rows.prefix_s.gather(1, cand)
    # The cost of segment [start, end) is q[end] - q[start] - gain[end, start] (q: prefix sums
    # of squares), gain = (s[end] - s[start])**2 / (w[end] - w[start]); the q terms telescope
    # along a split, so the programme only needs gain, the same for every number of segments,
    # computed once (in place: the DP is memory-bound). Weights are whole counts, so
    # clamping them at 1 only touches empty segments, which cost 0: an optimum never has an
    # empty segment when the row has k distinct values (splitting a segment that holds two
    # values lowers its cost), and where it does, the split is flagged invalid later.
    # Arithmetic only (no masks, no 0/0): both are slow on large tensors on the CPU.
    dw = (w[:, :, None] - w[:, None, :]).clamp_(min=1.0)  # [row, end, start]
    gain = s[:, :, None] - s[:, None, :]
    gain.mul_(gain).div_(dw)
    del dw
    # start > end is no segment: gain -inf makes its cost +inf
    gain -= torch.full((c1, c1), float("inf"), dtype=gain.dtype, device=gain.device).triu_(1)
    k_max = max(ks)
    # best[j][row, end]: least cost of j+1 segments covering [0, end), less q[end]
    best = [-gain[:, :, 0]]
    for _ in range(2, k_max):  # a handful of k, not rows
        best.append((best[-1][:, None, :] - gain).amin(dim=2))
    m = rows.values.shape[1]
    out = cand.new_full((g, len(ks), k_max + 1), m)
    out[:, :, 0] = 0
    last = gain[:, -1, :]  # segments ending at M
    for i, k in enumerate(ks):
        end = None
        for j in range(k, 1, -1):  # walk back from the last segment: argmins of small vectors
            tail = last if end is None else gain.gather(1, end[:, :, None].expand(g, 1, c1)).squeeze(1)
            end = (best[j - 2] - tail).argmin(dim=1, keepdim=True)
            out[:, i, j - 1 : j] = cand.gather(1, end)
    return out


def _lloyd_polish(rows: _Compressed, bounds: Tensor, ks: tuple[int, ...], max_iter: int) -> Tensor:
    """Lloyd iterations from the given splits until no boundary moves; returns new bounds."""
    g, nk, k1 = bounds.shape
    k_col = torch.tensor(ks, device=bounds.device)
    unused = torch.arange(k1 - 1, device=bounds.device)[None, :] >= k_col[:, None]  # (nk, K)
    first = bounds[:, :, :1]
    last = bounds[:, :, -1:]
    inner = bounds[:, :, 1:-1].contiguous()
    for _ in range(max_iter):
        full = torch.cat([first, inner, last], dim=2)
        w = _gather_rows(rows.prefix_w, full).diff(dim=2)
        s = _gather_rows(rows.prefix_s, full).diff(dim=2)
        filled = (w > 0) & ~unused
        # means of consecutive segments ascend; a cluster that empties gets +inf, which empties
        # the clusters above it too (+inf midpoints): the split is then flagged invalid
        cent = torch.where(filled, s / torch.where(filled, w, 1.0), float("inf"))
        mids = (cent[:, :, :-1] + cent[:, :, 1:]) * 0.5
        # a value exactly halfway goes to the lower cluster, as an argmin over distances does;
        # the midpoints of unused clusters are +inf, so their boundaries stay at M, past the
        # padding, which stays in the last used cluster
        new_inner = torch.searchsorted(rows.values, mids.view(g, -1), right=True).view(g, nk, k1 - 2)
        if torch.equal(new_inner, inner):
            break
        inner = new_inner
    return torch.cat([first, inner, last], dim=2)


def _best_bounds(rows: _Compressed, ks: tuple[int, ...], max_iter: int) -> Tensor:
    g, m = rows.values.shape
    if max(ks) == 1:
        out = rows.prefix_w.new_zeros(g, len(ks), 2, dtype=torch.int64)
        out[:, :, 1] = m
        return out
    if m <= EXACT_MAX_DISTINCT:
        cand = torch.arange(m + 1, device=rows.values.device).expand(g, m + 1).contiguous()
        return _optimal_bounds(rows, cand, ks)
    # coarse: split points at the edges of equal groups of consecutive distinct values and at the
    # widest gaps between values (where clusters part), then Lloyd on the full row
    edges = torch.arange(COARSE_BINS + 1, device=rows.values.device, dtype=torch.float64)
    even = torch.floor(edges[None, :] * rows.distinct[:, None].to(torch.float64) / COARSE_BINS).long()
    gaps = rows.values.diff(dim=1)  # 0 across the padding
    widest = gaps.topk(COARSE_GAPS, dim=1, sorted=False).indices + 1
    cand = torch.cat([even, widest], dim=1).sort(dim=1).values
    cand[:, -1] = m  # the padding belongs to the last segment
    return _lloyd_polish(rows, _optimal_bounds(rows, cand, ks), ks, max_iter)


# ---------------------------------------------------------------------------------------------
# statistics of the splits


@dataclass(frozen=True)
class _SplitStats:
    bounds: Tensor  # (G, nk, K+1)
    counts: Tensor  # (G, nk, K) total weight of each segment
    means: Tensor  # (G, nk, K) +inf where empty
    inertia: Tensor  # (G, nk)
    valid: Tensor  # (G, nk)


def _split_stats(rows: _Compressed, bounds: Tensor, ks: tuple[int, ...]) -> _SplitStats:
    k1 = bounds.shape[2]
    w = _gather_rows(rows.prefix_w, bounds)
    s = _gather_rows(rows.prefix_s, bounds)
    q = _gather_rows(rows.prefix_q, bounds)
    counts = w.diff(dim=2)
    sums = s.diff(dim=2)
    nonempty = counts > 0
    safe = torch.where(nonempty, counts, 1.0)
    means = torch.where(nonempty, sums / safe, float("inf"))
    sse = torch.where(nonempty, (q.diff(dim=2) - sums * sums / safe).clamp(min=0), 0.0)
    k_col = torch.tensor(ks, device=bounds.device)
    used = torch.arange(k1 - 1, device=bounds.device)[None, :] < k_col[:, None]  # (nk, K)
    valid = (nonempty | ~used).all(dim=2) & ((k_col < rows.n) | (k_col == 1))
    inertia = torch.where(valid, sse.sum(dim=2), float("inf"))
    return _SplitStats(bounds, counts, means, inertia, valid)


def _silhouettes(rows: _Compressed, st: _SplitStats) -> Tensor:
    """Exact mean silhouette of every split (G, nk); -inf where not valid."""
    g, nk, _ = st.bounds.shape
    m = rows.values.shape[1]
    pos = torch.arange(m, device=st.bounds.device).expand(g, nk, m).contiguous()
    lab = torch.searchsorted(st.bounds[:, :, 1:-1].contiguous(), pos, right=True)  # (G, nk, M)
    edge_w = _gather_rows(rows.prefix_w, st.bounds)
    edge_s = _gather_rows(rows.prefix_s, st.bounds)
    # per cluster: the prefix sums at both ends added, its size, its neighbours' means
    ends_w = edge_w[:, :, :-1] + edge_w[:, :, 1:]
    ends_s = edge_s[:, :, :-1] + edge_s[:, :, 1:]
    inf = st.means.new_full((g, nk, 1), float("inf"))
    lower = torch.cat([-inf, st.means[:, :, :-1]], dim=2)
    upper = torch.cat([st.means[:, :, 1:], inf], dim=2)
    x = rows.values[:, None, :]
    # sum of |x - y| over the other members y of x's cluster [lo, hi), with p = x's position:
    #   x (W[p] - W[lo]) - (S[p] - S[lo]) + (S[hi] - S[p+1]) - x (W[hi] - W[p+1])
    # = x (2 W[p] - W[lo] - W[hi]) - 2 S[p] + S[lo] + S[hi]   (the copies of x add 0)
    intra = x * (2 * rows.prefix_w[:, None, :-1] - ends_w.gather(2, lab))
    intra = intra - 2 * rows.prefix_s[:, None, :-1] + ends_s.gather(2, lab)
    a = intra / (st.counts - 1).clamp(min=1).gather(2, lab)
    b = torch.minimum(x - lower.gather(2, lab), upper.gather(2, lab) - x)
    # b > 0 in a valid split (every other cluster lies strictly on one side); invalid splits are
    # discarded below. A point alone in its cluster has a = 0, so the formula gives it 1 where
    # the definition says 0: take one off per singleton cluster
    s = (b - a) / torch.maximum(a, b)
    singletons = (st.counts == 1).sum(dim=2)
    sil = ((s * rows.weights[:, None, :]).sum(dim=2) - singletons) / rows.n
    return torch.where(st.valid, sil, -float("inf"))


def _check_max_iter(max_iter: int) -> None:
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")


# ---------------------------------------------------------------------------------------------
# public API


def kmeans_1d(values: Tensor, k: int, *, max_iter: int = DEFAULT_MAX_ITER) -> KMeans1D:
    """Cluster every row of ``values`` (G, N) in 1-D into ``k`` clusters.

    Exact optimum for rows with at most ``EXACT_MAX_DISTINCT`` distinct values, otherwise a
    Lloyd fixed point polished from the optimal coarse split. Deterministic; runs on
    ``values``' device without gradients.

    Raises:
        ValueError: if ``values`` is not a finite 2-D tensor with at least one column, k < 1
            or max_iter < 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    _check_values(values)
    _check_max_iter(max_iter)
    ks = (k,)
    with torch.no_grad():
        rows = _compress(values)
        g, n = values.shape
        labels = torch.empty(g, n, dtype=torch.int64, device=values.device)
        centroids = rows.values.new_empty(g, k)
        counts = torch.empty(g, k, dtype=torch.int64, device=values.device)
        inertia = rows.values.new_empty(g)
        valid = torch.empty(g, dtype=torch.bool, device=values.device)
        for idx, part in _size_classes(rows):
            st = _split_stats(part, _best_bounds(part, ks, max_iter), ks)
            where = slice(None) if idx is None else idx
            labels[where] = -_entry_levels(part, st.bounds[:, 0, :], torch.zeros_like(part.distinct))
            centroids[where] = st.means[:, 0, :k] + part.shift
            counts[where] = st.counts[:, 0, :k].round().long()
            inertia[where] = st.inertia[:, 0]
            valid[where] = st.valid[:, 0]
    return KMeans1D(labels=labels, centroids=centroids, counts=counts, inertia=inertia, valid=valid)


def adaptive_levels(
    values: Tensor, k_min: int = 2, k_max: int = 4, *, max_iter: int = DEFAULT_MAX_ITER
) -> LevelAssignment:
    """Levels of every row of ``values`` (G, N): k-means for k in [k_min, k_max], best silhouette.

    Among equal silhouettes the smaller k wins. Levels are numbered by descending cluster mean
    (0 = most relevant). Runs on ``values``' device without gradients and without a loop over
    rows.

    Raises:
        ValueError: if k_min < 2, k_max < k_min, max_iter < 1 or ``values`` is not a finite 2-D
            tensor.
    """
    if k_min < 2:
        raise ValueError(f"k_min must be at least 2 (a silhouette needs two clusters), got {k_min}")
    if k_max < k_min:
        raise ValueError(f"empty range of cluster counts: k_min={k_min} > k_max={k_max}")
    _check_values(values)
    _check_max_iter(max_iter)
    ks = tuple(range(k_min, k_max + 1))
    with torch.no_grad():
        rows = _compress(values)
        parts = [(idx, _choose_levels(part, ks, max_iter)) for idx, part in _size_classes(rows)]
        if len(parts) == 1:
            return parts[0][1]
        g, n = values.shape
        levels = torch.empty(g, n, dtype=torch.int64, device=values.device)
        k_out = torch.empty(g, dtype=torch.int64, device=values.device)
        sil_out = torch.empty(g, dtype=rows.values.dtype, device=values.device)
        for idx, part in parts:
            levels.index_copy_(0, idx, part.levels)
            k_out.index_copy_(0, idx, part.k)
            sil_out.index_copy_(0, idx, part.silhouette)
    return LevelAssignment(levels=levels, k=k_out, silhouette=sil_out)


def _choose_levels(rows: _Compressed, ks: tuple[int, ...], max_iter: int) -> LevelAssignment:
    g = rows.values.shape[0]
    st = _split_stats(rows, _best_bounds(rows, ks, max_iter), ks)
    sil = _silhouettes(rows, st)  # (G, nk)
    best = sil.argmax(dim=1, keepdim=True)  # first maximum: the smaller k on ties
    best_sil = sil.gather(1, best).squeeze(1)
    any_valid = torch.isfinite(best_sil)
    k_col = torch.tensor(ks, device=rows.values.device)[best.squeeze(1)]
    bounds = st.bounds.gather(1, best[:, :, None].expand(g, 1, st.bounds.shape[2])).squeeze(1)
    # a row with no valid split is one level: bounds that split nothing
    bounds = torch.where(any_valid[:, None], bounds, torch.full_like(bounds, rows.values.shape[1]))
    bounds[:, 0] = 0
    k_out = torch.where(any_valid, k_col, 1)
    levels = _entry_levels(rows, bounds, k_out - 1)
    sil_out = torch.where(any_valid, best_sil, float("nan"))
    return LevelAssignment(levels=levels, k=k_out, silhouette=sil_out)


def silhouette_1d(values: Tensor, labels: Tensor) -> Tensor:
    """Exact mean silhouette score of each row of 1-D data (G, N) under any labelling.

    The usual definition (scikit-learn's ``silhouette_score`` with the Euclidean metric):
    s(i) = (b - a) / max(a, b) with a the mean distance to the other members of i's cluster and
    b the smallest mean distance to another cluster; s(i) = 0 for a point alone in its
    cluster. NaN for rows where it is undefined (fewer than 2 or more than N-1 clusters).
    O(C N log N) per row for C clusters; any labels, not only contiguous ones.
    """
    if values.shape != labels.shape or values.ndim != 2:
        raise ValueError(
            f"values and labels must be matching 2-D tensors, got {tuple(values.shape)} and "
            f"{tuple(labels.shape)}"
        )
    x = values.detach().to(work_dtype(values.device))
    labels = labels.to(torch.int64)
    g, n = x.shape
    n_clusters = int(labels.max()) + 1 if labels.numel() else 0
    inf = float("inf")
    dist_sums = []  # sum of |x_i - y| over y in cluster c, (G, N) for each c
    sizes = []
    for c in range(n_clusters):  # clusters, not rows: each pass covers the whole batch
        member = labels == c
        members = torch.where(member, x, inf).sort(dim=1).values
        count = member.sum(dim=1, keepdim=True)
        prefix = _prefix(torch.where(torch.isfinite(members), members, 0.0))
        below = torch.searchsorted(members, x.contiguous(), right=True)
        sum_below = prefix.gather(1, below)
        total = prefix[:, -1:]
        dist_sums.append(x * below - sum_below + (total - sum_below) - x * (count - below))
        sizes.append(count.expand(g, n))
    dist = torch.stack(dist_sums, dim=0)  # (C, G, N)
    size = torch.stack(sizes, dim=0).to(x.dtype)
    own = labels.unsqueeze(0)
    own_size = size.gather(0, own).squeeze(0)
    a = dist.gather(0, own).squeeze(0) / (own_size - 1).clamp(min=1)
    is_own = torch.arange(n_clusters, device=x.device)[:, None, None] == own
    mean_to = torch.where(is_own | (size == 0), inf, dist / size.clamp(min=1))
    b = mean_to.amin(dim=0)
    denom = torch.maximum(a, b)
    ok = (own_size > 1) & (denom > 0) & torch.isfinite(b)
    s = torch.where(ok, (b - a) / torch.where(ok, denom, 1.0), 0.0)
    used = torch.stack([(labels == c).any(dim=1) for c in range(n_clusters)], dim=1).sum(dim=1)
    defined = (used >= 2) & (used <= n - 1)
    return torch.where(defined, s.mean(dim=1), float("nan"))
