"""Checkpoint files: atomic writes, safe reads, and a clear refusal for every unusable file."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open

from core import checkpoints
from core.checkpoints import file_digest, fit_state_dict, read_metadata, read_state_dict, save_checkpoint
from core.errors import CheckpointError, ModelUnavailableError
from core.models import create_architecture


class NotATensor:
    """A picklable object that is not a tensor: loading it would mean running arbitrary code."""

    def __init__(self):
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def tiny_state(tiny_checkpoint):
    return read_state_dict(tiny_checkpoint)


def test_save_writes_arch_preprocess_and_extra_metadata(tiny_arch, tmp_path):
    model = create_architecture(tiny_arch)
    path = tmp_path / "sub" / "m.safetensors"
    save_checkpoint(model, path, tiny_arch, extra_metadata={"note": "hello", "epoch": 3})

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        names = set(fh.keys())
    assert meta["arch"] == tiny_arch
    assert meta["note"] == "hello"
    assert json.loads(meta["epoch"]) == 3
    assert json.loads(meta["preprocess_cfg"])["size"] in (32, [32, 32])
    assert names == set(model.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]


def test_save_is_atomic_when_writing_fails(tiny_arch, tmp_path, monkeypatch):
    model = create_architecture(tiny_arch)
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, tiny_arch, extra_metadata={"version": "old"})
    before = path.read_bytes()

    import safetensors.torch

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path, tiny_arch, extra_metadata={"version": "new"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_refuses_other_suffix(tiny_arch, tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_checkpoint(create_architecture(tiny_arch), tmp_path / "m.pt", tiny_arch)


def test_round_trip_keeps_every_weight(tiny_arch, tmp_path):
    torch.manual_seed(7)
    model = create_architecture(tiny_arch)
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, tiny_arch)
    state = read_state_dict(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_torch_files_nested_and_ddp_prefixed_are_read(tiny_state, tmp_path):
    nested = tmp_path / "train.pt"
    torch.save({"epoch": 2, "state_dict": {f"module.{k}": v for k, v in tiny_state.items()}}, nested)
    plain = tmp_path / "plain.bin"
    torch.save(tiny_state, plain)
    for path in (nested, plain):
        state = read_state_dict(path)
        assert state.keys() == tiny_state.keys()
        assert all(torch.equal(state[k], tiny_state[k]) for k in state)
    assert read_metadata(plain) == {}


def _truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("truncated.safetensors", lambda src, dst: _truncated(src, dst)),
        ("random.safetensors", lambda src, dst: dst.write_bytes(os.urandom(4096))),
        ("random.pt", lambda src, dst: dst.write_bytes(b"\x00\x01" + os.urandom(4094))),
        ("empty.safetensors", lambda src, dst: dst.write_bytes(b"")),
        ("text.pt", lambda src, dst: dst.write_text("not a model at all\n")),
        ("html.bin", lambda src, dst: dst.write_text("<html><body>404 Not Found</body></html>")),
    ],
)
def test_damaged_files_are_refused(tiny_checkpoint, tmp_path, name, make):
    path = tmp_path / name
    make(tiny_checkpoint, path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert str(path) in message
    assert "again" in message  # says what to do


def test_truncated_torch_file_is_refused(tiny_state, tmp_path):
    full = tmp_path / "full.pt"
    torch.save(tiny_state, full)
    cut = tmp_path / "cut.pt"
    _truncated(full, cut)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_state_dict(cut)


@pytest.mark.parametrize("what", ["object", "whole model"])
def test_pickled_objects_are_refused_without_running_them(tiny_arch, tmp_path, what):
    path = tmp_path / "object.pt"
    torch.save({"weights": NotATensor()} if what == "object" else create_architecture(tiny_arch), path)
    with pytest.raises(CheckpointError, match="could run code"):
        read_state_dict(path)


def test_plain_pickle_of_an_object_is_refused(tmp_path):
    path = tmp_path / "object.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"weights": NotATensor()}, fh, protocol=4)
    with pytest.raises(CheckpointError, match=str(path)):
        read_state_dict(path)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"epoch": 3, "name": "run"}, "not tensors"),
        ([torch.zeros(2)], "holds no model weights"),
        ({}, "holds no model weights"),
    ],
)
def test_files_without_a_state_dict_are_refused(tmp_path, payload, expected):
    path = tmp_path / "thing.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=expected):
        read_state_dict(path)


def test_missing_file_is_unavailable_not_corrupt(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")


def test_fit_names_missing_unexpected_and_reshaped_weights(tiny_arch, tiny_state):
    model = create_architecture(tiny_arch)
    state = dict(tiny_state)
    del state["visual.proj"]
    state["extra.weight"] = torch.zeros(1)
    state["text_projection"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as info:
        fit_state_dict(model, state, "x.safetensors", tiny_arch)
    message = str(info.value)
    assert "visual.proj" in message and "missing" in message
    assert "extra.weight" in message and "unexpected" in message
    assert "text_projection (3, 3) in the file, (64, 32) in the model" in message
    assert "#ARCH" in message


def test_fit_accepts_scalar_logit_scale_saved_as_vector(tiny_arch, tiny_state):
    model = create_architecture(tiny_arch)
    state = dict(tiny_state)
    state["logit_scale"] = state["logit_scale"].reshape(1)
    fitted = fit_state_dict(model, state, "x.safetensors", tiny_arch)
    assert fitted["logit_scale"].shape == model.logit_scale.shape


def test_file_digest_is_sha256_prefix_and_follows_changes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"first")
    assert file_digest(path) == "sha256:" + hashlib.sha256(b"first").hexdigest()[:16]
    assert file_digest(path) == file_digest(path)
    path.write_bytes(b"second, longer")
    assert file_digest(path) == "sha256:" + hashlib.sha256(b"second, longer").hexdigest()[:16]


def test_file_digest_uses_its_cache(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"content")
    first = file_digest(path)
    monkeypatch.setattr(checkpoints.hashlib, "sha256", None)  # any re-hash would now fail
    assert file_digest(path) == first


@pytest.mark.parametrize("payload", ["object", "builtin function"])
def test_refused_pickles_never_advise_turning_the_safety_off(tmp_path, payload):
    """torch's own message suggests weights_only=False (which would run the file): never passed on."""
    path = tmp_path / "refused.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": [1, 2], "f": NotATensor() if payload == "object" else print}, fh, protocol=2)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "could run code" in message
    assert "weights_only" not in message and "Re-run" not in message and "trusted source" not in message
