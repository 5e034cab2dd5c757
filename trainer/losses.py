"""The ladder-loss family for visual-semantic embeddings, and the InfoNCE baseline.

Every loss takes L2-normalised image and text features of a batch of B matching pairs
(image i goes with text i) and, where it needs one, the (B, B) relevance matrix R with
R[i, j] in [0, 1] the relevance degree between image i and text j (R[i, i] is the ground truth).
S = image @ text.T. Rows of S are image->text queries, columns are text->image queries.

* :class:`TripletLoss`: VSE++ (Faghri et al., BMVC 2018), hardest negative, both directions.
* :class:`LadderLoss`: Zhou et al., "Ladder Loss for Coherent Visual-Semantic Embedding",
  AAAI 2020: the triplet term plus one hard-contrastive hinge per relevance threshold.
* :class:`AdaptiveLadderLoss`: Zhou et al., IEEE TMM 2023: the levels come from clustering each
  query's relevance degrees (:mod:`trainer.levels`) instead of fixed thresholds.
* :class:`InfoNCELoss`: the symmetric cross-entropy of CLIP.
* :class:`MultiPositiveInfoNCELoss`, :class:`MultiPositiveTripletLoss`: InfoNCE and the
  triplet for batches where a query may have several positives (given as a (B, B) mask).

All ladder variants share one formulation. Each query q puts every candidate j on a level:
level 0 is the ground truth j = q alone, levels 1, 2, ... hold less and less relevant
candidates. For every boundary l = 0, 1, ... the hinge

    [margin_l - min_{j: level(j) <= l} S[q, j] + max_{j: level(j) > l} S[q, j]]_+

asks every candidate at or above the boundary to beat every candidate below it by margin_l,
and is weighted by beta_l. Boundary 0 is exactly the VSE++ hardest-negative triplet term. A
boundary with nothing below it contributes nothing (the reference implementation adds a
spurious constant there). The worst and best candidates of every level come from one
scatter over the levels and a cumulative min/max across levels, so the cost hardly grows with
the number of levels, and the gradient only touches the two candidates of each hinge. (They are
located on scores rounded to float32, ties going to the lower index; the hinge itself is
computed in the scores' own dtype.)

Reduction: "sum" (default) sums the hinges over the queries of both directions, as the
VSE++ and ladder-loss references do, so the loss grows with the batch size and the learning
rate is tuned for it; "mean" divides that sum by B (the mean over pairs of the image->text plus
the text->image hinge).

Every ``forward`` returns a dict: "loss" is the total, the other tensors are its parts
(already weighted, they sum to "loss"), except names starting with "stat_", which are detached
diagnostics.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.levels import DEFAULT_MAX_ITER, LevelSettings

logger = logging.getLogger(__name__)

Reduction = Literal["sum", "mean"]

__all__ = [
    "AdaptiveLadderLoss",
    "InfoNCELoss",
    "LadderLoss",
    "MultiPositiveInfoNCELoss",
    "MultiPositiveTripletLoss",
    "SoftInfoNCELoss",
    "TripletLoss",
    "boundary_stats",
    "ladder_hinges",
    "levels_given",
    "multi_positive_nce",
]


# ---------------------------------------------------------------------------------------------
# validation


def _check_reduction(reduction: str) -> Reduction:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def _check_non_negative(name: str, values: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out:
        raise ValueError(f"{name} must not be empty")
    for v in out:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and non-negative, got {out}")
    return out


def _check_features(image_features: Tensor, text_features: Tensor) -> int:
    if image_features.ndim != 2 or text_features.ndim != 2:
        raise ValueError(
            "image_features and text_features must be (batch, dim) matrices, got shapes "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape != text_features.shape:
        raise ValueError(
            "image_features and text_features must have the same shape (one text per image), got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape[0] == 0:
        raise ValueError("the batch is empty")
    return image_features.shape[0]


def _check_relevance(relevance: Tensor | None, batch: int, *, required: bool) -> None:
    if relevance is None:
        if required:
            raise ValueError("this loss needs the (batch, batch) relevance matrix")
        return
    if relevance.shape != (batch, batch):
        raise ValueError(
            f"relevance must be a ({batch}, {batch}) matrix for a batch of {batch} pairs, got shape "
            f"{tuple(relevance.shape)}"
        )
    if not bool(((relevance >= 0) & (relevance <= 1)).all()):
        raise ValueError("relevance degrees must lie in [0, 1] (and not be NaN)")


def _similarity(image_features: Tensor, text_features: Tensor) -> Tensor:
    return image_features @ text_features.T


# ---------------------------------------------------------------------------------------------
# the shared ladder formulation


def _order_keys(scores: Tensor) -> Tensor:
    """int64 keys ordered as (score, candidate index): float32 score bits high, index low.

    The float32 bit pattern, with the lower 31 bits flipped for negative numbers, orders as the
    numbers do; the candidate index in the low 32 bits breaks ties by the lower index.
    """
    bits = scores.detach().to(torch.float32).contiguous().view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    index = torch.arange(scores.shape[-1], device=scores.device, dtype=torch.int64)
    return (ordered.to(torch.int64) << 32) | index


def ladder_hinges(scores: Tensor, levels: Tensor, margins: Tensor) -> Tensor:
    """Hard-contrastive hinges of every query at every level boundary.

    Args:
        scores: (..., Q, N) similarities of Q queries with N candidates.
        levels: (..., Q, N) int64 level of each candidate for its query, 0 = most relevant,
            values in [0, L] with L = len(margins).
        margins: (L,) margin of each boundary l = 0 .. L-1 (between level l and level l+1).

    Returns:
        (..., Q, L) tensor: [margin_l - min_{level <= l} S + max_{level > l} S]_+, zero where a
        query has nothing above or nothing below boundary l.

    The worst candidate above and the best below every boundary are located without gradient,
    in one pass: the per-level minimum and maximum of (score, index) keys (scores rounded to
    float32 for this, ties broken by the lower index), then a cumulative min / max across
    levels. The hinge then reads those scores with ``gather``, so the gradient is sparse: two
    entries per query and boundary.
    """
    n_boundaries = margins.shape[0]
    shape = (*scores.shape[:-1], n_boundaries + 1)
    with torch.no_grad():
        keys = _order_keys(scores)
        top = torch.iinfo(torch.int64).max
        bottom = torch.iinfo(torch.int64).min
        level_min = torch.full(shape, top, device=scores.device).scatter_reduce_(-1, levels, keys, "amin")
        level_max = torch.full(shape, bottom, device=scores.device).scatter_reduce_(-1, levels, keys, "amax")
        worst_above = torch.cummin(level_min, dim=-1).values[..., :-1]  # over levels <= l
        best_below = torch.cummax(level_max.flip(-1), dim=-1).values.flip(-1)[..., 1:]  # levels > l
        both_sides = (worst_above != top) & (best_below != bottom)
        low_bits = 0xFFFFFFFF
        above_index = torch.where(both_sides, worst_above & low_bits, 0)
        below_index = torch.where(both_sides, best_below & low_bits, 0)
    violation = margins - scores.gather(-1, above_index) + scores.gather(-1, below_index)
    return F.relu(violation) * both_sides


class _LadderBase(nn.Module):
    """Shared forward of the ladder losses: subclasses supply the levels of each query."""

    margins: Tensor
    betas: Tensor

    def __init__(self, margins: Sequence[float], betas: Sequence[float], reduction: str) -> None:
        super().__init__()
        margins_t = _check_non_negative("margins", margins)
        betas_t = _check_non_negative("betas", betas)
        if len(betas_t) != len(margins_t):
            raise ValueError(
                f"need one beta per margin (one per level boundary): got {len(margins_t)} margins "
                f"{margins_t} and {len(betas_t)} betas {betas_t}"
            )
        self.reduction: Reduction = _check_reduction(reduction)
        self.register_buffer("margins", torch.tensor(margins_t), persistent=False)
        self.register_buffer("betas", torch.tensor(betas_t), persistent=False)

    def _term_names(self) -> list[str]:
        return ["triplet"] + [f"ladder_{level}" for level in range(1, self.margins.shape[0])]

    def _ladder(self, scores: Tensor, levels: Tensor) -> dict[str, Tensor]:
        both = torch.stack([scores, scores.T])
        margins = self.margins.to(scores.dtype)
        hinges = ladder_hinges(both, levels, margins)  # (2, B, L)
        per_boundary = hinges.sum(dim=(0, 1))
        if self.reduction == "mean":
            per_boundary = per_boundary / scores.shape[0]
        weighted = per_boundary * self.betas.to(scores.dtype)
        out = {"loss": weighted.sum()}
        for name, value in zip(self._term_names(), weighted.unbind(0), strict=True):
            out[name] = value
        out.update(boundary_stats(hinges, levels, margins))
        return out


def boundary_stats(hinges: Tensor, levels: Tensor, margins: Tensor) -> dict[str, Tensor]:
    """Collapse monitor of a ladder: per boundary l, the share of queries whose hinge is active
    ("stat_active_l": the margin is violated) among those with candidates on both sides, and
    the mean violation of those ("stat_violation_l", 0 when none is active).

    A boundary that stays fully active with a violation near its margin is not being learned:
    its levels are near-ties the embedding cannot separate (or they squash the scores together).
    """
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        present = torch.stack(
            [(levels <= b).any(dim=-1) & (levels > b).any(dim=-1) for b in range(margins.shape[0])], dim=-1
        )
        active = (hinges > 0) & present
        for b in range(margins.shape[0]):
            n_present = present[..., b].sum()
            n_active = active[..., b].sum()
            out[f"stat_active_{b}"] = (n_active / n_present.clamp(min=1)).to(torch.float32)
            out[f"stat_violation_{b}"] = (hinges[..., b].sum() / n_active.clamp(min=1)).to(torch.float32)
    return out


def _eye_levels(batch: int, device: torch.device) -> Tensor:
    """Level 0 on the diagonal (ground truth), 1 everywhere else, for both directions."""
    off = 1 - torch.eye(batch, dtype=torch.int64, device=device)
    return off.expand(2, batch, batch).contiguous()


# ---------------------------------------------------------------------------------------------
# losses


class TripletLoss(_LadderBase):
    """VSE++ hinge triplet loss, both directions.

    With ``max_violation`` (VSE++), each query is hinged against its hardest negative:
    [margin - S[q, q] + max_{j != q} S[q, j]]_+. Without it (the VSE0 "sum of hinges"), against
    every negative. The relevance matrix is not used (it may be None).

    Returns "loss", "i2t" (rows) and "t2i" (columns).
    """

    def __init__(self, margin: float = 0.2, max_violation: bool = True, reduction: str = "sum") -> None:
        super().__init__(margins=(margin,), betas=(1.0,), reduction=reduction)
        self.max_violation = bool(max_violation)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        relevance: Tensor | None = None,
        logit_scale: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_relevance(relevance, batch, required=False)
        scores = _similarity(image_features, text_features)
        both = torch.stack([scores, scores.T])
        margin = self.margins.to(scores.dtype)
        if self.max_violation:
            per_query = ladder_hinges(both, _eye_levels(batch, scores.device), margin).sum(-1)
        else:
            diag = scores.diagonal()
            eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
            costs = F.relu(margin + both - diag[None, :, None]).masked_fill(eye, 0.0)
            per_query = costs.sum(-1)
        per_direction = per_query.sum(-1)
        if self.reduction == "mean":
            per_direction = per_direction / batch
        i2t, t2i = per_direction.unbind(0)
        return {"loss": i2t + t2i, "i2t": i2t, "t2i": t2i}


class LadderLoss(_LadderBase):
    """Ladder loss with fixed relevance thresholds (Zhou et al., AAAI 2020).

    With thresholds theta_1 > ... > theta_{L-1}, candidate j of query q sits on level 0 if it is
    the ground truth (j = q, whatever R says), else on level 1 + #{l : R[q, j] < theta_l}. So
    boundary l >= 1 hinges {j : R[q, j] >= theta_l} (ground truth included) against
    {j : R[q, j] < theta_l}. Boundary 0 is the triplet term. Columns (text->image) use the
    columns of R.

    Args:
        thresholds: strictly descending, each in (0, 1]; may be empty (then this is
            :class:`TripletLoss`).
        margins: one per boundary, len(thresholds) + 1; margins[0] is the triplet margin.
        betas: weight of each boundary, len(thresholds) + 1; betas[0] weighs the triplet term.
        reduction: "sum" (the reference) or "mean" over the batch.

    Returns "loss", "triplet", "ladder_1" .. "ladder_{L-1}" (weighted).
    """

    thresholds: Tensor

    def __init__(
        self,
        thresholds: Sequence[float] = (0.63,),
        margins: Sequence[float] = (0.2, 0.01),
        betas: Sequence[float] = (1.0, 0.25),
        reduction: str = "sum",
    ) -> None:
        super().__init__(margins=margins, betas=betas, reduction=reduction)
        thr = tuple(float(t) for t in thresholds)
        for t in thr:
            if not (0.0 < t <= 1.0):
                raise ValueError(f"thresholds must lie in (0, 1], got {thr}")
        if any(a <= b for a, b in itertools.pairwise(thr)):
            raise ValueError(f"thresholds must be strictly descending, got {thr}")
        if len(self.margins) != len(thr) + 1:
            raise ValueError(
                f"need len(thresholds) + 1 margins (the triplet margin first): got {len(thr)} "
                f"thresholds {thr} and {len(self.margins)} margins {tuple(self.margins.tolist())}"
            )
        self.register_buffer("thresholds", torch.tensor(thr, dtype=torch.float64), persistent=False)

    def levels(self, relevance: Tensor) -> Tensor:
        """(B, B) int64 level of every candidate for the row queries of ``relevance``."""
        thr = self.thresholds.to(relevance.dtype if relevance.is_floating_point() else torch.float64)
        below = (relevance.unsqueeze(-1) < thr).sum(-1) if thr.numel() else torch.zeros_like(relevance)
        return (below.to(torch.int64) + 1).fill_diagonal_(0)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        relevance: Tensor | None,
        logit_scale: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_relevance(relevance, batch, required=bool(self.thresholds.numel()))
        if relevance is None:
            levels = _eye_levels(batch, image_features.device)
        else:
            rows = self.levels(relevance)
            levels = torch.stack([rows, rows.T])
        return self._ladder(_similarity(image_features, text_features), levels)


class AdaptiveLadderLoss(_LadderBase):
    """Adaptive ladder loss (Zhou et al., IEEE TMM 2023).

    For each query (each row of R for image->text, each column for text->image) the relevance
    degrees of its B-1 candidates other than the ground truth are clustered in 1-D by k-means
    for every k in [k_min, k_max]; the k with the best silhouette wins (:func:`trainer.levels.
    adaptive_levels`). The ground truth is level 0 alone, the clusters are levels 1..k by
    descending mean. Boundary l hinges levels <= l against levels > l with margins[l] and
    weight betas[l]; boundary 0 is the triplet term. A query whose candidates cannot be split
    (fewer than 2 distinct values, or too few candidates) only gets the triplet term.

    The clustering runs batched (no loop over queries), without gradient: with numpy when R is
    on the CPU, on R's device otherwise. It depends on R only and costs more than the rest of
    the loss on a CPU (see ``benchmarks/bench_losses.py``), so a data pipeline may compute it
    ahead, in its workers, with :attr:`level_settings` (or :meth:`levels`), and pass the result
    as ``levels=`` to forward, or through :func:`levels_given` when the loss sits inside another
    module: the step then costs what the fixed ladder costs.

    Args:
        margins: one per boundary, k_max of them; margins[0] is the triplet margin.
        betas: one per boundary, k_max of them; betas[0] weighs the triplet term.
        k_min, k_max: range of cluster counts, 2 <= k_min <= k_max.
        max_iter: cap on the Lloyd iterations of each k-means.
        reduction: "sum" (the reference) or "mean" over the batch.
        include_ground_truth: cluster the ground truth with the other candidates, as the reference
            code does (level 0 is then its whole cluster); by default it is level 0 alone.

    Returns "loss", "triplet", "ladder_1" .. "ladder_{k_max-1}" (weighted) and the diagnostic
    "stat_mean_k" (mean number of clusters chosen per query).
    """

    def __init__(
        self,
        margins: Sequence[float] = (0.2, 0.01, 0.01, 0.01),
        betas: Sequence[float] = (1.0, 1 / 4, 1 / 8, 1 / 16),
        k_min: int = 2,
        k_max: int = 4,
        max_iter: int = DEFAULT_MAX_ITER,
        reduction: str = "sum",
        include_ground_truth: bool = False,
    ) -> None:
        super().__init__(margins=margins, betas=betas, reduction=reduction)
        self.include_ground_truth = bool(include_ground_truth)
        if int(k_min) != k_min or int(k_max) != k_max:
            raise ValueError(f"k_min and k_max must be integers, got {k_min} and {k_max}")
        if k_min < 2:
            raise ValueError(f"k_min must be at least 2 (a silhouette compares two clusters), got {k_min}")
        if k_max < k_min:
            raise ValueError(f"the range of cluster counts is empty: k_min={k_min} > k_max={k_max}")
        if len(self.margins) != k_max:
            raise ValueError(
                f"need k_max = {k_max} margins and betas (the triplet boundary plus k_max - 1 ladder "
                f"boundaries), got {len(self.margins)}"
            )
        if max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {max_iter}")
        self.k_min = int(k_min)
        self.k_max = int(k_max)
        self.max_iter = int(max_iter)
        self._given: tuple[Tensor, Tensor] | None = None

    @property
    def level_settings(self) -> LevelSettings:
        """How this loss computes levels: call it on a relevance matrix to compute them ahead."""
        return LevelSettings(self.k_min, self.k_max, self.max_iter, self.include_ground_truth)

    def levels(self, relevance: Tensor) -> Tensor:
        """(2, B, B) int64 levels: [0][q, j] for image query q, [1][t, i] for text query t.

        Level 0 is the diagonal (ground truth); others are 1 + the adaptive cluster level
        (:func:`trainer.levels.ladder_levels`).
        """
        return self.level_settings(relevance)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        relevance: Tensor | None,
        logit_scale: Tensor | float | None = None,
        levels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        if levels is None and self._given is not None and self._given[0] is relevance:
            levels = self._given[1]
        _check_relevance(relevance, batch, required=levels is None)
        if levels is None:
            assert relevance is not None  # checked above
            levels = self.levels(relevance)
        elif levels.shape != (2, batch, batch):
            raise ValueError(f"levels must have shape (2, {batch}, {batch}), got {tuple(levels.shape)}")
        out = self._ladder(_similarity(image_features, text_features), levels.to(image_features.device))
        with torch.no_grad():
            out["stat_mean_k"] = levels.amax(dim=-1).to(torch.float32).mean()
        return out


@contextlib.contextmanager
def levels_given(
    module: nn.Module, relevance: Tensor, levels: Tensor | None, settings: LevelSettings | None
) -> Iterator[None]:
    """Within the block, the adaptive ladder losses in ``module`` take ``levels`` for ``relevance``.

    For levels computed ahead (e.g. by a data pipeline, with ``settings``) when the loss is called
    by another module (a weighted sum of losses) that does not pass them on. Only the
    :class:`AdaptiveLadderLoss` modules whose :attr:`~AdaptiveLadderLoss.level_settings` are
    ``settings`` use them, and only when called with this very ``relevance`` tensor; the others
    compute their own. With ``levels`` None this does nothing.
    """
    targets = []
    if levels is not None:
        targets = [
            m for m in module.modules() if isinstance(m, AdaptiveLadderLoss) and m.level_settings == settings
        ]
    for loss in targets:
        loss._given = (relevance, levels)
    try:
        yield
    finally:
        for loss in targets:
            loss._given = None


class SoftInfoNCELoss(nn.Module):
    """Symmetric InfoNCE with soft targets: each query's target distribution over the batch is
    ``softmax(R[q] / tau)`` instead of the one-hot diagonal.

    The graded baseline for the ladder family: like the ladder it asks more relevant candidates to
    score higher than less relevant ones, but through a likelihood rather than hinges. ``tau``
    sets how much probability near misses get (a candidate ``d`` less relevant than the ground
    truth gets ``exp(-d / tau)`` times its mass); small ``tau`` is plain InfoNCE.
    ``logit_scale`` is read as in :class:`InfoNCELoss`.

    Returns "loss", "i2t" and "t2i".
    """

    def __init__(self, tau: float = 0.1, temperature: float = 0.07) -> None:
        super().__init__()
        for name, value in (("tau", tau), ("temperature", temperature)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
        self.tau = float(tau)
        self.temperature = float(temperature)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        relevance: Tensor | None,
        logit_scale: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_relevance(relevance, batch, required=True)
        assert relevance is not None  # checked above
        scale = 1.0 / self.temperature if logit_scale is None else logit_scale
        logits = scale * _similarity(image_features, text_features)
        r = relevance.to(device=logits.device, dtype=logits.dtype)
        i2t = F.cross_entropy(logits, F.softmax(r / self.tau, dim=1))
        t2i = F.cross_entropy(logits.T, F.softmax(r.T / self.tau, dim=1))
        return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (CLIP) loss: mean of the image->text and text->image cross-entropies.

    ``logit_scale`` in forward is the multiplier of the similarities, already exponentiated as
    open_clip's models return it (``model(...)["logit_scale"]``, i.e. ``exp(t)`` of the learned
    parameter t). When it is None, 1 / ``temperature`` is used. The relevance matrix is not used
    (it may be None): the positives are the pairs on the diagonal.

    Returns "loss", "i2t" and "t2i" (the two cross-entropies; loss is their mean).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        relevance: Tensor | None = None,
        logit_scale: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_relevance(relevance, batch, required=False)
        scale = 1.0 / self.temperature if logit_scale is None else logit_scale
        logits = scale * _similarity(image_features, text_features)
        labels = torch.arange(batch, device=logits.device)
        i2t = F.cross_entropy(logits, labels)
        t2i = F.cross_entropy(logits.T, labels)
        return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}


# ---------------------------------------------------------------------------------------------
# several positives per query


def multi_positive_nce(logits: Tensor, positives: Tensor) -> Tensor:
    """Mean over rows of ``-log(sum_pos softmax)``: InfoNCE where a row may have several positives.

    ``logits`` (Q, N); ``positives`` (Q, N) bool, at least one per row.
    """
    everything = torch.logsumexp(logits, dim=1)
    wanted = torch.logsumexp(logits.masked_fill(~positives, -torch.inf), dim=1)
    return (everything - wanted).mean()


def _check_positives(positives: Tensor, batch: int) -> None:
    if positives.shape != (batch, batch) or positives.dtype != torch.bool:
        raise ValueError(
            f"positives must be a ({batch}, {batch}) bool matrix for a batch of {batch} pairs, got "
            f"{positives.dtype} of shape {tuple(positives.shape)}"
        )


class MultiPositiveInfoNCELoss(nn.Module):
    """Symmetric InfoNCE where a query may have several positives.

    ``positives[i, j]`` says that text j describes image i fully (the diagonal always does): a
    one-tag caption ("lisbon") describes every photo carrying that tag. Each query's loss is
    ``-log(sum_pos exp(s / T) / sum_all exp(s / T))``, both directions averaged; with the diagonal
    as the only positives it is :class:`InfoNCELoss` at the same temperature.

    Returns "loss", "i2t" and "t2i" (the two directions; loss is their mean).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, image_features: Tensor, text_features: Tensor, positives: Tensor) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_positives(positives, batch)
        logits = _similarity(image_features, text_features) / self.temperature
        i2t = multi_positive_nce(logits, positives)
        t2i = multi_positive_nce(logits.T, positives.T)
        return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}


class MultiPositiveTripletLoss(nn.Module):
    """The hardest-negative triplet (VSE++) where a query may have several positives.

    Each query is hinged between its *worst* positive and its best negative,
    ``[margin - min_pos S + max_neg S]_+`` (:func:`ladder_hinges` with the positives on level 0 and
    the rest on level 1), in both directions; the sum is divided by the batch size (the "mean"
    reduction of :class:`TripletLoss`). ``positives`` is as in :class:`MultiPositiveInfoNCELoss`.

    Returns "loss", "i2t" and "t2i" (the two directions; loss is their sum).
    """

    margins: Tensor

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.register_buffer(
            "margins", torch.tensor(_check_non_negative("margin", (margin,))), persistent=False
        )

    def forward(self, image_features: Tensor, text_features: Tensor, positives: Tensor) -> dict[str, Tensor]:
        batch = _check_features(image_features, text_features)
        _check_positives(positives, batch)
        scores = _similarity(image_features, text_features)
        levels = torch.stack([(~positives).long(), (~positives.T).long()])
        hinges = ladder_hinges(torch.stack([scores, scores.T]), levels, self.margins.to(scores.dtype))
        with torch.no_grad():
            i2t, t2i = hinges.sum(dim=(1, 2)) / batch
        return {"loss": hinges.sum() / batch, "i2t": i2t, "t2i": t2i}
