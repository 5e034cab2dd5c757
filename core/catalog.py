"""The library catalog: one SQLite file listing library folders, photos, failures and model identities.

SQLite runs in WAL mode, so a search can read while an indexer writes, from another thread or another
process; a writer that finds the database busy waits (``busy_timeout``) instead of failing. Every
change happens inside a transaction, so a crash at any instant leaves a catalog that opens, holding
the state of the last finished transaction.

The schema has a version (``PRAGMA user_version``) and a migration ladder: :data:`MIGRATIONS` [i]
takes a catalog from version i to i + 1, and opening an older catalog climbs the ladder in one
transaction. A catalog written by a newer LadderLens is refused with a message instead of being
damaged.

Each thread gets its own SQLite connection (created on first use), so a :class:`Catalog` can be shared
between a worker thread and the GUI thread.

Paths are stored as given by the file system. A name that is not valid UTF-8 (possible on Linux,
Python hands it over with surrogate escapes) is stored as a BLOB of its raw bytes and read back
unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from core.errors import FolderError, LibraryError

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x4C4C454E  # "LLEN": marks a SQLite file as a LadderLens catalog
BUSY_TIMEOUT_S = 15.0
_BATCH = 500  # rows per IN (...) query, below SQLite's variable limit

FolderState = Literal["online", "offline"]


# --------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class Folder:
    """A library root folder."""

    id: int
    path: str
    state: FolderState
    added: float
    last_scan: float | None
    excludes: tuple[str, ...]
    scan_id: int


@dataclass(frozen=True, slots=True)
class PhotoEntry:
    """What the indexer learnt about a file; the input of :meth:`Catalog.upsert_photos`."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    orientation: int | None = None


@dataclass(frozen=True, slots=True)
class Photo:
    """A catalogued photo. ``width``/``height`` are as displayed (EXIF orientation applied)."""

    id: int
    folder_id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int | None
    height: int | None
    taken_at: str | None
    orientation: int | None
    indexed_at: float


class FileState(NamedTuple):
    """What a re-scan needs of a catalogued file to tell whether it changed."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A file that could not be indexed, with the reason shown to the user."""

    path: str
    reason: str
    size: int | None
    mtime_ns: int | None
    when: float
    folder_id: int | None


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model identity whose vectors the library stores; ``rows`` counts committed vector rows."""

    id: int
    key: str
    arch: str
    weights: str
    adapter: str | None
    dim: int
    created: float
    rows: int
    generation: int


@dataclass(frozen=True, slots=True)
class FolderCounts:
    """Per-folder totals for status displays."""

    photos: int
    failures: int
    with_vectors: int | None  # photos having a vector of the given model; None when no model asked


# ---------------------------------------------------------------------------------------- schema


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE folders (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'online' CHECK (state IN ('online', 'offline')),
            added REAL NOT NULL,
            last_scan REAL,
            excludes TEXT NOT NULL DEFAULT '[]',
            scan_id INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            taken_at TEXT,
            orientation INTEGER,
            indexed_at REAL NOT NULL,
            seen_scan INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX photos_folder ON photos(folder_id, seen_scan)",
        "CREATE INDEX photos_hash ON photos(content_hash)",
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            folder_id INTEGER REFERENCES folders(id) ON DELETE CASCADE,
            reason TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            "when" REAL NOT NULL,
            seen_scan INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX failures_folder ON failures(folder_id, seen_scan)",
        """CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            arch TEXT NOT NULL,
            weights TEXT NOT NULL,
            adapter TEXT,
            dim INTEGER NOT NULL CHECK (dim > 0),
            created REAL NOT NULL,
            rows INTEGER NOT NULL DEFAULT 0,
            generation INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE embeddings (
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            content_hash TEXT NOT NULL,
            row INTEGER NOT NULL,
            PRIMARY KEY (model_id, content_hash)
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX embeddings_row ON embeddings(model_id, row)",
    ]
    for statement in statements:
        conn.execute(statement)


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Tags given in the app, keyed by content so they follow a renamed or moved photo."""
    conn.execute(
        """CREATE TABLE user_tags (
            content_hash TEXT NOT NULL,
            tag TEXT NOT NULL,
            added REAL NOT NULL,
            PRIMARY KEY (content_hash, tag)
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX user_tags_tag ON user_tags(tag)")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = [_migrate_to_1, _migrate_to_2]
"""The ladder: ``MIGRATIONS[i]`` takes the schema from version i to i + 1 (0 is an empty file)."""

SCHEMA_VERSION = len(MIGRATIONS)


# ----------------------------------------------------------------------------------------- helpers


def _db_path(path: str) -> str | bytes:
    """A path as stored: text, or raw bytes for a name that is not valid UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _py_path(value: str | bytes) -> str:
    return value if isinstance(value, str) else os.fsdecode(value)


def _normalise(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def _is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (textually; both normalised)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


def _is_storage_failure(exc: BaseException) -> bool:
    """An SQLite failure of the file or the disk, not a constraint or a programming error."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
    )


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock, nothing is wrong with the file."""
    code = getattr(exc, "sqlite_errorcode", None)  # extended code (Python 3.11+); its low byte is the primary
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)  # SQLite's own messages for the two: "database is locked", "database table is locked"
    return "is locked" in text or "database is busy" in text


def storage_error(exc: sqlite3.DatabaseError, db_path: str | os.PathLike[str]) -> LibraryError:
    """A message a user can act on for an SQLite failure (a full disk, a damaged file, ...)."""
    text = str(exc).lower()
    path = Path(db_path)
    if "full" in text:
        return LibraryError(
            f"The disk holding the library ({path.parent}) is full: free some space and run again. "
            "Everything committed before is kept; the interrupted step was undone."
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return LibraryError(
            f"The catalog {path} is damaged ({exc}). Nothing more was written to it. Restore it from a "
            "backup, or rescue what it holds with the sqlite3 tool (.recover) into a new catalog.sqlite; "
            "the photos themselves are untouched."
        )
    if "readonly" in text or "read-only" in text:
        return LibraryError(
            f"The library {path.parent} is read-only ({exc}): make it writable and run again."
        )
    return LibraryError(f"The catalog {path} could not be used ({exc}). Nothing was changed.")


def _cannot_write(db_path: Path) -> bool:
    """Whether the catalog or its folder cannot be written (a read-only library, not a damaged one)."""
    probe = db_path.with_name(f".write-probe-{os.getpid()}-{threading.get_ident()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return True
    os.close(fd)
    os.unlink(probe)
    try:
        with open(db_path, "r+b"):
            return False
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _chunks(values: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


def identity_fields(identity: Any) -> tuple[str, str, str, str | None]:
    """(key, arch, weights, adapter) of a model identity.

    Accepts an object with ``key`` and ``to_dict()`` (a ``ModelIdentity``), a mapping with ``arch``,
    ``weights``, ``adapter`` and optionally ``key``, or a plain key string. A missing or unsafe key is
    derived from the other fields, so it is always usable as a file name.
    """
    if isinstance(identity, str):
        key, arch, weights, adapter = identity, identity, "", None
    else:
        fields: Mapping[str, Any] = identity.to_dict() if hasattr(identity, "to_dict") else identity
        arch = str(fields.get("arch", ""))
        weights = str(fields.get("weights", ""))
        adapter = fields.get("adapter")
        adapter = None if adapter is None else str(adapter)
        key = getattr(identity, "key", None) or fields.get("key")
        if not key:
            canonical = json.dumps({"arch": arch, "weights": weights, "adapter": adapter}, sort_keys=True)
            digest = hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()
            key = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', arch).strip('-.') or 'model'}-{digest}"
    if not arch:
        raise ValueError("a model identity needs an architecture name")
    if not _SAFE_KEY.match(key):
        digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        key = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', key).strip('-.')[:80] or 'model'}-{digest}"
    return key, arch, weights, adapter


_PHOTO_COLUMNS = (
    "id, folder_id, path, size, mtime_ns, content_hash, width, height, taken_at, orientation, indexed_at"
)
_FAILURE_COLUMNS = 'path, reason, size, mtime_ns, "when", folder_id'
_FOLDER_COLUMNS = "id, path, state, added, last_scan, excludes, scan_id"
_MODEL_COLUMNS = "id, key, arch, weights, adapter, dim, created, rows, generation"


def _photo(row: Sequence[Any]) -> Photo:
    return Photo(row[0], row[1], _py_path(row[2]), *row[3:])


def _failure(row: Sequence[Any]) -> Failure:
    return Failure(_py_path(row[0]), *row[1:])


def _folder(row: Sequence[Any]) -> Folder:
    return Folder(row[0], _py_path(row[1]), row[2], row[3], row[4], tuple(json.loads(row[5])), row[6])


# ---------------------------------------------------------------------------------------- catalog


# The day a photo was taken: its EXIF date, else its file's modification date (local time).
_DAY = "COALESCE(substr(p.taken_at, 1, 10), date(p.mtime_ns / 1000000000, 'unixepoch', 'localtime'))"


class BrowsedPhoto(NamedTuple):
    photo_id: int
    path: str
    day: str  # YYYY-MM-DD: taken, else the file's date
    folder: str


def _photo_filter_sql(
    folder_ids: Iterable[int] | None, taken_from: str | None, taken_to: str | None
) -> tuple[str, list[Any]]:
    """A WHERE clause on ``photos p`` (empty when nothing is filtered) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if folder_ids is not None:
        folder_list = [int(f) for f in folder_ids]
        clauses.append(f"p.folder_id IN ({','.join('?' * len(folder_list))})" if folder_list else "0")
        params.extend(folder_list)
    if taken_from is not None:
        clauses.append(f"{_DAY} >= ?")
        params.append(taken_from)
    if taken_to is not None:
        clauses.append(f"{_DAY} <= ?")
        params.append(taken_to)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


class Catalog:
    """The SQLite catalog of a library.

    Args:
        db_path: the database file; it and its folder are created when missing.
        busy_timeout: seconds a write waits for another writer before giving up.

    Raises:
        LibraryError: the file is not a LadderLens catalog, is damaged, was written by a newer
            version, or cannot be opened.
    """

    def __init__(self, db_path: str | os.PathLike[str], busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(db_path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"Cannot create the library folder {self.path.parent}: {e.strerror}.") from e
        try:
            self._migrate(self.connection())
        except BaseException:
            self.close()
            raise

    # -- connections and transactions

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; use :meth:`transaction` to write)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise LibraryError(f"The catalog {self.path} is closed.")
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise LibraryError(f"Cannot open the catalog {self.path}: {e}.") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = self._enter_wal(conn)
            if mode.lower() != "wal":
                logger.warning("catalog %s runs in journal mode %s, not WAL", self.path, mode)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as e:
            conn.close()
            if _is_busy(e):
                raise LibraryError(
                    f"The catalog {self.path} stayed busy for {self.busy_timeout:g} s ({e}): another "
                    "LadderLens is opening or indexing this library. Nothing was changed; try again."
                ) from e
            if _cannot_write(self.path):
                raise LibraryError(
                    f"The library {self.path.parent} is read-only: LadderLens needs to write its catalog "
                    f"there ({e}). Make the folder and its files writable (or open a writable copy); "
                    "nothing was changed."
                ) from e
            raise LibraryError(
                f"{self.path} is not a LadderLens catalog or is damaged ({e}). Nothing was changed. "
                "Restore it from a backup or rescue it with the sqlite3 tool (.recover); to start a new "
                "library there instead, move the whole folder away."
            ) from e
        return conn

    def _enter_wal(self, conn: sqlite3.Connection) -> str:
        """Switch the file to WAL mode (a no-op once it is) and return the journal mode it runs in.

        Another process may be creating the same new catalog, so the file can still be in rollback
        mode with that process's write lock on it. SQLite then answers SQLITE_BUSY at once, without
        calling the busy handler, so this retries until ``busy_timeout`` runs out.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on an exception.

        Nested uses join the outer transaction. Waits up to ``busy_timeout`` for another writer.
        """
        conn = self.connection()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        if conn.in_transaction:
            raise RuntimeError("cannot write inside Catalog.snapshot(); start the transaction first")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise LibraryError(
                f"The catalog {self.path} is busy ({e}): another LadderLens may be indexing it. "
                "Try again later."
            ) from e
        self._local.depth = 1
        try:
            yield conn
        except BaseException as exc:
            with suppress(sqlite3.Error):  # a failed statement may have ended the transaction already
                conn.execute("ROLLBACK")
            if _is_storage_failure(exc):
                raise storage_error(exc, self.path) from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise storage_error(e, self.path) from e
        finally:
            self._local.depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state (or joins the
        transaction this thread is already in)."""
        conn = self.connection()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        except BaseException:
            # SQLite may have ended the transaction already (an I/O error): the error that got here
            # is the one to report, not a failed ROLLBACK.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if conn.in_transaction:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection of every thread. The catalog cannot be used afterwards."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error as e:  # pragma: no cover - closing never fails in practice
                logger.debug("closing a catalog connection: %s", e)
        self._local = threading.local()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema

    def _migrate(self, conn: sqlite3.Connection) -> None:
        target = len(MIGRATIONS)
        try:
            with self.snapshot():  # one state: another process may be creating the schema right now
                version = self._check_header(conn, target)
            if version == target:
                return
            with self.transaction():
                version = self._check_header(conn, target)  # another process may have migrated meanwhile
                for step in range(version, target):
                    logger.info("migrating catalog %s from schema %d to %d", self.path, step, step + 1)
                    MIGRATIONS[step](conn)
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.DatabaseError as e:
            raise LibraryError(f"Cannot open or upgrade the catalog {self.path}: {e}.") from e
        except LibraryError as e:  # a storage failure inside the upgrade's transaction
            cause = e.__cause__ if isinstance(e.__cause__, sqlite3.DatabaseError) else e
            raise LibraryError(f"Cannot open or upgrade the catalog {self.path}: {cause}.") from e

    def _check_header(self, conn: sqlite3.Connection, target: int) -> int:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (
            app_id == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        ):
            raise LibraryError(
                f"{self.path} is a database of another program, not a LadderLens catalog. "
                "Choose another library folder."
            )
        if version > target:
            raise LibraryError(
                f"The catalog {self.path} was written by a newer version of LadderLens (schema {version}; "
                f"this version reads up to {target}). Update LadderLens, or choose another library folder."
            )
        return version

    @property
    def schema_version(self) -> int:
        return self.connection().execute("PRAGMA user_version").fetchone()[0]

    # -- meta

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        """Store a library-wide setting; None removes it."""
        with self.transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    # -- folders

    def add_folder(self, path: str | os.PathLike[str], excludes: Iterable[str] = ()) -> Folder:
        """Add a library root; adding it again returns it unchanged.

        A folder that contains existing roots takes them over (their photos stay, now under the new
        root). A folder inside an existing root is refused: its photos are already in the library.

        Raises:
            FolderError: the folder is inside an existing root.
        """
        path = _normalise(path)
        excludes_json = json.dumps(list(excludes))
        with self.transaction() as conn:
            existing = self.folders()
            for folder in existing:
                if folder.path == path:
                    return folder
                if _is_under(path, folder.path):
                    raise FolderError(f"{path} is already in the library, inside {folder.path}.")
            cursor = conn.execute(
                "INSERT INTO folders(path, added, excludes) VALUES (?, ?, ?)",
                (_db_path(path), time.time(), excludes_json),
            )
            folder_id = cursor.lastrowid
            inner = [folder.id for folder in existing if _is_under(folder.path, path)]
            for old_id in inner:
                conn.execute("UPDATE photos SET folder_id = ? WHERE folder_id = ?", (folder_id, old_id))
                conn.execute("UPDATE failures SET folder_id = ? WHERE folder_id = ?", (folder_id, old_id))
                conn.execute("DELETE FROM folders WHERE id = ?", (old_id,))
            if inner:
                logger.info("folder %s takes over %d library folders inside it", path, len(inner))
            return self.folder(folder_id)

    def remove_folder(self, folder_id: int) -> list[int]:
        """Remove a root with its photos and failures; returns the removed photo ids.

        Vectors stay (keyed by content) until compaction, so adding the folder back is quick.
        """
        with self.transaction() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM photos WHERE folder_id = ?", (folder_id,))]
            conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))  # cascades to photos, failures
        return ids

    def relocate_folder(self, folder_id: int, new_path: str | os.PathLike[str]) -> Folder:
        """Point a root at the place its files moved to; its photos' and failures' paths follow.

        Photos keep their ids (and so their vectors, tags and profile entries).

        Raises:
            FolderError: the new place is, contains or is inside another library folder.
        """
        new = _normalise(new_path)
        with self.transaction() as conn:
            folder = self.folder(folder_id)
            for other in self.folders():
                if other.id != folder_id and (_is_under(new, other.path) or _is_under(other.path, new)):
                    raise FolderError(f"{new} overlaps the library folder {other.path}.")
            old = folder.path
            for table in ("photos", "failures"):
                rows = conn.execute(
                    f"SELECT id, path FROM {table} WHERE folder_id = ?", (folder_id,)
                ).fetchall()
                conn.executemany(
                    f"UPDATE {table} SET path = ? WHERE id = ?",
                    (
                        (_db_path(new + _py_path(path)[len(old) :]), row_id)
                        for row_id, path in rows
                        if _is_under(_py_path(path), old)
                    ),
                )
            conn.execute(
                "UPDATE folders SET path = ?, state = 'online' WHERE id = ?", (_db_path(new), folder_id)
            )
        logger.info("library folder %s moved to %s", old, new)
        return self.folder(folder_id)

    def folders_of_hashes(self, hashes: Iterable[str]) -> dict[int, int]:
        """For content hashes, how many photos of each root (by id) have them."""
        counts: dict[int, int] = {}
        conn = self.connection()
        for chunk in _chunks(list(dict.fromkeys(hashes))):
            marks = ",".join("?" * len(chunk))
            for folder_id, n in conn.execute(
                f"SELECT folder_id, COUNT(DISTINCT content_hash) FROM photos WHERE content_hash IN ({marks}) "
                "GROUP BY folder_id",
                list(chunk),
            ):
                counts[folder_id] = counts.get(folder_id, 0) + n
        return counts

    def folders(self) -> list[Folder]:
        rows = self.connection().execute(f"SELECT {_FOLDER_COLUMNS} FROM folders ORDER BY id")
        return [_folder(row) for row in rows]

    def folder(self, folder_id: int) -> Folder:
        """Raises: FolderError: no such folder."""
        row = (
            self.connection()
            .execute(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,))
            .fetchone()
        )
        if row is None:
            raise FolderError(f"No library folder with id {folder_id}.")
        return _folder(row)

    def folder_by_path(self, path: str | os.PathLike[str]) -> Folder | None:
        row = (
            self.connection()
            .execute(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE path = ?", (_db_path(_normalise(path)),))
            .fetchone()
        )
        return None if row is None else _folder(row)

    def set_folder_state(self, folder_id: int, state: FolderState) -> None:
        """Mark a root online or offline (its drive unplugged: its photos are kept, not swept)."""
        if state not in ("online", "offline"):
            raise ValueError(f"folder state must be 'online' or 'offline', not {state!r}")
        with self.transaction() as conn:
            conn.execute("UPDATE folders SET state = ? WHERE id = ?", (state, folder_id))

    def set_folder_excludes(self, folder_id: int, excludes: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE folders SET excludes = ? WHERE id = ?", (json.dumps(list(excludes)), folder_id)
            )

    # -- mark and sweep

    def begin_scan(self, folder_id: int) -> int:
        """Start a scan of a root; returns its scan id.

        During the scan, :meth:`upsert_photos`, :meth:`record_failure` and :meth:`mark_seen` mark the
        files found; :meth:`sweep` then removes the photos and failures of the root that were not.
        """
        with self.transaction() as conn:
            conn.execute("UPDATE folders SET scan_id = scan_id + 1 WHERE id = ?", (folder_id,))
            return self._scan_id(conn, folder_id)

    def _scan_id(self, conn: sqlite3.Connection, folder_id: int | None) -> int:
        if folder_id is None:
            return 0
        row = conn.execute("SELECT scan_id FROM folders WHERE id = ?", (folder_id,)).fetchone()
        if row is None:
            raise FolderError(f"No library folder with id {folder_id}.")
        return row[0]

    def mark_seen(
        self, folder_id: int, photo_ids: Iterable[int] = (), failure_paths: Iterable[str] = ()
    ) -> None:
        """Mark unchanged photos (by id) and unchanged failed files (by path) as found by the current scan."""
        with self.transaction() as conn:
            scan_id = self._scan_id(conn, folder_id)
            conn.executemany(
                "UPDATE photos SET seen_scan = ? WHERE id = ? AND folder_id = ?",
                ((scan_id, photo_id, folder_id) for photo_id in photo_ids),
            )
            conn.executemany(
                "UPDATE failures SET seen_scan = ? WHERE path = ?",
                ((scan_id, _db_path(_normalise(path))) for path in failure_paths),
            )

    def sweep(self, folder_id: int, scan_id: int, keep_prefixes: Iterable[str] = ()) -> list[int]:
        """Delete the photos and failures of a root that scan ``scan_id`` did not find; return the photo ids.

        Nothing is deleted when the root is offline (its drive is unplugged: the photos still exist).
        Photos under ``keep_prefixes`` (sub-folders the scan could not read) are kept too, and so
        are rows a later scan of the root marked (a scan that began after this one saw them).
        """
        keep = [_normalise(prefix) for prefix in keep_prefixes]
        with self.transaction() as conn:
            folder = self.folder(folder_id)
            if folder.state != "online":
                logger.info("not sweeping %s: the folder is offline", folder.path)
                return []
            stale = [
                (row[0], _py_path(row[1]))
                for row in conn.execute(
                    "SELECT id, path FROM photos WHERE folder_id = ? AND seen_scan < ?", (folder_id, scan_id)
                )
            ]
            gone = [photo_id for photo_id, path in stale if not any(_is_under(path, k) for k in keep)]
            for chunk in _chunks(gone):
                conn.execute(f"DELETE FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            failures = [
                _py_path(row[0])
                for row in conn.execute(
                    "SELECT path FROM failures WHERE folder_id = ? AND seen_scan < ?", (folder_id, scan_id)
                )
            ]
            conn.executemany(
                "DELETE FROM failures WHERE path = ?",
                ((_db_path(path),) for path in failures if not any(_is_under(path, k) for k in keep)),
            )
            conn.execute("UPDATE folders SET last_scan = ? WHERE id = ?", (time.time(), folder_id))
        if gone:
            logger.info("swept %d photos no longer in %s", len(gone), folder.path)
        return gone

    # -- photos

    def upsert_photos(self, folder_id: int, entries: Iterable[PhotoEntry]) -> list[int]:
        """Insert or update photos (matched by path) in one transaction; returns their ids in order.

        The photos are marked as found by the folder's current scan, and any failure recorded for
        their paths is cleared.
        """
        now = time.time()
        ids: list[int] = []
        with self.transaction() as conn:
            scan_id = self._scan_id(conn, folder_id)
            for entry in entries:
                path = _db_path(_normalise(entry.path))
                row = conn.execute(
                    """INSERT INTO photos(folder_id, path, size, mtime_ns, content_hash, width, height,
                                          taken_at, orientation, indexed_at, seen_scan)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET
                           folder_id = excluded.folder_id, size = excluded.size, mtime_ns = excluded.mtime_ns,
                           content_hash = excluded.content_hash, width = excluded.width,
                           height = excluded.height, taken_at = excluded.taken_at,
                           orientation = excluded.orientation, indexed_at = excluded.indexed_at,
                           seen_scan = excluded.seen_scan
                       RETURNING id""",
                    (
                        folder_id,
                        path,
                        entry.size,
                        entry.mtime_ns,
                        entry.content_hash,
                        entry.width,
                        entry.height,
                        entry.taken_at,
                        entry.orientation,
                        now,
                        scan_id,
                    ),
                ).fetchone()
                ids.append(row[0])
                conn.execute("DELETE FROM failures WHERE path = ?", (path,))
        return ids

    def remove_photos(self, photo_ids: Iterable[int]) -> None:
        ids = list(photo_ids)
        with self.transaction() as conn:
            for chunk in _chunks(ids):
                conn.execute(f"DELETE FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def photo_by_path(self, path: str | os.PathLike[str]) -> Photo | None:
        row = (
            self.connection()
            .execute(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE path = ?", (_db_path(_normalise(path)),))
            .fetchone()
        )
        return None if row is None else _photo(row)

    def photos_by_hash(self, content_hash: str) -> list[Photo]:
        """Every photo with this content (duplicates, or the old entry of a moved file)."""
        rows = self.connection().execute(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE content_hash = ? ORDER BY id", (content_hash,)
        )
        return [_photo(row) for row in rows]

    def photos(self, photo_ids: Iterable[int]) -> dict[int, Photo]:
        """Photos by id (ids no longer in the catalog are absent from the result)."""
        ids = list(photo_ids)
        found: dict[int, Photo] = {}
        conn = self.connection()
        for chunk in _chunks(ids):
            rows = conn.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((row[0], _photo(row)) for row in rows)
        return found

    def folder_photos(self, folder_id: int) -> dict[str, Photo]:
        """All photos of a root by path: what a scan compares its (size, mtime) against."""
        rows = self.connection().execute(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE folder_id = ?", (folder_id,)
        )
        return {photo.path: photo for photo in map(_photo, rows)}

    def folder_file_states(self, folder_id: int) -> dict[str, FileState]:
        """``path -> FileState(id, size, mtime_ns, content_hash)`` of a root: what a re-scan compares.

        Lighter than :meth:`folder_photos` (no full rows), for libraries of many photos.
        """
        rows = self.connection().execute(
            "SELECT path, id, size, mtime_ns, content_hash FROM photos WHERE folder_id = ?", (folder_id,)
        )
        return {_py_path(row[0]): FileState(*row[1:]) for row in rows}

    def mark_all_seen(self, folder_id: int, except_ids: Iterable[int] = ()) -> None:
        """Mark every photo of a root found by the current scan, but ``except_ids``.

        One statement instead of one per photo: a re-scan marks what did not change this way, and
        leaves out the few photos that vanished or changed (they are swept or updated).
        """
        skip = sorted(set(except_ids))
        with self.transaction() as conn:
            scan_id = self._scan_id(conn, folder_id)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS _skip_ids(id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM _skip_ids")
            conn.executemany("INSERT OR IGNORE INTO _skip_ids(id) VALUES (?)", ((i,) for i in skip))
            conn.execute(
                "UPDATE photos SET seen_scan = ? "
                "WHERE folder_id = ? AND id NOT IN (SELECT id FROM _skip_ids)",
                (scan_id, folder_id),
            )
            conn.execute("DELETE FROM _skip_ids")

    def photo_count(self, folder_id: int | None = None) -> int:
        if folder_id is None:
            return self.connection().execute("SELECT count(*) FROM photos").fetchone()[0]
        return (
            self.connection()
            .execute("SELECT count(*) FROM photos WHERE folder_id = ?", (folder_id,))
            .fetchone()[0]
        )

    # -- failures

    def content_hashes(self, photo_ids: Iterable[int]) -> dict[int, str]:
        """The content hash of each photo id (ids not in the catalog are absent)."""
        wanted = {int(i) for i in photo_ids}
        rows = self.connection().execute("SELECT id, content_hash FROM photos")
        return {pid: h for pid, h in rows if pid in wanted}

    def photo_ids_where(
        self,
        folder_ids: Iterable[int] | None = None,
        taken_from: str | None = None,
        taken_to: str | None = None,
    ) -> list[int]:
        """Sorted ids of the photos in ``folder_ids`` (None: any) taken from ``taken_from`` to
        ``taken_to`` (ISO dates, inclusive; None: open). A photo without an EXIF date counts by
        its file's modification date (local time)."""
        where, params = _photo_filter_sql(folder_ids, taken_from, taken_to)
        rows = self.connection().execute(f"SELECT id FROM photos p{where} ORDER BY id", params)
        return [r[0] for r in rows]

    def browse(
        self,
        order: Literal["date", "folder"] = "date",
        folder_ids: Iterable[int] | None = None,
        taken_from: str | None = None,
        taken_to: str | None = None,
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[BrowsedPhoto], int]:
        """A page of the photos (filtered as :meth:`photo_ids_where`), newest first or by folder
        and name, and how many there are in all."""
        where, params = _photo_filter_sql(folder_ids, taken_from, taken_to)
        sort = f"{_DAY} DESC, p.taken_at DESC, p.path" if order == "date" else "f.path, p.path"
        conn = self.connection()
        total = conn.execute(f"SELECT count(*) FROM photos p{where}", params).fetchone()[0]
        rows = conn.execute(
            f"SELECT p.id, p.path, {_DAY}, f.path FROM photos p JOIN folders f ON f.id = p.folder_id"
            f"{where} ORDER BY {sort} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [BrowsedPhoto(*r) for r in rows], int(total)

    def photos_without_vectors(self, model_id: int) -> int:
        """How many photos have no vector of the model ``model_id`` (by content)."""
        row = (
            self.connection()
            .execute(
                """SELECT count(*) FROM photos p WHERE NOT EXISTS
                   (SELECT 1 FROM embeddings e WHERE e.model_id = ? AND e.content_hash = p.content_hash)""",
                (model_id,),
            )
            .fetchone()
        )
        return int(row[0])

    def record_failure(
        self,
        path: str,
        reason: str,
        *,
        folder_id: int | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> None:
        """Record (or update) why a file could not be indexed; marks it found by the current scan.

        Batch many calls inside one :meth:`transaction` for speed.
        """
        with self.transaction() as conn:
            scan_id = self._scan_id(conn, folder_id)
            conn.execute(
                """INSERT INTO failures(path, folder_id, reason, size, mtime_ns, "when", seen_scan)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id, reason = excluded.reason,
                       size = excluded.size, mtime_ns = excluded.mtime_ns, "when" = excluded."when",
                       seen_scan = excluded.seen_scan""",
                (_db_path(_normalise(path)), folder_id, reason, size, mtime_ns, time.time(), scan_id),
            )

    def clear_failures(self, paths: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM failures WHERE path = ?", ((_db_path(_normalise(p)),) for p in paths)
            )

    def failure(self, path: str | os.PathLike[str]) -> Failure | None:
        """The failure recorded for a file; compare its (size, mtime_ns) to skip an unchanged file."""
        row = (
            self.connection()
            .execute(f"SELECT {_FAILURE_COLUMNS} FROM failures WHERE path = ?", (_db_path(_normalise(path)),))
            .fetchone()
        )
        return None if row is None else _failure(row)

    def failures(self, folder_id: int | None = None) -> list[Failure]:
        """Recorded failures, newest first; of one root when ``folder_id`` is given."""
        if folder_id is None:
            rows = self.connection().execute(
                f'SELECT {_FAILURE_COLUMNS} FROM failures ORDER BY "when" DESC, id'
            )
        else:
            rows = self.connection().execute(
                f'SELECT {_FAILURE_COLUMNS} FROM failures WHERE folder_id = ? ORDER BY "when" DESC, id',
                (folder_id,),
            )
        return [_failure(row) for row in rows]

    # -- counts

    def folder_counts(self, model_id: int | None = None) -> dict[int, FolderCounts]:
        """Photos, failures and (for ``model_id``) photos with a vector, for every root."""
        conn = self.connection()
        photos = dict(conn.execute("SELECT folder_id, count(*) FROM photos GROUP BY folder_id").fetchall())
        failures = dict(
            conn.execute(
                "SELECT folder_id, count(*) FROM failures WHERE folder_id IS NOT NULL GROUP BY folder_id"
            )
        )
        with_vectors: dict[int, int] = {}
        if model_id is not None:
            with_vectors = dict(
                conn.execute(
                    """SELECT p.folder_id, count(*) FROM photos p
                       JOIN embeddings e ON e.model_id = ? AND e.content_hash = p.content_hash
                       GROUP BY p.folder_id""",
                    (model_id,),
                )
            )
        return {
            folder.id: FolderCounts(
                photos.get(folder.id, 0),
                failures.get(folder.id, 0),
                None if model_id is None else with_vectors.get(folder.id, 0),
            )
            for folder in self.folders()
        }

    # -- models

    def model_id(self, identity: Any, dim: int) -> int:
        """The id of a model identity, registering it on first use.

        Args:
            identity: a ``ModelIdentity``, a mapping (arch, weights, adapter, optional key) or a key.
            dim: the embedding width of the model.

        Raises:
            LibraryError: the identity is registered with another width (its stored vectors would not fit).
        """
        key, arch, weights, adapter = identity_fields(identity)
        if dim <= 0:
            raise ValueError(f"embedding width must be positive, not {dim}")
        conn = self.connection()
        row = conn.execute("SELECT id, dim FROM models WHERE key = ?", (key,)).fetchone()
        if row is None:
            with self.transaction() as conn:
                conn.execute(
                    """INSERT INTO models(key, arch, weights, adapter, dim, created) VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT(key) DO NOTHING""",
                    (key, arch, weights, adapter, dim, time.time()),
                )
                row = conn.execute("SELECT id, dim FROM models WHERE key = ?", (key,)).fetchone()
        if row[1] != dim:
            raise LibraryError(
                f"The model {key} is recorded with {row[1]}-dimensional vectors, not {dim}: "
                "the model file changed under the same name. Give it a new name, or remove its vectors."
            )
        return row[0]

    def model(self, model_id: int) -> ModelRecord:
        row = (
            self.connection()
            .execute(f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,))
            .fetchone()
        )
        if row is None:
            raise LibraryError(f"No model with id {model_id} in the catalog.")
        return ModelRecord(*row)

    def models(self) -> list[ModelRecord]:
        return [
            ModelRecord(*row)
            for row in self.connection().execute(f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY id")
        ]

    def delete_model(self, model_id: int) -> None:
        """Forget a model and its vector rows (the vector file is removed by ``VectorStore.drop``)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
