"""The folders of a library: adding, removing, recognising a moved folder, and their counts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, Folder
from .errors import FolderError
from .model_states import ModelStates, compact, save_index
from .writer_lock import WriterLock


@dataclass(frozen=True)
class FolderStatus:
    """A library folder as the user sees it."""

    path: str
    state: str  # "online" | "offline"
    photos: int
    indexed: int  # photos with a vector of the active model
    failures: int
    last_scan: float | None


class LibraryFolders:
    """A library's folders. ``active_model_id`` gives the catalog id of the model whose vectors
    count as indexed (None: none yet)."""

    def __init__(
        self,
        catalog: Catalog,
        writer: WriterLock,
        states: ModelStates,
        active_model_id: Callable[[], int | None],
    ):
        self.catalog = catalog
        self.writer = writer
        self.states = states
        self._active_model_id = active_model_id

    def add(self, path: str | os.PathLike[str], excludes: Iterable[str] = ()) -> FolderStatus:
        """Add a folder (indexed by the next indexing run).

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
        return self.status_of(folder)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Forget a folder and its photos (the files on disk are untouched), with their vectors in
        every loaded index.

        Raises:
            FolderError: it is not a library folder.
        """
        folder = self.find(path)
        with self.writer:
            for spec, _ in self.states.models():
                self.states.current(spec)
            removed = self.catalog.remove_folder(folder.id)
            with self.states.lock:
                for _, state in self.states.items():
                    if removed:
                        state.index.remove(removed)
                    save_index(state.index, state.index_path)
            for _, state in self.states.models():
                compact(state)
            self.states.bump_writes(*(state for _, state in self.states.items()))

    def find(self, path: str | os.PathLike[str]) -> Folder:
        """The catalog's record of a library folder, by its resolved path or as given (a link).

        Raises:
            FolderError: it is not a library folder.
        """
        folder = self.catalog.folder_by_path(Path(path).expanduser().resolve())
        if folder is None:
            folder = self.catalog.folder_by_path(Path(path).expanduser())
        if folder is None:
            raise FolderError(f"{path} is not a library folder.")
        return folder

    def select(self, paths: Iterable[str | os.PathLike[str]] | None) -> list[Folder]:
        """The library folders given (all of them for None).

        Raises:
            FolderError: a path is not a library folder.
        """
        if paths is None:
            return self.catalog.folders()
        chosen = []
        for path in paths:
            folder = self.catalog.folder_by_path(Path(path).expanduser().resolve())
            if folder is None:
                raise FolderError(f"{path} is not a library folder; add it first.")
            chosen.append(folder)
        return chosen

    def moved(self, path: str | os.PathLike[str], sample: int = 40) -> FolderStatus | None:
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
        return self.status_of(offline[best])

    def relocate(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> FolderStatus:
        """Point the library folder ``old`` at ``new``, where its files now are (its photos keep
        their vectors, tags and places in profiles; the next indexing run checks every file).

        Raises:
            FolderError: ``old`` is not a library folder, or ``new`` overlaps another one.
        """
        folder = self.find(old)
        with self.writer:
            moved = self.catalog.relocate_folder(folder.id, Path(new).expanduser().resolve())
            self.states.bump_writes(*(state for _, state in self.states.items()))
        return self.status_of(moved)

    def statuses(self) -> list[FolderStatus]:
        counts = self.catalog.folder_counts(self._active_model_id())
        return [self.status_of(f, counts) for f in self.catalog.folders()]

    def status_of(self, folder: Folder, counts: dict | None = None) -> FolderStatus:
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
