"""What a model may carry beside its weights: a calibrated match gate and its vocabulary.

``<weights stem>.vocab.json`` lists the words a closed-vocabulary model (the starter) was trained
on (:class:`core.lexicon.Vocabulary`); open_clip models have none (any word).

The gate (:class:`core.grading.MatchGate`) decides whether a query's top tier is a match at all;
its thresholds depend on the model, so each model may carry a calibration made on data whose
truth is known (``benchmarks/calibrate_gate.py``): a JSON file beside its weights,
``<weights stem>.gate.json``, holding ``{"match_gate": {...}}``. A missing or unreadable file
means the defaults.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from .grading import MatchGate
from .lexicon import Vocabulary

logger = logging.getLogger(__name__)

_FLOAT_FIELDS = ("min_top_z", "min_separation_z", "min_excess_z", "min_gap_z")


def gate_file_for(spec: Any) -> Path | None:
    """The gate file of a model spec (a :class:`~core.models.ModelSpec`); None for hub models."""
    return _sidecar(spec, ".gate.json")


def load_vocabulary(spec: Any) -> Vocabulary | None:
    """The model's closed vocabulary, or None (any word; also when the file is unreadable)."""
    path = _sidecar(spec, ".vocab.json")
    return None if path is None else Vocabulary.load(path)


def _sidecar(spec: Any, suffix: str) -> Path | None:
    from .models import ModelSpec, starter_weights_path

    spec = ModelSpec.parse(spec)
    if spec.kind == "starter":
        weights = starter_weights_path()
    elif spec.kind == "file" and spec.path is not None:
        weights = Path(spec.path)
    else:
        return None
    return weights.with_name(weights.stem + suffix)


def load_match_gate(spec: Any) -> MatchGate:
    """The calibrated gate of a model, else the defaults (never raises; a bad file is named in a warning)."""
    path = gate_file_for(spec)
    if path is None or not path.is_file():
        return MatchGate()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("match_gate"), dict):
            raise ValueError('expected {"match_gate": {...}}')
        fields = {
            k: _threshold(data["match_gate"], k, -math.inf) for k in _FLOAT_FIELDS if k in data["match_gate"]
        }
        score = _threshold(data["match_gate"], "min_top_score", None)
        return MatchGate(**fields, min_top_score=score)
    except (OSError, ValueError, TypeError) as e:
        logger.warning("ignoring the match gate file %s (the defaults are used): %s", path, e)
        return MatchGate()


def _threshold(values: dict, key: str, untested: float | None) -> float | None:
    """A finite threshold, or ``untested`` for null; anything else is an error."""
    value = values.get(key)
    if value is None:
        return untested
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number or null, not {value!r}")
    return float(value)


def gate_to_json(gate: MatchGate) -> dict[str, float | None]:
    """The JSON form of a gate (an untested threshold is null)."""
    out: dict[str, float | None] = {}
    for key in (*_FLOAT_FIELDS, "min_top_score"):
        value = getattr(gate, key)
        out[key] = None if value is None or not math.isfinite(value) else float(value)
    return out
