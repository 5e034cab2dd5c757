"""Photo vectors of one model, stored beside the catalog and keyed by content hash.

Vectors are keyed by the file's content hash, not its path: a renamed, moved or duplicated photo
reuses its vector without decoding or running the model again.

Storage, per model identity: an append-only file of float32 rows (``<key>.g<generation>.f32``: a
32-byte header with the width, then the rows) plus the catalog's ``embeddings`` table mapping
(model, content hash) to a row, and ``models.rows``, the count of committed rows. The file is only
changed while holding the catalog's write lock, in this order:

1. append the new rows to the file, flush and fsync;
2. commit the rows' mapping and the new row count in one SQLite transaction.

A crash between the two leaves rows in the file beyond the committed count; they are cut off the next
time the file is opened or written, so nothing committed is ever lost or wrong. Compaction (dropping
the rows no photo uses any more) writes a whole new generation file, commits the new mapping and
generation, then deletes the old file: a crash at any point leaves one consistent generation in use
(leftover files of other generations are deleted on open).

Vectors of two model identities never mix: each has its own file, rows and width.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.catalog import Catalog, identity_fields
from core.errors import LibraryError

logger = logging.getLogger(__name__)

MAGIC = b"LLVECF32"
HEADER_BYTES = 32
_HEADER = struct.Struct("<8sII")  # magic, format version, width; padded with zeros to HEADER_BYTES
FORMAT_VERSION = 1
DEFAULT_COMPACT_FRACTION = 0.25
_CHUNK_ROWS = 65536  # rows copied at a time by compaction
_BATCH = 500


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorStore:
    """The vectors of one model identity.

    Args:
        catalog: the library catalog (holds the row mapping).
        vectors_dir: folder of the vector files (created when missing).
        identity: the model identity (a ``ModelIdentity``, a mapping, or a key string).
        dim: the embedding width.

    Raises:
        LibraryError: the identity is recorded with another width, or the file cannot be used.
    """

    def __init__(self, catalog: Catalog, vectors_dir: str | os.PathLike[str], identity: Any, dim: int):
        self.catalog = catalog
        self.dim = int(dim)
        self.key = identity_fields(identity)[0]
        self.model_id = catalog.model_id(identity, self.dim)
        self.dir = Path(vectors_dir)
        self._row_bytes = 4 * self.dim
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"Cannot create the vector folder {self.dir}: {e.strerror}.") from e
        self._file_pattern = re.compile(re.escape(self.key) + r"\.g(\d+)\.f32")
        self._recover()

    # -- files

    def path(self, generation: int | None = None) -> Path:
        """The vector file of a generation (the current one by default)."""
        if generation is None:
            generation = self._state()[1]
        return self.dir / f"{self.key}.g{generation}.f32"

    def _state(self) -> tuple[int, int]:
        """(committed rows, generation), as seen by this thread's connection."""
        row = (
            self.catalog.connection()
            .execute("SELECT rows, generation FROM models WHERE id = ?", (self.model_id,))
            .fetchone()
        )
        if row is None:
            raise LibraryError(f"The vectors of model {self.key} were removed from the catalog.")
        return row[0], row[1]

    def _header(self) -> bytes:
        return _HEADER.pack(MAGIC, FORMAT_VERSION, self.dim).ljust(HEADER_BYTES, b"\0")

    def _create_file(self, path: Path) -> None:
        with open(path, "wb") as f:
            f.write(self._header())
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.dir)

    def _recover(self) -> None:
        """Bring the file in line with the committed rows (run at open, under the write lock)."""
        with self.catalog.transaction() as conn:
            rows, generation = self._state()
            path = self.path(generation)
            header_ok = False
            size = 0
            try:
                with open(path, "rb") as f:
                    header_ok = f.read(HEADER_BYTES) == self._header()
                    size = os.fstat(f.fileno()).st_size
            except FileNotFoundError:
                pass
            except OSError as e:
                raise LibraryError(f"Cannot read the vector file {path}: {e.strerror}.") from e

            if not header_ok:
                if rows:
                    logger.warning(
                        "vector file %s is missing or damaged: its %d vectors will be computed again",
                        path,
                        rows,
                    )
                self._reset_rows(conn, keep=0)
                self._create_file(path)
                rows = 0
            else:
                complete = (size - HEADER_BYTES) // self._row_bytes
                if complete < rows:
                    logger.warning(
                        "vector file %s holds %d of %d committed vectors: the rest will be computed again",
                        path,
                        complete,
                        rows,
                    )
                    self._reset_rows(conn, keep=complete)
                    rows = complete
                expected = HEADER_BYTES + rows * self._row_bytes
                if size != expected:
                    logger.info("vector file %s: dropping %d bytes not committed", path, size - expected)
                    with open(path, "r+b") as f:
                        f.truncate(expected)
                        os.fsync(f.fileno())

            for other in self.dir.iterdir():
                match = self._file_pattern.fullmatch(other.name)
                if match and int(match.group(1)) != generation:
                    logger.info("removing leftover vector file %s", other)
                    other.unlink(missing_ok=True)

    def _reset_rows(self, conn, keep: int) -> None:
        conn.execute("DELETE FROM embeddings WHERE model_id = ? AND row >= ?", (self.model_id, keep))
        conn.execute("UPDATE models SET rows = ? WHERE id = ?", (keep, self.model_id))

    # -- reads

    def __len__(self) -> int:
        """Committed vector rows (live or not)."""
        return self._state()[0]

    def count(self) -> int:
        """Number of stored vectors (one per distinct content), including ones no photo uses now."""
        return len(self)

    def live_count(self) -> int:
        """Stored vectors that at least one catalogued photo uses."""
        return (
            self.catalog.connection()
            .execute(
                """SELECT count(*) FROM embeddings e WHERE e.model_id = ?
                   AND EXISTS (SELECT 1 FROM photos p WHERE p.content_hash = e.content_hash)""",
                (self.model_id,),
            )
            .fetchone()[0]
        )

    def _rows_of(self, hashes: Sequence[str]) -> dict[str, int]:
        conn = self.catalog.connection()
        unique = list(dict.fromkeys(hashes))
        found: dict[str, int] = {}
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            found.update(
                conn.execute(
                    f"SELECT content_hash, row FROM embeddings WHERE model_id = ? "
                    f"AND content_hash IN ({','.join('?' * len(chunk))})",
                    (self.model_id, *chunk),
                )
            )
        return found

    def has(self, hashes: Sequence[str]) -> np.ndarray:
        """Boolean mask: which of these content hashes have a vector."""
        rows = self._rows_of(hashes)
        return np.fromiter((h in rows for h in hashes), dtype=bool, count=len(hashes))

    def missing(self, hashes: Sequence[str]) -> list[str]:
        """The distinct hashes among these that have no vector yet (what still needs the model)."""
        rows = self._rows_of(hashes)
        return [h for h in dict.fromkeys(hashes) if h not in rows]

    def get(self, hashes: Sequence[str]) -> np.ndarray:
        """Vectors of these content hashes, float32 (N, dim), in order.

        Raises:
            KeyError: some hashes have no vector (see :meth:`missing`).
        """
        for _attempt in range(3):
            with self.catalog.snapshot():  # one view of the mapping and the generation
                found = self._rows_of(hashes)
                rows, generation = self._state()
            absent = [h for h in hashes if h not in found]
            if absent:
                raise KeyError(f"{len(absent)} content hashes have no vector, e.g. {absent[0]}")
            try:
                return self._read(
                    generation, rows, np.fromiter((found[h] for h in hashes), np.int64, len(hashes))
                )
            except FileNotFoundError:
                continue  # compacted by another process meanwhile: read the new generation
        raise LibraryError(f"The vector file of model {self.key} keeps changing; try again.")

    def photo_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Every catalogued photo that has a vector of this model: (photo ids int64[N], float32[N, dim]).

        Photos sharing content (duplicates) each appear, with the same vector. Sorted by photo id.
        Vectors that are not finite numbers (a damaged file) are left out and forgotten, so the
        next indexing run embeds those photos again (:meth:`_drop_damaged`).
        """
        for _attempt in range(3):
            with self.catalog.snapshot() as conn:
                pairs = conn.execute(
                    """SELECT p.id, e.row FROM photos p
                       JOIN embeddings e ON e.model_id = ? AND e.content_hash = p.content_hash
                       ORDER BY p.id""",
                    (self.model_id,),
                ).fetchall()
                rows, generation = self._state()
            table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            try:
                vectors = self._read(generation, rows, table[:, 1])
            except FileNotFoundError:
                continue
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():
                self._drop_damaged(np.unique(table[~finite, 1]), generation)
                return table[finite, 0].copy(), vectors[finite]
            return table[:, 0].copy(), vectors
        raise LibraryError(f"The vector file of model {self.key} keeps changing; try again.")

    def _drop_damaged(self, rows: np.ndarray, generation: int) -> None:
        """Forget the content hashes stored at ``rows`` (their vectors are not finite numbers)."""
        with self.catalog.transaction() as conn:
            conn.executemany(
                "DELETE FROM embeddings WHERE model_id = ? AND row = ?",
                ((self.model_id, int(r)) for r in rows),
            )
        logger.warning(
            "%d vector(s) in %s are not finite numbers (the file is damaged): they were dropped, and "
            "their photos are embedded again by the next indexing run",
            len(rows),
            self.path(generation),
        )

    def _read(self, generation: int, rows: int, indices: np.ndarray) -> np.ndarray:
        if len(indices) == 0:
            return np.empty((0, self.dim), np.float32)
        path = self.path(generation)
        if os.path.getsize(path) < HEADER_BYTES + rows * self._row_bytes:
            raise LibraryError(
                f"The vector file {path} is shorter than the catalog says; reopen the library."
            )
        matrix = np.memmap(path, dtype=np.float32, mode="r", offset=HEADER_BYTES, shape=(rows, self.dim))
        try:
            return np.array(matrix[indices], dtype=np.float32)
        finally:
            del matrix  # release the mapping at once (Windows cannot replace a mapped file)

    # -- writes

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors for content hashes, skipping hashes that have one; returns how many were added.

        Raises:
            ValueError: the vectors are not (len(hashes), dim) or not finite.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(hashes), self.dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        if not len(hashes):
            return 0
        with self.catalog.transaction() as conn:
            known = self._rows_of(hashes)
            new: dict[str, int] = {}  # hash -> index in `vectors`, first occurrence
            for index, content_hash in enumerate(hashes):
                if content_hash not in known and content_hash not in new:
                    new[content_hash] = index
            if not new:
                return 0
            rows, generation = self._state()
            self._append(self.path(generation), rows, vectors[list(new.values())])
            self._commit_rows(conn, list(new), rows)
        return len(new)

    def _append(self, path: Path, rows: int, block: np.ndarray) -> None:
        """Write rows after the committed ones and make them durable (step 1 of a write)."""
        committed = HEADER_BYTES + rows * self._row_bytes
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if size < committed:
                raise LibraryError(
                    f"The vector file {path} is shorter than the catalog says; reopen the library."
                )
            if size > committed:  # rows of a write that was never committed
                f.truncate(committed)
            f.seek(committed)
            f.write(block.tobytes())
            f.flush()
            os.fsync(f.fileno())

    def _commit_rows(self, conn, hashes: list[str], first_row: int) -> None:
        """Record the appended rows (step 2: takes effect when the transaction commits)."""
        conn.executemany(
            "INSERT INTO embeddings(model_id, content_hash, row) VALUES (?, ?, ?)",
            ((self.model_id, content_hash, first_row + i) for i, content_hash in enumerate(hashes)),
        )
        conn.execute("UPDATE models SET rows = ? WHERE id = ?", (first_row + len(hashes), self.model_id))

    def dead_count(self) -> int:
        """Stored vectors that no catalogued photo uses (removed or changed files)."""
        return len(self) - self.live_count()

    def compact(self, min_dead_fraction: float = DEFAULT_COMPACT_FRACTION, force: bool = False) -> bool:
        """Rewrite the file without the vectors no photo uses, when they are at least ``min_dead_fraction``
        of the rows (or any, with ``force``). Returns whether it rewrote."""
        with self.catalog.transaction() as conn:
            rows, generation = self._state()
            live = conn.execute(
                """SELECT e.content_hash, e.row FROM embeddings e WHERE e.model_id = ?
                   AND EXISTS (SELECT 1 FROM photos p WHERE p.content_hash = e.content_hash)
                   ORDER BY e.row""",
                (self.model_id,),
            ).fetchall()
            dead = rows - len(live)
            if dead == 0 or (not force and dead < min_dead_fraction * rows):
                return False
            old_path, new_path = self.path(generation), self.path(generation + 1)
            keep = np.array([row for _, row in live], dtype=np.int64)
            self._create_file(new_path)
            with open(new_path, "r+b") as out:
                out.seek(HEADER_BYTES)
                for start in range(0, len(keep), _CHUNK_ROWS):
                    out.write(self._read(generation, rows, keep[start : start + _CHUNK_ROWS]).tobytes())
                out.flush()
                os.fsync(out.fileno())
            conn.execute("DELETE FROM embeddings WHERE model_id = ?", (self.model_id,))
            conn.executemany(
                "INSERT INTO embeddings(model_id, content_hash, row) VALUES (?, ?, ?)",
                ((self.model_id, content_hash, i) for i, (content_hash, _) in enumerate(live)),
            )
            conn.execute(
                "UPDATE models SET rows = ?, generation = ? WHERE id = ?",
                (len(live), generation + 1, self.model_id),
            )
        logger.info("compacted vectors of %s: %d rows -> %d", self.key, rows, len(live))
        try:
            old_path.unlink()
        except OSError as e:  # still mapped by a reader on Windows: removed at the next open
            logger.debug("cannot remove old vector file %s yet: %s", old_path, e)
        return True

    def drop(self) -> None:
        """Delete this model's vectors (catalog rows and files); the store is unusable afterwards."""
        with self.catalog.transaction():
            self.catalog.delete_model(self.model_id)
            for other in self.dir.iterdir():
                if self._file_pattern.fullmatch(other.name):
                    other.unlink(missing_ok=True)
