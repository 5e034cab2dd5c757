"""Graded relevance between photos from their tags, and training captions made from tags.

Relevance between two photos a and b with tag sets A and B (normalised, with implied tags added by
:func:`core.tags.expand_tags`) is a soft, weighted Dice coefficient:

    R(A, B) = ( sum_{t in A} w_t max_{u in B} m(t, u) + sum_{u in B} w_u max_{t in A} m(t, u) )
              / ( sum_{t in A} w_t + sum_{u in B} w_u )

* ``m(t, u)`` is how well tag u stands for tag t: 1 when they are the same tag, otherwise
  ``cap * max(sem(t, u), lex(t, u))`` with ``cap = 0.9`` (two different tags never match fully):

  - ``sem(t, u) = clip((cos(e_t, e_u) - c0) / (1 - c0), 0, 1)``, where ``e_t`` is the *frozen*
    text encoder's vector of the tag phrase and ``c0`` the median cosine between two different
    tags of the vocabulary: a typically unrelated pair of tags scores 0, near-synonyms near 1;
  - ``lex(t, u)`` is the Dice overlap of their word sets ("red kayak" and "kayak": 2/3).

* ``w_t = log(1 + N / n_t)`` (inverse document frequency over the N tagged photos, n_t of which
  carry t): a tag on every photo ("family") weighs little, a rare one much.

R is symmetric, in [0, 1], 1 for equal tag sets, and with ``m`` the identity it is the weighted
Dice coefficient of the two sets. Each side's term is a soft precision (how much of A is found
in B), so the two terms together are a soft F1 ("BERTScore"-style greedy matching).

A caption (or a search) naming tags Q is related to a photo with tags T by the first term alone,
the *coverage* (:meth:`TagRelevance.coverage`)::

    cov(Q, T) = sum_{t in Q} w_t max_{u in T} m(t, u) / sum_{t in Q} w_t

1 when the photo carries every tag the caption names, whatever else it carries; this is the
relevance the fine-tune trains and evaluates with (captions name a photo's whole tag set or one
of its tags).

Captions for training name all of a photo's own tags in a random order, with varied templates
("a photo of grandma's garden and the red kayak in 2019"); evaluation uses one fixed template.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.tags import expand_tags, is_date_tag

logger = logging.getLogger(__name__)

MATCH_CAP = 0.9
MAX_TAGS = 32  # relevance looks at most at this many (expanded) tags of a photo
_ROW_CHUNK = 64

TextEncoder = Callable[[Sequence[str]], np.ndarray]

_TEMPLATES = (
    "{x}",
    "a photo of {x}",
    "a picture of {x}",
    "a photo showing {x}",
    "an image of {x}",
    "a snapshot of {x}",
    "{x}, photo",
    "photo: {x}",
)
_DATE_TEMPLATES = ("{x} in {d}", "{x} from {d}", "{d}: {x}", "{x}, {d}", "{x} ({d})")


def _words(tag: str) -> frozenset[str]:
    return frozenset(tag.split())


def _join(items: Sequence[str], rng: np.random.Generator | None) -> str:
    if len(items) == 1:
        return items[0]
    style = 0 if rng is None else int(rng.integers(3 if len(items) == 2 else 2))
    if style == 1:
        return ", ".join(items)
    if style == 2:
        return " with ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def tag_caption(tags: Sequence[str], rng: np.random.Generator | None = None) -> str:
    """A caption naming every tag; varied wording and order with ``rng``, a fixed one without.

    >>> tag_caption(["grandma's garden", "2019"])
    "a photo of grandma's garden in 2019"
    """
    subjects = [t for t in tags if not is_date_tag(t)]
    dates = [t for t in tags if is_date_tag(t)]
    if rng is not None:
        subjects = [subjects[i] for i in rng.permutation(len(subjects))]
    if not subjects:
        subjects, dates = dates, []
    if not subjects:
        return "a photo"
    text = (_TEMPLATES[int(rng.integers(len(_TEMPLATES)))] if rng is not None else _TEMPLATES[1]).format(
        x=_join(subjects, rng)
    )
    if dates:
        template = "{x} in {d}" if rng is None else _DATE_TEMPLATES[int(rng.integers(len(_DATE_TEMPLATES)))]
        text = template.format(x=text, d=_join(dates, None))
    return text


@dataclass
class TagVocabulary:
    """The (expanded) tags of a data set with their frozen-encoder vectors and weights."""

    tags: list[str]
    vectors: np.ndarray  # (V, D) unit rows, from the frozen text encoder
    weights: np.ndarray  # (V,) idf
    floor: float  # c0: the median cosine between two different tags

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tags)}
        self._words = [_words(t) for t in self.tags]

    def match(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """m(t, u) for tag ids ``rows`` x ``cols`` (see the module docstring)."""
        cos = self.vectors[rows] @ self.vectors[cols].T
        sem = np.clip((cos - self.floor) / max(1.0 - self.floor, 1e-6), 0.0, 1.0)
        m = MATCH_CAP * np.maximum(sem, self._lexical(rows, cols))
        m[rows[:, None] == cols[None, :]] = 1.0
        return m.astype(np.float32)

    def _lexical(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dice overlap of the word sets of tags ``rows`` x ``cols``."""
        vocab: dict[str, int] = {}
        for t in np.concatenate([rows, cols]).tolist():
            for word in self._words[t]:
                vocab.setdefault(word, len(vocab))

        def incidence(ids: np.ndarray) -> np.ndarray:
            out = np.zeros((len(ids), max(len(vocab), 1)), dtype=np.float32)
            for i, t in enumerate(ids.tolist()):
                out[i, [vocab[w] for w in self._words[t]]] = 1.0
            return out

        a, b = incidence(rows), incidence(cols)
        sizes = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sizes > 0, 2.0 * (a @ b.T) / sizes, 0.0).astype(np.float32)


def build_vocabulary(tag_sets: Sequence[Sequence[str]], encode_texts: TextEncoder) -> TagVocabulary:
    """Expand every tag set, count tags, and encode each distinct tag once with the frozen encoder."""
    expanded = [expand_tags(tags)[:MAX_TAGS] for tags in tag_sets]
    counts: dict[str, int] = {}
    for tags in expanded:
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    tags = sorted(counts)
    if not tags:
        raise ValueError("no tags to build a vocabulary from")
    vectors = np.asarray(encode_texts(tags), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n = max(len(tag_sets), 1)
    weights = np.log1p(n / np.array([counts[t] for t in tags], dtype=np.float64)).astype(np.float32)
    floor = 1.0
    if len(tags) >= 2:
        sample = vectors
        if len(tags) > 2048:
            sample = vectors[np.random.default_rng(0).choice(len(tags), 2048, replace=False)]
        cos = sample @ sample.T
        off = cos[~np.eye(len(sample), dtype=bool)]
        floor = float(np.median(off))
    return TagVocabulary(tags, vectors, weights, min(floor, 0.999))


class TagRelevance:
    """Relevance R between tag sets (rows of a data set), computed in row chunks.

    Args:
        vocabulary: from :func:`build_vocabulary` over the same tag sets (or a superset).
        tag_sets: the tag sets of the items; items are referred to by their index here.
    """

    def __init__(self, vocabulary: TagVocabulary, tag_sets: Sequence[Sequence[str]]):
        self.vocabulary = vocabulary
        expanded = [expand_tags(tags)[:MAX_TAGS] for tags in tag_sets]
        width = max((len(t) for t in expanded), default=1) or 1
        self.ids = np.full((len(expanded), width), -1, dtype=np.int64)
        for i, tags in enumerate(expanded):
            ids = [vocabulary.index[t] for t in tags if t in vocabulary.index]
            self.ids[i, : len(ids)] = ids
        self.mask = self.ids >= 0
        self.w = np.where(self.mask, vocabulary.weights[np.maximum(self.ids, 0)], 0.0).astype(np.float32)
        self.total = self.w.sum(axis=1)

    def __len__(self) -> int:
        return len(self.ids)

    def matrix(self, rows: Sequence[int] | np.ndarray, cols: Sequence[int] | np.ndarray) -> np.ndarray:
        """R (soft weighted Dice) between items ``rows`` and ``cols``: float32 (len(rows), len(cols))."""
        return self._compute(rows, cols, coverage=False)

    def coverage(self, queries: Sequence[int] | np.ndarray, items: Sequence[int] | np.ndarray) -> np.ndarray:
        """How much of each query's tags the items carry: ``sum_{t in Q} w_t max_{u in T} m(t, u) /
        sum_{t in Q} w_t`` (the first half of R), float32 (len(queries), len(items)).

        It is 1 when an item carries every tag of the query, whatever else it carries: the relevance
        of a caption (or a search) naming some tags to a photo.
        """
        return self._compute(queries, items, coverage=True)

    def _compute(self, rows, cols, coverage: bool) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        out = np.zeros((len(rows), len(cols)), dtype=np.float32)
        if not len(rows) or not len(cols):
            return out
        used = np.unique(np.concatenate([self.ids[rows][self.mask[rows]], self.ids[cols][self.mask[cols]]]))
        if not used.size:
            return out
        local = np.full(len(self.vocabulary.tags), -1, dtype=np.int64)
        local[used] = np.arange(used.size)
        m = np.zeros((used.size + 1, used.size + 1), dtype=np.float32)  # last row/column: padding
        m[:-1, :-1] = self.vocabulary.match(used, used)
        pad = used.size
        col_ids = np.where(self.mask[cols], local[np.maximum(self.ids[cols], 0)], pad)  # (C, T)
        col_w = self.w[cols]
        for start in range(0, len(rows), _ROW_CHUNK):
            part = rows[start : start + _ROW_CHUNK]
            row_ids = np.where(self.mask[part], local[np.maximum(self.ids[part], 0)], pad)  # (R, T)
            pair = m[row_ids[:, :, None, None], col_ids[None, None, :, :]]  # (R, T, C, T)
            forward = (pair.max(axis=3) * self.w[part][:, :, None]).sum(axis=1)  # (R, C)
            if coverage:
                denom = np.broadcast_to(self.total[part][:, None], forward.shape)
                value = forward
            else:
                value = forward + (pair.max(axis=1) * col_w[None, :, :]).sum(axis=2)
                denom = self.total[part][:, None] + self.total[cols][None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + len(part)] = np.where(denom > 0, value / denom, 0.0)
        if not coverage:
            out[rows[:, None] == cols[None, :]] = 1.0
        return np.clip(out, 0.0, 1.0)
