"""Captions of scenes, and parsing free text back into scene attributes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer.captions import attributes_in_text, caption, describe, partial_caption
from trainer.scenes import ATTRIBUTES, Scene, sample_scenes


def test_full_captions_parse_back_to_their_scene():
    rng = np.random.default_rng(0)
    scenes = sample_scenes(1500, seed=0) + sample_scenes(300, seed=0, split="heldout")
    texts = set()
    for scene in scenes:
        text = caption(scene, rng)
        assert attributes_in_text(text) == scene.attributes(), text
        texts.add(text)
    assert len(texts) > 0.95 * len(scenes)  # varied phrasing, not one template


def test_every_subset_of_attributes_round_trips():
    rng = np.random.default_rng(1)
    for scene in sample_scenes(60, seed=4):
        for k in range(1, len(ATTRIBUTES) + 1):
            for named in itertools.combinations(ATTRIBUTES, k):
                for _ in range(2):
                    text = describe(scene, named, rng)
                    assert attributes_in_text(text) == {a: getattr(scene, a) for a in named}, text


def test_partial_captions_name_a_proper_subset_and_say_which():
    rng = np.random.default_rng(2)
    sizes = set()
    for scene in sample_scenes(400, seed=5):
        text, named = partial_caption(scene, rng)
        assert 1 <= len(named) < len(ATTRIBUTES)
        assert named == {a: getattr(scene, a) for a in named}
        assert attributes_in_text(text) == named, text
        sizes.add(len(named))
    assert sizes == {1, 2, 3, 4}
    text, named = partial_caption(Scene("kite", "red", "one", "snow", "day"), rng, named=["colour", "time"])
    assert named == {"colour": "red", "time": "day"}


def test_captions_are_deterministic_for_a_seed():
    scene = Scene("balloon", "yellow", "one", "snow", "sunset", seed=9)
    assert caption(scene, 5) == caption(scene, 5)
    assert len({caption(scene, s) for s in range(40)}) > 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Two purple kites over a snowy field at dusk",
            {"kind": "kite", "colour": "purple", "count": "two", "setting": "snow", "time": "sunset"},
        ),
        (
            "a red car in the city at night",
            {"kind": "car", "colour": "red", "setting": "city", "time": "night"},
        ),
        (
            "3 boats on the beach at sunset",
            {"kind": "boat", "count": "three", "setting": "beach", "time": "sunset"},
        ),
        (
            "sunset over a snowy meadow with a yellow balloon",
            {"kind": "balloon", "colour": "yellow", "setting": "snow", "time": "sunset"},
        ),
        ("a pair of sailboats in town", {"kind": "boat", "count": "two", "setting": "city"}),
        ("snow-covered cottages in the evening", {"kind": "house", "setting": "snow", "time": "sunset"}),
        ("hot-air balloons above the sand dunes", {"kind": "balloon", "setting": "desert"}),
        ("an orange sky over the desert", {"setting": "desert"}),  # the sky's colour, not an object's
        ("a white boat on blue water", {"kind": "boat", "colour": "white"}),
        ("crimson automobile, 1 of them", {"kind": "car", "colour": "red", "count": "one"}),
        ("a car next to a house", {"kind": "car"}),  # first mention wins
        ("four cars", {"kind": "car"}),  # counts outside the world are ignored
        ("a holiday photo", {}),
        ("", {}),
    ],
)
def test_attributes_in_free_text(text, expected):
    assert attributes_in_text(text) == expected


def test_describe_rejects_what_it_cannot_write():
    scene = Scene("tree", "green", "one", "meadow", "day")
    with pytest.raises(ValueError, match="at least one"):
        describe(scene, [])
    with pytest.raises(ValueError, match="unknown"):
        describe(scene, ["mood"])


def test_caption_vocabulary_is_complete_and_shipped_with_the_starter():
    """Every word a caption can use is in the vocabulary, and the starter's file is up to date."""
    import json

    from core.lexicon import tokens
    from core.models import RESOURCES_MODELS
    from trainer.captions import caption_vocabulary

    words = caption_vocabulary()
    assert set(caption_vocabulary(samples=12000, seed=1)) == set(words)
    assert {"two", "red", "cars", "night", "beach", "sailboat", "dusk"} <= set(words)
    assert not {"dog", "people", "xyzzy", "crimson"} & set(words)  # never in a caption
    rng = np.random.default_rng(3)
    for scene in sample_scenes(200, 9):
        assert set(tokens(caption(scene, rng))) <= set(words)
    shipped = json.loads((RESOURCES_MODELS / "ladderlens-starter.vocab.json").read_text(encoding="utf-8"))
    assert shipped["words"] == words, (
        "run: python -m trainer vocabulary resources/models/ladderlens-starter.safetensors"
    )


def test_the_scene_worlds_values_are_lexicon_values():
    """Every attribute value of the scene world is a value of core.lexicon's class (variants use them)."""
    from core.lexicon import parse, tokens
    from trainer.captions import class_values

    for cls, values in class_values().items():
        for value in values:
            slots = parse(tokens(value if cls != "time" or value != "day" else "daytime"))
            assert [(s.cls, s.value) for s in slots] == [(cls, value)], (cls, value)
