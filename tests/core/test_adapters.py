"""Residual adapters applied with numpy: identity at start, blend, files, identity digest."""

from __future__ import annotations

import numpy as np
import pytest

from core.adapters import Adapter, ResidualMLP
from core.errors import CheckpointError


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def trained_side(dim: int, hidden: int, seed: int) -> ResidualMLP:
    rng = np.random.default_rng(seed)
    return ResidualMLP(
        rng.normal(0, 0.3, (hidden, dim)),
        rng.normal(0, 0.1, hidden),
        rng.normal(0, 0.3, (dim, hidden)),
        rng.normal(0, 0.1, dim),
    )


def test_a_new_adapter_is_the_identity():
    x = unit_rows(50, 16)
    adapter = Adapter(ResidualMLP.identity(16, 4), ResidualMLP.identity(16, 4, seed=1))
    np.testing.assert_allclose(adapter.apply_image(x), x, atol=1e-6)
    np.testing.assert_allclose(adapter.apply_text(x[0]), x[0], atol=1e-6)


def test_apply_matches_the_formula_in_batches_and_renormalises():
    x = unit_rows(37, 16, seed=3)
    side = trained_side(16, 8, seed=4)
    adapter = Adapter(side, None, blend=0.5)
    h = x @ side.down_weight.T + side.down_bias
    gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    expected = x + 0.5 * (gelu @ side.up_weight.T + side.up_bias)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    out = adapter.apply_image(x, batch_size=5)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(adapter.apply_text(x), x, atol=1e-6)  # no text side: unchanged
    np.testing.assert_allclose(adapter.with_blend(0.0).apply_image(x), x, atol=1e-6)
    assert not np.allclose(out, x, atol=1e-3)


def test_save_load_round_trip_and_digest(tmp_path):
    adapter = Adapter(trained_side(16, 8, 1), trained_side(16, 8, 2), 0.75, {"profile": "boats"})
    path = tmp_path / "a.safetensors"
    adapter.save(path)
    loaded = Adapter.load(path)
    assert loaded.blend == 0.75 and loaded.metadata == {"profile": "boats"}
    assert loaded.digest == adapter.digest
    x = unit_rows(10, 16)
    np.testing.assert_array_equal(loaded.apply_image(x), adapter.apply_image(x))
    assert adapter.with_blend(0.5).digest != adapter.digest
    other = Adapter(trained_side(16, 8, 3), trained_side(16, 8, 2), 0.75)
    assert other.digest != adapter.digest
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left


def test_damaged_or_foreign_files_are_refused(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(CheckpointError, match="does not exist"):
        Adapter.load(missing)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="damaged"):
        Adapter.load(junk)
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a LadderLens adapter"):
        Adapter.load(foreign)


def test_inconsistent_shapes_and_widths_are_refused():
    with pytest.raises(CheckpointError, match="shapes"):
        ResidualMLP(np.zeros((4, 16)), np.zeros(4), np.zeros((16, 3)), np.zeros(16))
    with pytest.raises(CheckpointError, match="width"):
        Adapter(ResidualMLP.identity(16, 4), ResidualMLP.identity(8, 4))
    with pytest.raises(CheckpointError, match="blend"):
        Adapter(ResidualMLP.identity(16, 4), None, blend=1.5)
    with pytest.raises(ValueError, match="width"):
        Adapter(ResidualMLP.identity(16, 4), None).apply_image(np.zeros((3, 8), np.float32))
