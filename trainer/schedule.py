"""Learning-rate schedules as closures of training progress, and the loss phases of a recipe.

Progress is a number in [0, 1]: the fraction of the planned steps done, or of the wall-clock
budget spent when training runs against a time budget. Keeping schedules functions of progress
(not of steps) lets the same recipe run for a fixed number of steps or for a fixed time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LrSchedule = Callable[[float], float]


def warmup_cosine(base_lr: float, warmup: float, min_lr_ratio: float = 0.0) -> LrSchedule:
    """Linear warm-up over the first ``warmup`` fraction of training, then cosine decay.

    Args:
        base_lr: the peak learning rate.
        warmup: fraction of training spent warming up, in [0, 1).
        min_lr_ratio: the final learning rate as a fraction of ``base_lr``.

    Returns:
        ``lr(progress)`` for progress in [0, 1] (values outside are clamped).
    """
    if base_lr <= 0 or not math.isfinite(base_lr):
        raise ValueError(f"learning rate must be a positive number, got {base_lr}")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warm-up must be a fraction in [0, 1), got {warmup}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"minimum learning-rate ratio must be in [0, 1], got {min_lr_ratio}")
    min_lr = base_lr * min_lr_ratio

    def lr_at(progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        if warmup > 0 and p < warmup:
            return base_lr * max(p / warmup, 1e-3)
        span = 1.0 - warmup
        t = (p - warmup) / span if span > 0 else 1.0
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))

    return lr_at


@dataclass(frozen=True)
class Phase:
    """One stage of a recipe: from ``start`` (a progress fraction) on, train with ``loss``."""

    start: float
    loss: str


def parse_phases(text: str) -> tuple[Phase, ...]:
    """Parse a recipe such as ``"infonce"`` or ``"infonce; 0.5: infonce+1*adaptive"``.

    Phases are separated by ``;``. Each is ``[START:] LOSS`` where START is the progress fraction
    at which it begins (the first phase starts at 0). Starts must increase.
    """
    phases: list[Phase] = []
    for i, chunk in enumerate(part.strip() for part in text.split(";")):
        if not chunk:
            raise ValueError(f"empty phase in loss recipe {text!r}")
        if ":" in chunk:
            start_text, loss = (s.strip() for s in chunk.split(":", 1))
            try:
                start = float(start_text)
            except ValueError:
                raise ValueError(f"phase start must be a fraction in [0, 1), got {start_text!r}") from None
        else:
            start, loss = (0.0 if i == 0 else math.nan), chunk
        if i == 0 and start != 0.0:
            raise ValueError(f"the first phase of {text!r} must start at 0")
        if not 0.0 <= start < 1.0:
            raise ValueError(f"phase {chunk!r}: give its start as a fraction in [0, 1)")
        if phases and start <= phases[-1].start:
            raise ValueError(f"phase starts must increase: {text!r}")
        if not loss:
            raise ValueError(f"phase {chunk!r} names no loss")
        phases.append(Phase(start, loss))
    return tuple(phases)


def phase_at(phases: Sequence[Phase], progress: float) -> int:
    """Index of the phase active at ``progress``."""
    index = 0
    for i, phase in enumerate(phases):
        if progress >= phase.start:
            index = i
    return index
