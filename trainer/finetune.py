"""Fine-tune on the user's tagged folders with the adaptive ladder loss.

The default mode trains a residual adapter (:mod:`trainer.adapter_model`) on the library's stored
vectors of the tagged photos: no photo is decoded again, and the text side learns the user's own
vocabulary from captions made of their tags. A training pair is (a photo's stored image vector,
a caption encoded by the frozen text encoder naming the photo's whole tag set or one of its
tags); the relevance between any photo and any caption of a batch is graded from the tags
(:mod:`trainer.tag_relevance`: how much of the caption's tags the photo carries, with the
frozen encoder's similarity between tag phrases), so the (adaptive) ladder loss has real
degrees of relevance to order.

Guarding against forgetting:

* the tagged photos are split (per tag set) into train, validation and test photos;
* each epoch is validated, training stops when validation stops improving (``patience``) and the
  best epoch is kept;
* the adapter is blended toward the base model, ``x + blend * residual(x)``: the smallest blend
  whose validation score is within ``blend_tolerance`` of the best is chosen;
* the report compares the base model and the fine-tune on the *test* photos (held out from both
  training and these choices) and on a general set, the scene world, to show the cost.

Batches hold at most one photo per distinct tag set: two photos with the same tags are equally
relevant to each other's captions, so neither may serve as the other's negative.

The default objective is InfoNCE plus the adaptive ladder loss (``"infonce+adaptive"``). The
ladder's first boundary is the hardest-negative triplet; on frozen features of a model that
cannot yet tell some of the tagged things apart, hardest negatives are often photos that look
alike but carry other tags, and the hinge losses alone (triplet and ladder alike) were measured
to lose ground there (``benchmarks/bench_finetune.py quality``). InfoNCE gives every negative a
say and anchors the training; the ladder term on top orders partial matches by their relevance
(higher CS@K than the same fine-tune with the triplet term). Each loss alone stays selectable.

Every fine-tune is a generator of :class:`FinetuneProgress` (each yield a cancellation point;
closing it leaves nothing behind) returning a :class:`FinetuneResult`; nothing is saved until
:func:`save_profile`.

This module runs a fine-tune (:func:`iter_finetune`) and trains the adapter; the rest lives
beside it: the settings, progress records and result in :mod:`trainer.finetune_config`, the
tagged photos, split, captions and batches in :mod:`trainer.finetune_data`, metrics, early
stopping, the blend and the reports in :mod:`trainer.finetune_eval`, the loss in
:class:`trainer.objectives.MultiPositiveObjective`, and the full mode in
:mod:`trainer.finetune_full`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import FinetuneError, ProfileError
from core.progress import drive
from trainer.adapter_model import TwinAdapter
from trainer.finetune_config import FinetuneConfig, FinetuneProgress, FinetuneResult
from trainer.finetune_data import (
    LevelTables,
    PreparedData,
    Sampler,
    batch_relevance,
    check_collection,
    iter_collect,
    iter_encode_texts,
    iter_prepare,
)
from trainer.finetune_eval import (
    GENERAL_CACHE,
    EvalPool,
    GeneralSet,
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
    from core.embedder import Embedder
    from core.library import Library
    from core.profiles import ProfileInfo

__all__ = [
    "FinetuneConfig",
    "FinetuneProgress",
    "FinetuneResult",
    "finetune",
    "format_report",
    "iter_anchor_texts",
    "iter_collect",
    "iter_finetune",
    "iter_train_adapter",
    "save_profile",
]

logger = logging.getLogger(__name__)

ANCHORS_PER_STEP = 64
PRESERVE_SCALE = 100.0  # squared cosine differences are small: this puts preserve=1 on InfoNCE's scale


# ------------------------------------------------------------------------------------------ adapter mode


def iter_train_adapter(
    data: PreparedData,
    config: FinetuneConfig,
    general: GeneralSet | None = None,
    anchors: np.ndarray | None = None,
) -> Generator[FinetuneProgress, None, tuple[Any, dict[str, Any]]]:
    """Train an adapter on prepared data; returns (core Adapter with the chosen blend, report).

    ``anchors``: base-model vectors of everyday captions (:func:`iter_anchor_texts`). With
    ``config.preserve`` > 0 each step also asks the adapted model to score the batch's photos
    against a sample of them as the base model does (mean squared difference of the cosine
    similarities, weighted by ``preserve``): what the model knew before stays searchable.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    model = TwinAdapter(data.image.shape[1], config.hidden)
    objective = MultiPositiveObjective(config.loss, config.temperature)
    tables = LevelTables(objective.level_settings)
    yield from tables.iter_compute(data.table)
    trainer = _AdapterTrainer(model, data, config, objective, tables, rng, anchors)
    base_val = trainer.validate(0.0, data.pools["val"])
    stopping, best_state = yield from iter_epochs(
        trainer, base_val, trainer.epochs, trainer.sampler.steps_per_epoch, config.patience
    )
    model.load_state_dict(best_state)
    model.eval()

    yield FinetuneProgress("blend", 0, len(config.blends), message="choosing the blend toward the base model")
    blend_scores = yield from iter_blend_scores(
        config.blends, lambda blend: trainer.validate(blend, data.pools["val"])["score"]
    )
    chosen_blend = choose_blend(blend_scores, config.blend_tolerance)

    yield FinetuneProgress("report", 0, None, message="measuring before and after")
    report: dict[str, Any] = heldout_report(
        trainer.validate(0.0, data.pools["test"], parts=True),
        trainer.validate(chosen_blend, data.pools["test"], parts=True),
    )
    if general is not None:
        report["general"] = _general_report(model, general, chosen_blend, config.cs_k)
    report.update(
        {
            "blend": chosen_blend,
            "blend_scores": {str(k): v for k, v in blend_scores.items()},
            **stopping.summary(),
            "split": {k: len(getattr(data.split, k)) for k in ("train", "val", "test")},
            "tag_sets": len(data.tag_sets),
            "caption_sets": len(data.caption_sets),
            "train_seconds": time.perf_counter() - started,
        }
    )
    adapter = model.export(chosen_blend)
    return adapter, report


class _AdapterTrainer:
    """An adapter, its optimiser and the prepared data as tensors: one step or one validation at a
    time (an :class:`~trainer.finetune_eval.EpochTrainer`)."""

    def __init__(
        self,
        model: TwinAdapter,
        data: PreparedData,
        config: FinetuneConfig,
        objective: MultiPositiveObjective,
        tables: LevelTables,
        rng: np.random.Generator,
        anchors: np.ndarray | None,
    ) -> None:
        from trainer.schedule import warmup_cosine

        self.model, self.data, self.config = model, data, config
        self.objective, self.tables, self.rng = objective, tables, rng
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.lr_at = warmup_cosine(config.learning_rate, config.warmup, min_lr_ratio=0.05)
        self.sampler = Sampler(data, config.batch_size, config.partial_captions, rng)
        # many photos need fewer passes: at most max_steps steps in all
        self.epochs = max(1, min(config.epochs, config.max_steps // self.sampler.steps_per_epoch))
        self.total_steps = self.sampler.steps_per_epoch * self.epochs
        self.image = torch.from_numpy(data.image)
        self.captions = torch.from_numpy(data.caption_vecs)
        self.counts = data.caption_offsets[1:] - data.caption_offsets[:-1]
        keep = None
        if anchors is not None:
            keep = torch.from_numpy(np.ascontiguousarray(anchors, dtype=np.float32))
        if keep is not None and (not config.preserve or not len(keep)):
            keep = None
        self.keep = keep

    def validate(self, blend: float, pool: EvalPool, parts: bool = False) -> dict[str, Any]:
        """:func:`~trainer.finetune_eval.pool_report` of the adapter at ``blend`` on ``pool``."""
        with torch.no_grad():
            img = self.model.image(self.image[pool.items], blend).numpy()
            txt = self.model.text(torch.from_numpy(self.data.query_vecs[pool.queries]), blend).numpy()
        return pool_report(img, txt, pool, self.config.cs_k, parts)

    def begin_epoch(self) -> None:
        self.model.train()

    def train_step(self, step: int) -> float:
        data, rng = self.data, self.rng
        batch = self.sampler()
        rows = data.caption_offsets[batch.captions] + rng.integers(0, self.counts[batch.captions])
        relevance = batch_relevance(data, batch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step / max(self.total_steps, 1))
        img, txt = self.model(self.image[batch.items], self.captions[rows])
        positives = batch.positives(data)
        levels = self.tables.batch_levels(batch, positives)
        loss = self.objective(img, txt, relevance, torch.from_numpy(positives), levels)["loss"]
        if self.keep is not None:
            loss = (
                loss
                + self.config.preserve * self._anchor_drift(self.image[batch.items], img) * PRESERVE_SCALE
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FinetuneError("the training loss became NaN or infinite; try a smaller learning rate")
        return value

    def _anchor_drift(self, base_image: torch.Tensor, adapted_image: torch.Tensor) -> torch.Tensor:
        """How far the adapted model's scores of the batch's photos against a sample of everyday
        captions are from the base model's (mean squared difference)."""
        assert self.keep is not None
        keep = self.keep
        sample = keep[
            torch.from_numpy(self.rng.integers(0, len(keep), size=min(ANCHORS_PER_STEP, len(keep))))
        ]
        before = sample @ base_image.T
        after = self.model.text(sample) @ adapted_image.T
        return torch.mean((after - before) ** 2)

    def validate_epoch(self) -> dict[str, Any]:
        self.model.eval()
        return self.validate(1.0, self.data.pools["val"])

    def snapshot(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.model.state_dict())


def _general_report(model: TwinAdapter, general: GeneralSet, blend: float, cs_k: int) -> dict[str, Any]:
    with torch.no_grad():
        img = torch.from_numpy(np.ascontiguousarray(general.image, dtype=np.float32))
        txt = torch.from_numpy(np.ascontiguousarray(general.text, dtype=np.float32))
        adapted_img = model.image(img, blend).numpy()
        adapted_txt = model.text(txt, blend).numpy()
    tuned = GeneralSet(adapted_img, adapted_txt, general.relevance, general.gt)
    return general_report_vectors(general, tuned, cs_k)


def iter_anchor_texts(
    embedder: Embedder, count: int, cache_dir: Path | None = None, seed: int = 0
) -> Generator[FinetuneProgress, None, np.ndarray]:
    """Base-model vectors of ``count`` everyday captions (scene-world wording, partial and full;
    none of them describes the general set's photos), cached per model identity."""
    from trainer.captions import caption, partial_caption
    from trainer.scenes import sample_scenes

    if count < 1:
        return np.empty((0, embedder.dim), np.float32)
    cache = cache_dir / f"anchors-{embedder.identity.key}.n{count}.s{seed}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            stored = np.load(cache)
            if stored.shape == (count, embedder.dim):
                return stored
        except (OSError, ValueError) as e:
            logger.info("ignoring the anchor cache %s: %s", cache, e)
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(count, seed=seed + 2027, split="train")
    texts = [caption(s, rng) if i % 2 else partial_caption(s, rng)[0] for i, s in enumerate(scenes)]
    vectors = yield from iter_encode_texts(texts, embedder.encode_texts)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, cache)
        except OSError as e:
            logger.info("cannot cache the anchor captions in %s: %s", cache, e)
    return vectors


# ------------------------------------------------------------------------------------------ top level


def iter_finetune(
    library: Library,
    root: str | os.PathLike[str] | None,
    config: FinetuneConfig | None = None,
    *,
    include_user_tags: bool = True,
) -> Generator[FinetuneProgress, None, FinetuneResult]:
    """Fine-tune the library's model on the tagged photos under ``root`` (and those tagged in the
    app). Nothing is saved: pass the result to :func:`save_profile`. Closing the generator at a
    yield cancels it and leaves the library as it was.

    Raises:
        FinetuneError: bad settings, too few tagged photos or tags, a diverged run.
        FolderError: ``root`` is missing or unreadable.
        ModelUnavailableError, ModelError: the library's model cannot be loaded.
    """
    config = config or FinetuneConfig()
    config.validate()
    started = time.perf_counter()
    embedder = library.embedder()
    base_identity = embedder.identity
    base_spec = library.model_spec
    collection = yield from iter_collect(library, root, include_user_tags=include_user_tags)
    check_collection(collection, config)
    if config.mode == "full":
        from trainer.finetune_full import iter_finetune_full

        result = yield from iter_finetune_full(library, collection, config)
        result.report["collection"] = collection.summary()
        result.report["elapsed_seconds"] = time.perf_counter() - started
        return result

    image = library.vectors().get([item.content_hash for item in collection.items])
    data = yield from iter_prepare(
        [item.tags for item in collection.items], image, embedder.encode_texts, config
    )
    general = None
    cache = library.profile_store.dir / GENERAL_CACHE
    if config.general_scenes:
        general = yield from iter_general_set(embedder, config.general_scenes, cache)
    anchors = None
    if config.preserve:
        anchors = yield from iter_anchor_texts(embedder, config.anchors, cache)
    adapter, report = yield from iter_train_adapter(data, config, general, anchors)
    report.update(
        {
            "mode": "adapter",
            "loss": config.loss,
            "config": config.to_dict(),
            "collection": collection.summary(),
            "problems": [(p.path, p.reason) for p in collection.problems[:200]],
            "elapsed_seconds": time.perf_counter() - started,
        }
    )
    yield FinetuneProgress("done", 1, 1)
    return FinetuneResult(
        "adapter", report, adapter=adapter, base_identity=base_identity, base_spec=base_spec
    )


def finetune(
    library: Library,
    root: str | os.PathLike[str] | None,
    config: FinetuneConfig | None = None,
    on_progress: Callable[[FinetuneProgress], None] | None = None,
    **options: Any,
) -> FinetuneResult:
    """:func:`iter_finetune`, run to its end."""
    return drive(iter_finetune(library, root, config, **options), on_progress)


def save_profile(library: Library, result: FinetuneResult, name: str) -> ProfileInfo:
    """Save a fine-tune as the next version of profile ``name`` (the library's model must be the
    one it was trained on).

    Raises:
        ProfileError: the library's model changed since, or the name is invalid.
    """
    if result.base_identity is None or result.base_spec is None:
        raise ProfileError("This fine-tune does not record its base model; it cannot be saved.")
    current = library.embedder().identity
    if current.with_adapter(None) != result.base_identity.with_adapter(None):
        raise ProfileError(
            f"The library's model changed to {current} since this fine-tune started on "
            f"{result.base_identity}; fine-tune again."
        )
    if result.mode == "adapter":
        return library.profile_store.save_adapter(
            name, result.adapter, result.base_identity, result.base_spec, result.report
        )
    assert result.weights_file is not None
    return library.profile_store.save_model(
        name, result.weights_file, result.base_identity, result.base_spec, result.report
    )


# ------------------------------------------------------------------------------------------ report table


def format_report(report: Mapping[str, Any]) -> str:
    """The before/after table of a fine-tune report, as plain text."""
    lines = []
    rows = [
        ("held-out, one-tag queries", report.get("heldout_tags")),
        ("held-out, tag-set queries", report.get("heldout_sets")),
        ("general (scene world)", report.get("general")),
    ]
    if not rows[0][1] and not rows[1][1]:
        rows[0] = ("held-out tagged photos", report.get("heldout"))
    header = f"{'':26} {'':10} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'CS@K':>12} {'nDCG@10':>8}"
    lines.append(header)
    for title, part in rows:
        if not part:
            continue
        for label in ("base", "finetuned"):
            m = part[label]
            cs = f"{m['CS']:.3f}@{int(m['CS_k'])}" if math.isfinite(m["CS"]) else "n/a"
            lines.append(
                f"{title if label == 'base' else '':26} {label:10} {m['R@1']:6.3f} {m['R@5']:6.3f} "
                f"{m['R@10']:6.3f} {cs:>12} {m['nDCG@10']:8.3f}"
            )
        base, tuned = part["base"], part["finetuned"]
        lines.append(
            f"{'':26} {'change':10} {tuned['R@1'] - base['R@1']:+6.3f} {tuned['R@5'] - base['R@5']:+6.3f} "
            f"{tuned['R@10'] - base['R@10']:+6.3f} {_delta(base['CS'], tuned['CS']):>12} "
            f"{tuned['nDCG@10'] - base['nDCG@10']:+8.3f}"
        )
    heldout = report.get("heldout", {}).get("base")
    if heldout:
        lines.append(
            f"(held out: {int(heldout['photos'])} photos, {int(heldout['queries'])} queries naming one "
            f"tag or a photo's tags; CS@K ceiling {heldout['CS_ceiling']:.3f})"
        )
    if "blend" in report:
        lines.append(
            f"blend toward the base model: {report['blend']:.2f}; best epoch {report.get('best_epoch')} "
            f"of {report.get('epochs_run')}{' (stopped early)' if report.get('stopped_early') else ''}"
        )
    return "\n".join(lines)


def _delta(a: float, b: float) -> str:
    return f"{b - a:+.3f}" if math.isfinite(a) and math.isfinite(b) else "n/a"
