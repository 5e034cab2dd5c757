"""The demo library: files, EXIF, manifest, idempotent reruns, example queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.errors import FolderError
from trainer.captions import attributes_in_text
from trainer.demo_library import (
    MANIFEST_NAME,
    DemoProgress,
    demo_photos,
    example_queries,
    read_manifest,
    write_demo_library,
)
from trainer.scene_render import render_scene
from trainer.scenes import Scene, is_held_out, relevance

SIZE = (64, 48)
COUNT = 8


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    progress: list[DemoProgress] = []
    result = write_demo_library(root, count=COUNT, seed=3, size=SIZE, on_progress=progress.append)
    return root, result, progress


def test_writes_jpegs_with_exif_and_a_manifest(library):
    root, result, progress = library
    assert result.written == COUNT and result.skipped == 0
    assert [p.done for p in progress] == list(range(1, COUNT + 1)) and progress[-1].total == COUNT
    lines = (root / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == COUNT == len({r["file"] for r in records})
    assert any("/" in r["file"] for r in records)  # some photos live in sub-folders
    for rec in records:
        scene = Scene(**rec["attributes"], seed=rec["seed"])
        assert not is_held_out(scene)
        assert attributes_in_text(rec["caption"]) == rec["attributes"]
        with Image.open(root / rec["file"]) as img:
            assert img.format == "JPEG"
            exif = img.getexif()
            assert exif.get_ifd(0x8769)[0x9003] == rec["taken_at"]
            assert exif.get(0x0112, 1) == rec["orientation"]
            upright = ImageOps.exif_transpose(img)
            assert upright.size == SIZE
            # the stored photo is the rendered scene (up to JPEG loss)
            diff = np.abs(np.asarray(upright, np.int16) - np.asarray(render_scene(scene, SIZE), np.int16))
            assert diff.mean() < 6
    assert [r["orientation"] for r in records].count(6) == 1
    assert read_manifest(root) == records


def test_rerun_skips_identical_files_and_repairs_changed_ones(library):
    root, _, _ = library
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")}
    again = write_demo_library(root, count=COUNT, seed=3, size=SIZE)
    assert (again.written, again.skipped) == (0, COUNT)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")} == mtimes
    # without a manifest, files are re-rendered but byte-identical ones are not rewritten
    (root / MANIFEST_NAME).unlink()
    again = write_demo_library(root, count=COUNT, seed=3, size=SIZE)
    assert (again.written, again.skipped) == (0, COUNT)
    # a damaged photo is rewritten, and only that one
    victim = root / again.photos[2].file
    victim.write_bytes(b"not a jpeg")
    again = write_demo_library(root, count=COUNT, seed=3, size=SIZE)
    assert (again.written, again.skipped) == (1, COUNT - 1)
    with Image.open(victim) as img:
        img.verify()
    assert not list(root.rglob(".*.tmp"))


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "photos"
    target.write_text("x")
    with pytest.raises(FolderError, match="is a file"):
        write_demo_library(target, count=1, size=SIZE)


def test_demo_photos_are_deterministic_and_exclude_held_out():
    photos = demo_photos(150, seed=1)
    assert photos == demo_photos(150, seed=1)
    assert photos != demo_photos(150, seed=2)
    assert not any(is_held_out(p.scene) for p in photos)
    assert len({p.file for p in photos}) == 150


def test_example_queries_have_matches_except_the_long_tail_one():
    queries = example_queries()
    assert 3 <= len(queries) <= 10
    assert [q.long_tail for q in queries].count(True) >= 1
    photos = demo_photos(40, seed=5)
    for q in queries:
        assert q.attributes == attributes_in_text(q.text)
        best = max(relevance(q.attributes, p.scene) for p in photos)
        if q.long_tail:
            assert is_held_out(q.attributes) and best < 1.0
        else:
            assert best == 1.0
