"""Full fine-tuning: the last blocks of both towers, trained through the photos themselves.

For users with a GPU (or patience): the same data, captions, relevance and objective as the
adapter mode (:mod:`trainer.finetune`), but the model's last ``unfreeze_blocks`` transformer
blocks of the image and text towers (with their final norms and projections) are trained, so the
photos are decoded (:mod:`core.decode`) and run through the model every epoch. The result is a
new set of weights, saved as a full profile; using it re-embeds the library.

It runs as one process or under ``torchrun`` (DDP: NCCL on GPUs, gloo on CPU): every rank draws
the same global batches and trains on its share of each; validation is computed identically on
every rank, so early stopping agrees; only rank 0 writes files.

Forgetting is guarded as in the adapter mode: held-out photos, early stopping, and a blend toward
the base model, here in weight space (``base + blend * (tuned - base)``, as WiSE-FT), chosen on
the validation photos.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.errors import FinetuneError
from core.tags import TagProblem
from trainer.distributed import Distributed, join_process_group
from trainer.finetune import (
    GENERAL_CACHE,
    EarlyStopping,
    EvalPool,
    FinetuneConfig,
    FinetuneProgress,
    FinetuneResult,
    PreparedData,
    TaggedCollection,
    _Batch,
    _batch_relevance,
    _config_dict,
    _general_report_vectors,
    _heldout_report,
    _Loss,
    _Sampler,
    choose_blend,
    iter_general_set,
    iter_prepare,
    pool_report,
)

if TYPE_CHECKING:
    from core.library import Library

logger = logging.getLogger(__name__)

MAX_CACHED_PIXELS_BYTES = 1_500_000_000  # decoded inputs kept in memory up to this size


_current = Distributed()


@contextlib.contextmanager
def distributed(enabled: bool = True) -> Iterator[Distributed]:
    """Join the process group ``torchrun`` set up (gloo on CPU, NCCL on GPUs), for the block.

    Outside ``torchrun`` (no ``WORLD_SIZE`` > 1), or when not ``enabled``, it is one process.
    """
    global _current
    if not enabled:
        yield Distributed()
        return
    _current, created = join_process_group(torch.cuda.is_available())
    try:
        yield _current
    finally:
        _current = Distributed()
        if created:
            torch.distributed.destroy_process_group()


def _device(pref: str, dist: Distributed) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank)
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


# ------------------------------------------------------------------------------------------ the model


def unfreeze_last_blocks(model: nn.Module, blocks: int) -> list[str]:
    """Freeze everything but the last ``blocks`` transformer blocks of both towers, their final
    norms and projections. Returns the names of the trainable parameters.

    Raises:
        FinetuneError: the model's towers are not transformers (use the adapter mode).
    """
    if blocks < 1:
        raise FinetuneError(f"unfreeze at least one block, not {blocks}")
    for p in model.parameters():
        p.requires_grad_(False)
    visual = getattr(model, "visual", None)
    image_blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    text_owner = getattr(model, "text", model)
    text_blocks = getattr(getattr(text_owner, "transformer", None), "resblocks", None)
    if not isinstance(image_blocks, nn.ModuleList) or not isinstance(text_blocks, nn.ModuleList):
        raise FinetuneError(
            "full fine-tuning supports transformer (ViT) image and text towers only; use --mode adapter"
        )
    modules: list[nn.Module] = [*image_blocks[-blocks:], *text_blocks[-blocks:]]
    for owner, names in ((visual, ("ln_post",)), (text_owner, ("ln_final",))):
        for name in names:
            part = getattr(owner, name, None)
            if isinstance(part, nn.Module):
                modules.append(part)
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
    for owner, name in ((visual, "proj"), (text_owner, "text_projection")):
        part = getattr(owner, name, None)
        if isinstance(part, nn.Parameter):
            part.requires_grad_(True)
        elif isinstance(part, nn.Module):
            for p in part.parameters():
                p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


class _Images:
    """The model inputs of the data set's photos: decoded once and kept when they fit in memory."""

    def __init__(self, paths: list[str], preprocess, image_size: int, workers: int | None) -> None:
        self.paths = paths
        self.preprocess = preprocess
        self.size = image_size
        self.workers = workers
        self.cache: dict[int, torch.Tensor] | None = None
        per_image = 3 * image_size * image_size * 4
        if per_image * len(paths) <= MAX_CACHED_PIXELS_BYTES:
            self.cache = {}

    def _decode(self, index: int) -> torch.Tensor:
        from core.decode import open_image

        return self.preprocess(open_image(self.paths[index], self.size).image)

    def iter_load_all(self) -> Generator[FinetuneProgress, None, list[TagProblem]]:
        """Decode every photo (when they are kept), reporting the unreadable ones."""
        from core.decode import decode_parallel

        problems: list[TagProblem] = []
        if self.cache is None:
            return problems
        for n, (index, result) in enumerate(
            decode_parallel(range(len(self.paths)), self._decode, self.workers)
        ):
            if isinstance(result, Exception):
                problems.append(TagProblem(self.paths[index], f"cannot be decoded ({result})"))
            else:
                self.cache[index] = result
            if n % 64 == 63:
                yield FinetuneProgress("decode", n + 1, len(self.paths))
        return problems

    def get(self, indices: np.ndarray) -> torch.Tensor:
        if self.cache is not None:
            return torch.stack([self.cache[int(i)] for i in indices])
        return torch.stack([self._decode(int(i)) for i in indices])

    def readable(self, index: int) -> bool:
        return self.cache is None or index in self.cache


def _encode_images(
    model: nn.Module, images: _Images, items: np.ndarray, device, batch: int = 64
) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(items), batch):
            pixels = images.get(items[start : start + batch]).to(device)
            out.append(torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1).cpu())
    return torch.cat(out).numpy()


def _encode_texts(model: nn.Module, tokenizer, texts: list[str], device, batch: int = 256) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            tokens = tokenizer(texts[start : start + batch]).to(device)
            out.append(torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(out).numpy()


# ------------------------------------------------------------------------------------------ training


def iter_finetune_full(
    library: Library, collection: TaggedCollection, config: FinetuneConfig
) -> Generator[FinetuneProgress, None, FinetuneResult]:
    """Fine-tune the last blocks of the library's model on the collection (see the module doc)."""
    from core.embedder import Embedder
    from core.models import load_model, save_checkpoint
    from trainer.schedule import warmup_cosine
    from trainer.train import TwinTowerForward

    started = time.perf_counter()
    dist = _current
    device = _device(config.device, dist)
    loaded = load_model(library.model_spec, device=device)
    model = loaded.model
    trainable = unfreeze_last_blocks(model, config.unfreeze_blocks)
    base_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    base_embedder = library.embedder()
    image_size = int(base_embedder.image_size)

    items = list(collection.items)
    images = _Images([item.path for item in items], loaded.preprocess, image_size, config.decode_workers)
    problems = yield from images.iter_load_all()
    if problems:
        keep = [i for i in range(len(items)) if images.readable(i)]
        collection.problems.extend(problems)
        items = [items[i] for i in keep]
        images = _Images([item.path for item in items], loaded.preprocess, image_size, config.decode_workers)
        yield from images.iter_load_all()
    if len(items) < config.min_photos:
        raise FinetuneError(
            f"only {len(items)} tagged photos could be decoded; a fine-tune needs {config.min_photos}"
        )

    base_vectors = library.vectors().get([item.content_hash for item in items])
    data: PreparedData = yield from iter_prepare(
        [item.tags for item in items], base_vectors, base_embedder.encode_texts, config
    )
    objective = _Loss(config)
    yield from objective.iter_levels(data.table)

    forward = TwinTowerForward(model).to(device)
    train_model: nn.Module = forward
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_at = warmup_cosine(config.learning_rate, config.warmup, min_lr_ratio=0.05)

    tokens = loaded.tokenizer(data.caption_texts)
    rng = np.random.default_rng(config.seed + 1)  # the same on every rank: the same global batches
    sampler = _Sampler(data, config.batch_size, config.partial_captions, rng)
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = steps_per_epoch * config.epochs
    offsets = data.caption_offsets
    counts = offsets[1:] - offsets[:-1]
    torch.manual_seed(config.seed)

    def evaluate(pool: EvalPool, parts: bool = False) -> dict[str, Any]:
        model.eval()
        img = _encode_images(model, images, pool.items, device)
        txt = _encode_texts(model, loaded.tokenizer, [data.query_texts[c] for c in pool.queries], device)
        return pool_report(img, txt, pool, config.cs_k, parts)

    def set_blend(tuned: dict[str, torch.Tensor], blend: float) -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in base_state:
                    p.copy_(base_state[name] + blend * (tuned[name] - base_state[name]))

    base_test = evaluate(data.pools["test"], parts=True)
    val = evaluate(data.pools["val"])
    stopping = EarlyStopping.start(val, config.patience, config.epochs)
    best = {n: p.detach().clone() for n, p in model.named_parameters() if n in base_state}
    yield FinetuneProgress("validate", 0, total_steps, 0, config.epochs, None, val)
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for _ in range(steps_per_epoch):
            whole = sampler()
            rows = offsets[whole.captions] + rng.integers(0, counts[whole.captions])
            mine = np.arange(dist.rank, len(whole.items), dist.world_size)  # this rank's share
            batch = _Batch(whole.items[mine], whole.groups[mine], whole.captions[mine])
            rows = rows[mine]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step / max(total_steps, 1))
            img, txt, _scale = train_model(images.get(batch.items).to(device), tokens[rows].to(device))
            relevance = _batch_relevance(data, batch).to(device)
            loss = objective(img.float(), txt.float(), relevance, batch, batch.positives(data))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FinetuneError("the training loss became NaN or infinite; try a smaller learning rate")
            losses.append(value)
            yield FinetuneProgress("train", step, total_steps, epoch, config.epochs, value)
        val = evaluate(data.pools["val"])
        mean_loss = float(np.mean(losses))
        yield FinetuneProgress("validate", step, total_steps, epoch, config.epochs, mean_loss, val)
        if stopping.update(epoch, mean_loss, val):
            best = {n: p.detach().clone() for n, p in model.named_parameters() if n in base_state}
        elif stopping.stop:
            break

    blend_scores: dict[float, float] = {}
    for i, blend in enumerate(sorted(config.blends)):
        set_blend(best, blend)
        blend_scores[blend] = evaluate(data.pools["val"])["score"]
        yield FinetuneProgress("blend", i + 1, len(config.blends))
    chosen_blend = choose_blend(blend_scores, config.blend_tolerance)
    set_blend(best, chosen_blend)
    model.eval()

    yield FinetuneProgress("report", 0, None, message="measuring before and after")
    report: dict[str, Any] = _heldout_report(base_test, evaluate(data.pools["test"], parts=True))
    if config.general_scenes:
        general = yield from iter_general_set(
            base_embedder, config.general_scenes, library.profile_store.dir / GENERAL_CACHE
        )
        if general is not None:
            tuned = Embedder.from_model(
                model, loaded.preprocess, loaded.tokenizer, loaded.identity, device=device
            )
            tuned_general = yield from iter_general_set(tuned, config.general_scenes, None)
            report["general"] = _general_report_vectors(general, tuned_general, config.cs_k)
    report.update(
        {
            "mode": "full",
            "loss": config.loss,
            "config": _config_dict(config),
            "blend": chosen_blend,
            "blend_scores": {str(k): v for k, v in blend_scores.items()},
            **stopping.summary(),
            "split": {k: len(getattr(data.split, k)) for k in ("train", "val", "test")},
            "tag_sets": len(data.tag_sets),
            "trainable": trainable,
            "world_size": dist.world_size,
            "problems": [(p.path, p.reason) for p in collection.problems[:200]],
            "train_seconds": time.perf_counter() - started,
        }
    )
    weights_file = None
    if dist.is_main:
        folder = Path(tempfile.mkdtemp(prefix="ladderlens-finetune-"))
        weights_file = folder / "model.safetensors"
        save_checkpoint(
            model,
            weights_file,
            loaded.identity.arch,
            extra_metadata={"finetune_base": loaded.identity.to_dict(), "blend": chosen_blend},
        )
    dist.barrier()
    yield FinetuneProgress("done", 1, 1)
    return FinetuneResult(
        "full",
        report,
        weights_file=weights_file,
        base_identity=loaded.identity,
        base_spec=library.model_spec,
    )
