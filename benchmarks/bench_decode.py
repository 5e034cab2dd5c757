"""Decode time of a 12 MP JPEG to the model's input size: the DCT fast path against a full decode.

    python benchmarks/bench_decode.py [--runs 9] [--target 224] [--size 4000x3000]

The photo is generated (multi-scale smooth noise with edges and sensor-like grain, JPEG quality 92),
so that it compresses and decodes like a camera photo rather than flat colour. Each way is timed
from the file on disk to an RGB image whose shorter side is ``--target``; the median of ``--runs``
runs is reported (after one warm-up run each, so the file is in the page cache for both).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.decode import open_image, target_size


def photo_like_jpeg(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    """Write a photo-like JPEG: smooth structure at several scales, edges and fine grain."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 90.0), (16, 45.0), (64, 20.0), (256, 10.0)):
        coarse = rng.uniform(-1, 1, (cells * height // width + 2, cells + 2, 3)).astype(np.float32)
        layer = Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8), "RGB").resize(
            (width, height), Image.Resampling.BICUBIC
        )
        image += (np.asarray(layer, np.float32) / 127.5 - 1) * weight
    image += 128
    step = (np.arange(width)[None, :] // (width // 7) % 2) * 25.0  # hard edges, as buildings and horizons
    image += step[..., None]
    image += rng.normal(0, 4.0, image.shape).astype(np.float32)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=92)


def full_decode(
    path: Path, target: int, resample: Image.Resampling, reducing_gap: float | None
) -> Image.Image:
    """The plain way: decode every pixel, then resize (EXIF orientation applied, as the fast path does)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im.convert("RGB"))
    return im.resize(target_size(im.size, target), resample, reducing_gap=reducing_gap)


def median_ms(fn, runs: int) -> tuple[float, float, float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), max(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--target", type=int, default=224)
    parser.add_argument("--size", default="4000x3000")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        photo_like_jpeg(path, size)
        fast = open_image(path, args.target)
        ways = {
            "fast path: open_image (draft + bicubic)": lambda: open_image(path, args.target),
            "full decode + bicubic (reducing_gap=2)": lambda: full_decode(
                path, args.target, Image.Resampling.BICUBIC, 2.0
            ),
            "full decode + Lanczos": lambda: full_decode(path, args.target, Image.Resampling.LANCZOS, None),
        }
        print(f"python {' '.join([Path(__file__).name, *sys.argv[1:]])}")
        print(
            f"{size[0]}x{size[1]} JPEG ({path.stat().st_size / 1e6:.1f} MB) -> shorter side {args.target}; "
            f"decoded at {fast.decoded_size[0]}x{fast.decoded_size[1]} by the fast path, "
            f"output {fast.image.size[0]}x{fast.image.size[1]}"
        )
        print(
            f"Pillow {Image.__version__}, Python {platform.python_version()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs; median (min-max) of {args.runs} runs, one thread"
        )
        results = {name: median_ms(fn, args.runs) for name, fn in ways.items()}
        base = results["fast path: open_image (draft + bicubic)"][0]
        for name, (median, low, high) in results.items():
            print(f"  {name:42s} {median:8.1f} ms  ({low:.1f}-{high:.1f})  x{median / base:.1f}")


if __name__ == "__main__":
    main()
