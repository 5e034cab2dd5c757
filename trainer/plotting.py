"""A picture of a training run: the loss per step and the validation metrics per epoch."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# Validation metrics drawn when present (name in the history -> legend label).
PLOTTED_METRICS = {
    "test/t2i_R@1": "test t2i R@1",
    "test/i2t_R@1": "test i2t R@1",
    "test/t2i_CS@100": "test t2i CS@100",
    "test/t2i_nDCG@20": "test t2i nDCG@20",
    "heldout/t2i_R@1": "held-out t2i R@1",
    "heldout/t2i_CS@100": "held-out t2i CS@100",
}


def plot_training(
    losses: Sequence[tuple[int, float]],
    evaluations: Sequence[Mapping[str, float]],
    path: Path,
    title: str = "",
    phase_starts: Sequence[int] = (),
) -> Path:
    """Draw the training loss (left) and validation metrics (right) into a PNG at ``path``.

    Args:
        losses: (step, loss) pairs.
        evaluations: one mapping per validation, each with a ``step`` key and metric values.
        path: where to write the PNG (written atomically).
        title: a caption for the whole figure.
        phase_starts: steps where a new loss phase began (drawn as dashed lines).
    """
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_metrics = fig.subplots(1, 2)
    if losses:
        steps = [s for s, _ in losses]
        values = [v for _, v in losses]
        ax_loss.plot(steps, values, lw=0.6, alpha=0.4, color="tab:blue", label="per step")
        ax_loss.plot(steps, _smooth(values), lw=1.5, color="tab:blue", label="smoothed")
        ax_loss.legend(loc="upper right")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    for key, label in PLOTTED_METRICS.items():
        points = [(e["step"], e[key]) for e in evaluations if key in e]
        if points:
            ax_metrics.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
    ax_metrics.set_xlabel("step")
    ax_metrics.set_ylabel("validation")
    ax_metrics.grid(alpha=0.3)
    if ax_metrics.get_legend_handles_labels()[0]:
        ax_metrics.legend(loc="lower right", fontsize=8)
    for step in phase_starts:
        for ax in (ax_loss, ax_metrics):
            ax.axvline(step, color="grey", ls="--", lw=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _smooth(values: Sequence[float], alpha: float = 0.05) -> list[float]:
    out: list[float] = []
    avg = values[0] if values else 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        out.append(avg)
    return out
