"""A demo photo library rendered from the scene world, with its ground truth.

:func:`write_demo_library` writes camera-sized JPEGs (EXIF date taken, one photo stored rotated
with an EXIF orientation tag, some photos in sub-folders named after their setting) and a
``manifest.jsonl`` giving each photo's caption and attributes. It never shows a held-out
composition, so the long-tail entry of :func:`example_queries` has no exact match in it.

Reruns are cheap and idempotent: a photo whose file still matches its manifest entry is not
rendered again, and a re-rendered photo that comes out byte-identical is not rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import FolderError
from trainer.captions import attributes_in_text, caption
from trainer.scenes import (
    ATTRIBUTES,
    VOCABULARY,
    Scene,
    is_held_out,
    sample_codes,
    scenes_from_codes,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_NAME",
    "DemoLibrary",
    "DemoPhoto",
    "DemoProgress",
    "ExampleQuery",
    "demo_photos",
    "example_queries",
    "read_manifest",
    "write_demo_library",
]

MANIFEST_NAME = "manifest.jsonl"
_SUBFOLDER_EVERY = 3  # every third photo goes into a folder named after its setting
_ROTATED_INDEX = 5  # this photo is stored on its side with EXIF orientation 6
_EXIF_ORIENTATION = 0x0112
_EXIF_MAKE, _EXIF_MODEL, _EXIF_DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _EXIF_DATETIME_ORIGINAL, _EXIF_DATETIME_DIGITIZED = 0x8769, 0x9003, 0x9004
_PLANTED_PER_QUERY = 2


@dataclass(frozen=True)
class ExampleQuery:
    """A query to try on the demo library, with the attributes it names."""

    text: str
    attributes: Mapping[str, str]
    long_tail: bool  # names a held-out composition: no photo matches it fully


@dataclass(frozen=True)
class DemoPhoto:
    """One photo of the demo library: where it goes and what it shows."""

    file: str  # path relative to the library folder, with forward slashes
    scene: Scene
    caption: str
    taken_at: str  # EXIF format, "YYYY:MM:DD HH:MM:SS"
    orientation: int  # EXIF orientation tag; 1 = stored upright

    @property
    def attributes(self) -> dict[str, str]:
        return self.scene.attributes()


@dataclass(frozen=True)
class DemoProgress:
    """Progress of :func:`write_demo_library`: ``done`` of ``total`` photos handled."""

    done: int
    total: int
    file: str
    written: bool  # False when the file on disk was already identical


@dataclass
class DemoLibrary:
    """What :func:`write_demo_library` did."""

    root: Path
    manifest: Path
    photos: list[DemoPhoto] = field(default_factory=list)
    written: int = 0
    skipped: int = 0


_EXAMPLE_TEXTS = (
    "a red car in the city at night",
    "two sailboats on the sea at sunset",
    "a yellow hot-air balloon over snowy mountains",
    "kites over a meadow on a sunny day",
    "a white house in the desert",
    "a boat in the desert at sunset",
)


def example_queries() -> list[ExampleQuery]:
    """Queries that show the demo library off; the last one is long-tail (held out)."""
    out = []
    for text in _EXAMPLE_TEXTS:
        attrs = attributes_in_text(text)
        out.append(ExampleQuery(text, attrs, is_held_out(attrs)))
    return out


def _planted(seed: int) -> list[Scene]:
    """Scenes that fully match each example query that is not long-tail."""
    rng = np.random.default_rng([0xDE30, seed])
    scenes = []
    for query in example_queries():
        if query.long_tail:
            continue
        made = 0
        while made < _PLANTED_PER_QUERY:
            attrs = {
                a: query.attributes.get(a) or VOCABULARY[a][int(rng.integers(len(VOCABULARY[a])))]
                for a in ATTRIBUTES
            }
            scene = Scene(**attrs, seed=int(rng.integers(0, 2**48)) * 4 + 3)
            if not is_held_out(scene):
                scenes.append(scene)
                made += 1
    return scenes


def _taken_at(scene: Scene, rng: np.random.Generator) -> str:
    """A plausible date taken: season from the setting, hour from the time of day."""
    year = 2023 + int(rng.integers(0, 2))
    months = {"snow": (12, 1, 2), "beach": (6, 7, 8)}.get(scene.setting, tuple(range(1, 13)))
    month = int(months[int(rng.integers(len(months)))])
    day = int(rng.integers(1, 29))
    hour = {"day": (9, 16), "sunset": (18, 20), "night": (21, 23)}[scene.time]
    when = dt.datetime(
        year,
        month,
        day,
        int(rng.integers(hour[0], hour[1] + 1)),
        int(rng.integers(60)),
        int(rng.integers(60)),
    )
    return when.strftime("%Y:%m:%d %H:%M:%S")


def demo_photos(count: int, seed: int) -> list[DemoPhoto]:
    """The photos a demo library of ``count`` photos holds, deterministic in ``seed``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    planted = _planted(seed)[:count]
    codes, seeds = sample_codes(count - len(planted), seed, "demo")
    scenes = planted + scenes_from_codes(codes, seeds)
    order = np.random.default_rng([0xDE31, seed]).permutation(len(scenes))
    photos = []
    for i, k in enumerate(order):
        scene = scenes[int(k)]
        assert not is_held_out(scene)
        rng = np.random.default_rng([0xDE32, seed, i])
        name = f"IMG_{i + 1:04d}.jpg"
        file = f"{scene.setting}/{name}" if i % _SUBFOLDER_EVERY == 1 else name
        orientation = 6 if i == _ROTATED_INDEX else 1
        photos.append(DemoPhoto(file, scene, caption(scene, rng), _taken_at(scene, rng), orientation))
    return photos


def _encode(photo: DemoPhoto, size: tuple[int, int], quality: int) -> bytes:
    from trainer.scene_render import render_scene

    image = render_scene(photo.scene, size)
    if photo.orientation == 6:  # stored turned left; viewers turn it right to show it upright
        image = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[_EXIF_MAKE] = "LadderLens"
    exif[_EXIF_MODEL] = "Scene world"
    exif[_EXIF_DATETIME] = photo.taken_at
    exif[_EXIF_ORIENTATION] = photo.orientation
    sub = exif.get_ifd(_EXIF_IFD)
    sub[_EXIF_DATETIME_ORIGINAL] = photo.taken_at
    sub[_EXIF_DATETIME_DIGITIZED] = photo.taken_at
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def _record(photo: DemoPhoto, size: tuple[int, int], quality: int, digest: str) -> dict:
    return {
        "file": photo.file,
        "caption": photo.caption,
        "attributes": photo.attributes,
        "seed": photo.scene.seed,
        "width": size[0],
        "height": size[1],
        "quality": quality,
        "orientation": photo.orientation,
        "taken_at": photo.taken_at,
        "sha256": digest,
    }


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_records(root: Path) -> dict[str, dict]:
    try:
        lines = (root / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    records = {}
    for line in lines:
        try:
            rec = json.loads(line)
            records[rec["file"]] = rec
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed line in %s", root / MANIFEST_NAME)
    return records


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The manifest records of a demo library folder (file, caption, attributes, ...), in order."""
    return list(_read_records(Path(root)).values())


def write_demo_library(
    out_dir: str | os.PathLike,
    count: int = 120,
    seed: int = 2024,
    size: tuple[int, int] = (1600, 1200),
    quality: int = 90,
    on_progress: Callable[[DemoProgress], None] | None = None,
) -> DemoLibrary:
    """Render the demo library into ``out_dir`` and write its ``manifest.jsonl``.

    Args:
        out_dir: folder to write into (created if missing).
        count: number of photos.
        seed: fixes which scenes, captions, dates; the same seed gives the same library.
        size: (width, height) of each photo as seen upright.
        quality: JPEG quality.
        on_progress: called after each photo with a :class:`DemoProgress`.

    Raises:
        FolderError: ``out_dir`` exists but is not a folder, or cannot be written.
    """
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise FolderError(f"{root} is a file; choose a folder for the demo library")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderError(f"cannot create the demo library folder {root}: {exc.strerror}") from exc
    size = (int(size[0]), int(size[1]))
    photos = demo_photos(count, seed)
    previous = _read_records(root)
    result = DemoLibrary(root=root, manifest=root / MANIFEST_NAME, photos=photos)
    records = []
    for done, photo in enumerate(photos, start=1):
        path = root / photo.file
        old = previous.get(photo.file)
        digest = _sha256(path) if path.exists() else None
        if old is not None and digest is not None and old == _record(photo, size, quality, digest):
            written = False  # the file is what its manifest entry says: nothing to render
        else:
            data = _encode(photo, size, quality)
            new_digest = hashlib.sha256(data).hexdigest()
            written = new_digest != digest
            if written:
                try:
                    _write_atomic(path, data)
                except OSError as exc:
                    raise FolderError(f"cannot write {path}: {exc.strerror}") from exc
            digest = new_digest
        records.append(_record(photo, size, quality, digest))
        result.written += int(written)
        result.skipped += int(not written)
        if on_progress is not None:
            on_progress(DemoProgress(done, len(photos), photo.file, written))
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    try:
        _write_atomic(result.manifest, text.encode("utf-8"))
    except OSError as exc:
        raise FolderError(f"cannot write {result.manifest}: {exc.strerror}") from exc
    logger.info("demo library in %s: %d photos written, %d unchanged", root, result.written, result.skipped)
    return result
