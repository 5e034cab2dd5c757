"""Losses over batches where a query may have several positives, and the level tables they use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.finetune_data import Batch, LevelTables
from trainer.levels import LevelSettings
from trainer.losses import (
    AdaptiveLadderLoss,
    InfoNCELoss,
    MultiPositiveInfoNCELoss,
    MultiPositiveTripletLoss,
    SoftInfoNCELoss,
    TripletLoss,
)
from trainer.objectives import MultiPositiveObjective

B, DIM = 6, 8


def features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(B, DIM, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(B, DIM, generator=gen), dim=-1)
    return img, txt


def graded_relevance(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rel = rng.choice([0.0, 0.25, 0.5, 0.75], size=(B, B)).astype(np.float32)
    np.fill_diagonal(rel, 1.0)
    return torch.from_numpy(rel)


def eye() -> torch.Tensor:
    return torch.eye(B, dtype=torch.bool)


def test_with_one_positive_per_query_they_are_the_single_positive_losses():
    img, txt = features()
    ours = MultiPositiveInfoNCELoss(temperature=0.05)(img, txt, eye())
    clip = InfoNCELoss(temperature=0.05)(img, txt)
    for key in ("loss", "i2t", "t2i"):
        torch.testing.assert_close(ours[key], clip[key])
    ours = MultiPositiveTripletLoss(margin=0.2)(img, txt, eye())
    vse = TripletLoss(margin=0.2, reduction="mean")(img, txt)
    for key in ("loss", "i2t", "t2i"):
        torch.testing.assert_close(ours[key], vse[key])


def test_the_triplet_hinges_the_worst_positive_against_the_best_negative():
    img, txt = features(1)
    positives = eye()
    positives[0, 3] = True  # text 3 describes image 0 too
    scores = img @ txt.T
    out = MultiPositiveTripletLoss(margin=0.2)(img, txt, positives)
    worst = torch.minimum(scores[0, 0], scores[0, 3])
    best_negative = scores[0, [1, 2, 4, 5]].max()
    row0 = torch.relu(0.2 - worst + best_negative)
    rows = [row0] + [
        torch.relu(0.2 - scores[q, q] + scores[q, [j for j in range(B) if j != q]].max()) for q in range(1, B)
    ]
    torch.testing.assert_close(out["i2t"], torch.stack(rows).sum() / B)
    torch.testing.assert_close(out["loss"], out["i2t"] + out["t2i"])


def test_another_positive_lowers_the_infonce_loss():
    img, txt = features(2)
    loss = MultiPositiveInfoNCELoss(temperature=0.05)
    more = eye()
    more[0, 1] = more[2, 5] = True
    assert loss(img, txt, more)["loss"] < loss(img, txt, eye())["loss"]


def test_objective_sums_its_terms_and_names_them():
    img, txt = features(3)
    img.requires_grad_(True)
    relevance = graded_relevance()
    positives = eye()
    positives[1, 4] = True
    objective = MultiPositiveObjective("infonce+0.5*triplet+softnce", temperature=0.05)
    out = objective(img, txt, relevance, positives)
    infonce = MultiPositiveInfoNCELoss(0.05)(img, txt, positives)["loss"]
    triplet = MultiPositiveTripletLoss(0.2)(img, txt, positives)["loss"]
    # other losses run as they are, with the logit scale 1 / temperature
    soft = SoftInfoNCELoss(tau=0.1)(img, txt, relevance, logit_scale=torch.tensor(1 / 0.05))["loss"]
    torch.testing.assert_close(out["loss"], infonce + 0.5 * triplet + soft)
    torch.testing.assert_close(out["infonce"], infonce)
    torch.testing.assert_close(out["triplet"], triplet)
    assert {"infonce/i2t", "infonce/t2i", "triplet/i2t", "softnce/i2t"} <= set(out)
    assert not out["infonce/i2t"].requires_grad
    out["loss"].backward()
    assert img.grad is not None and torch.isfinite(img.grad).all()


def test_adaptive_terms_take_the_levels_given_or_cluster_the_batch():
    img, txt = features(4)
    relevance = graded_relevance(4)
    objective = MultiPositiveObjective("adaptive", temperature=0.05)
    assert objective.level_settings == AdaptiveLadderLoss(reduction="mean").level_settings
    alone = AdaptiveLadderLoss(reduction="mean")
    torch.testing.assert_close(
        objective(img, txt, relevance, eye())["loss"], alone(img, txt, relevance)["loss"]
    )
    levels = torch.randint(1, 4, (2, B, B), generator=torch.Generator().manual_seed(0))
    levels[0].fill_diagonal_(0)
    levels[1].fill_diagonal_(0)
    torch.testing.assert_close(
        objective(img, txt, relevance, eye(), levels)["loss"],
        alone(img, txt, relevance, levels=levels)["loss"],
    )
    assert MultiPositiveObjective("infonce+triplet").level_settings is None


def test_positives_must_be_a_bool_matrix_of_the_batch():
    img, txt = features()
    loss = MultiPositiveInfoNCELoss()
    with pytest.raises(ValueError, match="bool"):
        loss(img, txt, torch.eye(B))
    with pytest.raises(ValueError, match="positives"):
        loss(img, txt, torch.ones(B, B - 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        MultiPositiveInfoNCELoss(temperature=0.0)


def test_level_tables_put_positives_on_level_zero_and_the_rest_one_above_their_table_level():
    rng = np.random.default_rng(5)
    table = rng.choice([0.0, 0.3, 0.6, 1.0], size=(7, 5)).astype(np.float32)  # (caption sets, tag sets)
    tables = LevelTables(LevelSettings())
    records = list(tables.iter_compute(table))
    assert [r.done for r in records] == [1, 2] and tables.text is not None and tables.image is not None
    assert tables.text.shape == (7, 5) and tables.image.shape == (5, 7)
    batch = Batch(items=np.arange(4), groups=np.array([0, 1, 2, 3]), captions=np.array([0, 5, 2, 6]))
    positives = np.eye(4, dtype=bool)
    positives[1, 2] = True
    levels = tables.batch_levels(batch, positives)
    assert levels is not None and levels.shape == (2, 4, 4) and levels.dtype == torch.int64
    assert (levels[0][torch.from_numpy(positives)] == 0).all()
    assert (levels[1][torch.from_numpy(positives.T)] == 0).all()
    others = ~positives
    expected = 1 + tables.image[np.ix_(batch.groups, batch.captions)]
    np.testing.assert_array_equal(levels[0].numpy()[others], expected[others])


def test_no_level_tables_without_an_adaptive_term_or_a_table():
    table = np.ones((3, 3), np.float32)
    for tables, given in ((LevelTables(None), table), (LevelTables(LevelSettings()), None)):
        assert list(tables.iter_compute(given)) == []
        batch = Batch(np.arange(2), np.arange(2), np.arange(2))
        assert tables.batch_levels(batch, np.eye(2, dtype=bool)) is None
