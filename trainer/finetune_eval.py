"""Measuring a fine-tune and choosing what to keep of it.

Retrieval metrics of a pool of held-out photos (:func:`pool_metrics`, :func:`pool_report`), the
epoch loop with early stopping on the validation score (:func:`iter_epochs`), the blend toward
the base model (:func:`iter_blend_scores`, :func:`choose_blend`), and the before/after reports on
the test photos and on a general set of scene-world photos (:func:`iter_general_set`), which shows
what the fine-tune costs outside the user's tags.

Noise: a before/after change is judged on per-query scores (:func:`query_values`), with a paired
bootstrap over the queries (:func:`paired_change`) and a floor of one query's worth
(:func:`judge_change`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trainer.finetune_config import FinetuneProgress
from trainer.finetune_data import EvalPool

if TYPE_CHECKING:
    from core.embedder import Embedder

logger = logging.getLogger(__name__)

GENERAL_CACHE = ".general"  # the general set's cached vectors, in the library's profile folder


# ------------------------------------------------------------------------------------------ metrics


SELECTION = ("R@1", "R@5", "R@10", "CS", "nDCG@10")


def pool_metrics(
    image_vecs: np.ndarray, query_vecs: np.ndarray, pool_relevance: np.ndarray, gt: np.ndarray, cs_k: int
) -> dict[str, float]:
    """Text -> image retrieval metrics of a pool: R@1/5/10, CS@K (as "CS", with "CS_k" and its
    ceiling), nDCG@10, mean rank, and "score" (the mean of :data:`SELECTION`)."""
    from trainer.metrics import retrieval_report

    sim = query_vecs @ image_vecs.T
    n = sim.shape[1]
    k = max(2, min(cs_k, n))
    report = retrieval_report(sim, pool_relevance, gt, ks=(1, 5, 10), cs_ks=(k,), ndcg_ks=(10,))
    out = {key: float(report[key]) for key in ("R@1", "R@5", "R@10", "nDCG@10", "mean_rank")}
    out["CS"] = float(report.get(f"CS@{k}", math.nan))
    out["CS_ceiling"] = float(report.get(f"CS@{k}_ceiling", math.nan))
    out["CS_k"] = float(k)
    out["queries"] = float(sim.shape[0])
    out["photos"] = float(n)
    values = [out[key] for key in SELECTION if math.isfinite(out[key])]
    out["score"] = float(np.mean(values)) if values else math.nan
    return out


@dataclass
class EarlyStopping:
    """The validation history of a fine-tune, its best epoch, and when to stop.

    Training stops after ``patience`` validations in a row without a gain of the score; the
    caller keeps the weights of the epoch :meth:`update` reports as the best.
    """

    patience: int
    epochs: int
    best_score: float
    history: list[dict[str, Any]]
    best_epoch: int = 0
    stale: int = 0
    stopped_early: bool = False
    stop: bool = False

    @classmethod
    def start(cls, metrics: dict[str, Any], patience: int, epochs: int) -> EarlyStopping:
        """Begin from the validation of the untrained model (epoch 0)."""
        row = {"epoch": 0, "loss": None, **{f"val_{k}": v for k, v in metrics.items()}}
        return cls(patience, epochs, float(metrics["score"]), [row])

    def update(self, epoch: int, loss: float, metrics: dict[str, Any]) -> bool:
        """Record an epoch's validation; ``True`` when it is the best so far (keep its weights)."""
        self.history.append({"epoch": epoch, "loss": loss, **{f"val_{k}": v for k, v in metrics.items()}})
        if metrics["score"] > self.best_score + 1e-6:
            self.best_score, self.best_epoch, self.stale = float(metrics["score"]), epoch, 0
            return True
        self.stale += 1
        if self.stale >= self.patience:
            self.stop = True
            self.stopped_early = epoch < self.epochs
        return False

    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.history[-1]["epoch"],
            "stopped_early": self.stopped_early,
            "history": self.history,
        }


class EpochTrainer(Protocol):
    """What :func:`iter_epochs` trains: one step at a time, validated after each epoch."""

    def begin_epoch(self) -> None:
        """Put the model in training mode."""

    def train_step(self, step: int) -> float:
        """One optimisation step (``step`` counts from 0); returns the loss, raises when not finite."""
        ...

    def validate_epoch(self) -> dict[str, Any]:
        """The validation metrics of the model as it is now (a "score" among them)."""
        ...

    def snapshot(self) -> Any:
        """A copy of what to keep of the model when this epoch is the best."""
        ...


def iter_epochs(
    trainer: EpochTrainer, base_metrics: dict[str, Any], epochs: int, steps_per_epoch: int, patience: int
) -> Generator[FinetuneProgress, None, tuple[EarlyStopping, Any]]:
    """Train up to ``epochs`` epochs, validating after each and stopping early after ``patience``
    epochs without a gain. ``base_metrics`` are the untrained model's (epoch 0). Returns the
    :class:`EarlyStopping` record and the snapshot of the best epoch."""
    total_steps = steps_per_epoch * epochs
    stopping = EarlyStopping.start(base_metrics, patience, epochs)
    best = trainer.snapshot()
    yield FinetuneProgress("validate", 0, total_steps, 0, epochs, None, base_metrics)
    step = 0
    for epoch in range(1, epochs + 1):
        trainer.begin_epoch()
        losses = []
        for _ in range(steps_per_epoch):
            value = trainer.train_step(step)
            step += 1
            losses.append(value)
            yield FinetuneProgress("train", step, total_steps, epoch, epochs, value)
        metrics = trainer.validate_epoch()
        mean_loss = float(np.mean(losses))
        yield FinetuneProgress("validate", step, total_steps, epoch, epochs, mean_loss, metrics)
        if stopping.update(epoch, mean_loss, metrics):
            best = trainer.snapshot()
        elif stopping.stop:
            break
    return stopping, best


def iter_blend_scores(
    blends: Sequence[float], score: Callable[[float], float]
) -> Generator[FinetuneProgress, None, dict[float, float]]:
    """The validation ``score`` of every blend toward the fine-tuned model, smallest first."""
    scores: dict[float, float] = {}
    for i, blend in enumerate(sorted(blends)):
        scores[blend] = score(blend)
        yield FinetuneProgress("blend", i + 1, len(blends))
    return scores


def choose_blend(scores: dict[float, float], tolerance: float) -> float:
    """The smallest blend toward the fine-tuned model whose validation score is within
    ``tolerance`` of the best: the least change from the base model that keeps the gain."""
    top = max(scores.values())
    return min(b for b, s in scores.items() if s >= top - tolerance)


def query_values(
    image_vecs: np.ndarray, query_vecs: np.ndarray, relevance: np.ndarray, gt: np.ndarray, cs_k: int
) -> dict[str, np.ndarray]:
    """Per-query values behind :func:`pool_metrics`, each (Q,): "score" (the mean of the query's
    own R@1, R@5, R@10, coherence and nDCG@10, leaving out the undefined), "position" (the mean
    1-based place of the photos carrying every tag of the query in its result list) and
    "matches" (how many photos carry them)."""
    from trainer.metrics import per_query_coherence, ranks

    sim = np.asarray(query_vecs @ image_vecs.T, dtype=np.float64)
    n = sim.shape[1]
    order = np.argsort(-sim, axis=1, kind="stable")  # ties: the lower index first
    places = np.empty_like(order)
    np.put_along_axis(places, order, np.arange(1, n + 1)[None, :], axis=1)
    matches = gt.sum(axis=1)
    position = (places * gt).sum(axis=1) / np.maximum(matches, 1)
    rank = ranks(sim, gt)
    top = min(10, n)
    gains = np.take_along_axis(relevance, order[:, :top], 1)
    discount = 1.0 / np.log2(np.arange(2, top + 2))
    ideal = -np.sort(-relevance, axis=1)[:, :top] @ discount
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.where(ideal > 0, (gains @ discount) / ideal, np.nan)
    coherence = per_query_coherence(sim, relevance, max(2, min(cs_k, n)))
    parts = np.stack([rank <= 1, rank <= 5, rank <= 10, coherence, ndcg]).astype(np.float64)
    defined = np.isfinite(parts)
    score = np.where(defined, parts, 0.0).sum(axis=0) / np.maximum(defined.sum(axis=0), 1)
    return {"score": score, "position": position.astype(np.float64), "matches": matches}


def pool_report(
    image_vecs: np.ndarray, query_vecs: np.ndarray, pool: EvalPool, cs_k: int, parts: bool = False
) -> dict[str, Any]:
    """:func:`pool_metrics` over all the pool's queries; with ``parts`` also "tags" (one-tag
    queries) and "sets" (tag-set queries) apart, and "per_query" (:func:`query_values` and which
    queries name one tag, "single"), which :func:`heldout_report` takes out."""
    out: dict[str, Any] = pool_metrics(image_vecs, query_vecs, pool.relevance, pool.gt, cs_k)
    if parts:
        for key, rows in (("tags", pool.single), ("sets", ~pool.single)):
            if rows.any():
                out[key] = pool_metrics(
                    image_vecs, query_vecs[rows], pool.relevance[rows], pool.gt[rows], cs_k
                )
        values = query_values(image_vecs, query_vecs, pool.relevance, pool.gt, cs_k)
        out["per_query"] = {**values, "single": np.asarray(pool.single, bool)}
    return out


def heldout_report(
    base: dict[str, Any], tuned: dict[str, Any], names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The base and fine-tuned :func:`pool_report` of the test photos, side by side: "heldout",
    and "heldout_tags" / "heldout_sets" for the one-tag and tag-set queries apart.

    With per-query values in both reports, also "heldout_change" (:func:`paired_change` of the
    per-query scores) and, given the ``names`` of the pool's queries, "tag_changes" (the tags
    whose photos moved most in their own search, :func:`tag_moves`).
    """
    report: dict[str, Any] = {}
    base_values, tuned_values = base.pop("per_query", None), tuned.pop("per_query", None)
    for key, name in (("tags", "heldout_tags"), ("sets", "heldout_sets")):
        if key in base and key in tuned:
            report[name] = {"base": base.pop(key), "finetuned": tuned.pop(key)}
    report["heldout"] = {"base": base, "finetuned": tuned}
    if base_values is not None and tuned_values is not None:
        report["heldout_change"] = paired_change(base_values["score"], tuned_values["score"])
        if names is not None:
            report["tag_changes"] = tag_moves(names, base_values, tuned_values)
    return report


# ------------------------------------------------------------------------------------------ noise


BOOTSTRAP_ROUNDS = 1000
TAG_MOVES = 8  # the most improved and the most worsened tags a report names, each


def paired_change(before: np.ndarray, after: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The mean per-query change ``after - before`` and its 95% bootstrap interval: the queries
    are drawn again with replacement :data:`BOOTSTRAP_ROUNDS` times (paired: one query's before
    and after stay together) and "low" / "high" are the 2.5th and 97.5th percentiles of the mean
    change. "queries" is how many queries were compared."""
    diff = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    n = len(diff)
    if not n:
        return {"queries": 0.0, "change": 0.0, "low": 0.0, "high": 0.0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(BOOTSTRAP_ROUNDS, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"queries": float(n), "change": float(diff.mean()), "low": float(low), "high": float(high)}


def judge_change(change: float, queries: float, low: float | None = None, high: float | None = None) -> str:
    """Whether a change of a mean over ``queries`` per-query scores is a "gain", a "loss" or
    "none".

    A change counts only when it is at least one query's worth, ``1 / queries`` (one search
    going from no right photo anywhere near the top to a right photo first moves the mean by
    about that much), and, when a bootstrap interval ``low`` .. ``high`` is known
    (:func:`paired_change`), when that interval leaves out zero. Anything else is noise.
    """
    if not queries or not math.isfinite(change):
        return "none"
    floor = 1.0 / queries
    if change >= floor and (low is None or low > 0):
        return "gain"
    if change <= -floor and (high is None or high < 0):
        return "loss"
    return "none"


def tag_moves(
    names: Sequence[str], before: dict[str, np.ndarray], after: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """The one-tag queries whose photos moved most in their search's results, up to
    :data:`TAG_MOVES` each way, best gain first: "tag", "photos" (held out), and their mean
    place "base" and "finetuned". Moves under half a place are left out."""
    rows = []
    for i in np.flatnonzero(before["single"]):
        was, now = float(before["position"][i]), float(after["position"][i])
        if abs(was - now) >= 0.5:
            rows.append(
                {"tag": str(names[i]), "photos": int(before["matches"][i]), "base": was, "finetuned": now}
            )
    rows.sort(key=lambda row: row["finetuned"] - row["base"])
    gains = [row for row in rows if row["finetuned"] < row["base"]][:TAG_MOVES]
    losses = [row for row in rows if row["finetuned"] > row["base"]][-TAG_MOVES:]
    return gains + losses


# ------------------------------------------------------------------------------------------ general set


@dataclass
class GeneralSet:
    """Scene-world photos and captions, with base-model vectors: the "cost" check."""

    image: np.ndarray  # (N, D)
    text: np.ndarray  # (Q, D)
    relevance: np.ndarray  # (Q, N)
    gt: np.ndarray  # (Q, N)


def iter_general_set(
    embedder: Embedder, count: int, cache_dir: Path | None = None, seed: int = 0
) -> Generator[FinetuneProgress, None, GeneralSet | None]:
    """Render ``count`` scene-world photos, caption them, and embed both with the base model.

    The vectors are cached per model identity in ``cache_dir``.
    """
    from trainer.captions import caption
    from trainer.scene_render import render_scene
    from trainer.scenes import relevance_matrix, sample_scenes

    if count < 2:
        return None
    scenes = sample_scenes(count, seed=seed + 1009, split="test")
    rel = relevance_matrix(scenes, scenes)
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"{embedder.identity.key}.n{count}.s{seed}.npz"
        if cache.is_file():
            try:
                with np.load(cache) as stored:
                    general = GeneralSet(stored["image"], stored["text"], rel, rel >= 1.0 - 1e-6)
                if general.image.shape == (count, embedder.dim):
                    return general
            except (OSError, ValueError, KeyError) as e:
                logger.info("ignoring the general-set cache %s: %s", cache, e)
    rng = np.random.default_rng(seed)
    captions = [caption(scene, rng) for scene in scenes]
    size = max(int(embedder.image_size), 32)
    images = []
    chunk = 32
    for start in range(0, count, chunk):
        pictures = [render_scene(s, size=(size, size)) for s in scenes[start : start + chunk]]
        images.append(embedder.encode_images(pictures))
        yield FinetuneProgress("general", min(start + chunk, count), count)
    general = GeneralSet(np.concatenate(images), embedder.encode_texts(captions), rel, rel >= 1.0 - 1e-6)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp.npz")
            np.savez(tmp, image=general.image, text=general.text)
            os.replace(tmp, cache)
        except OSError as e:
            logger.info("cannot cache the general set in %s: %s", cache, e)
    return general


def general_report_vectors(base: GeneralSet, tuned: GeneralSet, cs_k: int) -> dict[str, Any]:
    """Base and fine-tuned metrics of the general set, from both models' vectors, and "change"
    (:func:`paired_change` of the per-query scores)."""
    before = query_values(base.image, base.text, base.relevance, base.gt, cs_k)["score"]
    after = query_values(tuned.image, tuned.text, tuned.relevance, tuned.gt, cs_k)["score"]
    return {
        "base": pool_metrics(base.image, base.text, base.relevance, base.gt, cs_k),
        "finetuned": pool_metrics(tuned.image, tuned.text, tuned.relevance, tuned.gt, cs_k),
        "change": paired_change(before, after),
    }
