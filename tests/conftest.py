"""Test-wide settings: nothing touches the user's real folders, Qt runs offscreen, nothing downloads.

Model fixtures: ``tiny_arch`` registers a tiny open_clip architecture, ``tiny_checkpoint`` writes
seeded random weights for it, ``tiny_embedder`` is an :class:`core.embedder.Embedder` on them.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# huggingface_hub reads this once, when first imported: set it before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

TINY_ARCH = "ladderlens-test-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_SEED = 1234

# The top-level keys of `search --json` (and of SearchResult.to_dict): a contract users' scripts
# read. Keys may be added, never renamed or removed.
SEARCH_JSON_KEYS = frozenset(
    {
        "query",
        "model",
        "long_tail",
        "unknown_words",
        "match_count",
        "match_count_capped",
        "tiers",
        "results",
    }
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Point every per-user location (library, caches) at a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LADDERLENS_HOME", str(home / "library"))
    monkeypatch.setenv("LADDERLENS_CACHE", str(home / "cache"))
    monkeypatch.setenv("LADDERLENS_LOGS", str(home / "logs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory):
    """The tiny architecture's open_clip config as a JSON file (for subprocesses to register)."""
    config_path = tmp_path_factory.mktemp("model-configs") / f"{TINY_ARCH}.json"
    config_path.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    return config_path


@pytest.fixture(scope="session")
def tiny_arch(tiny_config_file) -> str:
    """Register the tiny open_clip architecture (32 px ViT, 2+2 layers, 32-d embeddings); its name."""
    import open_clip

    open_clip.add_model_config(tiny_config_file)
    return TINY_ARCH


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_arch, tmp_path_factory):
    """A ``.safetensors`` file of seeded random weights for ``tiny_arch`` (do not modify it; copy it)."""
    import torch

    from core.models import create_architecture, save_checkpoint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = create_architecture(tiny_arch)
    path = tmp_path_factory.mktemp("tiny-checkpoint") / "tiny.safetensors"
    save_checkpoint(model, path, tiny_arch)
    return path


@pytest.fixture(scope="session")
def tiny_embedder(tiny_checkpoint):
    """An Embedder on ``tiny_checkpoint``, on the CPU (shared by the whole session: read-only use)."""
    from core.embedder import Embedder

    return Embedder.from_spec(f"file:{tiny_checkpoint}", device="cpu")
