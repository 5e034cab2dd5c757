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
say and anchors the training; the ladder term on top orders partial matches by their relevance.
With the first starter model this gave a higher R@K than the same fine-tune with the triplet term;
with starter version 2 the two are level, and InfoNCE with soft targets (``softnce``) is well
behind both (BENCHMARKS.md). Each loss alone stays selectable.

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
    judge_change,
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
    "report_verdict",
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
    test = data.pools["test"]
    report: dict[str, Any] = heldout_report(
        trainer.validate(0.0, test, parts=True),
        trainer.validate(chosen_blend, test, parts=True),
        [" + ".join(data.caption_sets[q]) for q in test.queries],
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
    single = sorted(tag for tag, count in collection.counts().items() if count == 1)
    if config.mode == "full":
        from trainer.finetune_full import iter_finetune_full

        result = yield from iter_finetune_full(library, collection, config)
        result.report["collection"] = collection.summary()
        result.report["single_photo_tags"] = single
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
            "single_photo_tags": single,
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


# ------------------------------------------------------------------------------------------ the report

VERDICTS = {
    "gain": "Worth applying",
    "none": "No gain: not worth applying",
    "loss": "Worse: do not apply",
}
SINGLE_PHOTO_WARNING = (
    "One photo cannot be both learned from and held out to check the result, so the fine-tune "
    "learns nothing reliable about such a tag: tag a few more photos with it."
)


def format_report(report: Mapping[str, Any]) -> str:
    """A fine-tune report as plain text: the recommendation and why (:func:`report_verdict`), what
    improved and what got worse in words, the tags with a single photo, then the before/after
    table of the numbers."""
    verdict, reason = report_verdict(report)
    lines = [f"Recommendation: {VERDICTS[verdict]}.", reason]
    lines += _change_lines(report, verdict)
    single = report.get("single_photo_tags") or []
    if single:
        lines += [
            "",
            f"Warning: {_tag_list(single)} {_have(len(single))} only one photo. {SINGLE_PHOTO_WARNING}",
        ]
    lines += ["", "Details", *_report_table(report)]
    return "\n".join(lines)


def report_verdict(report: Mapping[str, Any]) -> tuple[str, str]:
    """The verdict of a fine-tune report, "gain", "none" or "loss" (the keys of
    :data:`VERDICTS`), and a sentence saying why.

    It rests on the change of the overall score (the mean of R@1, R@5, R@10, coherence and nDCG@10
    per search) over the searches of the held-out photos: a change is noise unless it is at least
    one search's worth and its 95% bootstrap interval over the searches leaves out zero
    (:func:`trainer.finetune_eval.judge_change`).
    """
    change, queries, low, high = _heldout_change(report)
    if not queries:
        return "none", "There were no held-out photos to measure the fine-tune on."
    verdict = judge_change(change, queries, low, high)
    where = f"On {int(queries)} searches of your held-out photos (photos the fine-tune never trained on)"
    interval = f" (95% range {low:+.3f} to {high:+.3f})" if low is not None and high is not None else ""
    if verdict == "gain":
        reason = f"{where}, the overall score rose by {change:.3f}{interval}: more than noise."
    elif verdict == "loss":
        reason = f"{where}, the overall score fell by {-change:.3f}{interval}: more than noise."
    elif round(change, 3) == 0:
        reason = f"{where}, the overall score did not change: 0.000."
    else:
        reason = (
            f"{where}, the overall score moved by {change:+.3f}{interval}, within noise: a change must be "
            f"at least one search's worth ({1 / queries:.3f}) and its range must leave out zero."
        )
    if report.get("blend") == 0:
        reason += " The fine-tune kept none of its training (blend 0): it is the base model as it was."
    if verdict == "gain" and _general_direction(report) < 0:
        reason += " But everyday searches unlike your tags got worse: see below."
    return verdict, reason


def _heldout_change(report: Mapping[str, Any]) -> tuple[float, float, float | None, float | None]:
    """(change of the held-out score, searches, bootstrap low, high); without the bootstrap (a
    report saved before it was measured) the change of the mean score and no interval."""
    change = report.get("heldout_change")
    if change:
        return change["change"], change["queries"], change["low"], change["high"]
    heldout = report.get("heldout") or {}
    if not heldout:
        return 0.0, 0.0, None, None
    base, tuned = heldout["base"], heldout["finetuned"]
    return tuned["score"] - base["score"], base["queries"], None, None


def _change_lines(report: Mapping[str, Any], verdict: str) -> list[str]:
    """What improved, what got worse and what stayed the same, one line each in words."""
    found: dict[int, list[str]] = {1: [], -1: [], 0: []}
    for direction, text in _heldout_moves(report) + _tag_moves(report) + _general_moves(report):
        found[direction].append(text)
    noise = " (within noise)" if verdict == "none" else ""
    lines = []
    for direction, title in ((1, "What improved"), (-1, "What got worse"), (0, "Unchanged")):
        if found[direction] or direction == -1:
            lines += ["", f"{title}{noise if direction and found[direction] else ''}:"]
            lines += [f"  - {text}" for text in found[direction]] or ["  - nothing measured got worse"]
    return lines


def _heldout_moves(report: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The held-out searches' numbers in words, each with its direction (1 better, -1 worse, 0 the
    same)."""
    heldout = report.get("heldout") or {}
    if not heldout:
        return []
    base, tuned = heldout["base"], heldout["finetuned"]
    n, photos = int(base["queries"]), int(base["photos"])
    moves = [_found_within(base, tuned, k, n) for k in (1, 5, 10) if k == 1 or photos > k]
    was, now = base["mean_rank"], tuned["mean_rank"]
    moves.append(
        (
            _sign(was - now, 0.05),
            f"the first right photo of a search comes at place {now:.1f} on average (was {was:.1f})",
        )
    )
    if math.isfinite(base["CS"]) and math.isfinite(tuned["CS"]):
        text = (
            f"photos matching part of a search are ordered by how much they match: agreement "
            f"{base['CS']:.3f} -> {tuned['CS']:.3f} (the best reachable is {base['CS_ceiling']:.3f})"
        )
        moves.append((_sign(tuned["CS"] - base["CS"], 0.0005), text))
    text = (
        f"the first 10 results as a whole: quality {base['nDCG@10']:.3f} -> {tuned['nDCG@10']:.3f} (out of 1)"
    )
    moves.append((_sign(tuned["nDCG@10"] - base["nDCG@10"], 0.0005), text))
    return moves


def _found_within(base: Mapping[str, Any], tuned: Mapping[str, Any], k: int, n: int) -> tuple[int, str]:
    """R@k as a count of the held-out searches."""
    was, now = round(base[f"R@{k}"] * n), round(tuned[f"R@{k}"] * n)
    where = "comes first" if k == 1 else f"is among the first {k}"
    return _sign(now - was, 0.5), f"a right photo {where} in {now} of {n} searches (was {was})"


def _tag_moves(report: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The tags whose held-out photos moved most in their own search."""
    moves = []
    for row in report.get("tag_changes") or []:
        places = row["base"] - row["finetuned"]
        way = "higher" if places > 0 else "lower"
        photos = f"{row['photos']} held-out photo{'s' if row['photos'] != 1 else ''}"
        moves.append(
            (
                _sign(places, 0.05),
                f"photos tagged '{row['tag']}' now rank {abs(places):.1f} places {way} on average "
                f"(place {row['base']:.1f} -> {row['finetuned']:.1f}; {photos})",
            )
        )
    return moves


def _general_moves(report: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The general set (scene-world photos unlike the user's tags) in words."""
    general = report.get("general")
    if not general:
        return []
    base, tuned = general["base"], general["finetuned"]
    n = int(base["queries"])
    was, now = round(base["R@1"] * n), round(tuned["R@1"] * n)
    text = (
        f"everyday searches unlike your tags ({int(base['photos'])} generated scenes): a right photo comes "
        f"first in {now} of {n} (was {was}); overall score {base['score']:.3f} -> {tuned['score']:.3f}"
    )
    return [(_general_direction(report), text)]


def _general_direction(report: Mapping[str, Any]) -> int:
    """1, -1 or 0: whether the general set got better, worse, or moved within noise."""
    general = report.get("general")
    if not general:
        return 0
    change = general.get("change")
    if change:
        verdict = judge_change(change["change"], change["queries"], change["low"], change["high"])
    else:
        base, tuned = general["base"], general["finetuned"]
        verdict = judge_change(tuned["score"] - base["score"], base["queries"])
    return {"gain": 1, "loss": -1}.get(verdict, 0)


def _sign(value: float, least: float) -> int:
    """1 or -1 when ``value`` is at least ``least`` either way, else 0."""
    return 1 if value >= least else -1 if value <= -least else 0


def _tag_list(tags: list[str], most: int = 12) -> str:
    named = ", ".join(f"'{tag}'" for tag in tags[:most])
    more = f" and {len(tags) - most} more" if len(tags) > most else ""
    return f"{'tag' if len(tags) == 1 else 'tags'} {named}{more}"


def _have(count: int) -> str:
    return "has" if count == 1 else "each have"


def _report_table(report: Mapping[str, Any]) -> list[str]:
    """The before/after table of a fine-tune report."""
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
        if part:
            lines += _table_rows(title, part)
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
    return lines


def _table_rows(title: str, part: Mapping[str, Any]) -> list[str]:
    """One part's base, fine-tuned and change rows."""
    lines = []
    for label in ("base", "finetuned"):
        m = part[label]
        cs = f"{m['CS']:.3f}@{int(m['CS_k'])}" if math.isfinite(m["CS"]) else "n/a"
        lines.append(
            f"{title if label == 'base' else '':26} {label:10} {m['R@1']:6.3f} {m['R@5']:6.3f} "
            f"{m['R@10']:6.3f} {cs:>12} {m['nDCG@10']:8.3f}"
        )
    base, tuned = part["base"], part["finetuned"]
    cells = [_delta(base[key], tuned[key]) for key in ("R@1", "R@5", "R@10", "CS", "nDCG@10")]
    lines.append(
        f"{'':26} {'change':10} {cells[0]:>6} {cells[1]:>6} {cells[2]:>6} {cells[3]:>12} {cells[4]:>8}"
    )
    return lines


def _delta(a: float, b: float) -> str:
    """``b - a`` with its sign, or "0.000" (no sign) when it rounds to nothing."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    return "0.000" if round(b - a, 3) == 0 else f"{b - a:+.3f}"
