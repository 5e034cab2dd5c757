"""The loaded models of a library: each one's embedder, vector store, search index and searcher.

A :class:`ModelState` is what one model identity needs at run time. :class:`ModelStates` loads
them on first use, keyed by a :class:`StateKey` (a model spec, plus the adapter of a fine-tune
profile when the state serves one), reads them again when another process wrote to the library
(the ``write_generation`` setting of the catalog changes with every write), and opens, catches up
and saves their index files.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .catalog import Catalog
from .errors import IndexCorruptError, LibraryError
from .writer_lock import WriterLock

if TYPE_CHECKING:
    from .embedder import Embedder
    from .encoder_process import EncoderProcess
    from .index import VectorIndex
    from .models import DownloadProgress
    from .search import Searcher
    from .vectors import VectorStore

logger = logging.getLogger(__name__)

META_WRITES = "write_generation"  # changed by every run that changed photos, vectors or index


class StateKey(NamedTuple):
    """Which state: a model spec, and the adapter id of the profile it serves (None: the bare model)."""

    spec: str
    adapter: str | None = None


class ModelState:
    """What one model identity needs at run time: embedder, vector store, index, searcher."""

    def __init__(self, embedder: Embedder, store: VectorStore, index: VectorIndex, index_path: Path):
        self.embedder = embedder
        self.store = store
        self.index = index
        self.index_path = index_path
        self.searcher: Searcher | None = None
        self.encoder: EncoderProcess | None = None  # indexing's child process, kept between runs
        self.generation: str | None = None  # the library's write generation when store and index were read

    def close_encoder(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None


class ProfileState(ModelState):
    """An adapter profile's state: the adapted embedder, its index, and the content behind it."""

    def __init__(self, embedder: Any, store: VectorStore, index: Any, index_path: Path):
        super().__init__(embedder, store, index, index_path)
        self.content: dict[int, str] = {}  # photo id -> content hash its adapted vector was made from
        self.save_lock = threading.Lock()


class ModelStates:
    """The library's loaded models. Thread-safe: ``lock`` guards the states and their searchers."""

    def __init__(
        self,
        root: Path,
        catalog: Catalog,
        writer: WriterLock,
        device: str | None = None,
        on_download: Callable[[], Callable[[DownloadProgress], None] | None] = lambda: None,
    ):
        self.root = root
        self.catalog = catalog
        self.writer = writer
        self.device = device
        self._on_download = on_download
        self.lock = threading.RLock()
        self._states: dict[StateKey, ModelState] = {}

    def close(self) -> None:
        with self.lock:
            for state in self._states.values():
                state.close_encoder()
            self._states.clear()

    # ------------------------------------------------------------------ lookup

    def get(self, spec: str) -> ModelState:
        """The bare model ``spec`` with its store and index, loaded on first use."""
        key = StateKey(spec)
        with self.lock:
            state = self._states.get(key)
            if state is None:
                state = self._load(spec)
                self._states[key] = state
            return state

    def loaded(self, key: StateKey) -> ModelState | None:
        """A state already loaded, else None (nothing is loaded)."""
        with self.lock:
            return self._states.get(key)

    def put(self, key: StateKey, state: ModelState) -> None:
        with self.lock:
            self._states[key] = state

    def items(self) -> list[tuple[StateKey, ModelState]]:
        with self.lock:
            return list(self._states.items())

    def models(self) -> list[tuple[str, ModelState]]:
        """The loaded bare models (no profile states), by spec."""
        return [(key.spec, state) for key, state in self.items() if key.adapter is None]

    def profile_states(self, spec: str, adapter_prefix: str = "") -> list[ProfileState]:
        """Loaded profile states of model ``spec`` whose adapter id starts with ``adapter_prefix``."""
        return [
            state  # type: ignore[misc]
            for key, state in self.items()
            if key.spec == spec and key.adapter is not None and key.adapter.startswith(adapter_prefix)
        ]

    def forget_profiles(self, spec: str | None = None, adapter: str | None = None) -> None:
        """Drop loaded profile states: of model ``spec``, of adapter ``adapter``, or all."""
        with self.lock:
            for key in list(self._states):
                if key.adapter is None:
                    continue
                if (spec is None or key.spec == spec) and (adapter is None or key.adapter == adapter):
                    del self._states[key]

    # ------------------------------------------------------------------ loading

    def _load(self, spec: str) -> ModelState:
        from .embedder import Embedder

        embedder = Embedder.from_spec(spec, device=self.device, on_progress=self._on_download())
        return self.read(embedder)

    def read(self, embedder: Embedder) -> ModelState:
        """A model's vector store and search index as they are on disk now."""
        from .vectors import VectorStore

        generation = self.catalog.get_meta(META_WRITES)
        identity = embedder.identity
        store = VectorStore(self.catalog, self.root / "vectors", identity, embedder.dim)
        index_path = self.index_path(identity.key)
        index = self._open_index(store, index_path, embedder.dim)
        state = ModelState(embedder, store, index, index_path)
        state.generation = generation
        return state

    def index_path(self, identity_key: str) -> Path:
        return self.root / "index" / f"{identity_key}.idx"

    def current(self, spec: str) -> ModelState:
        """``spec``'s state, read again when another process wrote to the library since it was read.

        Called holding the writer lock, so nothing changes it meanwhile.
        """
        state = self.get(spec)
        if state.generation == self.catalog.get_meta(META_WRITES):
            return state
        logger.info("the library changed in another process: reading its vectors and index again")
        fresh = self.read(state.embedder)
        fresh.encoder = state.encoder
        with self.lock:
            self._states[StateKey(spec)] = fresh
        self.forget_profiles(spec)
        return fresh

    def bump_writes(self, *states: ModelState) -> None:
        """Record that this process changed the library (others read it again before writing)."""
        generation = uuid.uuid4().hex
        self.catalog.set_meta(META_WRITES, generation)
        for state in states:
            state.generation = generation

    # ------------------------------------------------------------------ index and vector files

    def _open_index(self, store: VectorStore, path: Path, dim: int) -> VectorIndex:
        from .index import VectorIndex

        ids, vecs = store.photo_matrix()
        if path.exists():
            try:
                index = VectorIndex.load(path, dim)
            except IndexCorruptError as e:
                logger.warning("%s Rebuilding it from the stored vectors.", e)
            else:
                _catch_up(index, ids, vecs, path)
                return index
        index = VectorIndex(dim)
        if len(ids):
            index.add(ids, vecs)
        try:
            writable = self.writer.try_acquire()  # a reader never overwrites what a writer will save
        except LibraryError:  # a read-only library still searches
            writable = False
        if writable:
            try:
                save_index(index, path)
            finally:
                self.writer.release()
        return index


def _catch_up(index: VectorIndex, ids: np.ndarray, vecs: np.ndarray, path: Path) -> None:
    """Another process may have indexed since the index file was saved (the app indexing while the
    command line searches): catch up by the difference, not by a rebuild."""
    have = index.ids()
    stale = np.setdiff1d(have, ids, assume_unique=True)
    missing = ~np.isin(ids, have)
    if stale.size:
        index.remove(stale)
    if missing.any():
        index.add(ids[missing], vecs[missing])
    if stale.size or missing.any():
        logger.info(
            "search index %s caught up with the catalog: %d added, %d removed",
            path.name,
            int(missing.sum()),
            stale.size,
        )


def save_index(index: VectorIndex, path: Path) -> None:
    """Save an index; a failure is logged (a read-only library still searches; it is rebuilt next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        index.save(path)
    except OSError as e:
        logger.warning("could not save the search index %s: %s", path, e)


def compact(state: ModelState) -> None:
    """Shrink the vector file once photos were removed, if enough of its rows are unused."""
    try:
        state.store.compact()
    except (OSError, LibraryError) as e:  # the next run tries again; nothing is lost
        logger.warning("could not compact the vector file: %s", e)
