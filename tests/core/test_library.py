"""The library facade end to end: real SQLite, real hnswlib, real open_clip on a tiny model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import FolderError, LibraryError, QueryError
from core.library import Library
from core.scanner import ScannedFile
from tests.conftest import SEARCH_JSON_KEYS
from tests.core.imagefiles import write_empty, write_jpeg, write_png, write_text, write_truncated_jpeg
from tests.core.together import run_together

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    for i in range(12):
        write_jpeg(root / f"img_{i:02d}.jpg", (64, 48), seed=i)
    write_png(root / "trip" / "beach.png", (40, 30), seed=99)
    write_jpeg(root / "trip" / "Ünïcødé name ✓.JPG", (48, 64), seed=100)
    return root


@pytest.fixture
def lib(tmp_path, model):
    library = Library.open(tmp_path / "lib", model=model)
    yield library
    library.close()


def test_index_then_search_returns_graded_json(lib, photos):
    lib.add_folder(photos)
    report = lib.index()
    assert (report.embedded, report.failed, report.reused) == (14, 0, 0)

    result = lib.search("a red car at night", k=10)
    data = result.to_dict()
    assert set(data) == SEARCH_JSON_KEYS
    assert data["query"] == "a red car at night"
    assert len(data["results"]) == 10
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(os.path.isabs(r["path"]) and Path(r["path"]).is_file() for r in data["results"])
    tiers = data["tiers"]
    assert [t["rank"] for t in tiers] == list(range(len(tiers)))
    assert sum(t["count"] for t in tiers) == len(data["results"])
    # A result's tier indexes `tiers`; tiers are contiguous score bands, best first.
    for r in data["results"]:
        tier = tiers[r["tier"]]
        assert tier["min_score"] - 1e-6 <= r["score"] <= tier["max_score"] + 1e-6
    assert [r["tier"] for r in data["results"]] == sorted(r["tier"] for r in data["results"])


def test_rescan_of_unchanged_library_decodes_nothing(lib, photos, monkeypatch):
    lib.add_folder(photos)
    lib.index()
    import core.indexer

    def no_decode(*args, **kwargs):
        raise AssertionError("an unchanged file was decoded")

    monkeypatch.setattr(core.indexer, "open_image", no_decode)
    report = lib.index()
    assert (report.unchanged, report.embedded, report.failed) == (14, 0, 0)


def test_renamed_moved_and_duplicate_files_reuse_vectors(lib, photos, monkeypatch):
    lib.add_folder(photos)
    lib.index()
    before = lib.search("kite", k=50)
    vec_of = {Path(h.path).name: h.score for h in before.hits}
    (photos / "img_00.jpg").rename(photos / "renamed.jpg")
    (photos / "moved").mkdir()
    (photos / "img_01.jpg").rename(photos / "moved" / "img_01.jpg")
    shutil.copy2(photos / "img_02.jpg", photos / "copy of img_02.jpg")
    import core.indexer

    monkeypatch.setattr(core.indexer, "open_image", lambda *a, **k: pytest.fail("decoded a known photo"))
    report = lib.index()
    assert report.reused == 3 and report.embedded == 0
    assert report.removed == 2  # the old paths of the renamed and moved files
    after = {Path(h.path).name: h.score for h in lib.search("kite", k=50).hits}
    assert after["renamed.jpg"] == pytest.approx(vec_of["img_00.jpg"])
    assert after["copy of img_02.jpg"] == pytest.approx(after["img_02.jpg"])
    assert lib.status().photos == 15


def test_changed_file_is_re_embedded_and_vanished_file_swept(lib, photos):
    lib.add_folder(photos)
    lib.index()
    write_jpeg(photos / "img_03.jpg", (64, 48), seed=1234)
    os.utime(photos / "img_03.jpg", ns=(1, 1))
    (photos / "img_04.jpg").unlink()
    report = lib.index()
    assert report.embedded == 1 and report.removed == 1
    paths = {Path(h.path).name for h in lib.search("anything", k=100).hits}
    assert "img_04.jpg" not in paths and "img_03.jpg" in paths


def test_bad_files_are_recorded_and_do_not_stop_the_run(lib, photos):
    write_empty(photos / "empty.jpg")
    write_text(photos / "notes.jpg")
    write_truncated_jpeg(photos / "cut.jpg", keep=0.3)
    lib.add_folder(photos)
    report = lib.index()
    assert report.embedded >= 14
    reasons = {Path(f.path).name: f.reason for f in lib.failures()}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["notes.jpg"] == "not an image"
    # An unchanged failed file is not retried; a fixed one is indexed and its failure cleared.
    assert lib.index().failed == 0
    write_jpeg(photos / "notes.jpg", (64, 48), seed=555)
    report = lib.index()
    assert report.embedded == 1
    assert "notes.jpg" not in {Path(f.path).name for f in lib.failures()}


def test_missing_root_is_offline_and_keeps_its_photos(lib, photos, tmp_path):
    lib.add_folder(photos)
    lib.index()
    unplugged = tmp_path / "unplugged"
    photos.rename(unplugged)
    report = lib.index()
    assert report.offline_folders == [str(photos)]
    status = lib.status()
    assert status.photos == 14 and status.folders[0].state == "offline"
    unplugged.rename(photos)
    report = lib.index()
    assert report.offline_folders == [] and report.unchanged == 14
    assert lib.status().folders[0].state == "online"


def test_folder_vanishing_during_scan_keeps_its_photos(lib, photos, monkeypatch):
    lib.add_folder(photos)
    lib.index()
    import core.indexer

    real_scan = core.indexer.scan_folder

    def scan_then_vanish(root, **kwargs):
        for item in real_scan(root, **kwargs):
            yield item
            if isinstance(item, ScannedFile) and "trip" not in item.path:
                shutil.rmtree(Path(root) / "trip", ignore_errors=True)

    monkeypatch.setattr(core.indexer, "scan_folder", scan_then_vanish)
    report = lib.index()
    assert report.failed == 0
    # The two photos of the vanished sub-folder were swept only if the walk saw the folder gone
    # (then they are gone from disk too): the library never lists a photo that is not on disk.
    listed = {h.path for h in lib.search("x", k=100).hits}
    assert all(Path(p).exists() for p in listed)


def test_add_folder_errors_are_clear(lib, tmp_path):
    with pytest.raises(FolderError, match="does not exist"):
        lib.add_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FolderError, match="not a folder"):
        lib.add_folder(tmp_path / "file.txt")
    with pytest.raises(FolderError, match="not a library folder"):
        lib.remove_folder(tmp_path)


def test_empty_query_is_refused(lib, photos):
    lib.add_folder(photos)
    lib.index()
    with pytest.raises(QueryError):
        lib.search("   ")


def test_more_like_this_excludes_the_photo_and_image_query_works(lib, photos):
    lib.add_folder(photos)
    lib.index()
    hits = lib.search("boat", k=20).hits
    target = hits[3]
    similar = lib.search(like_photo_id=target.photo_id, k=5)
    assert target.photo_id not in {h.photo_id for h in similar.hits}
    by_image = lib.search(image=target.path, k=1)
    assert by_image.hits[0].photo_id == target.photo_id
    assert by_image.hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_corrupt_index_file_is_rebuilt(tmp_path, photos, model):
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
        expected = [h.photo_id for h in lib.search("tree", k=5).hits]
    for f in (tmp_path / "lib" / "index").iterdir():
        f.write_bytes(b"garbage" * 10)
    with Library.open(tmp_path / "lib", model=model) as lib:
        assert [h.photo_id for h in lib.search("tree", k=5).hits] == expected


def test_another_model_re_embeds_and_never_mixes(tmp_path, photos, model, tiny_arch):
    import torch

    from core.models import create_architecture, save_checkpoint

    torch.manual_seed(12345)
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_architecture(tiny_arch), other, tiny_arch)
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
        first = {h.path: h.score for h in lib.search("house", k=100).hits}
    with Library.open(tmp_path / "lib", model=f"file:{other}") as lib:
        report = lib.index()
        assert report.embedded == 14 and report.unchanged == 0  # nothing reused across models
        second = {h.path: h.score for h in lib.search("house", k=100).hits}
        assert lib.model_spec == f"file:{other}"
    assert set(first) == set(second)
    assert not np.allclose([first[p] for p in first], [second[p] for p in first])
    # The first model's vectors are still there: switching back costs no inference.
    with Library.open(tmp_path / "lib", model=model) as lib:
        assert lib.index().unchanged == 14
        again = {h.path: h.score for h in lib.search("house", k=100).hits}
    assert again == pytest.approx(first)


def test_set_model_keeps_serving_old_model_until_complete(tmp_path, photos, model, tiny_arch):
    import torch

    from core.models import create_architecture, save_checkpoint

    torch.manual_seed(777)
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_architecture(tiny_arch), other, tiny_arch)
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
    with Library.open(tmp_path / "lib") as lib:
        lib.set_model(f"file:{other}")
        run = lib.iter_index(batch_size=2)
        next(p for p in run if p.phase == "embed")
        run.close()  # cancelled half-way
        assert lib.model_spec == model  # still the complete one
        assert lib.search("car", k=3).hits
    with Library.open(tmp_path / "lib") as lib:
        assert lib.target_model_spec == f"file:{other}"
        lib.index()
        assert lib.model_spec == f"file:{other}" and lib.target_model_spec is None


def test_cancel_leaves_consistent_library_and_resumes(lib, photos):
    lib.add_folder(photos)
    run = lib.iter_index(batch_size=2)
    for p in run:
        if p.phase == "embed" and p.done >= 4:
            break
    run.close()
    done_before = lib.status().indexed
    assert 4 <= done_before < 14
    report = lib.index()
    assert report.embedded == 14 - done_before


def test_concurrent_search_while_indexing(lib, photos, tmp_path):
    more = photos / "more"
    for i in range(40):
        write_jpeg(more / f"m{i}.jpg", (48, 48), seed=500 + i)
    lib.add_folder(photos)
    errors: list[BaseException] = []

    def index() -> None:
        try:
            lib.index(batch_size=4)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    worker = threading.Thread(target=index)
    worker.start()
    seen = 0
    while worker.is_alive() or seen == 0:
        try:
            result = lib.search("sunset", k=10)
        except QueryError:
            continue
        seen = len(result.hits)
        assert all(Path(h.path).exists() for h in result.hits)
    worker.join()
    assert not errors
    assert len(lib.search("sunset", k=100).hits) == 54


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import open_clip
    open_clip.add_model_config({config!r})
    from core.library import Library
    lib = Library.open({lib!r}, model={model!r})
    lib.add_folder({photos!r})
    embedded = 0
    for p in lib.iter_index(batch_size=3, workers=1):
        if p.phase == "embed" and p.done >= 6:
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_kill_9_mid_indexing_then_resume(tmp_path, photos, model, tiny_checkpoint):
    configs = [p for p in tiny_checkpoint.parents[1].iterdir() if p.name.startswith("model-configs")]
    config = next(configs[0].glob("*.json"))
    script = KILLER.format(
        repo=str(REPO), config=str(config), lib=str(tmp_path / "lib"), model=model, photos=str(photos)
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Library.open(tmp_path / "lib", model=model) as lib:
        done = lib.status().indexed
        assert 6 <= done < 14
        report = lib.index()
        assert report.embedded == 14 - done  # finished work is not redone
        assert report.unchanged == done
        assert len(lib.search("car", k=100).hits) == 14


def test_weight_downloads_are_reported_to_on_download(tmp_path, tiny_checkpoint, monkeypatch):
    """The library hands its download callback to the model loader (the app shows the progress)."""
    from core.embedder import Embedder
    from core.models import DownloadProgress

    real = Embedder.from_spec.__func__
    calls = []

    def loading(cls, spec, device=None, on_progress=None, **kwargs):
        calls.append(spec)
        if on_progress is not None:  # as open_clip's hub download reports its chunks
            on_progress(DownloadProgress("weights.safetensors", 512, 1024))
        return real(cls, spec, device, on_progress, **kwargs)

    monkeypatch.setattr(Embedder, "from_spec", classmethod(loading))
    seen: list[DownloadProgress] = []
    with Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}") as lib:
        lib.on_download = seen.append
        lib.embedder()
    assert calls and seen == [DownloadProgress("weights.safetensors", 512, 1024)]
    assert seen[0].fraction == 0.5


def test_a_second_writer_waits_for_the_first_and_nothing_is_lost(tmp_path, photos, model):
    """Two libraries on one folder index at once (the app and the CLI): the second waits its turn,
    then reads what the first wrote; every photo is kept, in the catalog and in the index."""
    first = Library.open(tmp_path / "lib", model=model)
    second = Library.open(tmp_path / "lib", model=model)
    try:
        first.add_folder(photos)
        second.search("warm up", k=1) if second.status().indexed else second.embedder()  # load its state now
        running = first.iter_index(batch_size=3, workers=1)
        while next(running).phase != "embed":
            pass
        waiting = second.iter_index(batch_size=3, workers=1)
        assert next(waiting).phase == "wait"
        assert next(waiting).phase == "wait"  # still held: the first run is only half done
        report_first = drive_to_end(running)
        report_second = drive_to_end(waiting)
        assert report_first.embedded == 14 and report_second.unchanged == 14 and report_second.removed == 0
        for lib in (first, second):
            assert lib.status().photos == 14 and lib.status().indexed == 14
            assert len(lib.search("car", k=100).hits) == 14
    finally:
        first.close()
        second.close()
    with Library.open(tmp_path / "lib", model=model) as lib:
        assert len(lib.search("car", k=100).hits) == 14


def drive_to_end(generator):
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


def test_two_index_processes_at_once_keep_every_photo(tmp_path, model, tiny_checkpoint):
    """Two `index` commands started together on one library: both succeed and no photo is lost."""
    root = tmp_path / "many"
    for i in range(150):
        write_jpeg(root / f"p{i:03d}.jpg", (48, 40), seed=i)
    configs = [p for p in tiny_checkpoint.parents[1].iterdir() if p.name.startswith("model-configs")]
    config = next(configs[0].glob("*.json"))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import open_clip
        open_clip.add_model_config({str(config)!r})
        import main
        from core.library import Library
        from tests.core.together import start_together
        Library.open({str(tmp_path / "lib")!r}, model={model!r}).close()  # both ready to go
        start_together({str(tmp_path / "ready")!r}, 2)
        sys.exit(main.main(["index", {str(root)!r}, "--library", {str(tmp_path / "lib")!r},
                            "--model", {model!r}, "--no-progress"]))
        """
    )
    run_together(script, [[], []], timeout=240)
    with Library.open(tmp_path / "lib", model=model) as lib:
        assert lib.status().photos == 150 and lib.status().indexed == 150
        assert len(lib.search("car", k=200).hits) == 150


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_lost_catalog_never_costs_the_vectors(tmp_path, photos, model, damage):
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
    vectors = {p: p.read_bytes() for p in (tmp_path / "lib" / "vectors").glob("*.f32")}
    assert vectors
    catalog = tmp_path / "lib" / "catalog.sqlite"
    for extra in catalog.parent.glob("catalog.sqlite-*"):
        extra.unlink()
    if damage == "deleted":
        catalog.unlink()
    else:
        catalog.write_bytes(b"")
    with pytest.raises(LibraryError, match="will not start an empty catalog over them"):
        Library.open(tmp_path / "lib", model=model)
    assert {p: p.read_bytes() for p in (tmp_path / "lib" / "vectors").glob("*.f32")} == vectors
    assert catalog.exists() == (damage == "emptied")


def test_a_read_only_library_says_so_instead_of_damaged(tmp_path, model):
    from tests.core.access import call_obeying_permissions

    Library.open(tmp_path / "lib", model=model).close()
    for path in [*(tmp_path / "lib").rglob("*"), tmp_path / "lib"]:
        path.chmod(0o555 if path.is_dir() else 0o444)

    def reopen():
        with pytest.raises(LibraryError) as info:
            Library.open(tmp_path / "lib", model=model)
        return str(info.value)

    try:
        message = call_obeying_permissions(reopen)
    finally:
        for path in [tmp_path / "lib", *(tmp_path / "lib").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert "read-only" in message and "damaged" not in message and "Move it away" not in message


def test_non_finite_vectors_in_a_damaged_file_are_dropped_and_embedded_again(tmp_path, photos, model):
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
        dim = lib.embedder().dim
    (vector_file,) = (tmp_path / "lib" / "vectors").glob("*.f32")
    with open(vector_file, "r+b") as fh:  # rows 2 and 5 become NaN and infinity
        for row, value in ((2, np.nan), (5, np.inf)):
            fh.seek(32 + row * dim * 4)
            fh.write(np.full(dim, value, np.float32).tobytes())
    with Library.open(tmp_path / "lib", model=model) as lib:
        results = lib.search("a red car", k=100).hits
        assert len(results) == 12 and all(np.isfinite(h.score) for h in results)
        report = lib.index()
        assert report.embedded == 2
        assert len(lib.search("a red car", k=100).hits) == 14


def test_vector_files_shrink_after_large_removals(tmp_path, photos, model):
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
        (vector_file,) = (tmp_path / "lib" / "vectors").glob("*.f32")
        full = vector_file.stat().st_size
        for path in sorted(photos.glob("img_*.jpg"))[:8]:
            path.unlink()
        report = lib.index()
        assert report.removed == 8
        (compacted,) = (tmp_path / "lib" / "vectors").glob("*.f32")
        assert compacted.stat().st_size < full * 0.6
        assert len(lib.search("a red car", k=100).hits) == 6
        lib.remove_folder(photos)
        (empty,) = (tmp_path / "lib" / "vectors").glob("*.f32")
        assert empty.stat().st_size <= 32 and lib.search("a red car", k=10).hits == []


def test_a_stale_index_file_catches_up_instead_of_being_rebuilt(tmp_path, photos, model, monkeypatch, caplog):
    """The app indexed while the CLI searched: the CLI's next open adds the difference, no rebuild."""
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.add_folder(photos)
        lib.index()
    saved = {p.name: p.read_bytes() for p in (tmp_path / "lib" / "index").iterdir()}
    for i in range(3):
        write_jpeg(photos / f"late_{i}.jpg", (64, 48), seed=50 + i)
    (photos / "img_00.jpg").unlink()
    with Library.open(tmp_path / "lib", model=model) as lib:
        lib.index()
    for name, data in saved.items():  # the index as the other process last saw it
        (tmp_path / "lib" / "index" / name).write_bytes(data)
    from core.index import VectorIndex

    calls = []
    real_add = VectorIndex.add
    monkeypatch.setattr(
        VectorIndex,
        "add",
        lambda self, ids, *a, **k: (calls.append(len(ids)), real_add(self, ids, *a, **k))[1],
    )
    with caplog.at_level("INFO"), Library.open(tmp_path / "lib", model=model) as lib:
        assert len(lib.search("a red car", k=100).hits) == 16
    assert calls == [3]  # only the three new photos were added
    assert "caught up with the catalog: 3 added, 1 removed" in caplog.text
    assert "Rebuilding" not in caplog.text


def test_filters_by_folder_and_date_combine_with_the_text(lib, tmp_path):
    import datetime as dt

    from core.query import PhotoFilter

    trips, home = tmp_path / "trips", tmp_path / "home"
    for i in range(6):
        write_jpeg(trips / f"t{i}.jpg", (64, 48), seed=i)
        write_jpeg(home / f"h{i}.jpg", (64, 48), seed=50 + i)
    summer = dt.datetime(2023, 7, 15, 12).timestamp()  # no EXIF date: the file's date counts
    for path in [*trips.glob("t[0-2].jpg"), *home.glob("h[0-2].jpg")]:
        os.utime(path, (summer, summer))
    lib.add_folder(trips)
    lib.add_folder(home)
    lib.index()
    only_trips = lib.search("a photo", k=50, where=PhotoFilter(folders=(str(trips),)))
    assert {Path(h.path).parent for h in only_trips.hits} == {trips.resolve()}
    assert len(only_trips.hits) == 6
    july = PhotoFilter(taken_from="2023-07-01", taken_to="2023-07-31")
    names = {Path(h.path).name for h in lib.search("a photo", k=50, where=july).hits}
    assert names == {"t0.jpg", "t1.jpg", "t2.jpg", "h0.jpg", "h1.jpg", "h2.jpg"}
    both = PhotoFilter(folders=(str(home),), taken_to="2023-12-31")
    assert {Path(h.path).name for h in lib.search("a photo", k=50, where=both).hits} == {
        "h0.jpg",
        "h1.jpg",
        "h2.jpg",
    }
    nothing = lib.search("a photo", k=50, where=PhotoFilter(taken_to="1999-12-31"))
    assert nothing.hits == [] and nothing.match_count == 0
    assert july.describe() == "taken 2023-07-01 to 2023-07-31"

    with pytest.raises(FolderError, match="not a library folder"):
        lib.search("a photo", where=PhotoFilter(folders=(str(tmp_path / "elsewhere"),)))
    with pytest.raises(QueryError, match="YYYY-MM-DD"):
        PhotoFilter(taken_from="July")
    with pytest.raises(QueryError, match="ends"):
        PhotoFilter(taken_from="2024-02-01", taken_to="2024-01-01")


def test_not_like_this_needs_something_to_look_for(lib, photos):
    from core.query import NOT_LIKE_WEIGHT

    lib.add_folder(photos)
    lib.index()
    photo = lib.search("a photo", k=1).hits[0].photo_id
    with pytest.raises(QueryError, match="not like this"):
        lib.search(like_photo_id=photo, example_weight=NOT_LIKE_WEIGHT)
    result = lib.search("a photo", like_photo_id=photo, example_weight=NOT_LIKE_WEIGHT, k=5)
    assert photo not in {h.photo_id for h in result.hits} and len(result.hits) == 5


def test_browse_lists_photos_newest_first_or_by_folder_without_a_query(lib, tmp_path):
    import datetime as dt

    from core.query import PhotoFilter

    trips, home = tmp_path / "trips", tmp_path / "home"
    days = {}
    for i in range(4):
        for folder, name in ((trips, f"t{i}.jpg"), (home, f"h{i}.jpg")):
            write_jpeg(folder / name, (64, 48), seed=len(days))
            when = dt.datetime(2020 + len(days) % 5, 1 + len(days), 3, 12)
            os.utime(folder / name, (when.timestamp(), when.timestamp()))
            days[name] = when.date().isoformat()
    lib.add_folder(trips)
    lib.add_folder(home)
    photos, total = lib.browse()  # nothing is catalogued before the folders are read
    assert total == 0 and photos == []
    lib.index()
    photos, total = lib.browse(limit=5)
    assert total == 8 and len(photos) == 5
    newest_first = sorted(days.values(), reverse=True)
    assert [p.day for p in photos] == newest_first[:5]
    rest, _ = lib.browse(offset=5, limit=5)
    assert [p.day for p in rest] == newest_first[5:]
    by_folder, _ = lib.browse(order="folder", limit=20)
    assert [Path(p.path).name for p in by_folder] == [f"h{i}.jpg" for i in range(4)] + [
        f"t{i}.jpg" for i in range(4)
    ]
    assert by_folder[0].folder == str(home.resolve())
    only_trips, n = lib.browse(where=PhotoFilter(folders=(str(trips),)))
    assert n == 4 and {Path(p.path).parent for p in only_trips} == {trips.resolve()}
    with pytest.raises(QueryError, match="by date or by folder"):
        lib.browse(order="size")
