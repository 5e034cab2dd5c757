from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from pathlib import Path

import pytest

import core.catalog as catalog_module
from core.catalog import SCHEMA_VERSION, Catalog, FolderCounts, PhotoEntry
from core.errors import FolderError, LibraryError
from tests.core.together import run_together

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "lib" / "catalog.sqlite") as cat:
        yield cat


def entry(path, content_hash="h", size=10, mtime_ns=1, **kwargs) -> PhotoEntry:
    return PhotoEntry(str(path), size, mtime_ns, content_hash, **kwargs)


# ------------------------------------------------------------------------------------ the database


def test_new_catalog_uses_wal_foreign_keys_and_the_current_schema(catalog):
    conn = catalog.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert catalog.schema_version == SCHEMA_VERSION >= 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "folders", "photos", "failures", "models", "embeddings"} <= tables


def test_reopening_keeps_everything(tmp_path):
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as cat:
        folder = cat.add_folder(tmp_path / "photos", excludes=["raw*"])
        cat.upsert_photos(
            folder.id,
            [entry(tmp_path / "photos" / "a.jpg", width=4, height=3, taken_at="2020-01-01T10:00:00")],
        )
        cat.set_meta("active_model", "starter")
    with Catalog(db) as cat:
        assert cat.folders() == [cat.folder(folder.id)]
        assert cat.folder(folder.id).excludes == ("raw*",)
        photo = cat.photo_by_path(tmp_path / "photos" / "a.jpg")
        assert (photo.width, photo.height, photo.taken_at) == (4, 3, "2020-01-01T10:00:00")
        assert cat.get_meta("active_model") == "starter"
        assert cat.get_meta("missing", "default") == "default"


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "catalog.sqlite"
    Catalog(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LibraryError, match="newer version of LadderLens"):
        Catalog(db)


def test_not_a_database_and_a_foreign_database_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a LadderLens catalog"):
        Catalog(junk)
    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="another program"):
        Catalog(foreign)


def _make_v1(db: Path) -> None:
    """A catalog at schema 1 written by the first migration alone, with a little data in it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    catalog_module.MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {catalog_module.APPLICATION_ID}")
    conn.execute("INSERT INTO folders(path, added) VALUES ('/photos', 1.0)")
    conn.execute(
        "INSERT INTO photos(folder_id, path, size, mtime_ns, content_hash, indexed_at) "
        "VALUES (1, '/photos/a.jpg', 5, 7, 'abc', 2.0)"
    )
    conn.execute("COMMIT")
    conn.close()


def test_migration_ladder_climbs_from_version_1(tmp_path, monkeypatch):
    db = tmp_path / "catalog.sqlite"
    _make_v1(db)

    def to_2(conn):
        conn.execute("ALTER TABLE photos ADD COLUMN rating INTEGER NOT NULL DEFAULT 0")

    def to_3(conn):
        conn.execute("UPDATE photos SET rating = 3")
        conn.execute("CREATE TABLE tags (photo_id INTEGER REFERENCES photos(id) ON DELETE CASCADE, tag TEXT)")

    # The real ladder runs first (from version 1), then the two added steps.
    latest = len(catalog_module.MIGRATIONS) + 2
    monkeypatch.setattr(catalog_module, "MIGRATIONS", [*catalog_module.MIGRATIONS, to_2, to_3])
    with Catalog(db) as cat:
        assert cat.schema_version == latest
        photo = cat.photo_by_path("/photos/a.jpg")
        assert (photo.size, photo.mtime_ns, photo.content_hash) == (5, 7, "abc")
        assert cat.connection().execute("SELECT rating FROM photos").fetchone()[0] == 3
    with Catalog(db) as cat:  # already current: nothing runs again
        assert cat.schema_version == latest


def test_a_failing_migration_leaves_the_catalog_as_it_was(tmp_path, monkeypatch):
    db = tmp_path / "catalog.sqlite"
    _make_v1(db)

    def broken(conn):
        conn.execute("ALTER TABLE photos ADD COLUMN rating INTEGER")
        raise sqlite3.OperationalError("disk I/O error")

    # Each step commits on its own: the real steps stick, the failing one leaves no trace.
    last_good = len(catalog_module.MIGRATIONS)
    monkeypatch.setattr(catalog_module, "MIGRATIONS", [*catalog_module.MIGRATIONS, broken])
    with pytest.raises(LibraryError, match="upgrade"):
        Catalog(db)
    monkeypatch.undo()
    with Catalog(db) as cat:
        assert cat.schema_version == last_good
        columns = {row[1] for row in cat.connection().execute("PRAGMA table_info(photos)")}
        assert "rating" not in columns
        assert cat.photo_by_path("/photos/a.jpg") is not None


# --------------------------------------------------------------------------------------- folders


def test_folders_add_list_state_excludes_remove(catalog, tmp_path):
    a = catalog.add_folder(tmp_path / "a")
    b = catalog.add_folder(str(tmp_path / "b") + os.sep, excludes=["*.tmp"])
    assert catalog.add_folder(tmp_path / "a") == a  # idempotent
    assert [f.path for f in catalog.folders()] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert a.state == "online" and a.last_scan is None and b.excludes == ("*.tmp",)
    catalog.set_folder_state(b.id, "offline")
    catalog.set_folder_excludes(b.id, ["raw"])
    assert catalog.folder(b.id).state == "offline" and catalog.folder(b.id).excludes == ("raw",)
    assert catalog.folder_by_path(tmp_path / "b").id == b.id
    with pytest.raises(ValueError):
        catalog.set_folder_state(b.id, "gone")
    catalog.upsert_photos(b.id, [entry(tmp_path / "b" / "1.jpg"), entry(tmp_path / "b" / "2.jpg")])
    catalog.record_failure(str(tmp_path / "b" / "bad.jpg"), "not an image", folder_id=b.id)
    removed = catalog.remove_folder(b.id)
    assert len(removed) == 2
    assert catalog.photo_count() == 0 and catalog.failures() == []
    assert [f.id for f in catalog.folders()] == [a.id]
    with pytest.raises(FolderError):
        catalog.folder(b.id)


def test_nested_folders(catalog, tmp_path):
    inner = catalog.add_folder(tmp_path / "photos" / "2019")
    catalog.upsert_photos(inner.id, [entry(tmp_path / "photos" / "2019" / "a.jpg")])
    with pytest.raises(FolderError, match="already in the library"):
        catalog.add_folder(tmp_path / "photos" / "2019" / "summer")
    catalog.add_folder(tmp_path / "photos-other")  # a name prefix is not a parent
    outer = catalog.add_folder(tmp_path / "photos")
    assert {f.path for f in catalog.folders()} == {str(tmp_path / "photos"), str(tmp_path / "photos-other")}
    assert catalog.photo_by_path(tmp_path / "photos" / "2019" / "a.jpg").folder_id == outer.id


# ---------------------------------------------------------------------------------------- photos


def test_upsert_in_a_batch_and_look_up(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    ids = catalog.upsert_photos(
        folder.id,
        [
            entry(tmp_path / "a.jpg", "h1"),
            entry(tmp_path / "b.jpg", "h2"),
            entry(tmp_path / "copy of a.jpg", "h1"),
        ],
    )
    assert len(set(ids)) == 3
    assert catalog.photo_by_path(tmp_path / "b.jpg").id == ids[1]
    assert [p.id for p in catalog.photos_by_hash("h1")] == [ids[0], ids[2]]
    assert catalog.photos_by_hash("nope") == []
    assert set(catalog.photos([ids[0], ids[1], 999_999])) == {ids[0], ids[1]}
    assert set(catalog.folder_photos(folder.id)) == {
        str(tmp_path / n) for n in ("a.jpg", "b.jpg", "copy of a.jpg")
    }
    # The same path again updates the row in place (the file was edited).
    again = catalog.upsert_photos(
        folder.id, [entry(tmp_path / "a.jpg", "h3", size=20, mtime_ns=2, orientation=6)]
    )
    assert again == [ids[0]]
    photo = catalog.photo_by_path(tmp_path / "a.jpg")
    assert (photo.content_hash, photo.size, photo.mtime_ns, photo.orientation) == ("h3", 20, 2, 6)
    assert catalog.photo_count() == 3 and catalog.photo_count(folder.id) == 3
    catalog.remove_photos([ids[1]])
    assert catalog.photo_by_path(tmp_path / "b.jpg") is None


def test_a_failed_batch_writes_nothing(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    good = entry(tmp_path / "a.jpg")
    bad = PhotoEntry(str(tmp_path / "b.jpg"), None, 1, "h")  # size is required
    with pytest.raises(sqlite3.IntegrityError):
        catalog.upsert_photos(folder.id, [good, bad])
    assert catalog.photo_count() == 0


def test_unicode_and_undecodable_paths_round_trip(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    names = ["写真 🌅.jpg", "e\u0301te\u0301.jpg", os.fsdecode(b"caf\xe9.jpg")]
    paths = [str(tmp_path / name) for name in names]
    ids = catalog.upsert_photos(folder.id, [entry(p, f"h{i}") for i, p in enumerate(paths)])
    for photo_id, path in zip(ids, paths, strict=True):
        assert catalog.photo_by_path(path).id == photo_id
        assert catalog.photos([photo_id])[photo_id].path == path
    catalog.record_failure(paths[2], "truncated file", folder_id=folder.id)
    assert catalog.failure(paths[2]).path == paths[2]


# --------------------------------------------------------------------------------- mark and sweep


def test_mark_and_sweep_removes_what_the_scan_did_not_find(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    ids = catalog.upsert_photos(folder.id, [entry(tmp_path / f"{n}.jpg", n) for n in "abcd"])
    catalog.record_failure(str(tmp_path / "bad.jpg"), "not an image", folder_id=folder.id)
    catalog.record_failure(str(tmp_path / "gone-bad.jpg"), "not an image", folder_id=folder.id)

    scan = catalog.begin_scan(folder.id)
    catalog.mark_seen(folder.id, photo_ids=[ids[0]], failure_paths=[str(tmp_path / "bad.jpg")])  # unchanged
    catalog.upsert_photos(folder.id, [entry(tmp_path / "b.jpg", "b2")])  # changed
    new = catalog.upsert_photos(folder.id, [entry(tmp_path / "e.jpg", "e")])  # new
    swept = catalog.sweep(folder.id, scan)

    assert sorted(swept) == sorted([ids[2], ids[3]])
    assert set(catalog.folder_photos(folder.id)) == {str(tmp_path / n) for n in ("a.jpg", "b.jpg", "e.jpg")}
    assert catalog.photo_by_path(tmp_path / "e.jpg").id == new[0]
    assert [f.path for f in catalog.failures()] == [str(tmp_path / "bad.jpg")]
    assert catalog.folder(folder.id).last_scan is not None


def test_an_offline_folder_keeps_its_photos(catalog, tmp_path):
    online = catalog.add_folder(tmp_path / "online")
    offline = catalog.add_folder(tmp_path / "usb")
    catalog.upsert_photos(online.id, [entry(tmp_path / "online" / "a.jpg")])
    catalog.upsert_photos(offline.id, [entry(tmp_path / "usb" / "b.jpg")])
    catalog.set_folder_state(offline.id, "offline")
    assert catalog.sweep(offline.id, catalog.begin_scan(offline.id)) == []
    assert catalog.photo_count(offline.id) == 1
    assert len(catalog.sweep(online.id, catalog.begin_scan(online.id))) == 1
    assert catalog.photo_count(online.id) == 0


def test_sweep_keeps_photos_under_folders_the_scan_could_not_read(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    catalog.upsert_photos(
        folder.id,
        [
            entry(tmp_path / "locked" / "a.jpg"),
            entry(tmp_path / "locked" / "deep" / "b.jpg"),
            entry(tmp_path / "locked-not" / "c.jpg"),
            entry(tmp_path / "d.jpg"),
        ],
    )
    scan = catalog.begin_scan(folder.id)
    swept = catalog.sweep(folder.id, scan, keep_prefixes=[str(tmp_path / "locked")])
    assert len(swept) == 2
    assert set(catalog.folder_photos(folder.id)) == {
        str(tmp_path / "locked" / "a.jpg"),
        str(tmp_path / "locked" / "deep" / "b.jpg"),
    }


# -------------------------------------------------------------------------------------- failures


def test_failures_record_update_clear(catalog, tmp_path):
    folder = catalog.add_folder(tmp_path)
    path = str(tmp_path / "x.jpg")
    catalog.record_failure(path, "truncated file", folder_id=folder.id, size=10, mtime_ns=5)
    failure = catalog.failure(path)
    assert (failure.reason, failure.size, failure.mtime_ns, failure.folder_id) == (
        "truncated file",
        10,
        5,
        folder.id,
    )
    catalog.record_failure(path, "not an image", folder_id=folder.id, size=11, mtime_ns=6)
    assert [(f.reason, f.size) for f in catalog.failures(folder.id)] == [("not an image", 11)]
    with catalog.transaction():  # many at once
        for i in range(3):
            catalog.record_failure(str(tmp_path / f"{i}.jpg"), "empty file", folder_id=folder.id)
    assert len(catalog.failures()) == 4
    catalog.clear_failures([path])
    assert catalog.failure(path) is None and len(catalog.failures(folder.id)) == 3
    # A file that decodes now clears its failure.
    catalog.upsert_photos(folder.id, [entry(tmp_path / "0.jpg")])
    assert catalog.failure(tmp_path / "0.jpg") is None


def test_folder_counts(catalog, tmp_path):
    a = catalog.add_folder(tmp_path / "a")
    b = catalog.add_folder(tmp_path / "b")
    catalog.upsert_photos(
        a.id, [entry(tmp_path / "a" / "1.jpg", "h1"), entry(tmp_path / "a" / "2.jpg", "h2")]
    )
    catalog.record_failure(str(tmp_path / "b" / "x.jpg"), "empty file", folder_id=b.id)
    model = catalog.model_id({"arch": "tiny", "weights": "w"}, 4)
    with catalog.transaction() as conn:
        conn.execute("INSERT INTO embeddings(model_id, content_hash, row) VALUES (?, 'h1', 0)", (model,))
    assert catalog.folder_counts() == {a.id: FolderCounts(2, 0, None), b.id: FolderCounts(0, 1, None)}
    assert catalog.folder_counts(model) == {a.id: FolderCounts(2, 0, 1), b.id: FolderCounts(0, 1, 0)}


# ---------------------------------------------------------------------------------------- models


class _Identity:
    """Shaped like core.models.ModelIdentity."""

    key = "tiny-abc123"

    def to_dict(self):
        return {"arch": "tiny", "weights": "sha256:abc123", "adapter": None}


def test_model_ids_are_stable_per_identity_and_check_the_width(catalog):
    first = catalog.model_id(_Identity(), 32)
    assert catalog.model_id(_Identity(), 32) == first
    other = catalog.model_id({"arch": "tiny", "weights": "sha256:abc123", "adapter": "sha256:ff"}, 32)
    assert other != first
    assert catalog.model_id({"arch": "tiny", "weights": "sha256:abc123", "adapter": "sha256:ff"}, 32) == other
    record = catalog.model(first)
    assert (record.key, record.arch, record.weights, record.adapter, record.dim) == (
        "tiny-abc123",
        "tiny",
        "sha256:abc123",
        None,
        32,
    )
    assert [m.id for m in catalog.models()] == [first, other]
    with pytest.raises(LibraryError, match="32-dimensional"):
        catalog.model_id(_Identity(), 64)
    unsafe = catalog.model(catalog.model_id("hf-hub:org/model name", 8))
    assert "/" not in unsafe.key and " " not in unsafe.key
    catalog.delete_model(first)
    assert [m.id for m in catalog.models()] == [other, unsafe.id]


# ----------------------------------------------------------------------------- concurrency, crashes


def test_a_reader_is_not_blocked_by_a_writer(tmp_path):
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as writer, Catalog(db) as reader:
        folder = writer.add_folder(tmp_path)
        writer.upsert_photos(folder.id, [entry(tmp_path / "a.jpg")])
        with writer.transaction():
            writer.upsert_photos(folder.id, [entry(tmp_path / "b.jpg")])
            # Mid-transaction, another connection still reads the last committed state at once.
            assert reader.photo_count() == 1
        assert reader.photo_count() == 2


def test_a_second_writer_waits_instead_of_failing(tmp_path):
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as first, Catalog(db) as second:
        folder = first.add_folder(tmp_path)
        holding = threading.Event()
        release = threading.Event()
        errors = []

        def hold_write_lock():
            try:
                with first.transaction():
                    first.upsert_photos(folder.id, [entry(tmp_path / "a.jpg")])
                    holding.set()
                    release.wait(5)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        thread = threading.Thread(target=hold_write_lock)
        thread.start()
        assert holding.wait(5)
        threading.Timer(0.2, release.set).start()
        second.upsert_photos(folder.id, [entry(tmp_path / "b.jpg")])  # waits for the first to commit
        thread.join()
        assert errors == []
        assert second.photo_count() == 2


def test_busy_beyond_the_timeout_is_a_library_error(tmp_path):
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as first, Catalog(db, busy_timeout=0.05) as impatient:
        folder = first.add_folder(tmp_path)
        with first.transaction(), pytest.raises(LibraryError, match="busy"):
            impatient.upsert_photos(folder.id, [entry(tmp_path / "b.jpg")])


def _hold_write_lock_on_a_new_file(db: Path) -> sqlite3.Connection:
    """What another process creating the same catalog looks like: a rollback-mode file, locked."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE scratch(x)")
    return holder


def test_a_new_catalog_waits_for_another_process_creating_it(tmp_path):
    """SQLite answers the switch to WAL mode with SQLITE_BUSY at once while another connection
    writes a rollback-mode file, without waiting: the catalog waits for it all the same."""
    db = tmp_path / "catalog.sqlite"
    holder = _hold_write_lock_on_a_new_file(db)
    threading.Timer(0.3, lambda: (holder.execute("ROLLBACK"), holder.close())).start()
    with Catalog(db) as cat:
        assert cat.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cat.schema_version == SCHEMA_VERSION


def test_a_catalog_locked_past_the_timeout_is_busy_not_damaged(tmp_path):
    db = tmp_path / "catalog.sqlite"
    holder = _hold_write_lock_on_a_new_file(db)
    try:
        with pytest.raises(LibraryError, match="busy") as caught:
            Catalog(db, busy_timeout=0.2)
        assert "damaged" not in str(caught.value) and "move the whole folder away" not in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Catalog(db) as cat:  # nothing was harmed: it opens once the other connection is done
        assert cat.schema_version == SCHEMA_VERSION


def test_a_schema_created_meanwhile_is_not_taken_for_another_programs(tmp_path, monkeypatch):
    """Another process commits the new schema between two of this one's reads of the header: the
    header is read as one state, not as an unmarked file that already has tables."""
    db = tmp_path / "catalog.sqlite"
    with closing(sqlite3.connect(db)) as setup:
        setup.execute("PRAGMA journal_mode = WAL").fetchone()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for step in catalog_module.MIGRATIONS:
        step(other)
    other.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    other.execute(f"PRAGMA application_id = {catalog_module.APPLICATION_ID}")

    def commit_the_other(statement: str) -> None:
        if "sqlite_master" in statement and other.in_transaction:
            other.execute("COMMIT")

    connect = Catalog._connect

    def traced(self):
        conn = connect(self)
        conn.set_trace_callback(commit_the_other)
        return conn

    monkeypatch.setattr(Catalog, "_connect", traced)
    try:
        with Catalog(db) as cat:
            assert not other.in_transaction  # the interleaving happened
            assert cat.schema_version == SCHEMA_VERSION
    finally:
        other.close()


@pytest.mark.parametrize(
    ("message", "busy"),
    [("database is locked", True), ("database table is locked", True), ("disk I/O error", False)],
)
def test_busy_is_told_from_damage_also_without_an_error_code(message, busy):
    """Python 3.10's sqlite3 errors carry no error code: the message decides."""
    error = sqlite3.OperationalError(message)
    assert getattr(error, "sqlite_errorcode", None) is None
    assert catalog_module._is_busy(error) is busy


def test_an_error_inside_a_snapshot_is_the_one_reported(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        with pytest.raises(sqlite3.OperationalError, match="no such table"), cat.snapshot() as conn:
            conn.execute("ROLLBACK")  # SQLite may end the transaction itself, as on an I/O error
            conn.execute("SELECT * FROM missing")
        assert not cat.connection().in_transaction
        assert cat.schema_version == SCHEMA_VERSION  # the connection is still usable


_CREATE_IN_ROUNDS = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from core.catalog import Catalog
    from tests.core.together import start_together
    base, processes, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for r in range(rounds):
        folder = os.path.join(base, f"round-{r}")
        start_together(folder, processes, timeout=30)
        Catalog(os.path.join(folder, "catalog.sqlite")).close()
    """
)


def test_processes_creating_one_new_catalog_at_once_all_succeed(tmp_path):
    """Two apps (or an app and the command line) opening a library that does not exist yet."""
    processes, rounds = 3, 40
    arguments = [[str(REPO), str(tmp_path), str(processes), str(rounds)]] * processes
    run_together(_CREATE_IN_ROUNDS, arguments, timeout=120)
    for r in range(rounds):
        with Catalog(tmp_path / f"round-{r}" / "catalog.sqlite") as cat:
            assert cat.schema_version == SCHEMA_VERSION


def test_snapshot_sees_one_state_and_refuses_writes(tmp_path):
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as reader, Catalog(db) as writer:
        folder = writer.add_folder(tmp_path)
        writer.upsert_photos(folder.id, [entry(tmp_path / "a.jpg")])
        with reader.snapshot():
            assert reader.photo_count() == 1
            writer.upsert_photos(folder.id, [entry(tmp_path / "b.jpg")])
            assert reader.photo_count() == 1  # still the state the snapshot began with
            with pytest.raises(RuntimeError, match="snapshot"):
                reader.set_meta("k", "v")
        assert reader.photo_count() == 2


def test_one_catalog_shared_between_threads(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        folder = cat.add_folder(tmp_path)

        def work(n):
            for i in range(20):
                cat.upsert_photos(folder.id, [entry(tmp_path / f"{n}-{i}.jpg", f"{n}-{i}")])
                cat.photo_count()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cat.photo_count() == 60


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from core.catalog import Catalog, PhotoEntry
    cat = Catalog(sys.argv[1])
    folder = cat.add_folder("/photos")
    cat.upsert_photos(folder.id, [PhotoEntry(f"/photos/committed-{i}.jpg", 1, 1, "h") for i in range(100)])

    def entries():
        for i in range(100_000):
            if i == 5000:
                os.kill(os.getpid(), signal.SIGKILL)  # dies in the middle of the transaction
            yield PhotoEntry(f"/photos/lost-{i}.jpg", 1, 1, "h")

    cat.upsert_photos(folder.id, entries())
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_transaction_leaves_a_catalog_that_opens(tmp_path):
    db = tmp_path / "catalog.sqlite"
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(db), str(REPO)], capture_output=True, timeout=60
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    with Catalog(db) as cat:
        assert cat.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert cat.photo_count() == 100
        assert cat.photo_by_path("/photos/lost-0.jpg") is None
        cat.upsert_photos(cat.folders()[0].id, [entry("/photos/after.jpg")])
        assert cat.photo_count() == 101


def test_a_scan_never_sweeps_what_a_later_scan_of_the_root_found(catalog, tmp_path):
    """Two scans overlapping (two writers): the first one's sweep keeps the second one's photos."""
    folder = catalog.add_folder(tmp_path)
    first = catalog.begin_scan(folder.id)
    catalog.upsert_photos(folder.id, [entry(tmp_path / "a.jpg", "a")])  # found by the first scan
    second = catalog.begin_scan(folder.id)
    catalog.upsert_photos(folder.id, [entry(tmp_path / f"{n}.jpg", n) for n in "bcd"])  # the second's
    assert catalog.sweep(folder.id, first) == []
    assert len(catalog.folder_photos(folder.id)) == 4
    swept = catalog.sweep(folder.id, second)  # "a" was not seen by the second scan: it is gone
    left = catalog.folder_photos(folder.id)
    assert [str(tmp_path / f"{n}.jpg") in left for n in "abcd"] == [False, True, True, True]
    assert len(swept) == 1


def test_a_full_disk_is_a_clear_error_and_keeps_what_was_committed(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        folder = cat.add_folder(tmp_path)
        cat.upsert_photos(folder.id, [entry(tmp_path / "kept.jpg", "k")])
        pages = cat.connection().execute("PRAGMA page_count").fetchone()[0]
        cat.connection().execute(f"PRAGMA max_page_count = {pages}")  # no room for more: SQLITE_FULL
        many = [entry(tmp_path / f"{'x' * 200}{i}.jpg", f"h{i}") for i in range(2000)]
        with pytest.raises(LibraryError, match="is full: free some space"):
            cat.upsert_photos(folder.id, many)
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        assert list(cat.folder_photos(folder.id)) == [str(tmp_path / "kept.jpg")]


def test_a_damaged_catalog_page_is_a_clear_error(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as cat:
        folder = cat.add_folder(tmp_path)
        cat.upsert_photos(folder.id, [entry(tmp_path / f"{i:04d}.jpg", f"h{i}") for i in range(3000)])
    page = 4096
    data = bytearray(path.read_bytes())
    for offset in range(2 * page, len(data) - page, 7 * page):  # scribble over some pages (not the header)
        data[offset : offset + page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match="damaged") as info, Catalog(path) as cat:
        cat.upsert_photos(folder.id, [entry(tmp_path / f"{i:04d}.jpg", f"n{i}") for i in range(3000)])
    assert "sqlite3" in str(info.value) or "backup" in str(info.value)
