"""Retrieval metrics: Recall@K, ranks, Coherent Score (CS@K, Kendall tau-b) and nDCG@K.

Conventions: ``sim`` is a (Q, N) matrix of scores of Q queries against N candidates, higher
is better. ``relevance`` is (Q, N) graded relevance in [0, 1]. The ground truth of a query is
given either as one candidate index per query, an int array (Q,), or as a boolean (Q, N) mask
when a query has several (an image with several captions). Inputs may be numpy arrays or
torch tensors (any device); everything is computed with numpy in float64.

Ties between scores never earn credit: a ground truth tied with a non-ground-truth candidate
counts as ranked below it, and the top-K of a query is taken by descending score with ties
broken by the lower candidate index.

Coherent Score (Zhou et al., AAAI 2020): for every query, Kendall's tau-b between the model's
scores of its top-K candidates and their relevance degrees, averaged over queries. It is in
[-1, 1], about 0 for a random model. tau-b is undefined for a query whose top-K scores are all
equal or whose top-K relevance degrees are all equal (say, all 0); such queries are left out of
the mean (scipy's ``kendalltau`` returns NaN for them). When relevance has ties, even a perfect
ranking scores below 1: :func:`coherent_ceiling` gives that ceiling so the number can be read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "coherent_ceiling",
    "coherent_score",
    "kendall_tau_b",
    "mean_rank",
    "median_rank",
    "ndcg_at_k",
    "per_query_coherence",
    "ranks",
    "recall_at_k",
    "retrieval_report",
]


def _as_array(x: Any, dtype: type = np.float64) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _as_matrix(name: str, x: Any) -> np.ndarray:
    arr = _as_array(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (queries, candidates) matrix, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _pair(sim: Any, relevance: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _as_matrix("sim", sim)
    r = _as_matrix("relevance", relevance)
    if s.shape != r.shape:
        raise ValueError(f"sim and relevance must have the same shape, got {s.shape} and {r.shape}")
    return s, r


def _gt_mask(gt: Any, shape: tuple[int, int]) -> np.ndarray:
    q, n = shape
    if hasattr(gt, "detach"):
        gt = gt.detach().cpu().numpy()
    gt = np.asarray(gt)
    if gt.dtype == bool:
        if gt.shape != shape:
            raise ValueError(f"a ground-truth mask must have the shape of sim {shape}, got {gt.shape}")
        mask = gt
    else:
        if gt.shape != (q,):
            raise ValueError(f"need one ground-truth index per query ({q}), got shape {gt.shape}")
        if not np.issubdtype(gt.dtype, np.integer):
            raise ValueError(f"ground-truth indices must be integers, got dtype {gt.dtype}")
        if gt.size and (gt.min() < 0 or gt.max() >= n):
            raise ValueError(f"ground-truth indices must lie in [0, {n}), got [{gt.min()}, {gt.max()}]")
        mask = np.zeros(shape, dtype=bool)
        mask[np.arange(q), gt] = True
    if not mask.any(axis=1).all():
        raise ValueError("every query needs at least one ground-truth candidate")
    return mask


def _top_k(sim: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) candidate indices by descending score, ties broken by the lower index."""
    q, n = sim.shape
    k = min(k, n)
    if k == n:
        return np.argsort(-sim, axis=1, kind="stable")
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]  # the k-th largest score
    above = sim > kth
    at = sim == kth
    # all candidates above the k-th score, then the lowest-index ones tied with it
    chosen = above | (at & (np.cumsum(at, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    idx = np.nonzero(chosen)[1].reshape(q, k)  # ascending index within each row
    order = np.argsort(-np.take_along_axis(sim, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


# ---------------------------------------------------------------------------------------------
# recall and ranks


def ranks(sim: Any, gt: Any) -> np.ndarray:
    """1-based rank of the best-placed ground truth of every query (Q,).

    rank = 1 + number of non-ground-truth candidates scoring at least as high as the best
    ground truth (ties count against the model).
    """
    s = _as_matrix("sim", sim)
    mask = _gt_mask(gt, s.shape)
    best_gt = np.where(mask, s, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((s >= best_gt) & ~mask).sum(axis=1)


def recall_at_k(sim: Any, gt: Any, ks: Iterable[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries with a ground truth in their top K, for each K: {K: recall}."""
    r = ranks(sim, gt)
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be at least 1, got {k}")
        out[int(k)] = float((r <= k).mean())
    return out


def mean_rank(sim: Any, gt: Any) -> float:
    """Mean over queries of the 1-based rank of the best-placed ground truth."""
    return float(ranks(sim, gt).mean())


def median_rank(sim: Any, gt: Any) -> float:
    """Median over queries of the 1-based rank of the best-placed ground truth."""
    return float(np.median(ranks(sim, gt)))


# ---------------------------------------------------------------------------------------------
# Kendall tau-b and the coherent score


def _tied_pairs(sorted_rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Pairs within runs of equal neighbours: sum of t (t - 1) / 2 over runs, per row.

    ``starts`` (R, K) is True where a new run begins (column 0 always True).
    """
    rows, k = sorted_rows.shape
    run = np.cumsum(starts, axis=1) - 1 + (np.arange(rows) * k)[:, None]
    t = np.bincount(run.ravel(), minlength=rows * k).reshape(rows, k).astype(np.int64)
    return (t * (t - 1) // 2).sum(axis=1)


def _inversions(r: np.ndarray) -> np.ndarray:
    """Pairs i < j with r[i] > r[j] in every row of non-negative ints (R, K) -> (R,).

    Bottom-up merge sort: at width w each left block and right block are sorted, so the
    inversions between them are counted with one global ``searchsorted`` (block ids are added
    to the values to keep every block in its own range), then the blocks are merged by a sort.
    O(R K log^2 K).
    """
    rows, k = r.shape
    width = 1 << max(k - 1, 0).bit_length()
    big = int(r.max()) + 1 if r.size else 1  # padding value, above every entry: no inversions
    a = np.full((rows, width), big, dtype=np.int64)
    a[:, :k] = r
    inv = np.zeros(rows, dtype=np.int64)
    w = 1
    while w < width:
        nb = width // (2 * w)
        blocks = a.reshape(rows, nb, 2, w)
        block = np.arange(rows * nb, dtype=np.int64).reshape(rows, nb, 1)
        left = (blocks[:, :, 0, :] + block * (big + 1)).ravel()
        right = (blocks[:, :, 1, :] + block * (big + 1)).ravel()
        not_above = np.searchsorted(left, right, side="right").reshape(rows, nb, w) - block * w
        inv += (w - not_above).sum(axis=(1, 2))
        a = np.sort(a.reshape(rows, nb, 2 * w), axis=2).reshape(rows, width)
        w *= 2
    return inv


def kendall_tau_b(x: Any, y: Any) -> np.ndarray:
    """Kendall's tau-b of every row pair of x and y (R, K) -> (R,), NaN where undefined.

    tau_b = (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)), n0 = K (K-1) / 2,
    ties counted as pairs tied in x (resp. y), including pairs tied in both: the same as
    ``scipy.stats.kendalltau(x, y, variant='b')``. Undefined (NaN) when all of x or all of y
    are equal, or K < 2.

    Vectorised over rows in O(R K log^2 K) (Knight's method): order each row by (x, y); then
    concordant - discordant = n0 - ties_y - 2 * inversions_of_y - (ties_x - ties_xy).
    """
    xa = _as_array(x)
    ya = _as_array(y)
    if xa.shape != ya.shape or xa.ndim != 2:
        raise ValueError(f"x and y must be matching (rows, K) matrices, got {xa.shape} and {ya.shape}")
    rows, k = xa.shape
    out = np.full(rows, np.nan)
    if k < 2 or rows == 0:
        return out
    n0 = k * (k - 1) // 2
    order = np.lexsort((ya, xa), axis=1)
    xs = np.take_along_axis(xa, order, 1)
    ys = np.take_along_axis(ya, order, 1)
    first = np.ones((rows, 1), dtype=bool)
    new_x = np.concatenate([first, xs[:, 1:] != xs[:, :-1]], axis=1)
    new_xy = new_x | np.concatenate([first, ys[:, 1:] != ys[:, :-1]], axis=1)
    y_sorted = np.sort(ys, axis=1)
    new_y = np.concatenate([first, y_sorted[:, 1:] != y_sorted[:, :-1]], axis=1)
    tied_x = _tied_pairs(xs, new_x)
    tied_xy = _tied_pairs(xs, new_xy)
    tied_y = _tied_pairs(y_sorted, new_y)
    # dense ranks of y (equal values share one), then strict inversions in the (x, y) order
    dense = np.cumsum(new_y, axis=1) - 1
    rank = np.empty_like(dense)
    np.put_along_axis(rank, np.argsort(ys, axis=1, kind="stable"), dense, axis=1)
    s = n0 - tied_y - 2 * _inversions(rank) - (tied_x - tied_xy)
    denom = (n0 - tied_x).astype(np.float64) * (n0 - tied_y).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:] = np.where(denom > 0, s / np.sqrt(denom), np.nan)
    return out


def _check_k(k: int) -> int:
    if int(k) != k or k < 2:
        raise ValueError(f"K must be an integer of at least 2 (tau needs pairs), got {k}")
    return int(k)


def per_query_coherence(sim: Any, relevance: Any, k: int) -> np.ndarray:
    """tau-b of every query's top-K scores against their relevance (Q,), NaN where undefined."""
    s, r = _pair(sim, relevance)
    k = _check_k(k)
    top = _top_k(s, k)
    return kendall_tau_b(np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1))


def _nanmean(values: np.ndarray) -> float:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if defined.size else math.nan


def coherent_score(sim: Any, relevance: Any, k: int) -> float:
    """CS@K: mean over queries of tau-b(top-K scores, their relevance); NaN if none defined."""
    return _nanmean(per_query_coherence(sim, relevance, k))


def coherent_ceiling(sim: Any, relevance: Any, k: int) -> float:
    """CS@K of a perfect model: one that ranks by relevance, breaking ties arbitrarily.

    Its top K are the K most relevant candidates, scored without ties, so tau-b is
    sqrt((n0 - ties_in_relevance) / n0) whatever the tie-breaking. Depends on ``relevance``
    only; ``sim`` is taken so both functions are called alike (and its shape is checked).
    """
    s, r = _pair(sim, relevance)
    k = _check_k(k)
    del s
    top = _top_k(r, k)
    rel = np.take_along_axis(r, top, 1)
    perfect = np.broadcast_to(-np.arange(rel.shape[1], dtype=np.float64), rel.shape)
    return _nanmean(kendall_tau_b(perfect, rel))


# ---------------------------------------------------------------------------------------------
# nDCG


def ndcg_at_k(sim: Any, relevance: Any, k: int) -> float:
    """Mean nDCG@K with linear gains (the relevance degree) and log2(rank + 1) discounts.

    The ideal DCG sorts the query's relevance degrees; queries whose relevance is all 0 are
    left out (NaN if none is left).
    """
    s, r = _pair(sim, relevance)
    if int(k) != k or k < 1:
        raise ValueError(f"K must be a positive integer, got {k}")
    k = min(int(k), s.shape[1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.take_along_axis(r, _top_k(s, k), 1)
    ideal = -np.sort(-r, axis=1)[:, :k]
    dcg = gains @ discount
    idcg = ideal @ discount
    with np.errstate(invalid="ignore", divide="ignore"):
        per_query = np.where(idcg > 0, dcg / idcg, np.nan)
    return _nanmean(per_query)


# ---------------------------------------------------------------------------------------------
# the report


def retrieval_report(
    sim: Any,
    relevance: Any,
    gt_index: Any,
    *,
    ks: Iterable[int] = (1, 5, 10),
    cs_ks: Iterable[int] = (100, 1000),
    ndcg_ks: Iterable[int] = (10, 20),
) -> dict[str, float]:
    """Every metric of one retrieval direction: rows of ``sim`` are the queries.

    For the other direction call it again with ``sim.T``, ``relevance.T`` and the matching
    ground truth (a (N, Q) boolean mask when one candidate is the ground truth of several
    queries).

    Keys: "R@K" for K in ``ks``; "mean_rank", "median_rank"; for every K in ``cs_ks``
    (clamped to the number of candidates, so with 500 candidates CS@1000 is reported as
    CS@500): "CS@K", "CS@K_ceiling" and "CS@K_defined" (the fraction of queries where tau-b is
    defined); "nDCG@K" for K in ``ndcg_ks``; "queries" and "candidates".
    """
    s, r = _pair(sim, relevance)
    q, n = s.shape
    rank = ranks(s, gt_index)
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be at least 1, got {k}")
        out[f"R@{int(k)}"] = float((rank <= k).mean())
    out["mean_rank"] = float(rank.mean())
    out["median_rank"] = float(np.median(rank))
    for k in sorted({min(int(k), n) for k in cs_ks}):
        if k < 2:
            continue
        taus = per_query_coherence(s, r, k)
        out[f"CS@{k}"] = _nanmean(taus)
        out[f"CS@{k}_ceiling"] = coherent_ceiling(s, r, k)
        out[f"CS@{k}_defined"] = float(np.isfinite(taus).mean())
    for k in ndcg_ks:
        out[f"nDCG@{int(k)}"] = ndcg_at_k(s, r, k)
    out["queries"] = float(q)
    out["candidates"] = float(n)
    return out
