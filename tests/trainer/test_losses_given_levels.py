"""Adaptive ladder levels computed ahead and handed to a loss inside another module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.levels import LevelSettings
from trainer.losses import AdaptiveLadderLoss, levels_given
from trainer.objectives import Objective


def _inputs(batch: int = 12, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    text = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    relevance = torch.round(torch.rand(batch, batch, generator=g) * 5) / 5
    return image, text, relevance.fill_diagonal_(1.0)


def _loss_without_computing_levels(objective, image, text, relevance, levels, settings, monkeypatch):
    def refuse(self, relevance):
        raise AssertionError("levels computed although given")

    with monkeypatch.context() as patch:
        patch.setattr(LevelSettings, "__call__", refuse)
        with levels_given(objective, relevance, levels, settings):
            return objective(image, text, relevance, logit_scale=torch.tensor(10.0))


@pytest.mark.parametrize("spec", ["adaptive", "infonce+0.5*adaptive"])
def test_given_levels_give_the_loss_computed_levels_give(spec, monkeypatch):
    image, text, relevance = _inputs()
    objective = Objective(spec)
    settings = objective.parts["adaptive"].level_settings
    levels = settings(relevance)
    want = objective(image, text, relevance, logit_scale=torch.tensor(10.0))
    got = _loss_without_computing_levels(objective, image, text, relevance, levels, settings, monkeypatch)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


def test_the_given_levels_are_used_and_forgotten_after_the_block():
    image, text, relevance = _inputs(seed=1)
    loss = AdaptiveLadderLoss()
    own = loss(image, text, relevance)["loss"]
    flat = torch.ones(2, 12, 12, dtype=torch.int64)  # every candidate on one level: triplet only
    flat[:, range(12), range(12)] = 0
    with levels_given(loss, relevance, flat, loss.level_settings):
        given = loss(image, text, relevance)["loss"]
        other_matrix = loss(image, text, relevance.clone())["loss"]  # not the same tensor
    assert given != own
    torch.testing.assert_close(given, AdaptiveLadderLoss()(image, text, None, levels=flat)["loss"])
    torch.testing.assert_close(other_matrix, own)
    torch.testing.assert_close(loss(image, text, relevance)["loss"], own)


def test_levels_of_other_settings_are_not_taken():
    image, text, relevance = _inputs(seed=2)
    loss = AdaptiveLadderLoss(margins=(0.2, 0.01, 0.01), betas=(1, 0.25, 0.125), k_max=3)
    wrong = LevelSettings(k_max=4)
    with levels_given(loss, relevance, wrong(relevance), wrong):
        got = loss(image, text, relevance)["loss"]
    torch.testing.assert_close(got, loss(image, text, relevance, levels=loss.levels(relevance))["loss"])


def test_the_block_forgets_the_levels_when_it_fails():
    *_, relevance = _inputs(seed=3)
    loss = AdaptiveLadderLoss()
    levels = loss.levels(relevance)
    with pytest.raises(RuntimeError), levels_given(loss, relevance, levels, loss.level_settings):
        raise RuntimeError("step failed")
    assert loss._given is None
    with levels_given(loss, relevance, None, loss.level_settings):  # nothing given: nothing changes
        assert loss._given is None
