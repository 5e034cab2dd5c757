"""Tags of photos: read from a tagged folder tree, from sidecars, and from the app.

A tagged tree is a root folder whose sub-folders name what their photos show::

    Tagged/
        Grandma's garden/            -> "grandma's garden"
            2019-07-14 Lisbon trip/  -> "grandma's garden", "2019-07-14 lisbon trip"
                IMG_0001.jpg
                IMG_0001.jpg.xmp     -> + its dc:subject keywords
                tags.txt             -> + the tags listed for this folder, or for one file

A photo's tags are, in this order: the names of the folders between the root and the photo (the
root's own name is not a tag; camera folders such as ``DCIM`` or ``100CANON`` are skipped), the
``tags.txt`` of each of those folders (and of the root), the ``tags.txt`` lines naming the photo,
the keywords embedded in the photo itself (the XMP packet Lightroom and others write into JPEG and
HEIC files), and the keywords of its XMP sidecar (``PHOTO.xmp`` or ``PHOTO.jpg.xmp``:
``dc:subject``, as Lightroom and darktable write it, and the leaves of ``lr:hierarchicalSubject``).

``tags.txt`` holds tags separated by commas or new lines; ``#`` starts a comment; a line
``IMG_0001.jpg: red kayak, lake`` tags one file of the folder.

Tags are normalised (:func:`normalise_tag`): Unicode NFKC and case-folded, ``_ - .`` and runs of
spaces become one space, and dates in any of the usual spellings (``2019_07_14``, ``20190714``,
``2019.07``) become ISO (``2019-07-14``, ``2019-07``). :func:`expand_tags` adds what a tag implies
for relevance: the year of a dated tag, and the words around the date (``"lisbon 2019"`` also
means ``"lisbon"`` and ``"2019"``).

Sidecars are parsed defensively: a size cap, no DTDs or entities (so no entity expansion, no
external resources), and a malformed file becomes a :class:`TagProblem`, never an exception.

Tags given in the app are stored in the catalog (:class:`UserTags`), keyed by content, so they
follow a photo that is renamed or moved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from core.catalog import Catalog
from core.progress import drive
from core.scanner import DEFAULT_EXCLUDES, IMAGE_EXTENSIONS, ScannedFile, ScanProblem, scan_folder

logger = logging.getLogger(__name__)

TAGS_FILE = "tags.txt"
MAX_SIDECAR_BYTES = 1 << 20
"""Sidecars (XMP) and ``tags.txt`` files larger than this are skipped and reported."""
MAX_TAG_CHARS = 80
"""Longer tags are cut at a word boundary."""
MAX_TAGS_PER_PHOTO = 64
"""A photo keeps its first tags up to this many (folders first, then tags.txt, then XMP)."""

_NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_NS_DC = "http://purl.org/dc/elements/1.1/"
_NS_LR = "http://ns.adobe.com/lightroom/1.0/"
_NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"

# Folder names that say where photos came from, not what they show.
_NOISE_FOLDERS = frozenset(
    {
        "dcim",
        "photos",
        "pictures",
        "images",
        "camera",
        "camera roll",
        "camera uploads",
        "export",
        "exports",
        "originals",
        "edited",
        "raw",
        "jpg",
        "jpeg",
        "misc",
        "unsorted",
        "new folder",
        "untitled folder",
    }
)
_CAMERA_FOLDER = re.compile(r"^\d{3}[a-z0-9_]{5}$", re.IGNORECASE)  # 100CANON, 101_PANA, 100APPLE

_FULL_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})([-_./]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)")
_MONTH_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_./](0[1-9]|1[0-2])(?![\d])")
_ISO_DATE = re.compile(r"(?<![\d-])(?:19|20)\d{2}-\d{2}(?:-\d{2})?(?![\d-])")
_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d{2})(?![\d-])")
_SEPARATORS = re.compile(r"[\s_.\-]+")
_EDGE_PUNCTUATION = " '\"`,;:!?()[]{}<>|/\\*#~"
_TXT_SPLIT = re.compile(r"[,;\n]")


# --------------------------------------------------------------------------------- normalisation


def normalise_tag(text: str) -> str | None:
    """The normal form of a tag, or None when nothing is left of it.

    >>> normalise_tag("  Grandma's_Garden ")
    "grandma's garden"
    >>> normalise_tag("Lisbon.2019_07_14")
    'lisbon 2019-07-14'
    """
    if not isinstance(text, str):
        return None
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    if not text:
        return None
    dates: list[str] = []

    def keep(iso: str) -> str:
        dates.append(iso)
        return f" \0{len(dates) - 1}\0 "

    text = _FULL_DATE.sub(lambda m: keep(f"{m[1]}-{m[3]}-{m[4]}"), text)
    text = _MONTH_DATE.sub(lambda m: keep(f"{m[1]}-{m[2]}"), text)
    text = _SEPARATORS.sub(" ", text)
    text = "".join(ch for ch in text if ch == "\0" or unicodedata.category(ch)[0] != "C")
    text = re.sub(r"\0(\d+)\0", lambda m: dates[int(m[1])], text)
    text = " ".join(text.split()).strip(_EDGE_PUNCTUATION)
    if len(text) > MAX_TAG_CHARS:
        cut = text[:MAX_TAG_CHARS]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut).strip(_EDGE_PUNCTUATION)
    return text or None


def is_date_tag(tag: str) -> bool:
    """Whether a normalised tag is a date or a year alone (``2019``, ``2019-07``, ``2019-07-14``)."""
    return bool(re.fullmatch(r"(?:19|20)\d{2}(?:-\d{2}(?:-\d{2})?)?", tag))


def expand_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Normalised tags plus what they imply: the year of every date, and the words around a date.

    ``"lisbon 2019-07"`` gives ``"lisbon 2019-07"``, ``"lisbon"``, ``"2019-07"``, ``"2019"``.
    The result keeps the given tags first, without repeats.
    """
    out: dict[str, None] = {}
    for tag in tags:
        out[tag] = None
    for tag in list(out):
        dates = _ISO_DATE.findall(tag) + [y for y in _YEAR.findall(tag)]
        if not dates:
            continue
        rest = " ".join(_YEAR.sub(" ", _ISO_DATE.sub(" ", tag)).split())
        if rest and rest != tag:
            out.setdefault(rest, None)
        for date in dates:
            out.setdefault(date, None)
            out.setdefault(date[:4], None)
            if len(date) == 10:
                out.setdefault(date[:7], None)
    return tuple(out)


def folder_tag(name: str) -> str | None:
    """The tag a folder's name gives, or None for a camera or export folder (``DCIM``, ``100CANON``)."""
    if _CAMERA_FOLDER.match(name.strip()):
        return None
    tag = normalise_tag(name)
    if tag is None or tag in _NOISE_FOLDERS:
        return None
    return tag


def _unique(tags: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(t for t in tags if t))


# --------------------------------------------------------------------------------- tag sources


class TagSourceError(Exception):
    """A sidecar or tags file that cannot be used; ``str()`` is the reason shown to the user."""


def _read_capped(path: Path, max_bytes: int) -> bytes:
    # Opened without blocking and checked on the open descriptor: a FIFO or device named tags.txt
    # or *.xmp would otherwise block the read (or never end) instead of being skipped.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise TagSourceError(f"cannot be read ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TagSourceError("is not a regular file; skipped")
        if info.st_size > max_bytes:
            raise TagSourceError(
                f"{_size_text(info.st_size)}, larger than the {_size_text(max_bytes)} allowed "
                "for a tag file; skipped"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise TagSourceError(f"cannot be read ({e.strerror or e})") from e
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew since the stat
        raise TagSourceError(f"larger than the {_size_text(max_bytes)} allowed for a tag file; skipped")
    return data


def embedded_keywords(path: str | os.PathLike[str], max_bytes: int = MAX_SIDECAR_BYTES) -> list[str]:
    """The XMP keywords stored inside a photo (Lightroom and others write them into JPEG and HEIC
    files); only the file's header is read, no pixels are decoded.

    A photo that cannot be opened has none here (indexing reports it).

    Raises:
        TagSourceError: its XMP packet is unusable or too large.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            packet = image.info.get("xmp")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return []
    if not packet:
        return []
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if len(packet) > max_bytes:
        raise TagSourceError(f"its embedded XMP is larger than the {_size_text(max_bytes)} allowed; skipped")
    return xmp_keywords(bytes(packet))


def _size_text(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB" if size >= 1 << 20 else f"{size / 1024:.0f} KB"


def read_xmp_keywords(path: str | os.PathLike[str], max_bytes: int = MAX_SIDECAR_BYTES) -> list[str]:
    """The keywords of an XMP sidecar, as written (not normalised), without repeats.

    Reads ``dc:subject`` and the leaf of every ``lr:hierarchicalSubject`` (darktable's own
    ``darktable|...`` entries are skipped) and of digiKam's ``TagsList``.

    Raises:
        TagSourceError: the file is too large, unreadable, declares a DTD or entities, or is not
            well-formed XML.
    """
    return xmp_keywords(_read_capped(Path(path), max_bytes))


def xmp_keywords(data: bytes) -> list[str]:
    """The keywords of an XMP packet (a sidecar's bytes, or a packet embedded in a photo).

    Raises:
        TagSourceError: it declares a DTD or entities, or is not well-formed XML.
    """
    head = data[:4096].lstrip(b"\xef\xbb\xbf")
    if not head.strip():
        return []
    try:
        # defusedxml refuses DTDs, entities and external references in any encoding (a check of the
        # raw bytes misses a UTF-16 file's); the text it returns is bounded by the file's size.
        root = defused_fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise TagSourceError(
            "declares a DTD or entities, which sidecars never need; skipped for safety"
        ) from e
    except ET.ParseError as e:
        raise TagSourceError(f"is not well-formed XML ({e})") from e
    keywords: list[str] = []
    for subject in root.iter(f"{{{_NS_DC}}}subject"):
        keywords.extend(li.text or "" for li in subject.iter(f"{{{_NS_RDF}}}li"))
    hierarchies = ((f"{{{_NS_LR}}}hierarchicalSubject", "|"), (f"{{{_NS_DIGIKAM}}}TagsList", "/"))
    for element, separator in hierarchies:
        for hierarchy in root.iter(element):
            for li in hierarchy.iter(f"{{{_NS_RDF}}}li"):
                parts = [p for p in (li.text or "").split(separator) if p.strip()]
                if parts and parts[0].strip().lower() != "darktable":
                    keywords.append(parts[-1])
    return list(dict.fromkeys(k.strip() for k in keywords if k and k.strip()))


@dataclass(frozen=True)
class TagsFile:
    """What a ``tags.txt`` says: tags for its whole folder, and tags for single files (by name)."""

    folder: tuple[str, ...] = ()
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def read_tags_file(path: str | os.PathLike[str], max_bytes: int = MAX_SIDECAR_BYTES) -> TagsFile:
    """Parse a ``tags.txt`` (tags normalised; file names matched case-insensitively).

    Raises:
        TagSourceError: too large, unreadable, or not text.
    """
    data = _read_capped(Path(path), max_bytes)
    if b"\0" in data:
        raise TagSourceError("is not a text file; skipped")
    text = data.decode("utf-8-sig", errors="replace")
    folder: list[str] = []
    files: dict[str, list[str]] = {}
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        name, colon, rest = line.partition(":")
        if colon and os.path.splitext(name.strip())[1].lower() in IMAGE_EXTENSIONS:
            files.setdefault(name.strip().casefold(), []).extend(_TXT_SPLIT.split(rest))
        else:
            folder.extend(_TXT_SPLIT.split(line))
    return TagsFile(
        tuple(_unique(map(normalise_tag, folder))),
        {name: tuple(_unique(map(normalise_tag, tags))) for name, tags in files.items()},
    )


def sidecar_names(photo_name: str) -> tuple[str, str]:
    """Lower-case names of a photo's possible XMP sidecars: ``photo.xmp`` and ``photo.jpg.xmp``."""
    lower = photo_name.casefold()
    return os.path.splitext(lower)[0] + ".xmp", lower + ".xmp"


def file_tags(photo: str | os.PathLike[str], root: str | os.PathLike[str]) -> tuple[str, ...]:
    """The tags one photo carries on disk, as a fine-tune rooted at ``root`` reads them.

    In the order of the module's description: the names of the folders between ``root`` and the
    photo, the ``tags.txt`` of the root and of each of those folders, the ``tags.txt`` lines naming
    the photo, and the keywords of its XMP sidecar; normalised, without repeats, at most
    :data:`MAX_TAGS_PER_PHOTO`. A sidecar or tags file that cannot be read adds nothing (the tree
    scan of a fine-tune reports it). A photo outside ``root`` gets only its own folder's files.
    """
    photo_path = Path(photo)
    folder = photo_path.parent
    try:
        relative = folder.relative_to(Path(root))
        chain = [Path(root)] + [
            Path(root).joinpath(*relative.parts[: i + 1]) for i in range(len(relative.parts))
        ]
    except ValueError:
        relative, chain = Path(), [folder]
    tags: list[str | None] = [folder_tag(part) for part in relative.parts]
    own_names: dict[str, str] = {}
    for current in chain:
        try:
            names = {entry.name.casefold(): entry.name for entry in os.scandir(current)}
        except OSError:
            continue
        if current == folder:
            own_names = names
        if TAGS_FILE in names:
            try:
                listed = read_tags_file(current / names[TAGS_FILE])
            except TagSourceError:
                continue
            tags.extend(listed.folder)
            if current == folder:
                tags.extend(listed.files.get(photo_path.name.casefold(), ()))
    with contextlib.suppress(TagSourceError):
        tags.extend(map(normalise_tag, embedded_keywords(photo_path)))
    for wanted in sidecar_names(photo_path.name):
        if wanted in own_names:
            with contextlib.suppress(TagSourceError):
                tags.extend(map(normalise_tag, read_xmp_keywords(folder / own_names[wanted])))
    return tuple(_unique(tags))[:MAX_TAGS_PER_PHOTO]


# --------------------------------------------------------------------------------- the tree scan


@dataclass(frozen=True)
class TagProblem:
    """A tag source that was skipped (or cut short), and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class TaggedPhoto:
    """An image file under the root with its normalised tags (possibly none)."""

    path: str
    size: int
    mtime_ns: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class TagScanProgress:
    """One progress record of :func:`iter_tag_scan`."""

    photos: int
    tagged: int
    folder: str


@dataclass
class TagScan:
    """What :func:`iter_tag_scan` found under a root."""

    root: str
    photos: list[TaggedPhoto] = field(default_factory=list)
    problems: list[TagProblem] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)  # folders (tags) with no image under them
    cancelled: bool = False

    @property
    def tagged(self) -> list[TaggedPhoto]:
        return [p for p in self.photos if p.tags]

    def counts(self) -> Counter[str]:
        """How many photos carry each tag."""
        counts: Counter[str] = Counter()
        for photo in self.photos:
            counts.update(photo.tags)
        return counts


class _FolderInfo:
    """Per-folder facts gathered once: inherited tags, its tags.txt, its sidecar names."""

    __slots__ = ("file_tags", "names", "tags")

    def __init__(
        self, tags: tuple[str, ...], file_tags: Mapping[str, tuple[str, ...]], names: dict[str, str]
    ):
        self.tags = tags
        self.file_tags = file_tags
        self.names = names  # lower-case name -> real name, of the folder's non-image files


def iter_tag_scan(
    root: str | os.PathLike[str],
    *,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
    max_sidecar_bytes: int = MAX_SIDECAR_BYTES,
    max_tags_per_photo: int = MAX_TAGS_PER_PHOTO,
    report_every: int = 500,
) -> Generator[TagScanProgress, None, TagScan]:
    """Walk a tagged tree and read every photo's tags; each yield is a cancellation point.

    Returns a :class:`TagScan` (also when closed early: then ``cancelled`` is set and it holds the
    photos found so far). Unreadable folders and tag files are reported in ``problems``.

    Raises:
        FolderError: the root does not exist, is not a folder, or cannot be read.
    """
    root_path = os.path.abspath(os.fspath(root))
    reader = _TagReader(root_path, max_sidecar_bytes, max_tags_per_photo)
    scan = reader.scan
    try:
        reader.folder(root_path)
        for item in scan_folder(root_path, excludes=excludes):
            if isinstance(item, ScanProblem):
                scan.problems.append(TagProblem(item.path, item.reason))
                continue
            assert isinstance(item, ScannedFile)
            scan.photos.append(reader.photo(item))
            if len(scan.photos) % report_every == 0:
                tagged = sum(1 for p in scan.photos if p.tags)
                yield TagScanProgress(len(scan.photos), tagged, os.path.dirname(item.path))
    except GeneratorExit:
        scan.cancelled = True
        raise
    scan.empty_folders = _empty_folders(root_path, reader.folders_with_images)
    yield TagScanProgress(len(scan.photos), len(scan.tagged), root_path)
    return scan


class _TagReader:
    """Reads the tags of the photos of one root, with what it learnt of each folder kept."""

    def __init__(self, root_path: str, max_sidecar_bytes: int, max_tags_per_photo: int) -> None:
        self.root_path = root_path
        self.max_sidecar_bytes = max_sidecar_bytes
        self.max_tags_per_photo = max_tags_per_photo
        self.scan = TagScan(root_path)
        self.folders: dict[str, _FolderInfo] = {}
        self.folders_with_images: set[str] = set()

    def folder(self, folder: str) -> _FolderInfo:
        """The tags a folder gives its photos (its own and its parents'), and its tag files."""
        known = self.folders.get(folder)
        if known is not None:
            return known
        if folder == self.root_path or not folder.startswith(self.root_path + os.sep):
            inherited: tuple[str, ...] = ()
        else:
            parent = self.folder(os.path.dirname(folder))
            inherited = tuple(_unique([*parent.tags, folder_tag(os.path.basename(folder))]))
        names = self._tag_file_names(folder)
        file_tags: Mapping[str, tuple[str, ...]] = {}
        if TAGS_FILE in names:
            path = os.path.join(folder, names[TAGS_FILE])
            try:
                listed = read_tags_file(path, self.max_sidecar_bytes)
            except TagSourceError as e:
                self.scan.problems.append(TagProblem(path, str(e)))
            else:
                inherited = tuple(_unique([*inherited, *listed.folder]))
                file_tags = listed.files
        made = _FolderInfo(inherited, file_tags, names)
        self.folders[folder] = made
        return made

    def _tag_file_names(self, folder: str) -> dict[str, str]:
        """Lower-case name -> real name of the folder's sidecars and tags.txt."""
        names: dict[str, str] = {}
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    lower = entry.name.casefold()
                    if lower.endswith(".xmp") or lower == TAGS_FILE:
                        names[lower] = entry.name
        except OSError as e:
            self.scan.problems.append(TagProblem(folder, f"cannot list the folder ({e.strerror or e})"))
        return names

    def photo(self, item: ScannedFile) -> TaggedPhoto:
        """A photo with the tags of its folders, of tags.txt, embedded in it and in its sidecars."""
        folder, name = os.path.split(item.path)
        folder_info = self.folder(folder)
        self.folders_with_images.add(folder)
        tags = [*folder_info.tags, *folder_info.file_tags.get(name.casefold(), ())]
        try:
            tags.extend(normalise_tag(k) for k in embedded_keywords(item.path, self.max_sidecar_bytes))
        except TagSourceError as e:
            self.scan.problems.append(TagProblem(item.path, str(e)))
        tags.extend(self._sidecar_tags(folder, name, folder_info))
        return TaggedPhoto(item.path, item.size, item.mtime_ns, tuple(self._capped(item.path, _unique(tags))))

    def _sidecar_tags(self, folder: str, name: str, folder_info: _FolderInfo) -> list[str]:
        """The keywords of the XMP sidecars of the file ``name`` of ``folder``."""
        tags: list[str] = []
        for sidecar in sidecar_names(name):
            real = folder_info.names.get(sidecar)
            if real is None:
                continue
            sidecar_path = os.path.join(folder, real)
            try:
                tags.extend(normalise_tag(k) for k in read_xmp_keywords(sidecar_path, self.max_sidecar_bytes))
            except TagSourceError as e:
                self.scan.problems.append(TagProblem(sidecar_path, str(e)))
        return tags

    def _capped(self, path: str, unique: list[str]) -> list[str]:
        """At most ``max_tags_per_photo`` tags, the first ones; a problem is noted when cut."""
        if len(unique) <= self.max_tags_per_photo:
            return unique
        self.scan.problems.append(
            TagProblem(path, f"{len(unique)} tags; only the first {self.max_tags_per_photo} are used")
        )
        return unique[: self.max_tags_per_photo]


def _empty_folders(root: str, with_images: set[str]) -> list[str]:
    """Sub-folders (not hidden) with no image anywhere below them: their names tag nothing."""
    has_images = set()
    for folder in with_images:
        while folder.startswith(root + os.sep) and folder not in has_images:
            has_images.add(folder)
            folder = os.path.dirname(folder)
    empty = []
    for current, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            path = os.path.join(current, name)
            if path not in has_images:
                empty.append(path)
        dirs[:] = [d for d in dirs if os.path.join(current, d) in has_images]
    return empty


def scan_tags(
    root: str | os.PathLike[str],
    on_progress: Callable[[TagScanProgress], None] | None = None,
    **options,
) -> TagScan:
    """:func:`iter_tag_scan`, run to its end."""
    return drive(iter_tag_scan(root, **options), on_progress)


# --------------------------------------------------------------------------------- tags from the app


class UserTags:
    """Tags given in the app, stored in the catalog by content hash (they follow moved files)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def _hashes(self, photo_ids: Iterable[int]) -> dict[int, str]:
        photos = self.catalog.photos(photo_ids)
        return {pid: p.content_hash for pid, p in photos.items()}

    def add(self, photo_ids: Iterable[int], tags: Iterable[str]) -> list[str]:
        """Tag photos; returns the normalised tags added (tags that normalise to nothing are dropped)."""
        clean = _unique(map(normalise_tag, tags))
        hashes = sorted(set(self._hashes(photo_ids).values()))
        now = time.time()
        with self.catalog.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO user_tags(content_hash, tag, added) VALUES (?, ?, ?)",
                ((h, t, now) for h in hashes for t in clean),
            )
        return clean

    def remove(self, photo_ids: Iterable[int], tags: Iterable[str]) -> None:
        clean = _unique(map(normalise_tag, tags))
        hashes = sorted(set(self._hashes(photo_ids).values()))
        with self.catalog.transaction() as conn:
            conn.executemany(
                "DELETE FROM user_tags WHERE content_hash = ? AND tag = ?",
                ((h, t) for h in hashes for t in clean),
            )

    def of_hashes(self, hashes: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Tags by content hash (hashes without tags are absent)."""
        found: dict[str, list[str]] = {}
        conn = self.catalog.connection()
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = conn.execute(
                "SELECT content_hash, tag FROM user_tags "
                f"WHERE content_hash IN ({','.join('?' * len(chunk))}) ORDER BY added, tag",
                chunk,
            )
            for content_hash, tag in rows:
                found.setdefault(content_hash, []).append(tag)
        return {h: tuple(t) for h, t in found.items()}

    def of(self, photo_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """Tags by photo id (photos without tags are absent)."""
        hashes = self._hashes(photo_ids)
        by_hash = self.of_hashes(list(hashes.values()))
        return {pid: by_hash[h] for pid, h in hashes.items() if h in by_hash}

    def tagged(self) -> dict[str, tuple[str, ...]]:
        """Every tagged content hash that a catalogued photo has, with its tags."""
        rows = self.catalog.connection().execute(
            "SELECT u.content_hash, u.tag FROM user_tags u "
            "WHERE EXISTS (SELECT 1 FROM photos p WHERE p.content_hash = u.content_hash) "
            "ORDER BY u.added, u.tag"
        )
        found: dict[str, list[str]] = {}
        for content_hash, tag in rows:
            found.setdefault(content_hash, []).append(tag)
        return {h: tuple(t) for h, t in found.items()}

    def counts(self) -> Counter[str]:
        """How many catalogued photos carry each tag."""
        rows = self.catalog.connection().execute(
            "SELECT u.tag, count(p.id) FROM user_tags u JOIN photos p ON p.content_hash = u.content_hash "
            "GROUP BY u.tag"
        )
        return Counter(dict(rows.fetchall()))
