"""A model's calibrated match gate is read from beside its weights and used by searches."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from core.grading import MatchGate
from core.library import Library
from core.match_gate import gate_file_for, gate_to_json, load_match_gate
from tests.core.imagefiles import write_jpeg


@pytest.fixture
def checkpoint(tmp_path, tiny_checkpoint):
    path = tmp_path / "model.safetensors"
    shutil.copy(tiny_checkpoint, path)
    return path


def test_gate_file_sits_beside_the_weights(checkpoint):
    assert gate_file_for(f"file:{checkpoint}") == checkpoint.with_name("model.gate.json")
    assert gate_file_for("openclip:ViT-B-32/laion2b_s34b_b79k") is None
    assert gate_file_for("starter").name == "ladderlens-starter.gate.json"


def test_missing_or_malformed_file_gives_defaults(checkpoint):
    spec = f"file:{checkpoint}"
    assert load_match_gate(spec) == MatchGate()
    gate_file_for(spec).write_text("{not json")
    assert load_match_gate(spec) == MatchGate()
    gate_file_for(spec).write_text(json.dumps({"match_gate": {"min_top_z": "high"}}))
    assert load_match_gate(spec) == MatchGate()


def test_round_trip_with_untested_thresholds(checkpoint):
    gate = MatchGate(min_top_z=2.5, min_separation_z=-math.inf, min_gap_z=-math.inf, min_top_score=0.61)
    gate_file_for(f"file:{checkpoint}").write_text(json.dumps({"match_gate": gate_to_json(gate)}))
    assert gate_to_json(gate)["min_separation_z"] is None
    assert load_match_gate(f"file:{checkpoint}") == gate


@pytest.mark.parametrize(("threshold", "long_tail"), [(-1.0, False), (2.0, True)])
def test_search_uses_the_models_gate(tmp_path, checkpoint, threshold, long_tail):
    for i in range(10):
        write_jpeg(tmp_path / "photos" / f"{i}.jpg", (48, 48), seed=i)
    gate = MatchGate(min_top_z=-math.inf, min_separation_z=-math.inf, min_top_score=threshold)
    gate_file_for(f"file:{checkpoint}").write_text(json.dumps({"match_gate": gate_to_json(gate)}))
    with Library.open(tmp_path / "lib", model=f"file:{checkpoint}") as lib:
        lib.add_folder(tmp_path / "photos")
        lib.index()
        # Any cosine is above -1 and none reaches 2: the gate alone decides a query that names no
        # checkable attribute (those are graded on evidence: test_search_evidence.py).
        assert lib.search("a picture of something", k=10).long_tail is long_tail


@pytest.mark.parametrize(
    "content",
    [
        '{"match_gate": [1, 2]}',
        "[1, 2]",
        '{"match_gate": {"min_top_z": NaN}}',
        '{"match_gate": {"min_top_score": Infinity}}',
        '{"match_gate": {"min_separation_z": true}}',
        '{"match_gate": {"min_top_z": [3]}}',
    ],
)
def test_a_bad_gate_file_falls_back_to_the_defaults_with_a_warning(checkpoint, content, caplog):
    gate_file_for(f"file:{checkpoint}").write_text(content)
    with caplog.at_level("WARNING"):
        assert load_match_gate(f"file:{checkpoint}") == MatchGate()
    assert "ignoring the match gate file" in caplog.text
