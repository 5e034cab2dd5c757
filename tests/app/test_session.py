"""Closing a ``LibrarySession``: indexing is cancelled, queued work dropped, running work waited for,
within one time limit; nothing is delivered afterwards."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from app.session import LibrarySession, SearchRequest
from core.progress import drive
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


# ---------------------------------------------------------------------------------------- profiles


class _ProfilesLibrary:
    """The profile part of a library: saved profiles, the active one, and a switch that records
    what it was asked and yields a progress record before it takes over."""

    def __init__(self, model_spec: str, profiles: list, active=None) -> None:
        self.model_spec = model_spec
        self.active_profile = active
        self._profiles = profiles
        self.calls: list[tuple] = []
        self.closed = False

    def profiles(self) -> list:
        return list(self._profiles)

    def iter_use_profile(self, name, version=None):
        self.calls.append(("use", name, version))
        try:
            yield ("switching", name, version)
        except GeneratorExit:
            self.closed = True
            raise
        self.active_profile = next(p for p in self._profiles if (p.name, p.version) == (name, version))
        return self.active_profile


def _profile(name: str, version: int, base_spec: str, mode: str = "adapter") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, version=version, label=f"{name} v{version}", base_spec=base_spec, mode=mode
    )


def test_profile_choices_sit_on_the_model_or_on_the_base_of_an_active_full_profile(qtbot):
    garden = _profile("garden", 1, "file:/base.safetensors")
    beach = _profile("beach", 2, "file:/other.safetensors")
    full = _profile("deep", 1, "file:/base.safetensors", mode="full")
    library = _ProfilesLibrary("file:/base.safetensors", [garden, beach, full])
    session = LibrarySession(library)
    try:
        choices = session.profile_choices()
        assert choices.profiles == [garden, beach, full] and choices.active is None
        assert choices.base_spec == "file:/base.safetensors"
        assert [choices.usable(p) for p in choices.profiles] == [True, False, True]
        assert not any(choices.is_active(p) for p in choices.profiles)

        library.active_profile = garden  # an adapter answers: the model is still the base
        choices = session.profile_choices()
        assert choices.base_spec == "file:/base.safetensors" and choices.is_active(garden)
        assert not choices.is_active(beach)

        # A full profile is a model of its own: profiles made on its base stay usable.
        library.active_profile = full
        library.model_spec = "file:/profiles/deep-v1.safetensors"
        choices = session.profile_choices()
        assert choices.base_spec == "file:/base.safetensors"
        assert [choices.usable(p) for p in choices.profiles] == [True, False, True]
        assert choices.is_active(full) and session.active_profile is full
        assert session.profiles() == [garden, beach, full]
    finally:
        assert session.close(10_000)


def test_applying_a_fine_tune_saves_it_then_switches_to_the_saved_version(qtbot, monkeypatch):
    import trainer.finetune

    saved = _profile("garden", 3, "file:/base.safetensors")
    library = _ProfilesLibrary("file:/base.safetensors", [saved])

    def save_profile(lib, result, name):
        lib.calls.append(("save", result, name))
        return saved

    monkeypatch.setattr(trainer.finetune, "save_profile", save_profile)
    session = LibrarySession(library)
    try:
        records: list = []
        info = drive(session.iter_apply_finetune("the result", "garden"), records.append)
        assert info is saved and library.active_profile is saved
        assert library.calls == [("save", "the result", "garden"), ("use", "garden", 3)]
        assert records == [("switching", "garden", 3)]

        # Closed at its yield (cancelled), the switch is closed too: the library's own switch
        # leaves the previous profile in place.
        library.active_profile = None
        job = session.iter_apply_finetune("the result", "garden")
        next(job)
        job.close()
        assert library.closed and library.active_profile is None
    finally:
        assert session.close(10_000)
