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
An adapter profile transforms the model's stored vectors (:mod:`core.profile_serving`). A full
profile is a model of its own: using it re-embeds the library like :meth:`Library.set_model`.

The library itself chooses the model, runs indexing and assembles search results; the loaded
models live in :mod:`core.model_states`, the folders in :mod:`core.library_folders`, and all SQL
in :mod:`core.catalog`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import BrowsedPhoto, Catalog, Failure, Folder
from .errors import LibraryError, ProfileError, QueryError
from .grading import MatchGate
from .indexer import Indexer, IndexProgress, IndexReport
from .library_folders import FolderStatus, LibraryFolders
from .model_states import ModelState, ModelStates, StateKey, compact, save_index
from .paths import library_dir
from .profile_serving import ProfileServing
from .profiles import ProfileInfo, ProfileProgress, ProfileStore
from .progress import drive
from .query import PhotoFilter, Query
from .writer_lock import WriterLock

if TYPE_CHECKING:
    from .embedder import Embedder
    from .encoder_process import EncoderProcess
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

STARTER_DESCRIPTION = (
    "LadderLens starter model (bundled, small, trained only on the LadderLens scene world). "
    "It recognises cars, houses, trees, boats, hot-air balloons and kites; eight colours (red, "
    "orange, yellow, green, blue, purple, white, black); one, two or three of them; beach, snow, "
    "meadow, city and desert settings; day, sunset and night. It does not know real-world photos: "
    "for your own pictures choose an open_clip model such as "
    "openclip:ViT-B-32-256/datacomp_s34b_b86k."
)


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
        # Called with a core.models.DownloadProgress while pretrained weights download (from the
        # thread that loads the model); a terminal shows its own progress bar regardless.
        self.on_download: Callable[[DownloadProgress], None] | None = None
        self.states = ModelStates(root, self.catalog, self.writer, device, lambda: self.on_download)
        self.folder_set = LibraryFolders(self.catalog, self.writer, self.states, self._active_model_id)
        self.serving = ProfileServing(self.catalog, self.profile_store, self.states)
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
        self.serving.wait_for_saves()
        self.states.close()
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

    def embedder(self) -> Embedder:
        """The active model (loaded on first use)."""
        return self.states.get(self._active).embedder

    # ------------------------------------------------------------------ folders

    def add_folder(self, path: str | os.PathLike[str], excludes: Iterable[str] = ()) -> FolderStatus:
        """Add a folder to the library (indexed by the next :meth:`iter_index`).

        Raises:
            FolderError: it does not exist, is not a folder, cannot be read, or is already inside
                a library folder.
        """
        return self.folder_set.add(path, excludes)

    def remove_folder(self, path: str | os.PathLike[str]) -> None:
        """Forget a folder and its photos (the files on disk are untouched).

        Raises:
            FolderError: it is not a library folder.
        """
        self.folder_set.remove(path)

    def moved_folder(self, path: str | os.PathLike[str], sample: int = 40) -> FolderStatus | None:
        """The offline library folder whose photos ``path`` holds (it was moved there), else None."""
        return self.folder_set.moved(path, sample)

    def relocate_folder(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> FolderStatus:
        """Point the library folder ``old`` at ``new``, where its files now are.

        Raises:
            FolderError: ``old`` is not a library folder, or ``new`` overlaps another one.
        """
        return self.folder_set.relocate(old, new)

    def folders(self) -> list[FolderStatus]:
        return self.folder_set.statuses()

    def _active_model_id(self) -> int | None:
        """The catalog id of the active model's identity, without loading the model."""
        state = self.states.loaded(StateKey(self._active))
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
        self.states.get(spec)  # load the model (and fail) before waiting for another writer
        chosen = self.folder_set.select(folders)
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
        state = self.states.current(spec)
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
                with self.states.lock:
                    save_index(state.index, state.index_path)
                    state.searcher = None  # the background sample is stale
            if report is not None and report.removed:
                compact(state)
            if changed:
                self.states.bump_writes(state)
            if completed and all_folders:
                self._promote(spec, state)
            if spec == self._active:
                try:
                    self.serving.sync(state, spec)
                except Exception as e:  # indexing itself is done; the profile is rebuilt when next used
                    logger.warning("could not update the active profile's vectors: %s", e)
                    self.states.forget_profiles(spec)
        return report

    @staticmethod
    def _encoder_process(spec: str, state: ModelState, workers: int | None) -> EncoderProcess:
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

    def _promote(self, spec: str, state: ModelState) -> None:
        """Make ``spec`` the library's model (its vectors are complete)."""
        if self._target == spec or self._explicit or self._active != spec:
            self._active = spec
        self._target = None
        self.catalog.set_meta(_META_TARGET, None)
        self.catalog.set_meta(_META_MODEL, spec)
        self._record_identity(spec, state)
        for other, other_state in self.states.models():
            if other != spec:
                other_state.close_encoder()  # the previous model's indexing process is not needed again
        if not self.serving.serves(self.serving.record(), spec):
            self.serving.set_record(None)  # a profile of the previous model does not apply

    def _record_identity(self, spec: str, state: ModelState) -> None:
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
        example_weight: float = 1.0,
        where: PhotoFilter | None = None,
    ) -> SearchResult:
        """Search by text (with +/- combinations), an example image, a library photo, or a mix.

        ``example_weight`` weighs the example image or photo against the text (-1: "not like this
        one"); ``where`` keeps only photos of some folders or dates.

        Raises:
            QueryError: nothing to search for, an example that cannot be used, or "not like"
                without anything to look for.
            FolderError: a folder of ``where`` is not a library folder.
            ModelUnavailableError, CheckpointError, ModelError: the model cannot be loaded.
        """
        query = Query.parse(text) if text.strip() else Query()
        if image is not None:
            image_path = Path(image).expanduser()
            if not image_path.is_file():
                raise QueryError(f"The example image {image_path} does not exist.")
            query = Query(
                query.terms, image_path=str(image_path), image_weight=example_weight, text=query.text
            )
        if like_photo_id is not None:
            query = Query(
                query.terms, photo_id=int(like_photo_id), image_weight=example_weight, text=query.text
            )
        if not query.terms and not query.has_example:
            raise QueryError("Type something to search for, or give an example image.")
        if query.has_example and example_weight < 0 and not any(t.weight > 0 for t in query.terms):
            raise QueryError(
                "Type what you are looking for: “not like this” only moves results away from a photo."
            )
        allowed = None
        if where is not None and not where.is_empty:
            folder_ids = self._folder_ids(where)
            allowed = np.asarray(
                self.catalog.photo_ids_where(folder_ids, where.taken_from, where.taken_to), np.int64
            )
        state = self.serving.serving(self._active)
        searcher = self._searcher(state)
        result = searcher.search(query, k, allowed=allowed)
        photos = self.catalog.photos(h.photo_id for h in result.hits)
        offline = {f.id for f in self.catalog.folders() if f.state != "online"}
        hits = [
            replace(h, path=photos[h.photo_id].path, offline=photos[h.photo_id].folder_id in offline)
            for h in result.hits
            if h.photo_id in photos  # removed meanwhile
        ]
        return replace(result, hits=hits, model=str(state.embedder.identity))

    def _folder_ids(self, where: PhotoFilter) -> list[int] | None:
        """The catalog ids of a filter's folders (None: every folder). Raises FolderError."""
        return [self.folder_set.find(f).id for f in where.folders] if where.folders else None

    def browse(
        self,
        order: str = "date",
        where: PhotoFilter | None = None,
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[BrowsedPhoto], int]:
        """The library's photos without a query: newest first (``order="date"``; the EXIF date,
        else the file's) or by folder and name (``"folder"``), filtered by ``where``. Returns a
        page of ``limit`` photos from ``offset`` and how many there are in all (no model is loaded).

        Raises:
            QueryError: an unknown order. FolderError: a filter's folder is not a library folder.
        """
        if order not in ("date", "folder"):
            raise QueryError(f"Photos can be listed by date or by folder, not by {order!r}.")
        where = where or PhotoFilter()
        return self.catalog.browse(
            order, self._folder_ids(where), where.taken_from, where.taken_to, offset, limit
        )

    def searcher(self) -> Searcher:
        """The searcher answering queries now (the serving model's), e.g. to tune its settings."""
        return self._searcher(self.serving.serving(self._active))

    def _searcher(self, state: ModelState) -> Searcher:
        from .match_gate import load_vocabulary
        from .search import Searcher

        with self.states.lock:
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
        return self.states.get(self._active).store

    @property
    def active_profile(self) -> ProfileInfo | None:
        """The profile answering searches, or None (the bare model answers)."""
        return self.serving.active(self._active)

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
            record = self.serving.record()
            if record and record.get("mode") == "full" and self._active != record.get("base_spec"):
                yield ProfileProgress("load", 0, None)
                self._switch_model_now(record["base_spec"])
            self.serving.set_record(None)
            return None
        info = self.profile_store.get(name, version)
        if info.mode == "full":
            return (yield from self._iter_use_full_profile(info))
        return (yield from self.serving.iter_use_adapter(info, self._active))

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
        for info in doomed:
            self.serving.drop(info)
        return self.profile_store.delete(name, version)

    def _iter_use_full_profile(self, info: ProfileInfo) -> Generator[ProfileProgress, None, ProfileInfo]:
        spec = info.model_spec
        assert spec is not None
        if not info.weights.is_file():
            raise ProfileError(f"Profile {info.label} cannot be used: {info.weights} is missing.")
        current = self._active
        record = self.serving.record()
        base_spec = record["base_spec"] if record and record.get("mode") == "full" else current
        yield ProfileProgress("load", 0, None)
        self.profile_store.check_base(info, self.states.get(base_spec).embedder.identity)
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
        self.serving.set_record(info)
        yield ProfileProgress("done", 1, 1)
        return info

    def _switch_model_now(self, spec: str) -> None:
        """Make ``spec`` the model at once when it has a vector for every photo (else it becomes
        the target, embedded by the next indexing)."""
        self.set_model(spec)
        if self._target != spec:
            return
        state = self.states.get(spec)
        if self.catalog.photos_without_vectors(state.store.model_id) == 0:
            self._promote(spec, state)

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
