"""The training data of a fine-tune: from the tagged photos of a library to batches.

:func:`iter_collect` finds the tagged photos that have a vector of the library's model;
:func:`iter_prepare` groups them by tag set, splits them into training, validation and test
photos (:func:`split_by_group`), grades the relevance between captions and photos from their tags
(:mod:`trainer.tag_relevance`) and encodes the captions; a :class:`Sampler` draws training
:class:`Batch` es from it, and :class:`LevelTables` holds the adaptive ladder levels of the whole
relevance table, computed once.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import FinetuneError
from core.tags import TagProblem, UserTags, iter_tag_scan
from trainer.finetune_config import FinetuneConfig, FinetuneProgress
from trainer.tag_relevance import TagRelevance, TagVocabulary, build_vocabulary, tag_caption

if TYPE_CHECKING:
    from core.catalog import Catalog
    from core.library import Library
    from core.tags import TagScan
    from trainer.levels import LevelSettings

RELEVANCE_TABLE_LIMIT = 16_000_000  # up to this many (caption set, tag set) pairs, relevance is a table
LEVEL_TABLE_LIMIT = 2048  # up to this many, their adaptive ladder levels too
TextEncoder = Callable[[Sequence[str]], np.ndarray]


# ------------------------------------------------------------------------------------------ tagged photos


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
    collection = TaggedCollection(str(root) if root is not None else None)
    found = _FoundTags()
    catalog = library.catalog
    if root is not None:
        scan = yield from _iter_scan(root)
        collection.problems.extend(scan.problems)
        collection.empty_folders = scan.empty_folders
        yield from _iter_hash_photos(scan, catalog, collection, found, include_user_tags)
    if include_user_tags:
        _add_user_tags(catalog, found, only_found=root is not None)
    hashes = [h for h in found.tags if found.tags[h]]
    collection.untagged += sum(1 for h in found.tags if not found.tags[h])
    store = library.vectors()
    have = store.has(hashes) if hashes else np.zeros(0, bool)
    for digest, ok in zip(hashes, have.tolist(), strict=True):
        tags = tuple(dict.fromkeys(found.tags[digest]))
        if ok:
            collection.items.append(TaggedItem(digest, found.paths[digest], tags))
        else:
            collection.not_indexed.append(found.paths[digest])
    yield FinetuneProgress(
        "match", len(hashes), len(hashes), message=f"{len(collection.items)} photos usable"
    )
    return collection


@dataclass
class _FoundTags:
    """Tags found so far per content hash, and a path of each content."""

    tags: dict[str, list[str]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def _iter_scan(root: str | os.PathLike[str]) -> Generator[FinetuneProgress, None, TagScan]:
    """Read the tags of the photos under ``root``, reporting the folders as they are read."""
    gen = iter_tag_scan(root)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        yield FinetuneProgress("scan", progress.photos, None, message=progress.folder)


def _iter_hash_photos(
    scan: TagScan, catalog: Catalog, collection: TaggedCollection, found: _FoundTags, include_user_tags: bool
) -> Generator[FinetuneProgress, None, None]:
    """Add the scanned photos' tags to ``found`` by content hash (the catalog's, when the file did
    not change since it was indexed); unreadable photos become problems of ``collection``."""
    from core.hashing import content_hash

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
        found.tags.setdefault(digest, []).extend(photo.tags)
        found.paths.setdefault(digest, photo.path)
        if n % 1000 == 0:
            yield FinetuneProgress("match", n, len(scan.photos))


def _add_user_tags(catalog: Catalog, found: _FoundTags, only_found: bool) -> None:
    """Add the tags given in the app: to the photos found only (``only_found``), or to every
    tagged photo of the catalog."""
    user = UserTags(catalog)
    extra = user.of_hashes(list(found.paths)) if only_found else user.tagged()
    for digest, tags in extra.items():
        found.tags.setdefault(digest, []).extend(tags)
        if digest not in found.paths:
            photos = catalog.photos_by_hash(digest)
            if photos:
                found.paths[digest] = photos[0].path


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
    encoded = yield from iter_encode_texts(texts, encode_texts)
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


def iter_encode_texts(
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
class Batch:
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


class Sampler:
    """Draws training batches: at most one photo per tag set, each with a caption that names its
    whole tag set or (with probability ``partial``) one of its tags. A caption may describe other
    photos of the batch fully too ("lisbon" and every Lisbon photo): they are its positives as
    well (see :class:`trainer.objectives.MultiPositiveObjective`)."""

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

    def __call__(self) -> Batch:
        rng, data = self.rng, self.data
        chosen = rng.choice(self.group_ids, size=self.batch, replace=False, p=self.weights)
        items = np.array([self.members[int(g)][rng.integers(len(self.members[int(g)]))] for g in chosen])
        captions = chosen.copy()
        for i, g in enumerate(chosen.tolist()):
            if len(data.singles[g]) and rng.random() < self.partial:
                captions[i] = data.singles[g][rng.integers(len(data.singles[g]))]
        return Batch(items, chosen, captions)


def batch_relevance(data: PreparedData, batch: Batch) -> torch.Tensor:
    """(B, B): relevance of photo i to caption j; 1 on the diagonal (a caption names its photo's tags)."""
    rel = data.relevance(batch.captions, batch.groups).T.copy()
    np.fill_diagonal(rel, 1.0)
    return torch.from_numpy(np.ascontiguousarray(rel, dtype=np.float32))


# ------------------------------------------------------------------------------------------ level tables


class LevelTables:
    """The adaptive ladder levels of every query a batch can hold, computed once.

    Relevance depends only on tag sets, so the adaptive levels (1-D k-means of a query's relevance
    degrees, best silhouette) are computed over everything a batch can hold: for each caption set
    over all tag sets (text -> image queries) and for each tag set over all caption sets
    (image -> text queries); the global version of the per-batch clustering of the adaptive ladder
    loss, at no cost per step. Above :data:`LEVEL_TABLE_LIMIT` sets, without a relevance table, or
    without ``settings`` (no adaptive term), there are no tables and the adaptive loss clusters
    each batch itself (its ground truth then is the diagonal alone).
    """

    def __init__(self, settings: LevelSettings | None) -> None:
        self.settings = settings
        self.text: np.ndarray | None = None  # (C, G)
        self.image: np.ndarray | None = None  # (G, C)

    def iter_compute(self, table: np.ndarray | None) -> Generator[FinetuneProgress, None, None]:
        """Compute the tables from the (caption set, tag set) relevance ``table``, when they fit."""
        if self.settings is None or table is None or max(table.shape) > LEVEL_TABLE_LIMIT:
            return
        levels = []
        for n, matrix in enumerate((table, table.T)):
            levels.append(_table_levels(self.settings, matrix))
            yield FinetuneProgress("captions", n + 1, 2, message="grading tag sets")
        self.text, self.image = levels

    def batch_levels(self, batch: Batch, positives: np.ndarray) -> torch.Tensor | None:
        """(2, B, B) int64 levels of a batch, [0] for its photo queries and [1] for its caption
        queries, with every positive on level 0 and the others on 1 + their table level; None
        without tables."""
        if self.text is None or self.image is None:
            return None
        image_q = 1 + self.image[np.ix_(batch.groups, batch.captions)]
        text_q = 1 + self.text[np.ix_(batch.captions, batch.groups)]
        image_q[positives] = 0
        text_q[positives.T] = 0
        return torch.from_numpy(np.stack([image_q, text_q]))


def _table_levels(settings: LevelSettings, matrix: np.ndarray) -> np.ndarray:
    """Adaptive levels of every row of ``matrix`` over its columns, 256 rows at a time."""
    from trainer.levels import adaptive_levels

    out = np.zeros(matrix.shape, dtype=np.int64)
    if matrix.shape[1] < 2:
        return out
    for start in range(0, len(matrix), 256):
        rows = torch.from_numpy(np.ascontiguousarray(matrix[start : start + 256]))
        found = adaptive_levels(rows, settings.k_min, settings.k_max, max_iter=settings.max_iter)
        out[start : start + 256] = found.levels.numpy()
    return out
