"""Graded relevance between tag sets, and captions made from tags."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.tag_relevance import MATCH_CAP, TagRelevance, build_vocabulary, tag_caption

_AXES: dict[str, int] = {}


def orthogonal_encoder(texts):
    """Every distinct text gets its own axis: no two tags are semantically alike."""
    out = np.zeros((len(texts), 64), np.float32)
    for row, t in enumerate(texts):
        out[row, _AXES.setdefault(t, len(_AXES))] = 1.0
    return out


def test_with_unrelated_tags_relevance_is_the_weighted_dice_coefficient():
    sets = [("a", "b"), ("a", "c"), ("d",), ("a", "b")]
    vocab = build_vocabulary(sets, orthogonal_encoder)
    rel = TagRelevance(vocab, sets).matrix(range(4), range(4))
    w = dict(zip(vocab.tags, vocab.weights.tolist(), strict=True))
    expected_01 = 2 * w["a"] / (w["a"] + w["b"] + w["a"] + w["c"])
    assert rel[0, 1] == pytest.approx(expected_01, abs=1e-6)
    assert rel[0, 2] == 0.0
    assert rel[0, 3] == 1.0  # same tags
    np.testing.assert_allclose(rel, rel.T, atol=1e-6)
    np.testing.assert_array_equal(np.diag(rel), 1.0)
    # a tag on many photos weighs less than a rare one
    assert w["a"] < w["d"]


def test_shared_words_and_similar_phrases_give_partial_credit():
    sets = [("red kayak",), ("kayak",), ("lisbon 2019",), ("lisbon 2022",), ("oak tree",)]
    vocab = build_vocabulary(sets, orthogonal_encoder)
    rel = TagRelevance(vocab, sets).matrix(range(5), range(5))
    assert 0 < rel[0, 1] <= MATCH_CAP  # "kayak" in both
    assert rel[2, 3] > 0  # both imply "lisbon"
    assert rel[0, 4] == 0.0

    def close_encoder(texts):
        out = orthogonal_encoder(texts)
        for i, t in enumerate(texts):
            if t == "oak tree":
                out[i] = orthogonal_encoder(["kayak"])[0] * 0.9 + out[i] * 0.1  # pretend: alike
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    vocab = build_vocabulary(sets, close_encoder)
    rel = TagRelevance(vocab, sets).matrix(range(5), range(5))
    assert rel[1, 4] > 0.5  # the frozen encoder says the two phrases are alike
    assert rel[1, 4] < 1.0


def test_chunked_rows_and_subsets_agree_with_the_full_matrix():
    rng = np.random.default_rng(0)
    words = [f"tag{i}" for i in range(40)]
    sets = [tuple(rng.choice(words, size=rng.integers(1, 6), replace=False)) for _ in range(150)]

    def encoder(texts):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts])

    relevance = TagRelevance(build_vocabulary(sets, encoder), sets)
    full = relevance.matrix(np.arange(150), np.arange(150))
    rows, cols = np.array([5, 140, 77]), np.array([3, 3, 99, 140])
    np.testing.assert_allclose(relevance.matrix(rows, cols), full[np.ix_(rows, cols)], atol=1e-6)
    assert full.min() >= 0 and full.max() <= 1


def test_captions_name_every_tag_in_varied_wording():
    tags = ("grandma's garden", "the red kayak", "2019")
    fixed = tag_caption(tags)
    assert fixed == "a photo of grandma's garden and the red kayak in 2019"
    rng = np.random.default_rng(1)
    varied = {tag_caption(tags, rng) for _ in range(40)}
    assert len(varied) > 10
    assert all(all(t in caption for t in tags) for caption in varied)
    assert tag_caption(("2019-07",)) == "a photo of 2019-07"
