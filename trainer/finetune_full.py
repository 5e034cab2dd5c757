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

from core.devices import DeviceUnavailableError, pick_device, uses_cuda
from core.errors import FinetuneError
from core.tags import TagProblem
from trainer.distributed import Distributed, join_process_group
from trainer.finetune_config import FinetuneConfig, FinetuneProgress, FinetuneResult
from trainer.finetune_data import (
    Batch,
    LevelTables,
    PreparedData,
    Sampler,
    TaggedCollection,
    TaggedItem,
    batch_relevance,
    iter_prepare,
)
from trainer.finetune_eval import (
    GENERAL_CACHE,
    EvalPool,
    choose_blend,
    general_report_vectors,
    heldout_report,
    iter_blend_scores,
    iter_epochs,
    iter_general_set,
    pool_report,
)
from trainer.objectives import MultiPositiveObjective

if TYPE_CHECKING:
    from core.library import Library
    from core.models import LoadedModel

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
    _current, created = join_process_group(uses_cuda())
    try:
        yield _current
    finally:
        _current = Distributed()
        if created:
            torch.distributed.destroy_process_group()


def _device(pref: str, dist: Distributed) -> torch.device:
    """The device this process trains on: ``pref`` (see :func:`core.devices.pick_device`), the
    process's own GPU in a distributed run; "auto" never chooses MPS."""
    try:
        return pick_device(pref, local_rank=dist.local_rank, allow_mps=False)
    except DeviceUnavailableError as exc:
        raise FinetuneError(str(exc)) from exc


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
    text_owner = getattr(model, "text", model)
    image_blocks = _transformer_blocks(visual)
    text_blocks = _transformer_blocks(text_owner)
    if image_blocks is None or text_blocks is None:
        raise FinetuneError(
            "full fine-tuning supports transformer (ViT) image and text towers only; use --mode adapter"
        )
    trained: list[nn.Module | nn.Parameter] = [*image_blocks[-blocks:], *text_blocks[-blocks:]]
    for owner, name in ((visual, "ln_post"), (text_owner, "ln_final")):
        part = getattr(owner, name, None)
        if isinstance(part, nn.Module):
            trained.append(part)
    for owner, name in ((visual, "proj"), (text_owner, "text_projection")):
        part = getattr(owner, name, None)
        if isinstance(part, nn.Parameter | nn.Module):
            trained.append(part)
    for part in trained:
        part.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _transformer_blocks(tower: object) -> nn.ModuleList | None:
    """The residual blocks of a transformer tower (open_clip's ``transformer.resblocks``)."""
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", None)
    return blocks if isinstance(blocks, nn.ModuleList) else None


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
    from core.models import load_model

    started = time.perf_counter()
    dist = _current
    device = _device(config.device, dist)
    loaded = load_model(library.model_spec, device=device)
    trainable = unfreeze_last_blocks(loaded.model, config.unfreeze_blocks)
    base_embedder = library.embedder()
    items, images = yield from _iter_decode(
        collection, loaded.preprocess, int(base_embedder.image_size), config
    )
    base_vectors = library.vectors().get([item.content_hash for item in items])
    data: PreparedData = yield from iter_prepare(
        [item.tags for item in items], base_vectors, base_embedder.encode_texts, config
    )
    objective = MultiPositiveObjective(config.loss, config.temperature)
    tables = LevelTables(objective.level_settings)
    yield from tables.iter_compute(data.table)
    trainer = _FullTrainer(loaded, images, data, config, objective, tables, dist, device)

    base_test = trainer.evaluate(data.pools["test"], parts=True)
    stopping, best = yield from iter_epochs(
        trainer,
        trainer.evaluate(data.pools["val"]),
        config.epochs,
        trainer.sampler.steps_per_epoch,
        config.patience,
    )
    blend_scores = yield from iter_blend_scores(config.blends, lambda blend: trainer.blend_score(best, blend))
    chosen_blend = choose_blend(blend_scores, config.blend_tolerance)
    trainer.set_blend(best, chosen_blend)
    loaded.model.eval()

    yield FinetuneProgress("report", 0, None, message="measuring before and after")
    report: dict[str, Any] = heldout_report(base_test, trainer.evaluate(data.pools["test"], parts=True))
    if config.general_scenes:
        general = yield from _iter_general_report(library, base_embedder, loaded, config, device)
        if general is not None:
            report["general"] = general
    report.update(
        {
            "mode": "full",
            "loss": config.loss,
            "config": config.to_dict(),
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
    weights_file = _save_weights(loaded, chosen_blend) if dist.is_main else None
    dist.barrier()
    yield FinetuneProgress("done", 1, 1)
    return FinetuneResult(
        "full",
        report,
        weights_file=weights_file,
        base_identity=loaded.identity,
        base_spec=library.model_spec,
    )


def _iter_decode(
    collection: TaggedCollection, preprocess, image_size: int, config: FinetuneConfig
) -> Generator[FinetuneProgress, None, tuple[list[TaggedItem], _Images]]:
    """Decode the collection's photos; the unreadable ones are dropped and become its problems.

    Raises:
        FinetuneError: fewer than ``config.min_photos`` photos could be decoded.
    """
    items = list(collection.items)
    images = _Images([item.path for item in items], preprocess, image_size, config.decode_workers)
    problems = yield from images.iter_load_all()
    if problems:
        keep = [i for i in range(len(items)) if images.readable(i)]
        collection.problems.extend(problems)
        items = [items[i] for i in keep]
        images = _Images([item.path for item in items], preprocess, image_size, config.decode_workers)
        yield from images.iter_load_all()
    if len(items) < config.min_photos:
        raise FinetuneError(
            f"only {len(items)} tagged photos could be decoded; a fine-tune needs {config.min_photos}"
        )
    return items, images


class _FullTrainer:
    """The model's trainable blocks, their optimiser, the decoded photos and the prepared data:
    one step (this process's share of a global batch) or one evaluation at a time (an
    :class:`~trainer.finetune_eval.EpochTrainer`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        images: _Images,
        data: PreparedData,
        config: FinetuneConfig,
        objective: MultiPositiveObjective,
        tables: LevelTables,
        dist: Distributed,
        device: torch.device,
    ) -> None:
        from trainer.schedule import warmup_cosine

        self.model = model = loaded.model
        self.loaded, self.images, self.data, self.config = loaded, images, data, config
        self.tables, self.dist, self.device = tables, dist, device
        # The objective's buffers (its temperature, the ladder terms' margins) meet the model's
        # features on the training device.
        self.objective = objective.to(device)
        self.base_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.train_model = _training_forward(model, dist, device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.lr_at = warmup_cosine(config.learning_rate, config.warmup, min_lr_ratio=0.05)
        self.tokens = loaded.tokenizer(data.caption_texts)
        self.rng = np.random.default_rng(config.seed + 1)  # the same on every rank: the same global batches
        self.sampler = Sampler(data, config.batch_size, config.partial_captions, self.rng)
        self.total_steps = self.sampler.steps_per_epoch * config.epochs
        self.counts = data.caption_offsets[1:] - data.caption_offsets[:-1]
        torch.manual_seed(config.seed)

    def evaluate(self, pool: EvalPool, parts: bool = False) -> dict[str, Any]:
        """:func:`~trainer.finetune_eval.pool_report` of the model as it is now on ``pool``."""
        self.model.eval()
        img = _encode_images(self.model, self.images, pool.items, self.device)
        texts = [self.data.query_texts[c] for c in pool.queries]
        txt = _encode_texts(self.model, self.loaded.tokenizer, texts, self.device)
        return pool_report(img, txt, pool, self.config.cs_k, parts)

    def set_blend(self, tuned: dict[str, torch.Tensor], blend: float) -> None:
        """Set the trainable weights to ``base + blend * (tuned - base)``."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in self.base_state:
                    p.copy_(self.base_state[name] + blend * (tuned[name] - self.base_state[name]))

    def blend_score(self, tuned: dict[str, torch.Tensor], blend: float) -> float:
        """The validation score of the weights blended ``blend`` of the way toward ``tuned``."""
        self.set_blend(tuned, blend)
        return self.evaluate(self.data.pools["val"])["score"]

    def begin_epoch(self) -> None:
        self.model.train()

    def train_step(self, step: int) -> float:
        data, device = self.data, self.device
        batch, rows = self._share_of_next_batch()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step / max(self.total_steps, 1))
        img, txt, _scale = self.train_model(
            self.images.get(batch.items).to(device), self.tokens[rows].to(device)
        )
        relevance = batch_relevance(data, batch).to(device)
        positives = batch.positives(data)
        levels = self.tables.batch_levels(batch, positives)
        loss = self.objective(
            img.float(),
            txt.float(),
            relevance,
            torch.from_numpy(positives).to(device),
            levels.to(device) if levels is not None else None,
        )["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FinetuneError("the training loss became NaN or infinite; try a smaller learning rate")
        return value

    def _share_of_next_batch(self) -> tuple[Batch, np.ndarray]:
        """This process's share of the next global batch, and the caption rows of its photos."""
        whole = self.sampler()
        rows = self.data.caption_offsets[whole.captions] + self.rng.integers(0, self.counts[whole.captions])
        mine = np.arange(self.dist.rank, len(whole.items), self.dist.world_size)
        return Batch(whole.items[mine], whole.groups[mine], whole.captions[mine]), rows[mine]

    def validate_epoch(self) -> dict[str, Any]:
        return self.evaluate(self.data.pools["val"])

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if n in self.base_state}


def _training_forward(model: nn.Module, dist: Distributed, device: torch.device) -> nn.Module:
    """The model's training forward on ``device``, wrapped in DDP when there are several processes."""
    from trainer.train import TwinTowerForward

    forward = TwinTowerForward(model).to(device)
    if not dist.enabled:
        return forward
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)


def _iter_general_report(
    library: Library, base_embedder, loaded: LoadedModel, config: FinetuneConfig, device: torch.device
) -> Generator[FinetuneProgress, None, dict[str, Any] | None]:
    """Base and fine-tuned metrics on the general set (None when it cannot be made)."""
    from core.embedder import Embedder

    general = yield from iter_general_set(
        base_embedder, config.general_scenes, library.profile_store.dir / GENERAL_CACHE
    )
    if general is None:
        return None
    tuned = Embedder.from_model(
        loaded.model, loaded.preprocess, loaded.tokenizer, loaded.identity, device=device
    )
    tuned_general = yield from iter_general_set(tuned, config.general_scenes, None)
    return general_report_vectors(general, tuned_general, config.cs_k)


def _save_weights(loaded: LoadedModel, blend: float) -> Path:
    """Write the fine-tuned weights to a new temporary folder; returns the file."""
    from core.models import save_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="ladderlens-finetune-"))
    weights_file = folder / "model.safetensors"
    save_checkpoint(
        loaded.model,
        weights_file,
        loaded.identity.arch,
        extra_metadata={"finetune_base": loaded.identity.to_dict(), "blend": blend},
    )
    return weights_file
