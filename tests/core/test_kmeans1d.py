"""Optimal 1-D k-means and the silhouette, against brute-force references written out here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.kmeans1d import kmeans_1d, optimal_splits, silhouette_1d, silhouette_rows


def brute_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    values = []
    for i in range(x.size):
        same = [abs(x[i] - x[j]) for j in range(x.size) if labels[j] == labels[i] and j != i]
        if not same:
            values.append(0.0)
            continue
        a = sum(same) / len(same)
        b = min(
            np.mean([abs(x[i] - x[j]) for j in range(x.size) if labels[j] == c])
            for c in set(labels.tolist())
            if c != labels[i]
        )
        values.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(values))


def sse(x: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((x[labels == c] - x[labels == c].mean()) ** 2).sum() for c in np.unique(labels)))


def test_kmeans_1d_is_optimal_against_every_contiguous_partition():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(2, 11))
        x = np.round(rng.normal(size=n), 1)  # rounding makes ties
        for k in range(1, 5):
            labels, centres = kmeans_1d(x, k)
            xs = np.sort(x)
            kk = min(k, np.unique(x).size)
            best = min(
                sse(xs, np.repeat(np.arange(kk), np.diff([0, *cuts, n])))
                for cuts in itertools.combinations(range(1, n), kk - 1)
            )
            assert sse(x, labels) == pytest.approx(best, abs=1e-9)
            assert np.all(np.diff(centres) > 0), "clusters numbered by ascending centre"
            for c in range(labels.max()):  # contiguous: every member of c is below every member of c+1
                assert x[labels == c].max() <= x[labels == c + 1].min()


def test_kmeans_1d_input_order_and_edge_cases():
    labels, centres = kmeans_1d(np.array([11.0, 1, 12, 2, 10, 3]), 2)
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(centres, [2, 11])
    labels, centres = kmeans_1d([5.0, 5.0, 5.0], 3)  # fewer distinct values than k
    np.testing.assert_array_equal(labels, [0, 0, 0])
    assert kmeans_1d([], 2)[0].size == 0
    with pytest.raises(ValueError):
        kmeans_1d([1.0, np.nan], 2)


def test_silhouette_matches_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(40):
        n = int(rng.integers(3, 25))
        x = np.round(rng.normal(size=n), 2)
        labels = rng.integers(0, int(rng.integers(2, min(5, n))), n)
        if not 2 <= np.unique(labels).size <= n - 1:
            continue
        assert silhouette_1d(x, labels) == pytest.approx(brute_silhouette(x, labels), abs=1e-9)


def test_silhouette_refuses_one_cluster():
    with pytest.raises(ValueError):
        silhouette_1d([1.0, 2.0, 3.0], [0, 0, 0])


def test_silhouette_rows_is_each_rows_silhouette_and_nan_where_undefined():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(6, 12)), 1)
    labels = rng.integers(0, 3, x.shape)
    labels[:, :3] = [0, 1, 2]
    labels[4] = 0  # one cluster
    labels[5] = np.arange(12)  # every point alone
    got = silhouette_rows(x, labels)
    for row in range(4):
        assert got[row] == silhouette_1d(x[row], labels[row])
    assert np.isnan(got[4:]).all()
    with pytest.raises(ValueError):
        silhouette_rows(x[0], labels[0])


def prefix_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.sort(x) - x.mean()
    zero = np.zeros((1,))
    return (
        np.arange(x.size + 1, dtype=np.float64)[None, :],
        np.concatenate([zero, np.cumsum(c)])[None, :],
        np.concatenate([zero, np.cumsum(c * c)])[None, :],
    )


def test_optimal_splits_by_gain_and_by_cost_find_the_optimum():
    rng = np.random.default_rng(4)
    for _ in range(30):
        x = np.round(rng.normal(size=int(rng.integers(5, 12))), 1)
        xs = np.sort(x)
        w, s, q = prefix_sums(x)
        kk = min(4, np.unique(x).size)
        ks = tuple(range(1, kk + 1))
        for bounds in (optimal_splits(w, s, ks)[0], optimal_splits(w, s, ks, q=q, allow_empty=False)[0]):
            for i, k in enumerate(ks):
                assert bounds[i, 0] == 0 and (bounds[i, k:] == x.size).all()
                labels = np.repeat(np.arange(k), np.diff(bounds[i, : k + 1]))
                best = min(
                    sse(xs, np.repeat(np.arange(k), np.diff([0, *cuts, x.size])))
                    for cuts in itertools.combinations(range(1, x.size), k - 1)
                )
                assert sse(xs, labels) == pytest.approx(best, abs=1e-9)


def test_optimal_splits_leave_a_segment_empty_only_when_allowed():
    # two distinct values, twice each, as runs with multiplicities: three segments leave one empty
    runs = optimal_splits(np.array([[0.0, 2.0, 4.0]]), np.array([[0.0, -0.7, 0.0]]), (3,))[0, 0]
    assert (np.diff(runs) == 0).any()
    # as four values, every segment takes at least one
    w, s, _ = prefix_sums(np.array([0.2, 0.2, 0.9, 0.9]))
    assert (np.diff(optimal_splits(w, s, (3,), allow_empty=False)[0, 0]) > 0).all()


def test_optimal_splits_give_the_same_on_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    w = np.tile(np.arange(21, dtype=np.float64), (8, 1))
    s = np.concatenate([np.zeros((8, 1)), np.cumsum(rng.normal(size=(8, 20)), axis=1)], axis=1)
    want = optimal_splits(w, s, (2, 3, 4))
    got = optimal_splits(torch.from_numpy(w), torch.from_numpy(s), (2, 3, 4), xp=torch)
    np.testing.assert_array_equal(got.numpy(), want)
