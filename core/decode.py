"""Decode photos into small RGB images for the model, fast and safely, and in parallel.

:func:`open_image` reads the header first and refuses images over a pixel cap before decoding a
byte of pixel data (decompression bombs). Large JPEGs are decoded with ``Image.draft``: libjpeg scales
the image by 1/2, 1/4 or 1/8 in the DCT domain while decoding, so a 12 MP photo needed at 224 pixels
is decoded at about 500x375 instead of 4000x3000. The EXIF orientation is applied, every mode is
brought to 8-bit RGB (CMYK, 16-bit, palette, alpha composited on white, the first frame of an
animation) and the image is downscaled so that its shorter side is ``target_side``.

:func:`decode_parallel` runs a decode function over many files in worker threads (Pillow releases
the GIL while decoding) with a bounded look-ahead, so memory stays flat however many files there are.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from core.errors import DecodeError
from core.scanner import HEIF_EXTENSIONS

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
"""Images declaring more pixels than this (100 MP) are refused before decoding.

Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP for a warning and 179 MP for an
error) applies as well: a larger ``max_pixels`` needs that limit raised by the application too.
"""

BACKGROUND = (255, 255, 255)
"""Transparent areas are composited on this colour."""

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that displays the image upright (as ``ImageOps.exif_transpose``)."""

_DCT_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: the multi-picture JPEGs of some cameras and phones
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_EXIF_DATE = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"^\s*([+-])(\d{2}):(\d{2})\s*$")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_BOMB_LIMIT = re.compile(r"limit of (\d+) pixels")

_heif_registered = False


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded photo, ready for the model's preprocessing.

    Attributes:
        image: 8-bit RGB, upright, shorter side ``target_side`` (never enlarged).
        width: full-resolution width as displayed (after the EXIF orientation).
        height: full-resolution height as displayed.
        orientation: EXIF orientation tag, 1 (upright) to 8; 1 when absent.
        taken_at: EXIF DateTimeOriginal as ISO 8601 (``2021-07-04T15:30:00``, with the UTC offset
            when the camera recorded one), or None.
        decoded_size: the size the pixel data was decoded at (smaller than the full size when the
            JPEG fast path scaled it in the DCT domain), before orientation and the final resize.
    """

    image: Image.Image
    width: int
    height: int
    orientation: int
    taken_at: str | None
    decoded_size: tuple[int, int]


def _register_heif(path: str) -> None:
    global _heif_registered
    if _heif_registered or os.path.splitext(path)[1].lower() not in HEIF_EXTENSIONS:
        return
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    _heif_registered = True


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"too large: {width}x{height} pixels over the {_megapixels(max_pixels)} MP limit"


def _megapixels(pixels: int) -> str:
    """100_000_000 -> "100", 100_100_000 -> "100.1", 2_500_000 -> "2.5", 10_000 -> "0.01"."""
    megapixels = pixels / 1e6
    return f"{megapixels:.1f}".removesuffix(".0") if megapixels >= 1 else f"{megapixels:.2g}"


def _bomb_reason(error: Exception, max_pixels: int) -> str:
    """Reason for Pillow's own decompression-bomb refusal, which comes before the header's size is
    known here and applies Pillow's limit (``Image.MAX_IMAGE_PIXELS``) when it is below ours."""
    match = _BOMB_PIXELS.search(str(error))
    limit = _BOMB_LIMIT.search(str(error))
    limit_pixels = min(max_pixels, int(limit.group(1))) if limit else max_pixels
    if match:
        return (
            f"too large: {_megapixels(int(match.group(1)))} MP over the {_megapixels(limit_pixels)} MP limit"
        )
    return f"too large: over the {_megapixels(limit_pixels)} MP limit"


def _os_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "not a file"
    return (error.strerror or str(error) or type(error).__name__).lower()


def _exif_fields(im: Image.Image) -> tuple[int, str | None]:
    """(orientation, taken_at) from the image's EXIF; defaults when absent or malformed."""
    try:
        exif = im.getexif()
    except Exception as e:  # malformed EXIF must never cost the photo
        logger.debug("unreadable EXIF: %s", e)
        return 1, None
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        orientation = 1
    taken_at = None
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception as e:
        logger.debug("unreadable EXIF sub-IFD: %s", e)
        sub = {}
    for tag, offset_tag in (
        (ExifTags.Base.DateTimeOriginal, ExifTags.Base.OffsetTimeOriginal),
        (ExifTags.Base.DateTimeDigitized, ExifTags.Base.OffsetTimeDigitized),
    ):
        taken_at = _iso_datetime(sub.get(tag), sub.get(offset_tag))
        if taken_at:
            break
    return orientation, taken_at


def _iso_datetime(value: object, offset: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _EXIF_DATE.match(value.replace("\x00", ""))
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not (
        1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61 and year > 1800
    ):
        return None  # "0000:00:00 00:00:00" and other placeholders
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if isinstance(offset, str):
        tz = _EXIF_OFFSET.match(offset.replace("\x00", ""))
        if tz:
            text += f"{tz.group(1)}{tz.group(2)}:{tz.group(3)}"
    return text


def _high_bit_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale scaled (not clipped) to 8 bits."""
    values = np.asarray(im)
    if im.mode == "F":
        top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
    elif im.mode == "I":
        peak = int(values.max(initial=0))
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else float(peak)
    else:
        top = 65535.0
    scaled = np.clip(np.nan_to_num(values.astype(np.float32)) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def to_rgb(im: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB; transparency is composited on :data:`BACKGROUND`."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_BIT_MODES:
        return _high_bit_to_8bit(im).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def target_size(size: tuple[int, int], target_side: int) -> tuple[int, int]:
    """The size with the same aspect whose shorter side is ``target_side`` (unchanged if already smaller)."""
    width, height = size
    shorter = min(width, height)
    if shorter <= target_side:
        return size
    scale = target_side / shorter
    if width <= height:
        return target_side, max(1, round(height * scale))
    return max(1, round(width * scale)), target_side


def open_image(
    path: str | os.PathLike[str], target_side: int | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode a photo to upright 8-bit RGB with its shorter side ``target_side``.

    Args:
        path: the image file.
        target_side: length of the shorter side of the returned image; images already smaller are
            not enlarged. None decodes at full size.
        max_pixels: images declaring more pixels are refused without decoding.

    Raises:
        DecodeError: with a short reason: "empty file", "not an image", "truncated file",
            "too large: ...", "permission denied", "file not found", "damaged image data: ..."
    """
    path = os.fspath(path)
    _register_heif(path)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise DecodeError(path, "empty file")
            return _decode(path, f, target_side, max_pixels)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own cap (about 89-179 MP) may trigger before ours when the header is opened.
        raise DecodeError(path, _bomb_reason(e, max_pixels)) from e
    except UnidentifiedImageError as e:
        raise DecodeError(path, "not an image") from e
    except MemoryError as e:
        raise DecodeError(path, "out of memory while decoding") from e
    except OSError as e:
        if e.errno is not None or e.filename is not None:  # from the OS, not from a decoder
            raise DecodeError(path, _os_reason(e)) from e
        message = str(e)
        if "truncated" in message or "premature end" in message.lower():
            raise DecodeError(path, "truncated file") from e
        raise DecodeError(path, f"damaged image data: {message}" if message else "damaged image data") from e
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError) as e:
        # Pillow's plugins raise these for corrupt headers and streams.
        raise DecodeError(path, f"damaged image data: {e}" if str(e) else "damaged image data") from e


def _decode(path: str, f, target_side: int | None, max_pixels: int) -> DecodedImage:
    # The caller's `with open(...)` owns the file; the image is not closed here because closing a
    # Pillow image also invalidates its pixels, which may be returned as they are.
    im = Image.open(f)
    width, height = im.size
    if width <= 0 or height <= 0:
        raise DecodeError(path, f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(path, _too_large(width, height, max_pixels))
    orientation, taken_at = _exif_fields(im)
    if target_side is not None and im.format in _DCT_FORMATS:
        # DCT-domain downscale by 1/2, 1/4 or 1/8 keeping both sides >= target_side.
        im.draft("RGB", (target_side, target_side))
    im.load()
    decoded_size = im.size
    rgb = to_rgb(im)
    if target_side is not None:
        size = target_size(rgb.size, target_side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
        if orientation >= 5:
            width, height = height, width
    return DecodedImage(rgb, width, height, orientation, taken_at, decoded_size)


T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Decode threads used when not told: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def decode_parallel(
    items: Iterable[T],
    fn: Callable[[T], R],
    workers: int | None = None,
    lookahead: int | None = None,
) -> Iterator[tuple[T, R | Exception]]:
    """Apply ``fn`` to every item in worker threads; yield ``(item, result or exception)`` in input order.

    At most ``lookahead`` items are taken from ``items`` ahead of the consumer (submitted, running or
    finished but not yet yielded), so memory stays flat for any number of items. An exception raised
    by ``fn`` is yielded in place of the result and the run goes on. Closing the iterator (or
    leaving a ``for`` loop over it and dropping it) cancels the pending items and waits only for the
    ones already running.

    Args:
        items: the work, consumed lazily (a scan can feed it while it runs).
        fn: called once per item in a worker thread; must be thread-safe.
        workers: number of threads (default :func:`default_workers`).
        lookahead: items in flight at most (default four per worker; at least ``workers``).
    """
    workers = workers or default_workers()
    lookahead = max(workers, lookahead or 4 * workers)
    pending: deque[tuple[T, Future[R]]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ladderlens-decode")
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= lookahead:
                done_item, future = pending.popleft()
                yield done_item, _outcome(future)
        while pending:
            done_item, future = pending.popleft()
            yield done_item, _outcome(future)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _outcome(future: Future[R]) -> R | Exception:
    try:
        return future.result()
    except Exception as e:
        return e


def failure_reason(error: Exception) -> str:
    """The short, user-readable reason a file could not be indexed, as the catalog records it."""
    if isinstance(error, DecodeError):
        return error.reason
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "file vanished during indexing"
    if isinstance(error, OSError):
        return (error.strerror or str(error) or type(error).__name__).lower()
    return f"unexpected error: {type(error).__name__}: {error}"
