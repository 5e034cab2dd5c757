"""Searcher: text and example queries over a real VectorIndex, grading, the cache and the JSON shape."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from core.errors import QueryError
from core.index import VectorIndex
from core.query import NOT_LIKE_WEIGHT, Query, combine
from core.search import Searcher
from tests.conftest import SEARCH_JSON_KEYS

DIM = 24


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class World:
    """Photos around known concept directions, and an encoder that knows the concepts."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.concepts = {
            name: unit(rng.standard_normal(DIM)) for name in ("beach", "people", "forest", "moon")
        }
        groups = {
            "beach": self.concepts["beach"],
            "people": self.concepts["people"],
            "beach+people": unit(self.concepts["beach"] + self.concepts["people"]),
        }
        ids, vecs, self.group_of = [], [], {}
        next_id = 100
        for name, centre in groups.items():
            for _ in range(8):
                ids.append(next_id)
                vecs.append(unit(centre + 0.05 * rng.standard_normal(DIM)))
                self.group_of[next_id] = name
                next_id += 1
        for _ in range(400):  # the rest of the library: unrelated, spread out
            ids.append(next_id)
            vecs.append(unit(rng.standard_normal(DIM)))
            self.group_of[next_id] = "other"
            next_id += 1
        self.ids, self.vecs = np.array(ids), np.array(vecs, dtype=np.float32)
        self.calls: list[list[str]] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.concepts[t] for t in texts]).astype(np.float32)

    def searcher(self, **kw) -> Searcher:
        kw.setdefault("probe_margin", None)  # statistical grading (evidence: test_search_evidence.py)
        index = VectorIndex(DIM)
        index.add(self.ids, self.vecs)
        return Searcher(self.encode_texts, index, index.sample(300, seed=1), **kw)

    def groups(self, result) -> list[str]:
        return [self.group_of[h.photo_id] for h in result.hits]


@pytest.fixture
def world() -> World:
    return World()


def test_text_search_ranks_and_grades(world):
    result = world.searcher().search("beach", k=50)
    assert len(result.hits) == 50
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert set(world.groups(result)[:16]) == {"beach", "beach+people"}
    assert not result.long_tail
    assert result.tiers[0].label == "Best matches"
    # Hits agree with the grading: tier ranks, counts and score bounds.
    assert sum(t.count for t in result.tiers) == len(result.hits)
    for tier in result.tiers:
        members = [h.score for h in result.hits if h.tier == tier.rank]
        assert len(members) == tier.count
        assert min(members) == pytest.approx(tier.min_score) and max(members) == pytest.approx(tier.max_score)
    # Scores are the exact inner products; z is calibrated on the background.
    by_id = dict(zip(world.ids.tolist(), world.vecs, strict=True))
    hit = result.hits[0]
    assert hit.score == pytest.approx(float(by_id[hit.photo_id] @ world.concepts["beach"]), abs=1e-5)
    g = result.grading
    assert hit.z == pytest.approx((hit.score - g.background_mean) / g.background_std)


def test_subtracting_a_concept_demotes_photos_that_have_it(world):
    searcher = world.searcher()
    plain = world.groups(searcher.search("beach", k=16))
    minus = world.groups(searcher.search("beach -people", k=16))
    assert plain.count("beach+people") >= 4
    assert minus[:8] == ["beach"] * 8
    assert "people" not in minus


def test_a_query_with_no_match_is_long_tail(world):
    result = world.searcher().search("moon", k=30)  # no photo near "moon"
    assert result.long_tail
    assert result.tiers[0].label == "Nearest alternatives"
    assert len(result.hits) == 30


def test_query_vectors_are_cached_per_phrase(world):
    searcher = world.searcher(cache_size=8)
    searcher.search("beach")
    searcher.search("  beach ")
    searcher.search("beach -people")
    searcher.search(Query.parse('"people" + 0.5 "beach"'))
    assert world.calls == [["beach"], ["people"]]
    assert searcher.cache_info["hits"] >= 4
    searcher.clear_cache()
    searcher.search("beach")
    assert world.calls[-1] == ["beach"]


def test_cache_evicts_the_least_recently_used(world):
    searcher = world.searcher(cache_size=2)
    for text in ["beach", "people", "beach", "forest", "beach", "people"]:
        searcher.search(text)
    # "people" was least recently used when "forest" came in; "beach" was not.
    assert world.calls == [["beach"], ["people"], ["forest"], ["people"]]
    uncached = world.searcher(cache_size=0)
    uncached.search("beach")
    uncached.search("beach")
    assert world.calls[-2:] == [["beach"], ["beach"]]


def test_more_like_a_photo_leaves_the_photo_out(world):
    searcher = world.searcher()
    pid = int(world.ids[0])  # a beach photo
    result = searcher.search(Query(photo_id=pid), k=10)
    assert pid not in [h.photo_id for h in result.hits]
    assert len(result.hits) == 10
    assert world.groups(result)[:7] == ["beach"] * 7
    with pytest.raises(QueryError, match="not indexed"):
        searcher.search(Query(photo_id=99999))
    # A photo combined with text.
    combined = searcher.search(Query(terms=Query.parse("people").terms, photo_id=pid), k=8)
    assert "beach+people" in world.groups(combined)[:3]


def test_like_an_image_file_or_vector(world, tmp_path):
    encoded: list[str] = []

    def encode_image(path):
        encoded.append(path.name)
        return np.load(path)

    searcher = world.searcher(encode_image=encode_image)
    probe = tmp_path / "probe.npy"
    np.save(probe, world.concepts["people"])
    first = searcher.search(Query(image_path=str(probe)), k=8)
    assert world.groups(first)[:7] == ["people"] * 7
    searcher.search(Query(image_path=str(probe)), k=8)
    assert encoded == ["probe.npy"], "the second query came from the cache"
    np.save(probe, world.concepts["beach"] * 1.0001)  # the file changed: encoded again
    assert world.groups(searcher.search(Query(image_path=str(probe)), k=4))[0] == "beach"
    assert len(encoded) == 2
    by_vector = searcher.search_vector(world.concepts["people"], k=8)
    assert [h.photo_id for h in by_vector.hits] == [h.photo_id for h in first.hits]
    with pytest.raises(QueryError):
        world.searcher().search(Query(image_path=str(probe)))  # no image encoder
    with pytest.raises(QueryError):
        searcher.search(Query(image_path=str(tmp_path / "missing.npy")))


def test_to_dict_has_exactly_the_result_shape(world):
    result = world.searcher().search("beach -people", k=5)
    out = replace(result, model="starter").to_dict(lambda pid: f"/photos/{pid}.jpg")
    json.dumps(out)  # plain data all the way down
    assert set(out) == SEARCH_JSON_KEYS
    assert out["query"] == "beach -people" and out["model"] == "starter"
    assert isinstance(out["long_tail"], bool)
    for i, tier in enumerate(out["tiers"]):
        assert set(tier) == {"rank", "label", "count", "min_score", "max_score"}
        assert tier["rank"] == i  # in JSON a position in the list, 0 = best
    assert [r["path"] for r in out["results"]] == [f"/photos/{h.photo_id}.jpg" for h in result.hits]
    for r, h in zip(out["results"], result.hits, strict=True):
        assert set(r) == {"path", "score", "z", "tier", "differs", "offline"}
        assert isinstance(r["score"], float) and isinstance(r["tier"], int) and r["differs"] == []
        assert out["tiers"][r["tier"]]["label"] == next(t.label for t in result.tiers if t.rank == h.tier)


def test_background_is_a_sample_of_the_library(world):
    index = VectorIndex(DIM)
    searcher = Searcher.for_index(world.encode_texts, index, background_size=50, probe_margin=None)
    assert searcher.search("beach").hits == []
    index.add(world.ids, world.vecs)
    searcher.resample_background(64, seed=2)
    g = searcher.search("beach").grading
    bg_scores = index.sample(64, seed=2) @ world.concepts["beach"]
    assert g.background_mean == pytest.approx(bg_scores.mean(), abs=1e-6)
    assert g.background_std == pytest.approx(bg_scores.std(), abs=1e-6)
    with pytest.raises(ValueError):
        searcher.set_background(np.ones((3, DIM + 1)))


def test_empty_library_and_bad_queries(world):
    empty = Searcher(world.encode_texts, VectorIndex(DIM), np.empty((0, DIM), np.float32), probe_margin=None)
    result = empty.search("beach")
    assert result.hits == [] and result.tiers == [] and result.long_tail
    searcher = world.searcher()
    with pytest.raises(QueryError):
        searcher.search("   ")
    with pytest.raises(QueryError):
        searcher.search(Query())
    wrong_dim = Searcher(lambda texts: np.ones((len(texts), 8)), searcher.index, np.empty((0, DIM)))
    with pytest.raises(QueryError, match="another model"):
        wrong_dim.search("beach")
    assert len(searcher.search("beach", k=10_000).hits) == len(world.ids)


def test_end_to_end_with_a_real_tiny_model(tiny_embedder, tmp_path):
    from PIL import Image

    colours = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (240, 240, 240), (20, 20, 20), (230, 200, 30)]
    paths = []
    for i, colour in enumerate(colours * 3):
        path = tmp_path / f"p{i}.png"
        shade = tuple(max(0, c - 10 * (i // len(colours))) for c in colour)
        Image.new("RGB", (40, 40), shade).save(path)
        paths.append(path)
    vecs = tiny_embedder.encode_images([Image.open(p) for p in paths])
    index = VectorIndex(tiny_embedder.dim)
    index.add(np.arange(len(paths)), vecs)
    searcher = Searcher(
        tiny_embedder.encode_texts,
        index,
        index.sample(100),
        encode_image=lambda p: tiny_embedder.encode_images([Image.open(p)])[0],
    )
    result = searcher.search("a red square", k=5)
    text_vec = tiny_embedder.encode_texts(["a red square"])[0]
    want = np.sort(vecs @ text_vec)[::-1][:5]
    np.testing.assert_allclose([h.score for h in result.hits], want, atol=1e-4)
    similar = searcher.search(Query(image_path=str(paths[0])), k=3)
    assert similar.hits[0].photo_id == 0 and similar.hits[0].score == pytest.approx(1.0, abs=1e-4)
    out = result.to_dict(lambda pid: paths[pid])
    assert json.loads(json.dumps(out))["results"][0]["path"] == str(paths[result.hits[0].photo_id])


def test_the_match_count_does_not_depend_on_the_page_size(world):
    searcher = world.searcher()
    whole = searcher.search("beach", k=100)
    best = [h for h in whole.hits if h.tier == 1]
    assert not whole.long_tail and 4 < len(best) < 100
    assert whole.match_count == len(best) and not whole.match_count_capped
    for k in (10, 12, 30):
        assert searcher.search("beach", k=k).match_count == len(best)


class GapWorld(World):
    """Like World, but texts sit in a direction of their own (as a real text encoder's do): a
    text's scores spread far less than a photo's, the gap between the two encoders."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(7)
        self.text_side = unit(rng.standard_normal(DIM))
        self.vecs = unit(self.vecs - np.outer(self.vecs @ self.text_side, self.text_side)).astype(np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([unit(self.concepts[t] + 3.0 * self.text_side) for t in texts]).astype(np.float32)


def test_like_this_but_with_text_gives_both_a_say():
    world = GapWorld()
    searcher = world.searcher()
    beach = int(world.ids[3])  # a beach photo, without people
    query = Query(terms=Query.parse("people").terms, photo_id=beach)
    balanced = world.groups(searcher.search(query, k=5))
    assert balanced.count("beach+people") >= 4  # like this beach, with people on it
    # A plain sum of the two vectors is the photo alone: beaches without people.
    plain = combine([1.0], searcher._text_vectors(["people"]), searcher.index.get_vectors([beach])[0])
    assert world.groups(searcher.search_vector(plain, k=5, exclude=[beach])).count("beach") >= 4


def test_not_like_this_moves_away_from_the_photo():
    world = World()
    searcher = world.searcher()
    crowd_on_beach = int(world.ids[16])  # a beach+people photo
    assert world.group_of[crowd_on_beach] == "beach+people"
    query = Query(terms=Query.parse("people").terms, photo_id=crowd_on_beach, image_weight=NOT_LIKE_WEIGHT)
    top = world.groups(searcher.search(query, k=8))
    assert top.count("people") >= 7  # people, not on a beach


@pytest.mark.parametrize("exact_limit", [0, 100_000])  # searched by the graph (over-fetch) or exactly
def test_a_filter_keeps_only_the_allowed_photos_and_the_best_of_them(monkeypatch, exact_limit):
    import core.search as search_module

    monkeypatch.setattr(search_module, "EXACT_FILTER_LIMIT", exact_limit)
    world = World()
    searcher = world.searcher()
    allowed = np.array([i for i in world.ids.tolist() if i % 2 == 0], np.int64)
    result = searcher.search("beach", k=6, allowed=allowed)
    got = [h.photo_id for h in result.hits]
    assert len(got) == 6 and all(i % 2 == 0 for i in got)
    scores = world.vecs @ world.concepts["beach"]
    best = [int(world.ids[j]) for j in np.argsort(-scores) if int(world.ids[j]) % 2 == 0][:6]
    assert got == best
    assert searcher.search("beach", k=6, allowed=np.array([], np.int64)).hits == []
