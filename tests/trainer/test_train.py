"""The training loop end to end on a tiny open_clip model and a few dozen 32 px scenes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError
from trainer import checkpointing
from trainer.__main__ import main
from trainer.objectives import Objective
from trainer.train import TrainConfig, TrainingDivergedError, TrainingError, train

REPO = Path(__file__).resolve().parents[2]
ARCH = "ladderlens-train-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def model_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / f"{ARCH}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="module")
def scene_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scene-cache")


@pytest.fixture
def make_config(model_config, scene_cache, tmp_path):
    def make(**overrides) -> TrainConfig:
        values = dict(
            arch=ARCH,
            model_config=str(model_config),
            loss="infonce",
            steps=6,
            batch_size=16,
            lr=3e-3,
            warmup=0.0,
            train_scenes=48,
            val_scenes=16,
            heldout_scenes=16,
            eval_every=2,
            out_dir=str(tmp_path / "run"),
            cache_dir=str(scene_cache),
            progress_bar=False,
        )
        values.update(overrides)
        return TrainConfig(**values)

    return make


def _cli_args(config: TrainConfig) -> list[str]:
    return [
        "train", "--model-config", config.model_config, "--arch", config.arch,
        "--scenes", str(config.train_scenes),
        "--val-scenes", str(config.val_scenes), "--heldout-scenes", str(config.heldout_scenes),
        "--batch-size", str(config.batch_size), "--cache-dir", config.cache_dir, "--out", config.out_dir,
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip


def test_two_epochs_learn_and_write_checkpoint_export_plot(make_config):
    config = make_config(
        loss="infonce; 0.5: infonce+1*adaptive", steps=None, epochs=2, lr=5e-3, eval_every=None
    )
    records = []
    result = train(config, on_progress=records.append)

    assert result.steps == 6 and result.stopped == "completed"
    losses = [loss for _, loss in result.history["losses"]]
    assert all(math.isfinite(v) for v in losses)
    # the contrastive term (present in both phases) falls: the second epoch beats the first
    infonce = [r.terms["infonce"] for r in records if r.kind == "step"]
    assert sum(infonce[3:]) < sum(infonce[:3])
    evals = result.history["evaluations"]
    assert [e["step"] for e in evals] == [3.0, 6.0]  # once an epoch
    for key in ("test/t2i_R@1", "test/i2t_R@5", "heldout/t2i_CS@16", "test-partial/t2i_nDCG@20", "score"):
        assert math.isfinite(result.best_metrics[key]), key  # CS@K is clamped to the 16 scenes of a pool
    # the second phase adds the adaptive ladder's terms
    steps = [r for r in records if r.kind == "step"]
    assert "adaptive" not in steps[0].terms and "adaptive" in steps[-1].terms
    assert {r.kind for r in records} >= {"prepare", "step", "eval", "checkpoint", "done"}

    out = Path(config.out_dir)
    assert (out / "phase-1.safetensors").is_file()  # the weights the InfoNCE phase ended with
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((out / "history.json").read_text())
    assert history["steps"] == 6
    saved = checkpointing.load_training_state(out / checkpointing.LAST_NAME)
    assert saved["step"] == 6 and saved["config"]["loss"] == config.loss

    from core.checkpoints import read_metadata
    from core.models import load_model

    meta = read_metadata(result.export_path)
    assert meta["arch"] == ARCH and json.loads(meta["metrics"])["score"] == pytest.approx(
        result.best_metrics["score"], abs=1e-4
    )
    loaded = load_model(f"file:{result.export_path}", device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_resume_continues_exactly_like_an_uninterrupted_run(make_config, tmp_path):
    whole = train(make_config(out_dir=str(tmp_path / "whole"), steps=4))

    class Stop(Exception):
        pass

    def stop_after_first_checkpoint(record):
        if record.kind == "checkpoint" and record.step == 2:
            raise Stop

    cut = make_config(out_dir=str(tmp_path / "cut"), steps=4)
    with pytest.raises(Stop):
        train(cut, on_progress=stop_after_first_checkpoint)
    assert checkpointing.load_training_state(tmp_path / "cut" / checkpointing.LAST_NAME)["step"] == 2
    resumed = train(cut, resume=True)  # step 2 is mid-epoch (3 batches an epoch)

    assert resumed.steps == whole.steps == 4
    assert resumed.history["losses"] == whole.history["losses"]
    a = checkpointing.load_training_state(tmp_path / "whole" / checkpointing.LAST_NAME)["model"]
    b = checkpointing.load_training_state(tmp_path / "cut" / checkpointing.LAST_NAME)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(make_config):
    class FailsAtStep4(torch.nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.inner = Objective(spec)
            self.calls = 0

        def forward(self, *args, **kwargs):
            self.calls += 1
            out = self.inner(*args, **kwargs)
            if self.calls >= 4:
                out["loss"] = out["loss"] * float("nan")
            return out

    config = make_config(steps=5)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 4.*last good checkpoint"):
        train(config, objective_factory=FailsAtStep4)
    saved = checkpointing.load_training_state(Path(config.out_dir) / checkpointing.LAST_NAME)
    assert saved["step"] == 2
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "-0.1"], "learning rate must be a positive number"),
        (["--loss", "hinge"], "unknown loss 'hinge'; choose from"),
        (["--loss", "infonce; 0.7: adaptive; 0.5: triplet"], "phase starts must increase"),
        (["--batch-size", "1"], "batch size must be at least 2"),
        (["--warmup", "1.5"], "warm-up must be a fraction"),
        (["--steps", "5", "--time-budget", "0.001s"], "time budget"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(make_config, capsys, extra, message):
    code = main([*_cli_args(make_config()), "--steps", "2", *extra])
    assert code != 0
    assert message in capsys.readouterr().err


def test_missing_length_is_refused(make_config):
    with pytest.raises(ValueError, match="steps, epochs or a time budget"):
        make_config(steps=None).validate()


def test_resume_refuses_corrupt_or_mismatched_checkpoints(make_config, capsys):
    config = make_config(steps=2)
    args = [*_cli_args(config), "--steps", "2", "--lr", str(config.lr), "--eval-every", "2"]
    assert main(args) == 0
    capsys.readouterr()

    assert main([*args, "--resume", "--lr", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: checkpoint 0.003, now 0.01" in err

    assert main(args) == 1  # the folder holds a run: not overwritten by accident
    assert "already holds a training run" in capsys.readouterr().err

    last = Path(config.out_dir) / checkpointing.LAST_NAME
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    assert main([*args, "--resume"]) == 1
    assert "not a readable training checkpoint" in capsys.readouterr().err

    last.unlink()
    assert main([*args, "--resume"]) == 1
    assert "no training checkpoint" in capsys.readouterr().err


def test_initial_weights_of_another_architecture_are_refused(make_config, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="does not fit this model architecture"):
        train(make_config(init=str(tiny_checkpoint)))


def test_initial_weights_come_from_an_export_or_a_training_checkpoint(make_config, tmp_path):
    from core.models import save_checkpoint
    from trainer.train import create_model, register_arch

    register_arch(make_config())
    torch.manual_seed(1)
    source = create_model(ARCH)
    export = tmp_path / "export.safetensors"
    save_checkpoint(source.half(), export, ARCH)  # exports are float16
    checkpoint = tmp_path / "checkpoint.pt"
    checkpointing.save_training_state(
        checkpoint, {"model": source.float().state_dict(), "optimizer": {}, "step": 0, "config": {}}
    )

    for init in (export, checkpoint):
        torch.manual_seed(0)
        model = create_model(ARCH, str(init))
        after_init = torch.get_rng_state()
        assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
        assert all(
            torch.equal(a, b)
            for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
        )
        torch.manual_seed(0)
        create_model(ARCH)  # a run draws the same random numbers after its model, with or without --init
        assert torch.equal(after_init, torch.get_rng_state())

    with pytest.raises(CheckpointError, match=r"initial weights .* do not exist"):
        create_model(ARCH, str(tmp_path / "gone.safetensors"))


def test_bad_model_configs_and_devices_are_training_errors(make_config, tmp_path, monkeypatch):
    from trainer.distributed import Distributed
    from trainer.train import _select_device, register_arch

    with pytest.raises(TrainingError, match="does not exist"):
        register_arch(make_config(model_config=str(tmp_path / "gone.json")))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(TrainingError, match="not readable JSON"):
        register_arch(make_config(model_config=str(broken)))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingError, match="no CUDA GPU is available; use --device cpu"):
        _select_device("cuda", Distributed())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _select_device("auto", Distributed(1, 2, local_rank=1)) == torch.device("cuda", 1)
    assert _select_device("cuda", Distributed(1, 2, local_rank=1)) == torch.device("cuda", 1)


def test_time_budget_spent_before_training_is_reported(make_config):
    with pytest.raises(TrainingError, match="spent preparing the data"):
        train(make_config(steps=None, time_budget_s=1e-3))


def test_two_process_ddp_run_on_cpu(make_config, tmp_path):
    config = make_config(out_dir=str(tmp_path / "ddp"), batch_size=8)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "trainer", *_cli_args(config), "--steps", "4", "--eval-every", "2", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "process 0 of 2" in output and "process 1 of 2" in output
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result["steps"] == 4
    saved = checkpointing.load_training_state(Path(config.out_dir) / checkpointing.LAST_NAME)
    assert saved["step"] == 4
    leftovers = [p.name for p in Path(config.out_dir).iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_presets_and_options_combine():
    from trainer.__main__ import build_parser, config_from_args

    parse = build_parser().parse_args
    starter = config_from_args(parse(["--preset", "starter"]))
    assert starter.loss.startswith("infonce;") and "adaptive" in starter.loss
    assert starter.time_budget_s == 120 * 60 and starter.export.endswith("ladderlens-starter.safetensors")
    assert starter.twins  # counterfactual pairs in every batch
    shorter = config_from_args(parse(["--preset", "starter", "--steps", "10", "--lr", "1e-4"]))
    assert (shorter.steps, shorter.time_budget_s, shorter.lr) == (10, None, 1e-4)  # the length given wins
    custom = config_from_args(
        parse(["--model-config", "/x/my-arch.json", "--epochs", "2", "--allow-ambiguous"])
    )
    assert custom.arch == "my-arch" and custom.epochs == 2 and not custom.unambiguous


def test_training_with_pipelined_levels_follows_in_step_levels(make_config, tmp_path, monkeypatch):
    """The adaptive ladder's levels computed by the data pipeline give the same run as levels
    computed inside each step."""
    from trainer import train as train_mod

    def run(name: str) -> list[float]:
        config = make_config(loss="infonce+1*adaptive", steps=3, eval_every=3, out_dir=str(tmp_path / name))
        return [loss for _, loss in train(config).history["losses"]]

    pipelined = run("pipelined")
    with monkeypatch.context() as patch:
        patch.setattr(train_mod, "pipeline_levels", lambda objectives: None)
        in_step = run("in-step")
    assert len(pipelined) == 3
    assert pipelined == in_step
