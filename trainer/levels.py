"""Adaptive relevance levels: batched 1-D k-means with silhouette model selection.

The adaptive ladder loss (Zhou et al., IEEE TMM 2023) splits each query's relevance degrees
into levels: it clusters the values of one row in 1-D with k-means for every k in a range,
keeps the k with the highest silhouette score and numbers the clusters from the most relevant
(level 0) down. The reference implementation calls scikit-learn once per row and per k; here
every row and every k of a batch is clustered at once, on the tensor's device, with no loop
over rows.

How, and why it is exact where it matters:

* Each row is sorted and reduced to its distinct values with multiplicities. Relevance degrees
  computed from tags or attributes take few distinct values (a few dozen), so this shrinks a
  row of hundreds of candidates to a few dozen weighted points, without changing any result.
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

EXACT_MAX_DISTINCT = 32
"""Rows with at most this many distinct values get the exact optimal k-means split."""

BUCKETS = 256
"""Rows are first binned into this many equal buckets to find their distinct values without
sorting; when a bucket holds two different values, the rows are sorted instead."""

SAME_VALUE_RTOL = 1e-6
"""Values closer than this fraction of their row's range may be merged into one (rounding)."""

COARSE_BINS = 32
"""Rows with more distinct values are first split optimally at the edges of this many groups."""

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
    # how to find the position of an original entry: by bucket, or by value
    bucket: Tensor | None  # (G, N) bucket of every entry
    slot: Tensor | None  # (G, BUCKETS) position of every bucket (M where empty)
    raw: Tensor | None  # (G, N) original values (work dtype), when there are no buckets
    raw_sorted: Tensor | None  # (G, M) distinct original values (work dtype)


def _check_values(values: Tensor) -> None:
    if values.ndim != 2:
        raise ValueError(f"expected a (rows, values) matrix, got shape {tuple(values.shape)}")
    if values.shape[1] == 0:
        raise ValueError("cannot cluster rows with no values")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values to cluster must be finite")


def _prefix(x: Tensor) -> Tensor:
    return torch.cat([x.new_zeros(x.shape[0], 1), x.cumsum(1)], dim=1)


def _with_prefix(
    vals: Tensor, weights: Tensor, distinct: Tensor, n: int, **lookup: Tensor | None
) -> _Compressed:
    shift = (vals * weights).sum(dim=1, keepdim=True) / n
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
        bucket=lookup.get("bucket"),
        slot=lookup.get("slot"),
        raw=lookup.get("raw"),
        raw_sorted=lookup.get("raw_sorted"),
    )


def _sort_rows(x: Tensor) -> Tensor:
    if x.device.type == "cpu":
        # numpy's vectorised sort is far faster than torch's on the CPU for many short rows
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return torch.sort(x, dim=1).values


def _compress_sorted(values: Tensor) -> _Compressed:
    """Exact distinct values of every row, by sorting each row."""
    g, n = values.shape
    work = work_dtype(values.device)
    raw = values.detach().to(work)
    v = _sort_rows(raw)
    new = v[:, 1:] != v[:, :-1]
    distinct = new.sum(dim=1) + 1
    m = int(distinct.max())
    if int(distinct.min()) == n:  # all distinct: nothing to merge
        vals, weights = v, torch.ones_like(v)
    else:
        seg = torch.cat([new.new_zeros(g, 1, dtype=torch.int64), new.cumsum(1)], dim=1)
        vals = v[:, -1:].expand(g, m).clone().scatter_(1, seg, v)
        weights = v.new_zeros(g, m).scatter_add_(1, seg, torch.ones_like(v))
    return _with_prefix(vals, weights, distinct, n, raw=raw, raw_sorted=vals)


def _compress_buckets(values: Tensor) -> _Compressed | None:
    """Distinct values of every row without sorting, when they are few and well apart.

    Each row's range is cut into ``BUCKETS`` equal buckets. If no bucket holds values that
    differ by more than ``SAME_VALUE_RTOL`` of the row's range, the occupied buckets are the
    distinct values; otherwise (continuous data) this returns None.
    """
    g, n = values.shape
    work = work_dtype(values.device)
    x = values.detach().to(work)
    lo = x.amin(dim=1, keepdim=True)
    span = x.amax(dim=1, keepdim=True) - lo
    scale = torch.where(span > 0, BUCKETS / torch.where(span > 0, span, 1.0), 0.0)
    bucket = ((x - lo) * scale).long().clamp_(max=BUCKETS - 1)
    y = x - lo  # in [0, span]: keeps the variance test below well conditioned
    counts = x.new_zeros(g, BUCKETS).scatter_add_(1, bucket, torch.ones_like(x))
    sums = x.new_zeros(g, BUCKETS).scatter_add_(1, bucket, y)
    squares = x.new_zeros(g, BUCKETS).scatter_add_(1, bucket, y * y)
    occupied = counts > 0
    safe = torch.where(occupied, counts, 1.0)
    spread = squares - sums * sums / safe  # count * variance of each bucket
    if bool((spread > counts * (SAME_VALUE_RTOL * span) ** 2).any()):
        return None
    slot = occupied.cumsum(1) - 1  # position of every occupied bucket
    distinct = slot[:, -1] + 1
    m = int(distinct.max())
    slot = torch.where(occupied, slot, m)  # empty buckets go to an extra column, dropped
    means = sums / safe + lo
    vals = (lo + span).expand(g, m + 1).clone().scatter_(1, slot, means)[:, :m]
    weights = counts.new_zeros(g, m + 1).scatter_(1, slot, counts)[:, :m]
    return _with_prefix(vals, weights, distinct, n, bucket=bucket, slot=slot)


def _compress(values: Tensor) -> _Compressed:
    rows = _compress_buckets(values)
    return rows if rows is not None else _compress_sorted(values)


def _entry_labels(rows: _Compressed, bounds: Tensor) -> Tensor:
    """Ascending cluster of every original entry (G, N) from split boundaries (G, K+1)."""
    inner = bounds[:, 1:-1]
    if rows.slot is not None and rows.bucket is not None:
        # cluster of every bucket, then of every entry through its bucket
        table = (rows.slot[:, :, None] >= inner[:, None, :]).sum(dim=2)
        return table.gather(1, rows.bucket)
    assert rows.raw is not None and rows.raw_sorted is not None
    m = rows.raw_sorted.shape[1]
    # smallest value of every cluster but the first; +inf for the unused ones
    first = rows.raw_sorted.gather(1, inner.clamp(max=m - 1))
    first = torch.where(inner < rows.distinct[:, None], first, float("inf"))
    labels = torch.zeros_like(rows.raw, dtype=torch.int64)
    for j in range(first.shape[1]):  # k - 1 boundaries, not rows
        labels += rows.raw >= first[:, j : j + 1]
    return labels


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
    q = rows.prefix_q.gather(1, cand)
    # cost[row, end, start]: squared deviations of the segment [start, end); +inf if empty
    dw = w[:, :, None] - w[:, None, :]
    ds = s[:, :, None] - s[:, None, :]
    cost = q[:, :, None] - q[:, None, :] - ds * ds / dw
    cost = torch.where(dw > 0, cost, float("inf"))
    k_max = max(ks)
    # best[j][row, end]: least cost of j+1 segments covering [0, end)
    best = [cost[:, :, 0]]
    for _ in range(2, k_max):  # a handful of k, not rows
        best.append((best[-1][:, None, :] + cost).amin(dim=2))
    m = rows.values.shape[1]
    out = cand.new_full((g, len(ks), k_max + 1), m)
    out[:, :, 0] = 0
    last = cost[:, -1, :]  # segments ending at M
    for i, k in enumerate(ks):
        end = None
        for j in range(k, 1, -1):  # walk back from the last segment: argmins of small vectors
            tail = last if end is None else cost.gather(1, end[:, :, None].expand(g, 1, c1)).squeeze(1)
            end = (best[j - 2] + tail).argmin(dim=1, keepdim=True)
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
    top = rows.distinct.view(g, 1, 1).expand_as(inner)
    for _ in range(max_iter):
        full = torch.cat([first, inner, last], dim=2)
        w = _gather_rows(rows.prefix_w, full).diff(dim=2)
        s = _gather_rows(rows.prefix_s, full).diff(dim=2)
        cent = torch.where((w > 0) & ~unused, s / w, float("inf"))
        cent = cent.sort(dim=2).values  # an emptied cluster (+inf) goes last
        mids = (cent[:, :, :-1] + cent[:, :, 1:]) * 0.5
        # a value exactly halfway goes to the lower cluster, as an argmin over distances does
        new_inner = torch.searchsorted(rows.values, mids.view(g, -1), right=True).view(g, nk, k1 - 2)
        new_inner = torch.minimum(new_inner, top)
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
    # coarse: groups of consecutive distinct values, then Lloyd on the full row
    edges = torch.arange(COARSE_BINS + 1, device=rows.values.device, dtype=torch.float64)
    cand = torch.floor(edges[None, :] * rows.distinct[:, None].to(torch.float64) / COARSE_BINS).long()
    cand[:, -1] = m  # the padding belongs to the last group
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
    size = st.counts.gather(2, lab)
    a = intra / (size - 1).clamp(min=1)
    b = torch.minimum(x - lower.gather(2, lab), upper.gather(2, lab) - x)
    denom = torch.maximum(a, b)
    ok = (size > 1) & (denom > 0) & torch.isfinite(b)
    s = torch.where(ok, (b - a) / torch.where(ok, denom, 1.0), 0.0)
    sil = (s * rows.weights[:, None, :]).sum(dim=2) / rows.n
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
    with torch.no_grad():
        rows = _compress(values)
        ks = (k,)
        st = _split_stats(rows, _best_bounds(rows, ks, max_iter), ks)
        labels = _entry_labels(rows, st.bounds[:, 0, :])
    return KMeans1D(
        labels=labels,
        centroids=st.means[:, 0, :k] + rows.shift,
        counts=st.counts[:, 0, :k].round().long(),
        inertia=st.inertia[:, 0],
        valid=st.valid[:, 0],
    )


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
        g = rows.values.shape[0]
        st = _split_stats(rows, _best_bounds(rows, ks, max_iter), ks)
        sil = _silhouettes(rows, st)  # (G, nk)
        best = sil.argmax(dim=1, keepdim=True)  # first maximum: the smaller k on ties
        best_sil = sil.gather(1, best).squeeze(1)
        any_valid = torch.isfinite(best_sil)
        k_col = torch.tensor(ks, device=values.device)[best.squeeze(1)]
        bounds = st.bounds.gather(1, best[:, :, None].expand(g, 1, st.bounds.shape[2])).squeeze(1)
        ascending = _entry_labels(rows, bounds)
        levels = torch.where(any_valid[:, None], k_col[:, None] - 1 - ascending, 0)
        k_out = torch.where(any_valid, k_col, 1)
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
