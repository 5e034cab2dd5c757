"""Adapter profiles answering searches: which profile is active, and its index of adapted vectors.

An adapter profile keeps vectors of its own (the model's stored vectors, transformed; no photo is
decoded again) under the model identity with the adapter's id, and its own index beside a map of
the photo content each vector was made from. Everything is built before the profile takes over, so
a switch is atomic and switching back to the bare model is instant (its vectors are never
touched); indexing keeps the active profile's vectors in step (:meth:`ProfileServing.sync`).

The active profile is a catalog setting (``profile``), so every process opening the library
serves the same one. Full profiles (a model of their own) are switched by the library, like a
model.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .errors import IndexCorruptError, ProfileError
from .model_states import ModelState, ModelStates, ProfileState, StateKey, save_index
from .profiles import ProfileInfo, ProfileProgress, ProfileStore
from .progress import drive

logger = logging.getLogger(__name__)

META_PROFILE = "profile"
PROFILE_APPLY_CHUNK = 16384  # photo vectors transformed between two progress reports


class ProfileServing:
    """The active profile setting, and the adapted vectors and indexes of adapter profiles."""

    def __init__(self, catalog: Catalog, store: ProfileStore, states: ModelStates):
        self.catalog = catalog
        self.store = store
        self.states = states
        self._savers: list[threading.Thread] = []  # background saves of profile indexes

    def wait_for_saves(self) -> None:
        """Wait until profile indexes saving in the background are on disk."""
        for saver in list(self._savers):
            saver.join()

    # ------------------------------------------------------------------ the setting

    def record(self) -> dict[str, Any] | None:
        """The active profile setting (name, version, mode, base_spec, model_spec), or None."""
        text = self.catalog.get_meta(META_PROFILE)
        if not text:
            return None
        try:
            record = json.loads(text)
            record["version"] = int(record["version"])
            str(record["name"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed profile setting: %r", text)
            return None
        return record

    def set_record(self, info: ProfileInfo | None) -> None:
        if info is None:
            self.catalog.set_meta(META_PROFILE, None)
            return
        record = {
            "name": info.name,
            "version": info.version,
            "mode": info.mode,
            "base_spec": info.base_spec,
            "model_spec": info.model_spec,
        }
        self.catalog.set_meta(META_PROFILE, json.dumps(record))

    @staticmethod
    def serves(record: dict[str, Any] | None, spec: str) -> bool:
        """Whether a profile setting applies when ``spec`` is the active model."""
        if record is None:
            return False
        if record.get("mode") == "full":
            return record.get("model_spec") == spec
        return record.get("base_spec") == spec

    def active(self, spec: str) -> ProfileInfo | None:
        """The profile answering searches when ``spec`` is the active model, or None."""
        record = self.record()
        if record is None:
            return None
        try:
            info = self.store.get(record["name"], record["version"])
        except ProfileError as e:
            logger.warning("the active profile is gone (%s); the model answers searches alone", e)
            return None
        return info if self.serves(record, spec) else None

    def _adapter_record(self, spec: str) -> dict[str, Any] | None:
        record = self.record()
        if record is None or record.get("mode") != "adapter" or record.get("base_spec") != spec:
            return None
        return record

    # ------------------------------------------------------------------ serving

    def iter_use_adapter(
        self, info: ProfileInfo, base_spec: str
    ) -> Generator[ProfileProgress, None, ProfileInfo]:
        """Make the adapter profile ``info`` of model ``base_spec`` answer searches."""
        yield ProfileProgress("load", 0, None)
        base = self.states.get(base_spec)
        self.store.check_base(info, base.embedder.identity)
        adapter = self.store.load_adapter(info)
        key = StateKey(base_spec, info.adapter_id)
        if self.states.loaded(key) is None:
            state = yield from self._iter_build_state(base, info, adapter)
            self.states.put(key, state)
        self.set_record(info)
        yield ProfileProgress("done", 1, 1)
        return info

    def serving(self, spec: str) -> ModelState:
        """The state answering searches when ``spec`` is the active model: its adapter profile's,
        else the model's own."""
        record = self._adapter_record(spec)
        if record is None:
            return self.states.get(spec)
        loaded = self.states.profile_states(spec, f"{record['name']}.v{record['version']}.")
        if loaded:
            return loaded[0]
        try:
            drive(self.iter_use_adapter(self.store.get(record["name"], record["version"]), spec))
        except ProfileError as e:
            logger.warning("%s The model answers searches alone.", e)
            self.set_record(None)
            return self.states.get(spec)
        return self.serving(spec)

    def sync(self, base: ModelState, spec: str) -> None:
        """After indexing model ``spec``: bring its loaded active profile's index in step."""
        record = self._adapter_record(spec)
        if record is None:
            return
        for state in self.states.profile_states(spec, f"{record['name']}.v{record['version']}."):
            drive(self._iter_sync_index(base, state))

    def drop(self, info: ProfileInfo) -> None:
        """Forget a profile's loaded state and delete its index files."""
        self.wait_for_saves()
        if info.adapter_id:
            self.states.forget_profiles(adapter=info.adapter_id)
        if info.mode != "adapter" or not info.adapter_id:
            return
        index_path = self.states.index_path(info.base.with_adapter(info.adapter_id).key)
        if index_path.parent.is_dir():
            for path in index_path.parent.glob(glob.escape(index_path.name) + "*"):
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the profile's index

    def _iter_build_state(
        self, base: ModelState, info: ProfileInfo, adapter: Any
    ) -> Generator[ProfileProgress, None, ProfileState]:
        """The profile's index of adapted vectors: loaded and brought up to date, or built.

        The adapted vectors live in the profile's own index file (exact, whatever the size, so
        applying stays quick; the next indexing run that adds photos builds a graph when the
        library is large), beside a map of the photo content each vector was made from, so
        later indexing runs transform only new or changed photos. Everything is computed before
        anything is saved, and saved atomically: a cancelled switch leaves no trace.
        """
        from .adapters import AdaptedEmbedder

        identity = base.embedder.identity.with_adapter(info.adapter_id)
        embedder = AdaptedEmbedder(base.embedder, adapter, identity)
        state = ProfileState(embedder, base.store, None, self.states.index_path(identity.key))
        if not _load_index(state):
            yield from self._iter_build_index(base, state)
        else:
            yield from self._iter_sync_index(base, state)
        return state

    def _iter_build_index(
        self, base: ModelState, state: ProfileState
    ) -> Generator[ProfileProgress, None, None]:
        from .index import DEFAULT_EXACT_THRESHOLD, VectorIndex

        adapter = state.embedder.adapter
        yield ProfileProgress("apply", 0, None)
        ids = base.index.ids()
        vecs = base.index.get_vectors(ids)
        content = self.catalog.content_hashes(ids)
        total = len(ids)
        adapted = np.empty_like(vecs)
        for start in range(0, total, PROFILE_APPLY_CHUNK):
            stop = min(start + PROFILE_APPLY_CHUNK, total)
            adapted[start:stop] = adapter.apply_image(vecs[start:stop])
            yield ProfileProgress("apply", stop, total)
        yield ProfileProgress("index", 0, total)
        index = VectorIndex(state.embedder.dim, exact_threshold=max(DEFAULT_EXACT_THRESHOLD, total))
        if total:
            index.add(ids, adapted)
        state.index = index
        state.content = {pid: content.get(pid, "") for pid in ids.tolist()}
        yield ProfileProgress("index", total, total)
        # Searches can use it now; the file is written in the background (atomically: a crash
        # before it is complete only means it is built again next time).
        saver = threading.Thread(target=_save_index, args=(state,), name="profile-index-save")
        self._savers = [t for t in self._savers if t.is_alive()] + [saver]
        saver.start()

    def _iter_sync_index(
        self, base: ModelState, state: ProfileState
    ) -> Generator[ProfileProgress, None, int]:
        """Transform the photos that are new or changed since the profile's index was made."""
        adapter = state.embedder.adapter
        wanted = base.index.ids()
        content = self.catalog.content_hashes(wanted)
        gone = np.setdiff1d(state.index.ids(), wanted)
        stale = [pid for pid in wanted.tolist() if state.content.get(pid) != content.get(pid, "")]
        yield ProfileProgress("apply", 0, len(stale))
        adapted = []
        for start in range(0, len(stale), PROFILE_APPLY_CHUNK):
            part = stale[start : start + PROFILE_APPLY_CHUNK]
            adapted.append(adapter.apply_image(base.index.get_vectors(part)))
            yield ProfileProgress("apply", start + len(part), len(stale))
        if not stale and not len(gone):
            return 0
        with state.save_lock:  # the index and its content map change together
            if stale:
                state.index.add(np.array(stale, np.int64), np.concatenate(adapted))
            if len(gone):
                state.index.remove(gone)
            for pid in gone.tolist():
                state.content.pop(pid, None)
            state.content.update((pid, content.get(pid, "")) for pid in stale)
        _save_index(state)
        with self.states.lock:
            state.searcher = None
        return len(stale) + len(gone)


def _load_index(state: ProfileState) -> bool:
    """Read the profile's index and content map from disk; False when they must be built."""
    from .index import VectorIndex

    try:
        index = VectorIndex.load(state.index_path, state.embedder.dim)
        with np.load(_content_map_path(state.index_path)) as stored:
            ids, hashes = stored["ids"], stored["hashes"]
    except (IndexCorruptError, OSError, ValueError, KeyError) as e:
        if state.index_path.exists():
            logger.info("rebuilding the profile index %s: %s", state.index_path, e)
        return False
    if ids.shape != hashes.shape or not np.array_equal(np.sort(ids), index.ids()):
        logger.info("rebuilding the profile index %s: its content map does not match", state.index_path)
        return False
    state.index = index
    state.content = dict(zip(ids.tolist(), hashes.tolist(), strict=True))
    return True


def _save_index(state: ProfileState) -> None:
    """The index, then the map of the content its vectors come from (both atomic)."""
    with state.save_lock:
        save_index(state.index, state.index_path)
        path = _content_map_path(state.index_path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
        try:
            ids = np.fromiter(state.content.keys(), np.int64, len(state.content))
            hashes = np.array(list(state.content.values()), dtype=str)
            np.savez(tmp, ids=ids, hashes=hashes)
            os.replace(tmp, path)
        except OSError as e:  # the profile index is rebuilt next time
            logger.warning("could not save %s: %s", path, e)
        finally:
            tmp.unlink(missing_ok=True)


def _content_map_path(index_path: Path) -> Path:
    """Beside a profile's index: which content each of its vectors was made from."""
    return index_path.with_name(index_path.name + ".content.npz")
