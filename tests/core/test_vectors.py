from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from core.catalog import Catalog, PhotoEntry
from core.errors import LibraryError
from core.vectors import HEADER_BYTES, VectorStore

REPO = Path(__file__).resolve().parents[2]
DIM = 8
IDENTITY = {"arch": "tiny", "weights": "sha256:0123456789abcdef", "adapter": None}


def vector_of(content_hash: str, dim: int = DIM) -> np.ndarray:
    """A vector that can be recomputed from its hash (to check what was stored)."""
    seed = int.from_bytes(content_hash.encode()[:8].ljust(8, b"\0"), "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def vectors_of(hashes, dim: int = DIM) -> np.ndarray:
    return np.stack([vector_of(h, dim) for h in hashes]) if hashes else np.empty((0, dim), np.float32)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        yield cat


@pytest.fixture
def store(catalog, tmp_path):
    return VectorStore(catalog, tmp_path / "vectors", IDENTITY, DIM)


def add_photos(catalog, root, hashes, folder=None):
    folder = folder or catalog.add_folder(root)
    entries = [PhotoEntry(str(Path(root) / f"{i}-{h}.jpg"), 1, 1, h) for i, h in enumerate(hashes)]
    return catalog.upsert_photos(folder.id, entries)


def test_put_get_has_missing(store):
    hashes = ["a", "b", "c"]
    assert store.put(hashes, vectors_of(hashes)) == 3
    np.testing.assert_array_equal(store.get(["c", "a"]), vectors_of(["c", "a"]))
    assert store.has(["a", "x", "c"]).tolist() == [True, False, True]
    assert store.missing(["x", "a", "y", "x"]) == ["x", "y"]
    assert len(store) == store.count() == 3
    with pytest.raises(KeyError):
        store.get(["a", "nope"])
    assert store.get([]).shape == (0, DIM)


def test_known_and_repeated_hashes_are_stored_once(store):
    store.put(["a", "b"], vectors_of(["a", "b"]))
    assert store.put(["b", "c", "c", "d"], vectors_of(["b", "c", "c", "d"])) == 2
    assert len(store) == 4
    assert store.put(["a"], vectors_of(["a"])) == 0
    expected_bytes = HEADER_BYTES + 4 * DIM * 4
    assert store.path().stat().st_size == expected_bytes


def test_bad_input_is_refused(store):
    with pytest.raises(ValueError, match="shape"):
        store.put(["a"], np.zeros((1, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        store.put(["a", "b"], np.zeros((1, DIM), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        store.put(["a"], np.full((1, DIM), np.nan, np.float32))
    assert len(store) == 0
    store.put(["f64"], vectors_of(["f64"]).astype(np.float64))  # converted
    assert store.get(["f64"]).dtype == np.float32


def test_photo_matrix_joins_photos_and_reuses_vectors_by_content(catalog, store, tmp_path):
    ids = add_photos(catalog, tmp_path / "photos", ["a", "b", "a", "c"])  # photo 2 duplicates photo 0
    store.put(["a", "b"], vectors_of(["a", "b"]))  # "c" has no vector yet
    photo_ids, matrix = store.photo_matrix()
    assert photo_ids.dtype == np.int64 and matrix.dtype == np.float32
    assert photo_ids.tolist() == [ids[0], ids[1], ids[2]]
    np.testing.assert_array_equal(matrix, vectors_of(["a", "b", "a"]))
    # A moved file is a new path with the same content: its vector is there already.
    folder = catalog.folders()[0]
    moved = catalog.upsert_photos(folder.id, [PhotoEntry(str(tmp_path / "photos" / "moved.jpg"), 1, 1, "b")])
    assert store.missing(["b"]) == []
    photo_ids, matrix = store.photo_matrix()
    assert moved[0] in photo_ids.tolist()
    np.testing.assert_array_equal(matrix[photo_ids.tolist().index(moved[0])], vector_of("b"))


def test_empty_photo_matrix(store):
    photo_ids, matrix = store.photo_matrix()
    assert photo_ids.shape == (0,) and matrix.shape == (0, DIM)


def test_two_models_never_mix(catalog, tmp_path):
    root = tmp_path / "vectors"
    first = VectorStore(catalog, root, IDENTITY, DIM)
    second = VectorStore(catalog, root, {**IDENTITY, "adapter": "sha256:feed"}, 16)
    add_photos(catalog, tmp_path / "p", ["a", "b"])
    first.put(["a", "b"], vectors_of(["a", "b"]))
    second.put(["a"], vectors_of(["a"], 16) * -1)
    assert first.path() != second.path()
    assert (len(first), len(second)) == (2, 1)
    assert second.photo_matrix()[1].shape == (1, 16)
    np.testing.assert_array_equal(first.get(["a"]), vectors_of(["a"]))
    np.testing.assert_array_equal(second.get(["a"]), -vectors_of(["a"], 16))
    with pytest.raises(LibraryError, match="dimensional"):
        VectorStore(catalog, root, IDENTITY, 16)
    counts = catalog.folder_counts(second.model_id)
    assert [c.with_vectors for c in counts.values()] == [1]


def test_vectors_survive_reopening(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        VectorStore(cat, tmp_path / "v", IDENTITY, DIM).put(["a", "b"], vectors_of(["a", "b"]))
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        store = VectorStore(cat, tmp_path / "v", IDENTITY, DIM)
        np.testing.assert_array_equal(store.get(["b", "a"]), vectors_of(["b", "a"]))


def test_an_uncommitted_tail_is_cut_off_on_open(catalog, store, tmp_path):
    store.put(["a", "b"], vectors_of(["a", "b"]))
    with open(store.path(), "ab") as f:
        f.write(vectors_of(["ghost"]).tobytes() + b"\x01\x02\x03")  # a write that never committed
    reopened = VectorStore(catalog, tmp_path / "vectors", IDENTITY, DIM)
    assert reopened.path().stat().st_size == HEADER_BYTES + 2 * DIM * 4
    reopened.put(["c"], vectors_of(["c"]))
    np.testing.assert_array_equal(reopened.get(["a", "b", "c"]), vectors_of(["a", "b", "c"]))


def test_a_rolled_back_write_is_overwritten_by_the_next(catalog, store):
    store.put(["a"], vectors_of(["a"]))
    with pytest.raises(RuntimeError), catalog.transaction():
        store.put(["b"], vectors_of(["b"]))
        raise RuntimeError("the indexer's batch failed")
    assert store.missing(["b"]) == ["b"]
    store.put(["c"], vectors_of(["c"]))
    np.testing.assert_array_equal(store.get(["a", "c"]), vectors_of(["a", "c"]))
    assert store.path().stat().st_size == HEADER_BYTES + 2 * DIM * 4


def test_a_lost_or_damaged_file_is_rebuilt_not_trusted(catalog, store, tmp_path):
    store.put(["a", "b", "c"], vectors_of(["a", "b", "c"]))
    path = store.path()
    with open(path, "r+b") as f:  # lost its last row and a half (a copy cut short)
        f.truncate(HEADER_BYTES + DIM * 4 + 5)
    shortened = VectorStore(catalog, tmp_path / "vectors", IDENTITY, DIM)
    assert len(shortened) == 1 and shortened.missing(["a", "b", "c"]) == ["b", "c"]
    np.testing.assert_array_equal(shortened.get(["a"]), vectors_of(["a"]))
    path.write_bytes(b"garbage")
    rebuilt = VectorStore(catalog, tmp_path / "vectors", IDENTITY, DIM)
    assert len(rebuilt) == 0 and rebuilt.missing(["a"]) == ["a"]


def test_compaction_drops_unused_vectors_and_keeps_the_rest(catalog, store, tmp_path):
    hashes = [f"h{i}" for i in range(10)]
    ids = add_photos(catalog, tmp_path / "p", hashes)
    store.put(hashes, vectors_of(hashes))
    before_path = store.path()
    assert store.compact() is False  # nothing dead
    catalog.remove_photos(ids[:2])
    assert store.dead_count() == 2 and store.live_count() == 8
    assert store.compact(min_dead_fraction=0.5) is False  # 20% dead: below the threshold
    assert store.compact(min_dead_fraction=0.2) is True
    assert len(store) == 8 and store.dead_count() == 0
    assert store.path() != before_path and not before_path.exists()
    assert store.path().stat().st_size == HEADER_BYTES + 8 * DIM * 4
    np.testing.assert_array_equal(store.get(hashes[2:]), vectors_of(hashes[2:]))
    photo_ids, matrix = store.photo_matrix()
    assert photo_ids.tolist() == ids[2:]
    np.testing.assert_array_equal(matrix, vectors_of(hashes[2:]))
    store.put(["new"], vectors_of(["new"]))
    np.testing.assert_array_equal(store.get(["new", "h9"]), vectors_of(["new", "h9"]))


def test_leftover_files_of_an_interrupted_compaction_are_removed(catalog, store, tmp_path):
    store.put(["a"], vectors_of(["a"]))
    stray = store.path(generation=1)  # written, but the catalog never switched to it
    stray.write_bytes(b"partial")
    other_model = tmp_path / "vectors" / f"{store.key}.g1x.f32"  # not a generation file of this model
    other_model.write_bytes(b"keep")
    reopened = VectorStore(catalog, tmp_path / "vectors", IDENTITY, DIM)
    assert not stray.exists() and other_model.exists()
    np.testing.assert_array_equal(reopened.get(["a"]), vectors_of(["a"]))


def test_drop_removes_rows_and_files(catalog, store, tmp_path):
    store.put(["a"], vectors_of(["a"]))
    path = store.path()
    store.drop()
    assert not path.exists()
    assert catalog.models() == []


def test_reads_while_another_thread_writes(catalog, store, tmp_path):
    add_photos(catalog, tmp_path / "p", [f"h{i}" for i in range(200)])
    stop = threading.Event()
    problems = []

    def read():
        while not stop.is_set():
            photo_ids, matrix = store.photo_matrix()
            if matrix.shape[0] != photo_ids.shape[0]:
                problems.append("shape")
            for row in range(0, matrix.shape[0], 37):
                if not np.allclose(np.linalg.norm(matrix[row]), 1.0, atol=1e-5):
                    problems.append("bad vector")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for start in range(0, 200, 20):
            batch = [f"h{i}" for i in range(start, start + 20)]
            store.put(batch, vectors_of(batch))
    finally:
        stop.set()
        reader.join()
    assert problems == []
    assert store.photo_matrix()[1].shape == (200, DIM)


_KILLED_BETWEEN_APPEND_AND_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from core.catalog import Catalog
    from core.vectors import VectorStore

    cat = Catalog(sys.argv[1])
    store = VectorStore(cat, sys.argv[2], {"arch": "tiny", "weights": "w"}, 4)
    store.put(["kept-1", "kept-2"], np.eye(4, dtype=np.float32)[:2])

    def die(self, conn, hashes, first_row):
        os.kill(os.getpid(), signal.SIGKILL)  # the rows are in the file, fsynced, not committed

    VectorStore._commit_rows = die
    store.put(["lost-1", "lost-2", "lost-3"], np.full((3, 4), 7.0, np.float32))
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_between_append_and_commit_loses_nothing_committed(tmp_path):
    db, vectors = tmp_path / "catalog.sqlite", tmp_path / "vectors"
    script = [sys.executable, "-c", _KILLED_BETWEEN_APPEND_AND_COMMIT, str(db), str(vectors), str(REPO)]
    result = subprocess.run(script, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    (path,) = vectors.iterdir()
    assert path.stat().st_size == HEADER_BYTES + 5 * 4 * 4  # the uncommitted rows did reach the file
    with Catalog(db) as cat:
        store = VectorStore(cat, vectors, {"arch": "tiny", "weights": "w"}, 4)
        assert len(store) == 2
        assert path.stat().st_size == HEADER_BYTES + 2 * 4 * 4
        np.testing.assert_array_equal(store.get(["kept-1", "kept-2"]), np.eye(4, dtype=np.float32)[:2])
        assert store.missing(["lost-1", "lost-2", "lost-3"]) == ["lost-1", "lost-2", "lost-3"]
        store.put(["after"], np.full((1, 4), 2.0, np.float32))
        np.testing.assert_array_equal(store.get(["after", "kept-2"])[:, 1], [2.0, 1.0])


_WRITER_LOOP = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from core.catalog import Catalog
    from core.vectors import VectorStore

    store = VectorStore(Catalog(sys.argv[1]), sys.argv[2], {"arch": "tiny", "weights": "w"}, 64)
    batch = 0
    while True:
        hashes = [f"{batch}-{i}" for i in range(50)]
        values = np.array([[batch * 1000 + i] * 64 for i in range(50)], dtype=np.float32)
        store.put(hashes, values)
        if batch == 3:
            print("ready", flush=True)
        batch += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_at_a_random_moment_keeps_every_committed_vector_exact(tmp_path):
    db, vectors = tmp_path / "catalog.sqlite", tmp_path / "vectors"
    for attempt in range(2):
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER_LOOP, str(db), str(vectors), str(REPO)], stdout=subprocess.PIPE
        )
        assert process.stdout.readline().strip() == b"ready"
        threading.Event().wait(0.05 * (attempt + 1))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        with Catalog(db) as cat:
            store = VectorStore(cat, vectors, {"arch": "tiny", "weights": "w"}, 64)
            rows = cat.connection().execute("SELECT content_hash FROM embeddings").fetchall()
            hashes = [row[0] for row in rows]
            assert len(hashes) == len(store) >= 200
            values = store.get(hashes)
            expected = [int(h.split("-")[0]) * 1000 + int(h.split("-")[1]) for h in hashes]
            np.testing.assert_array_equal(values[:, 0], expected)
            np.testing.assert_array_equal(values[:, -1], expected)


def test_a_model_identity_object_keys_its_file(catalog, tmp_path):
    from core.models import ModelIdentity

    identity = ModelIdentity("ladderlens-test-tiny", "sha256:0123456789abcdef", "sha256:feedfeedfeedfeed")
    store = VectorStore(catalog, tmp_path / "vectors", identity, DIM)
    assert store.key == identity.key
    assert store.path().name.startswith(identity.key)
    record = catalog.model(store.model_id)
    assert (record.arch, record.weights, record.adapter) == (
        identity.arch,
        identity.weights,
        identity.adapter,
    )
    assert VectorStore(
        catalog, tmp_path / "vectors", identity.to_dict() | {"key": identity.key}, DIM
    ).model_id == (store.model_id)
