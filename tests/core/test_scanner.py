from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from core.errors import FolderError
from core.scanner import (
    DEFAULT_EXCLUDES,
    HEIF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    ScannedFile,
    ScanProblem,
    heif_supported,
    root_is_online,
    scan_folder,
)
from tests.core.access import call_obeying_permissions
from tests.core.imagefiles import UNICODE_NAMES


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_of(results) -> list[str]:
    return [r.path for r in results if isinstance(r, ScannedFile)]


def problems_of(results) -> list[ScanProblem]:
    return [r for r in results if isinstance(r, ScanProblem)]


def rel(root: Path, paths) -> set[str]:
    return {os.path.relpath(p, root).replace(os.sep, "/") for p in paths}


def test_lists_images_recursively_with_size_and_mtime(tmp_path):
    a = touch(tmp_path / "a.jpg", b"12345")
    touch(tmp_path / "2019" / "summer" / "b.png")
    touch(tmp_path / "2019" / "notes.txt")
    os.utime(a, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    results = list(scan_folder(tmp_path))
    assert rel(tmp_path, files_of(results)) == {"a.jpg", "2019/summer/b.png"}
    first = next(r for r in results if r.path.endswith("a.jpg"))
    assert first == ScannedFile(str(a), 5, 1_600_000_000_123_456_789)
    assert all(os.path.isabs(r.path) for r in results)
    assert problems_of(results) == []


def test_extensions_match_case_insensitively_and_only_images(tmp_path):
    names = [
        "a.JPG",
        "b.Jpeg",
        "c.PNG",
        "d.webp",
        "e.BMP",
        "f.gif",
        "g.TIF",
        "h.tiff",
        "i.txt",
        "j.mov",
        "k.jpg.txt",
    ]
    for name in names:
        touch(tmp_path / name)
    found = rel(tmp_path, files_of(scan_folder(tmp_path)))
    assert found == {n for n in names[:8]}
    only_png = rel(tmp_path, files_of(scan_folder(tmp_path, extensions=["png"])))
    assert only_png == {"c.PNG"}


def test_heif_is_listed_only_when_it_can_be_decoded(tmp_path):
    touch(tmp_path / "a.HEIC")
    assert (".heic" in IMAGE_EXTENSIONS) == heif_supported()
    found = files_of(scan_folder(tmp_path))
    assert len(found) == (1 if heif_supported() else 0)
    assert len(files_of(scan_folder(tmp_path, extensions=HEIF_EXTENSIONS))) == 1


def test_hidden_entries_and_default_excludes_are_skipped(tmp_path):
    touch(tmp_path / "keep.jpg")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / "._keep.jpg")  # macOS resource fork
    touch(tmp_path / ".cache" / "x.jpg")
    for excluded in (
        ".git",
        "@eaDir",
        "node_modules",
        ".thumbnails",
        "$RECYCLE.BIN",
        "__MACOSX",
        ".Trash-1000",
    ):
        touch(tmp_path / "album" / excluded / "thumb.jpg")
    touch(tmp_path / "album" / "EAdir-like" / "real.jpg")
    touch(tmp_path / "album" / "@EADIR" / "case.jpg")  # excludes match case-insensitively
    assert "@eaDir" in DEFAULT_EXCLUDES
    assert rel(tmp_path, files_of(scan_folder(tmp_path))) == {"keep.jpg", "album/EAdir-like/real.jpg"}


def test_custom_excludes_match_names_and_relative_paths(tmp_path):
    for path in ("raw/a.jpg", "RAW2/b.jpg", "2019/tmp/c.jpg", "2020/tmp/d.jpg", "2020/e_draft.jpg", "f.jpg"):
        touch(tmp_path / path)
    found = rel(tmp_path, files_of(scan_folder(tmp_path, excludes=["raw*", "2019/tmp", "*_draft.jpg"])))
    assert found == {"2020/tmp/d.jpg", "f.jpg"}
    # No excludes at all: the default ones are not applied either.
    touch(tmp_path / ".git" / "g.jpg")
    touch(tmp_path / "node_modules" / "h.jpg")
    assert "node_modules/h.jpg" in rel(tmp_path, files_of(scan_folder(tmp_path, excludes=())))


def test_walk_order_is_by_name_files_before_subfolders(tmp_path):
    for path in ("b/2.jpg", "a/1.jpg", "z.jpg", "c.jpg", "a/b/3.jpg"):
        touch(tmp_path / path)
    assert [os.path.relpath(p, tmp_path) for p in files_of(scan_folder(tmp_path))] == [
        "c.jpg",
        "z.jpg",
        os.path.join("a", "1.jpg"),
        os.path.join("a", "b", "3.jpg"),
        os.path.join("b", "2.jpg"),
    ]


def test_unicode_names_and_undecodable_bytes(tmp_path):
    for name in UNICODE_NAMES:
        touch(tmp_path / "ünï 文件夹" / name)
    expected = {f"ünï 文件夹/{name}" for name in UNICODE_NAMES}
    if sys.platform.startswith("linux"):
        raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9 latin1.jpg")  # not valid UTF-8
        with open(raw, "wb") as f:
            f.write(b"x")
        expected.add(os.fsdecode(b"caf\xe9 latin1.jpg"))
    found = files_of(scan_folder(tmp_path))
    assert rel(tmp_path, found) == expected
    for path in found:
        assert os.path.exists(path)


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_deep_tree_does_not_recurse(tmp_path):
    depth = 200
    folder = str(tmp_path)
    for _ in range(depth):
        folder = os.path.join(folder, "d")
        os.mkdir(folder)
    touch(Path(folder) / "deep.jpg")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 60)  # a walk recursing once per level would need 200 more frames
    try:
        found = files_of(scan_folder(tmp_path))
    finally:
        sys.setrecursionlimit(limit)
    assert found == [os.path.join(folder, "deep.jpg")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this platform")
def test_symlink_loops_end_and_each_folder_is_walked_once(tmp_path):
    root = tmp_path / "root"
    touch(root / "a" / "1.jpg")
    touch(root / "a" / "b" / "2.jpg")
    os.symlink(root, root / "a" / "b" / "loop-to-root")
    os.symlink(root / "a", root / "second-link-to-a")
    os.symlink(root / "self-loop", root / "self-loop")  # a link to itself: ELOOP
    outside = tmp_path / "outside"
    touch(outside / "3.jpg")
    os.symlink(outside, root / "linked-outside")
    touch(root / "real.jpg")
    os.symlink(root / "real.jpg", root / "alias.jpg")
    os.symlink(root / "gone.jpg", root / "broken.jpg")

    results = list(scan_folder(root, outside_links=True))
    found = rel(root, files_of(results))
    assert {"a/1.jpg", "a/b/2.jpg", "linked-outside/3.jpg", "real.jpg", "alias.jpg"} == found
    assert len(files_of(results)) == len(found)  # nothing twice
    assert {(os.path.basename(p.path), p.reason) for p in problems_of(results)} == {
        ("broken.jpg", "broken link")
    }

    inside_only = list(scan_folder(root))  # the default: links stay inside the root
    assert rel(root, files_of(inside_only)) == {"a/1.jpg", "a/b/2.jpg", "real.jpg", "alias.jpg"}

    not_following = list(scan_folder(root, follow_symlinks=False))
    assert rel(root, files_of(not_following)) == {"a/1.jpg", "a/b/2.jpg", "real.jpg"}
    assert problems_of(not_following) == []


def test_unreadable_subfolder_is_a_problem_and_the_walk_goes_on(tmp_path):
    touch(tmp_path / "a" / "1.jpg")
    touch(tmp_path / "locked" / "secret.jpg")
    touch(tmp_path / "z" / "2.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        results = call_obeying_permissions(lambda: list(scan_folder(tmp_path)))
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert rel(tmp_path, files_of(results)) == {"a/1.jpg", "z/2.jpg"}
    assert problems_of(results) == [ScanProblem(str(tmp_path / "locked"), "permission denied")]


def test_unreadable_root_raises_folder_error(tmp_path):
    touch(tmp_path / "locked" / "a.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        with pytest.raises(FolderError, match="permission denied"):
            call_obeying_permissions(lambda: list(scan_folder(tmp_path / "locked")))
        assert call_obeying_permissions(lambda: root_is_online(tmp_path / "locked")) is False
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_folder_removed_during_the_scan_is_a_problem(tmp_path):
    touch(tmp_path / "a" / "1.jpg")
    touch(tmp_path / "b" / "2.jpg")
    touch(tmp_path / "b" / "c" / "3.jpg")
    touch(tmp_path / "d" / "4.jpg")
    results = []
    for result in scan_folder(tmp_path):
        results.append(result)
        if isinstance(result, ScannedFile) and result.path.endswith("1.jpg"):
            shutil.rmtree(tmp_path / "b")  # listed under the root already, not walked yet
    assert rel(tmp_path, files_of(results)) == {"a/1.jpg", "d/4.jpg"}
    assert problems_of(results) == [ScanProblem(str(tmp_path / "b"), "folder disappeared during the scan")]


def test_file_removed_during_the_scan_is_simply_gone(tmp_path):
    touch(tmp_path / "1.jpg")
    touch(tmp_path / "2.jpg")
    touch(tmp_path / "3.jpg")
    results = []
    for result in scan_folder(tmp_path):
        results.append(result)
        if result.path.endswith("1.jpg"):
            (tmp_path / "2.jpg").unlink()
    assert rel(tmp_path, files_of(results)) == {"1.jpg", "3.jpg"}
    assert problems_of(results) == []


def test_missing_root_raises_and_reads_as_offline(tmp_path):
    with pytest.raises(FolderError, match="plug it in"):
        list(scan_folder(tmp_path / "unplugged"))
    file = touch(tmp_path / "file.jpg")
    with pytest.raises(FolderError, match="Not a folder"):
        list(scan_folder(file))
    assert root_is_online(tmp_path / "unplugged") is False
    assert root_is_online(file) is False


def test_root_is_online_tells_an_empty_mount_point_from_an_empty_folder(tmp_path):
    empty = tmp_path / "mnt"
    empty.mkdir()
    assert root_is_online(empty) is True
    assert root_is_online(empty, had_photos=True) is False
    touch(empty / "a.jpg")
    assert root_is_online(empty, had_photos=True) is True


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this platform")
def test_links_out_of_the_root_are_not_followed_and_never_into_proc(tmp_path, caplog):
    root = tmp_path / "root"
    touch(root / "mine.jpg")
    os.symlink("/", root / "everything")
    with caplog.at_level("WARNING"):
        results = list(scan_folder(root, extensions=(".jpg", ".py", ".conf")))
    assert rel(root, files_of(results)) == {"mine.jpg"} and problems_of(results) == []
    assert "1 link(s)" in caplog.text and "lead outside it" in caplog.text
    if os.path.isdir("/proc/self"):
        os.unlink(root / "everything")
        os.symlink("/proc/self", root / "process")
        allowed = list(scan_folder(root, outside_links=True, extensions=(".jpg", "")))
        assert rel(root, files_of(allowed)) == {"mine.jpg"}
