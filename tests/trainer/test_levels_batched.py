"""The batched level computation on batch-sized inputs: references written out here, both array
backends (numpy on the CPU, torch on a device) on the same rows, and the (B, B) ladder levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer import levels
from trainer.data import draw_captions
from trainer.level_arrays import NumpyArrays, TorchArrays
from trainer.levels import LevelSettings, adaptive_levels, kmeans_1d, ladder_levels
from trainer.losses import AdaptiveLadderLoss
from trainer.scenes import relevance_matrix, sample_scenes

CPU_TORCH = TorchArrays(torch.device("cpu"))

# ---------------------------------------------------------------------------------------------
# references


def optimal_sse(row: np.ndarray, k_max: int) -> list[float]:
    """Least k-means inertia of a row for k = 1..k_max: the textbook programme, one row at a time."""
    values, counts = np.unique(np.asarray(row, dtype=np.float64), return_counts=True)
    m = len(values)
    w = np.concatenate([[0.0], np.cumsum(counts)])
    s = np.concatenate([[0.0], np.cumsum(counts * values)])
    q = np.concatenate([[0.0], np.cumsum(counts * values**2)])
    best = np.full((k_max + 1, m + 1), np.inf)
    best[0, 0] = 0.0
    for k in range(1, k_max + 1):
        for end in range(k, m + 1):
            start = np.arange(k - 1, end)
            cost = q[end] - q[start] - (s[end] - s[start]) ** 2 / (w[end] - w[start])
            best[k, end] = np.min(best[k - 1, start] + cost)
    return [float(best[k, m]) for k in range(1, k_max + 1)]


def brute_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from the definition, O(N^2), one row."""
    x = np.asarray(x, dtype=np.float64)
    dist = np.abs(x[:, None] - x[None, :])
    clusters = np.unique(labels)
    same = labels[:, None] == labels[None, :]
    size = same.sum(1)
    a = np.where(size > 1, (dist * same).sum(1) / np.maximum(size - 1, 1), 0.0)
    b = np.full(len(x), np.inf)
    for c in clusters:
        member = labels == c
        b = np.where(labels != c, np.minimum(b, dist[:, member].mean(1)), b)
    s = np.where(size > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(s.mean())


def scene_relevance(batch: int, seed: int, dtype: type = np.float32) -> np.ndarray:
    """A scene-world training batch's relevance (captions naming all or some attributes).

    float32 as the data pipeline makes it, or float64 for comparisons with references down to
    1e-9 (float32 roundings of one relevance degree are one value, see SAME_VALUE_RTOL).
    """
    scenes = sample_scenes(batch, seed=seed)
    captions = draw_captions(scenes, seed=seed, tokenizer=None)
    return np.ascontiguousarray(relevance_matrix(captions.attributes, scenes, dtype=dtype).T)


def discrete_rows(rng: np.random.Generator, rows: int, n: int, distinct: tuple[int, int]) -> np.ndarray:
    """Rows drawing from their own set of ``distinct`` values, at least 1e-3 apart."""
    out = np.empty((rows, n))
    for i in range(rows):  # building test data
        d = min(n, int(rng.integers(distinct[0], distinct[1] + 1)))
        grid = np.sort(rng.choice(1000, d, replace=False)) / 1000
        out[i] = np.concatenate([grid, rng.choice(grid, n - d)])  # every value used
        rng.shuffle(out[i])
    return out


def clustered_rows(rng: np.random.Generator, rows: int, n: int, grid: int) -> np.ndarray:
    """Rows of 2 to 5 clusters of uneven weight and spread, rounded to multiples of 1 / grid."""
    out = np.empty((rows, n))
    for i in range(rows):  # building test data
        k = int(rng.integers(2, 6))
        centre, spread = rng.random(k), rng.random(k) * 0.3
        cluster = rng.choice(k, n, p=rng.dirichlet(np.full(k, 0.5)))
        out[i] = np.round(np.clip(centre[cluster] + rng.normal(size=n) * spread[cluster], 0, 1) * grid) / grid
    return out


def continuous_rows(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """Rows of distinct values no two closer than 5e-5 (none merged as rounding noise)."""
    return np.stack([rng.choice(20000, n, replace=False) for _ in range(rows)]) / 20000


def mixed_batch(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    quarter = rows // 4
    return np.concatenate(
        [
            discrete_rows(rng, quarter, n, (2, 20)),
            discrete_rows(rng, quarter, n, (40, levels.EXACT_MAX_DISTINCT)),
            np.round(rng.random((quarter, n)), 2),  # more distinct values than the exact limit
            continuous_rows(rng, rows - 3 * quarter, n),
        ]
    )


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    b = matrix.shape[0]
    return matrix[~np.eye(b, dtype=bool)].reshape(b, b - 1)


# ---------------------------------------------------------------------------------------------
# exactness


def test_every_row_up_to_the_exact_limit_gets_the_optimal_split():
    # clusters of uneven weight and spread, on a grid of at most EXACT_MAX_DISTINCT values: rows
    # where a Lloyd iteration from a coarse split often stops at a local optimum
    rng = np.random.default_rng(0)
    x = clustered_rows(rng, 48, 256, grid=levels.EXACT_MAX_DISTINCT - 1)
    assert max(len(np.unique(row)) for row in x) <= levels.EXACT_MAX_DISTINCT
    assert np.mean([len(np.unique(row)) > 48 for row in x]) > 0.3
    reference = [optimal_sse(row, 4) for row in x]
    for k in (2, 3, 4):
        km = kmeans_1d(torch.from_numpy(x), k)
        assert km.valid.all()
        want = np.array([r[k - 1] for r in reference])
        np.testing.assert_allclose(km.inertia.numpy(), want, rtol=1e-9, atol=1e-9)


def test_large_batches_choose_by_the_exact_silhouette():
    rng = np.random.default_rng(1)
    outliers = discrete_rows(rng, 8, 511, (3, 12)) * 0.5
    outliers[:, 0] = 1.0  # one value alone at the top: a cluster of one
    x = np.concatenate(
        [off_diagonal(scene_relevance(512, seed=2, dtype=np.float64)), mixed_batch(rng, 64, 511), outliers]
    )
    got = adaptive_levels(torch.from_numpy(x))
    labels = {k: kmeans_1d(torch.from_numpy(x), k).labels.numpy() for k in (2, 3, 4)}
    sample = np.concatenate([rng.choice(len(x) - 8, 24, replace=False), np.arange(len(x) - 8, len(x))])
    for i in sample:  # the reference is O(N^2) per row
        k = int(got.k[i])
        level = got.levels[i].numpy()
        assert sorted(set(level.tolist())) == list(range(k))
        assert float(got.silhouette[i]) == pytest.approx(brute_silhouette(x[i], level), abs=1e-9)
        # the chosen k has the best silhouette of the k-means splits (the smaller k on ties)
        scores = [brute_silhouette(x[i], labels[j][i]) for j in (2, 3, 4)]
        assert k == 2 + int(np.argmax(np.array(scores) > max(scores) - 1e-12))


def test_continuous_rows_end_at_a_lloyd_fixed_point():
    x = continuous_rows(np.random.default_rng(3), 32, 511)
    for k in (2, 3, 4):
        km = kmeans_1d(torch.from_numpy(x), k)
        for row, lab, cent in zip(x, km.labels.numpy(), km.centroids.numpy(), strict=True):
            np.testing.assert_allclose(cent, [row[lab == c].mean() for c in range(k)], atol=1e-12)
            assert (np.abs(row[:, None] - cent[None, :]).argmin(1) == lab).all()


# ---------------------------------------------------------------------------------------------
# the two array backends


@pytest.mark.parametrize("batch", [16, 128, 512])
def test_numpy_and_torch_backends_agree(batch):
    rng = np.random.default_rng(batch)
    x = torch.from_numpy(
        np.concatenate([off_diagonal(scene_relevance(batch, seed=batch)), mixed_batch(rng, 16, batch - 1)])
    )
    fast = levels._adaptive_levels(NumpyArrays(), x, 2, 4, levels.DEFAULT_MAX_ITER)
    other = levels._adaptive_levels(CPU_TORCH, x, 2, 4, levels.DEFAULT_MAX_ITER)
    assert torch.equal(fast.levels, other.levels)
    assert torch.equal(fast.k, other.k)
    torch.testing.assert_close(fast.silhouette, other.silhouette, rtol=0, atol=1e-12, equal_nan=True)
    for k in (1, 3, 5):
        a = levels._kmeans_1d(NumpyArrays(), x, k, levels.DEFAULT_MAX_ITER)
        b = levels._kmeans_1d(CPU_TORCH, x, k, levels.DEFAULT_MAX_ITER)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.valid, b.valid)
        torch.testing.assert_close(a.inertia, b.inertia, rtol=1e-12, atol=1e-12)


def test_ties_at_the_widest_gaps_are_broken_alike():
    # values on a grid of 0.01: many gaps of the same width compete for the coarse split points
    rng = np.random.default_rng(5)
    x = torch.from_numpy(np.round(rng.random((64, 300)), 2))
    a = levels._adaptive_levels(NumpyArrays(), x, 2, 4, levels.DEFAULT_MAX_ITER)
    b = levels._adaptive_levels(CPU_TORCH, x, 2, 4, levels.DEFAULT_MAX_ITER)
    assert torch.equal(a.levels, b.levels)


# ---------------------------------------------------------------------------------------------
# ladder levels of a relevance matrix


@pytest.mark.parametrize("kind", ["scenes", "continuous"])
def test_ladder_levels_are_each_querys_adaptive_levels(kind):
    rng = np.random.default_rng(7)
    b = 512 if kind == "scenes" else 128
    r = scene_relevance(b, seed=4) if kind == "scenes" else rng.random((b, b)).astype(np.float32)
    got = ladder_levels(torch.from_numpy(r))
    assert got.shape == (2, b, b) and got.dtype == torch.int64
    for direction, matrix in enumerate((r, r.T)):
        assert (got[direction].diagonal() == 0).all()
        want = adaptive_levels(torch.from_numpy(off_diagonal(matrix))).levels + 1
        assert torch.equal(torch.from_numpy(off_diagonal(got[direction].numpy())), want)
    same = levels._ladder_levels(CPU_TORCH, torch.from_numpy(r), 2, 4, levels.DEFAULT_MAX_ITER)
    assert torch.equal(same, got)


def test_the_ground_truth_is_level_zero_whatever_its_relevance():
    r = torch.from_numpy(scene_relevance(64, seed=8))
    changed = r.clone()
    changed.fill_diagonal_(0.3)
    assert torch.equal(ladder_levels(changed), ladder_levels(r))


def test_level_settings_compute_what_the_loss_computes():
    r = torch.from_numpy(scene_relevance(32, seed=9))
    loss = AdaptiveLadderLoss(margins=(0.2, 0.01, 0.01), betas=(1, 0.5, 0.25), k_max=3, max_iter=7)
    assert loss.level_settings == LevelSettings(2, 3, 7)
    assert torch.equal(loss.level_settings(r), loss.levels(r))
    assert not torch.equal(LevelSettings()(r), loss.levels(r))  # k up to 4 splits some rows further


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_relevance_is_refused(bad):
    r = torch.rand(6, 6)
    r[1, 4] = bad
    with pytest.raises(ValueError, match="finite"):
        ladder_levels(r)
    with pytest.raises(ValueError, match="square"):
        ladder_levels(torch.rand(3, 4))


def test_tiny_matrices():
    assert ladder_levels(torch.ones(1, 1)).tolist() == [[[0]], [[0]]]
    two = ladder_levels(torch.tensor([[1.0, 0.2], [0.5, 1.0]]))
    assert two.tolist() == [[[0, 1], [1, 0]], [[0, 1], [1, 0]]]  # one candidate: one level
