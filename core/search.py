"""Search: from a query to graded hits (encode, retrieve, calibrate, tier).

:class:`Searcher` ties a text encoder, a :class:`~core.index.VectorIndex` and a background
sample of the library's vectors together. It knows nothing of files or models: the caller maps
photo ids to paths (see :meth:`SearchResult.to_dict`) and supplies the encoders, so this module
never imports torch.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.blas import single_threaded
from core.errors import QueryError
from core.grading import Grading, MatchGate, Tier, as_long_tail, grade, grade_by_mismatches
from core.index import VectorIndex
from core.lexicon import CLASSES, Variant, Vocabulary, variants
from core.query import Query, combine

logger = logging.getLogger(__name__)

DEFAULT_K = 100
# Library vectors sampled for the z-score calibration: the standard deviation of 4096 scores is
# within about 1% of the library's, and scoring them costs well under a millisecond.
DEFAULT_BACKGROUND = 4096
# A candidate differs from the query in an attribute when a variant of the query that changes that
# attribute describes it better by more than this, in background standard deviations (each text
# calibrated on its own scores over the library sample). Chosen on a scene-world library of its
# own (benchmarks/search_quality.py --seed 9000 --sizes 1200): with the starter model every margin
# from 0.05 to 0.2 gave the same answers within a few queries; 0.15 is the middle of that range.
# It is a z difference, so it does not depend on a model's score scale.
DEFAULT_PROBE_MARGIN = 0.15
# Variants encoded per query at most (a closed world such as the starter's has fewer; the open
# lexicon has up to 44 for a five-attribute query, about 2 s of a ViT-B-32 text tower on one CPU
# core, so they are shared out among the attributes named).
MAX_VARIANTS = 24
# When the best matches fill the page asked for, they are counted among up to this many nearest
# photos (graded the same way): "83 photos match", not the page size.
COUNT_LIMIT = 1000
# A filter (folders, dates) that leaves at most this many photos is searched exactly over them;
# a wider one asks the index for more neighbours until enough pass it.
EXACT_FILTER_LIMIT = 20_000

TextEncoder = Callable[[list[str]], np.ndarray]
ImageEncoder = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class Hit:
    """One result: the photo, its raw and calibrated scores, its tier, and which attributes of the
    query it appears to get wrong (when the query names checkable ones).

    ``tier`` is the ``rank`` of the photo's :class:`~core.grading.Tier` (1 = best). ``path`` and
    ``offline`` are filled in by the library (the searcher knows only photo ids).
    """

    photo_id: int
    score: float
    z: float
    tier: int
    differs: tuple[str, ...] = ()
    path: str = ""
    offline: bool = False  # its folder is offline (an unplugged drive, a moved folder): not openable now


@dataclass(frozen=True)
class SearchResult:
    """Hits sorted by score, best first, graded into tiers.

    Attributes:
        query: The query as the user typed it (or a canonical description of it).
        long_tail: Nothing matched: the tiers hold the nearest alternatives.
        tiers: Best first; ``Hit.tier`` is a tier's ``rank``.
        hits: Best first.
        grading: The full grading (background statistics, histogram, gate values) for drawing.
        unknown_words: Words of the query the model does not know (a closed-vocabulary model);
            a query with any cannot match exactly.
        model: The display name of the model that answered (set by the library).
        match_count: How many photos of the library are best matches (a match tier), counted
            beyond the hits returned when those fill the page; 0 for a long-tail result.
        match_count_capped: The count stopped at :data:`COUNT_LIMIT` candidates: at least that many.
    """

    query: str
    long_tail: bool
    tiers: list[Tier]
    hits: list[Hit]
    grading: Grading | None = field(default=None, repr=False, compare=False)
    unknown_words: tuple[str, ...] = ()
    model: str = ""
    match_count: int = 0
    match_count_capped: bool = False

    @property
    def details_checked(self) -> bool:
        """The query named details that were checked photo by photo (a count, a colour, an object,
        a place, a time of day): each hit's ``differs`` then says which it gets wrong, and an empty
        one means none was found. False when graded on scores alone (``differs`` is always empty)."""
        return self.grading is not None and self.grading.graded_on == "evidence"

    def to_dict(self, path_of: Callable[[int], str | os.PathLike[str]] | None = None) -> dict:
        """The JSON contract of ``search --json``::

            {"query", "model", "long_tail", "unknown_words", "match_count", "match_count_capped",
             "tiers": [{"rank", "label", "count", "min_score", "max_score"}],
             "results": [{"path", "score", "z", "tier", "differs", "offline"}]}

        In JSON a tier's ``rank`` and a result's ``tier`` are positions in the ``tiers`` list
        (0 = best), which is ``Tier.rank - 1``.

        Args:
            path_of: Maps a photo id to its file path, for hits the library has not given paths.
        """
        return {
            "query": self.query,
            "model": self.model,
            "long_tail": bool(self.long_tail),
            "unknown_words": list(self.unknown_words),
            "match_count": int(self.match_count),
            "match_count_capped": bool(self.match_count_capped),
            "tiers": [t.to_dict() for t in self.tiers],
            "results": [
                {
                    "path": os.fspath(path_of(h.photo_id)) if path_of is not None and not h.path else h.path,
                    "score": float(h.score),
                    "z": float(h.z),
                    "tier": int(h.tier) - 1,
                    "differs": list(h.differs),
                    "offline": bool(h.offline),
                }
                for h in self.hits
            ],
        }


class _LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Searcher:
    """Runs queries against one model's index.

    Args:
        encode_texts: Maps phrases to ``(T, D)`` vectors (e.g. ``Embedder.encode_texts``).
        index: The library's vectors for the same model.
        background: ``(B, D)`` library vectors sampled at random (``index.sample``): the query's
            scores over them calibrate its candidates' scores. May be empty (then the candidates
            calibrate themselves).
        encode_image: Maps an image file to its ``(D,)`` vector, for "more like this picture".
        gate: The match test of the statistical grading (queries that name no checkable attribute).
        cache_size: Phrase and image vectors kept (least recently used are dropped); 0 disables.
        grading_options: Extra keyword arguments for :func:`core.grading.grade`.
        vocabulary: The words a closed-vocabulary model knows (None: any word); queries with
            other words are told so and never match exactly.
        probe_margin: See :data:`DEFAULT_PROBE_MARGIN`; None grades every query statistically.

    A plain text query that names checkable attributes (:mod:`core.lexicon`) is graded on
    evidence: its counterfactual variants are encoded too (cached like any phrase), and each
    candidate is checked against them (:meth:`mismatches`).
    """

    def __init__(
        self,
        encode_texts: TextEncoder,
        index: VectorIndex,
        background: np.ndarray,
        *,
        encode_image: ImageEncoder | None = None,
        gate: MatchGate | None = None,
        cache_size: int = 512,
        grading_options: dict | None = None,
        vocabulary: Vocabulary | None = None,
        probe_margin: float | None = DEFAULT_PROBE_MARGIN,
    ) -> None:
        if probe_margin is not None and not (math.isfinite(probe_margin) and probe_margin >= 0):
            raise ValueError(f"probe margin must be a finite number >= 0, got {probe_margin}")
        self.vocabulary = vocabulary
        self.probe_margin = probe_margin
        self._encode_texts = encode_texts
        self._encode_image = encode_image
        self.index = index
        self.gate = gate or MatchGate()
        self.grading_options = dict(grading_options or {})
        self._cache = _LRU(cache_size)
        self.set_background(background)

    @classmethod
    def for_index(
        cls,
        encode_texts: TextEncoder,
        index: VectorIndex,
        *,
        background_size: int = DEFAULT_BACKGROUND,
        seed: int = 0,
        **options,
    ) -> Searcher:
        """A searcher whose background is a random sample of ``index`` itself."""
        return cls(encode_texts, index, index.sample(background_size, seed=seed), **options)

    # ------------------------------------------------------------------ configuration

    def resample_background(self, size: int = DEFAULT_BACKGROUND, seed: int = 0) -> None:
        """Draw a new background sample from the index (after the library changed a lot)."""
        self.set_background(self.index.sample(size, seed=seed))

    def set_background(self, background: np.ndarray) -> None:
        """Replace the background sample (after the library changed a lot)."""
        bg = np.asarray(background, dtype=np.float32)
        if bg.size == 0:
            bg = np.empty((0, self.index.dim), np.float32)
        if bg.ndim != 2 or bg.shape[1] != self.index.dim:
            raise ValueError(f"background must be (B, {self.index.dim}), got {bg.shape}")
        self._background = np.ascontiguousarray(bg)

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_info(self) -> dict[str, int]:
        return {"hits": self._cache.hits, "misses": self._cache.misses, "size": len(self._cache)}

    # ------------------------------------------------------------------ searching

    def search(
        self, query: str | Query, k: int = DEFAULT_K, allowed: np.ndarray | None = None
    ) -> SearchResult:
        """Search by text (``'beach -people'``...) or by a :class:`~core.query.Query`.

        ``allowed``: only these photo ids may be results (a filter by folder or date); None allows
        every photo.

        Raises:
            QueryError: the query is empty or malformed, or its example photo is not indexed.
        """
        q = Query.parse(query) if isinstance(query, str) else query
        exclude = (q.photo_id,) if q.photo_id is not None else ()
        positive = " ".join(t.text for t in q.terms if t.weight > 0)
        unknown = tuple(self.vocabulary.unknown(positive)) if self.vocabulary is not None else ()
        plain = len(q.terms) == 1 and q.terms[0].weight > 0 and not q.has_example
        return self.search_vector(
            self.query_vector(q),
            k,
            label=q.text or q.describe(),
            exclude=exclude,
            probe_text=q.terms[0].text if plain else None,
            unknown_words=unknown,
            allowed=allowed,
        )

    def query_vector(self, query: Query) -> np.ndarray:
        """The unit ``(D,)`` vector of a query (phrase and image vectors come from the cache)."""
        if not query.terms and not query.has_example:
            raise QueryError("Type something to search for.")
        texts = [t.text for t in query.terms]
        vecs = self._text_vectors(texts) if texts else np.empty((0, self.index.dim), np.float32)
        example = None
        if query.photo_id is not None:
            try:
                example = self.index.get_vectors([query.photo_id])[0]
            except KeyError:
                raise QueryError(
                    f"Photo {query.photo_id} is not indexed for this model yet; index the library first."
                ) from None
        elif query.image_path is not None:
            example = self._image_vector(Path(query.image_path))
        weights = [t.weight for t in query.terms]
        image_weight = query.image_weight
        if example is not None and len(weights):
            weights, image_weight = self._balanced(weights, vecs, image_weight, example)
        return combine(weights, vecs, example, image_weight)

    def _balanced(
        self, weights: list[float], vecs: np.ndarray, image_weight: float, example: np.ndarray
    ) -> tuple[list[float], float]:
        """Weights that give an example photo and text an equal say ("like this, but at night").

        A photo is far more similar to photos than any text is (the two encoders' scores have
        different spreads), so a plain sum would be the photo alone. Each part is divided by the
        spread of its scores over the library sample: the combined score is then a sum of z-scores.
        """
        if self._background.shape[0] < 2:
            return weights, image_weight
        parts = np.vstack([vecs, example[None, :]]).astype(np.float32)
        parts /= np.maximum(np.linalg.norm(parts, axis=1, keepdims=True), 1e-12)
        with single_threaded():
            spread = np.maximum((self._background @ parts.T).std(axis=0), 1e-6)
        return [w / float(sd) for w, sd in zip(weights, spread[:-1], strict=True)], image_weight / float(
            spread[-1]
        )

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = DEFAULT_K,
        *,
        label: str = "",
        exclude: Sequence[int] = (),
        probe_text: str | None = None,
        unknown_words: Sequence[str] = (),
        allowed: np.ndarray | None = None,
    ) -> SearchResult:
        """Retrieve and grade the ``k`` best photos for a query vector, leaving out ``exclude``
        (and, with ``allowed``, every photo not in it).

        With ``probe_text`` (the query's one phrase), candidates are graded on the evidence of its
        counterfactual variants when it has any; ``unknown_words`` make the result long tail.
        """
        q = np.asarray(vector, dtype=np.float32).ravel()
        skip = {int(i) for i in exclude}
        allowed = None if allowed is None else np.unique(np.asarray(allowed, dtype=np.int64))
        ids, scores = self._retrieve(q, k, skip, allowed)
        with single_threaded():
            bg_scores = self._background @ q
        g = grade(scores, bg_scores, gate=self.gate, library_size=len(self.index), **self.grading_options)
        differs: list[tuple[str, ...]] = [()] * ids.size
        probes = (
            variants(probe_text, self.vocabulary, limit=MAX_VARIANTS)
            if probe_text and self.probe_margin is not None
            else []
        )
        if probes and ids.size:
            differs = self.mismatches(probe_text, probes, ids)
            counts = np.array([len(d) for d in differs], np.int64)
            g = grade_by_mismatches(g, scores, counts, known=not unknown_words)
        elif unknown_words:
            g = as_long_tail(g)
        hits = [
            Hit(int(pid), float(s), float(z), int(t), d)
            for pid, s, z, t, d in zip(
                ids.tolist(), scores.tolist(), g.z.tolist(), g.tier_of.tolist(), differs, strict=True
            )
            if t > 0
        ]
        count, capped = self._count_matches(q, g, skip, allowed, probe_text if probes else None, probes)
        return SearchResult(
            query=label,
            long_tail=g.long_tail,
            tiers=g.tiers,
            hits=hits,
            grading=g,
            unknown_words=tuple(unknown_words),
            match_count=count,
            match_count_capped=capped,
        )

    def _count_matches(
        self,
        q: np.ndarray,
        g: Grading,
        skip: set[int],
        allowed: np.ndarray | None,
        probe_text: str | None,
        probes: Sequence[Variant],
    ) -> tuple[int, bool]:
        """(how many photos are best matches, whether the count stopped at COUNT_LIMIT).

        Within the page the match tiers are counted. When they run to its last tenth, more may
        follow: up to COUNT_LIMIT nearest photos are graded the same way (the variants' evidence,
        or the z of the page's weakest match) and their best matches counted.
        """
        if g.long_tail:
            return 0, False
        matched = [t.rank for t in g.tiers if t.level == 0]
        is_match = np.isin(g.tier_of, matched)
        on_page = int(is_match.sum())
        finite = int((g.tier_of > 0).sum())
        available = (len(self.index) if allowed is None else allowed.size) - len(skip)
        last = int(np.flatnonzero(is_match)[-1]) if on_page else -1
        # The matches end on this page unless they reach its last tenth (the photo at the page's
        # edge may be a match that a page one longer would have graded so).
        if last < finite - max(3, finite // 10) or finite >= available:
            return on_page, False
        ids, scores = self._retrieve(q, min(COUNT_LIMIT, available), skip, allowed)
        if probe_text is not None:
            counts = np.array([len(d) for d in self.mismatches(probe_text, probes, ids)], np.int64)
            with single_threaded():
                bg_scores = self._background @ q
            base = grade(
                scores, bg_scores, gate=self.gate, library_size=len(self.index), **self.grading_options
            )
            wider = grade_by_mismatches(base, scores, counts, known=True)
            wide_matched = [t.rank for t in wider.tiers if t.level == 0]
            count = 0 if wider.long_tail else int(np.isin(wider.tier_of, wide_matched).sum())
        else:
            weakest = float(np.nanmin(g.z[np.isin(g.tier_of, matched)]))
            z = (scores - g.background_mean) / g.background_std
            count = int((z >= weakest - 1e-9).sum())
        count = max(count, on_page)
        return count, count >= ids.size and ids.size < available

    def _retrieve(
        self, q: np.ndarray, k: int, skip: set[int], allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest photo ids and their scores, best first, without ``skip``, within
        ``allowed`` (sorted unique ids) when given."""
        if allowed is not None and allowed.size <= EXACT_FILTER_LIMIT:
            ids = allowed[~np.isin(allowed, np.fromiter(skip, np.int64, len(skip)))] if skip else allowed
            ids = ids[np.isin(ids, self.index.ids(), assume_unique=True)]  # indexed ones
            with single_threaded():
                scores = self.index.get_vectors(ids) @ q if ids.size else np.empty(0, np.float32)
            order = np.argsort(-scores, kind="stable")[:k]
            return ids[order], scores[order].astype(np.float32)
        want = k + len(skip)
        while True:
            ids, scores = self.index.search(q, want)
            ids, scores = ids[0], scores[0]
            keep = np.ones(ids.size, bool)
            if skip:
                keep &= np.fromiter((i not in skip for i in ids.tolist()), dtype=bool, count=ids.size)
            if allowed is not None:
                keep &= np.isin(ids, allowed, assume_unique=True)
            if keep.sum() >= k or ids.size >= len(self.index):
                return ids[keep][:k], scores[keep][:k]
            want = min(want * 4, len(self.index))

    def mismatches(self, text: str, probes: Sequence[Variant], ids: np.ndarray) -> list[tuple[str, ...]]:
        """Per candidate photo, the attribute classes in which a variant of ``text`` describes it
        better than ``text`` does, by more than the probe margin.

        Every text is calibrated on its own scores over the background sample (z), so a variant
        that scores higher on every photo (a more common word, a shorter phrase) gains nothing.
        """
        texts = [text, *(p.text for p in probes)]
        vectors = self._text_vectors(texts)
        candidates = self.index.get_vectors(ids)
        calibration = self._background if self._background.shape[0] >= 2 else candidates
        with single_threaded():
            bg = calibration @ vectors.T
            z = (candidates @ vectors.T - bg.mean(axis=0)) / np.maximum(bg.std(axis=0), 1e-6)
        better = (z[:, 1:] - z[:, :1]) > self.probe_margin
        classes = np.array([p.cls for p in probes])
        found = np.stack([better[:, classes == c].any(axis=1) for c in CLASSES], axis=1)
        return [tuple(c for c, hit in zip(CLASSES, row, strict=True) if hit) for row in found.tolist()]

    # ------------------------------------------------------------------ encoders + cache

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for t in texts:
            v = self._cache.get(("text", t))
            if v is None:
                if t not in missing:
                    missing.append(t)
            else:
                found[t] = v
        if missing:
            encoded = np.asarray(self._encode_texts(missing), dtype=np.float32).reshape(len(missing), -1)
            if encoded.shape[1] != self.index.dim:
                raise QueryError(
                    f"The text encoder makes {encoded.shape[1]}-d vectors but the index holds "
                    f"{self.index.dim}-d ones: the library was indexed with another model."
                )
            for t, v in zip(missing, encoded, strict=True):
                found[t] = v
                self._cache.put(("text", t), v)
        return np.stack([found[t] for t in texts])

    def _image_vector(self, path: Path) -> np.ndarray:
        if self._encode_image is None:
            raise QueryError("Searching by example image needs an image encoder, and none is loaded.")
        try:
            st = path.stat()
        except OSError as exc:
            raise QueryError(f"Cannot read the example image {path}: {exc.strerror}.") from exc
        key = ("image", str(path.resolve()), st.st_mtime_ns, st.st_size)
        v = self._cache.get(key)
        if v is None:
            v = np.asarray(self._encode_image(path), dtype=np.float32).ravel()
            if v.size != self.index.dim:
                raise QueryError(
                    f"The image encoder makes {v.size}-d vectors, the index holds {self.index.dim}-d."
                )
            self._cache.put(key, v)
        return v
