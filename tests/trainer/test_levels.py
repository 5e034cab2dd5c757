"""Batched 1-D k-means and silhouette against brute-force references written out here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from trainer import levels
from trainer.levels import LevelSettings, adaptive_levels, kmeans_1d, ladder_levels, silhouette_1d

# ---------------------------------------------------------------------------------------------
# references


def brute_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette straight from the definition, O(N^2): NaN unless 2 <= clusters <= N-1."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(x)
    clusters = np.unique(labels)
    if not 2 <= len(clusters) <= n - 1:
        return float("nan")
    dist = np.abs(x[:, None] - x[None, :])
    s = np.zeros(n)
    for i in range(n):
        own = labels == labels[i]
        if own.sum() == 1:
            continue  # a point alone in its cluster scores 0
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == c].mean() for c in clusters if c != labels[i])
        s[i] = (b - a) / max(a, b)
    return float(s.mean())


def brute_optimal_sse(x: np.ndarray, k: int) -> float:
    """Least k-means inertia over every split of the sorted distinct values into k runs."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    distinct = np.unique(xs)
    if len(distinct) < k:
        return float("inf")
    best = float("inf")
    for cuts in itertools.combinations(range(1, len(distinct)), k - 1):
        cluster = np.searchsorted(distinct[list(cuts)], xs, side="right")
        sse = sum(((xs[cluster == c] - xs[cluster == c].mean()) ** 2).sum() for c in range(k))
        best = min(best, sse)
    return best


def sse_of(x: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((x[labels == c] - x[labels == c].mean()) ** 2).sum() for c in np.unique(labels)))


def discrete_rows(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """Relevance-like rows: weighted shares of agreeing attributes (few distinct values)."""
    weights = np.array([0.35, 0.25, 0.2, 0.1, 0.1])
    query = rng.integers(0, 3, (rows, 1, 5))
    items = rng.integers(0, 3, (rows, n, 5))
    return ((items == query) * weights).sum(-1)


def continuous_rows(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """Rows of distinct values, no two closer than 5e-6 (uniform, skewed and clustered)."""
    grid = np.stack([rng.choice(20000, n, replace=False) for _ in range(3 * rows)]) / 20000
    uniform = grid[:rows]
    skewed = (0.05 + 0.95 * grid[rows : 2 * rows]) ** 2
    centres = rng.choice([0.1, 0.5, 0.9], (rows, n))
    clustered = centres + grid[2 * rows :] / 10
    return np.concatenate([uniform, skewed, clustered])


def as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# silhouette


def test_silhouette_matches_brute_force_for_any_labelling():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random((6, 15)), np.round(rng.random((6, 15)), 1)])
    labels = rng.integers(0, 3, x.shape)
    labels[:, :3] = [0, 1, 2]  # at least two clusters used in every row
    got = silhouette_1d(as_tensor(x), torch.tensor(labels)).numpy()
    want = np.array([brute_silhouette(r, lab) for r, lab in zip(x, labels, strict=True)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_silhouette_is_nan_where_undefined():
    x = as_tensor(np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]))
    labels = torch.tensor([[0, 0, 0], [0, 1, 2]])  # one cluster; only singletons
    assert torch.isnan(silhouette_1d(x, labels)).all()


# ---------------------------------------------------------------------------------------------
# k-means


@pytest.mark.parametrize("k", [2, 3, 4])
def test_kmeans_is_optimal_when_values_are_few(k):
    rng = np.random.default_rng(k)
    x = np.concatenate([discrete_rows(rng, 8, 14), np.round(rng.random((8, 14)), 1)])
    assert max(len(np.unique(r)) for r in x) <= levels.EXACT_MAX_DISTINCT
    km = kmeans_1d(as_tensor(x), k)
    for row, inertia, valid, labels in zip(x, km.inertia, km.valid, km.labels, strict=True):
        optimum = brute_optimal_sse(row, k)
        assert bool(valid) == np.isfinite(optimum)
        if valid:
            assert float(inertia) == pytest.approx(optimum, abs=1e-12)
            assert sse_of(row, labels.numpy()) == pytest.approx(optimum, abs=1e-12)
            assert len(np.unique(labels.numpy())) == k


def test_kmeans_on_continuous_rows_is_a_lloyd_fixed_point_near_the_optimum():
    rng = np.random.default_rng(1)
    n = levels.EXACT_MAX_DISTINCT + 8  # too many distinct values for the exact path
    x = continuous_rows(rng, 4, n)
    for k in (2, 3):
        km = kmeans_1d(as_tensor(x), k)
        assert km.valid.all()
        ratios = []
        for row, labels, centroids, inertia in zip(x, km.labels, km.centroids, km.inertia, strict=True):
            labels = labels.numpy()
            means = np.array([row[labels == c].mean() for c in range(k)])
            np.testing.assert_allclose(centroids.numpy(), means, atol=1e-12)
            # every value sits with its nearest mean (Lloyd has converged)
            nearest = np.abs(row[:, None] - means[None, :]).argmin(axis=1)
            assert (nearest == labels).all()
            ratios.append(float(inertia) / brute_optimal_sse(row, k))
        ratios = np.array(ratios)
        # a local optimum next to the coarse one: mostly the optimum itself, never far from it
        assert ratios.min() >= 1 - 1e-9
        assert (ratios < 1 + 1e-9).mean() >= 0.75
        assert ratios.mean() <= 1.01 and ratios.max() <= 1.05


def test_kmeans_labels_ascend_with_the_centroids_and_ties_stay_together():
    x = as_tensor(np.array([[0.9, 0.1, 0.5, 0.1, 0.9, 0.52, 0.12, 0.88]]))
    km = kmeans_1d(x, 3)
    assert km.labels.tolist() == [[2, 0, 1, 0, 2, 1, 0, 2]]
    assert torch.all(km.centroids[0, 1:] > km.centroids[0, :-1])
    assert km.counts.tolist() == [[3, 2, 3]]


def test_kmeans_is_invalid_with_fewer_distinct_values_than_k():
    x = as_tensor(np.array([[0.2, 0.2, 0.7, 0.7, 0.7], [0.1, 0.3, 0.5, 0.7, 0.9]]))
    km = kmeans_1d(x, 3)
    assert km.valid.tolist() == [False, True]
    assert torch.isinf(km.inertia[0])


# ---------------------------------------------------------------------------------------------
# adaptive levels


def _brute_choice(row: np.ndarray, k_min: int, k_max: int) -> tuple[int, float, np.ndarray]:
    """Best k by brute-force silhouette of the k-means labels; levels by descending centroid."""
    best_k, best_s, best_levels = 1, -np.inf, np.zeros(len(row), dtype=int)
    for k in range(k_min, k_max + 1):
        km = kmeans_1d(as_tensor(row[None, :]), k)
        if not bool(km.valid[0]):
            continue
        labels = km.labels[0].numpy()
        s = brute_silhouette(row, labels)
        if s > best_s + 1e-12:  # a strictly better silhouette: the smaller k wins ties
            best_k, best_s, best_levels = k, s, k - 1 - labels
    return best_k, best_s, best_levels


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_adaptive_choice_matches_brute_force_silhouette(kind):
    rng = np.random.default_rng(7)
    x = discrete_rows(rng, 24, 30) if kind == "discrete" else continuous_rows(rng, 8, 40)
    got = adaptive_levels(as_tensor(x), 2, 4)
    for i, row in enumerate(x):
        k, s, want_levels = _brute_choice(row, 2, 4)
        assert int(got.k[i]) == k, f"row {i}"
        assert float(got.silhouette[i]) == pytest.approx(s, abs=1e-9)
        assert got.levels[i].tolist() == want_levels.tolist()


def test_a_batch_gives_what_its_rows_give_alone():
    # rows of very different numbers of distinct values share one padded layout in a batch,
    # both below and above the exact-split limit
    rng = np.random.default_rng(13)
    n = 3 * levels.EXACT_MAX_DISTINCT
    x = np.concatenate(
        [
            np.round(rng.random((4, n)), 1),  # about 11 distinct values
            np.round(rng.random((4, n)), 2),  # more than the exact limit, with repeats
            rng.random((4, n)),  # all distinct
            discrete_rows(rng, 4, n),
        ]
    )
    for values in (as_tensor(x), as_tensor(x[4:])):
        batched = adaptive_levels(values)
        assert torch.isfinite(batched.silhouette).all()
        for i in range(values.shape[0]):
            alone = adaptive_levels(values[i : i + 1])
            assert int(batched.k[i]) == int(alone.k[0])
            assert batched.levels[i].tolist() == alone.levels[0].tolist()
            assert float(batched.silhouette[i]) == pytest.approx(float(alone.silhouette[0]), abs=1e-12)


def test_levels_descend_with_relevance():
    rng = np.random.default_rng(3)
    x = discrete_rows(rng, 10, 40)
    got = adaptive_levels(as_tensor(x))
    for row, lev, k in zip(x, got.levels.numpy(), got.k.tolist(), strict=True):
        assert sorted(set(lev.tolist())) == list(range(k))
        for level in range(k - 1):  # every value of level l is above every value of level l+1
            assert row[lev == level].min() > row[lev == level + 1].max()


def test_rows_that_cannot_be_split_are_one_level():
    x = as_tensor(np.array([[0.3] * 6, [0.0, 0.0, 0.0, 0.0, 0.0, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]))
    got = adaptive_levels(x, 2, 4)
    assert got.k.tolist()[0] == 1
    assert got.levels[0].tolist() == [0] * 6
    assert torch.isnan(got.silhouette[0])
    assert got.k.tolist()[1] == 2  # two distinct values: only k = 2 is possible
    assert got.levels[1].tolist() == [1, 1, 1, 1, 1, 0]
    # the five zeros: a = 0, b = 0.5, s = 1; the lone 0.5 scores 0 -> 5 / 6
    assert float(got.silhouette[1]) == pytest.approx(5 / 6)
    assert 2 <= got.k.tolist()[2] <= 4


def test_too_few_values_for_any_k():
    got = adaptive_levels(as_tensor(np.array([[0.2, 0.9]])), 2, 4)  # k = 2 would need N >= 3
    assert got.k.tolist() == [1]


def test_levels_follow_a_permutation_of_the_columns():
    rng = np.random.default_rng(11)
    x = as_tensor(np.concatenate([discrete_rows(rng, 5, 33), rng.random((5, 33))]))
    perm = torch.randperm(33, generator=torch.Generator().manual_seed(0))
    a = adaptive_levels(x)
    b = adaptive_levels(x[:, perm])
    assert torch.equal(a.levels[:, perm], b.levels)
    assert torch.equal(a.k, b.k)


def test_float32_and_half_inputs_are_handled_exactly():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(discrete_rows(rng, 12, 25).astype(np.float32))
    want = adaptive_levels(x.double())  # the same numbers in float64
    for values in (x, x.to(torch.bfloat16).float(), x.half()):
        got = adaptive_levels(values)
        ref = adaptive_levels(values.double())
        assert torch.equal(got.levels, ref.levels)
        assert torch.equal(got.k, ref.k)
    assert torch.equal(adaptive_levels(x).levels, want.levels)


def test_rounding_noise_does_not_split_a_value():
    # 0.35 + 0.25 and 0.25 + 0.35 need not be the same float: they must be one relevance value
    rng = np.random.default_rng(9)
    x = discrete_rows(rng, 8, 30)
    noisy = x + rng.choice([0.0, 1e-15, -1e-15], x.shape) * (x > 0)
    clean = adaptive_levels(as_tensor(x))
    assert torch.equal(adaptive_levels(as_tensor(noisy)).levels, clean.levels)
    km = kmeans_1d(as_tensor(np.array([[0.2, 0.2 + 1e-12, 0.2 - 1e-12, 0.9, 0.9]])), 3)
    assert not bool(km.valid[0])  # two values, not four


@pytest.mark.parametrize(
    ("args", "message"),
    [((1, 4), "k_min"), ((3, 2), "empty range"), ((2, 4, 0), "max_iter")],
)
def test_invalid_ranges_are_refused(args, message):
    k_min, k_max, *rest = args
    with pytest.raises(ValueError, match=message):
        adaptive_levels(torch.rand(2, 5), k_min, k_max, max_iter=rest[0] if rest else 50)


@pytest.mark.parametrize(
    "values",
    [torch.rand(5), torch.rand(2, 0), torch.tensor([[0.1, float("nan"), 0.3]])],
)
def test_bad_values_are_refused(values):
    with pytest.raises(ValueError):
        adaptive_levels(values)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    x = as_tensor(np.concatenate([discrete_rows(rng, 32, 127), rng.random((32, 127))]))
    cpu = adaptive_levels(x)
    gpu = adaptive_levels(x.cuda())
    assert gpu.levels.device.type == "cuda"
    assert torch.equal(cpu.levels, gpu.levels.cpu())
    assert torch.equal(cpu.k, gpu.k.cpu())


def test_the_reference_clusters_the_ground_truth_with_the_near_ties():
    """Reference behaviour: level 0 is the ground truth's cluster; by default it is alone there."""
    relevance = torch.tensor(
        [
            [1.0, 0.95, 0.9, 0.3, 0.2, 0.1],
            [0.95, 1.0, 0.9, 0.3, 0.2, 0.1],
            [0.9, 0.9, 1.0, 0.3, 0.2, 0.1],
            [0.3, 0.3, 0.3, 1.0, 0.2, 0.1],
            [0.2, 0.2, 0.2, 0.2, 1.0, 0.1],
            [0.1, 0.1, 0.1, 0.1, 0.1, 1.0],
        ]
    )
    alone = ladder_levels(relevance)
    shared = ladder_levels(relevance, include_ground_truth=True)
    assert alone[0, 0].tolist()[:3] == [0, 1, 1]  # near ties one level below the ground truth
    assert shared[0, 0].tolist()[:3] == [0, 0, 0]  # near ties share its level
    assert shared[0, 0, 3] > 0 and shared[0, 0, 5] >= shared[0, 0, 3]
    assert torch.all(shared[:, torch.arange(6), torch.arange(6)] == 0)
    settings = LevelSettings(include_ground_truth=True)
    assert torch.equal(settings(relevance), shared)
