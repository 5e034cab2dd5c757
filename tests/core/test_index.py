"""VectorIndex: exact and graph regimes, updates, persistence and its failure modes (real hnswlib)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from core.errors import IndexCorruptError
from core.index import VectorIndex, id_set_checksum

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_top(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ vecs.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(scores, order, axis=1)


def make(mode: str, **kw) -> VectorIndex:
    threshold = 0 if mode == "hnsw" else 10**9
    return VectorIndex(DIM, exact_threshold=threshold, **kw)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    ids = rng.permutation(10_000)[:1500].astype(np.int64) * 3 + 11  # sparse, unordered ids
    return ids, unit(rng, ids.size), unit(rng, 40)


def test_exact_search_matches_brute_force(data):
    ids, vecs, queries = data
    index = make("exact")
    index.add(ids, vecs)
    got_ids, got_scores = index.search(queries, 10)
    want_ids, want_scores = brute_top(vecs, ids, queries, 10)
    assert index.mode == "exact"
    assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)


def test_graph_recall_against_exact(data):
    ids, vecs, queries = data
    exact, graph = make("exact"), make("hnsw")
    exact.add(ids, vecs)
    graph.add(ids, vecs)
    assert graph.mode == "hnsw"
    e_ids, _ = exact.search(queries, 10)
    g_ids, g_scores = graph.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(e_ids, g_ids, strict=True)])
    assert recall >= 0.95
    assert np.all(np.diff(g_scores, axis=1) <= 1e-6), "results are best first"
    # Scores of the graph are the same inner products, not distances.
    by_id = dict(zip(ids.tolist(), vecs, strict=True))
    np.testing.assert_allclose(g_scores[0], [by_id[i] @ queries[0] for i in g_ids[0]], atol=1e-5)


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_k_is_clamped_to_the_live_count(mode):
    rng = np.random.default_rng(1)
    index = make(mode)
    ids, scores = index.search(unit(rng, 1)[0], 5)
    assert ids.shape == (1, 0) and scores.shape == (1, 0)
    index.add([4, 5, 6, 7, 8], unit(rng, 5))
    ids, scores = index.search(unit(rng, 3), 50)
    assert ids.shape == (3, 5) and scores.shape == (3, 5)
    assert sorted(ids[0].tolist()) == [4, 5, 6, 7, 8]
    index.remove([5, 6])
    ids, _ = index.search(unit(rng, 1)[0], 50)
    assert sorted(ids[0].tolist()) == [4, 7, 8]
    assert index.search(unit(rng, 2), 0)[0].shape == (2, 0)


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_removed_ids_never_come_back_and_can_be_re_added(mode, data):
    ids, vecs, _ = data
    index = make(mode, rebuild_fraction=0.9)
    index.add(ids, vecs)
    gone = ids[:100]
    assert index.remove(np.concatenate([gone, [10**12]])) == 100  # the unknown id is ignored
    assert index.remove(gone) == 0
    assert len(index) == ids.size - 100
    assert 10**12 not in index and int(gone[0]) not in index and int(ids[200]) in index
    found, _ = index.search(vecs[:100], 5)  # each removed vector's own query
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    index.add(gone[:1], vecs[:1])
    found, scores = index.search(vecs[0], 1)
    assert found[0, 0] == gone[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert len(index) == ids.size - 99


def test_many_removals_rebuild_the_graph_and_fall_back_to_exact():
    rng = np.random.default_rng(2)
    vecs = unit(rng, 400)
    index = VectorIndex(DIM, exact_threshold=300, rebuild_fraction=0.2)
    index.add(np.arange(400), vecs)
    assert index.mode == "hnsw"
    index.remove(np.arange(50))  # 12.5% dead: still the same graph
    assert index.mode == "hnsw"
    index.remove(np.arange(50, 290))  # 110 live left, below half the threshold
    assert index.mode == "exact" and len(index) == 110
    found, scores = index.search(vecs[300:310], 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(300, 310))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_adding_an_existing_id_replaces_its_vector(mode):
    rng = np.random.default_rng(3)
    vecs = unit(rng, 50)
    index = make(mode)
    index.add(np.arange(50), vecs)
    new = unit(rng, 1)[0]
    index.add([7], new[None, :])
    assert len(index) == 50
    np.testing.assert_allclose(index.get_vectors([7])[0], new, atol=1e-6)
    found, scores = index.search(new, 1)
    assert found[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # A repeated id within one batch: the last row wins.
    index.add([60, 60], np.stack([vecs[0], new]))
    np.testing.assert_allclose(index.get_vectors([60])[0], new, atol=1e-6)
    with pytest.raises(KeyError):
        index.get_vectors([12345])


def test_growing_past_capacity_and_crossing_the_threshold():
    rng = np.random.default_rng(4)
    vecs = unit(rng, 900)
    index = VectorIndex(DIM, exact_threshold=150)
    for start in range(0, 900, 100):  # the graph is built at 200 and resized several times after
        index.add(np.arange(start, start + 100), vecs[start : start + 100])
        assert index.mode == ("exact" if start + 100 <= 150 else "hnsw")
    assert len(index) == 900
    np.testing.assert_array_equal(index.ids(), np.arange(900))
    found, _ = index.search(vecs, 1)
    assert np.mean(found[:, 0] == np.arange(900)) >= 0.99


def test_concurrent_add_and_search_is_safe():
    rng = np.random.default_rng(5)
    vecs = unit(rng, 3000)
    queries = unit(rng, 20)
    index = VectorIndex(DIM, exact_threshold=500)
    index.add(np.arange(100), vecs[:100])
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for start in range(100, 3000, 100):
                index.add(np.arange(start, start + 100), vecs[start : start + 100])
                index.remove([start - 50])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                ids, scores = index.search(queries, 10)
                assert ids.shape == scores.shape == (20, 10)
                assert (ids >= 0).all() and (ids < 3000).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert index.mode == "hnsw" and len(index) == 3000 - 29


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_sample_draws_distinct_stored_vectors(mode, data):
    ids, vecs, _ = data
    index = make(mode)
    assert index.sample(10).shape == (0, DIM)
    index.add(ids, vecs)
    sample = index.sample(200, seed=3)
    assert sample.shape == (200, DIM) and sample.dtype == np.float32
    best = (sample @ vecs.T).max(axis=1)
    np.testing.assert_allclose(best, 1.0, atol=1e-5)  # each sampled row is a stored vector
    assert np.unique(np.round(sample, 5), axis=0).shape[0] == 200
    np.testing.assert_array_equal(index.sample(200, seed=3), sample)
    assert index.sample(10**6).shape == (ids.size, DIM)


def test_bad_input_is_refused():
    index = VectorIndex(DIM)
    with pytest.raises(ValueError):
        index.add([1, 2], np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(ValueError):
        index.add([-1], np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError):
        index.add([1], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM + 1, np.float32), 3)
    with pytest.raises(ValueError):
        VectorIndex(0)


# ---------------------------------------------------------------------- persistence


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_save_and_load_round_trip(mode, data, tmp_path):
    ids, vecs, queries = data
    index = make(mode, ef_search=64)
    index.add(ids, vecs)
    index.remove(ids[:10])
    path = tmp_path / "idx" / "clip.index"
    index.save(path)
    loaded = VectorIndex.load(
        path, DIM, expected_ids=ids[10:], exact_threshold=index.exact_threshold, ef_search=64
    )
    assert loaded.mode == mode and len(loaded) == ids.size - 10
    assert loaded.checksum() == id_set_checksum(ids[10:]) == index.checksum()
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Removals survive the round trip, and a second save replaces the data file.
    assert int(ids[0]) not in loaded
    loaded.add(ids[:1], vecs[:1])
    loaded.save(path)
    again = VectorIndex.load(path, DIM, expected_count=ids.size - 9)
    assert int(ids[0]) in again
    assert len(list(path.parent.iterdir())) == 2, "one header and one data file, no leftovers"


def saved(tmp_path, mode: str = "hnsw", n: int = 300):
    rng = np.random.default_rng(9)
    index = make(mode)
    index.add(np.arange(n), unit(rng, n))
    path = tmp_path / "x.index"
    index.save(path)
    header = json.loads(path.read_text())
    return path, path.with_name(header["payload"]), header


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_truncated_data_is_corrupt(mode, tmp_path):
    path, payload, _ = saved(tmp_path, mode)
    payload.write_bytes(payload.read_bytes()[:-100])
    with pytest.raises(IndexCorruptError, match="truncated"):
        VectorIndex.load(path, DIM)


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_damaged_data_is_corrupt(mode, tmp_path):
    path, payload, _ = saved(tmp_path, mode)
    raw = bytearray(payload.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    payload.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="damaged"):
        VectorIndex.load(path, DIM)


def test_graph_hnswlib_rejects_is_corrupt(tmp_path):
    """Even with a header forged to match, a truncated graph is refused, not crashed on."""
    import hashlib

    path, payload, header = saved(tmp_path, "hnsw")
    cut = payload.read_bytes()[:-1000]
    payload.write_bytes(cut)
    header.update(payload_bytes=len(cut), payload_sha256=hashlib.sha256(cut).hexdigest())
    path.write_text(json.dumps(header))
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(path, DIM)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\xff garbage \x13" * 50, b'{"format": "ladderlens-vector-index"', b"[1, 2, 3]", b'{"a": 1}'],
)
def test_garbage_header_is_corrupt(content, tmp_path):
    path = tmp_path / "x.index"
    path.write_bytes(content)
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(path, DIM)


def test_header_fields_are_checked(tmp_path):
    path, _, header = saved(tmp_path, "exact")
    for field, value in [("count", 299), ("payload", "../elsewhere.data"), ("dim", "32"), ("version", 99)]:
        path.write_text(json.dumps({**header, field: value}))
        with pytest.raises(IndexCorruptError):
            VectorIndex.load(path, DIM)


def test_missing_files_are_corrupt(tmp_path):
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(tmp_path / "nothing.index", DIM)
    path, payload, _ = saved(tmp_path)
    payload.unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        VectorIndex.load(path, DIM)


def test_wrong_dim_or_catalog_mismatch_is_corrupt(tmp_path):
    path, _, _ = saved(tmp_path, n=300)
    with pytest.raises(IndexCorruptError, match="64-d"):
        VectorIndex.load(path, 64)
    with pytest.raises(IndexCorruptError, match="catalog"):
        VectorIndex.load(path, DIM, expected_ids=np.arange(1, 301))
    with pytest.raises(IndexCorruptError, match="catalog"):
        VectorIndex.load(path, DIM, expected_count=301)
    assert len(VectorIndex.load(path, DIM, expected_ids=list(range(299, -1, -1)))) == 300


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
@pytest.mark.parametrize("fail_at", ["replace", "json"])
def test_a_failing_save_leaves_the_old_index(mode, fail_at, tmp_path, monkeypatch):
    path, _, _ = saved(tmp_path, mode, n=300)
    before = sorted(p.name for p in tmp_path.iterdir())
    rng = np.random.default_rng(10)
    bigger = make(mode)
    bigger.add(np.arange(500), unit(rng, 500))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    target = "core.index.os.replace" if fail_at == "replace" else "core.index.json.dump"
    monkeypatch.setattr(target, boom)
    with pytest.raises(OSError):
        bigger.save(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no leftovers"
    assert len(VectorIndex.load(path, DIM, expected_ids=np.arange(300))) == 300


def test_removed_slots_are_reused_without_stale_copies():
    rng = np.random.default_rng(11)
    vecs = unit(rng, 300)
    index = make("hnsw", rebuild_fraction=0.9)
    index.add(np.arange(200), vecs[:200])
    slots = index.stats()["slots"]
    index.remove(np.arange(50))
    # Updating a live id while dead slots exist must update it in place, not copy it.
    index.add([100], vecs[250:251])
    # New ids fill the dead slots instead of growing the graph.
    index.add(np.arange(1000, 1040), vecs[200:240])
    assert index.stats()["slots"] == slots and len(index) == 190
    # Re-adding removed ids: some slots were reused by others, some are still there.
    index.add(np.arange(50), vecs[:50])
    assert len(index) == 240
    found, _ = index.search(vecs[:250], 20)
    for row in found:
        assert len(set(row.tolist())) == row.size, "no id twice"
    assert not set(found.ravel().tolist()) - set(index.ids().tolist())
    got = index.search(vecs[250], 1)
    assert got[0][0, 0] == 100 and got[1][0, 0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(index.get_vectors([3, 1005]), vecs[[3, 205]], atol=1e-6)


def test_searches_go_on_while_the_graph_is_built():
    rng = np.random.default_rng(12)
    vecs = unit(rng, 700)
    index = VectorIndex(DIM, exact_threshold=300)
    index.add(np.arange(300), vecs[:300])
    seen: list[tuple[str, int]] = []

    def during_build(done: int, total: int) -> None:
        if seen:
            return

        # Another thread can search, add and remove while this one builds (no lock is held).
        def other():
            ids, _ = index.search(vecs[0], 1)
            seen.append((index.mode, int(ids[0, 0])))
            index.add(np.arange(600, 700), vecs[600:700])
            index.remove([1, 2, 3])

        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive(), "the build held the lock"
        assert index.building

    index.add(np.arange(300, 600), vecs[300:600], on_progress=during_build)
    assert seen == [("exact", 0)]
    assert index.mode == "hnsw" and not index.building
    # The changes made during the build were replayed onto the new graph.
    assert len(index) == 697 and 650 in index and 2 not in index
    found, _ = index.search(vecs[650], 1)
    assert found[0, 0] == 650


def test_a_failed_build_keeps_the_exact_index(monkeypatch):
    rng = np.random.default_rng(13)
    vecs = unit(rng, 120)
    index = VectorIndex(DIM, exact_threshold=100)
    index.add(np.arange(90), vecs[:90])

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("core.index._Graph.build", no_memory)
    with pytest.raises(MemoryError):
        index.add(np.arange(90, 120), vecs[90:])
    assert index.mode == "exact" and len(index) == 120 and not index.building
    monkeypatch.undo()
    index.add([500], vecs[:1])  # the next add tries again
    assert index.mode == "hnsw" and len(index) == 121


def test_query_beam_scales_with_the_library_unless_fixed(monkeypatch):
    rng = np.random.default_rng(14)
    index = make("hnsw")
    assert index.ef_search is None and index.effective_ef() == 128  # the floor
    index.add(np.arange(2000), unit(rng, 2000))
    monkeypatch.setattr("core.index.EF_SEARCH_PER_VECTORS", 10)
    assert index.effective_ef() == 200
    monkeypatch.setattr("core.index.EF_SEARCH_MAX", 150)
    assert index.effective_ef() == 150
    index.ef_search = 40
    assert index.effective_ef() == 40
    assert index.search(unit(rng, 1), 60)[0].shape == (1, 60), "ef is raised to k"
    with pytest.raises(ValueError):
        index.ef_search = 0
