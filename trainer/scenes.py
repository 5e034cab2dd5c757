"""The scene world: procedural photos that know their own ground truth.

A :class:`Scene` is five attributes (object kind, object colour, object count, setting, time of
day) plus a seed that fixes every visual detail. Relevance between a query (the attributes it
names) and a scene is the weighted share of named attributes the scene matches, so retrieval
quality, graded tiers and long-tail behaviour can be measured exactly.

Some compositions (:data:`HELD_OUT_COMPOSITIONS`) never appear in the training split nor in the
demo library: queries for them are long-tail for real, and a model can only answer them by
composing what it learned about each attribute separately.

Relevance of a query that names no attribute is undefined: :func:`relevance` and
:func:`relevance_matrix` raise ``ValueError`` for it rather than guess (every scene would match
it vacuously, or none would). Callers parsing free text should drop such queries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_WEIGHTS",
    "COLOURS",
    "COUNTS",
    "HELD_OUT_COMPOSITIONS",
    "KINDS",
    "SETTINGS",
    "TIMES",
    "VOCABULARY",
    "Scene",
    "encode_queries",
    "encode_scenes",
    "held_out_mask",
    "is_held_out",
    "normalise_attributes",
    "relevance",
    "relevance_matrix",
    "sample_scenes",
]

KINDS: tuple[str, ...] = ("car", "house", "tree", "boat", "balloon", "kite")
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
COUNTS: tuple[str, ...] = ("one", "two", "three")
SETTINGS: tuple[str, ...] = ("beach", "snow", "meadow", "city", "desert")
TIMES: tuple[str, ...] = ("day", "sunset", "night")

#: Attribute names in a fixed order: the columns of the integer codes.
ATTRIBUTES: tuple[str, ...] = ("kind", "colour", "count", "setting", "time")
VOCABULARY: dict[str, tuple[str, ...]] = {
    "kind": KINDS,
    "colour": COLOURS,
    "count": COUNTS,
    "setting": SETTINGS,
    "time": TIMES,
}
ATTRIBUTE_WEIGHTS: dict[str, float] = {
    "kind": 0.35,
    "colour": 0.25,
    "setting": 0.20,
    "time": 0.10,
    "count": 0.10,
}

# Weights as integer multiples of 1/20: sums of matched weights are then exact in float32 and a
# full match gives exactly 1.0.
_UNIT = 20
_WEIGHT_UNITS = np.array([round(ATTRIBUTE_WEIGHTS[a] * _UNIT) for a in ATTRIBUTES], dtype=np.int64)
assert np.allclose(_WEIGHT_UNITS / _UNIT, [ATTRIBUTE_WEIGHTS[a] for a in ATTRIBUTES])
assert int(_WEIGHT_UNITS.sum()) == _UNIT

_INDEX: dict[str, dict[str, int]] = {a: {v: i for i, v in enumerate(VOCABULARY[a])} for a in ATTRIBUTES}
_SIZES = np.array([len(VOCABULARY[a]) for a in ATTRIBUTES], dtype=np.int64)
_OFFSETS = np.concatenate([[0], np.cumsum(_SIZES)[:-1]])
_COUNT_ALIASES = {1: "one", 2: "two", 3: "three", "1": "one", "2": "two", "3": "three"}

#: Compositions that never occur in the training split, the test split or the demo library.
#: Each names two attributes; a scene is held out when it matches both of any entry.
#: Every single attribute value still occurs in training, in other combinations.
HELD_OUT_COMPOSITIONS: tuple[Mapping[str, str], ...] = (
    {"kind": "car", "colour": "purple"},
    {"kind": "balloon", "colour": "black"},
    {"kind": "tree", "colour": "blue"},
    {"kind": "house", "colour": "orange"},
    {"kind": "boat", "setting": "desert"},
    {"kind": "balloon", "setting": "city"},
    {"kind": "house", "setting": "beach"},
)

Split = Literal["train", "test", "heldout"]
# The low two bits of a sampled scene's seed say which split drew it, so the splits never share
# a seed (the demo library uses the fourth value).
_SPLIT_CODES: dict[str, int] = {"train": 0, "test": 1, "heldout": 2, "demo": 3}
_SEED_DOMAIN = 0x5CE7E5
_CHUNK = 1024
_DIRECT_LIMIT = 1 << 20  # up to this many cells, relevance_matrix compares codes directly


@dataclass(frozen=True)
class Scene:
    """One photo of the scene world: its attributes and the seed that fixes its look.

    Attributes:
        kind: what the objects are, one of :data:`KINDS`.
        colour: the objects' colour, one of :data:`COLOURS` (a tree's crown, a boat's hull and sails).
        count: how many objects, one of :data:`COUNTS` (a word; see :attr:`n_objects`).
        setting: where, one of :data:`SETTINGS`.
        time: when, one of :data:`TIMES`.
        seed: non-negative integer fixing positions, sizes, textures, grain.
    """

    kind: str
    colour: str
    count: str
    setting: str
    time: str
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.count, str) or self.count not in _INDEX["count"]:
            alias = _COUNT_ALIASES.get(self.count)  # type: ignore[call-overload]
            if alias is None:
                raise ValueError(f"count must be one of {COUNTS} (or 1..3), not {self.count!r}")
            object.__setattr__(self, "count", alias)
        for name in ("kind", "colour", "setting", "time"):
            value = getattr(self, name)
            if value not in _INDEX[name]:
                raise ValueError(f"{name} must be one of {VOCABULARY[name]}, not {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def n_objects(self) -> int:
        """The count as a number (1..3)."""
        return _INDEX["count"][self.count] + 1

    def attributes(self) -> dict[str, str]:
        """All five attributes by name, in :data:`ATTRIBUTES` order."""
        return {a: getattr(self, a) for a in ATTRIBUTES}

    def codes(self) -> tuple[int, ...]:
        """The attributes as indices into their vocabularies, in :data:`ATTRIBUTES` order."""
        return tuple(_INDEX[a][getattr(self, a)] for a in ATTRIBUTES)


QueryLike = Mapping[str, object] | Scene


def normalise_attributes(query: QueryLike) -> dict[str, str]:
    """Validate a query's attributes and return them as ``{name: vocabulary value}``.

    Accepts a :class:`Scene` (all five attributes) or a mapping naming any subset; counts may be
    given as 1..3 or "1".."3". Raises ``ValueError`` for an unknown attribute name or value.
    """
    if isinstance(query, Scene):
        return query.attributes()
    out: dict[str, str] = {}
    for name, value in query.items():
        if name not in _INDEX:
            raise ValueError(f"unknown attribute {name!r}; attributes are {ATTRIBUTES}")
        if name == "count" and not (isinstance(value, str) and value in _INDEX["count"]):
            value = _COUNT_ALIASES.get(value, value)  # type: ignore[call-overload]
        if value not in _INDEX[name]:
            raise ValueError(f"{name} must be one of {VOCABULARY[name]}, not {value!r}")
        out[name] = value  # type: ignore[assignment]
    return out


def relevance(query_attrs: QueryLike, scene: Scene) -> float:
    """Relevance of ``scene`` to a query naming some attributes, in [0, 1].

    It is the sum of :data:`ATTRIBUTE_WEIGHTS` of the named attributes the scene matches,
    divided by the sum of the weights of all named attributes: 1.0 is a full match of what the
    query asks. Attributes the query does not name do not count either way.

    Raises:
        ValueError: the query names no attribute, or an unknown attribute or value.
    """
    attrs = normalise_attributes(query_attrs)
    if not attrs:
        raise ValueError("a query that names no attribute has no relevance; name at least one attribute")
    named = matched = 0
    for i, name in enumerate(ATTRIBUTES):
        if name in attrs:
            named += int(_WEIGHT_UNITS[i])
            if getattr(scene, name) == attrs[name]:
                matched += int(_WEIGHT_UNITS[i])
    return matched / named


def encode_scenes(scenes: Iterable[Scene]) -> np.ndarray:
    """Scenes as an int8 array (N, 5) of vocabulary indices, columns in :data:`ATTRIBUTES` order."""
    rows = [s.codes() for s in scenes]
    return np.array(rows, dtype=np.int8).reshape(len(rows), len(ATTRIBUTES))


def encode_queries(queries: Iterable[QueryLike]) -> np.ndarray:
    """Queries as an int8 array (Q, 5) of vocabulary indices, -1 where an attribute is not named."""
    rows = []
    for query in queries:
        attrs = normalise_attributes(query)
        rows.append([_INDEX[a][attrs[a]] if a in attrs else -1 for a in ATTRIBUTES])
    return np.array(rows, dtype=np.int8).reshape(len(rows), len(ATTRIBUTES))


def _one_hot(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, sum of vocabulary sizes) float32 with ``values[a]`` at each named attribute's column."""
    out = np.zeros((codes.shape[0], int(_SIZES.sum())), dtype=np.float32)
    for a in range(len(ATTRIBUTES)):
        named = codes[:, a] >= 0
        rows = np.flatnonzero(named)
        out[rows, _OFFSETS[a] + codes[rows, a].astype(np.int64)] = values[a]
    return out


def relevance_matrix(
    queries: Sequence[QueryLike] | np.ndarray,
    scenes: Sequence[Scene] | np.ndarray,
    dtype: type = np.float32,
) -> np.ndarray:
    """Relevance of every scene to every query, (Q, N), equal to :func:`relevance` element-wise.

    ``queries`` and ``scenes`` may be given already encoded (:func:`encode_queries`,
    :func:`encode_scenes`) to skip the encoding. Small matrices (a training batch) compare codes
    directly; large ones (a benchmark pool) are one matrix product of one-hot codes. Either way
    the sums are of integer weight units, so the result is exact and a full match is 1.0.

    Raises:
        ValueError: a query names no attribute.
    """
    q = np.asarray(queries) if isinstance(queries, np.ndarray) else encode_queries(queries)
    s = np.asarray(scenes) if isinstance(scenes, np.ndarray) else encode_scenes(scenes)
    if q.ndim != 2 or q.shape[1] != len(ATTRIBUTES) or s.ndim != 2 or s.shape[1] != len(ATTRIBUTES):
        raise ValueError(f"encoded queries and scenes must have {len(ATTRIBUTES)} columns")
    if s.size and (s.min() < 0 or np.any(s.max(axis=0) >= _SIZES)):
        raise ValueError("encoded scenes hold a code outside the vocabulary")
    if q.size and np.any(q.max(axis=0) >= _SIZES):
        raise ValueError("encoded queries hold a code outside the vocabulary")
    named_units = (q >= 0).astype(np.int64) @ _WEIGHT_UNITS
    if np.any(named_units == 0):
        bad = int(np.flatnonzero(named_units == 0)[0])
        raise ValueError(f"query {bad} names no attribute; name at least one attribute")
    if q.shape[0] * s.shape[0] <= _DIRECT_LIMIT:
        # training batches: plain comparisons, single-threaded (BLAS threads would compete with torch)
        out = np.zeros((q.shape[0], s.shape[0]), dtype=np.float32)
        for a in range(len(ATTRIBUTES)):
            out += (q[:, a, None] == s[None, :, a]) * np.float32(_WEIGHT_UNITS[a])
    else:
        qw = _one_hot(q, _WEIGHT_UNITS.astype(np.float32))
        sw = _one_hot(s, np.ones(len(ATTRIBUTES), dtype=np.float32))
        out = qw @ sw.T
    # sums of integer units are exact in float32, so a full match divides to exactly 1.0
    out /= named_units.astype(np.float32)[:, None]
    return out.astype(dtype, copy=False)


def _composition_codes() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    pairs = []
    for comp in HELD_OUT_COMPOSITIONS:
        (a, va), (b, vb) = comp.items()
        pairs.append(((ATTRIBUTES.index(a), _INDEX[a][va]), (ATTRIBUTES.index(b), _INDEX[b][vb])))
    return pairs


_HELD_OUT_CODES = _composition_codes()


def held_out_mask(codes: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of held-out rows of encoded scenes (or queries: -1 never matches)."""
    codes = np.asarray(codes)
    mask = np.zeros(codes.shape[0], dtype=bool)
    for (a, va), (b, vb) in _HELD_OUT_CODES:
        mask |= (codes[:, a] == va) & (codes[:, b] == vb)
    return mask


def is_held_out(scene: QueryLike) -> bool:
    """Whether a scene (or a query's attributes) is one of :data:`HELD_OUT_COMPOSITIONS`.

    A query is held out when it names both attributes of a held-out composition: no training or
    demo photo matches it fully.
    """
    attrs = normalise_attributes(scene)
    return any(all(attrs.get(k) == v for k, v in comp.items()) for comp in HELD_OUT_COMPOSITIONS)


def _sample_chunk(seed: int, code: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([_SEED_DOMAIN, code, seed, chunk])
    codes = np.stack([rng.integers(0, int(n), _CHUNK) for n in _SIZES], axis=1)
    seeds = rng.integers(0, 2**48, _CHUNK, dtype=np.int64) * 4 + code
    return codes, seeds


def sample_codes(n: int, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`sample_scenes` but returns (codes int8 (n, 5), seeds int64 (n,)) arrays."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {tuple(_SPLIT_CODES)}, not {split!r}")
    if n < 0:
        raise ValueError(f"n must be non-negative, not {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    code = _SPLIT_CODES[split]
    got_codes: list[np.ndarray] = []
    got_seeds: list[np.ndarray] = []
    have = chunk = 0
    while have < n:
        codes, seeds = _sample_chunk(int(seed), code, chunk)
        mask = held_out_mask(codes)
        keep = mask if split == "heldout" else ~mask
        got_codes.append(codes[keep])
        got_seeds.append(seeds[keep])
        have += int(keep.sum())
        chunk += 1
    if not got_codes:
        return np.zeros((0, len(ATTRIBUTES)), np.int8), np.zeros(0, np.int64)
    return (
        np.concatenate(got_codes)[:n].astype(np.int8),
        np.concatenate(got_seeds)[:n],
    )


def scenes_from_codes(codes: np.ndarray, seeds: np.ndarray) -> list[Scene]:
    """Build :class:`Scene` objects from encoded attributes and seeds."""
    vocab = [VOCABULARY[a] for a in ATTRIBUTES]
    return [
        Scene(*(vocab[a][int(row[a])] for a in range(len(ATTRIBUTES))), seed=int(s))
        for row, s in zip(codes, seeds, strict=True)
    ]


# Which attribute a counterfactual twin changes: count most often (the hardest to see), then the
# object's colour and kind; setting and time are nearly always right already.
TWIN_CHANGES: dict[str, float] = {"count": 0.5, "colour": 0.25, "kind": 0.25}


def counterfactual_twins(scenes: Sequence[Scene], seed: int) -> list[Scene]:
    """Per scene, a twin with the same seed (the same look) and one attribute changed.

    The attribute is drawn from :data:`TWIN_CHANGES`, its new value uniformly from the others; a
    value that would make a held-out composition is never drawn, so twins of a training scene stay
    in the training split.
    """
    rng = np.random.default_rng([_SEED_DOMAIN, 0x7717, int(seed)])
    names = list(TWIN_CHANGES)
    weights = np.array([TWIN_CHANGES[a] for a in names])
    out = []
    for scene in scenes:
        attrs = scene.attributes()
        held_out = is_held_out(attrs)
        while True:
            name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            options = [v for v in VOCABULARY[name] if v != attrs[name]]
            candidate = {**attrs, name: options[int(rng.integers(len(options)))]}
            if is_held_out(candidate) == held_out:
                break
        out.append(Scene(**candidate, seed=scene.seed))
    return out


def sample_scenes(n: int, seed: int, split: Split = "train") -> list[Scene]:
    """Draw ``n`` scenes, deterministic in ``seed``; attributes uniform within the split.

    Splits: ``"train"`` and ``"test"`` exclude the held-out compositions and never share a scene
    seed; ``"heldout"`` holds only held-out compositions. The result is prefix-stable: the first
    ``k`` scenes of ``sample_scenes(n, seed)`` are ``sample_scenes(k, seed)``.
    """
    if split == "demo":
        raise ValueError("the demo split is drawn by trainer.demo_library")
    return scenes_from_codes(*sample_codes(n, seed, split))
