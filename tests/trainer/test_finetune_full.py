"""Full fine-tuning: which parameters train, and a run of two CPU processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.errors import FinetuneError
from core.library import Library
from core.models import create_architecture
from trainer.finetune_full import unfreeze_last_blocks
from trainer.tagged_world import write_tagged_tree

REPO = Path(__file__).resolve().parents[2]


def test_only_the_last_blocks_norms_and_projections_train(tiny_arch):
    model = create_architecture(tiny_arch)
    names = unfreeze_last_blocks(model, 1)
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in names
    assert "transformer.resblocks.1.mlp.c_fc.weight" in names
    assert {"visual.proj", "text_projection", "visual.ln_post.weight", "ln_final.weight"} <= set(names)
    assert not any(".resblocks.0." in n for n in names)
    assert "token_embedding.weight" not in names and "logit_scale" not in names
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(names)
    with pytest.raises(FinetuneError, match="at least one block"):
        unfreeze_last_blocks(model, 0)


def test_non_transformer_towers_are_refused():
    with pytest.raises(FinetuneError, match="adapter"):
        unfreeze_last_blocks(torch.nn.Linear(2, 2), 1)


def test_the_device_is_the_process_gpu_or_the_cpu_never_mps(monkeypatch):
    from trainer.distributed import Distributed
    from trainer.finetune_full import _device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device("auto", Distributed()) == torch.device("cpu")
    with pytest.raises(FinetuneError, match="no CUDA GPU is available"):
        _device("cuda", Distributed())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device("auto", Distributed(1, 2, local_rank=1)) == torch.device("cuda", 1)
    assert _device("cuda", Distributed(1, 2, local_rank=1)) == torch.device("cuda", 1)


@pytest.mark.parametrize("loss", ["infonce+adaptive", "infonce+ladder3+triplet"])
def test_the_objective_is_on_the_training_device(tiny_checkpoint, loss):
    """Its buffers (temperature, ladder margins and thresholds) meet the model's features there: on a
    GPU, an objective left on the CPU fails at the first step. The meta device stands in for one."""
    import numpy as np

    from core.models import load_model
    from trainer.distributed import Distributed
    from trainer.finetune_config import FinetuneConfig
    from trainer.finetune_data import LevelTables, iter_prepare
    from trainer.finetune_full import _FullTrainer, _Images
    from trainer.objectives import MultiPositiveObjective

    rng = np.random.default_rng(0)
    places, things = ["praia", "lisbon", "garden"], ["kayak", "oak"]
    tags = [(places[i % 3], things[i % 2]) for i in range(24)]
    vectors = rng.normal(size=(24, 32)).astype(np.float32)

    def encode(texts):
        return np.random.default_rng(len(texts)).normal(size=(len(texts), 32)).astype(np.float32)

    config = FinetuneConfig(mode="full", loss=loss, batch_size=6, general_scenes=0)
    data = _run(iter_prepare(tags, vectors, encode, config))
    loaded = load_model(f"file:{tiny_checkpoint}", device="cpu")
    unfreeze_last_blocks(loaded.model, 1)
    objective = MultiPositiveObjective(config.loss, config.temperature)
    assert any(True for _ in objective.buffers())
    images = _Images([f"photo-{i}.jpg" for i in range(24)], loaded.preprocess, 32, None)
    device = torch.device("meta")

    trainer = _FullTrainer(
        loaded, images, data, config, objective, LevelTables(objective.level_settings), Distributed(), device
    )
    assert {b.device for b in trainer.objective.buffers()} == {device}
    assert {p.device for p in trainer.train_model.parameters()} == {device}


def _run(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    import open_clip
    open_clip.add_model_config({config!r})
    import main
    sys.exit(main.main(sys.argv[1:]))
    """
)


def test_two_cpu_processes_under_torchrun(tmp_path, tiny_checkpoint, tiny_config_file):
    root = tmp_path / "Tagged"
    write_tagged_tree(root, 36, seed=4, size=(32, 32))
    spec = f"file:{tiny_checkpoint}"
    with Library.open(tmp_path / "lib", model=spec) as lib:
        lib.add_folder(root)
        lib.index()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(repo=str(REPO), config=str(tiny_config_file)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
        "finetune", str(root), "--mode", "full", "--library", str(tmp_path / "lib"), "--model", spec,
        "--epochs", "2", "--lr", "1e-3", "--batch-size", "8", "--general", "0", "--name", "ddp",
        "--no-progress", "--json",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=500, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert report["profile"] == "ddp v1" and report["world_size"] == 2 and report["mode"] == "full"
    assert report["heldout"]["base"]["photos"] == report["split"]["test"]

    with Library.open(tmp_path / "lib", model=None) as lib:
        info = lib.active_profile
        assert info is not None and info.mode == "full" and lib.model_spec == info.model_spec
        assert lib.status().indexed == 36  # re-embedded with the fine-tuned weights
        assert len(lib.search("a photo of Lisbon", k=5).hits) == 5
        tuned = load_file(str(info.weights))
    base = load_file(str(tiny_checkpoint))
    trainable = set(report["trainable"])
    assert all(torch.equal(tuned[n], base[n]) for n in base if n not in trainable)
    if report["blend"] > 0:
        assert any(not torch.equal(tuned[n], base[n]) for n in trainable)
