"""Retrieval metrics: hand-computed values and scipy's Kendall tau as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from trainer.metrics import (
    coherent_ceiling,
    coherent_score,
    kendall_tau_b,
    mean_rank,
    median_rank,
    ndcg_at_k,
    per_query_coherence,
    ranks,
    recall_at_k,
    retrieval_report,
)

SIM = np.array(
    [
        [0.9, 0.1, 0.5, 0.3],  # ground truth 0 ranks 1st
        [0.2, 0.4, 0.8, 0.6],  # ground truth 1 ranks 3rd (0.8, 0.6 above it)
        [0.5, 0.5, 0.5, 0.1],  # ground truth 2 tied with two others: counted 3rd
    ]
)
GT = np.array([0, 1, 2])


def scipy_tau(x: np.ndarray, y: np.ndarray) -> float:
    return float(kendalltau(x, y, variant="b").statistic)


# ---------------------------------------------------------------------------------------------
# recall and ranks


def test_ranks_by_hand():
    assert ranks(SIM, GT).tolist() == [1, 3, 3]
    assert recall_at_k(SIM, GT, ks=(1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 3: 1.0}
    assert mean_rank(SIM, GT) == pytest.approx(7 / 3)
    assert median_rank(SIM, GT) == 3.0


def test_several_ground_truths_per_query():
    # query 1 has candidates 1 and 3 as ground truth: the best of them (0.6) ranks 2nd
    mask = np.zeros_like(SIM, dtype=bool)
    mask[[0, 1, 1, 2], [0, 1, 3, 2]] = True
    assert ranks(SIM, mask).tolist() == [1, 2, 3]


def test_a_constant_model_earns_nothing():
    sim = np.zeros((5, 8))
    assert ranks(sim, np.arange(5)).tolist() == [8] * 5
    assert recall_at_k(sim, np.arange(5))[5] == 0.0


def test_torch_inputs_are_accepted():
    assert ranks(torch.tensor(SIM), torch.tensor(GT)).tolist() == [1, 3, 3]


@pytest.mark.parametrize(
    ("sim", "gt", "message"),
    [
        (SIM, np.array([0, 1]), "one ground-truth index per query"),
        (SIM, np.array([0, 1, 4]), r"\[0, 4\)"),
        (SIM, np.zeros((3, 4), dtype=bool), "at least one ground-truth"),
        (SIM[0], GT, "matrix"),
        (np.where(SIM > 0.8, np.nan, SIM), GT, "NaN"),
        (SIM, GT.astype(float), "integers"),
    ],
)
def test_bad_ground_truth_or_scores(sim, gt, message):
    with pytest.raises(ValueError, match=message):
        ranks(sim, gt)


# ---------------------------------------------------------------------------------------------
# Kendall tau-b


@pytest.mark.parametrize(
    ("rows", "k", "x_levels", "y_levels"),
    [(60, 12, 4, 3), (40, 7, 2, 2), (30, 40, 1000, 1000), (20, 300, 50, 6), (10, 2, 3, 3)],
)
def test_kendall_tau_b_matches_scipy(rows, k, x_levels, y_levels):
    rng = np.random.default_rng(k)
    x = rng.integers(0, x_levels, (rows, k)) / x_levels
    y = rng.integers(0, y_levels, (rows, k)) / y_levels
    got = kendall_tau_b(x, y)
    want = np.array([scipy_tau(a, b) for a, b in zip(x, y, strict=True)])
    assert (np.isnan(got) == np.isnan(want)).all()
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=1e-12)


def test_kendall_tau_b_by_hand_and_undefined_cases():
    # x = (1, 2, 3, 4), y = (1, 1, 2, 0): pairs (i<j) concordant: (0,2) (1,2) -> 2; discordant:
    # (0,3) (1,3) (2,3) -> 3; tied in y: (0,1). tau_b = (2 - 3) / sqrt(6 * 5)
    got = kendall_tau_b([[1, 2, 3, 4]], [[1, 1, 2, 0]])
    assert got[0] == pytest.approx(-1 / math.sqrt(30))
    undefined = kendall_tau_b([[1, 2, 3], [5, 5, 5]], [[0, 0, 0], [1, 2, 3]])
    assert np.isnan(undefined).all()


# ---------------------------------------------------------------------------------------------
# coherent score and its ceiling


def _loop_coherent_score(sim: np.ndarray, rel: np.ndarray, k: int) -> float:
    taus = []
    for s, r in zip(sim, rel, strict=True):
        top = np.argsort(-s, kind="stable")[:k]
        taus.append(scipy_tau(s[top], r[top]))
    taus = np.array(taus)
    return float(np.nanmean(taus)) if np.isfinite(taus).any() else float("nan")


def test_coherent_score_matches_a_scipy_loop():
    rng = np.random.default_rng(1)
    rel = rng.integers(0, 5, (40, 200)) / 4
    sim = 0.3 * rel + rng.normal(0, 0.2, rel.shape)
    sim[:5] = np.round(sim[:5], 1)  # ties among scores, including at the K-th place
    for k in (10, 50, 200):
        assert coherent_score(sim, rel, k) == pytest.approx(_loop_coherent_score(sim, rel, k), abs=1e-12)
    assert coherent_score(sim, rel, 50) > 0.1  # scores follow relevance


def test_a_random_model_scores_about_zero():
    rng = np.random.default_rng(2)
    rel = rng.random((200, 300))
    assert abs(coherent_score(rng.random((200, 300)), rel, 100)) < 0.02


def test_undefined_queries_are_left_out():
    rel = np.array([[1.0, 0.5, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]])  # query 1: all equally irrelevant
    sim = np.array([[0.9, 0.6, 0.3, 0.1], [0.1, 0.2, 0.3, 0.4]])
    per_query = per_query_coherence(sim, rel, 4)
    assert per_query[0] == pytest.approx(1.0)
    assert np.isnan(per_query[1])
    assert coherent_score(sim, rel, 4) == pytest.approx(1.0)
    assert math.isnan(coherent_score(sim[1:], rel[1:], 4))


def test_ceiling_by_hand_and_reached_by_a_perfect_model():
    # top 4 relevances (1, 0.5, 0.5, 0): n0 = 6 pairs, 1 tied in relevance; a perfect model has
    # no tied scores: tau_b = 5 / sqrt(6 * 5) = sqrt(5 / 6)
    rel = np.array([[0.5, 0.0, 1.0, 0.5, 0.0, 0.0]])
    assert coherent_ceiling(np.zeros_like(rel), rel, 4) == pytest.approx(math.sqrt(5 / 6))
    rng = np.random.default_rng(3)
    rel = rng.integers(0, 4, (30, 60)) / 3
    perfect = rel + 1e-6 * rng.random(rel.shape)  # by relevance, ties broken at random
    assert coherent_score(perfect, rel, 20) == pytest.approx(coherent_ceiling(perfect, rel, 20))
    assert coherent_ceiling(perfect, rel, 20) < 1.0


# ---------------------------------------------------------------------------------------------
# nDCG


def test_ndcg_by_hand():
    # ranking by score: candidates 1 (gain 0), 0 (gain 1), 2 (gain 0.5)
    # DCG@3 = 0 / log2(2) + 1 / log2(3) + 0.5 / log2(4); ideal 1, 0.5, 0: 1 + 0.5 / log2(3)
    sim = np.array([[0.5, 0.9, 0.1]])
    rel = np.array([[1.0, 0.0, 0.5]])
    dcg = 1 / math.log2(3) + 0.5 / 2
    idcg = 1 + 0.5 / math.log2(3)
    assert ndcg_at_k(sim, rel, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(rel, rel, 3) == pytest.approx(1.0)


def test_ndcg_skips_queries_without_relevant_candidates():
    sim = np.array([[0.5, 0.9, 0.1], [0.1, 0.2, 0.3]])
    rel = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    assert ndcg_at_k(sim, rel, 3) == pytest.approx(ndcg_at_k(sim[:1], rel[:1], 3))


# ---------------------------------------------------------------------------------------------
# report


def test_report_collects_every_metric():
    rng = np.random.default_rng(4)
    rel = rng.integers(0, 4, (25, 150)) / 3
    gt = rng.integers(0, 150, 25)
    rel[np.arange(25), gt] = 1.0
    sim = rel + rng.normal(0, 0.3, rel.shape)
    report = retrieval_report(sim, rel, gt)
    for k, value in recall_at_k(sim, gt).items():
        assert report[f"R@{k}"] == value
    assert report["mean_rank"] == mean_rank(sim, gt)
    assert report["median_rank"] == median_rank(sim, gt)
    assert report["CS@100"] == coherent_score(sim, rel, 100)
    assert report["CS@100_ceiling"] == coherent_ceiling(sim, rel, 100)
    assert report["CS@150"] == coherent_score(sim, rel, 150)  # CS@1000 clamped to the pool
    assert "CS@1000" not in report
    assert 0 < report["CS@100_defined"] <= 1
    assert report["nDCG@20"] == ndcg_at_k(sim, rel, 20)
    assert report["queries"] == 25 and report["candidates"] == 150


def test_report_in_the_other_direction_with_several_captions_per_image():
    # 6 captions of 3 images (two each): image -> text has two ground truths per image
    rng = np.random.default_rng(5)
    image_of = np.array([0, 0, 1, 1, 2, 2])
    sim = rng.random((6, 3))
    sim[np.arange(6), image_of] += 1.0  # every caption finds its image first
    rel = (image_of[:, None] == np.arange(3)[None, :]).astype(float)
    t2i = retrieval_report(sim, rel, image_of, cs_ks=(3,), ndcg_ks=(2,))
    mask = image_of[None, :] == np.arange(3)[:, None]
    i2t = retrieval_report(sim.T, rel.T, mask, cs_ks=(6,), ndcg_ks=(2,))
    assert t2i["R@1"] == 1.0
    assert i2t["R@1"] == 1.0
    assert i2t["nDCG@2"] == pytest.approx(1.0)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same shape"):
        coherent_score(np.zeros((2, 3)), np.zeros((2, 4)), 2)
    with pytest.raises(ValueError, match="at least 2"):
        coherent_score(np.zeros((2, 3)), np.zeros((2, 3)), 1)
