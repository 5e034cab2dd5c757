"""Training checkpoints: written atomically, read back with checks that say what is wrong.

A checkpoint holds the model, the optimiser, the step reached, the random-number states, the
training configuration and the history so far. It is a ``torch.save`` file read back with
``weights_only=True``: nothing in it can run code.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import CheckpointError

logger = logging.getLogger(__name__)

FORMAT = "ladderlens-train-checkpoint"
FORMAT_VERSION = 1
LAST_NAME = "checkpoint-last.pt"
BEST_NAME = "checkpoint-best.pt"


def rng_state() -> dict[str, Any]:
    """The global random states of Python, NumPy and torch, in a ``weights_only``-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def save_training_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_state`.

    Raises:
        CheckpointError: the file is missing, truncated, not a training checkpoint, or of a
            newer format.
    """
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}; start without --resume to train anew")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path} is not a readable training checkpoint ({type(exc).__name__}: {exc}); "
            "delete it or start without --resume"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a LadderLens training checkpoint; start without --resume")
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer LadderLens; update it to resume this run")
    for key in ("model", "optimizer", "step", "config"):
        if key not in state:
            raise CheckpointError(f"{path} lacks '{key}': it is incomplete; start without --resume")
    return state


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value
