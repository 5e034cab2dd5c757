"""Adaptive ladder levels computed by the data pipeline, and batches made ahead in a thread."""

from __future__ import annotations

import copy
import json
import threading

import open_clip
import pytest
import torch

from trainer import train as train_mod
from trainer.data import ImageNormalizer, SceneSetSpec, TrainStream, load_scene_set, prefetched
from trainer.levels import LevelSettings
from trainer.objectives import Objective
from trainer.train import TrainConfig, TwinTowerForward, pipeline_levels

SIZE = 32
ARCH = "ladderlens-levels-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": SIZE, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / f"{ARCH}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return path


@pytest.fixture(scope="module")
def scene_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("scene-cache")


@pytest.fixture(scope="module")
def train_set(scene_cache):
    return load_scene_set(SceneSetSpec("train", 48, seed=3, image_size=SIZE), cache_root=scene_cache)


def _stream(train_set, arch: str = "ViT-B-32", **kwargs) -> TrainStream:
    tokenizer = open_clip.get_tokenizer(arch)
    return TrainStream(train_set, tokenizer, batch_size=16, seed=0, normalizer=ImageNormalizer(), **kwargs)


# ---------------------------------------------------------------------------------------------
# levels in the stream


def test_batches_carry_the_levels_of_their_relevance(train_set):
    settings = LevelSettings(k_max=3)
    with_levels = list(_stream(train_set, levels=settings).epoch(0))
    without = list(_stream(train_set).epoch(0))
    assert all(b.levels is None for b in without)
    for batch, plain in zip(with_levels, without, strict=True):
        assert torch.equal(batch.relevance, plain.relevance)
        assert batch.levels.shape == (2, 16, 16) and batch.levels.dtype == torch.int64
        assert torch.equal(batch.levels, settings(batch.relevance))
        assert (batch.levels[:, range(16), range(16)] == 0).all()
        assert int(batch.levels.max()) <= 3


def test_the_level_settings_of_a_run_come_from_its_objectives():
    assert pipeline_levels([Objective("infonce")]) is None
    assert pipeline_levels([Objective("infonce"), Objective("infonce+adaptive")]) == LevelSettings()
    assert pipeline_levels([Objective("adaptive"), Objective("triplet")]) == LevelSettings()


# ---------------------------------------------------------------------------------------------
# batches made ahead


def test_prefetched_batches_come_in_order_and_all():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetched(range(5), depth=0)) == list(range(5))


def test_a_failure_in_the_producer_is_raised_to_the_consumer():
    def broken():
        yield 1
        raise KeyError("no such scene")

    got = []
    with pytest.raises(KeyError, match="no such scene"):
        for item in prefetched(broken()):
            got.append(item)
    assert got == [1]


def test_leaving_early_stops_the_producer():
    made = []
    closed = threading.Event()

    def endless():
        try:
            while True:
                made.append(len(made))
                yield made[-1]
        finally:
            closed.set()

    before = threading.active_count()
    batches = prefetched(endless(), depth=2)
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    batches.close()
    assert closed.is_set()  # the source was closed, in the producer thread, before close returned
    assert threading.active_count() == before
    assert len(made) <= 3 + 2 + 1  # it ran ahead by the queue's depth at most


# ---------------------------------------------------------------------------------------------
# training with levels from the pipeline


@pytest.mark.parametrize("spec", ["adaptive", "infonce+1*adaptive"])
def test_a_step_with_pipelined_levels_gives_the_loss_of_in_step_levels(
    spec, model_config, train_set, monkeypatch
):
    torch.manual_seed(0)
    model = train_mod.create_model(ARCH)
    objective = Objective(spec)
    settings = pipeline_levels([objective])
    batch = next(_stream(train_set, ARCH, levels=settings).epoch(0))
    config = TrainConfig(arch=ARCH, grad_clip=1.0)

    def step(batch, levels_from):
        m = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(m.parameters(), lr=1e-3)
        out = train_mod._train_step(
            TwinTowerForward(m),
            m,
            objective,
            optimizer,
            batch,
            config,
            torch.device("cpu"),
            None,
            levels_from,
        )
        return out, m

    in_step_batch = copy.copy(batch)
    in_step_batch.levels = None  # the loss computes them in the step
    (want, want_terms, problem), want_model = step(in_step_batch, None)
    assert problem is None

    def refuse(self, relevance):
        raise AssertionError("levels computed in the step although the pipeline gave them")

    with monkeypatch.context() as patch:
        patch.setattr(LevelSettings, "__call__", refuse)
        (got, got_terms, problem), got_model = step(batch, settings)
    assert problem is None
    assert got == want
    assert got_terms == want_terms
    for a, b in zip(got_model.parameters(), want_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same update
