"""Walk a library folder and list its image files, reporting what could not be read.

The walk is iterative (an explicit stack, so a deep tree never hits Python's recursion limit), uses
``os.scandir`` (one system call per directory on most platforms) and goes on past every problem: an
unreadable sub-folder, a folder deleted while the walk runs or a broken link is reported as a
:class:`ScanProblem` and the walk continues with the next entry.
"""

from __future__ import annotations

import errno
import fnmatch
import importlib.util
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core.errors import FolderError

logger = logging.getLogger(__name__)

HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif"})

BASE_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


def heif_supported() -> bool:
    """Whether HEIC/HEIF files can be decoded here (the optional ``pillow_heif`` package is installed)."""
    return importlib.util.find_spec("pillow_heif") is not None


IMAGE_EXTENSIONS: frozenset[str] = BASE_IMAGE_EXTENSIONS | (
    HEIF_EXTENSIONS if heif_supported() else frozenset()
)
"""Lower-case file extensions (with the dot) of the images the library indexes."""

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".svn",
    ".hg",
    "node_modules",
    "@eaDir",  # Synology thumbnails
    "#recycle",  # Synology recycle bin
    "#snapshot",
    ".thumbnails",
    ".Trash*",
    "$RECYCLE.BIN",
    "System Volume Information",
    "__MACOSX",
    "lost+found",
)
"""Folder (or file) name globs skipped by default: thumbnail caches, recycle bins, tool folders.

Hidden entries (names starting with a dot, and entries marked hidden on Windows) are always skipped.
"""


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """An image file found by the walk."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """Something under the root that could not be read; the walk went on without it.

    A problem on a folder means the photos below it were not listed: they must not be swept from the
    catalog as if deleted (see ``Catalog.sweep(keep_prefixes=...)``).
    """

    path: str
    reason: str
    is_folder: bool = True


class _Excludes:
    """Case-insensitive globs: a pattern without '/' matches an entry's name, one with '/' its
    path relative to the root (written with '/')."""

    def __init__(self, patterns: Iterable[str]):
        self.name_patterns: list[str] = []
        self.path_patterns: list[str] = []
        for raw in patterns:
            pattern = raw.strip().replace("\\", "/").strip("/").lower()
            if not pattern:
                continue
            (self.path_patterns if "/" in pattern else self.name_patterns).append(pattern)
        # One compiled alternation per kind: one regex match per entry, not one fnmatch per pattern.
        self._name = _compile(self.name_patterns)
        self._path = _compile(self.path_patterns)

    def match(self, name: str, rel_path: str) -> bool:
        if self._name is not None and self._name.match(name.lower()):
            return True
        return self._path is not None and self._path.match(rel_path.lower()) is not None


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _is_hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return True
    if os.name == "nt":  # pragma: no cover - Windows only
        try:
            attributes = entry.stat(follow_symlinks=False).st_file_attributes
        except OSError:
            return False
        return bool(attributes & stat.FILE_ATTRIBUTE_HIDDEN)
    return False


def _reason(error: OSError, *, folder: bool) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "folder disappeared during the scan" if folder else "file disappeared during the scan"
    if isinstance(error, NotADirectoryError):
        return "no longer a folder"
    if error.errno == errno.ELOOP:
        return "link loop"
    return (error.strerror or str(error)).lower()


# Where links are never followed, even when links may leave the root: the kernel's and devices'
# pseudo-file systems (endless, blocking or huge "files").
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev", "/run")


def scan_folder(
    root: str | os.PathLike[str],
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    follow_symlinks: bool = True,
    outside_links: bool = False,
) -> Iterator[ScannedFile | ScanProblem]:
    """Yield every image file under ``root``, and a :class:`ScanProblem` for each part that could not be read.

    Entries of a folder come in name order; a folder's files come before its sub-folders.

    Args:
        root: the library folder to walk.
        excludes: name globs (``"raw*"``) or relative path globs (``"2019/tmp*"``) of folders and files
            to skip, matched case-insensitively. Hidden entries are always skipped.
        extensions: file extensions to list, with or without the dot, matched case-insensitively.
        follow_symlinks: follow links to folders and files. Each folder is walked once even if several
            links lead to it, so link loops end.
        outside_links: also follow links whose target is outside ``root`` (by default they are not:
            a link to ``/`` would index the whole system). Links into :data:`PSEUDO_FILE_SYSTEMS`
            are never followed.

    Raises:
        FolderError: ``root`` does not exist, is not a folder or cannot be read. Check
            :func:`root_is_online` first to tell an unplugged drive from an error.
    """
    root_path = os.path.abspath(os.fspath(root))
    walk = _Walk(root_path, _stat_root(root_path), excludes, extensions, follow_symlinks, outside_links)
    yield from walk.entries()
    walk.report_links_left()


def _stat_root(root_path: str) -> os.stat_result:
    """The root's status; :class:`FolderError` when it is missing, unreadable or not a folder."""
    try:
        root_stat = os.stat(root_path)
    except FileNotFoundError as e:
        raise FolderError(f"Folder not found: {root_path}. If it is on a removable drive, plug it in.") from e
    except OSError as e:
        raise FolderError(f"Cannot read folder {root_path}: {_reason(e, folder=True)}.") from e
    if not stat.S_ISDIR(root_stat.st_mode):
        raise FolderError(f"Not a folder: {root_path}.")
    return root_stat


class _Walk:
    """One walk of a root, as :func:`scan_folder` describes it."""

    def __init__(
        self,
        root_path: str,
        root_stat: os.stat_result,
        excludes: Iterable[str],
        extensions: Iterable[str],
        follow_symlinks: bool,
        outside_links: bool,
    ) -> None:
        self.root_path = root_path
        self.wanted = frozenset(
            ext.lower() if ext.startswith(".") else "." + ext.lower() for ext in extensions
        )
        self.skip = _Excludes(excludes)
        self.real_root = os.path.realpath(root_path)
        self.follow_symlinks = follow_symlinks
        self.outside_links = outside_links
        self.left_root = 0  # links not followed because they lead outside the root
        self.visited: set[tuple[int, int]] = {(root_stat.st_dev, root_stat.st_ino)}

    def entries(self) -> Iterator[ScannedFile | ScanProblem]:
        """The image files and problems of the whole tree, folder by folder."""
        stack: list[tuple[str, str]] = [
            (self.root_path, "")
        ]  # (absolute path, path relative to root with '/')
        while stack:
            folder, rel_folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                if folder == self.root_path:
                    raise FolderError(
                        f"Cannot read folder {self.root_path}: {_reason(e, folder=True)}."
                    ) from e
                logger.info("cannot read folder %s: %s", folder, e)
                yield ScanProblem(folder, _reason(e, folder=True))
                continue
            subfolders: list[tuple[str, str]] = []
            for entry in entries:
                yield from self._entry(entry, rel_folder, subfolders)
            # Pushed in reverse so that sub-folders are walked in name order.
            stack.extend(reversed(subfolders))

    def report_links_left(self) -> None:
        if self.left_root:
            logger.warning(
                "%d link(s) in %s lead outside it and were not followed (index their targets as folders of "
                "their own, or allow such links)",
                self.left_root,
                self.root_path,
            )

    def _entry(
        self, entry: os.DirEntry[str], rel_folder: str, subfolders: list[tuple[str, str]]
    ) -> Iterator[ScannedFile | ScanProblem]:
        """One entry of a folder: an image file is listed, a sub-folder added to ``subfolders``."""
        if _is_hidden(entry):
            return
        rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
        if self.skip.match(entry.name, rel):
            return
        try:
            is_link = entry.is_symlink()
            if is_link and not (self.follow_symlinks and self._link_allowed(entry.path)):
                self.left_root += self.follow_symlinks
                return
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError as e:  # a link loop (ELOOP); a missing target reads as not-a-folder
            if self._is_wanted(entry.name):
                yield ScanProblem(entry.path, _reason(e, folder=False), is_folder=False)
            return
        if is_dir:
            yield from self._subfolder(entry, rel, subfolders)
        elif self._is_wanted(entry.name):
            yield from self._file(entry, is_link)

    def _subfolder(
        self, entry: os.DirEntry[str], rel: str, subfolders: list[tuple[str, str]]
    ) -> Iterator[ScanProblem]:
        """Add a sub-folder to walk, unless it was walked already (a link loop or a second link)."""
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError as e:
            if not isinstance(e, FileNotFoundError):
                yield ScanProblem(entry.path, _reason(e, folder=True))
            return
        key = (st.st_dev, st.st_ino)
        if key in self.visited:
            logger.debug("skipping %s: this folder was already walked (a link loop or a second link)", rel)
            return
        self.visited.add(key)
        subfolders.append((entry.path, rel))

    def _file(self, entry: os.DirEntry[str], is_link: bool) -> Iterator[ScannedFile | ScanProblem]:
        """An image file with its size and modification time, if it is a regular file."""
        try:
            st = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            if is_link:
                yield ScanProblem(entry.path, "broken link", is_folder=False)
            else:  # deleted since the folder was listed: it is simply gone
                logger.debug("file disappeared during the scan: %s", entry.path)
            return
        except OSError as e:
            yield ScanProblem(entry.path, _reason(e, folder=False), is_folder=False)
            return
        if stat.S_ISREG(st.st_mode):
            yield ScannedFile(entry.path, st.st_size, st.st_mtime_ns)

    def _is_wanted(self, name: str) -> bool:
        return os.path.splitext(name)[1].lower() in self.wanted

    def _link_allowed(self, path: str) -> bool:
        target = os.path.realpath(path)
        if any(_is_within(target, p) for p in PSEUDO_FILE_SYSTEMS) and not _is_within(self.real_root, target):
            return False
        return self.outside_links or _is_within(target, self.real_root)


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def root_is_online(root: str | os.PathLike[str], had_photos: bool = False) -> bool:
    """Whether a library folder can be scanned now.

    A missing root is *offline* (an unplugged drive, an unmounted share), not empty: its photos stay
    in the catalog. So is a root that cannot be read, and an empty root that held photos before
    (``had_photos``), which is what a mount point looks like when its drive is unplugged.
    """
    path = os.fspath(root)
    try:
        with os.scandir(path) as it:
            has_entries = next(it, None) is not None
    except OSError:
        return False
    return has_entries or not had_photos
