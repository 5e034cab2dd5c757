"""Closing a ``LibrarySession``: indexing is cancelled, queued work dropped, running work waited for,
within one time limit; nothing is delivered afterwards."""

from __future__ import annotations

import threading

from app.session import LibrarySession, SearchRequest
from tests.app.conftest import BATCH, gate_indexing, photo_count


def _session(library) -> LibrarySession:
    return LibrarySession(library, index_options={"batch_size": BATCH, "workers": 2})


def test_close_cancels_indexing_waits_for_it_and_refuses_new_work(library, photos, qtbot, monkeypatch):
    session = _session(library)
    gate = gate_indexing(monkeypatch, library)
    with qtbot.waitSignal(session.index_progress, timeout=30_000):
        assert session.add_folder(str(photos))
    worker = session._index_worker
    session.index(None)  # a follow-up run is queued behind the running one
    gate.wait_held()
    releaser = threading.Thread(target=lambda: (worker._abort.wait(30), gate.release()))
    releaser.start()
    assert session.close(30_000)  # asks indexing to stop, then waits for it
    releaser.join(30)
    assert worker.is_done and worker.abort_requested
    assert session.is_closed and not session.is_busy
    indexed = library.status().indexed
    assert 0 < indexed < photo_count(photos) - 2  # the finished batches are kept, the rest was not run

    # A closed session starts nothing more.
    session.index(None)
    session.refresh()
    session.search(SearchRequest(text="a red car"))
    assert not session.is_busy and not session.is_indexing and not session.is_searching
    assert library.status().indexed == indexed


def test_close_is_bounded_and_waits_again_for_what_is_left(library, photos, qtbot, monkeypatch):
    library.add_folder(photos)
    library.index(batch_size=BATCH)
    session = _session(library)
    entered, release = threading.Event(), threading.Event()
    real_search = library.search

    def slow_search(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(library, "search", slow_search)
    delivered = []
    session.search_finished.connect(lambda request, result: delivered.append(request))
    session.search(SearchRequest(text="first"))
    session.search(SearchRequest(text="second"))  # waits behind the first; dropped by close
    assert entered.wait(30)
    assert not session.close(0)  # a search cannot be interrupted: the limit is reached, it still runs
    assert session.is_searching and session.is_busy
    release.set()
    assert session.close(30_000)
    assert not session.is_busy
    qtbot.wait(50)  # let queued signals arrive: a closed session delivers no answer
    assert delivered == []


def test_indexing_behind_the_window_runs_apart_and_leaves_a_core_to_the_gui(library, monkeypatch):
    import app.session as session_module

    monkeypatch.setattr(session_module.os, "cpu_count", lambda: 2)
    assert session_module.interactive_decode_workers() == 1
    monkeypatch.setattr(session_module.os, "cpu_count", lambda: 8)
    assert session_module.interactive_decode_workers() == 7
    monkeypatch.setattr(session_module.os, "cpu_count", lambda: None)
    assert session_module.interactive_decode_workers() == 1
    session = session_module.LibrarySession(library)
    try:
        assert session.index_options == {"workers": 1, "separate_process": True}
    finally:
        assert session.close(10_000)
    options = {"workers": 3, "batch_size": 4, "separate_process": False}
    given = session_module.LibrarySession(library, index_options=options)
    try:
        assert given.index_options == options
    finally:
        assert given.close(10_000)
