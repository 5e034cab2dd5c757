"""The library facade: one object that the command line and the app talk to.

A library is a folder::

    catalog.sqlite          folders, photos, failures, model identities, settings
    vectors/<model>.g<N>.f32  the vectors of each model identity (keyed by content)
    index/<model>.idx       the search index of each model identity (rebuilt when missing)
    profiles/<name>/vN.*    fine-tune profiles (see :mod:`core.profiles`)

Opening a library is cheap: the model (torch, open_clip) is loaded on the first search or index.
The library has one *active* model, whose vectors answer searches. Switching models
(:meth:`Library.set_model`) sets a *target*: the next :meth:`Library.iter_index` embeds the photos
for it, and the target becomes active only once its vectors are complete, so searches never see a
half-embedded library and vectors of two models never mix.

A fine-tune *profile* (:meth:`Library.use_profile`) can answer searches instead of the bare model.
An adapter profile keeps vectors of its own (the model's stored vectors, transformed; no photo is
decoded again) under the model identity with the adapter's id, and its own index; they are built
completely before the profile takes over, so a switch is atomic and switching back to the bare
model is instant (its vectors are never touched). Indexing keeps the active profile's vectors in
step. A full profile is a model of its own: using it re-embeds the library like
:meth:`Library.set_model`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import Catalog, Failure, Folder
from .errors import FolderError, IndexCorruptError, LibraryError, ProfileError, QueryError
from .grading import MatchGate, Tier
from .indexer import Indexer, IndexProgress, IndexReport
from .paths import library_dir
from .profiles import ProfileInfo, ProfileProgress, ProfileStore
from .progress import drive
from .query import Query
from .writer_lock import WriterLock

if TYPE_CHECKING:
    from .embedder import Embedder
    from .encoder_process import EncoderProcess
    from .index import VectorIndex
    from .models import DownloadProgress
    from .search import Searcher, SearchResult
    from .tags import UserTags
    from .vectors import VectorStore

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "starter"
BACKGROUND_SAMPLE = 2000
_META_MODEL = "model"
_META_TARGET = "model_target"
_META_IDENTITY = "model_identity"
_META_PROFILE = "profile"
_META_WRITES = "write_generation"  # bumped by every run that changed photos, vectors or index
PROFILE_APPLY_CHUNK = 16384

STARTER_DESCRIPTION = (
    "LadderLens starter model (bundled, small, trained only on the LadderLens scene world). "
    "It recognises cars, houses, trees, boats, hot-air balloons and kites; eight colours (red, "
    "orange, yellow, green, blue, purple, white, black); one, two or three of them; beach, snow, "
    "meadow, city and desert settings; day, sunset and night. It does not know real-world photos: "
    "for your own pictures choose an open_clip model such as "
    "openclip:ViT-B-32-256/datacomp_s34b_b86k."
)


@dataclass(frozen=True)
class FolderStatus:
    """A library folder as the user sees it."""

    path: str
    state: str  # "online" | "offline"
    photos: int
    indexed: int  # photos with a vector of the active model
    failures: int
    last_scan: float | None


@dataclass(frozen=True)
class LibraryStatus:
    root: str
    model: str
    model_spec: str
    is_starter: bool
    photos: int
    indexed: int
    failures: int
    folders: list[FolderStatus]
    target_model: str | None = None  # a model being switched to, when not complete yet
    profile: str | None = None  # the fine-tune profile answering searches ("name vN"), if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "model": self.model,
            "model_spec": self.model_spec,
            "is_starter": self.is_starter,
            "target_model": self.target_model,
            "profile": self.profile,
            "photos": self.photos,
            "indexed": self.indexed,
            "failures": self.failures,
            "folders": [vars(f) for f in self.folders],
        }


@dataclass(frozen=True)
class PhotoHit:
    photo_id: int
    path: str
    score: float
    z: float
    tier: int  # index into LibrarySearchResult.tiers, 0 = best
    differs: tuple[str, ...] = ()  # attributes of the query it appears to get wrong
    offline: bool = False  # its folder is offline (an unplugged drive, a moved folder): not openable now


@dataclass(frozen=True)
class PhotoInfo:
    photo_id: int
    path: str
    size: int
    width: int | None
    height: int | None
    taken_at: str | None
    folder: str


@dataclass(frozen=True)
class PhotoTags:
    """A photo's tags: ``on_disk`` from its folders, tags.txt and XMP sidecar; ``given`` in the app."""

    photo_id: int
    on_disk: tuple[str, ...]
    given: tuple[str, ...]


@dataclass(frozen=True)
class LibrarySearchResult:
    """Graded results with file paths. ``tiers`` best first; ``results`` by score, best first."""

    query: str
    model: str
    long_tail: bool
    tiers: list[Tier]
    results: list[PhotoHit]
    background: np.ndarray = field(repr=False, compare=False)
    raw: SearchResult | None = field(default=None, repr=False, compare=False)
    unknown_words: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``search --json``."""
        return {
            "query": self.query,
            "model": self.model,
            "long_tail": bool(self.long_tail),
            "unknown_words": list(self.unknown_words),
            "tiers": [
                {
                    "rank": i,
                    "label": t.label,
                    "count": t.count,
                    "min_score": float(t.min_score),
                    "max_score": float(t.max_score),
                }
                for i, t in enumerate(self.tiers)
            ],
            "results": [
                {
                    "path": h.path,
                    "score": float(h.score),
                    "z": float(h.z),
                    "tier": int(h.tier),
                    "differs": list(h.differs),
                    "offline": bool(h.offline),
                }
                for h in self.results
            ],
        }


class _ModelState:
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


class _ProfileState(_ModelState):
    """An adapter profile's state: the adapted embedder, its index, and the content behind it."""

    def __init__(self, embedder: Any, store: VectorStore, index: Any, index_path: Path):
        super().__init__(embedder, store, index, index_path)
        self.content: dict[int, str] = {}  # photo id -> content hash its adapted vector was made from
        self.save_lock = threading.Lock()


class Library:
    """A photo library on disk. Thread-safe for one writer (indexing) and many readers (search).

    Use :meth:`open`; close it (or use ``with``) when done.
    """

    def __init__(self, root: Path, model: str | None = None, *, device: str | None = None):
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"Cannot create the library folder {root}: {e.strerror}.") from e
        _refuse_orphaned_vectors(root)
        self.catalog = Catalog(root / "catalog.sqlite")
        self.profile_store = ProfileStore(root)
        self.writer = WriterLock(root)
        self._device = device
        # Called with a core.models.DownloadProgress while pretrained weights download (from the
        # thread that loads the model); a terminal shows its own progress bar regardless.
        self.on_download: Callable[[DownloadProgress], None] | None = None
        self._lock = threading.RLock()
        self._models: dict[str, _ModelState] = {}  # by spec text
        self._savers: list[threading.Thread] = []  # background saves of profile indexes
        stored = self.catalog.get_meta(_META_MODEL)
        self._explicit = model is not None
        self._active = _canonical(model or stored or DEFAULT_MODEL)
        target = self.catalog.get_meta(_META_TARGET)
        self._target = _canonical(target) if target and not self._explicit else None

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, model: str | None = None, **kwargs) -> Library:
        """Open (creating if needed) the library at ``root`` (default: :func:`core.paths.library_dir`).

        Args:
            model: a model spec to use for this session instead of the library's own (searches use
                its vectors; indexing with it makes it the library's model).
        """
        return cls(library_dir(root), model, **kwargs)

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._wait_for_saves()
        with self._lock:
            for state in self._models.values():
                state.close_encoder()
            self._models.clear()
        self.catalog.close()

    def _wait_for_saves(self) -> None:
        """Wait until profile indexes saving in the background are on disk."""
        for saver in list(self._savers):
            saver.join()

    # ------------------------------------------------------------------ model

    @property
    def model_spec(self) -> str:
        """The model that answers searches."""
        return self._active

    @property
    def target_model_spec(self) -> str | None:
        """The model being switched to, until its vectors are complete."""
        return self._target

    @property
    def is_starter(self) -> bool:
        return self._active == "starter"

    @property
    def model_description(self) -> str:
        if self.is_starter:
            return STARTER_DESCRIPTION
        return f"open_clip model {self._active}"

    def set_model(self, spec: str) -> None:
        """Switch to another model. Its vectors are made by the next :meth:`iter_index`; until they
        are complete the current model keeps answering searches.

        Raises:
            ModelError: the spec is malformed.
        """
        spec = _canonical(spec)
        if spec == self._active:
            self._target = None
            self.catalog.set_meta(_META_TARGET, None)
            return
        self._target = spec
        self.catalog.set_meta(_META_TARGET, spec)

    def _state(self, spec: str) -> _ModelState:
        """Load (once) the model ``spec`` with its store and index."""
        with self._lock:
            state = self._models.get(spec)
            if state is None:
                state = self._load_state(spec)
                self._models[spec] = state
            return state

    def _load_state(self, spec: str) -> _ModelState:
        from .embedder import Embedder

        embedder = Embedder.from_spec(spec, device=self._device, on_progress=self.on_download)
        return self._read_state(embedder)

    def _read_state(self, embedder: Embedder) -> _ModelState:
        """A model's vector store and search index as they are on disk now."""
        from .vectors import VectorStore

        generation = self.catalog.get_meta(_META_WRITES)
        identity = embedder.identity
        store = VectorStore(self.catalog, self.root / "vectors", identity, embedder.dim)
        index_path = self.root / "index" / f"{identity.key}.idx"
        index = self._open_index(store, index_path, embedder.dim)
        state = _ModelState(embedder, store, index, index_path)
        state.generation = generation
        return state

    def _current_state(self, spec: str) -> _ModelState:
        """``spec``'s state, read again when another process wrote to the library since it was read.

        Called holding the writer lock, so nothing changes it meanwhile.
        """
        state = self._state(spec)
        if state.generation == self.catalog.get_meta(_META_WRITES):
            return state
        logger.info("the library changed in another process: reading its vectors and index again")
        fresh = self._read_state(state.embedder)
        fresh.encoder = state.encoder
        with self._lock:
            self._models[spec] = fresh
            for key in [k for k in self._models if k.startswith(f"{spec}#profile=")]:
                del self._models[key]
        return fresh

    @staticmethod
    def _compact(state: _ModelState) -> None:
        """Shrink the vector file once photos were removed, if enough of its rows are unused."""
        try:
            state.store.compact()
        except (OSError, LibraryError) as e:  # the next run tries again; nothing is lost
            logger.warning("could not compact the vector file: %s", e)

    def _bump_writes(self, *states: _ModelState) -> None:
        """Record that this process changed the library (others read it again before writing)."""
        generation = uuid.uuid4().hex
        self.catalog.set_meta(_META_WRITES, generation)
        for state in states:
            state.generation = generation

    def _open_index(self, store: VectorStore, path: Path, dim: int) -> VectorIndex:
        from .index import VectorIndex

        ids, vecs = store.photo_matrix()
        if path.exists():
            try:
                index = VectorIndex.load(path, dim)
            except IndexCorruptError as e:
                logger.warning("%s Rebuilding it from the stored vectors.", e)
            else:
                # Another process may have indexed since this file was saved (the app indexing
                # while the CLI searches): catch up by the difference, not by a rebuild.
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
                self._save_index(index, path)
            finally:
                self.writer.release()
        return index

    @staticmethod
    def _save_index(index: VectorIndex, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            index.save(path)
        except OSError as e:  # a read-only library still searches; the index is rebuilt next time
            logger.warning("could not save the search index %s: %s", path, e)

    def embedder(self) -> Embedder:
        """The active model (loaded on first use)."""
        return self._state(self._active).embedder

    # ------------------------------------------------------------------ folders

    def add_folder(self, path: str | os.PathLike[str], excludes: Iterable[str] = ()) -> FolderStatus:
        """Add a folder to the library (indexed by the next :meth:`iter_index`).

        Raises:
            FolderError: it does not exist, is not a folder, cannot be read, or is already inside
                a library folder.
        """
        folder_path = Path(path).expanduser()
        if not folder_path.exists():
            raise FolderError(f"{folder_path} does not exist.")
        if not folder_path.is_dir():
            raise FolderError(f"{folder_path} is not a folder.")
        try:
            with os.scandir(folder_path) as it:
                next(it, None)
        except OSError as e:
            raise FolderError(f"{folder_path} cannot be read: {e.strerror}.") from e
        folder = self.catalog.add_folder(folder_path.resolve(), excludes)
        return self._folder_status(folder)

    def remove_folder(self, path: str | os.PathLike[str]) -> None:
        """Forget a folder and its photos (the files on disk are untouched).

        Raises:
            FolderError: it is not a library folder.
        """
        folder = self._library_folder(path)
        with self.writer:
            for spec in [k for k in self._models if "#profile=" not in k]:
                self._current_state(spec)
            removed = self.catalog.remove_folder(folder.id)
            with self._lock:
                for state in self._models.values():
                    if removed:
                        state.index.remove(removed)
                    self._save_index(state.index, state.index_path)
            for spec, state in list(self._models.items()):
                if "#profile=" not in spec:
                    self._compact(state)
            self._bump_writes(*self._models.values())

    def _library_folder(self, path: str | os.PathLike[str]) -> Folder:
        """The catalog's record of a library folder, by its resolved path or as given (a link)."""
        folder = self.catalog.folder_by_path(Path(path).expanduser().resolve())
        if folder is None:
            folder = self.catalog.folder_by_path(Path(path).expanduser())
        if folder is None:
            raise FolderError(f"{path} is not a library folder.")
        return folder

    def moved_folder(self, path: str | os.PathLike[str], sample: int = 40) -> FolderStatus | None:
        """The offline library folder whose photos ``path`` holds (the folder was moved or renamed
        there), else None. Decided on the content hashes of up to ``sample`` of its image files: at
        least three quarters of them must be photos of that one folder."""
        from .hashing import content_hash
        from .scanner import ScannedFile, scan_folder

        root = Path(path).expanduser().resolve()
        offline = {f.id: f for f in self.catalog.folders() if f.state != "online"}
        if not offline or not root.is_dir():
            return None
        hashes = []
        try:
            for item in scan_folder(root):
                if isinstance(item, ScannedFile):
                    with contextlib.suppress(OSError):
                        hashes.append(content_hash(item.path, item.size))
                    if len(hashes) >= sample:
                        break
        except FolderError:
            return None
        if len(hashes) < 3:
            return None
        counts = self.catalog.folders_of_hashes(hashes)
        best = max(offline, key=lambda folder_id: counts.get(folder_id, 0))
        if counts.get(best, 0) < 0.75 * len(hashes):
            return None
        return next(f for f in self.folders() if f.path == offline[best].path)

    def relocate_folder(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> FolderStatus:
        """Point the library folder ``old`` at ``new``, where its files now are (its photos keep
        their vectors, tags and places in profiles; the next indexing run checks every file).

        Raises:
            FolderError: ``old`` is not a library folder, or ``new`` overlaps another one.
        """
        folder = self._library_folder(old)
        with self.writer:
            moved = self.catalog.relocate_folder(folder.id, Path(new).expanduser().resolve())
            self._bump_writes(*self._models.values())
        return next(f for f in self.folders() if f.path == moved.path)

    def folders(self) -> list[FolderStatus]:
        counts = self.catalog.folder_counts(self._active_model_id())
        return [self._folder_status(f, counts) for f in self.catalog.folders()]

    def _folder_status(self, folder: Folder, counts: dict | None = None) -> FolderStatus:
        if counts is None:
            counts = self.catalog.folder_counts(self._active_model_id())
        c = counts.get(folder.id)
        return FolderStatus(
            path=folder.path,
            state=folder.state,
            photos=c.photos if c else 0,
            indexed=(c.with_vectors or 0) if c else 0,
            failures=c.failures if c else 0,
            last_scan=folder.last_scan,
        )

    def _active_model_id(self) -> int | None:
        """The catalog id of the active model's identity, without loading the model."""
        with self._lock:
            state = self._models.get(self._active)
        if state is not None:
            return state.store.model_id
        recorded = self.catalog.get_meta(_META_IDENTITY)
        if not recorded:
            return None
        try:
            info = json.loads(recorded)
        except ValueError:
            return None
        if info.get("spec") != self._active:
            return None
        for record in self.catalog.models():
            if record.key == info.get("key"):
                return record.id
        return None

    # ------------------------------------------------------------------ indexing

    def iter_index(
        self,
        folders: Iterable[str | os.PathLike[str]] | None = None,
        *,
        workers: int | None = None,
        batch_size: int | None = None,
        separate_process: bool = False,
        outside_links: bool = False,
        empty_means_deleted: bool = False,
    ) -> Generator[IndexProgress, None, IndexReport]:
        """Index the library folders (all, or those given); each yield is a cancellation point.

        The model indexed for is the target model when a switch is pending, else the active one.
        When a run over all folders completes, the target becomes the active model.

        ``separate_process``: decode and embed in a child process (:mod:`core.encoder_process`)
        instead of threads of this one, when the model runs on the CPU: the caller's threads (a
        GUI's) then never wait for the interpreter lock behind indexing. The child is started
        when a run first has photos to embed and is kept for later runs until :meth:`close`.

        ``outside_links``: follow links that lead out of a library folder (by default they are
        not followed; links into /proc, /sys and /dev never are).

        ``empty_means_deleted``: a folder that exists but is empty lost its photos (by default it
        reads as an unplugged drive's mount point: offline, photos kept).

        Raises:
            ModelUnavailableError, CheckpointError, ModelError: the model cannot be loaded.
            FolderError: a folder given is not a library folder.
        """
        spec = self._target or self._active
        self._state(spec)  # load the model (and fail) before waiting for another writer
        chosen = self._select_folders(folders)
        waiting = self.writer.wait()
        for _ in waiting:
            yield IndexProgress("wait", 0, None, path=str(self.root))
        try:
            return (
                yield from self._index_locked(
                    spec,
                    chosen,
                    folders is None,
                    workers,
                    batch_size,
                    separate_process,
                    {"outside_links": outside_links, "empty_means_deleted": empty_means_deleted},
                )
            )
        finally:
            self.writer.release()

    def _index_locked(
        self,
        spec: str,
        chosen: list[Folder],
        all_folders: bool,
        workers: int | None,
        batch_size: int | None,
        separate_process: bool,
        scan_options: dict[str, bool],
    ) -> Generator[IndexProgress, None, IndexReport]:
        state = self._current_state(spec)
        encoder = None
        # A GPU does the model's work outside the interpreter anyway; the child process talks over
        # inherited pipe descriptors, which POSIX systems have.
        if separate_process and state.embedder.device.type == "cpu" and os.name == "posix":
            encoder = functools.partial(self._encoder_process, spec, state, workers)
        indexer = Indexer(
            self.catalog,
            state.store,
            state.index,
            state.embedder,
            workers=workers,
            batch_size=batch_size,
            encoder=encoder,
            **scan_options,
        )
        if spec == self._active:
            self._record_identity(spec, state)  # status() counts this model's vectors from now on
        completed = False
        report: IndexReport | None = None
        try:
            report = yield from indexer.run(chosen)
            completed = not report.cancelled
        finally:
            changed = report is None or report.embedded or report.reused or report.removed
            if changed or not state.index_path.exists():
                with self._lock:
                    self._save_index(state.index, state.index_path)
                    state.searcher = None  # the background sample is stale
            if report is not None and report.removed:
                self._compact(state)
            if changed:
                self._bump_writes(state)
            if completed and all_folders:
                self._promote(spec, state)
            if spec == self._active:
                try:
                    self._sync_profile(state)
                except Exception as e:  # indexing itself is done; the profile is rebuilt when next used
                    logger.warning("could not update the active profile's vectors: %s", e)
                    with self._lock:
                        for key in [k for k in self._models if k.startswith(f"{spec}#profile=")]:
                            del self._models[key]
        return report

    @staticmethod
    def _encoder_process(spec: str, state: _ModelState, workers: int | None) -> EncoderProcess:
        from .encoder_process import EncoderProcess

        if state.encoder is None or not state.encoder.alive:
            state.close_encoder()
            state.encoder = EncoderProcess(spec, state.embedder.identity, workers=workers)
        return state.encoder

    def index(
        self,
        folders: Iterable[str | os.PathLike[str]] | None = None,
        on_progress: Callable[[IndexProgress], None] | None = None,
        **options,
    ) -> IndexReport:
        """:meth:`iter_index`, run to its end."""
        return drive(self.iter_index(folders, **options), on_progress)

    def _select_folders(self, folders: Iterable[str | os.PathLike[str]] | None) -> list[Folder]:
        if folders is None:
            return self.catalog.folders()
        chosen = []
        for path in folders:
            folder = self.catalog.folder_by_path(Path(path).expanduser().resolve())
            if folder is None:
                raise FolderError(f"{path} is not a library folder; add it first.")
            chosen.append(folder)
        return chosen

    def _promote(self, spec: str, state: _ModelState) -> None:
        """Make ``spec`` the library's model (its vectors are complete)."""
        if self._target == spec or self._explicit or self._active != spec:
            self._active = spec
        self._target = None
        self.catalog.set_meta(_META_TARGET, None)
        self.catalog.set_meta(_META_MODEL, spec)
        self._record_identity(spec, state)
        for other, other_state in list(self._models.items()):
            if other != spec:
                other_state.close_encoder()  # the previous model's indexing process is not needed again
        if not self._profile_serves(self._profile_record(), spec):
            self._set_profile_record(None)  # a profile of the previous model does not apply

    def _record_identity(self, spec: str, state: _ModelState) -> None:
        key = state.embedder.identity.key
        self.catalog.set_meta(_META_IDENTITY, json.dumps({"spec": spec, "key": key}))

    # ------------------------------------------------------------------ search

    def search(
        self,
        text: str = "",
        *,
        image: str | os.PathLike[str] | None = None,
        like_photo_id: int | None = None,
        k: int = 50,
    ) -> LibrarySearchResult:
        """Search by text (with +/- combinations), an example image, a library photo, or a mix.

        Raises:
            QueryError: nothing to search for, or an example that cannot be used.
            ModelUnavailableError, CheckpointError, ModelError: the model cannot be loaded.
        """
        query = Query.parse(text) if text.strip() else Query()
        if image is not None:
            image_path = Path(image).expanduser()
            if not image_path.is_file():
                raise QueryError(f"The example image {image_path} does not exist.")
            query = Query(query.terms, image_path=str(image_path), text=query.text)
        if like_photo_id is not None:
            query = Query(query.terms, photo_id=int(like_photo_id), text=query.text)
        if not query.terms and not query.has_example:
            raise QueryError("Type something to search for, or give an example image.")
        state = self._serving()
        searcher = self._searcher(state)
        result = searcher.search(query, k)
        photos = self.catalog.photos(h.photo_id for h in result.hits)
        offline = {f.id for f in self.catalog.folders() if f.state != "online"}
        hits = [
            PhotoHit(
                h.photo_id,
                photos[h.photo_id].path,
                h.score,
                h.z,
                h.tier - 1,
                h.differs,
                photos[h.photo_id].folder_id in offline,
            )
            for h in result.hits
            if h.photo_id in photos  # removed meanwhile
        ]
        background = getattr(result, "background_scores", None)
        if background is None:
            background = np.empty(0, np.float32)
        return LibrarySearchResult(
            query=result.query,
            model=str(state.embedder.identity),
            long_tail=result.long_tail,
            tiers=result.tiers,
            results=hits,
            background=background,
            raw=result,
            unknown_words=result.unknown_words,
        )

    def searcher(self) -> Searcher:
        """The searcher answering queries now (the serving model's), e.g. to tune its settings."""
        return self._searcher(self._serving())

    def _searcher(self, state: _ModelState) -> Searcher:
        from .match_gate import load_vocabulary
        from .search import Searcher

        with self._lock:
            if state.searcher is None:
                embedder = state.embedder
                index = state.index
                background = index.sample(BACKGROUND_SAMPLE) if len(index) else np.empty((0, embedder.dim))
                state.searcher = Searcher(
                    embedder.encode_texts,
                    index,
                    background,
                    encode_image=self._image_encoder(embedder),
                    gate=match_gate_for(embedder),
                    vocabulary=load_vocabulary(embedder.spec),
                )
            return state.searcher

    @staticmethod
    def _image_encoder(embedder: Embedder) -> Callable[[Path], np.ndarray]:
        from .decode import open_image

        def encode(path: Path) -> np.ndarray:
            try:
                decoded = open_image(path, embedder.image_size)
            except Exception as e:
                raise QueryError(f"The example image cannot be used: {e}") from e
            return embedder.encode_images([decoded.image])[0]

        return encode

    # ------------------------------------------------------------------ profiles

    def profiles(self) -> list[ProfileInfo]:
        """Every saved fine-tune profile version of this library."""
        return self.profile_store.list()

    @property
    def tags(self) -> UserTags:
        """Tags given in the app (by content, so they follow moved photos); fine-tuning reads them."""
        from .tags import UserTags

        return UserTags(self.catalog)

    def photo_tags(self, photo_id: int) -> PhotoTags:
        """The tags of one photo: those its folders and sidecars give (as a fine-tune rooted at its
        library folder reads them) and those given in the app.

        Raises:
            LibraryError: no such photo.
        """
        from .tags import file_tags

        info = self.photo(photo_id)
        given = self.tags.of([photo_id]).get(photo_id, ())
        return PhotoTags(photo_id, file_tags(info.path, info.folder), tuple(given))

    def vectors(self) -> VectorStore:
        """The active model's stored photo vectors (never adapted; loads the model on first use)."""
        return self._state(self._active).store

    @property
    def active_profile(self) -> ProfileInfo | None:
        """The profile answering searches, or None (the bare model answers)."""
        record = self._profile_record()
        if record is None:
            return None
        try:
            info = self.profile_store.get(record["name"], record["version"])
        except ProfileError as e:
            logger.warning("the active profile is gone (%s); the model answers searches alone", e)
            return None
        return info if self._profile_serves(record, self._active) else None

    def _profile_record(self) -> dict[str, Any] | None:
        text = self.catalog.get_meta(_META_PROFILE)
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

    def _set_profile_record(self, info: ProfileInfo | None) -> None:
        if info is None:
            self.catalog.set_meta(_META_PROFILE, None)
            return
        record = {
            "name": info.name,
            "version": info.version,
            "mode": info.mode,
            "base_spec": info.base_spec,
            "model_spec": info.model_spec,
        }
        self.catalog.set_meta(_META_PROFILE, json.dumps(record))

    def _profile_serves(self, record: dict[str, Any] | None, spec: str) -> bool:
        """Whether a profile setting applies when ``spec`` is the active model."""
        if record is None:
            return False
        if record.get("mode") == "full":
            return record.get("model_spec") == spec
        return record.get("base_spec") == spec

    def iter_use_profile(
        self, name: str | None, version: int | None = None
    ) -> Generator[ProfileProgress, None, ProfileInfo | None]:
        """Make a profile answer searches (``None``: the bare model again); each yield is a
        cancellation point, and a cancelled switch leaves the previous state in place.

        An adapter profile transforms the model's stored vectors (only those it has not
        transformed before) and builds its index before it takes over. A full profile is a model
        of its own: the library is re-embedded with it (like :meth:`set_model` + indexing).
        Switching back to the base model of a full profile is instant when its vectors are complete.

        Raises:
            ProfileError: no such profile, a damaged one, or one trained on another base model.
            ModelUnavailableError, CheckpointError, ModelError: a model cannot be loaded.
        """
        if name is None:
            record = self._profile_record()
            if record and record.get("mode") == "full" and self._active != record.get("base_spec"):
                yield ProfileProgress("load", 0, None)
                self._switch_model_now(record["base_spec"])
            self._set_profile_record(None)
            return None
        info = self.profile_store.get(name, version)
        if info.mode == "full":
            return (yield from self._iter_use_full_profile(info))
        base_spec = self._base_spec_for_adapter()
        yield ProfileProgress("load", 0, None)
        base = self._state(base_spec)
        self.profile_store.check_base(info, base.embedder.identity)
        adapter = self.profile_store.load_adapter(info)
        key = _profile_key(base_spec, info)
        with self._lock:
            state = self._models.get(key)
        if state is None:
            state = yield from self._iter_build_profile_state(base, info, adapter)
            with self._lock:
                self._models[key] = state
        self._set_profile_record(info)
        yield ProfileProgress("done", 1, 1)
        return info

    def use_profile(
        self,
        name: str | None,
        version: int | None = None,
        on_progress: Callable[[ProfileProgress], None] | None = None,
    ) -> ProfileInfo | None:
        """:meth:`iter_use_profile`, run to its end."""
        return drive(self.iter_use_profile(name, version), on_progress)

    def delete_profile(self, name: str, version: int | None = None) -> list[ProfileInfo]:
        """Delete a profile (one version, or all) with its vectors and index; the active one is
        switched off first.

        Raises:
            ProfileError: no such profile or version.
        """
        active = self.active_profile
        store = self.profile_store
        doomed = [store.get(name, version)] if version is not None else store.list(name)
        if not doomed:
            self.profile_store.get(name)  # raises, listing the profiles there are
        if active is not None and any(d.name == active.name and d.version == active.version for d in doomed):
            self.use_profile(None)
        self._wait_for_saves()
        for info in doomed:
            self._drop_profile_vectors(info)
        return self.profile_store.delete(name, version)

    def _drop_profile_vectors(self, info: ProfileInfo) -> None:
        with self._lock:
            for key in [k for k in self._models if k.endswith(f"#profile={info.adapter_id}")]:
                del self._models[key]
        if info.mode != "adapter" or not info.adapter_id:
            return
        index_path = self.root / "index" / f"{info.base.with_adapter(info.adapter_id).key}.idx"
        if index_path.parent.is_dir():
            for path in index_path.parent.glob(glob.escape(index_path.name) + "*"):
                path.unlink(missing_ok=True)

    def _base_spec_for_adapter(self) -> str:
        return self._active

    def _iter_use_full_profile(self, info: ProfileInfo) -> Generator[ProfileProgress, None, ProfileInfo]:
        spec = info.model_spec
        assert spec is not None
        if not info.weights.is_file():
            raise ProfileError(f"Profile {info.label} cannot be used: {info.weights} is missing.")
        current = self._active
        record = self._profile_record()
        base_spec = record["base_spec"] if record and record.get("mode") == "full" else current
        yield ProfileProgress("load", 0, None)
        self.profile_store.check_base(info, self._state(base_spec).embedder.identity)
        self.set_model(spec)
        gen = self.iter_index()
        try:
            while True:
                try:
                    progress = next(gen)
                except StopIteration as stop:
                    report = stop.value
                    break
                if progress.phase == "embed":
                    yield ProfileProgress("embed", progress.done, progress.total)
        finally:
            gen.close()
        if report is None or report.cancelled or self._active != spec:
            raise ProfileError(f"Profile {info.label}: the library could not be embedded with it completely.")
        self._set_profile_record(info)
        yield ProfileProgress("done", 1, 1)
        return info

    def _switch_model_now(self, spec: str) -> None:
        """Make ``spec`` the model at once when it has a vector for every photo (else it becomes
        the target, embedded by the next indexing)."""
        self.set_model(spec)
        if self._target != spec:
            return
        state = self._state(spec)
        if self._photos_missing_vectors(state) == 0:
            self._promote(spec, state)

    def _photos_missing_vectors(self, state: _ModelState) -> int:
        return (
            self.catalog.connection()
            .execute(
                """SELECT count(*) FROM photos p WHERE NOT EXISTS
                   (SELECT 1 FROM embeddings e WHERE e.model_id = ? AND e.content_hash = p.content_hash)""",
                (state.store.model_id,),
            )
            .fetchone()[0]
        )

    def _iter_build_profile_state(
        self, base: _ModelState, info: ProfileInfo, adapter: Any
    ) -> Generator[ProfileProgress, None, _ModelState]:
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
        index_path = self.root / "index" / f"{identity.key}.idx"
        state = _ProfileState(embedder, base.store, None, index_path)  # type: ignore[arg-type]
        if not self._load_profile_index(state):
            yield from self._iter_build_profile_index(base, state)
        else:
            yield from self._iter_sync_profile_index(base, state)
        return state

    def _load_profile_index(self, state: _ProfileState) -> bool:
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

    def _iter_build_profile_index(
        self, base: _ModelState, state: _ProfileState
    ) -> Generator[ProfileProgress, None, None]:
        from .index import DEFAULT_EXACT_THRESHOLD, VectorIndex

        adapter = state.embedder.adapter  # type: ignore[attr-defined]
        yield ProfileProgress("apply", 0, None)
        ids = base.index.ids()
        vecs = base.index.get_vectors(ids)
        content = self._content_of(ids)
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
        saver = threading.Thread(target=self._save_profile_index, args=(state,), name="profile-index-save")
        self._savers = [t for t in self._savers if t.is_alive()] + [saver]
        saver.start()

    def _iter_sync_profile_index(
        self, base: _ModelState, state: _ProfileState
    ) -> Generator[ProfileProgress, None, int]:
        """Transform the photos that are new or changed since the profile's index was made."""
        adapter = state.embedder.adapter  # type: ignore[attr-defined]
        wanted = base.index.ids()
        content = self._content_of(wanted)
        have = state.index.ids()
        gone = np.setdiff1d(have, wanted)
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
        self._save_profile_index(state)
        with self._lock:
            state.searcher = None
        return len(stale) + len(gone)

    def _content_of(self, ids: np.ndarray) -> dict[int, str]:
        """Content hash of each photo id (ids not in the catalog are absent)."""
        wanted = set(np.asarray(ids).tolist())
        rows = self.catalog.connection().execute("SELECT id, content_hash FROM photos")
        return {pid: h for pid, h in rows if pid in wanted}

    def _save_profile_index(self, state: _ProfileState) -> None:
        """The index, then the map of the content its vectors come from (both atomic)."""
        with state.save_lock:
            self._save_index(state.index, state.index_path)
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

    def _serving(self) -> _ModelState:
        """The state answering searches: the active profile's, else the active model's."""
        record = self._profile_record()
        if record is None or record.get("mode") != "adapter" or record.get("base_spec") != self._active:
            return self._state(self._active)
        with self._lock:
            for key, state in self._models.items():
                if key.startswith(f"{self._active}#profile=") and key.split("#profile=")[1].startswith(
                    f"{record['name']}.v{record['version']}."
                ):
                    return state
        try:
            drive(self.iter_use_profile(record["name"], record["version"]))
        except ProfileError as e:
            logger.warning("%s The model answers searches alone.", e)
            self._set_profile_record(None)
            return self._state(self._active)
        return self._serving()

    def _sync_profile(self, base: _ModelState) -> None:
        """After indexing: bring the loaded active profile's index in step with the model's."""
        record = self._profile_record()
        if record is None or record.get("mode") != "adapter" or record.get("base_spec") != self._active:
            return
        prefix = f"{record['name']}.v{record['version']}."
        with self._lock:
            states = [
                state
                for key, state in self._models.items()
                if key.startswith(f"{self._active}#profile=") and key.split("#profile=")[1].startswith(prefix)
            ]
        for state in states:
            drive(self._iter_sync_profile_index(base, state))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ information

    def photo(self, photo_id: int) -> PhotoInfo:
        """Raises: LibraryError: no such photo."""
        photo = self.catalog.photos([photo_id]).get(photo_id)
        if photo is None:
            raise LibraryError(f"No photo with id {photo_id} in the library.")
        folder = self.catalog.folder(photo.folder_id)
        return PhotoInfo(
            photo.id, photo.path, photo.size, photo.width, photo.height, photo.taken_at, folder.path
        )

    def failures(self) -> list[Failure]:
        return self.catalog.failures()

    def status(self) -> LibraryStatus:
        folders = self.folders()
        profile = self.active_profile
        return LibraryStatus(
            root=str(self.root),
            model=self.model_description if self.is_starter else self._active,
            model_spec=self._active,
            is_starter=self.is_starter,
            photos=sum(f.photos for f in folders),
            indexed=sum(f.indexed for f in folders),
            failures=len(self.catalog.failures()),
            folders=folders,
            target_model=self._target,
            profile=profile.label if profile is not None else None,
        )


def _refuse_orphaned_vectors(root: Path) -> None:
    """Refuse to start an empty catalog beside the vectors of an indexed library.

    A missing or empty ``catalog.sqlite`` next to vector files means the catalog was lost (deleted,
    truncated, not restored with the rest): a new catalog would disown every vector, and the next
    write would cut the files down to its empty row count.
    """
    catalog = root / "catalog.sqlite"
    try:
        if catalog.is_file() and catalog.stat().st_size > 0:
            return
        vectors = [p for p in (root / "vectors").glob("*.f32") if p.stat().st_size > 32]
    except OSError:
        return  # unreadable: opening the catalog says what is wrong
    if vectors:
        state = "empty" if catalog.exists() else "missing"
        raise LibraryError(
            f"The catalog {catalog} is {state}, but {root / 'vectors'} holds the vectors of an indexed "
            "library. LadderLens will not start an empty catalog over them: restore catalog.sqlite "
            "(from a backup), or move the vectors and index folders away to start a new library there. "
            "Nothing was changed."
        )


def match_gate_for(embedder: Embedder) -> MatchGate:
    """The model's calibrated match gate (a file beside its weights), else the defaults."""
    from .match_gate import load_match_gate

    return load_match_gate(embedder.spec)


def _canonical(spec: str) -> str:
    from .models import ModelSpec

    return str(ModelSpec.parse(spec))


def _profile_key(spec: str, info: ProfileInfo) -> str:
    """The key of an adapter profile's state among the loaded models."""
    return f"{spec}#profile={info.adapter_id}"


def _content_map_path(index_path: Path) -> Path:
    """Beside a profile's index: which content each of its vectors was made from."""
    return index_path.with_name(index_path.name + ".content.npz")
