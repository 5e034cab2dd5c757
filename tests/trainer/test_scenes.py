"""The scene world: vocabulary, relevance, held-out compositions, sampling and rendering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from trainer import scenes as scenes_module
from trainer.scene_render import render_scene
from trainer.scenes import (
    ATTRIBUTE_WEIGHTS,
    ATTRIBUTES,
    COLOURS,
    HELD_OUT_COMPOSITIONS,
    KINDS,
    SETTINGS,
    TIMES,
    VOCABULARY,
    Scene,
    encode_queries,
    encode_scenes,
    is_held_out,
    relevance,
    relevance_matrix,
    sample_scenes,
)


def test_vocabulary_and_weights():
    assert set(ATTRIBUTES) == set(ATTRIBUTE_WEIGHTS) == set(VOCABULARY)
    assert sum(ATTRIBUTE_WEIGHTS.values()) == pytest.approx(1.0)
    assert {"car", "house", "tree", "boat", "balloon", "kite"} <= set(KINDS)
    assert {"red", "orange", "yellow", "green", "blue", "purple", "white", "black"} <= set(COLOURS)
    assert {"beach", "snow", "meadow", "city", "desert"} <= set(SETTINGS)
    assert {"day", "sunset", "night"} <= set(TIMES)


def test_scene_validates_and_normalises():
    s = Scene("car", "red", 2, "city", "night", seed=3)
    assert s.count == "two" and s.n_objects == 2
    assert s.attributes() == {
        "kind": "car",
        "colour": "red",
        "count": "two",
        "setting": "city",
        "time": "night",
    }
    with pytest.raises(ValueError, match="kind"):
        Scene("bus", "red", "one", "city", "night")
    with pytest.raises(ValueError, match="count"):
        Scene("car", "red", 4, "city", "night")
    with pytest.raises(ValueError, match="seed"):
        Scene("car", "red", "one", "city", "night", seed=-1)


def test_relevance_by_hand():
    scene = Scene("car", "blue", "two", "city", "night", seed=1)
    # kind matches, colour does not: 0.35 / (0.35 + 0.25)
    assert relevance({"kind": "car", "colour": "red"}, scene) == pytest.approx(0.35 / 0.60)
    # setting and time match, kind does not: (0.20 + 0.10) / (0.35 + 0.20 + 0.10)
    assert relevance({"kind": "tree", "setting": "city", "time": "night"}, scene) == pytest.approx(
        0.30 / 0.65
    )
    assert relevance({"count": 2}, scene) == 1.0
    assert relevance({"count": "three", "colour": "blue"}, scene) == pytest.approx(0.25 / 0.35)
    assert relevance(scene, scene) == 1.0
    assert (
        relevance({"kind": "kite", "colour": "red", "count": "one", "setting": "snow", "time": "day"}, scene)
        == 0.0
    )


def test_relevance_rejects_empty_and_unknown_queries():
    scene = Scene("car", "blue", "two", "city", "night")
    with pytest.raises(ValueError, match="names no attribute"):
        relevance({}, scene)
    with pytest.raises(ValueError, match="unknown attribute"):
        relevance({"shape": "round"}, scene)
    with pytest.raises(ValueError, match="colour"):
        relevance({"colour": "teal"}, scene)
    with pytest.raises(ValueError, match="names no attribute"):
        relevance_matrix([{"kind": "car"}, {}], [scene])


def _random_queries(rng: np.random.Generator, n: int) -> list[dict[str, str]]:
    queries = []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        names = rng.choice(len(ATTRIBUTES), size=k, replace=False)
        queries.append(
            {
                ATTRIBUTES[i]: VOCABULARY[ATTRIBUTES[i]][int(rng.integers(len(VOCABULARY[ATTRIBUTES[i]])))]
                for i in names
            }
        )
    return queries


@pytest.mark.parametrize("path", ["direct", "matmul"])
def test_relevance_matrix_matches_scalar_function(path, monkeypatch):
    if path == "matmul":  # the path large matrices take
        monkeypatch.setattr(scenes_module, "_DIRECT_LIMIT", 0)
    rng = np.random.default_rng(0)
    queries = _random_queries(rng, 60)
    scenes = sample_scenes(80, seed=1)
    expected = np.array([[relevance(q, s) for s in scenes] for q in queries])
    got = relevance_matrix(queries, scenes)
    assert got.shape == (60, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # pre-encoded inputs give the same matrix, and float64 on request
    np.testing.assert_allclose(
        relevance_matrix(encode_queries(queries), encode_scenes(scenes), dtype=np.float64),
        expected,
        atol=1e-6,
    )
    assert set(np.unique(got)) > {0.0, 1.0}  # graded, not binary


def test_relevance_matrix_of_scenes_with_themselves_has_exact_unit_diagonal():
    scenes = sample_scenes(200, seed=2)
    r = relevance_matrix(scenes, scenes)
    assert np.all(np.diag(r) == 1.0)
    assert r.min() >= 0.0 and r.max() <= 1.0
    np.testing.assert_array_equal(r, r.T)  # full queries: relevance is symmetric


def test_held_out_compositions_are_recognised():
    for comp in HELD_OUT_COMPOSITIONS:
        attrs = {a: VOCABULARY[a][0] for a in ATTRIBUTES} | dict(comp)
        assert is_held_out(Scene(**attrs))
        assert is_held_out(comp)  # a query naming the composition is long-tail
        first = next(iter(comp))
        assert not is_held_out({first: comp[first]})  # one half alone is not
    assert not is_held_out(Scene("car", "red", "one", "city", "day"))


def test_splits_respect_held_out_compositions():
    train = sample_scenes(3000, seed=0, split="train")
    test = sample_scenes(500, seed=0, split="test")
    held = sample_scenes(700, seed=0, split="heldout")
    assert not any(is_held_out(s) for s in train + test)
    assert all(is_held_out(s) for s in held)
    # every held-out composition is represented, and every single value occurs in training
    for comp in HELD_OUT_COMPOSITIONS:
        assert any(all(getattr(s, k) == v for k, v in comp.items()) for s in held)
    for a in ATTRIBUTES:
        assert {getattr(s, a) for s in train} == set(VOCABULARY[a])
    assert not {s.seed for s in train} & {s.seed for s in test}


def test_sampling_is_deterministic_and_prefix_stable():
    a = sample_scenes(300, seed=7)
    assert a == sample_scenes(300, seed=7)
    assert a[:50] == sample_scenes(50, seed=7)
    assert a != sample_scenes(300, seed=8)
    assert sample_scenes(0, seed=7) == []
    with pytest.raises(ValueError, match="split"):
        sample_scenes(3, seed=0, split="validation")  # type: ignore[arg-type]


def _pixels(scene: Scene, size=(48, 40)) -> np.ndarray:
    return np.asarray(render_scene(scene, size), dtype=np.int16)


def test_render_is_deterministic_and_seeds_differ():
    scene = Scene("boat", "yellow", "three", "beach", "sunset", seed=11)
    img = render_scene(scene, (48, 40))
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (48, 40)
    np.testing.assert_array_equal(
        _pixels(scene), _pixels(Scene("boat", "yellow", "three", "beach", "sunset", seed=11))
    )
    other = _pixels(Scene("boat", "yellow", "three", "beach", "sunset", seed=12))
    assert np.abs(_pixels(scene) - other).mean() > 3


def test_every_combination_of_kind_setting_and_time_renders():
    for kind, setting, time in itertools.product(KINDS, SETTINGS, TIMES):
        img = render_scene(Scene(kind, "green", "two", setting, time, seed=5), (24, 24))
        assert img.size == (24, 24)
        assert np.asarray(img).std() > 5  # not a blank frame


def test_colour_changes_only_the_objects_and_time_changes_everything():
    base = Scene("car", "red", "one", "meadow", "day", seed=21)
    red = _pixels(base, (64, 64))
    blue = _pixels(Scene("car", "blue", "one", "meadow", "day", seed=21), (64, 64))
    changed = np.abs(red - blue).max(axis=2) > 30
    assert 0.005 < changed.mean() < 0.3
    # the changed pixels are more red in one render and more blue in the other
    assert (red[changed, 0] - red[changed, 2]).mean() > (blue[changed, 0] - blue[changed, 2]).mean() + 40
    night = _pixels(Scene("car", "red", "one", "meadow", "night", seed=21), (64, 64))
    assert (np.abs(red - night).max(axis=2) > 30).mean() > 0.6


def test_one_scene_at_any_size_and_aspect():
    """The centre square of a 4:3 render is the scene a square render shows."""
    for scene in sample_scenes(4, seed=3):
        small = np.asarray(render_scene(scene, (64, 64)), dtype=np.float32)
        wide = (
            render_scene(scene, (320, 240)).crop((40, 0, 280, 240)).resize((64, 64), Image.Resampling.LANCZOS)
        )
        other = np.asarray(
            render_scene(Scene(**{**scene.attributes(), "seed": scene.seed + 4}), (64, 64)), np.float32
        )
        same = np.abs(small - np.asarray(wide, dtype=np.float32)).mean()
        assert same < 10
        assert same < np.abs(small - other).mean()


def test_render_rejects_bad_sizes():
    scene = Scene("kite", "white", "one", "snow", "day")
    for size in [(0, 10), (4, 4), "big", (100_000, 100_000)]:
        with pytest.raises(ValueError, match="size"):
            render_scene(scene, size)  # type: ignore[arg-type]
