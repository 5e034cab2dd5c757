"""The library facade: one object that the command line and the app talk to.

A library is a folder::

    catalog.sqlite          folders, photos, failures, model identities, settings
    vectors/<model>.g<N>.f32  the vectors of each model identity (keyed by content)
    index/<model>.idx       the search index of each model identity (rebuilt when missing)

Opening a library is cheap: the model (torch, open_clip) is loaded on the first search or index.
The library has one *active* model, whose vectors answer searches. Switching models
(:meth:`Library.set_model`) sets a *target*: the next :meth:`Library.iter_index` embeds the photos
for it, and the target becomes active only once its vectors are complete, so searches never see a
half-embedded library and vectors of two models never mix.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import Catalog, Failure, Folder
from .errors import FolderError, IndexCorruptError, LibraryError, QueryError
from .grading import MatchGate, Tier
from .indexer import Indexer, IndexProgress, IndexReport, drive
from .paths import library_dir
from .query import Query

if TYPE_CHECKING:
    from .embedder import Embedder
    from .index import VectorIndex
    from .search import Searcher, SearchResult
    from .vectors import VectorStore

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "starter"
BACKGROUND_SAMPLE = 2000
_META_MODEL = "model"
_META_TARGET = "model_target"
_META_IDENTITY = "model_identity"

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "model": self.model,
            "model_spec": self.model_spec,
            "is_starter": self.is_starter,
            "target_model": self.target_model,
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
class LibrarySearchResult:
    """Graded results with file paths. ``tiers`` best first; ``results`` by score, best first."""

    query: str
    model: str
    long_tail: bool
    tiers: list[Tier]
    results: list[PhotoHit]
    background: np.ndarray = field(repr=False, compare=False)
    raw: SearchResult | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``search --json``."""
        return {
            "query": self.query,
            "model": self.model,
            "long_tail": bool(self.long_tail),
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
                {"path": h.path, "score": float(h.score), "z": float(h.z), "tier": int(h.tier)}
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
        self.catalog = Catalog(root / "catalog.sqlite")
        self._device = device
        self._lock = threading.RLock()
        self._models: dict[str, _ModelState] = {}  # by spec text
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
        with self._lock:
            self._models.clear()
        self.catalog.close()

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
        from .vectors import VectorStore

        embedder = Embedder.from_spec(spec, device=self._device)
        identity = embedder.identity
        store = VectorStore(self.catalog, self.root / "vectors", identity, embedder.dim)
        index_path = self.root / "index" / f"{identity.key}.idx"
        index = self._open_index(store, index_path, embedder.dim)
        return _ModelState(embedder, store, index, index_path)

    def _open_index(self, store: VectorStore, path: Path, dim: int) -> VectorIndex:
        from .index import VectorIndex

        ids, vecs = store.photo_matrix()
        if path.exists():
            try:
                return VectorIndex.load(path, dim, expected_ids=ids)
            except IndexCorruptError as e:
                logger.warning("%s Rebuilding it from the stored vectors.", e)
        index = VectorIndex(dim)
        if len(ids):
            index.add(ids, vecs)
        self._save_index(index, path)
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
        folder = self.catalog.folder_by_path(Path(path).expanduser().resolve())
        if folder is None:
            folder = self.catalog.folder_by_path(Path(path).expanduser())
        if folder is None:
            raise FolderError(f"{path} is not a library folder.")
        removed = self.catalog.remove_folder(folder.id)
        with self._lock:
            for state in self._models.values():
                if removed:
                    state.index.remove(removed)
                self._save_index(state.index, state.index_path)

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
    ) -> Generator[IndexProgress, None, IndexReport]:
        """Index the library folders (all, or those given); each yield is a cancellation point.

        The model indexed for is the target model when a switch is pending, else the active one.
        When a run over all folders completes, the target becomes the active model.

        Raises:
            ModelUnavailableError, CheckpointError, ModelError: the model cannot be loaded.
            FolderError: a folder given is not a library folder.
        """
        spec = self._target or self._active
        state = self._state(spec)
        chosen = self._select_folders(folders)
        indexer = Indexer(
            self.catalog, state.store, state.index, state.embedder, workers=workers, batch_size=batch_size
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
            if completed and folders is None:
                self._promote(spec, state)
        return report

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
        state = self._state(self._active)
        searcher = self._searcher(state)
        result = searcher.search(query, k)
        photos = self.catalog.photos(h.photo_id for h in result.hits)
        hits = [
            PhotoHit(h.photo_id, photos[h.photo_id].path, h.score, h.z, h.tier - 1)
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
        )

    def _searcher(self, state: _ModelState) -> Searcher:
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
        )


def match_gate_for(embedder: Embedder) -> MatchGate:
    """The model's calibrated match gate (recorded with its weights), else the defaults."""
    gate = getattr(embedder, "match_gate", None)
    if isinstance(gate, dict):
        try:
            return MatchGate(**gate)
        except TypeError:
            logger.warning("ignoring a malformed match gate: %r", gate)
    return MatchGate()


def _canonical(spec: str) -> str:
    from .models import ModelSpec

    return str(ModelSpec.parse(spec))
