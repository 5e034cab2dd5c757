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
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import FinetuneError, ProfileError
from core.progress import drive
from core.tags import TagProblem, UserTags, iter_tag_scan
from trainer.adapter_model import TwinAdapter
from trainer.tag_relevance import TagRelevance, TagVocabulary, build_vocabulary, tag_caption

if TYPE_CHECKING:
    from core.embedder import Embedder
    from core.library import Library
    from core.models import ModelIdentity
    from core.profiles import ProfileInfo

logger = logging.getLogger(__name__)

MODES = ("adapter", "full")
ANCHORS_PER_STEP = 64
PRESERVE_SCALE = 100.0  # squared cosine differences are small: this puts preserve=1 on InfoNCE's scale
RELEVANCE_TABLE_LIMIT = 16_000_000  # up to this many (caption set, tag set) pairs, relevance is a table
LEVEL_TABLE_LIMIT = 2048  # up to this many, their adaptive ladder levels too
GENERAL_CACHE = ".general"
TextEncoder = Callable[[Sequence[str]], np.ndarray]


# ------------------------------------------------------------------------------------------ config


@dataclass
class FinetuneConfig:
    """Settings of a fine-tune. ``lr`` None picks the mode's default."""

    mode: str = "adapter"
    loss: str = "infonce+adaptive"  # a trainer.objectives spec: adaptive, triplet, infonce, sums
    epochs: int = 80
    max_steps: int = 2000  # fewer epochs for many photos (an epoch is one pass over the training photos)
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: float = 0.05
    hidden: int | None = None  # adapter width (default: embedding width / 4)
    temperature: float = 0.05  # for InfoNCE terms
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 8
    blends: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    blend_tolerance: float = 0.01
    preserve: float = 1.0  # weight of keeping everyday captions' scores (0: off)
    anchors: int = 512  # everyday captions for that
    partial_captions: float = 0.5  # share of captions naming one tag of the photo, not all
    caption_variants: int = 4  # captions per tag set, the fixed wording included
    caption_budget: int = 2048  # at most this many captions to encode (at least one per tag set)
    general_scenes: int = 300  # scene-world photos for the "cost" report (0: none)
    min_photos: int = 10
    cs_k: int = 100
    seed: int = 0
    # full mode
    unfreeze_blocks: int = 2
    device: str = "auto"
    decode_workers: int | None = None

    def validate(self) -> None:
        """Raise FinetuneError with a clear message for any setting that cannot work."""
        from trainer.objectives import parse_objective

        if self.mode not in MODES:
            raise FinetuneError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        try:
            parse_objective(self.loss)
        except ValueError as e:
            raise FinetuneError(str(e)) from None
        if self.epochs < 1:
            raise FinetuneError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise FinetuneError(f"batch size must be at least 2, got {self.batch_size}")
        if self.lr is not None and not (0 < self.lr < 1):
            raise FinetuneError(f"learning rate must be in (0, 1), got {self.lr}")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise FinetuneError("validation and test fractions must be in (0, 0.5)")
        if not self.blends or any(not 0 <= b <= 1 for b in self.blends):
            raise FinetuneError(f"blends must be numbers in [0, 1], got {self.blends}")
        if self.patience < 1:
            raise FinetuneError(f"patience must be at least 1 epoch, got {self.patience}")
        if self.caption_variants < 1:
            raise FinetuneError("caption_variants must be at least 1")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-3 if self.mode == "adapter" else 1e-5


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress record.

    ``phase``: "scan" (reading tags), "match" (finding the photos' vectors), "captions"
    (encoding captions and tags), "general" (the scene-world set), "train" (one record per step),
    "validate" (after each epoch, with ``metrics``), "blend", "report", "done".
    """

    phase: str
    done: int = 0
    total: int | None = None
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    metrics: Mapping[str, float] | None = None
    message: str = ""


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TaggedItem:
    """A tagged photo with a vector of the library's model."""

    content_hash: str
    path: str
    tags: tuple[str, ...]


@dataclass
class TaggedCollection:
    """The tagged photos found for a fine-tune, and what could not be used."""

    root: str | None
    items: list[TaggedItem] = field(default_factory=list)
    not_indexed: list[str] = field(default_factory=list)
    untagged: int = 0
    problems: list[TagProblem] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for item in self.items:
            counts.update(item.tags)
        return counts

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "root": self.root,
            "photos": len(self.items),
            "tags": len(counts),
            "tag_sets": len({item.tags for item in self.items}),
            "not_indexed": len(self.not_indexed),
            "untagged": self.untagged,
            "problems": len(self.problems),
            "top_tags": counts.most_common(50),
        }


def iter_collect(
    library: Library, root: str | os.PathLike[str] | None, *, include_user_tags: bool = True
) -> Generator[FinetuneProgress, None, TaggedCollection]:
    """Find the tagged photos under ``root`` (and those tagged in the app) with a vector of the
    library's model. Tags of one content (duplicates) are merged.

    Raises:
        FolderError: ``root`` is missing or unreadable.
    """
    from core.hashing import content_hash

    collection = TaggedCollection(str(root) if root is not None else None)
    tags_by_hash: dict[str, list[str]] = {}
    path_by_hash: dict[str, str] = {}
    catalog = library.catalog
    if root is not None:
        gen = iter_tag_scan(root)
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                scan = stop.value
                break
            yield FinetuneProgress("scan", progress.photos, None, message=progress.folder)
        collection.problems.extend(scan.problems)
        collection.empty_folders = scan.empty_folders
        for n, photo in enumerate(scan.photos, 1):
            if not photo.tags and not include_user_tags:
                collection.untagged += 1
                continue
            known = catalog.photo_by_path(photo.path)
            if known is not None and known.size == photo.size and known.mtime_ns == photo.mtime_ns:
                digest = known.content_hash
            else:
                try:
                    digest = content_hash(photo.path, photo.size)
                except OSError as e:
                    collection.problems.append(TagProblem(photo.path, f"cannot be read ({e.strerror or e})"))
                    continue
            tags_by_hash.setdefault(digest, []).extend(photo.tags)
            path_by_hash.setdefault(digest, photo.path)
            if n % 1000 == 0:
                yield FinetuneProgress("match", n, len(scan.photos))
    user = UserTags(catalog)
    if include_user_tags:
        extra = user.of_hashes(list(path_by_hash)) if root is not None else user.tagged()
        for digest, tags in extra.items():
            tags_by_hash.setdefault(digest, []).extend(tags)
            if digest not in path_by_hash:
                photos = catalog.photos_by_hash(digest)
                if photos:
                    path_by_hash[digest] = photos[0].path
    hashes = [h for h in tags_by_hash if tags_by_hash[h]]
    collection.untagged += sum(1 for h in tags_by_hash if not tags_by_hash[h])
    store = library.vectors()
    have = store.has(hashes) if hashes else np.zeros(0, bool)
    for digest, ok in zip(hashes, have.tolist(), strict=True):
        tags = tuple(dict.fromkeys(tags_by_hash[digest]))
        if ok:
            collection.items.append(TaggedItem(digest, path_by_hash[digest], tags))
        else:
            collection.not_indexed.append(path_by_hash[digest])
    yield FinetuneProgress(
        "match", len(hashes), len(hashes), message=f"{len(collection.items)} photos usable"
    )
    return collection


def check_collection(collection: TaggedCollection, config: FinetuneConfig) -> None:
    """Refuse, with what to do, a collection a fine-tune cannot learn from.

    Raises:
        FinetuneError: too few photos, or fewer than two different tag sets.
    """
    where = f" under {collection.root}" if collection.root else ""
    if not collection.items:
        if collection.not_indexed:
            raise FinetuneError(
                f"None of the {len(collection.not_indexed)} tagged photos{where} is indexed yet. "
                f"Index them first: ladderlens index {collection.root or 'FOLDER'}"
            )
        raise FinetuneError(
            f"No tagged photos found{where}. Put photos in sub-folders named after what they show "
            "(for example Grandma's garden/, Lisbon 2019/), or add XMP keywords or a tags.txt."
        )
    if len(collection.items) < config.min_photos:
        raise FinetuneError(
            f"Only {len(collection.items)} tagged, indexed photos found{where}; a fine-tune needs at least "
            f"{config.min_photos}. Tag more photos (or index the ones not indexed yet)."
        )
    tag_sets = {item.tags for item in collection.items}
    if len(tag_sets) < 2:
        only = ", ".join(next(iter(tag_sets))) or "none"
        raise FinetuneError(
            f"Every tagged photo{where} has the same tags ({only}): there is nothing to tell apart. "
            "A fine-tune needs photos with at least two different tags, for example in two "
            "differently named sub-folders."
        )


# ------------------------------------------------------------------------------------------ split


@dataclass
class Split:
    """Indices into the items of a data set."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_by_group(groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Split items so each tag set (group) spreads over train, validation and test in proportion.

    Rounding is randomised per group, so small groups still reach the held-out parts. Validation
    and test each get at least one item and training keeps at least two groups.
    """
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for g in rng.permutation(np.unique(groups)):
        members = rng.permutation(np.flatnonzero(groups == g)).tolist()
        n = len(members)
        n_test = math.floor(n * test_fraction + rng.random())
        n_val = math.floor(n * val_fraction + rng.random())
        if n >= 2:
            n_test, n_val = min(n_test, n - 1), min(n_val, n - 1 - min(n_test, n - 1))
        test.extend(members[:n_test])
        val.extend(members[n_test : n_test + n_val])
        train.extend(members[n_test + n_val :])
    for part in (val, test):
        if not part and len(train) > 2:
            part.append(train.pop(int(rng.integers(len(train)))))
    if len({int(groups[i]) for i in train}) < 2:
        raise FinetuneError("too few photos to set some aside for validation; tag more photos")
    return Split(np.array(sorted(train)), np.array(sorted(val)), np.array(sorted(test)))


# ------------------------------------------------------------------------------------------ prepared set


@dataclass
class EvalPool:
    """Queries against the photos of one part: every tag set present, and every single tag."""

    name: str
    items: np.ndarray  # item indices (candidates)
    queries: np.ndarray  # caption-set ids (the first G are the groups' own tag sets)
    relevance: np.ndarray  # (Q, N): how much of the query's tags each photo carries
    gt: np.ndarray  # (Q, N) bool: photos carrying every tag of the query
    single: np.ndarray  # (Q,) bool: one-tag queries


@dataclass
class PreparedData:
    """Everything training needs, as arrays.

    Items are photos; groups are their distinct tag sets; caption sets are what captions name:
    each group's whole tag set (caption set g is group g) and each single tag (ids G and up).
    """

    tag_sets: list[tuple[str, ...]]  # per group
    groups: np.ndarray  # group per item
    image: np.ndarray  # (N, D) base vectors per item
    split: Split
    vocabulary: TagVocabulary
    caption_sets: list[tuple[str, ...]]  # C caption sets; caption_sets[g] == tag_sets[g]
    singles: list[np.ndarray]  # per group: the caption-set ids of its single tags
    caption_relevance: TagRelevance  # over caption_sets
    caption_vecs: np.ndarray  # (sum variants, D)
    caption_offsets: np.ndarray  # (C + 1,) captions of set c: rows offsets[c]:offsets[c+1]
    query_vecs: np.ndarray  # (C, D) the fixed wording of each caption set
    pools: dict[str, EvalPool]
    table: np.ndarray | None = None  # (C, G) relevance, when small enough
    caption_texts: list[str] = field(default_factory=list)  # the texts of caption_vecs
    query_texts: list[str] = field(default_factory=list)  # the texts of query_vecs

    def relevance(self, captions: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """(len(captions), len(groups)): how much of each caption set's tags each group carries."""
        if self.table is not None:
            return self.table[np.ix_(captions, groups)]
        return self.caption_relevance.coverage(captions, groups)

    def covers(self, captions: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """(len(captions), len(groups)) bool: the group carries every tag the caption set names."""
        sets = [frozenset(self.tag_sets[g]) for g in groups.tolist()]
        return np.array(
            [[frozenset(self.caption_sets[c]) <= t for t in sets] for c in captions.tolist()], dtype=bool
        ).reshape(len(captions), len(groups))


def iter_prepare(
    tags: Sequence[Sequence[str]],
    image: np.ndarray,
    encode_texts: TextEncoder,
    config: FinetuneConfig,
) -> Generator[FinetuneProgress, None, PreparedData]:
    """Group items by tag set, split them, build the relevance and encode the captions."""
    rng = np.random.default_rng(config.seed)
    keys = [tuple(t) for t in tags]
    tag_sets = list(dict.fromkeys(keys))
    group_of = {t: i for i, t in enumerate(tag_sets)}
    groups = np.array([group_of[k] for k in keys], dtype=np.int64)
    split = split_by_group(groups, config.val_fraction, config.test_fraction, config.seed)

    caption_sets = list(tag_sets)
    caption_of = dict(group_of)
    singles = []
    for tag_set in tag_sets:
        ids = []
        if len(tag_set) > 1:
            for tag in tag_set:
                key = (tag,)
                if key not in caption_of:
                    caption_of[key] = len(caption_sets)
                    caption_sets.append(key)
                ids.append(caption_of[key])
        singles.append(np.array(ids, dtype=np.int64))

    yield FinetuneProgress("captions", 0, None, message="encoding tags")
    # The vocabulary's idf counts every photo once.
    vocabulary = build_vocabulary(keys, _batched(encode_texts))
    relevance = TagRelevance(vocabulary, caption_sets)
    table = None
    if len(caption_sets) * len(tag_sets) <= RELEVANCE_TABLE_LIMIT:
        table = relevance.coverage(np.arange(len(caption_sets)), np.arange(len(tag_sets)))

    # Each caption set's first caption is the fixed wording, also its evaluation query; the
    # others vary wording and order. The frozen text encoder is the costly part on a CPU, so the
    # number of texts is capped (caption_budget): fewer variants when there are many sets.
    variants = max(1, min(config.caption_variants, config.caption_budget // max(len(caption_sets), 1)))
    texts: list[str] = []
    offsets = [0]
    for caption_set in caption_sets:
        made = [tag_caption(caption_set), *(tag_caption(caption_set, rng) for _ in range(4 * variants))]
        texts.extend(list(dict.fromkeys(made))[:variants])
        offsets.append(len(texts))
    queries = [texts[start] for start in offsets[:-1]]
    encoded = yield from _iter_encode(texts, encode_texts)
    data = PreparedData(
        tag_sets=tag_sets,
        groups=groups,
        image=np.ascontiguousarray(image, dtype=np.float32),
        split=split,
        vocabulary=vocabulary,
        caption_sets=caption_sets,
        singles=singles,
        caption_relevance=relevance,
        caption_vecs=encoded,
        caption_offsets=np.array(offsets, dtype=np.int64),
        query_vecs=encoded[np.array(offsets[:-1], dtype=np.int64)],
        pools={},
        table=table,
        caption_texts=texts,
        query_texts=queries,
    )
    for name, part in (("train", split.train), ("val", split.val), ("test", split.test)):
        data.pools[name] = _pool(data, name, part)
    return data


def _iter_encode(
    texts: list[str], encode_texts: TextEncoder, chunk: int = 256
) -> Generator[FinetuneProgress, None, np.ndarray]:
    """Encode texts in chunks of similar length (less padding), reporting progress."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: np.ndarray | None = None
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        vecs = np.asarray(encode_texts([texts[i] for i in rows]), dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
        out[rows] = vecs
        yield FinetuneProgress("captions", min(start + chunk, len(texts)), len(texts))
    assert out is not None
    return out


def _batched(encode_texts: TextEncoder, chunk: int = 512) -> TextEncoder:
    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.concatenate(
            [np.asarray(encode_texts(texts[i : i + chunk]), np.float32) for i in range(0, len(texts), chunk)]
        )

    return encode


def _pool(data: PreparedData, name: str, items: np.ndarray) -> EvalPool:
    item_groups = data.groups[items]
    present = np.unique(item_groups)
    single = np.unique(np.concatenate([data.singles[g] for g in present] + [np.empty(0, np.int64)]))
    queries = np.concatenate([present, single]).astype(np.int64)
    rel = data.relevance(queries, item_groups)
    gt = data.covers(queries, item_groups)
    is_single = np.concatenate([np.zeros(len(present), bool), np.ones(len(single), bool)])
    return EvalPool(name, items, queries, rel, gt, is_single)


@dataclass
class _Batch:
    items: np.ndarray  # photos (item indices)
    groups: np.ndarray  # their tag sets
    captions: np.ndarray  # the caption set each photo's caption names

    def positives(self, data: PreparedData) -> np.ndarray:
        """(B, B) bool: photo i carries every tag caption j names (the diagonal always)."""
        if data.table is not None:
            found = data.table[np.ix_(self.captions, self.groups)].T >= 1.0 - 1e-6
        else:
            found = data.covers(self.captions, self.groups).T
        np.fill_diagonal(found, True)
        return found


class _Sampler:
    """Draws training batches: at most one photo per tag set, each with a caption that names its
    whole tag set or (with probability ``partial``) one of its tags. A caption may describe other
    photos of the batch fully too ("lisbon" and every Lisbon photo): they are its positives as
    well (see :class:`_Loss`)."""

    def __init__(self, data: PreparedData, batch_size: int, partial: float, rng: np.random.Generator):
        train = data.split.train
        train_groups = data.groups[train]
        self.group_ids, sizes = np.unique(train_groups, return_counts=True)
        self.members = {int(g): train[train_groups == g] for g in self.group_ids}
        self.weights = sizes / sizes.sum()
        self.batch = min(batch_size, len(self.group_ids))
        self.steps_per_epoch = max(1, math.ceil(len(train) / self.batch))
        self.data = data
        self.partial = partial
        self.rng = rng

    def __call__(self) -> _Batch:
        rng, data = self.rng, self.data
        chosen = rng.choice(self.group_ids, size=self.batch, replace=False, p=self.weights)
        items = np.array([self.members[int(g)][rng.integers(len(self.members[int(g)]))] for g in chosen])
        captions = chosen.copy()
        for i, g in enumerate(chosen.tolist()):
            if len(data.singles[g]) and rng.random() < self.partial:
                captions[i] = data.singles[g][rng.integers(len(data.singles[g]))]
        return _Batch(items, chosen, captions)


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


def choose_blend(scores: dict[float, float], tolerance: float) -> float:
    """The smallest blend toward the fine-tuned model whose validation score is within
    ``tolerance`` of the best: the least change from the base model that keeps the gain."""
    top = max(scores.values())
    return min(b for b, s in scores.items() if s >= top - tolerance)


def pool_report(
    image_vecs: np.ndarray, query_vecs: np.ndarray, pool: EvalPool, cs_k: int, parts: bool = False
) -> dict[str, Any]:
    """:func:`pool_metrics` over all the pool's queries; with ``parts`` also "tags" (one-tag
    queries) and "sets" (tag-set queries) apart."""
    out: dict[str, Any] = pool_metrics(image_vecs, query_vecs, pool.relevance, pool.gt, cs_k)
    if parts:
        for key, rows in (("tags", pool.single), ("sets", ~pool.single)):
            if rows.any():
                out[key] = pool_metrics(
                    image_vecs, query_vecs[rows], pool.relevance[rows], pool.gt[rows], cs_k
                )
    return out


def _heldout_report(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for key, name in (("tags", "heldout_tags"), ("sets", "heldout_sets")):
        if key in base and key in tuned:
            report[name] = {"base": base.pop(key), "finetuned": tuned.pop(key)}
    report["heldout"] = {"base": base, "finetuned": tuned}
    return report


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
    vectors = yield from _iter_encode(texts, embedder.encode_texts)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, cache)
        except OSError as e:
            logger.info("cannot cache the anchor captions in %s: %s", cache, e)
    return vectors


# ------------------------------------------------------------------------------------------ result


@dataclass
class FinetuneResult:
    """A finished fine-tune, not saved yet (see :func:`save_profile`)."""

    mode: str
    report: dict[str, Any]
    adapter: Any = None  # core.adapters.Adapter (adapter mode)
    weights_file: Path | None = None  # whole-model weights (full mode)
    base_identity: ModelIdentity | None = None
    base_spec: str | None = None


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


# ------------------------------------------------------------------------------------------ adapter mode


class _Loss:
    """The configured objective over batches where a caption may have several positive photos.

    A one-tag caption ("lisbon") describes every photo carrying that tag, so each query has a
    set of positives (its ground truth, plus any photo or caption that matches it fully):

    * ``infonce``: multi-positive InfoNCE, ``-log(sum_pos exp(s / T) / sum_all exp(s / T))`` per
      query, both directions averaged (the CLIP loss when each query has one positive);
    * ``triplet``: the hardest-negative hinge with the *worst* positive (:func:`trainer.losses.
      ladder_hinges` with two levels), as VSE++ with several positives;
    * ``adaptive``: the adaptive ladder loss with the positives as level 0 and the other
      candidates on the levels of their relevance.

    Relevance depends only on tag sets, so the adaptive levels (1-D k-means of a query's relevance
    degrees, best silhouette) are computed once over everything a batch can hold: for each caption
    set over all tag sets (text -> image queries) and for each tag set over all caption sets
    (image -> text queries); the global version of the per-batch clustering of the adaptive ladder
    loss, at no cost per step. Above :data:`LEVEL_TABLE_LIMIT` sets, or without a relevance table,
    the adaptive loss clusters each batch itself (its ground truth then is the diagonal alone).
    Other objectives of :mod:`trainer.objectives` run as they are (one positive per query).
    """

    def __init__(self, config: FinetuneConfig) -> None:
        from trainer.losses import AdaptiveLadderLoss, InfoNCELoss, TripletLoss
        from trainer.objectives import Objective

        self.objective = Objective(config.loss)
        self.temperature = config.temperature
        self.scale = torch.tensor(1.0 / config.temperature)
        self.kinds = {}
        for name, part in self.objective.parts.items():
            if isinstance(part, AdaptiveLadderLoss):
                self.kinds[name] = "adaptive"
            elif isinstance(part, InfoNCELoss):
                self.kinds[name] = "infonce"
            elif isinstance(part, TripletLoss) and part.max_violation:
                self.kinds[name] = "triplet"
        self.text_levels: np.ndarray | None = None  # (C, G)
        self.image_levels: np.ndarray | None = None  # (G, C)

    def iter_levels(self, table: np.ndarray | None) -> Generator[FinetuneProgress, None, None]:
        """Compute the level tables (when an adaptive term needs them)."""
        adaptive = [n for n, kind in self.kinds.items() if kind == "adaptive"]
        if not adaptive or table is None or max(table.shape) > LEVEL_TABLE_LIMIT:
            return
        part = self.objective.parts[adaptive[0]]
        levels = []
        for n, matrix in enumerate((table, table.T)):
            levels.append(self._levels(part, matrix))
            yield FinetuneProgress("captions", n + 1, 2, message="grading tag sets")
        self.text_levels, self.image_levels = levels

    @staticmethod
    def _levels(part: Any, matrix: np.ndarray) -> np.ndarray:
        from trainer.levels import adaptive_levels

        out = np.zeros(matrix.shape, dtype=np.int64)
        if matrix.shape[1] < 2:
            return out
        for start in range(0, len(matrix), 256):
            rows = torch.from_numpy(np.ascontiguousarray(matrix[start : start + 256]))
            found = adaptive_levels(rows, part.k_min, part.k_max, max_iter=part.max_iter)
            out[start : start + 256] = found.levels.numpy()
        return out

    def __call__(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        relevance: torch.Tensor,
        batch: _Batch,
        positives: np.ndarray,
    ) -> torch.Tensor:
        """``relevance[i, j]`` and ``positives[i, j]``: photo i against caption j."""
        from trainer.losses import ladder_hinges

        total = img.new_zeros(())
        pos = torch.from_numpy(positives).to(img.device)
        b = img.shape[0]
        for weight, name in self.objective.terms:
            part = self.objective.parts[name]
            kind = self.kinds.get(name)
            if kind == "infonce":
                logits = (img @ txt.T) / self.temperature
                i2t = torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~pos, -torch.inf), 1)
                t2i = torch.logsumexp(logits.T, 1) - torch.logsumexp(
                    logits.T.masked_fill(~pos.T, -torch.inf), 1
                )
                loss = (i2t.mean() + t2i.mean()) / 2
            elif kind == "triplet":
                scores = img @ txt.T
                levels = torch.stack([(~pos).long(), (~pos.T).long()])
                margins = part.margins.to(scores.dtype)
                loss = ladder_hinges(torch.stack([scores, scores.T]), levels, margins).sum() / b
            elif kind == "adaptive" and self.text_levels is not None and self.image_levels is not None:
                image_q = 1 + self.image_levels[np.ix_(batch.groups, batch.captions)]
                text_q = 1 + self.text_levels[np.ix_(batch.captions, batch.groups)]
                image_q[positives] = 0
                text_q[positives.T] = 0
                levels = torch.from_numpy(np.stack([image_q, text_q])).to(img.device)
                loss = part(img, txt, relevance, levels=levels)["loss"]
            else:
                loss = part(img, txt, relevance, logit_scale=self.scale)["loss"]
            total = total + weight * loss
        return total


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log(sum_pos softmax)``: InfoNCE where a row may have several positives."""
    everything = torch.logsumexp(logits, dim=1)
    wanted = torch.logsumexp(logits.masked_fill(~positives, -torch.inf), dim=1)
    return (everything - wanted).mean()


def _batch_relevance(data: PreparedData, batch: _Batch) -> torch.Tensor:
    """(B, B): relevance of photo i to caption j; 1 on the diagonal (a caption names its photo's tags)."""
    rel = data.relevance(batch.captions, batch.groups).T.copy()
    np.fill_diagonal(rel, 1.0)
    return torch.from_numpy(np.ascontiguousarray(rel, dtype=np.float32))


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
    from trainer.schedule import warmup_cosine

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    dim = data.image.shape[1]
    model = TwinAdapter(dim, config.hidden)
    objective = _Loss(config)
    yield from objective.iter_levels(data.table)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    lr_at = warmup_cosine(config.learning_rate, config.warmup, min_lr_ratio=0.05)

    sampler = _Sampler(data, config.batch_size, config.partial_captions, rng)
    steps_per_epoch = sampler.steps_per_epoch
    # many photos need fewer passes: at most max_steps steps in all
    epochs = max(1, min(config.epochs, config.max_steps // steps_per_epoch))
    total_steps = steps_per_epoch * epochs

    image = torch.from_numpy(data.image)
    captions = torch.from_numpy(data.caption_vecs)
    offsets = data.caption_offsets
    counts = offsets[1:] - offsets[:-1]
    keep = torch.from_numpy(np.ascontiguousarray(anchors, dtype=np.float32)) if anchors is not None else None
    if keep is not None and (not config.preserve or not len(keep)):
        keep = None

    def validate(blend: float, pool: EvalPool, parts: bool = False) -> dict[str, Any]:
        with torch.no_grad():
            img = model.image(image[pool.items], blend).numpy()
            txt = model.text(torch.from_numpy(data.query_vecs[pool.queries]), blend).numpy()
        return pool_report(img, txt, pool, config.cs_k, parts)

    base_val = validate(0.0, data.pools["val"])
    stopping = EarlyStopping.start(base_val, config.patience, epochs)
    best_state = copy.deepcopy(model.state_dict())
    yield FinetuneProgress("validate", 0, total_steps, 0, epochs, None, base_val)
    step = 0
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for _ in range(steps_per_epoch):
            batch = sampler()
            items = batch.items
            rows = offsets[batch.captions] + rng.integers(0, counts[batch.captions])
            relevance = _batch_relevance(data, batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step / max(total_steps, 1))
            img, txt = model(image[items], captions[rows])
            loss = objective(img, txt, relevance, batch, batch.positives(data))
            if keep is not None:
                sample = keep[
                    torch.from_numpy(rng.integers(0, len(keep), size=min(ANCHORS_PER_STEP, len(keep))))
                ]
                before = sample @ image[items].T
                after = model.text(sample) @ img.T
                loss = loss + config.preserve * torch.mean((after - before) ** 2) * PRESERVE_SCALE
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FinetuneError("the training loss became NaN or infinite; try a smaller learning rate")
            losses.append(value)
            yield FinetuneProgress("train", step, total_steps, epoch, epochs, value)
        model.eval()
        metrics = validate(1.0, data.pools["val"])
        mean_loss = float(np.mean(losses))
        yield FinetuneProgress("validate", step, total_steps, epoch, epochs, mean_loss, metrics)
        if stopping.update(epoch, mean_loss, metrics):
            best_state = copy.deepcopy(model.state_dict())
        elif stopping.stop:
            break

    model.load_state_dict(best_state)
    model.eval()
    yield FinetuneProgress("blend", 0, len(config.blends), message="choosing the blend toward the base model")
    blend_scores = {}
    for i, blend in enumerate(sorted(config.blends)):
        blend_scores[blend] = validate(blend, data.pools["val"])["score"]
        yield FinetuneProgress("blend", i + 1, len(config.blends))
    chosen_blend = choose_blend(blend_scores, config.blend_tolerance)

    yield FinetuneProgress("report", 0, None, message="measuring before and after")
    report: dict[str, Any] = _heldout_report(
        validate(0.0, data.pools["test"], parts=True), validate(chosen_blend, data.pools["test"], parts=True)
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


def _general_report(model: TwinAdapter, general: GeneralSet, blend: float, cs_k: int) -> dict[str, Any]:
    with torch.no_grad():
        img = torch.from_numpy(np.ascontiguousarray(general.image, dtype=np.float32))
        txt = torch.from_numpy(np.ascontiguousarray(general.text, dtype=np.float32))
        adapted_img = model.image(img, blend).numpy()
        adapted_txt = model.text(txt, blend).numpy()
    tuned = GeneralSet(adapted_img, adapted_txt, general.relevance, general.gt)
    return _general_report_vectors(general, tuned, cs_k)


def _general_report_vectors(base: GeneralSet, tuned: GeneralSet, cs_k: int) -> dict[str, Any]:
    return {
        "base": pool_metrics(base.image, base.text, base.relevance, base.gt, cs_k),
        "finetuned": pool_metrics(tuned.image, tuned.text, tuned.relevance, tuned.gt, cs_k),
    }


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
            "config": _config_dict(config),
            "collection": collection.summary(),
            "problems": [(p.path, p.reason) for p in collection.problems[:200]],
            "elapsed_seconds": time.perf_counter() - started,
        }
    )
    yield FinetuneProgress("done", 1, 1)
    return FinetuneResult(
        "adapter", report, adapter=adapter, base_identity=base_identity, base_spec=base_spec
    )


def _config_dict(config: FinetuneConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def finetune(
    library: Library,
    root: str | os.PathLike[str] | None,
    config: FinetuneConfig | None = None,
    on_progress: Callable[[FinetuneProgress], None] | None = None,
    **options: Any,
) -> FinetuneResult:
    """:func:`iter_finetune`, run to its end."""
    return drive(iter_finetune(library, root, config, **options), on_progress)


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
