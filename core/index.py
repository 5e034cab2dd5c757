"""The nearest-neighbour index over one model's photo vectors (inner product on unit vectors).

:class:`VectorIndex` is the only place that talks to hnswlib. Labels are catalog photo ids.

Two regimes, chosen by the number of live vectors:

* at or below ``exact_threshold`` the vectors live in a float32 matrix and a query is an exact
  matrix product (fast enough for small libraries, always exact, cheap to update);
* above it an hnswlib graph (``space='ip'``) is built from that matrix and the matrix is
  dropped, so a million photos cost one copy of their vectors, not two. The graph goes back to
  an exact matrix only when a rebuild finds the library below half the threshold, so a library
  hovering around the threshold does not flip back and forth.

Building a graph takes a while (about a minute for 50,000 photos on two cores, half an hour for
a million), so it never happens under the lock: the thread whose ``add`` or ``remove`` calls for
it builds from a snapshot while searches go on against the current structure; changes made
meanwhile are logged and replayed onto the new graph before it is swapped in.

hnswlib's sharp edges are handled here: ``k`` is clamped to the live count, ``set_ef(max(ef,
k))`` runs before every query (ef is not saved with the graph), capacity grows with
``resize_index`` before adding, removals only mark (new photos then reuse the removed slots;
the graph is rebuilt once more than ``rebuild_fraction`` of its slots are dead), and one lock
serialises every operation on it because adding and querying at once is not safe in hnswlib.

On disk an index is a small JSON header at ``path`` that names a payload file beside it
(``<name>.<token>.data``: the hnswlib graph, or ids + matrix in the exact regime) and records
the dimension, the live count, a checksum of the live id set and the payload's size and
SHA-256. Saving writes a new payload under a fresh name, then replaces the header atomically,
then removes the old payload: a crash at any point leaves the previous index loadable.
:meth:`VectorIndex.load` checks all of it and raises :class:`~core.errors.IndexCorruptError`
on any mismatch, so the caller can rebuild from the stored vectors.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np

from core.blas import single_threaded
from core.errors import IndexCorruptError

logger = logging.getLogger(__name__)

# Measured with benchmarks/bench_query.py (512-d clustered unit vectors, one BLAS thread): the
# exact product costs about 1 ms of CPU at 10k vectors, 4 ms at 25k, 9 ms at 50k and 19 ms at
# 100k, always with perfect recall; a graph answers in under a millisecond but takes a minute of
# two cores to build at 50k. Below this size the build buys nothing the user can feel.
DEFAULT_EXACT_THRESHOLD = 50_000
# The graph's query beam, when not fixed by the caller, grows with the library: ef = live / 1000,
# at least 128. Measured with benchmarks/bench_query.py (M=16, ef_construction=200, text-like
# queries, which sit apart from the image vectors and are the hard case for a graph): recall@10
# against exact search needs ef ~128 at 100k vectors (0.99) but ~1000 at 1M (0.988; 1536 gave
# 0.98-0.995 over two query sets for 30% more time, ef=512 0.87-0.94). A fixed 1000 would cost
# 10x the time at 100k for nothing.
EF_SEARCH_MIN = 128
EF_SEARCH_PER_VECTORS = 1000
EF_SEARCH_MAX = 4096

FORMAT_NAME = "ladderlens-vector-index"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_HASH_CHUNK = 8 * 1024 * 1024
_BUILD_CHUNK = 20_000

Mode = Literal["exact", "hnsw"]
Progress = Callable[[int, int], None]


def id_set_checksum(ids: Iterable[int] | np.ndarray) -> str:
    """A checksum of a set of photo ids that does not depend on their order.

    The catalog side can compute it from its own id list and compare it with the one in an
    index header without loading the index.
    """
    return hashlib.sha256(np.unique(_as_ids(ids)).astype("<i8").tobytes()).hexdigest()


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {arr.dtype}")
    return arr.astype(np.int64).reshape(-1)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    # Directory fsync makes the rename durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k largest scores of each row, best first."""
    if k < scores.shape[1]:
        cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, cols, axis=1)
    else:
        cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        top = scores
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(top, order, axis=1)


@dataclass(frozen=True)
class _GraphParams:
    dim: int
    M: int
    ef_construction: int
    seed: int
    num_threads: int


class _Matrix:
    """The exact regime: rows ``[0, n)`` of ``ids``/``vecs`` are live; ``row`` maps id to row."""

    mode: Mode = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids = np.empty(0, dtype=np.int64)
        self.vecs = np.empty((0, dim), dtype=np.float32)
        self.n = 0
        self.row: dict[int, int] = {}

    def __len__(self) -> int:
        return self.n

    @classmethod
    def read(cls, path: Path, payload: Path, size: int, count: int, dim: int) -> _Matrix:
        """The ``count`` vectors in the data file ``payload`` (``size`` bytes) of the index ``path``."""
        if size != count * (8 + 4 * dim):
            raise IndexCorruptError(f"The search index data file {payload} has the wrong size.")
        raw = np.fromfile(payload, dtype=np.uint8)
        ids = raw[: 8 * count].view("<i8").astype(np.int64)
        vecs = raw[8 * count :].view("<f4").reshape(count, dim).astype(np.float32)
        if np.unique(ids).size != count or (count and ids.min() < 0):
            raise IndexCorruptError(f"The search index {path} has repeated or negative ids.")
        matrix = cls(dim)
        matrix.ids, matrix.vecs, matrix.n = ids, vecs, count
        matrix.row = {pid: i for i, pid in enumerate(ids.tolist())}
        return matrix

    def __contains__(self, pid: int) -> bool:
        return pid in self.row

    def live_ids(self) -> np.ndarray:
        return self.ids[: self.n]

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        rows = np.fromiter((self.row.get(i, -1) for i in ids.tolist()), dtype=np.int64, count=ids.size)
        known = rows >= 0
        if known.any():
            self.vecs[rows[known]] = vecs[known]
        new_ids, new_vecs = ids[~known], vecs[~known]
        if new_ids.size == 0:
            return
        need = self.n + new_ids.size
        if need > self.ids.size:
            cap = max(need, 2 * self.ids.size, 64)
            grown_ids = np.empty(cap, np.int64)
            grown_vecs = np.empty((cap, self.dim), np.float32)
            grown_ids[: self.n] = self.ids[: self.n]
            grown_vecs[: self.n] = self.vecs[: self.n]
            self.ids, self.vecs = grown_ids, grown_vecs
        self.ids[self.n : need] = new_ids
        self.vecs[self.n : need] = new_vecs
        for offset, pid in enumerate(new_ids.tolist()):
            self.row[pid] = self.n + offset
        self.n = need

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        for pid in ids.tolist():
            row = self.row.pop(pid, None)
            if row is None:
                continue
            last = self.n - 1
            if row != last:  # move the last row into the hole
                moved = int(self.ids[last])
                self.ids[row] = moved
                self.vecs[row] = self.vecs[last]
                self.row[moved] = row
            self.n -= 1
            removed += 1
        return removed

    def get(self, ids: list[int]) -> np.ndarray:
        try:
            rows = [self.row[i] for i in ids]
        except KeyError as exc:
            raise KeyError(f"photo id {exc.args[0]} is not in the index") from None
        return self.vecs[rows].copy()

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[: self.n].copy(), self.vecs[: self.n].copy()

    def search(self, q: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        cols, top = _top_k(q @ self.vecs[: self.n].T, k)
        return self.ids[cols], top.astype(np.float32)

    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        return self.vecs[rng.choice(self.n, size=m, replace=False)].copy()


class _Graph:
    """The graph regime: an hnswlib index whose labels are photo ids, plus the set of live ids."""

    mode: Mode = "hnsw"

    def __init__(self, index: hnswlib.Index, live: set[int], params: _GraphParams) -> None:
        self.index = index
        self.live = live
        self.params = params
        self._live_array: np.ndarray | None = None

    @classmethod
    def build(
        cls, ids: np.ndarray, vecs: np.ndarray, params: _GraphParams, on_progress: Progress | None
    ) -> _Graph:
        index = hnswlib.Index(space="ip", dim=params.dim)
        index.init_index(
            max_elements=max(int(ids.size * 1.25) + 16, 64),
            M=params.M,
            ef_construction=params.ef_construction,
            random_seed=params.seed,
            allow_replace_deleted=True,
        )
        for start in range(0, ids.size, _BUILD_CHUNK):
            stop = min(start + _BUILD_CHUNK, ids.size)
            index.add_items(
                np.ascontiguousarray(vecs[start:stop], dtype=np.float32),
                ids[start:stop],
                num_threads=params.num_threads,
            )
            if on_progress is not None:
                on_progress(stop, int(ids.size))
        return cls(index, set(ids.tolist()), params)

    def __len__(self) -> int:
        return len(self.live)

    @classmethod
    def read(cls, path: Path, payload: Path, deleted: Iterable[int], params: _GraphParams) -> _Graph:
        """The graph in the data file ``payload`` of the index ``path``, less the ``deleted`` ids."""
        graph = hnswlib.Index(space="ip", dim=params.dim)
        try:
            graph.load_index(str(payload), allow_replace_deleted=True)
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise IndexCorruptError(f"The search index graph {payload} cannot be read: {exc}.") from exc
        labels = set(np.asarray(graph.get_ids_list(), dtype=np.int64).tolist())
        dead = {int(x) for x in deleted}
        if not dead <= labels:
            raise IndexCorruptError(f"The search index {path} lists removed ids the graph does not hold.")
        return cls(graph, labels - dead, params)

    def __contains__(self, pid: int) -> bool:
        return pid in self.live

    @property
    def dead(self) -> int:
        """Slots of removed photos (new photos reuse them)."""
        return self.index.get_current_count() - len(self.live)

    def live_ids(self) -> np.ndarray:
        if self._live_array is None:
            self._live_array = np.fromiter(self.live, dtype=np.int64, count=len(self.live))
        return self._live_array

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        # hnswlib's replace_deleted would re-label a dead slot even for an id it already holds,
        # leaving a stale copy of that id in the graph: so ids it holds (live, or removed but
        # still present) are updated in place, and only the truly new ones fill dead slots.
        present = np.fromiter((i in self.live for i in ids.tolist()), dtype=bool, count=ids.size)
        revived = 0
        for j in np.flatnonzero(~present).tolist():
            try:
                self.index.unmark_deleted(int(ids[j]))
            except RuntimeError:  # "Label not found": a new id (or its old slot was reused)
                continue
            present[j] = True
            revived += 1
        if present.any():
            self.index.add_items(vecs[present], ids[present], num_threads=self.params.num_threads)
        fresh = ~present
        if fresh.any():
            slots = self.index.get_current_count()
            vacancies = slots - (len(self.live) + revived)
            need = slots + max(0, int(fresh.sum()) - vacancies)
            cap = self.index.get_max_elements()
            if need > cap:
                self.index.resize_index(max(need, int(cap * 1.5)))
            self.index.add_items(
                vecs[fresh], ids[fresh], num_threads=self.params.num_threads, replace_deleted=True
            )
        self.live.update(ids.tolist())
        self._live_array = None

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        for pid in ids.tolist():
            if pid in self.live:
                self.index.mark_deleted(pid)
                self.live.discard(pid)
                removed += 1
        if removed:
            self._live_array = None
        return removed

    def get(self, ids: list[int]) -> np.ndarray:
        missing = [i for i in ids if i not in self.live]
        if missing:
            raise KeyError(f"photo id {missing[0]} is not in the index")
        return np.asarray(self.index.get_items(ids), dtype=np.float32).reshape(-1, self.params.dim)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.sort(self.live_ids())
        if ids.size == 0:
            return ids, np.empty((0, self.params.dim), np.float32)
        return ids, self.get(ids.tolist())

    def search(self, q: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        ef = max(ef, k)
        slots = self.index.get_current_count()
        while True:
            self.index.set_ef(ef)
            try:
                labels, dists = self.index.knn_query(q, k=k, num_threads=self.params.num_threads)
                return labels.astype(np.int64), (1.0 - dists).astype(np.float32)
            except RuntimeError:
                # Removed nodes can leave too few reachable results for a small beam: widen it.
                if ef >= slots:
                    logger.warning("graph search found fewer than %d results; searching exactly", k)
                    live = self.live_ids()
                    cols, top = _top_k(q @ self.get(live.tolist()).T, k)
                    return live[cols], top.astype(np.float32)
                ef = min(ef * 4, slots)

    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        return self.get(rng.choice(self.live_ids(), size=m, replace=False).tolist())

    def deleted_labels(self) -> list[int]:
        labels = np.asarray(self.index.get_ids_list(), dtype=np.int64)
        return sorted(set(labels.tolist()) - self.live)


_Store = _Matrix | _Graph


class VectorIndex:
    """Nearest-neighbour search over unit vectors labelled with photo ids.

    Args:
        dim: Vector dimension.
        exact_threshold: Live-count above which an hnswlib graph replaces the exact matrix.
        M: hnswlib graph degree.
        ef_construction: hnswlib build-time beam width.
        ef_search: hnswlib query-time beam width (raised to ``k`` when ``k`` is larger); None
            scales it with the library (see :meth:`effective_ef`).
        rebuild_fraction: Rebuild the graph once more than this fraction of its slots are removed.
        num_threads: Threads hnswlib may use (-1: all cores).
        seed: hnswlib's random seed (level assignment), for reproducible graphs.

    All methods are thread-safe.
    """

    def __init__(
        self,
        dim: int,
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int | None = None,
        *,
        rebuild_fraction: float = 0.25,
        num_threads: int = -1,
        seed: int = 100,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if exact_threshold < 0:
            raise ValueError(f"exact_threshold must be >= 0, got {exact_threshold}")
        if M < 2 or ef_construction < 1 or (ef_search is not None and ef_search < 1):
            raise ValueError("M must be >= 2 and ef_construction, ef_search >= 1")
        if not 0.0 < rebuild_fraction < 1.0:
            raise ValueError(f"rebuild_fraction must be in (0, 1), got {rebuild_fraction}")
        self._dim = int(dim)
        self.exact_threshold = int(exact_threshold)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self._ef_search = None if ef_search is None else int(ef_search)
        self.rebuild_fraction = float(rebuild_fraction)
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._store: _Store = _Matrix(self._dim)
        # While a new structure is built outside the lock: the changes made since its snapshot.
        self._pending: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def mode(self) -> Mode:
        """``"exact"`` (matrix product) or ``"hnsw"`` (graph)."""
        return self._store.mode

    @property
    def ef_search(self) -> int | None:
        """The fixed query beam width, or None when it scales with the library."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"ef_search must be >= 1, got {value}")
        self._ef_search = None if value is None else int(value)

    def effective_ef(self) -> int:
        """The beam width a query uses now (before raising it to ``k``)."""
        if self._ef_search is not None:
            return self._ef_search
        scaled = -(-len(self._store) // EF_SEARCH_PER_VECTORS)
        return int(min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, scaled)))

    @property
    def building(self) -> bool:
        """True while a graph (re)build runs in some thread; searches keep working meanwhile."""
        return self._pending is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def __contains__(self, photo_id: object) -> bool:
        if not isinstance(photo_id, (int, np.integer)):
            return False
        with self._lock:
            return int(photo_id) in self._store

    def stats(self) -> dict[str, int | str]:
        """Mode, live vectors, slots in use (live + removed but not reused) and capacity."""
        with self._lock:
            store = self._store
            if isinstance(store, _Graph):
                slots, capacity = store.index.get_current_count(), store.index.get_max_elements()
            else:
                slots, capacity = store.n, store.ids.size
            return {"mode": store.mode, "live": len(store), "slots": slots, "capacity": capacity}

    def ids(self) -> np.ndarray:
        """The live photo ids, sorted (int64)."""
        with self._lock:
            return np.sort(self._store.live_ids())

    def checksum(self) -> str:
        """:func:`id_set_checksum` of the live ids."""
        with self._lock:
            return id_set_checksum(self._store.live_ids())

    # ------------------------------------------------------------------ updates

    def add(
        self, ids: Iterable[int] | np.ndarray, vecs: np.ndarray, on_progress: Progress | None = None
    ) -> None:
        """Add vectors, replacing the vector of any id already present.

        When this add takes the library past ``exact_threshold``, the graph is built in the
        calling thread before returning (searches from other threads go on meanwhile).

        Args:
            ids: Non-negative photo ids, one per row of ``vecs``. If an id repeats, its last row wins.
            vecs: ``(N, dim)`` float vectors (expected L2-normalised; inner product is the score).
            on_progress: Called as ``on_progress(done, total)`` while a graph is being built.
        """
        ids_arr, vec_arr = self._check_batch(ids, vecs)
        if ids_arr.size == 0:
            return
        with self._lock:
            if self._pending is None and len(self._store) == 0 and ids_arr.size > self.exact_threshold:
                plan = (ids_arr, vec_arr)  # bulk load of a large library: straight into a graph
                self._pending = []
            else:
                self._store.add(ids_arr, vec_arr)
                if self._pending is not None:
                    self._pending.append(("add", ids_arr, vec_arr))
                plan = self._plan_graph() if self._needs_graph() else None
        if plan is not None:
            self._build_and_swap(*plan, on_progress)

    def remove(self, ids: Iterable[int] | np.ndarray, on_progress: Progress | None = None) -> int:
        """Remove ids (unknown ids are ignored). Returns how many were removed.

        When removals leave too many dead slots in the graph, it is rebuilt in the calling
        thread before returning (searches from other threads go on meanwhile).
        """
        ids_arr = np.unique(_as_ids(ids))
        with self._lock:
            removed = self._store.remove(ids_arr)
            if removed and self._pending is not None:
                self._pending.append(("remove", ids_arr, None))
            plan = None
            store = self._store
            if (
                isinstance(store, _Graph)
                and self._pending is None
                and store.dead > self.rebuild_fraction * store.index.get_current_count()
            ):
                plan = self._plan_graph()
        if plan is not None:
            self._build_and_swap(*plan, on_progress)
        return removed

    # ------------------------------------------------------------------ queries

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ids for each query, by inner product, best first.

        Args:
            queries: ``(dim,)`` or ``(Q, dim)`` query vectors.
            k: Wanted results per query; clamped to the live count.

        Returns:
            ``(ids, scores)``: int64 and float32 arrays of shape ``(Q, k')`` with
            ``k' = min(k, len(self))``; a 1-D query gives ``Q = 1``.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must be (dim,) or (Q, dim) with dim={self._dim}, got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        q = np.ascontiguousarray(q)
        with self._lock:
            kk = min(int(k), len(self._store))
            if kk == 0 or q.shape[0] == 0:
                return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
            # A few interactive queries: one BLAS thread (see core.blas); large batches: all cores.
            with single_threaded() if q.shape[0] <= 4 else contextlib.nullcontext():
                return self._store.search(q, kk, self.effective_ef())

    def get_vectors(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` as ``(N, dim)`` float32. Raises KeyError for an unknown id."""
        ids_list = _as_ids(ids).tolist()
        with self._lock:
            if not ids_list:
                return np.empty((0, self._dim), np.float32)
            return self._store.get(ids_list)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` distinct stored vectors drawn at random (``(min(n, len), dim)`` float32)."""
        with self._lock:
            m = min(int(n), len(self._store))
            if m <= 0:
                return np.empty((0, self._dim), np.float32)
            return self._store.sample(m, np.random.default_rng(seed))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically: the previous file stays intact until the new one is complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Only the copy of the structure to disk holds the search lock; hashing and the
        # header happen outside it. Saves to the same index are serialised among themselves.
        with self._save_lock:
            token = uuid.uuid4().hex[:16]
            payload = path.with_name(f"{path.name}.{token}.data")
            header_tmp = path.with_name(f"{path.name}.{token}.tmp")
            try:
                with self._lock:
                    store = self._store
                    if isinstance(store, _Matrix):
                        with open(payload, "wb") as f:
                            f.write(store.ids[: store.n].astype("<i8").tobytes())
                            f.write(np.ascontiguousarray(store.vecs[: store.n], dtype="<f4").tobytes())
                        deleted: list[int] = []
                    else:
                        store.index.save_index(str(payload))
                        deleted = store.deleted_labels()
                    live = store.live_ids().copy()
                    mode = store.mode
                with open(payload, "rb+") as f:
                    os.fsync(f.fileno())
                header = {
                    "format": FORMAT_NAME,
                    "version": FORMAT_VERSION,
                    "mode": mode,
                    "space": "ip",
                    "dim": self._dim,
                    "count": int(live.size),
                    "ids_sha256": id_set_checksum(live),
                    "payload": payload.name,
                    "payload_bytes": payload.stat().st_size,
                    "payload_sha256": _file_sha256(payload),
                    "M": self.M,
                    "ef_construction": self.ef_construction,
                    "deleted": deleted,
                }
                with open(header_tmp, "w", encoding="utf-8") as f:
                    json.dump(header, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(header_tmp, path)
                _fsync_dir(path.parent)
            except BaseException:
                for leftover in (header_tmp, payload):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
                raise
            # The header now names the new payload: earlier payloads (and leftovers of saves
            # that crashed) are garbage.
            for stale in path.parent.glob(f"{glob.escape(path.name)}.*"):
                if stale != payload and stale.suffix in (".data", ".tmp"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
        logger.debug("saved %s index of %d vectors to %s", mode, header["count"], path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        dim: int,
        expected_ids: Iterable[int] | np.ndarray | None = None,
        *,
        expected_count: int | None = None,
        **options,
    ) -> VectorIndex:
        """Load and validate an index written by :meth:`save`.

        Args:
            path: The header file given to :meth:`save`.
            dim: The dimension the current model produces.
            expected_ids: The photo ids the catalog holds vectors for; the index must hold exactly these.
            expected_count: Alternatively, just the number of vectors expected.
            **options: Constructor options (``exact_threshold``, ``ef_search``...).

        Raises:
            IndexCorruptError: The file is missing, truncated, damaged, of another dimension or
                does not match the catalog. The index should be rebuilt from the stored vectors.
        """
        path = Path(path)
        header = cls._read_header(path)
        payload, size = cls._check_payload(path, header, dim)
        options.setdefault("M", header["M"])
        options.setdefault("ef_construction", header["ef_construction"])
        index = cls(dim, **options)
        count = header["count"]
        if header["mode"] == "exact":
            index._store = _Matrix.read(path, payload, size, count, dim)
        else:
            graph = _Graph.read(path, payload, header["deleted"], index._graph_params())
            index._store = graph
            graph.index.set_ef(index.effective_ef())
        cls._check_ids(path, header, index._store.live_ids(), expected_ids, expected_count)
        logger.debug("loaded %s index of %d vectors from %s", index.mode, count, path)
        return index

    @staticmethod
    def _check_payload(path: Path, header: dict, dim: int) -> tuple[Path, int]:
        """The data file a header names, and its size, once its dimension, size and checksum hold."""
        if header["dim"] != dim:
            raise IndexCorruptError(
                f"The search index {path} holds {header['dim']}-d vectors but the model makes {dim}-d ones; "
                "it will be rebuilt."
            )
        payload = path.with_name(header["payload"])
        try:
            size = payload.stat().st_size
        except OSError as exc:
            raise IndexCorruptError(
                f"The search index data file {payload} is missing ({exc.strerror})."
            ) from exc
        if size != header["payload_bytes"]:
            raise IndexCorruptError(
                f"The search index data file {payload} is {size} bytes, {header['payload_bytes']} expected "
                "(truncated by a crash or a full disk?)."
            )
        if _file_sha256(payload) != header["payload_sha256"]:
            raise IndexCorruptError(f"The search index data file {payload} is damaged (checksum mismatch).")
        return payload, size

    @staticmethod
    def _check_ids(
        path: Path,
        header: dict,
        live: np.ndarray,
        expected_ids: Iterable[int] | np.ndarray | None,
        expected_count: int | None,
    ) -> None:
        """That a loaded index holds the photos its header and the catalog say it does."""
        count = header["count"]
        if live.size != count or id_set_checksum(live) != header["ids_sha256"]:
            raise IndexCorruptError(f"The search index {path} does not match its own header.")
        if expected_count is not None and count != expected_count:
            raise IndexCorruptError(
                f"The search index {path} holds {count} photos but the catalog has {expected_count}; "
                "it will be rebuilt."
            )
        if expected_ids is not None and id_set_checksum(expected_ids) != header["ids_sha256"]:
            raise IndexCorruptError(
                f"The search index {path} does not hold the same photos as the catalog; it will be rebuilt."
            )

    # ------------------------------------------------------------------ internals

    def _graph_params(self) -> _GraphParams:
        return _GraphParams(self._dim, self.M, self.ef_construction, self.seed, self.num_threads)

    def _needs_graph(self) -> bool:
        return (
            self._pending is None
            and isinstance(self._store, _Matrix)
            and len(self._store) > self.exact_threshold
        )

    def _plan_graph(self) -> tuple[np.ndarray, np.ndarray]:
        """Under the lock: snapshot the live vectors and start logging changes."""
        ids, vecs = self._store.snapshot()
        self._pending = []
        return ids, vecs

    def _build_and_swap(self, ids: np.ndarray, vecs: np.ndarray, on_progress: Progress | None) -> None:
        """Outside the lock: build the new structure, then replay the logged changes and swap it in."""
        try:
            if ids.size > self.exact_threshold // 2:
                logger.info("building the search graph over %d vectors", ids.size)
                new: _Store = _Graph.build(ids, vecs, self._graph_params(), on_progress)
            else:
                new = _Matrix(self._dim)
                new.add(ids, vecs)
        except BaseException:
            with self._lock:
                self._pending = None
            raise
        with self._lock:
            for op, op_ids, op_vecs in self._pending or []:
                if op == "add":
                    assert op_vecs is not None
                    new.add(op_ids, op_vecs)
                else:
                    new.remove(op_ids)
            self._pending = None
            self._store = new
            logger.info("search index now %s over %d vectors", new.mode, len(new))

    def _check_batch(self, ids, vecs) -> tuple[np.ndarray, np.ndarray]:
        ids_arr = _as_ids(ids)
        vec_arr = np.asarray(vecs, dtype=np.float32)
        if vec_arr.ndim == 1 and ids_arr.size == 1:
            vec_arr = vec_arr[None, :]
        if vec_arr.ndim != 2 or vec_arr.shape != (ids_arr.size, self._dim):
            raise ValueError(f"vecs must have shape ({ids_arr.size}, {self._dim}), got {vec_arr.shape}")
        if ids_arr.size and ids_arr.min() < 0:
            raise ValueError("photo ids must be >= 0")
        if not np.isfinite(vec_arr).all():
            raise ValueError("vectors must be finite")
        # Keep the last occurrence of a repeated id.
        _, last_rev = np.unique(ids_arr[::-1], return_index=True)
        if last_rev.size != ids_arr.size:
            keep = np.sort(ids_arr.size - 1 - last_rev)
            ids_arr, vec_arr = ids_arr[keep], vec_arr[keep]
        return ids_arr, np.ascontiguousarray(vec_arr)

    @staticmethod
    def _read_header(path: Path) -> dict:
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_HEADER_BYTES + 1)
        except OSError as exc:
            raise IndexCorruptError(f"The search index {path} cannot be read ({exc.strerror}).") from exc
        if len(raw) > _MAX_HEADER_BYTES:
            raise IndexCorruptError(f"{path} is not a search index header (too large).")
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexCorruptError(f"{path} is not a readable search index (truncated or damaged).") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise IndexCorruptError(f"{path} is not a LadderLens search index.")
        if header.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(f"The search index {path} is of format version {header.get('version')}.")
        fields = {
            "mode": str,
            "dim": int,
            "count": int,
            "ids_sha256": str,
            "payload": str,
            "payload_bytes": int,
            "payload_sha256": str,
            "M": int,
            "ef_construction": int,
            "deleted": list,
        }
        for name, kind in fields.items():
            if not isinstance(header.get(name), kind):
                raise IndexCorruptError(f"The search index {path} has a damaged header (field {name!r}).")
        if header["mode"] not in ("exact", "hnsw") or header["count"] < 0 or header["dim"] <= 0:
            raise IndexCorruptError(f"The search index {path} has a damaged header.")
        if Path(header["payload"]).name != header["payload"] or not header["payload"].startswith(path.name):
            raise IndexCorruptError(f"The search index {path} names an unexpected data file.")
        return header
