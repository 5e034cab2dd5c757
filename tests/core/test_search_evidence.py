"""Grading on evidence: counterfactual variants decide tiers and "no exact match", whatever the
library size, the query's length or the model's score scale."""

from __future__ import annotations

import numpy as np
import pytest

from core.index import VectorIndex
from core.lexicon import Vocabulary, parse, tokens
from core.search import Searcher

DIM = 64
COLOURS = ("red", "blue", "green", "yellow")
OBJECTS = ("car", "boat", "house")
COUNTS = ("one", "two", "three")
TIMES = ("day", "night", "sunset")


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Model:
    """A compositional model: a photo or a text is the sum of its attributes' directions.

    ``squash`` mixes a common direction into every vector: all cosines crowd together (as in a
    model with a narrow score range), which a raw-score threshold would not survive.
    """

    def __init__(self, seed: int = 0, squash: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        names = [*COLOURS, *OBJECTS, *COUNTS, *TIMES, "other", "common"]
        basis = np.linalg.qr(rng.standard_normal((DIM, len(names))))[0].T  # orthonormal directions
        self.direction = dict(zip(names, basis, strict=True))
        self.common = self.direction.pop("common")
        self.squash = squash
        self.rng = rng

    def photo(self, **attrs: str) -> np.ndarray:
        v = sum(self.direction[a] for a in attrs.values()) + 0.03 * self.rng.standard_normal(DIM)
        return self._out(v)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            words = tokens(text)
            named = [s.value for s in parse(words)]
            known = [self.direction[n] for n in named if n in self.direction]
            v = sum(known) if known else self.direction["other"]
            out.append(self._out(v + 0.05 * self.direction["other"]))
        return np.stack(out).astype(np.float32)

    def _out(self, v: np.ndarray) -> np.ndarray:
        return unit(unit(v) + self.squash * self.common)


def library(
    model: Model, n_random: int, exclude: tuple[str, ...] = (), seed: int = 1
) -> tuple[VectorIndex, dict]:
    """Random photos of every combination (but ``exclude``: (colour, object, count, time))."""
    rng = np.random.default_rng(seed)
    ids, vecs, attrs_of = [], [], {}
    combos = [(c, o, n, t) for c in COLOURS for o in OBJECTS for n in COUNTS for t in TIMES]
    for i in range(n_random):
        combo = combos[int(rng.integers(len(combos)))]
        if combo == exclude:
            continue
        attrs = dict(zip(("colour", "object", "count", "time"), combo, strict=True))
        ids.append(i + 1)
        vecs.append(model.photo(**attrs))
        attrs_of[i + 1] = attrs
    index = VectorIndex(DIM)
    index.add(np.array(ids), np.array(vecs, np.float32))
    return index, attrs_of


def searcher(model: Model, index: VectorIndex, **kw) -> Searcher:
    return Searcher(model.encode_texts, index, index.sample(4096, seed=0), **kw)


def differences(attrs: dict, want: dict) -> set[str]:
    names = {"colour": "colour", "object": "object", "count": "count", "time": "time"}
    return {names[k] for k, v in want.items() if attrs[k] != v}


QUERY = "two red cars at night"
WANT = {"colour": "red", "object": "car", "count": "two", "time": "night"}


@pytest.mark.parametrize("size", [300, 3000])
@pytest.mark.parametrize("squash", [0.0, 3.0])
def test_a_full_match_is_found_and_its_tier_holds_only_full_matches(size, squash):
    model = Model(squash=squash)
    index, attrs_of = library(model, size)
    result = searcher(model, index).search(QUERY, k=100)
    assert not result.long_tail
    assert result.tiers[0].label == "Best matches" and result.tiers[0].level == 0
    best = [h for h in result.hits if h.tier == 1]
    assert best and all(not differences(attrs_of[h.photo_id], WANT) for h in best)
    # every full match among the results is a best match, and what differs is named
    for h in result.hits:
        wrong = differences(attrs_of[h.photo_id], WANT)
        assert (h.tier == 1) == (not wrong)
        assert set(h.differs) <= wrong
    one_off = [h for h in result.hits if len(differences(attrs_of[h.photo_id], WANT)) == 1]
    assert one_off and all(len(h.differs) == 1 for h in one_off)
    levels = [t.level for t in result.tiers]
    assert levels == sorted(levels) and len(set(levels)) == len(levels)


@pytest.mark.parametrize("size", [300, 3000])
@pytest.mark.parametrize("squash", [0.0, 3.0])
def test_no_full_match_says_so_and_still_ranks_the_nearest_first(size, squash):
    model = Model(squash=squash)
    index, attrs_of = library(model, size, exclude=("red", "car", "two", "night"))
    result = searcher(model, index).search(QUERY, k=100)
    assert result.long_tail
    first = result.tiers[0]
    assert first.level == 1 and first.label.startswith("Nearest alternatives")
    assert all(t.level >= 1 for t in result.tiers)
    top = [h for h in result.hits if h.tier == 1]
    assert all(len(differences(attrs_of[h.photo_id], WANT)) == 1 for h in top)
    assert all(len(h.differs) == 1 for h in top)


def test_short_and_long_queries_are_judged_alike():
    model = Model()
    index, attrs_of = library(model, 1000)
    s = searcher(model, index)
    for query, want in (
        ("a boat", {"object": "boat"}),
        ("yellow boat", {"colour": "yellow", "object": "boat"}),
    ):
        result = s.search(query, k=100)
        assert not result.long_tail
        best = [h for h in result.hits if h.tier == 1]
        assert best and all(not differences(attrs_of[h.photo_id], want) for h in best)


def test_unknown_words_are_named_and_never_match():
    model = Model()
    index, _ = library(model, 500)
    vocabulary = Vocabulary([*COLOURS, *OBJECTS, "cars", "boats", "houses", *COUNTS, *TIMES, "a", "at"])
    s = searcher(model, index, vocabulary=vocabulary)
    result = s.search("two red cars with a dog at night", k=50)
    assert result.unknown_words == ("with", "dog")
    assert result.long_tail and result.tiers[0].level >= 1
    nonsense = s.search("xyzzy", k=50)
    assert nonsense.unknown_words == ("xyzzy",) and nonsense.long_tail
    assert not s.search("two red cars at night", k=50).long_tail


def test_variants_use_only_words_a_closed_vocabulary_knows():
    model = Model()
    index, _ = library(model, 300)
    seen: list[str] = []

    def encode(texts):
        seen.extend(texts)
        return model.encode_texts(texts)

    vocabulary = Vocabulary(["red", "blue", "car", "cars", "boat", "boats", "two", "one"])
    Searcher(encode, index, index.sample(500), vocabulary=vocabulary).search("two red cars", k=20)
    assert set(seen) == {"two red cars", "one red car", "two blue cars", "two red boats"}


def test_statistical_grading_when_nothing_checkable_is_named():
    model = Model()
    index, _ = library(model, 300)
    result = searcher(model, index).search("something", k=50)
    assert result.grading.graded_on == "scores" and not result.details_checked
    assert all(not h.differs for h in result.hits)
    checked = searcher(model, index).search(QUERY, k=50)
    assert checked.grading.graded_on == "evidence" and checked.details_checked


def test_no_probes_when_turned_off_and_margin_validated():
    model = Model()
    index, _ = library(model, 300)
    assert searcher(model, index, probe_margin=None).search(QUERY, k=50).grading.graded_on == "scores"
    with pytest.raises(ValueError, match="probe margin"):
        searcher(model, index, probe_margin=float("nan"))


def test_a_closed_world_varies_only_the_values_it_has():
    """The scene world has five places: 'a pond in a meadow' varies the meadow, not the pond."""
    from core.lexicon import variants

    words = ["a", "boat", "boats", "car", "on", "pond", "in", "meadow", "beach", "snow", "city", "lake"]
    world = Vocabulary(words, {"place": ["beach", "snow", "meadow", "city"], "object": ["boat", "car"]})
    texts = {v.text for v in variants("a boat on a pond in a meadow", world)}
    assert texts == {
        "a car on a pond in a meadow",
        "a boat on a pond in a beach",
        "a boat on a pond in a snow",
        "a boat on a pond in a city",
    }
    with pytest.raises(ValueError, match="unknown attribute classes"):
        Vocabulary(words, {"mood": ["happy"]})


def test_variants_are_capped_fairly_across_the_classes_named():
    from core.lexicon import variants

    every = variants("two red cars at night on the beach")
    capped = variants("two red cars at night on the beach", limit=12)
    assert len(every) > 40 and len(capped) == 12
    assert {v.cls for v in capped} == {"count", "colour", "object", "place", "time"}
    assert [v.text for v in capped if v.cls == "count"][:2] == [
        "one red car at night on the beach",  # nearest counts first
        "three red cars at night on the beach",
    ]
    assert all(v in every for v in capped)


@pytest.mark.parametrize("k", [10, 40, 200])
def test_the_match_count_counts_every_match_not_the_page(k):
    model = Model()
    index, attrs_of = library(model, 3000)
    truth = sum(not differences(a, {"object": "boat"}) for a in attrs_of.values())  # about 1,000
    red_boats = sum(not differences(a, {"colour": "red", "object": "boat"}) for a in attrs_of.values())
    s = searcher(model, index)
    boats = s.search("a boat", k=k)
    assert boats.match_count == 1000 and boats.match_count_capped  # more than the count looks at
    assert truth > 1000
    result = s.search("a red boat", k=k)
    assert not result.match_count_capped
    assert result.match_count == red_boats  # about 250: every one counted, whatever the page
    on_page = sum(h.tier == 1 for h in result.hits)
    assert on_page == min(k, red_boats)
    assert result.to_dict()["match_count"] == red_boats


def test_no_match_counts_zero_and_a_short_list_is_counted_on_the_page():
    model = Model()
    index, attrs_of = library(model, 3000, exclude=("red", "car", "two", "night"))
    s = searcher(model, index)
    missing = s.search(QUERY, k=50)
    assert missing.long_tail and missing.match_count == 0 and not missing.match_count_capped
    want = {"colour": "blue", "object": "car", "count": "two", "time": "night"}
    truth = sum(not differences(a, want) for a in attrs_of.values())
    found = s.search("two blue cars at night", k=100)
    assert 0 < truth < 100 and found.match_count == truth
