"""Scene-world training data: rendering cache, captions, relevance, batches, sharding."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from trainer import data as data_mod
from trainer import scenes
from trainer.data import (
    ImageNormalizer,
    SceneSetSpec,
    TrainStream,
    build_eval_set,
    draw_captions,
    load_scene_set,
)

SIZE = 32


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    return load_scene_set(
        SceneSetSpec("train", 48, seed=3, image_size=SIZE), cache_root=tmp_path_factory.mktemp("c")
    )


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="split"):
        SceneSetSpec("validation", 10, 0, SIZE)
    with pytest.raises(ValueError, match="at least one scene"):
        SceneSetSpec("train", 0, 0, SIZE)
    with pytest.raises(ValueError, match="image size"):
        SceneSetSpec("train", 10, 0, 4)


def test_rendered_set_is_cached_and_deterministic(tmp_path, monkeypatch):
    spec = SceneSetSpec("test", 12, seed=5, image_size=SIZE)
    first = load_scene_set(spec, cache_root=tmp_path / "a")
    assert first.images.shape == (12, SIZE, SIZE, 3)
    assert first.images.dtype == np.uint8
    assert first.images.std() > 5  # real pictures, not a blank array
    other_root = load_scene_set(spec, cache_root=tmp_path / "b")
    np.testing.assert_array_equal(first.images, other_root.images)

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again although cached")

    monkeypatch.setattr(data_mod, "render_images", no_render)
    again = load_scene_set(spec, cache_root=tmp_path / "a")
    np.testing.assert_array_equal(first.images, again.images)
    assert [s.seed for s in again.scenes] == [s.seed for s in first.scenes]


def test_damaged_cache_is_rendered_again(tmp_path):
    spec = SceneSetSpec("heldout", 6, seed=1, image_size=SIZE)
    good = np.array(load_scene_set(spec, cache_root=tmp_path).images)
    path = tmp_path / "scenes" / spec.cache_name
    path.write_bytes(b"not a numpy file")
    again = load_scene_set(spec, cache_root=tmp_path)
    np.testing.assert_array_equal(good, again.images)
    assert all(scenes.is_held_out(s) for s in again.scenes)


def test_parallel_rendering_matches_serial():
    few = scenes.sample_scenes(6, seed=2)
    serial = data_mod.render_images(few, SIZE, workers=1)
    parallel = data_mod.render_images(few, SIZE, workers=2, chunk=2)  # 3 chunks over 2 processes
    np.testing.assert_array_equal(parallel, serial)


def test_captions_mix_full_and_partial_and_name_true_attributes(train_set, tokenizer):
    caps = draw_captions(train_set.scenes, seed=0, tokenizer=tokenizer)
    assert len(caps.texts) == len(train_set) == caps.tokens.shape[0]
    sizes = [len(a) for a in caps.attributes]
    assert 5 in sizes and min(sizes) < 5
    for scene, attrs in zip(train_set.scenes, caps.attributes, strict=True):
        assert attrs and all(scene.attributes()[k] == v for k, v in attrs.items())
    again = draw_captions(train_set.scenes, seed=0, tokenizer=tokenizer)
    assert again.texts == caps.texts
    assert draw_captions(train_set.scenes, seed=0, tokenizer=tokenizer, salt=1).texts != caps.texts


def test_batches_carry_graded_relevance_with_unit_diagonal(train_set, tokenizer):
    stream = TrainStream(train_set, tokenizer, batch_size=16, seed=0, normalizer=ImageNormalizer())
    assert stream.batches_per_epoch == 3
    batches = list(stream.epoch(0))
    assert len(batches) == 3
    seen = torch.cat([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(48))
    for batch in batches:
        assert batch.images.shape == (16, 3, SIZE, SIZE) and batch.images.dtype == torch.float32
        assert batch.tokens.shape[0] == 16
        r = batch.relevance
        assert r.shape == (16, 16)
        torch.testing.assert_close(r.diagonal(), torch.ones(16))
        assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0
        idx = batch.indices.tolist()
        for i, j in [(0, 1), (3, 7), (15, 2)]:
            expected = scenes.relevance(batch.attributes[j], train_set.scenes[idx[i]])
            assert float(r[i, j]) == pytest.approx(expected)
        # no partial caption matches another scene of its batch as well as its own
        for j, attrs in enumerate(batch.attributes):
            assert all(train_set.scenes[idx[j]].attributes()[k] == v for k, v in attrs.items())
            others = [float(r[i, j]) for i in range(16) if i != j]
            assert len(attrs) == 5 or max(others) < 1.0
    values = torch.cat([b.relevance.flatten() for b in batches])
    assert ((values > 0) & (values < 1)).any()  # graded, not 0/1


def test_ambiguous_partial_captions_are_kept_when_asked(train_set, tokenizer):
    def ambiguous_columns(unambiguous: bool) -> int:
        stream = TrainStream(
            train_set, tokenizer, batch_size=16, seed=0, normalizer=ImageNormalizer(), unambiguous=unambiguous
        )
        count = 0
        for batch in stream.epoch(0):
            full_match = (batch.relevance >= 1) & ~torch.eye(16, dtype=torch.bool)
            count += sum(
                1 for j in range(16) if len(batch.attributes[j]) < 5 and bool(full_match[:, j].any())
            )
        return count

    assert ambiguous_columns(True) == 0
    assert ambiguous_columns(False) > 0


def test_stream_is_deterministic_and_resumable_mid_epoch(train_set, tokenizer):
    def make():
        return TrainStream(train_set, tokenizer, batch_size=16, seed=7, normalizer=ImageNormalizer())

    whole = list(make().epoch(1))
    tail = list(make().epoch(1, start_batch=1))
    for a, b in zip(whole[1:], tail, strict=True):
        torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.indices, b.indices)
    other_epoch = next(make().epoch(2))
    assert not torch.equal(other_epoch.indices, whole[0].indices)


def test_shards_of_two_processes_do_not_overlap(train_set, tokenizer):
    shards = [
        TrainStream(
            train_set, tokenizer, batch_size=8, seed=0, normalizer=ImageNormalizer(), rank=r, world_size=2
        )
        for r in (0, 1)
    ]
    assert shards[0].batches_per_epoch == shards[1].batches_per_epoch == 3
    seen = [set(torch.cat([b.indices for b in s.epoch(0)]).tolist()) for s in shards]
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 48


def test_too_few_scenes_for_a_batch_is_refused(train_set, tokenizer):
    with pytest.raises(ValueError, match="cannot fill one batch"):
        TrainStream(train_set, tokenizer, batch_size=64, seed=0, normalizer=ImageNormalizer())


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.rand(4, 3, SIZE, SIZE)
    a = data_mod.augment(x, torch.Generator().manual_seed(1))
    b = data_mod.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    # mirrored or shifted by at most a pixel: colours (the mean) are unchanged up to the edge
    torch.testing.assert_close(a.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05, rtol=0)


def test_eval_sets_full_and_partial(train_set, tokenizer):
    full = build_eval_set("test", train_set, tokenizer, seed=0)
    assert full.relevance.shape == (48, 48)
    np.testing.assert_array_equal(np.diag(full.relevance), np.ones(48, dtype=np.float32))
    assert all(len(a) == 5 for a in full.captions.attributes)
    partial = build_eval_set("test-partial", train_set, tokenizer, seed=0, full=False)
    assert all(len(a) < 5 for a in partial.captions.attributes)
    assert not partial.full


def test_twins_differ_in_one_attribute_and_stay_paired_in_every_batch(tmp_path, tokenizer):
    spec = SceneSetSpec("train", 64, seed=5, image_size=SIZE, twins=True)
    assert spec.cache_name != SceneSetSpec("train", 64, seed=5, image_size=SIZE).cache_name
    twins = load_scene_set(spec, cache_root=tmp_path)
    counts = {"count": 0, "colour": 0, "kind": 0}
    for a, b in zip(twins.scenes[::2], twins.scenes[1::2], strict=True):
        changed = [k for k in scenes.ATTRIBUTES if getattr(a, k) != getattr(b, k)]
        assert len(changed) == 1 and changed[0] in counts and a.seed == b.seed
        assert not scenes.is_held_out(a) and not scenes.is_held_out(b)
        counts[changed[0]] += 1
    assert counts["count"] > max(counts["colour"], counts["kind"]) > 0  # count is changed most
    assert not np.array_equal(twins.images[0], twins.images[1])  # the change is drawn
    stream = TrainStream(twins, tokenizer, batch_size=16, seed=1, normalizer=ImageNormalizer())
    for batch in stream.epoch(0):
        idx = batch.indices.tolist()
        assert all(i % 2 == 0 and j == i + 1 for i, j in zip(idx[::2], idx[1::2], strict=True))
    with pytest.raises(ValueError, match="even batch size"):
        TrainStream(twins, tokenizer, batch_size=15, seed=1, normalizer=ImageNormalizer())
    with pytest.raises(ValueError, match="even number"):
        SceneSetSpec("train", 63, seed=5, image_size=SIZE, twins=True)
