"""Indexing in a separate process: the same results as in-process, and no lost work when it fails."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from core.encoder_process import EncoderProcess
from core.errors import ModelError
from core.library import Library
from tests.core.imagefiles import write_empty, write_jpeg, write_png, write_text, write_truncated_jpeg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    for i in range(40):
        write_jpeg(root / f"img_{i:02d}.jpg", (64, 48), seed=i)
    write_jpeg(root / "rotated.jpg", (64, 48), seed=41, orientation=6, taken_at="2021:07:04 15:30:00")
    write_png(root / "trip" / "beach.png", (40, 30), seed=99)
    write_empty(root / "empty.jpg")
    write_text(root / "notes.jpg")
    write_truncated_jpeg(root / "cut.jpg")
    return root


def _indexed(library: Library) -> dict[str, tuple]:
    """path -> (width, height, taken_at, orientation, vector) of every indexed photo."""
    out = {}
    for folder in library.catalog.folders():
        photos = library.catalog.folder_photos(folder.id)
        vectors = library.vectors().get([p.content_hash for p in photos.values()])
        for (path, p), vector in zip(photos.items(), vectors, strict=True):
            out[path] = (p.width, p.height, p.taken_at, p.orientation, vector)
    return out


def _failures(library: Library) -> dict[str, str]:
    return {Path(f.path).name: f.reason for f in library.failures()}


def test_a_separate_process_indexes_exactly_as_threads_do(tmp_path, photos, model):
    results = {}
    encoders = []
    for separate in (False, True):
        with Library.open(tmp_path / f"lib-{separate}", model=model) as library:
            library.add_folder(photos)
            report = library.index(separate_process=separate, batch_size=8)
            assert (report.embedded, report.failed) == (42, 3)
            results[separate] = (_indexed(library), _failures(library))
            encoders.append(library.states.get(model).encoder)
    assert encoders[0] is None and encoders[1] is not None  # the second run really ran apart
    assert encoders[1]._proc.poll() is not None  # closing the library ended (and reaped) it
    (threads, threads_failed), (process, process_failed) = results[False], results[True]
    assert process_failed == threads_failed
    assert set(threads_failed) == {"empty.jpg", "notes.jpg", "cut.jpg"}
    assert threads.keys() == process.keys()
    for path, (*meta, vector) in threads.items():
        assert process[path][:4] == tuple(meta)
        np.testing.assert_allclose(process[path][4], vector, atol=1e-6)
    rotated = process[str(photos / "rotated.jpg")]
    assert rotated[:4] == (48, 64, "2021-07-04T15:30:00", 6)


def test_the_process_is_kept_between_runs_and_skips_a_cancelled_runs_answers(tmp_path, photos, model):
    with Library.open(tmp_path / "lib", model=model) as library:
        library.add_folder(photos)
        run = library.iter_index(separate_process=True, batch_size=4)
        for progress in run:
            if progress.phase == "embed" and progress.new >= 8:
                break  # cancelled with batches still in the child's hands
        run.close()
        encoder = library.states.get(model).encoder
        assert encoder is not None and encoder.alive
        first_pid = encoder.pid
        assert 8 <= library.status().indexed < 42

        report = library.index(separate_process=True, batch_size=4)
        assert library.states.get(model).encoder.pid == first_pid  # the same process, warm
        assert library.status().indexed == 42 and report.embedded == 42 - report.unchanged
        assert len(library.failures()) == 3
        indexed = _indexed(library)
    with Library.open(tmp_path / "reference", model=model) as reference:
        reference.add_folder(photos)
        reference.index()
        expected = _indexed(reference)
    for path, (*_meta, vector) in expected.items():
        np.testing.assert_allclose(indexed[path][4], vector, atol=1e-6)


def test_a_process_that_dies_mid_run_is_a_clear_error_and_loses_nothing(tmp_path, photos, model):
    with Library.open(tmp_path / "lib", model=model) as library:
        library.add_folder(photos)
        run = library.iter_index(separate_process=True, batch_size=4)
        with pytest.raises(ModelError, match="stopped unexpectedly") as caught:
            for progress in run:
                if progress.phase == "embed" and progress.new >= 8:
                    os.kill(library.states.get(model).encoder.pid, signal.SIGKILL)
        assert "signal 9" in str(caught.value)
        kept = library.status().indexed
        assert kept >= 8

    with Library.open(tmp_path / "lib", model=model) as library:  # it opens, with what was committed
        assert library.status().indexed == kept
        report = library.index(separate_process=True, batch_size=4)  # a new process finishes the job
        assert report.embedded == 42 - kept and library.status().indexed == 42


def test_a_process_that_stops_answering_ends_the_run_instead_of_hanging_it(
    tmp_path, photos, model, monkeypatch
):
    import core.indexer as indexer

    monkeypatch.setattr(indexer, "ENCODE_TIMEOUT_S", 3.0)
    with Library.open(tmp_path / "lib", model=model) as library:
        library.add_folder(photos)
        run = library.iter_index(separate_process=True, batch_size=4)
        stopped = None
        with pytest.raises(ModelError, match="did not answer in 3 s"):
            for progress in run:
                if progress.phase == "embed" and progress.new >= 8 and stopped is None:
                    stopped = library.states.get(model).encoder.pid
                    os.kill(stopped, signal.SIGSTOP)  # hung: alive, but never answers
        assert not _running(stopped)  # it was killed, not left stopped
        kept = library.status().indexed
        assert kept >= 8
        report = library.index(separate_process=True, batch_size=4)
        assert report.embedded == 42 - kept and library.status().indexed == 42


def test_a_process_with_another_model_refuses_to_run(tiny_embedder, model):
    wrong = dataclasses.replace(tiny_embedder.identity, weights="sha256:0000000000000000")
    encoder = EncoderProcess(model, wrong)
    try:
        with pytest.raises(ModelError, match=r"could not load the model.*not"):
            encoder.wait_ready(120)
        assert not encoder.alive
    finally:
        encoder.close()


def test_the_process_never_outlives_the_app(tmp_path, tiny_config_file, tiny_checkpoint):
    # An app that dies without closing anything (kill -9): its indexing process sees its pipe close.
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            sys.path.insert(0, {str(REPO)!r})
            import open_clip
            open_clip.add_model_config({str(tiny_config_file)!r})
            from core.embedder import Embedder
            from core.encoder_process import EncoderProcess
            spec = "file:{tiny_checkpoint}"
            encoder = EncoderProcess(spec, Embedder.from_spec(spec).identity)
            encoder.wait_ready(120)
            print(encoder.pid, flush=True)
            os._exit(0)
            """
        ),
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    child = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_process_that_cannot_be_started_leaves_the_work_to_this_one(
    tmp_path, photos, model, monkeypatch, caplog
):
    import core.encoder_process as encoder_process

    def no_processes(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(encoder_process.subprocess, "Popen", no_processes)
    with Library.open(tmp_path / "lib", model=model) as library:
        library.add_folder(photos)
        with caplog.at_level("WARNING", logger="core.indexer"):
            report = library.index(separate_process=True)
        assert (report.embedded, report.failed) == (42, 3)
        assert library.states.get(model).encoder is None
    assert "Could not start the indexing process" in caplog.text and "in this process instead" in caplog.text
