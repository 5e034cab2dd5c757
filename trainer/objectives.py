"""Training objectives named by short specs: one loss, or a weighted sum of several.

Spec grammar: ``TERM [+ TERM ...]`` where ``TERM`` is ``[WEIGHT*]NAME``, e.g. ``infonce``,
``adaptive`` or ``infonce+0.5*adaptive``. Names:

- ``triplet``: VSE++ hardest-negative triplet (the ladder with one level)
- ``infonce``: symmetric InfoNCE (the CLIP loss), uses the model's logit scale
- ``softnce``: InfoNCE with soft targets softmax(R / 0.1) (graded, like the ladder; a baseline)
- ``ladder2`` (alias ``ladder``): ladder loss, L = 2
- ``ladder3``: ladder loss, L = 3
- ``adaptive``: adaptive ladder loss (levels found per query by 1-D k-means; the ground truth alone
  on level 0)
- ``adaptive-ref``: the same with the ground truth clustered with the other candidates, as the
  reference code does

:class:`Objective` sums them over batches of matching pairs (one positive per query);
:class:`MultiPositiveObjective` over batches where a query may have several positives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from trainer.levels import LevelSettings

# Ladder thresholds for the scene world. Relevance there is the weighted share of the named
# attributes a scene gets right (kind .35, colour .25, setting .20, time .10, count .10; shares of
# what a caption names). Its meaningful jumps, for a full caption: 1.0 (everything), 0.9 (count or
# time wrong), 0.8 / 0.75 (setting or colour wrong), 0.65 (the wrong object) and below. 0.85 keeps
# "only a minor detail wrong" above the first boundary; 0.6 then separates "the right object or
# most of the scene" from "little in common". (0.63 and 0.40 are the paper's COCO thresholds for
# CBOW and SBERT caption similarity, which this scale does not share.)
LADDER2_THRESHOLDS = (0.85,)
LADDER3_THRESHOLDS = (0.85, 0.6)


def _factories() -> dict[str, Callable[[], nn.Module]]:
    from trainer import losses

    # Hinge losses are averaged over the batch ("mean"), not summed as in the references: with
    # AdamW the scale barely matters alone, and it keeps weights in sums such as
    # "infonce+0.5*adaptive" readable and independent of the batch size.
    return {
        "triplet": lambda: losses.TripletLoss(margin=0.2, reduction="mean"),
        "infonce": lambda: losses.InfoNCELoss(),
        "softnce": lambda: losses.SoftInfoNCELoss(tau=0.1),
        "ladder2": lambda: losses.LadderLoss(
            thresholds=LADDER2_THRESHOLDS, margins=(0.2, 0.01), betas=(1.0, 0.25), reduction="mean"
        ),
        "ladder3": lambda: losses.LadderLoss(
            thresholds=LADDER3_THRESHOLDS,
            margins=(0.2, 0.01, 0.01),
            betas=(1.0, 0.25, 0.125),
            reduction="mean",
        ),
        "adaptive": lambda: losses.AdaptiveLadderLoss(reduction="mean"),
        "adaptive-ref": lambda: losses.AdaptiveLadderLoss(reduction="mean", include_ground_truth=True),
    }


ALIASES = {"ladder": "ladder2", "clip": "infonce", "adaptive-ladder": "adaptive"}
LOSS_NAMES = ("triplet", "infonce", "softnce", "ladder2", "ladder3", "adaptive", "adaptive-ref")

_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z0-9_-]+)\s*$")


def parse_objective(spec: str) -> list[tuple[float, str]]:
    """Split a spec into (weight, canonical name) terms; raise ValueError with the valid names."""
    terms: list[tuple[float, str]] = []
    for raw in spec.lower().split("+"):
        match = _TERM.match(raw)
        if not match:
            raise ValueError(
                f"cannot read loss term {raw.strip()!r} in {spec!r}; write e.g. 'infonce+0.5*adaptive'"
            )
        name = ALIASES.get(match["name"], match["name"])
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {match['name']!r}; choose from {', '.join(LOSS_NAMES)}")
        weight = float(match["weight"]) if match["weight"] else 1.0
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"loss weight must be a positive number, got {weight} in {spec!r}")
        if any(n == name for _, n in terms):
            raise ValueError(f"loss {name!r} appears twice in {spec!r}")
        terms.append((weight, name))
    if not terms:
        raise ValueError("no loss given")
    return terms


class Objective(nn.Module):
    """A weighted sum of losses; ``forward`` returns ``loss`` plus every named term, prefixed."""

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec
        self.terms = parse_objective(spec)
        factories = _factories()
        self.parts = nn.ModuleDict({name: factories[name]() for _, name in self.terms})

    @property
    def uses_logit_scale(self) -> bool:
        return any(name in ("infonce", "softnce") for _, name in self.terms)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        relevance: torch.Tensor,
        logit_scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        total = image_features.new_zeros(())
        for weight, name in self.terms:
            terms = self.parts[name](image_features, text_features, relevance, logit_scale=logit_scale)
            total = total + weight * terms["loss"]
            for key, value in terms.items():
                out[name if key == "loss" else f"{name}/{key}"] = value.detach() if key != "loss" else value
        out["loss"] = total
        return out


class MultiPositiveObjective(nn.Module):
    """The weighted sum of a spec's losses over batches where a query may have several positives.

    In the style of open_clip's ``ClipLoss``: ``forward`` takes the batch's image and text features
    with its targets and returns ``loss`` plus every named term, as :class:`Objective` does.
    ``positives[i, j]`` says that text j describes image i fully (the diagonal always does): a
    one-tag caption ("lisbon") describes every photo carrying that tag, so a query has a set of
    positives (its ground truth, plus any photo or caption that matches it fully). Per term:

    * ``infonce``: :class:`~trainer.losses.MultiPositiveInfoNCELoss` at ``temperature`` (the CLIP
      loss when each query has one positive);
    * ``triplet``: :class:`~trainer.losses.MultiPositiveTripletLoss`, the hardest-negative hinge
      with the *worst* positive, as VSE++ with several positives;
    * ``adaptive`` (and ``adaptive-ref``): the adaptive ladder loss on ``levels`` when they are
      given, (2, B, B) int64 with the positives on level 0 and the other candidates on the levels
      of their relevance (computed ahead, e.g. over every tag set at once; :attr:`level_settings`
      says how); without them it clusters the batch itself, its ground truth the diagonal alone;
    * any other term of :mod:`trainer.objectives` runs as it is (one positive per query), with the
      logit scale ``1 / temperature``.

    Args:
        spec: a loss spec such as ``"infonce+adaptive"`` (see :func:`parse_objective`).
        temperature: of the InfoNCE terms.
    """

    scale: torch.Tensor

    def __init__(self, spec: str, temperature: float = 0.05) -> None:
        from trainer import losses

        super().__init__()
        self.spec = spec
        self.terms = parse_objective(spec)
        self.temperature = float(temperature)
        self.register_buffer("scale", torch.tensor(1.0 / temperature), persistent=False)
        factories = _factories()
        parts: dict[str, nn.Module] = {}
        for _, name in self.terms:
            part = factories[name]()
            if isinstance(part, losses.InfoNCELoss):
                part = losses.MultiPositiveInfoNCELoss(temperature)
            elif isinstance(part, losses.TripletLoss) and part.max_violation:
                part = losses.MultiPositiveTripletLoss(float(part.margins[0]))
            parts[name] = part
        self.parts = nn.ModuleDict(parts)

    @property
    def level_settings(self) -> LevelSettings | None:
        """How the first adaptive ladder term computes levels (None without one): levels given to
        :meth:`forward` are computed this way."""
        from trainer.losses import AdaptiveLadderLoss

        for part in self.parts.values():
            if isinstance(part, AdaptiveLadderLoss):
                return part.level_settings
        return None

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        relevance: torch.Tensor,
        positives: torch.Tensor,
        levels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``relevance[i, j]`` and ``positives[i, j]``: image i against text j, (B, B) float and bool."""
        out: dict[str, torch.Tensor] = {}
        total = image_features.new_zeros(())
        for weight, name in self.terms:
            terms = self._term(self.parts[name], image_features, text_features, relevance, positives, levels)
            total = total + weight * terms["loss"]
            for key, value in terms.items():
                out[name if key == "loss" else f"{name}/{key}"] = value.detach() if key != "loss" else value
        out["loss"] = total
        return out

    def _term(
        self,
        part: nn.Module,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        relevance: torch.Tensor,
        positives: torch.Tensor,
        levels: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        from trainer import losses

        if isinstance(part, losses.MultiPositiveInfoNCELoss | losses.MultiPositiveTripletLoss):
            return part(image_features, text_features, positives)
        if isinstance(part, losses.AdaptiveLadderLoss) and levels is not None:
            return part(image_features, text_features, relevance, levels=levels)
        return part(image_features, text_features, relevance, logit_scale=self.scale)
