"""Train an open_clip model on the scene world with the ladder-loss family.

``train(config)`` is the whole loop: data, model, AdamW, warm-up + cosine schedule, optional
CUDA autocast, gradient clipping, a clamped logit scale, validation with R@K / CS@K / nDCG and
best-model selection, atomic resumable checkpoints, a loss plot, and export of the best weights
as ``.safetensors``. It runs as one process or under ``torchrun`` (DDP: gloo on CPU, NCCL on
GPUs); only rank 0 writes files.

A run is a function of its configuration and seed: stopping it and resuming from its last
checkpoint gives the same weights as never stopping (when it runs for a number of steps or
epochs; a wall-clock budget depends on the clock by definition).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checkpoints import load_weights
from core.devices import DeviceUnavailableError, autocast, needs_loss_scaling, pick_device, uses_cuda
from core.errors import CheckpointError, LadderLensError, ModelError
from trainer import checkpointing
from trainer.data import (
    EvalSet,
    ImageNormalizer,
    SceneSetSpec,
    TrainStream,
    build_eval_set,
    load_scene_set,
    prefetched,
)
from trainer.distributed import Distributed, join_process_group
from trainer.levels import LevelSettings
from trainer.losses import AdaptiveLadderLoss, levels_given
from trainer.objectives import Objective, parse_objective
from trainer.schedule import Phase, parse_phases, phase_at, warmup_cosine

logger = logging.getLogger(__name__)

LOGIT_SCALE_MAX = math.log(100.0)
PREFETCH = 2  # batches made ahead, in a background thread, while the model trains
EXPORT_NAME = "model.safetensors"
PLOT_NAME = "training.png"
HISTORY_NAME = "history.json"
_FIT_SUBJECT = "this model architecture ({arch!r})"  # how a weights mismatch names the model


class TrainingError(LadderLensError):
    """Training cannot start or go on (bad settings, data that does not fit, a diverged run)."""


class TrainingDivergedError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. Fields marked in RESUME_LOCKED must not change on resume."""

    arch: str = "ladderlens-starter"
    model_config: str | None = None  # an open_clip config JSON to register (its file name is the arch)
    init: str | None = None  # start from these weights (.safetensors export or training checkpoint)
    loss: str = "infonce"  # a loss spec, or phases: "infonce; 0.5: infonce+1*adaptive"
    steps: int | None = None
    epochs: float | None = None
    time_budget_s: float | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.05
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    init_logit_scale: float | None = None  # multiplier (e.g. 14.3); None keeps the model's own
    seed: int = 0
    train_scenes: int = 24000
    val_scenes: int = 1000
    heldout_scenes: int = 500
    scene_seed: int = 0  # which scenes (separate from the training seed, so seeds share data)
    augment: bool = True
    twins: bool = False  # train on counterfactual pairs (same scene, one attribute changed) in every batch
    unambiguous: bool = True  # partial captions that fully match another scene of the batch become full
    eval_every: int | None = None  # steps between validations (default: once an epoch)
    select_metric: str = "score"
    out_dir: str = "runs/train"
    export: str | None = None  # where to write the best weights (default: <out_dir>/model.safetensors)
    device: str = "auto"
    cache_dir: str | None = None
    progress_bar: bool = True
    overwrite: bool = False  # start a new run in an output folder that holds one
    threads: int | None = None  # CPU threads for torch (default: torch's choice)
    command: str = ""  # the command line that started the run (recorded in the exported metadata)

    def validate(self) -> None:
        """Raise ValueError with a clear message for any setting that cannot work."""
        self._validate_length()
        self._validate_optimisation()
        self._validate_data_and_run()
        for phase in parse_phases(self.loss):
            parse_objective(phase.loss)

    def _validate_length(self) -> None:
        if self.steps is None and self.epochs is None and self.time_budget_s is None:
            raise ValueError("say how long to train: give steps, epochs or a time budget")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"epochs must be a positive number, got {self.epochs}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time budget must be a positive number of seconds, got {self.time_budget_s}")

    def _validate_optimisation(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if self.lr > 1.0:
            raise ValueError(f"learning rate {self.lr} is far too large for AdamW; try 1e-4 to 3e-3")
        if not 0 <= self.weight_decay < 1:
            raise ValueError(f"weight decay must be in [0, 1), got {self.weight_decay}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warm-up must be a fraction in [0, 1), got {self.warmup}")
        if self.grad_clip < 0:
            raise ValueError(f"gradient clipping norm must be >= 0 (0 turns it off), got {self.grad_clip}")
        if self.init_logit_scale is not None and not 1 <= self.init_logit_scale <= 100:
            raise ValueError(f"initial logit scale must be in [1, 100], got {self.init_logit_scale}")

    def _validate_data_and_run(self) -> None:
        if min(self.train_scenes, self.val_scenes, self.heldout_scenes) < 1:
            raise ValueError("scene counts must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be at least 1 step, got {self.eval_every}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# What decides the trajectory of a run: these must match to resume a checkpoint.
RESUME_LOCKED = (
    "arch",
    "init",
    "loss",
    "steps",
    "epochs",
    "time_budget_s",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup",
    "min_lr_ratio",
    "grad_clip",
    "init_logit_scale",
    "seed",
    "train_scenes",
    "scene_seed",
    "augment",
    "twins",
)


@dataclass
class TrainProgress:
    """A plain progress record handed to ``on_progress`` (rank 0 only)."""

    kind: str  # "prepare", "step", "eval", "checkpoint", "done"
    step: int
    total_steps: int | None
    epoch: int
    progress: float  # fraction of the run done, in [0, 1]
    elapsed_s: float
    loss: float | None = None
    lr: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run produced."""

    out_dir: Path
    steps: int
    epochs_done: float
    elapsed_s: float
    stopped: str  # "completed", "time budget spent", "time budget spent after N of M steps"
    best_metrics: dict[str, float]
    final_metrics: dict[str, float]
    export_path: Path | None
    plot_path: Path | None
    history: dict[str, Any]


ProgressCallback = Callable[[TrainProgress], None]


# ----------------------------------------------------------------------------------------- setup


def _init_distributed(device_pref: str) -> Distributed:
    return join_process_group(uses_cuda(device_pref))[0]


def _select_device(pref: str, dist_info: Distributed) -> torch.device:
    """The device this process trains on: ``pref`` (see :func:`core.devices.pick_device`), the
    process's own GPU in a distributed run; "auto" chooses MPS only for a single process."""
    try:
        return pick_device(pref, local_rank=dist_info.local_rank, allow_mps=not dist_info.enabled)
    except DeviceUnavailableError as exc:
        raise TrainingError(f"{exc}; use --device cpu") from exc


def register_arch(config: TrainConfig) -> None:
    """Make the bundled configs, and ``config.model_config`` if given, known to open_clip."""
    import open_clip

    from core.models import register_configs

    try:
        register_configs(config.model_config)
    except ModelError as exc:
        raise TrainingError(str(exc)) from exc
    if config.arch not in open_clip.list_models():
        if config.model_config:
            raise TrainingError(
                f"{config.model_config} registers the architecture {Path(config.model_config).stem!r}, "
                f"not {config.arch!r}: open_clip names a config after its file"
            )
        raise TrainingError(
            f"unknown model architecture {config.arch!r}; give a bundled one (e.g. ladderlens-starter), "
            "an open_clip name, or --model-config PATH.json"
        )


def create_model(arch: str, init: str | None = None) -> nn.Module:
    """The open_clip model ``arch`` in train mode (nothing downloaded): randomly initialised, or
    holding the weights of the file ``init`` (a ``.safetensors`` export or a training checkpoint).

    Raises:
        CheckpointError: ``init`` is missing, unreadable or of another architecture.
    """
    from core.models import create_architecture, model_from_weights

    if init is None:
        return create_architecture(arch, "cpu").train()
    path = Path(init)
    if not path.is_file():
        raise CheckpointError(f"initial weights {path} do not exist")
    # Built from the architecture's own preprocessing, whatever the file records: the scenes are
    # normalised as the architecture says.
    model = model_from_weights(
        arch,
        path,
        "cpu",
        preprocess_cfg={},
        subject=_FIT_SUBJECT.format(arch=arch),
        advice="Start from weights of this architecture, or train the --arch (and --model-config) "
        "they were saved from.",
    )
    return model.train()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on gains, biases, embeddings of position, and the logit scale."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "bias" in name or "ln" in name or "logit_scale" in name
        exclude = exclude or "positional_embedding" in name or "class_embedding" in name
        (no_decay if exclude else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


class TwinTowerForward(nn.Module):
    """The training forward of a CLIP model: normalised image and text features, logit scale.

    Text runs only up to the batch's last end-of-text token (same features, less work) where
    the text tower allows it. This is the module DDP wraps, so gradients sync as usual.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        from core.embedder import TruncatedTextEncoder

        self.module = model
        self._text = TruncatedTextEncoder.for_model(model)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features."""
        if self._text is not None:
            return torch.nn.functional.normalize(self._text(tokens), dim=-1)
        return self.module.encode_text(tokens, normalize=True)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        image_features = self.module.encode_image(images, normalize=True)
        return image_features, self.encode_text(tokens), self.module.logit_scale.exp()


# ------------------------------------------------------------------------------------ evaluation


def _encode_images(
    model: nn.Module, pixels: np.ndarray, normalizer: ImageNormalizer, device, batch=256
) -> np.ndarray:
    chunks = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(pixels), batch):
            images = normalizer(pixels[start : start + batch]).to(device)
            chunks.append(model.encode_image(images, normalize=True).float().cpu())
    return torch.cat(chunks).numpy()


def _encode_texts(model: nn.Module, tokens: torch.Tensor, device, batch=512) -> np.ndarray:
    forward = TwinTowerForward(model)
    chunks = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(tokens), batch):
            chunks.append(forward.encode_text(tokens[start : start + batch].to(device)).float().cpu())
    return torch.cat(chunks).numpy()


def evaluate(
    model: nn.Module, eval_sets: list[EvalSet], normalizer: ImageNormalizer, device
) -> dict[str, float]:
    """Retrieval report of every validation pool, keys ``<pool>/<t2i|i2t>_<metric>``, plus ``score``.

    Full-caption pools are evaluated in both directions; partial-caption pools text->image only
    (an image has many equally relevant partial captions, so image->text ranks are ill-posed).
    """
    from trainer.metrics import recall_at_k, retrieval_report

    model = _unwrap(model)
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    image_cache: dict[int, np.ndarray] = {}
    for eval_set in eval_sets:
        key = id(eval_set.data)
        if key not in image_cache:
            image_cache[key] = _encode_images(model, eval_set.data.images, normalizer, device)
        image_vecs = image_cache[key]
        text_vecs = _encode_texts(model, eval_set.captions.tokens, device)
        sim = text_vecs @ image_vecs.T  # (captions, scenes)
        # Ground truth: every scene that matches all the attributes a caption names. Scenes with
        # the same attributes are indistinguishable by any caption, so an exact-instance hit is
        # reported separately ("R@K_instance").
        match = eval_set.relevance >= 1.0 - 1e-6
        instance = np.arange(len(eval_set.data))
        directions = [("t2i", sim, eval_set.relevance, match)]
        if eval_set.full:
            directions.append(("i2t", sim.T, eval_set.relevance.T, match.T))
        for direction, s, r, gt in directions:
            report = retrieval_report(s, r, gt)
            report.update({f"R@{k}_instance": v for k, v in recall_at_k(s, instance).items()})
            for name, value in report.items():
                if isinstance(value, int | float | np.floating | np.integer):
                    metrics[f"{eval_set.name}/{direction}_{name}"] = float(value)
    metrics["score"] = selection_score(metrics)
    model.train(was_training)
    return metrics


SELECTION_KEYS = (
    "test/t2i_R@1",
    "test/i2t_R@1",
    "heldout/t2i_R@1",
    "heldout/i2t_R@1",
    "test/t2i_CS@100",
    "heldout/t2i_CS@100",
    "test-partial/t2i_CS@100",
    "test/t2i_nDCG@20",
    "test-partial/t2i_nDCG@20",
)


def selection_score(metrics: Mapping[str, float]) -> float:
    """The default best-model criterion: the mean of :data:`SELECTION_KEYS` present (R@1, CS@100, nDCG@20)."""
    values = [metrics[k] for k in SELECTION_KEYS if k in metrics and math.isfinite(metrics[k])]
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------------------------------ loop


@dataclass
class _RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0
    best_score: float = -math.inf
    best_metrics: dict[str, float] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    phase_starts: list[int] = field(default_factory=list)  # steps where a later loss phase began


def _check_resume_config(saved: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, now {getattr(config, key)!r}"
        for key in RESUME_LOCKED
        if saved.get(key) != getattr(config, key)
    ]
    if differences:
        raise CheckpointError(
            f"{path} was written by a run with other settings ({'; '.join(differences)}); "
            "resume with the same settings, or start a new run in another output folder"
        )


def train(
    config: TrainConfig,
    resume: bool | str | Path = False,
    on_progress: ProgressCallback | None = None,
    objective_factory: Callable[[str], nn.Module] | None = None,
) -> TrainResult:
    """Train (or resume) a run described by ``config``; see the module docstring.

    Args:
        config: the run's settings (validated here).
        resume: False, True (the last checkpoint in ``config.out_dir``) or a checkpoint path.
        on_progress: called on rank 0 with a :class:`TrainProgress` per step, validation and save.
        objective_factory: builds the loss module from a loss spec (default :class:`Objective`).

    Raises:
        ValueError: a setting is invalid.
        CheckpointError: the checkpoint to resume or start from is unreadable or does not match.
        TrainingDivergedError: the loss became NaN/inf (the last good checkpoint stays in place).
    """
    config.validate()
    dist_info = _init_distributed(config.device)
    try:
        return _train(config, resume, on_progress, objective_factory or Objective, dist_info)
    finally:
        if dist_info.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(config, resume, on_progress, objective_factory, dist_info: Distributed) -> TrainResult:
    run = _prepare_run(config, resume, on_progress, objective_factory, dist_info)
    run.train()
    return run.finish()


# ------------------------------------------------------------------------------------------ setup of a run


def _prepare_run(config, resume, on_progress, objective_factory, dist_info: Distributed) -> _Run:
    """Everything a run needs, in order: the checkpoint to resume, the model, the scenes, the
    objectives and data stream, the optimiser, the resumed state and the training window."""
    run_start = time.monotonic()
    out_dir = Path(config.out_dir)
    resume_path, saved_state = _resume_source(config, resume, out_dir)
    model, device, image_size, tokenizer, normalizer = _build_model(config, dist_info, saved_state is None)
    emit = _emitter(on_progress, dist_info)
    sets = _load_scene_sets(config, dist_info, image_size, emit)
    phases = parse_phases(config.loss)
    objectives = [objective_factory(p.loss).to(device) for p in phases]
    stream = _train_stream(config, sets["train"], tokenizer, normalizer, dist_info, objectives)
    eval_sets = _eval_sets(config, sets, tokenizer) if dist_info.is_main else []
    model.to(device)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        fused=device.type in ("cpu", "cuda"),
    )
    # float16 autocast (CUDA without bfloat16) needs loss scaling; bfloat16 and float32 do not.
    scaler = torch.amp.GradScaler("cuda") if needs_loss_scaling(device) else None
    state = _RunState()
    if saved_state is not None:
        _restore(saved_state, resume_path, state, model, optimizer, scaler)
    train_model = _training_forward(model, dist_info, device)
    timer_start = time.monotonic() - state.elapsed_s
    return _Run(
        config=config,
        dist_info=dist_info,
        device=device,
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        scaler=scaler,
        stream=stream,
        phases=phases,
        objectives=objectives,
        eval_sets=eval_sets,
        normalizer=normalizer,
        emit=emit,
        state=state,
        out_dir=out_dir,
        export_path=Path(config.export) if config.export else out_dir / EXPORT_NAME,
        timer_start=timer_start,
        train_budget=_training_window(config, saved_state, run_start),
    )


def _resume_source(
    config: TrainConfig, resume: bool | str | Path, out_dir: Path
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume (None to start anew) and its contents, checked against ``config``.

    Raises:
        TrainingError: the output folder holds a run and neither resume nor overwrite was asked.
        CheckpointError: the checkpoint is unreadable or was written with other settings.
    """
    last_path = out_dir / checkpointing.LAST_NAME
    resume_path = None
    if resume:
        resume_path = Path(resume) if isinstance(resume, str | Path) else last_path
    if resume_path is None and last_path.exists() and not config.overwrite:
        raise TrainingError(
            f"{out_dir} already holds a training run ({last_path.name}); resume it with --resume, "
            "start again with --overwrite, or choose another output folder"
        )
    if resume_path is None:
        return None, None
    saved_state = checkpointing.load_training_state(resume_path)
    _check_resume_config(saved_state["config"], config, resume_path)
    return resume_path, saved_state


def _build_model(config: TrainConfig, dist_info: Distributed, fresh: bool):
    """The model (seeded; its initial weights and logit scale when ``fresh``), the device it is
    to train on, its input size, tokenizer and image normaliser."""
    register_arch(config)
    device = _select_device(config.device, dist_info)
    if config.threads:
        torch.set_num_threads(config.threads)
    logger.info("process %d of %d on %s", dist_info.rank, dist_info.world_size, device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    model = create_model(config.arch, config.init if fresh else None)
    image_size = _image_size(model)
    if config.init_logit_scale is not None and fresh:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(config.init_logit_scale))
    import open_clip

    tokenizer = open_clip.get_tokenizer(config.arch)
    pre_cfg = open_clip.get_model_preprocess_cfg(model)
    normalizer = ImageNormalizer(
        pre_cfg.get("mean", None) or (0.5,) * 3, pre_cfg.get("std", None) or (0.5,) * 3
    )
    return model, device, image_size, tokenizer, normalizer


def _load_scene_sets(config: TrainConfig, dist_info: Distributed, image_size: int, emit: ProgressCallback):
    """The rendered scene sets by name: train, test and heldout on rank 0, train on the others."""
    t_prepare = time.monotonic()
    emit(TrainProgress("prepare", 0, None, 0, 0.0, 0.0, message="loading scenes"))
    cache_root = Path(config.cache_dir) if config.cache_dir else None
    specs = {
        "train": SceneSetSpec("train", config.train_scenes, config.scene_seed, image_size, config.twins),
        "test": SceneSetSpec("test", config.val_scenes, config.scene_seed, image_size),
        "heldout": SceneSetSpec("heldout", config.heldout_scenes, config.scene_seed, image_size),
    }
    # Rank 0 renders (and caches); the others read the cache afterwards.
    sets = {}
    if dist_info.is_main:
        sets = {name: load_scene_set(spec, cache_root) for name, spec in specs.items()}
    dist_info.barrier()
    if not dist_info.is_main:
        sets = {"train": load_scene_set(specs["train"], cache_root)}
    logger.info("scenes ready in %.1f s", time.monotonic() - t_prepare)
    return sets


def _train_stream(
    config: TrainConfig, train_set, tokenizer, normalizer: ImageNormalizer, dist_info: Distributed, objectives
) -> TrainStream:
    """This process's batches of the training scenes, with the levels the objectives need."""
    return TrainStream(
        train_set,
        tokenizer,
        config.batch_size,
        config.seed,
        normalizer,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        augment_images=config.augment,
        unambiguous=config.unambiguous,
        levels=pipeline_levels(objectives),
    )


def _eval_sets(config: TrainConfig, sets, tokenizer) -> list[EvalSet]:
    """The validation pools: full captions of the test and held-out scenes, partial ones of the test."""
    return [
        build_eval_set("test", sets["test"], tokenizer, config.scene_seed),
        build_eval_set("heldout", sets["heldout"], tokenizer, config.scene_seed),
        build_eval_set("test-partial", sets["test"], tokenizer, config.scene_seed, full=False),
    ]


def _restore(
    saved_state: Mapping[str, Any], resume_path: Path, state: _RunState, model, optimizer, scaler
) -> None:
    """Put the model, optimiser, loss scaler, run state and random generators back as the
    checkpoint left them."""
    arch = saved_state["config"]["arch"]
    load_weights(
        model,
        resume_path,
        arch,
        state_dict=saved_state["model"],
        subject=_FIT_SUBJECT.format(arch=arch),
        advice="Resume with the model config it was written with, or start a new run.",
    )
    optimizer.load_state_dict(saved_state["optimizer"])
    for key in ("step", "epoch", "batch_in_epoch", "elapsed_s", "best_score"):
        setattr(state, key, type(getattr(state, key))(saved_state[key]))
    state.best_metrics = dict(saved_state.get("best_metrics", {}))
    state.losses = [tuple(x) for x in saved_state.get("losses", [])]
    state.evaluations = [dict(x) for x in saved_state.get("evaluations", [])]
    state.phase_starts = [int(x) for x in saved_state.get("phase_starts", [])]
    if "rng" in saved_state:
        checkpointing.set_rng_state(saved_state["rng"])
    if scaler is not None and saved_state.get("scaler"):
        scaler.load_state_dict(saved_state["scaler"])
    logger.info("resumed %s at step %d (epoch %d)", resume_path, state.step, state.epoch)


def _training_forward(model: nn.Module, dist_info: Distributed, device: torch.device) -> nn.Module:
    """The training forward of ``model``, wrapped in DDP when there are several processes."""
    train_model: nn.Module = TwinTowerForward(model)
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return train_model


def _training_window(
    config: TrainConfig, saved_state: Mapping[str, Any] | None, run_start: float
) -> float | None:
    """Seconds the schedule spreads over when training against a time budget (None otherwise).

    A time budget covers the whole command, data preparation included; what is left after it
    (less a reserve for the final validation and export) is the training window the schedule
    follows. A resumed run keeps the window it started with.
    """
    if config.time_budget_s is None:
        return None
    if saved_state is not None and saved_state.get("train_budget_s"):
        return float(saved_state["train_budget_s"])
    spent = time.monotonic() - run_start
    train_budget = config.time_budget_s - spent - min(60.0, 0.04 * config.time_budget_s)
    if train_budget <= 0:
        raise TrainingError(
            f"the time budget ({config.time_budget_s:.0f} s) was spent preparing the data "
            f"({spent:.0f} s); give a larger budget (the rendered scenes are cached now)"
        )
    logger.info("training window %.0f s of the %.0f s budget", train_budget, config.time_budget_s)
    return train_budget


# ------------------------------------------------------------------------------------------ the run


@dataclass
class _Run:
    """A prepared run: the training loop, validation with checkpoints, and the end-of-run export."""

    config: TrainConfig
    dist_info: Distributed
    device: torch.device
    model: nn.Module
    train_model: nn.Module  # the model's training forward (DDP-wrapped with several processes)
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler for float16 autocast, else None
    stream: TrainStream
    phases: tuple[Phase, ...]
    objectives: list[nn.Module]  # one per phase
    eval_sets: list[EvalSet]  # rank 0 only
    normalizer: ImageNormalizer
    emit: ProgressCallback
    state: _RunState
    out_dir: Path
    export_path: Path
    timer_start: float  # the monotonic time the run would have started at without interruptions
    train_budget: float | None  # the training window of a time budget, in seconds
    phase: int = 0  # the loss phase being trained
    last_eval_step: float = -1

    def __post_init__(self) -> None:
        self.steps_per_epoch = self.stream.batches_per_epoch
        self.total_steps = _total_steps(self.config, self.steps_per_epoch)
        self.eval_every = self.config.eval_every or self.steps_per_epoch
        self.lr_at = warmup_cosine(self.config.lr, self.config.warmup, self.config.min_lr_ratio)
        self.last_path = self.out_dir / checkpointing.LAST_NAME
        self.best_export = self.out_dir / "best.safetensors"

    def progress_now(self) -> float:
        """The fraction of the run done: of its steps, or of its time budget, whichever is further."""
        fractions = []
        if self.total_steps is not None:
            fractions.append(self.state.step / self.total_steps)
        if self.config.time_budget_s is not None:
            fractions.append((time.monotonic() - self.timer_start) / self.train_budget)
        return min(max(fractions), 1.0)

    def _record(self, kind: str, **fields: Any) -> TrainProgress:
        state = self.state
        return TrainProgress(
            kind,
            state.step,
            self.total_steps,
            state.epoch,
            self.progress_now(),
            time.monotonic() - self.timer_start,
            **fields,
        )

    # ---------------------------------------------------------------------------------- the loop

    def train(self) -> None:
        """Train until the run's progress reaches 1: epoch after epoch, from where it stands."""
        state = self.state
        bar = _progress_bar(self.config, self.dist_info, self.total_steps, state.step)
        self.last_eval_step = state.evaluations[-1]["step"] if state.evaluations else -1
        self.phase = phase_at(self.phases, self.progress_now())
        self.model.train()
        batches = None
        try:
            while _agreed_progress(self.dist_info, self.device, self.progress_now()) < 1.0:
                batches = prefetched(
                    self.stream.epoch(state.epoch, start_batch=state.batch_in_epoch), PREFETCH
                )
                if not self._train_epoch(batches, bar):
                    break
        finally:
            if batches is not None:
                batches.close()  # stops the producer of an epoch left midway
            if bar is not None:
                bar.close()

    def _train_epoch(self, batches, bar) -> bool:
        """Train on the batches of one epoch; False when the run's progress reached 1 first."""
        for batch in batches:
            progress = _agreed_progress(self.dist_info, self.device, self.progress_now())
            if progress >= 1.0:
                return False
            self._step(batch, progress, bar)
        return True

    def _step(self, batch, progress: float, bar) -> None:
        """One optimisation step at ``progress``, then the validation when one is due.

        Raises:
            TrainingDivergedError: the loss or the gradient of any process became NaN or infinite.
        """
        lr = self.lr_at(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        phase = phase_at(self.phases, progress)
        if phase > self.phase:
            self._begin_phase(phase)
        loss_value, terms, problem = _train_step(
            self.train_model,
            self.model,
            self.objectives[phase],
            self.optimizer,
            batch,
            self.config,
            self.device,
            self.scaler,
            self.stream.levels,
        )
        if _any_problem(self.dist_info, self.device, problem is not None):
            raise self._diverged(problem)
        state = self.state
        state.step += 1
        state.batch_in_epoch += 1
        if self.dist_info.is_main:
            state.losses.append((state.step, loss_value))
        self.emit(self._record("step", loss=loss_value, lr=lr, terms=terms))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
        if state.batch_in_epoch >= self.steps_per_epoch:
            state.epoch += 1
            state.batch_in_epoch = 0
        if state.step % self.eval_every == 0:
            self.validate_and_save()
            self.last_eval_step = state.step

    def _begin_phase(self, phase: int) -> None:
        """Go on to a later loss phase, keeping the weights the last one ended with (e.g. the
        contrastive warm start)."""
        if self.dist_info.is_main:
            path = self.out_dir / f"phase-{self.phase + 1}.safetensors"
            _export(self.model, self.config, path, {"step": float(self.state.step)})
            logger.info("phase %d ended at step %d: %s", self.phase + 1, self.state.step, path)
        self.phase = phase
        self.state.phase_starts.append(self.state.step)

    def _diverged(self, problem: str | None) -> TrainingDivergedError:
        where = f"step {self.state.step + 1} (epoch {self.state.epoch + 1})"
        keep = (
            f"the last good checkpoint is {self.last_path}"
            if self.last_path.exists()
            else "no checkpoint was written"
        )
        return TrainingDivergedError(
            f"training stopped: {problem or 'another process diverged'} at {where}; {keep}. "
            f"Lower the learning rate (now {self.config.lr:g}) or the clipping norm and try again"
        )

    # ---------------------------------------------------------------------------------- validation

    def validate_and_save(self) -> None:
        """Validate (rank 0), export the weights when they are the best so far, and write the
        checkpoint; every process waits for it."""
        if self.dist_info.is_main:
            state = self.state
            metrics = evaluate(self.model, self.eval_sets, self.normalizer, self.device)
            metrics["step"] = float(state.step)
            metrics["epoch"] = state.step / self.steps_per_epoch
            state.evaluations.append(metrics)
            score = metrics.get(self.config.select_metric, float("nan"))
            improved = math.isfinite(score) and score > state.best_score
            if improved:
                state.best_score = score
                state.best_metrics = dict(metrics)
                _export(self.model, self.config, self.best_export, metrics)
            _log_metrics(metrics, improved)
            self.emit(self._record("eval", metrics=metrics, message="new best" if improved else ""))
            self.save_last()
        self.dist_info.barrier()

    def save_last(self) -> None:
        """Write the checkpoint to resume from (rank 0)."""
        if not self.dist_info.is_main:
            return
        state = self.state
        checkpointing.save_training_state(
            self.last_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": state.step,
                "epoch": state.epoch,
                "batch_in_epoch": state.batch_in_epoch,
                "elapsed_s": time.monotonic() - self.timer_start,
                "train_budget_s": self.train_budget,
                "best_score": state.best_score,
                "best_metrics": state.best_metrics,
                "losses": state.losses,
                "evaluations": state.evaluations,
                "phase_starts": state.phase_starts,
                "rng": checkpointing.rng_state(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "config": self.config.to_dict(),
            },
        )
        self.emit(self._record("checkpoint", message=str(self.last_path)))

    # ---------------------------------------------------------------------------------- the end

    def stopped(self) -> str:
        """Why the run ended: "completed", or its time budget was spent."""
        if self.total_steps is None:
            return "time budget spent"
        if self.state.step < self.total_steps:
            return f"time budget spent after {self.state.step} of {self.total_steps} steps"
        return "completed"

    def finish(self) -> TrainResult:
        """Validate the last step (when not done yet), then on rank 0 export the best weights,
        draw the plot and write the history."""
        state, is_main = self.state, self.dist_info.is_main
        stopped = self.stopped()
        if self.last_eval_step != state.step:
            self.validate_and_save()
        final_metrics = state.evaluations[-1] if is_main else {}
        elapsed = time.monotonic() - self.timer_start
        plot_path = None
        exported = None
        if is_main:
            exported = _finish_export(self.model, self.config, self.best_export, self.export_path, state)
            plot_path = _plot(state, self.out_dir, self.config)
            _write_history(self.out_dir, self.config, state, stopped, elapsed)
            self.emit(
                TrainProgress(
                    "done",
                    state.step,
                    self.total_steps,
                    state.epoch,
                    1.0,
                    elapsed,
                    metrics=state.best_metrics,
                    message=stopped,
                )
            )
        self.dist_info.barrier()
        return TrainResult(
            out_dir=self.out_dir,
            steps=state.step,
            epochs_done=state.step / self.steps_per_epoch,
            elapsed_s=elapsed,
            stopped=stopped,
            best_metrics=state.best_metrics,
            final_metrics=final_metrics,
            export_path=exported,
            plot_path=plot_path,
            history={"losses": state.losses, "evaluations": state.evaluations},
        )


def _train_step(
    train_model,
    model,
    objective,
    optimizer,
    batch,
    config: TrainConfig,
    device,
    scaler=None,
    levels_from: LevelSettings | None = None,
):
    """One optimisation step. Returns (loss, named terms, problem); problem says what went non-finite.

    ``batch.levels``, computed by the data pipeline with ``levels_from``, go to the objective's
    adaptive ladder losses of those settings, which then skip computing them.
    """
    images = batch.images.to(device, non_blocking=True)
    tokens = batch.tokens.to(device, non_blocking=True)
    relevance = batch.relevance.to(device, non_blocking=True)
    levels = batch.levels.to(device, non_blocking=True) if batch.levels is not None else None
    with autocast(device):
        image_features, text_features, logit_scale = train_model(images, tokens)
    with levels_given(objective, relevance, levels, levels_from):
        terms = objective(
            image_features.float(), text_features.float(), relevance, logit_scale=logit_scale.float()
        )
    loss = terms["loss"]
    if not getattr(objective, "uses_logit_scale", True):
        # The logit scale gets a (zero) gradient anyway, which DDP needs from every parameter.
        loss = loss + 0.0 * logit_scale.sum()
    loss_value = float(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(loss_value):
        return loss_value, {}, f"the loss became {loss_value}"
    if scaler is not None:  # float16 autocast: scale the loss, skip steps whose gradients overflow
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if scaler is None and not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            return loss_value, {}, f"the gradient norm became {float(grad_norm)}"
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
    return loss_value, {k: float(v.detach()) for k, v in terms.items() if v.numel() == 1}, None


def pipeline_levels(objectives: list[nn.Module]) -> LevelSettings | None:
    """The level settings of the objectives' adaptive ladder losses, for the data pipeline.

    None when no objective has one, or when they differ (each then computes its own levels).
    """
    losses = [m for objective in objectives for m in objective.modules() if isinstance(m, AdaptiveLadderLoss)]
    settings = {loss.level_settings for loss in losses}
    return next(iter(settings)) if len(settings) == 1 else None


def _agreed_progress(dist_info: Distributed, device, progress: float) -> float:
    """The run's progress as every process will use it (the furthest any process has got)."""
    if not dist_info.enabled:
        return progress
    value = torch.tensor([progress], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return float(value.item())


def _any_problem(dist_info: Distributed, device, nonfinite: bool) -> bool:
    """True when any process saw a non-finite loss or gradient (every process decides the same)."""
    if not dist_info.enabled:
        return nonfinite
    flag = torch.tensor([1.0 if nonfinite else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item() > 0)


def _total_steps(config: TrainConfig, steps_per_epoch: int) -> int | None:
    candidates = []
    if config.steps is not None:
        candidates.append(config.steps)
    if config.epochs is not None:
        candidates.append(max(1, math.ceil(config.epochs * steps_per_epoch)))
    return min(candidates) if candidates else None


def _image_size(model: nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    if isinstance(size, tuple | list):
        if size[0] != size[1]:
            raise TrainingError(f"only square model inputs are supported, got {size}")
        size = size[0]
    return int(size)


def _emitter(on_progress: ProgressCallback | None, dist_info: Distributed) -> ProgressCallback:
    def emit(record: TrainProgress) -> None:
        if on_progress is not None and dist_info.is_main:
            on_progress(record)

    return emit


def _progress_bar(config: TrainConfig, dist_info: Distributed, total_steps: int | None, initial: int):
    if not (config.progress_bar and dist_info.is_main and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total_steps, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def _log_metrics(metrics: Mapping[str, float], improved: bool) -> None:
    shown = {k: v for k, v in metrics.items() if k.endswith(("R@1", "CS@100", "nDCG@20")) or k == "score"}
    text = " ".join(f"{k}={v:.3f}" for k, v in shown.items())
    logger.info("step %d: %s%s", int(metrics["step"]), text, " (best)" if improved else "")


def _export(model: nn.Module, config: TrainConfig, path: Path, metrics: Mapping[str, float]) -> None:
    from core.models import save_checkpoint

    wanted = {k: round(float(v), 4) for k, v in metrics.items() if math.isfinite(float(v))}
    metadata = {
        "training_command": config.command or "",
        "training_loss": config.loss,
        "training_config": json.dumps(config.to_dict(), sort_keys=True),
        "metrics": json.dumps(wanted, sort_keys=True),
    }
    # Weights are stored in float16 (half the size; loading casts back to float32).
    export_model = copy.deepcopy(_unwrap(model)).to("cpu", dtype=torch.float16)
    save_checkpoint(export_model, path, config.arch, extra_metadata=metadata)


def _finish_export(
    model, config: TrainConfig, best_export: Path, export_path: Path, state: _RunState
) -> Path | None:
    if best_export.is_file():
        if best_export.resolve() != export_path.resolve():
            export_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = export_path.with_name(f".{export_path.name}.tmp")
            tmp.write_bytes(best_export.read_bytes())
            os.replace(tmp, export_path)
        return export_path
    if state.evaluations:
        _export(model, config, export_path, state.evaluations[-1])
        return export_path
    return None


def _plot(state: _RunState, out_dir: Path, config: TrainConfig) -> Path | None:
    from trainer.plotting import plot_training

    try:
        return plot_training(
            state.losses,
            state.evaluations,
            out_dir / PLOT_NAME,
            title=f"{config.arch}: {config.loss}",
            phase_starts=state.phase_starts,
        )
    except Exception:  # a failed plot must not lose a finished run
        logger.exception("could not draw the training plot")
        return None


def _write_history(
    out_dir: Path, config: TrainConfig, state: _RunState, stopped: str, elapsed: float
) -> None:
    payload = {
        "config": config.to_dict(),
        "stopped": stopped,
        "steps": state.step,
        "elapsed_s": round(elapsed, 1),
        "best_metrics": state.best_metrics,
        "evaluations": state.evaluations,
        "phase_starts": state.phase_starts,
    }
    tmp = out_dir / f".{HISTORY_NAME}.tmp"
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / HISTORY_NAME)


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, for the record."""
    args = sys.argv if argv is None else argv
    return " ".join(shlex.quote(a) for a in args)
