"""Writers of test image files of every awkward kind a real photo library holds.

Every function writes one file at ``path`` (creating its folder) and returns the path, so tests read
as ``decode(write_jpeg(tmp_path / "a.jpg", ...))``. Images are small unless a test needs otherwise.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

RED = (220, 30, 30)
GREEN = (30, 200, 60)
BLUE = (30, 40, 220)
YELLOW = (240, 220, 20)

UNICODE_NAMES = (
    "Ünïcödé façade.jpg",
    "写真 2021年.jpg",
    "фото пляж.JPG",
    "sunset 🌅 beach.png",
    "e\u0301te\u0301 decomposed.jpg",  # combining accents (NFD), as macOS writes names
    "name with  spaces and 'quotes' & (parens).jpeg",
)
"""File names that are valid Unicode but trip naive code (emoji, CJK, NFD accents, quotes)."""


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def photo_like(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """An RGB image with photo-like content: smooth gradients, soft shapes, edges and sensor noise.

    Realistic content matters for JPEG timings and sizes: flat colour compresses and decodes far
    faster than a photograph.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= max(width - 1, 1)
    y /= max(height - 1, 1)
    image = np.empty((height, width, 3), np.float32)
    sky = np.array([110, 160, 230], np.float32)
    ground = np.array([70, 120, 50], np.float32)
    horizon = 0.55 + 0.05 * np.sin(x * 7.0 + rng.uniform(0, 6))
    below = (y > horizon)[..., None]
    image[:] = np.where(below, ground, sky) * (0.75 + 0.35 * (1 - y))[..., None]
    for _ in range(6):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.9), rng.uniform(0.03, 0.15)
        colour = rng.uniform(30, 240, 3).astype(np.float32)
        mask = np.clip(1.5 - np.hypot(x - cx, (y - cy) * height / width) / r, 0, 1)[..., None]
        image = image * (1 - mask) + colour * mask
    texture = np.sin(x * width / 9.0) * np.sin(y * height / 11.0) * 6.0
    image += texture[..., None]
    image += rng.normal(0, 5.0, image.shape).astype(np.float32)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def quadrants(size: tuple[int, int] = (64, 48), colours=(RED, GREEN, BLUE, YELLOW)) -> Image.Image:
    """An image in four solid quadrants (top-left, top-right, bottom-left, bottom-right): any flip or
    rotation gives a different picture, so orientation handling can be checked pixel by pixel."""
    width, height = size
    image = Image.new("RGB", size)
    half_w, half_h = width // 2, height // 2
    boxes = (
        (0, 0, half_w, half_h),
        (half_w, 0, width, half_h),
        (0, half_h, half_w, height),
        (half_w, half_h, width, height),
    )
    for box, colour in zip(boxes, colours, strict=True):
        image.paste(colour, box)
    return image


def exif_bytes(
    orientation: int | None = None, taken_at: str | None = None, offset: str | None = None
) -> bytes:
    """EXIF with an orientation tag and/or DateTimeOriginal (``"2021:07:04 15:30:00"``)."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if taken_at is not None or offset is not None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        if taken_at is not None:
            sub[ExifTags.Base.DateTimeOriginal] = taken_at
        if offset is not None:
            sub[ExifTags.Base.OffsetTimeOriginal] = offset
    return exif.tobytes()


def write_jpeg(
    path: str | Path,
    size: tuple[int, int] = (64, 48),
    *,
    image: Image.Image | None = None,
    orientation: int | None = None,
    taken_at: str | None = None,
    offset: str | None = None,
    quality: int = 90,
    seed: int = 0,
) -> Path:
    """A baseline JPEG (photo-like content unless ``image`` is given), optionally with EXIF."""
    path = _prepare(path)
    image = image if image is not None else photo_like(size, seed)
    options = {"quality": quality}
    if orientation is not None or taken_at is not None or offset is not None:
        options["exif"] = exif_bytes(orientation, taken_at, offset)
    image.save(path, "JPEG", **options)
    return path


def write_png(
    path: str | Path, size: tuple[int, int] = (40, 30), *, image: Image.Image | None = None, seed: int = 0
) -> Path:
    """An 8-bit RGB PNG."""
    path = _prepare(path)
    (image if image is not None else photo_like(size, seed)).save(path, "PNG")
    return path


def write_format(path: str | Path, fmt: str, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """Photo-like content in any format Pillow writes (BMP, TIFF, WEBP...)."""
    path = _prepare(path)
    photo_like(size, seed).save(path, fmt)
    return path


def write_cmyk_jpeg(path: str | Path, size: tuple[int, int] = (40, 30), cmyk=(255, 0, 0, 0)) -> Path:
    """A CMYK JPEG (as saved for print); the default colour is pure cyan."""
    path = _prepare(path)
    Image.new("CMYK", size, cmyk).save(path, "JPEG", quality=95)
    return path


def write_png16(path: str | Path, size: tuple[int, int] = (64, 16)) -> Path:
    """A 16-bit greyscale PNG with a horizontal ramp over the full 0..65535 range."""
    path = _prepare(path)
    width, height = size
    ramp = np.linspace(0, 65535, width, dtype=np.float64).astype(np.uint16)
    Image.fromarray(np.tile(ramp, (height, 1))).save(path, "PNG")
    return path


def write_palette_png_transparent(path: str | Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A palette PNG whose left half is fully transparent and right half opaque red."""
    path = _prepare(path)
    width, height = size
    image = Image.new("P", size, 0)
    image.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    image.paste(1, (width // 2, 0, width, height))
    image.save(path, "PNG", transparency=0)
    return path


def write_alpha_png(path: str | Path, mode: str = "RGBA", size: tuple[int, int] = (32, 32)) -> Path:
    """An RGBA or LA PNG whose top half is transparent and bottom half opaque."""
    path = _prepare(path)
    width, height = size
    colour = (*GREEN, 255) if mode == "RGBA" else (90, 255)
    image = Image.new(mode, size, (0,) * len(mode))
    image.paste(colour, (0, height // 2, width, height))
    image.save(path, "PNG")
    return path


def write_animated(path: str | Path, fmt: str = "GIF", colours=(RED, BLUE, GREEN), size=(24, 24)) -> Path:
    """An animated GIF or WebP, one solid colour per frame."""
    path = _prepare(path)
    frames = [Image.new("RGB", size, colour) for colour in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    return path


def write_truncated_jpeg(path: str | Path, size: tuple[int, int] = (128, 96), keep: float = 0.5) -> Path:
    """A JPEG cut off part way through its pixel data (as after an interrupted copy)."""
    path = _prepare(path)
    write_jpeg(path, size)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_empty(path: str | Path) -> Path:
    """A zero-byte file."""
    path = _prepare(path)
    path.write_bytes(b"")
    return path


def write_text(path: str | Path, text: str = "this is not an image\n") -> Path:
    """A text file, typically named like an image."""
    path = _prepare(path)
    path.write_text(text)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_huge_png_header(path: str | Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's shape).

    The file is a few dozen bytes: only a decoder that trusts the header would allocate the image.
    """
    path = _prepare(path)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    data = zlib.compress(b"\x00" * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path
