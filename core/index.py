"""The nearest-neighbour index over one model's photo vectors (inner product on unit vectors).

:class:`VectorIndex` is the only place that talks to hnswlib. Labels are catalog photo ids.

Two regimes, chosen by the number of live vectors:

* at or below ``exact_threshold`` the vectors live in a float32 matrix and a query is an exact
  matrix product (fast enough for small libraries, always exact, cheap to update);
* above it an hnswlib graph (``space='ip'``) is built from that matrix and the matrix is
  dropped, so a million photos cost one copy of their vectors, not two. The graph goes back to
  an exact matrix only when a rebuild (after many removals) finds the library below half the
  threshold, so a library hovering around the threshold does not flip back and forth.

hnswlib's sharp edges are handled here: ``k`` is clamped to the live count, ``set_ef(max(ef,
k))`` runs before every query (ef is not saved with the graph), capacity grows with
``resize_index`` before adding, removals only mark (the graph is rebuilt once more than
``rebuild_fraction`` of its slots are dead), and one lock serialises every operation because
adding and querying at once is not safe in hnswlib.

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
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np

from core.errors import IndexCorruptError

logger = logging.getLogger(__name__)

# Measured with benchmarks/bench_query.py (512-d clustered unit vectors, 2 cores): the exact
# product stays well under 10 ms a query up to this size, and below it an hnswlib build
# (tens of seconds) would buy nothing the user can feel.
DEFAULT_EXACT_THRESHOLD = 50_000
# Measured with benchmarks/bench_query.py: recall@10 against exact >= 0.95 at 1M vectors.
DEFAULT_EF_SEARCH = 128

FORMAT_NAME = "ladderlens-vector-index"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_HASH_CHUNK = 8 * 1024 * 1024

Mode = Literal["exact", "hnsw"]


def id_set_checksum(ids: Iterable[int] | np.ndarray) -> str:
    """A checksum of a set of photo ids that does not depend on their order.

    The catalog side can compute it from its own id list and compare it with the one in an
    index header without loading the index.
    """
    arr = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
    return hashlib.sha256(arr.astype("<i8").tobytes()).hexdigest()


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


class VectorIndex:
    """Nearest-neighbour search over unit vectors labelled with photo ids.

    Args:
        dim: Vector dimension.
        exact_threshold: Live-count above which an hnswlib graph replaces the exact matrix.
        M: hnswlib graph degree.
        ef_construction: hnswlib build-time beam width.
        ef_search: hnswlib query-time beam width (raised to ``k`` when ``k`` is larger).
        rebuild_fraction: Rebuild the graph once more than this fraction of its slots are removed.
        num_threads: Threads hnswlib may use to build (-1: all cores).
        seed: hnswlib's random seed (level assignment), for reproducible graphs.

    All methods are thread-safe.
    """

    def __init__(
        self,
        dim: int,
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = DEFAULT_EF_SEARCH,
        *,
        rebuild_fraction: float = 0.25,
        num_threads: int = -1,
        seed: int = 100,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if exact_threshold < 0:
            raise ValueError(f"exact_threshold must be >= 0, got {exact_threshold}")
        if M < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError("M must be >= 2 and ef_construction, ef_search >= 1")
        if not 0.0 < rebuild_fraction < 1.0:
            raise ValueError(f"rebuild_fraction must be in (0, 1), got {rebuild_fraction}")
        self._dim = int(dim)
        self.exact_threshold = int(exact_threshold)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self.rebuild_fraction = float(rebuild_fraction)
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        self._lock = threading.RLock()
        # Exact regime: rows [0, _n) of _ids/_vecs are live; _row maps id -> row.
        self._ids = np.empty(0, dtype=np.int64)
        self._vecs = np.empty((0, self._dim), dtype=np.float32)
        self._n = 0
        self._row: dict[int, int] = {}
        # Graph regime: live labels and labels marked deleted (their slots can be reused by re-adding).
        self._hnsw: hnswlib.Index | None = None
        self._live: set[int] = set()
        self._dead: set[int] = set()
        self._live_cache: np.ndarray | None = None

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def mode(self) -> Mode:
        """``"exact"`` (matrix product) or ``"hnsw"`` (graph)."""
        return "hnsw" if self._hnsw is not None else "exact"

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"ef_search must be >= 1, got {value}")
        self._ef_search = int(value)

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def __contains__(self, photo_id: object) -> bool:
        if not isinstance(photo_id, (int, np.integer)):
            return False
        with self._lock:
            pid = int(photo_id)
            return pid in self._live if self._hnsw is not None else pid in self._row

    def ids(self) -> np.ndarray:
        """The live photo ids, sorted (int64)."""
        with self._lock:
            return np.sort(self._live_ids())

    def checksum(self) -> str:
        """:func:`id_set_checksum` of the live ids."""
        with self._lock:
            return id_set_checksum(self._live_ids())

    # ------------------------------------------------------------------ updates

    def add(self, ids: Iterable[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Add vectors, replacing the vector of any id already present.

        Args:
            ids: Non-negative photo ids, one per row of ``vecs``. If an id repeats, its last row wins.
            vecs: ``(N, dim)`` float vectors (expected L2-normalised; inner product is the score).
        """
        ids_arr, vec_arr = self._check_batch(ids, vecs)
        if ids_arr.size == 0:
            return
        with self._lock:
            if self._hnsw is None:
                self._add_exact(ids_arr, vec_arr)
                if self._n > self.exact_threshold:
                    logger.info("index passed %d vectors: building the graph", self.exact_threshold)
                    self._build_graph(self._ids[: self._n].copy(), self._vecs[: self._n])
            else:
                self._add_graph(ids_arr, vec_arr)
            self._live_cache = None

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove ids (unknown ids are ignored). Returns how many were removed."""
        ids_arr = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
        removed = 0
        with self._lock:
            if self._hnsw is None:
                for pid in ids_arr.tolist():
                    row = self._row.pop(pid, None)
                    if row is None:
                        continue
                    last = self._n - 1
                    if row != last:
                        moved = int(self._ids[last])
                        self._ids[row] = moved
                        self._vecs[row] = self._vecs[last]
                        self._row[moved] = row
                    self._n -= 1
                    removed += 1
            else:
                for pid in ids_arr.tolist():
                    if pid not in self._live:
                        continue
                    self._hnsw.mark_deleted(pid)
                    self._live.discard(pid)
                    self._dead.add(pid)
                    removed += 1
                slots = self._hnsw.get_current_count()
                if self._dead and len(self._dead) > self.rebuild_fraction * slots:
                    self._rebuild()
            if removed:
                self._live_cache = None
        return removed

    def rebuild(self) -> None:
        """Rebuild from the live vectors: drops removed slots and re-picks the regime."""
        with self._lock:
            self._rebuild()

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
            raise ValueError(
                f"queries must have shape (dim,) or (Q, dim) with dim={self._dim}, got {q.shape}"
            )
        q = np.ascontiguousarray(q)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        with self._lock:
            kk = min(int(k), self._count())
            if kk == 0 or q.shape[0] == 0:
                return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
            if self._hnsw is None:
                return self._search_exact(q, kk)
            return self._search_graph(q, kk)

    def get_vectors(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` as ``(N, dim)`` float32. Raises KeyError for an unknown id."""
        ids_list = [int(i) for i in (ids.tolist() if isinstance(ids, np.ndarray) else ids)]
        with self._lock:
            if not ids_list:
                return np.empty((0, self._dim), np.float32)
            if self._hnsw is None:
                try:
                    rows = [self._row[i] for i in ids_list]
                except KeyError as exc:
                    raise KeyError(f"photo id {exc.args[0]} is not in the index") from None
                return self._vecs[rows].copy()
            missing = [i for i in ids_list if i not in self._live]
            if missing:
                raise KeyError(f"photo id {missing[0]} is not in the index")
            return np.asarray(self._hnsw.get_items(ids_list), dtype=np.float32).reshape(-1, self._dim)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` distinct stored vectors drawn at random (``(min(n, len), dim)`` float32)."""
        with self._lock:
            live = self._live_ids()
            m = min(int(n), live.size)
            if m <= 0:
                return np.empty((0, self._dim), np.float32)
            rng = np.random.default_rng(seed)
            if self._hnsw is None:
                rows = rng.choice(self._n, size=m, replace=False)
                return self._vecs[rows].copy()
            chosen = rng.choice(live, size=m, replace=False)
            return np.asarray(self._hnsw.get_items(chosen.tolist()), dtype=np.float32).reshape(-1, self._dim)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically: the previous file stays intact until the new one is complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            token = uuid.uuid4().hex[:16]
            payload = path.with_name(f"{path.name}.{token}.data")
            header_tmp = path.with_name(f"{path.name}.{token}.tmp")
            try:
                if self._hnsw is None:
                    with open(payload, "wb") as f:
                        f.write(self._ids[: self._n].astype("<i8").tobytes())
                        f.write(np.ascontiguousarray(self._vecs[: self._n], dtype="<f4").tobytes())
                        f.flush()
                        os.fsync(f.fileno())
                else:
                    self._hnsw.save_index(str(payload))
                    with open(payload, "rb") as f:
                        os.fsync(f.fileno())
                live = self._live_ids()
                header = {
                    "format": FORMAT_NAME,
                    "version": FORMAT_VERSION,
                    "mode": self.mode,
                    "space": "ip",
                    "dim": self._dim,
                    "count": int(live.size),
                    "ids_sha256": id_set_checksum(live),
                    "payload": payload.name,
                    "payload_bytes": payload.stat().st_size,
                    "payload_sha256": _file_sha256(payload),
                    "M": self.M,
                    "ef_construction": self.ef_construction,
                    "deleted": sorted(self._dead) if self._hnsw is not None else [],
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
            logger.debug("saved %s index of %d vectors to %s", header["mode"], header["count"], path)

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

        options.setdefault("M", header["M"])
        options.setdefault("ef_construction", header["ef_construction"])
        index = cls(dim, **options)
        count = header["count"]
        if header["mode"] == "exact":
            if size != count * (8 + 4 * dim):
                raise IndexCorruptError(f"The search index data file {payload} has the wrong size.")
            raw = np.fromfile(payload, dtype=np.uint8)
            ids = raw[: 8 * count].view("<i8").astype(np.int64)
            vecs = raw[8 * count :].view("<f4").reshape(count, dim).astype(np.float32)
            if np.unique(ids).size != count or (count and ids.min() < 0):
                raise IndexCorruptError(f"The search index {path} has repeated or negative ids.")
            index._ids, index._vecs, index._n = ids, vecs, count
            index._row = {pid: i for i, pid in enumerate(ids.tolist())}
        else:
            graph = hnswlib.Index(space="ip", dim=dim)
            try:
                graph.load_index(str(payload))
            except (RuntimeError, MemoryError, ValueError) as exc:
                raise IndexCorruptError(f"The search index graph {payload} cannot be read: {exc}.") from exc
            labels = set(np.asarray(graph.get_ids_list(), dtype=np.int64).tolist())
            dead = {int(x) for x in header["deleted"]}
            if not dead <= labels:
                raise IndexCorruptError(f"The search index {path} lists removed ids the graph does not hold.")
            index._hnsw = graph
            index._live = labels - dead
            index._dead = dead
            graph.set_ef(index._ef_search)
        live = index._live_ids()
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
        logger.debug("loaded %s index of %d vectors from %s", index.mode, count, path)
        return index

    # ------------------------------------------------------------------ internals

    def _count(self) -> int:
        return len(self._live) if self._hnsw is not None else self._n

    def _live_ids(self) -> np.ndarray:
        if self._hnsw is None:
            return self._ids[: self._n]
        if self._live_cache is None:
            self._live_cache = np.fromiter(self._live, dtype=np.int64, count=len(self._live))
        return self._live_cache

    def _check_batch(self, ids, vecs) -> tuple[np.ndarray, np.ndarray]:
        ids_arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        if ids_arr.size and not np.issubdtype(ids_arr.dtype, np.integer):
            raise ValueError(f"ids must be integers, got {ids_arr.dtype}")
        ids_arr = ids_arr.astype(np.int64).reshape(-1)
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

    def _add_exact(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        rows = np.fromiter((self._row.get(i, -1) for i in ids.tolist()), dtype=np.int64, count=ids.size)
        known = rows >= 0
        if known.any():
            self._vecs[rows[known]] = vecs[known]
        new_ids, new_vecs = ids[~known], vecs[~known]
        if new_ids.size == 0:
            return
        need = self._n + new_ids.size
        if need > self._ids.size:
            cap = max(need, 2 * self._ids.size, 64)
            grown_ids = np.empty(cap, np.int64)
            grown_vecs = np.empty((cap, self._dim), np.float32)
            grown_ids[: self._n] = self._ids[: self._n]
            grown_vecs[: self._n] = self._vecs[: self._n]
            self._ids, self._vecs = grown_ids, grown_vecs
        self._ids[self._n : need] = new_ids
        self._vecs[self._n : need] = new_vecs
        for offset, pid in enumerate(new_ids.tolist()):
            self._row[pid] = self._n + offset
        self._n = need

    def _build_graph(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        graph = hnswlib.Index(space="ip", dim=self._dim)
        graph.init_index(
            max_elements=max(int(ids.size * 1.25) + 16, 64),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=self.seed,
        )
        if ids.size:
            graph.add_items(np.ascontiguousarray(vecs, dtype=np.float32), ids, num_threads=self.num_threads)
        graph.set_ef(self._ef_search)
        self._hnsw = graph
        self._live = set(ids.tolist())
        self._dead = set()
        self._live_cache = None
        # The graph holds the vectors now: drop the matrix.
        self._ids = np.empty(0, dtype=np.int64)
        self._vecs = np.empty((0, self._dim), dtype=np.float32)
        self._row = {}
        self._n = 0

    def _add_graph(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        assert self._hnsw is not None
        fresh = sum(1 for i in ids.tolist() if i not in self._live and i not in self._dead)
        need = self._hnsw.get_current_count() + fresh
        cap = self._hnsw.get_max_elements()
        if need > cap:
            self._hnsw.resize_index(max(need, int(cap * 1.5)))
        self._hnsw.add_items(vecs, ids, num_threads=self.num_threads)
        for pid in ids.tolist():
            self._live.add(pid)
            self._dead.discard(pid)  # re-adding a removed label un-marks it in hnswlib

    def _rebuild(self) -> None:
        if self._hnsw is None:
            return
        live = np.sort(self._live_ids())
        vecs = (
            np.asarray(self._hnsw.get_items(live.tolist()), dtype=np.float32).reshape(-1, self._dim)
            if live.size
            else np.empty((0, self._dim), np.float32)
        )
        logger.info("rebuilding the index over %d vectors (%d removed)", live.size, len(self._dead))
        if live.size <= self.exact_threshold // 2:
            self._hnsw = None
            self._live, self._dead, self._live_cache = set(), set(), None
            self._ids = np.empty(0, dtype=np.int64)
            self._vecs = np.empty((0, self._dim), dtype=np.float32)
            self._row, self._n = {}, 0
            self._add_exact(live, vecs)
        else:
            self._build_graph(live, vecs)

    def _search_exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = q @ self._vecs[: self._n].T
        if k < self._n:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(scores, part, axis=1)
        else:
            part = np.broadcast_to(np.arange(self._n), scores.shape)
            top = scores
        order = np.argsort(-top, axis=1, kind="stable")
        rows = np.take_along_axis(part, order, axis=1)
        return self._ids[rows], np.take_along_axis(top, order, axis=1).astype(np.float32)

    def _search_graph(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._hnsw is not None
        ef = max(self._ef_search, k)
        live = len(self._live)
        while True:
            self._hnsw.set_ef(ef)
            try:
                labels, dists = self._hnsw.knn_query(q, k=k, num_threads=self.num_threads)
                break
            except RuntimeError:
                # Removed nodes can leave too few reachable results for a small beam: widen it.
                if ef >= self._hnsw.get_current_count():
                    logger.warning("graph search found fewer than %d results; searching exactly", k)
                    return self._search_brute(q, k)
                ef = min(ef * 4, max(self._hnsw.get_current_count(), live))
        self._hnsw.set_ef(self._ef_search)
        return labels.astype(np.int64), (1.0 - dists).astype(np.float32)

    def _search_brute(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._hnsw is not None
        live = self._live_ids()
        vecs = np.asarray(self._hnsw.get_items(live.tolist()), dtype=np.float32).reshape(-1, self._dim)
        scores = q @ vecs.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < live.size else None
        if part is None:
            part = np.broadcast_to(np.arange(live.size), scores.shape)
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return live[np.take_along_axis(part, order, axis=1)], np.take_along_axis(top, order, axis=1)

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
