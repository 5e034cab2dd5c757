"""Adaptive relevance levels: batched 1-D k-means with silhouette model selection.

The adaptive ladder loss (Zhou et al., IEEE TMM 2023) splits each query's relevance degrees
into levels: it clusters the values of one row in 1-D with k-means for every k in a range,
keeps the k with the highest silhouette score and numbers the clusters from the most relevant
(level 0) down. The reference implementation calls scikit-learn once per row and per k; here
every row and every k of a batch is clustered at once, with no loop over rows: with numpy for
tensors on the CPU (where its sorting and indexing are several times faster than torch's for
these small arrays: that is where a data pipeline computes levels), with torch on the tensor's
own device otherwise. Both run the same code and give the same results.

How, and why it is exact where it matters:

* Each row is sorted once and reduced to its distinct values with multiplicities. Relevance
  degrees computed from tags or attributes take few distinct values (a few dozen), so this
  shrinks a row of hundreds of candidates to a few dozen weighted points, without changing any
  result. The prefix sums of the weights are the run positions in the sorted row.
* In 1-D every k-means solution splits the sorted values into contiguous segments, and the
  best split for every k up to k_max comes out of one dynamic programme over split points
  (the classic optimal 1-D k-means, as in Ckmeans.1d.dp), batched over rows: the one result
  grading uses too, :func:`core.kmeans1d.optimal_splits`. A row with at most
  ``EXACT_MAX_DISTINCT`` distinct values gets the globally optimal k-means split, for every
  k, deterministically (scikit-learn's k-means++ only approximates it). The programme's
  tables grow with the square of a row's number of distinct values, so rows are taken in
  order of that number, in chunks that fit a cache, each chunk as wide as its widest row.
* A row with more distinct values (continuous relevance) is cut into ``COARSE_BINS``
  consecutive groups; the programme finds the best split at group edges or at the widest gaps
  between values, and Lloyd iterations then polish it on the full row until no boundary moves
  (at most ``max_iter``). The result is a proper k-means fixed point next to the coarse
  optimum. Lloyd steps are binary searches of centroid midpoints plus prefix sums: O(k log N)
  per row; rows that stop moving leave the batch.
* The silhouette is exact in O(N) per row and k: every cluster other than a point's own lies
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
from typing import Any

import torch
from torch import Tensor

from core.kmeans1d import optimal_splits, silhouette_rows
from trainer.level_arrays import Arrays, arrays_for, work_dtype

logger = logging.getLogger(__name__)

EXACT_MAX_DISTINCT = 64
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

DP_CHUNK_ELEMENTS = 1 << 17
"""Rows of the exact programme are processed in chunks of about this many table entries
(rows x (width + 1)^2), so that its tables stay in the processor's cache."""


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


# ---------------------------------------------------------------------------------------------
# rows as sorted distinct values with multiplicities


@dataclass(frozen=True)
class _Rows:
    """Each row as ascending distinct values, padded at the end with weight 0."""

    values: Any  # (G, M) ascending, minus the row mean; padding repeats the row max
    weights: Any  # (G, M) multiplicity of each value (0 for padding), work dtype
    prefix_w: Any  # (G, M+1) prefix sums of weights: where each run starts in the sorted row
    prefix_s: Any  # (G, M+1) prefix sums of weight * value
    prefix_q: Any | None  # (G, M+1) prefix sums of weight * value**2 (only for the inertia)
    shift: Any  # (G, 1) row mean that was subtracted
    distinct: Any  # (G,) int64 number of distinct values
    n: int  # original row length
    raw: Any  # (G, N) original values (float32 or float64)
    firsts: Any  # (G, M) smallest original value of each run, padded with the row maximum


def _check_shape(values: Tensor) -> None:
    if values.ndim != 2:
        raise ValueError(f"expected a (rows, values) matrix, got shape {tuple(values.shape)}")
    if values.shape[1] == 0:
        raise ValueError("cannot cluster rows with no values")


def _check_max_iter(max_iter: int) -> None:
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")


def _raw(values: Tensor) -> Tensor:
    raw = values.detach()
    if raw.dtype not in (torch.float32, torch.float64):
        raw = raw.to(torch.float32)  # exact for half precision, bfloat16 and small integers
    return raw


def _prefix(ops: Arrays, x: Any) -> Any:
    return ops.cat([ops.full((x.shape[0], 1), 0.0, x.dtype), ops.cumsum(x)], axis=1)


def _compress(ops: Arrays, raw: Any, squares: bool = False, n: int | None = None) -> _Rows:
    """Exact distinct values of every row with their multiplicities, by sorting each row.

    Args:
        n: cluster only the n smallest values of each row (the others are +inf placeholders,
            e.g. a query's ground truth); default all.

    Raises:
        ValueError: if a value is not finite (NaN and infinities sort to the ends of a row).
    """
    g = raw.shape[0]
    n = raw.shape[1] if n is None else n
    v = ops.sort_rows(raw)[:, :n]
    if not bool(ops.isfinite(v[:, :1]).all() and ops.isfinite(v[:, -1:]).all()):
        raise ValueError("values to cluster must be finite")
    if n > 1:
        # a new distinct value starts where the gap exceeds the tolerance (in the values' dtype)
        new = (v[:, 1:] - v[:, :-1]) > (v[:, -1:] - v[:, :1]) * SAME_VALUE_RTOL
        distinct = new.sum(1) + 1
        all_distinct = int(distinct.min()) == n
    else:
        distinct = ops.full((g,), 1, ops.int64)
        all_distinct = True
    if all_distinct:  # nothing to merge: every weight is 1
        vals = ops.astype(v, ops.work)
        shift = vals.sum(1)[:, None] / n
        vals = vals - shift
        wv = vals
        weights = ops.full((g, n), 1.0, ops.work)
        prefix_w = ops.astype(ops.arange(n + 1), ops.work)[None, :] + ops.full((g, 1), 0.0, ops.work)
        firsts = v
    else:
        m = int(distinct.max())
        starts = ops.cat([ops.full((g, 1), True, new.dtype), new], axis=1)
        pos = ops.cat([ops.run_starts(starts, distinct, m), ops.full((g, 1), n, ops.int64)], axis=1)
        # a run of equal values is represented by its first (smallest) value
        firsts = ops.take(v, ops.clip(pos[:, :m], None, n - 1))
        weights = ops.astype(pos[:, 1:] - pos[:, :-1], ops.work)
        vals = ops.astype(firsts, ops.work)
        shift = (vals * weights).sum(1)[:, None] / n
        vals = vals - shift
        wv = weights * vals
        prefix_w = ops.astype(pos, ops.work)
    return _Rows(
        values=vals,
        weights=weights,
        prefix_w=prefix_w,
        prefix_s=_prefix(ops, wv),
        prefix_q=_prefix(ops, wv * vals) if squares else None,
        shift=shift,
        distinct=distinct,
        n=n,
        raw=raw,
        firsts=firsts,
    )


def _select_rows(rows: _Rows, idx: Any, width: int) -> _Rows:
    """Rows ``idx`` trimmed to ``width`` distinct values (the widest of them)."""
    return _Rows(
        values=rows.values[idx, :width],
        weights=rows.weights[idx, :width],
        prefix_w=rows.prefix_w[idx, : width + 1],
        prefix_s=rows.prefix_s[idx, : width + 1],
        prefix_q=None if rows.prefix_q is None else rows.prefix_q[idx, : width + 1],
        shift=rows.shift[idx],
        distinct=rows.distinct[idx],
        n=rows.n,
        raw=rows.raw[idx],
        firsts=rows.firsts[idx, :width],
    )


# ---------------------------------------------------------------------------------------------
# optimal splits by dynamic programming


def _optimal_bounds(ops: Arrays, w: Any, s: Any, ks: tuple[int, ...]) -> Any:
    """Best split of every row into k segments for each k: :func:`core.kmeans1d.optimal_splits`.

    Args:
        w, s: (G, C+1) prefix sums of weights and of weighted values at ascending candidate
            boundaries, the first at 0, the last at the end of the row.

    Returns:
        (G, len(ks), K+1) int64 candidate indices of the boundaries, K = max(ks), first 0, last
        C; for k < K the tail repeats C (empty segments). Rows where every split has an empty
        segment (fewer than k distinct values) get arbitrary boundaries: validity is checked
        from the weights.
    """
    # torch alone: on the CPU too its broadcasting and reductions over these tables run several
    # times faster than numpy's
    return ops.from_torch(optimal_splits(ops.as_torch(w), ops.as_torch(s), ks, xp=torch))


def _exact_bounds(ops: Arrays, rows: _Rows, idx: Any, ks: tuple[int, ...], out: Any) -> None:
    """Optimal splits of rows ``idx`` into out[idx], in chunks of rows of similar width."""
    m = rows.values.shape[1]
    distinct = rows.distinct[idx]
    by_width = ops.stable_order(distinct)
    order = idx[by_width]
    widths = distinct[by_width].tolist()
    start = 0
    while start < len(widths):  # chunks of rows, not rows
        end = start + max(1, DP_CHUNK_ELEMENTS // (widths[start] + 1) ** 2)
        end = min(end, len(widths))
        while end - start > 1 and (end - start) * (widths[end - 1] + 1) ** 2 > DP_CHUNK_ELEMENTS:
            end = start + (end - start + 1) // 2
        chunk = order[start:end]
        width = widths[end - 1]
        w = rows.prefix_w[chunk, : width + 1]
        bounds = _optimal_bounds(ops, w, rows.prefix_s[chunk, : width + 1], ks)
        out[chunk] = ops.where(bounds == width, m, bounds)
        start = end


def _coarse_candidates(ops: Arrays, rows: _Rows) -> Any:
    """(G, C+1) candidate boundaries: edges of equal groups of values and the widest gaps."""
    g, m = rows.values.shape
    edges = ops.astype(ops.arange(COARSE_BINS + 1), ops.work)
    even = ops.astype(edges[None, :] * ops.astype(rows.distinct[:, None], ops.work) / COARSE_BINS, ops.int64)
    gaps = rows.values[:, 1:] - rows.values[:, :-1]  # 0 across the padding
    count = min(COARSE_GAPS, gaps.shape[1])
    # the widest gaps, ties going to the lower position (the same choice on every backend)
    kth = ops.kth_largest(gaps, count)[:, None]
    above = gaps > kth
    at = gaps == kth
    need = count - above.sum(1)
    if bool((at.sum(1) > need).any()):  # more gaps tie with the k-th than are needed
        at &= ops.cumsum(ops.astype(at, ops.int64)) <= need[:, None]
    chosen = above | at
    widest = ops.nonzero(chosen)[1].reshape(g, count) + 1
    cand = ops.sort_rows(ops.cat([even, widest], axis=1))
    cand[:, -1] = m  # the padding belongs to the last segment
    return cand


def _lloyd_polish(ops: Arrays, rows: _Rows, bounds: Any, ks: tuple[int, ...], max_iter: int) -> Any:
    """Lloyd iterations from the given splits until no boundary moves; returns new bounds."""
    g, nk, k1 = bounds.shape
    if k1 <= 2:
        return bounds
    k_col = ops.array(ks)
    unused = ops.arange(k1 - 1)[None, :] >= k_col[:, None]  # (nk, K)
    inner = ops.copy(bounds[:, :, 1:-1])
    first = bounds[:, :, :1]
    last = bounds[:, :, -1:]
    active = ops.arange(g)
    values, pw, ps = rows.values, rows.prefix_w, rows.prefix_s
    current = inner
    for _ in range(max_iter):
        ga = active.shape[0]
        full = ops.cat([first[:ga], current, last[:ga]], axis=2).reshape(ga, -1)
        w = ops.take(pw, full).reshape(ga, nk, k1)
        s = ops.take(ps, full).reshape(ga, nk, k1)
        w = w[:, :, 1:] - w[:, :, :-1]
        s = s[:, :, 1:] - s[:, :, :-1]
        filled = (w > 0) & ~unused
        # means of consecutive segments ascend; a cluster that empties gets +inf, which empties
        # the clusters above it too (+inf midpoints): the split is then flagged invalid
        cent = ops.where(filled, s / ops.where(filled, w, 1.0), ops.inf)
        mids = (cent[:, :, :-1] + cent[:, :, 1:]) * 0.5
        # a value exactly halfway goes to the lower cluster, as an argmin over distances does;
        # the midpoints of unused clusters are +inf, so their boundaries stay at the end, past
        # the padding, which stays in the last used cluster
        new = ops.searchsorted_rows(values, mids.reshape(ga, -1)).reshape(ga, nk, k1 - 2)
        moved = (new != current).reshape(ga, -1).any(1)
        inner[active] = new
        n_moved = int(moved.sum())
        if n_moved == 0:
            break
        if n_moved < 0.75 * ga:  # rows at a fixed point stay there: drop them
            keep = ops.nonzero(moved)[0]
            active, values, pw, ps = active[keep], values[keep], pw[keep], ps[keep]
            new = new[keep]
        current = new
    return ops.cat([first, inner, last], axis=2)


def _coarse_bounds(ops: Arrays, rows: _Rows, idx: Any, ks: tuple[int, ...], max_iter: int, out: Any) -> None:
    """Splits of the rows ``idx`` with many distinct values into out[idx]."""
    g, m = rows.values.shape
    width = int(rows.distinct[idx].max())
    part = rows if idx.shape[0] == g and width == m else _select_rows(rows, idx, width)
    cand = _coarse_candidates(ops, part)
    w = ops.take(part.prefix_w, cand)
    s = ops.take(part.prefix_s, cand)
    g, c1 = cand.shape  # the rows of the part
    step = max(1, DP_CHUNK_ELEMENTS // c1**2)
    parts = [_optimal_bounds(ops, w[lo : lo + step], s[lo : lo + step], ks) for lo in range(0, g, step)]
    at = ops.cat(parts, axis=0)
    nk, k1 = at.shape[1:]
    bounds = ops.take(cand, at.reshape(g, -1)).reshape(g, nk, k1)
    bounds = _lloyd_polish(ops, part, bounds, ks, max_iter)
    out[idx] = ops.where(bounds == width, m, bounds)


def _best_bounds(ops: Arrays, rows: _Rows, ks: tuple[int, ...], max_iter: int) -> Any:
    """(G, len(ks), K+1) boundary positions of the best split of every row for every k."""
    g, m = rows.values.shape
    out = ops.full((g, len(ks), max(ks) + 1), m, ops.int64)
    out[:, :, 0] = 0
    if max(ks) == 1:
        return out
    exact = rows.distinct <= EXACT_MAX_DISTINCT
    exact_rows = ops.nonzero(exact)[0]
    if exact_rows.shape[0]:
        _exact_bounds(ops, rows, exact_rows, ks, out)
    if exact_rows.shape[0] < g:
        _coarse_bounds(ops, rows, ops.nonzero(~exact)[0], ks, max_iter, out)
    return out


# ---------------------------------------------------------------------------------------------
# statistics of the splits


@dataclass(frozen=True)
class _SplitStats:
    bounds: Any  # (G, nk, K+1)
    counts: Any  # (G, nk, K) total weight of each segment
    means: Any  # (G, nk, K) +inf where empty
    valid: Any  # (G, nk)
    inertia: Any | None  # (G, nk), +inf where not valid; only with the rows' prefix_q


def _split_stats(ops: Arrays, rows: _Rows, bounds: Any, ks: tuple[int, ...]) -> _SplitStats:
    g, nk, k1 = bounds.shape
    flat = bounds.reshape(g, -1)
    w = ops.take(rows.prefix_w, flat).reshape(g, nk, k1)
    s = ops.take(rows.prefix_s, flat).reshape(g, nk, k1)
    counts = w[:, :, 1:] - w[:, :, :-1]
    sums = s[:, :, 1:] - s[:, :, :-1]
    nonempty = counts > 0
    safe = ops.where(nonempty, counts, 1.0)
    means = ops.where(nonempty, sums / safe, ops.inf)
    k_col = ops.array(ks)
    used = ops.arange(k1 - 1)[None, :] < k_col[:, None]  # (nk, K)
    valid = (nonempty | ~used).all(2) & ((k_col < rows.n) | (k_col == 1))
    inertia = None
    if rows.prefix_q is not None:
        q = ops.take(rows.prefix_q, flat).reshape(g, nk, k1)
        sse = ops.where(nonempty, ops.clip(q[:, :, 1:] - q[:, :, :-1] - sums * sums / safe, 0.0), 0.0)
        inertia = ops.where(valid, sse.sum(2), ops.inf)
    return _SplitStats(bounds, counts, means, valid, inertia)


SILHOUETTE_CHUNK_ELEMENTS = 1 << 16
"""The silhouettes of rows x splits x values are computed in chunks of rows of about this size,
so that their temporaries stay in the processor's cache."""


def _silhouettes(ops: Arrays, rows: _Rows, st: _SplitStats) -> Any:
    """Exact mean silhouette of every split (G, nk); -inf where not valid."""
    g, nk, _ = st.bounds.shape
    step = max(1, SILHOUETTE_CHUNK_ELEMENTS // (nk * rows.values.shape[1]))
    parts = []
    for lo in range(0, g, step):  # chunks of rows
        sl = slice(lo, lo + step)
        parts.append(
            _silhouette_chunk(
                ops,
                rows.values[sl],
                rows.weights[sl],
                rows.prefix_w[sl],
                rows.prefix_s[sl],
                st.bounds[sl],
                st.counts[sl],
                st.means[sl],
            )
        )
    sil = parts[0] if len(parts) == 1 else ops.cat(parts, axis=0)
    return ops.where(st.valid, sil / rows.n, -ops.inf)


def _silhouette_chunk(
    ops: Arrays, x: Any, weights: Any, pw: Any, ps: Any, bounds: Any, counts: Any, means: Any
) -> Any:
    """Sum of the silhouettes of the values of each split (G, nk); meaningless where not valid."""
    g, nk, k1 = bounds.shape
    m = x.shape[1]
    flat = bounds.reshape(g, -1)
    edge_w = ops.take(pw, flat).reshape(g, nk, k1)
    edge_s = ops.take(ps, flat).reshape(g, nk, k1)
    minus_inf = ops.full((g, nk, 1), -ops.inf, means.dtype)
    # per cluster [lo, hi): the prefix sums at both ends added, 1 / (size - 1), its neighbours'
    # means (-inf / +inf where there is none), then the same for every value of the row
    ends_w, ends_s, inv, lower, upper = ops.expand(
        [
            edge_w[:, :, :-1] + edge_w[:, :, 1:],
            edge_s[:, :, :-1] + edge_s[:, :, 1:],
            1.0 / ops.clip(counts - 1.0, 1.0),
            ops.cat([minus_inf, means[:, :, :-1]], axis=2),
            ops.cat([means[:, :, 1:], -minus_inf], axis=2),
        ],
        bounds[:, :, 1:] - bounds[:, :, :-1],
        m,
    )
    twice = 2.0 * (x * pw[:, :-1] - ps[:, :-1])
    t = ops.as_torch
    sums = _silhouette_sums(t(x), t(weights), t(twice), t(ends_w), t(ends_s), t(inv), t(lower), t(upper))
    # a point alone in its cluster has a = 0, so the formula gives it 1 where the definition
    # says 0: take one off per singleton cluster
    return ops.from_torch(sums) - (counts == 1).sum(2)


def _silhouette_sums(
    x: Tensor,
    weights: Tensor,
    twice: Tensor,
    ends_w: Tensor,
    ends_s: Tensor,
    inv: Tensor,
    lower: Tensor,
    upper: Tensor,
) -> Tensor:
    """Sum over the values of each split of (b - a) / max(a, b), in place in the (G, nk, M) inputs.

    Written with torch alone (its broadcasting is several times faster than numpy's on the CPU).
    ``x``, ``weights``, ``twice`` = 2 (x W[p] - S[p]) are (G, M); the others are each value's
    cluster's W[lo] + W[hi], S[lo] + S[hi], 1 / (size - 1) and neighbours' means, (G, nk, M).
    """
    x = x[:, None, :]
    # sum of |x - y| over the other members y of x's cluster [lo, hi), with p = x's position:
    #   x (W[p] - W[lo]) - (S[p] - S[lo]) + (S[hi] - S[p+1]) - x (W[hi] - W[p+1])
    # = 2 (x W[p] - S[p]) - x (W[lo] + W[hi]) + S[lo] + S[hi]   (the copies of x add 0)
    minus_a = ends_w.mul_(x).sub_(twice[:, None, :]).sub_(ends_s).mul_(inv)
    # b: the mean distance to the nearest other cluster, a neighbour wholly on one side, so the
    # distance to its mean; b > 0 in a valid split (invalid splits are discarded by the caller)
    b = torch.minimum(lower.neg_().add_(x), upper.sub_(x), out=lower)
    denominator = torch.maximum(torch.neg(minus_a, out=upper), b, out=upper)
    s = b.add_(minus_a).div_(denominator)
    return torch.bmm(s, weights[:, :, None]).squeeze(2)


def _cluster_of(ops: Arrays, rows: _Rows, inner: Any) -> Any:
    """(G, N) number of the boundaries ``inner`` (G, J) at or below each original value."""
    m = rows.firsts.shape[1]
    # the smallest value of every cluster but the first; +inf for the unused ones
    first = ops.take(rows.firsts, ops.clip(inner, None, m - 1))
    first = ops.where(inner < rows.distinct[:, None], first, ops.inf)
    count = ops.full(rows.raw.shape, 0, ops.int8 if inner.shape[1] < 127 else ops.int64)
    for j in range(inner.shape[1]):  # k - 1 boundaries, not rows
        count += rows.raw >= first[:, j : j + 1]
    return ops.astype(count, ops.int64)


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
    _check_shape(values)
    _check_max_iter(max_iter)
    return _kmeans_1d(arrays_for(values), values, k, max_iter)


def _kmeans_1d(ops: Arrays, values: Tensor, k: int, max_iter: int) -> KMeans1D:
    ks = (k,)
    with torch.no_grad(), ops.quiet():
        rows = _compress(ops, ops.from_tensor(_raw(values)), squares=True)
        st = _split_stats(ops, rows, _best_bounds(ops, rows, ks, max_iter), ks)
        labels = _cluster_of(ops, rows, st.bounds[:, 0, 1:-1])
        return KMeans1D(
            labels=ops.to_tensor(labels),
            centroids=ops.to_tensor(st.means[:, 0, :k] + rows.shift),
            counts=ops.to_tensor(ops.astype(st.counts[:, 0, :k], ops.int64)),
            inertia=ops.to_tensor(st.inertia[:, 0]),
            valid=ops.to_tensor(st.valid[:, 0]),
        )


def _check_range(k_min: int, k_max: int, max_iter: int) -> None:
    if k_min < 2:
        raise ValueError(f"k_min must be at least 2 (a silhouette needs two clusters), got {k_min}")
    if k_max < k_min:
        raise ValueError(f"empty range of cluster counts: k_min={k_min} > k_max={k_max}")
    _check_max_iter(max_iter)


def adaptive_levels(
    values: Tensor, k_min: int = 2, k_max: int = 4, *, max_iter: int = DEFAULT_MAX_ITER
) -> LevelAssignment:
    """Levels of every row of ``values`` (G, N): k-means for k in [k_min, k_max], best silhouette.

    Among equal silhouettes the smaller k wins. Levels are numbered by descending cluster mean
    (0 = most relevant). Runs without gradients and without a loop over rows: with numpy for a
    tensor on the CPU, on the tensor's device otherwise; the results are tensors on that device.

    Raises:
        ValueError: if k_min < 2, k_max < k_min, max_iter < 1 or ``values`` is not a finite 2-D
            tensor.
    """
    _check_range(k_min, k_max, max_iter)
    _check_shape(values)
    return _adaptive_levels(arrays_for(values), values, k_min, k_max, max_iter)


def _adaptive_levels(ops: Arrays, values: Tensor, k_min: int, k_max: int, max_iter: int) -> LevelAssignment:
    with torch.no_grad(), ops.quiet():
        top, count, k, sil = _choose_levels(ops, ops.from_tensor(_raw(values)), k_min, k_max, max_iter)
        return LevelAssignment(
            levels=ops.to_tensor(top[:, None] - count),
            k=ops.to_tensor(k),
            silhouette=ops.to_tensor(sil),
        )


def _choose_levels(
    ops: Arrays, raw: Any, k_min: int, k_max: int, max_iter: int, n: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """(top, count, k, silhouette): the level of value j of row g is top[g] - count[g, j].

    With ``n``, only the n smallest values of each row are clustered (see :func:`_compress`).
    """
    ks = tuple(range(k_min, k_max + 1))
    rows = _compress(ops, raw, n=n)
    g, m = rows.values.shape
    st = _split_stats(ops, rows, _best_bounds(ops, rows, ks, max_iter), ks)
    sil = _silhouettes(ops, rows, st)  # (G, nk)
    best = sil.argmax(1)  # first maximum: the smaller k on ties
    index = ops.arange(g)
    best_sil = sil[index, best]
    any_valid = best_sil > -ops.inf
    k_chosen = ops.where(any_valid, ops.array(ks)[best], 1)
    # a row with no valid split is one level: boundaries that split nothing
    inner = ops.where(any_valid[:, None], st.bounds[index, best][:, 1:-1], m)
    nan = ops.full((g,), float("nan"), sil.dtype)
    return k_chosen - 1, _cluster_of(ops, rows, inner), k_chosen, ops.where(any_valid, best_sil, nan)


def ladder_levels(
    relevance: Tensor,
    k_min: int = 2,
    k_max: int = 4,
    *,
    max_iter: int = DEFAULT_MAX_ITER,
    include_ground_truth: bool = False,
) -> Tensor:
    """Adaptive ladder levels of every query of a square relevance matrix, in both directions.

    Each row q of ``relevance`` (B, B) is a query whose candidates are the columns, and each
    column t is a query whose candidates are the rows. The ground truth (the diagonal) is level
    0; the other B - 1 candidates of a query are on level 1 + their :func:`adaptive_levels`
    level among themselves.

    With ``include_ground_truth`` (what the reference code of the adaptive ladder loss does), the
    ground truth is clustered with the other candidates instead: level 0 is its whole cluster, so
    candidates nearly as relevant share its level, and the levels below are the other clusters.

    Returns:
        (2, B, B) int64 on ``relevance``'s device: [0][q, j] for row query q and candidate j,
        [1][t, i] for column query t and candidate i.

    Raises:
        ValueError: if ``relevance`` is not a finite square matrix, or for the k range as
            :func:`adaptive_levels`.
    """
    _check_range(k_min, k_max, max_iter)
    if relevance.ndim != 2 or relevance.shape[0] != relevance.shape[1]:
        raise ValueError(f"relevance must be a square matrix, got shape {tuple(relevance.shape)}")
    ops = arrays_for(relevance)
    if include_ground_truth:
        return _ladder_levels_with_ground_truth(ops, relevance, k_min, k_max, max_iter)
    return _ladder_levels(ops, relevance, k_min, k_max, max_iter)


@dataclass(frozen=True)
class LevelSettings:
    """The settings adaptive ladder levels are computed with; calling it computes them.

    A plain, picklable value: a data pipeline (its workers too) can compute the levels of each
    batch with it, and a loss can tell whether levels given to it were computed its way.
    """

    k_min: int = 2
    k_max: int = 4
    max_iter: int = DEFAULT_MAX_ITER
    include_ground_truth: bool = False

    def __call__(self, relevance: Tensor) -> Tensor:
        """(2, B, B) int64 levels of ``relevance`` (B, B): :func:`ladder_levels`."""
        return ladder_levels(
            relevance,
            self.k_min,
            self.k_max,
            max_iter=self.max_iter,
            include_ground_truth=self.include_ground_truth,
        )


def _ladder_levels(ops: Arrays, relevance: Tensor, k_min: int, k_max: int, max_iter: int) -> Tensor:
    b = relevance.shape[0]
    if b < 2:
        return ops.to_tensor(ops.full((2, b, b), 0, ops.int64))
    with torch.no_grad(), ops.quiet():
        # the row queries, then the column queries, each with its ground truth set to +inf: it
        # sorts last and is left out of the clustering
        queries = ops.both_directions(ops.from_tensor(_raw(relevance)))
        diagonal = ops.arange(b)
        queries[:, diagonal, diagonal] = ops.inf
        top, count, _, _ = _choose_levels(ops, queries.reshape(2 * b, b), k_min, k_max, max_iter, n=b - 1)
        levels = ((top + 1)[:, None] - count).reshape(2, b, b)  # level 0 is the ground truth
        levels[:, diagonal, diagonal] = 0
    return ops.to_tensor(levels)


def _ladder_levels_with_ground_truth(
    ops: Arrays, relevance: Tensor, k_min: int, k_max: int, max_iter: int
) -> Tensor:
    b = relevance.shape[0]
    if b < 2:
        return ops.to_tensor(ops.full((2, b, b), 0, ops.int64))
    with torch.no_grad(), ops.quiet():
        queries = ops.both_directions(ops.from_tensor(_raw(relevance)))
        top, count, _, _ = _choose_levels(ops, queries.reshape(2 * b, b), k_min, k_max, max_iter)
        levels = (top[:, None] - count).reshape(2, b, b)
        diagonal = ops.arange(b)
        levels[:, diagonal, diagonal] = 0  # the ground truth is the most relevant: its cluster is level 0
    return ops.to_tensor(levels)


def silhouette_1d(values: Tensor, labels: Tensor) -> Tensor:
    """Exact mean silhouette score of each row of 1-D data (G, N) under any labelling.

    The usual definition (scikit-learn's ``silhouette_score`` with the Euclidean metric):
    s(i) = (b - a) / max(a, b) with a the mean distance to the other members of i's cluster and
    b the smallest mean distance to another cluster; s(i) = 0 for a point alone in its
    cluster. NaN for rows where it is undefined (fewer than 2 or more than N-1 clusters).
    O(C N log N) per row for C clusters; any labels, not only contiguous ones. Computed on the
    CPU (:func:`core.kmeans1d.silhouette_rows`); the result is on ``values``' device.
    """
    if values.shape != labels.shape or values.ndim != 2:
        raise ValueError(
            f"values and labels must be matching 2-D tensors, got {tuple(values.shape)} and "
            f"{tuple(labels.shape)}"
        )
    x = values.detach().to("cpu", torch.float64).numpy()
    sil = silhouette_rows(x, labels.detach().to("cpu", torch.int64).numpy())
    return torch.from_numpy(sil).to(values.device, work_dtype(values.device))
