"""What a fine-tune is given and gives back: its settings, its progress records, its result.

Both modes (:mod:`trainer.finetune` for the adapter, :mod:`trainer.finetune_full` for the last
blocks of the model) take a :class:`FinetuneConfig`, yield :class:`FinetuneProgress` records and
return a :class:`FinetuneResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import FinetuneError

if TYPE_CHECKING:
    from core.models import ModelIdentity

MODES = ("adapter", "full")


@dataclass
class FinetuneConfig:
    """Settings of a fine-tune. ``lr`` None picks the mode's default."""

    mode: str = "adapter"
    loss: str = "infonce+adaptive"  # a trainer.objectives spec: adaptive, triplet, infonce, sums
    epochs: int = 80
    max_steps: int = 2000  # fewer epochs for many photos (an epoch is one pass over the training photos)
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: float = 0.05
    hidden: int | None = None  # adapter width (default: embedding width / 4)
    temperature: float = 0.05  # for InfoNCE terms
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 8
    blends: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    blend_tolerance: float = 0.01
    preserve: float = 1.0  # weight of keeping everyday captions' scores (0: off)
    anchors: int = 512  # everyday captions for that
    partial_captions: float = 0.5  # share of captions naming one tag of the photo, not all
    caption_variants: int = 4  # captions per tag set, the fixed wording included
    caption_budget: int = 2048  # at most this many captions to encode (at least one per tag set)
    general_scenes: int = 300  # scene-world photos for the "cost" report (0: none)
    min_photos: int = 10
    cs_k: int = 100
    seed: int = 0
    # full mode
    unfreeze_blocks: int = 2
    device: str = "auto"
    decode_workers: int | None = None

    def validate(self) -> None:
        """Raise FinetuneError with a clear message for any setting that cannot work."""
        from trainer.objectives import parse_objective

        if self.mode not in MODES:
            raise FinetuneError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        try:
            parse_objective(self.loss)
        except ValueError as e:
            raise FinetuneError(str(e)) from None
        if self.epochs < 1:
            raise FinetuneError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise FinetuneError(f"batch size must be at least 2, got {self.batch_size}")
        if self.lr is not None and not (0 < self.lr < 1):
            raise FinetuneError(f"learning rate must be in (0, 1), got {self.lr}")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise FinetuneError("validation and test fractions must be in (0, 0.5)")
        if not self.blends or any(not 0 <= b <= 1 for b in self.blends):
            raise FinetuneError(f"blends must be numbers in [0, 1], got {self.blends}")
        if self.patience < 1:
            raise FinetuneError(f"patience must be at least 1 epoch, got {self.patience}")
        if self.caption_variants < 1:
            raise FinetuneError("caption_variants must be at least 1")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-3 if self.mode == "adapter" else 1e-5

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (tuples as lists), for reports."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress record.

    ``phase``: "scan" (reading tags), "match" (finding the photos' vectors), "captions"
    (encoding captions and tags), "general" (the scene-world set), "train" (one record per step),
    "validate" (after each epoch, with ``metrics``), "blend", "report", "done".
    """

    phase: str
    done: int = 0
    total: int | None = None
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    metrics: Mapping[str, float] | None = None
    message: str = ""


@dataclass
class FinetuneResult:
    """A finished fine-tune, not saved yet (see :func:`trainer.finetune.save_profile`)."""

    mode: str
    report: dict[str, Any]
    adapter: Any = None  # core.adapters.Adapter (adapter mode)
    weights_file: Path | None = None  # whole-model weights (full mode)
    base_identity: ModelIdentity | None = None
    base_spec: str | None = None
