"""Indexing throughput against a naive pipeline, and the re-scan of an unchanged library.

    python benchmarks/bench_index.py throughput [--photos 48] [--model random:ViT-B-32-256] [--model starter]
    python benchmarks/bench_index.py rescan [--files 100000]

throughput: a folder of realistic 12-megapixel JPEGs (generated once, cached under benchmarks/out)
is indexed twice per model, side by side in one run:

* naive: what peer tools do: full decode (``Image.open().convert("RGB")``), the model's open_clip
  preprocess, batches of 8, one thread, ``encode_image`` per batch;
* ladderlens: ``Library.index`` into a fresh library (DCT-domain JPEG downscale, parallel decode
  with bounded look-ahead, batched inference, catalog and vector writes included).

rescan: a library of N catalogued files (tiny files in nested folders, catalogued with vectors) is
re-scanned with nothing changed; the time of ``Library.index`` is reported (model already loaded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_decode import photo_like_jpeg  # noqa: E402

OUT = HERE / "out"


def _photos(count: int) -> Path:
    folder = OUT / f"jpeg12mp-{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"IMG_{i:04d}.jpg"
        if not path.exists():
            photo_like_jpeg(path, (4000, 3000), seed=i)
    return folder


def _naive(spec: str, files: list[Path]) -> float:
    """Seconds to embed ``files`` the naive way (model load excluded)."""
    import torch
    from PIL import Image

    from core.models import load_model

    loaded = load_model(spec, device="cpu")
    model, preprocess = loaded.model, loaded.preprocess
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(files), 8):
            batch = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files[i : i + 8]])
            model.encode_image(batch)
    return time.perf_counter() - start


def _ours(spec: str, folder: Path) -> float:
    """Seconds for ``Library.index`` on a fresh library (model load excluded)."""
    from core.library import Library

    root = Path(tempfile.mkdtemp(prefix="bench-lib-"))
    try:
        with Library.open(root, model=spec) as lib:
            lib.embedder()  # load the model outside the timing
            lib.add_folder(folder)
            start = time.perf_counter()
            report = lib.index()
            elapsed = time.perf_counter() - start
            assert report.embedded == len(list(folder.glob("*.jpg"))), report
            return elapsed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def throughput(args: argparse.Namespace) -> None:
    folder = _photos(args.photos)
    files = sorted(folder.glob("*.jpg"))
    print(f"{len(files)} JPEGs of 4000x3000 in {folder}; {os.cpu_count()} CPUs")
    print("| model | naive photos/s | ladderlens photos/s | speed-up |")
    print("|---|---|---|---|")
    for spec in args.model or ["random:ViT-B-32-256", "starter"]:
        naive = [_naive(spec, files) for _ in range(args.repeats)]
        ours = [_ours(spec, folder) for _ in range(args.repeats)]
        n, o = statistics.median(naive), statistics.median(ours)
        print(f"| {spec} | {len(files) / n:.2f} | {len(files) / o:.2f} | {n / o:.1f}x |", flush=True)


def rescan(args: argparse.Namespace) -> None:
    from core.catalog import PhotoEntry
    from core.library import Library

    spec = args.spec
    work = OUT / f"rescan-{args.files}"
    photos = work / "photos"
    if not photos.exists():
        print(f"creating {args.files} files ...", flush=True)
        for i in range(args.files):
            sub = photos / f"{i // 10000:02d}" / f"{(i // 500) % 20:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"IMG_{i:06d}.jpg").write_bytes(b"x")
    shutil.rmtree(work / "lib", ignore_errors=True)
    with Library.open(work / "lib", model=spec) as lib:
        folder_status = lib.add_folder(photos)
        folder = lib.catalog.folder_by_path(folder_status.path)
        embedder = lib.embedder()
        state = lib._state(lib.model_spec)
        print("cataloguing ...", flush=True)
        entries, hashes = [], []
        for dirpath, _, names in os.walk(photos):
            for name in names:
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                digest = f"{len(entries):032x}"
                entries.append(PhotoEntry(path, st.st_size, st.st_mtime_ns, digest))
                hashes.append(digest)
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((len(entries), embedder.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(0, len(entries), 20000):
            state.store.put(hashes[i : i + 20000], vecs[i : i + 20000])
            lib.catalog.upsert_photos(folder.id, entries[i : i + 20000])
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            report = lib.index()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            assert report.unchanged == len(entries) and report.embedded == 0, report
        runs = ", ".join(f"{t:.2f}" for t in times)
        median, median_cpu = statistics.median(times), statistics.median(cpu)
        n = len(entries)
        print(f"| unchanged re-scan of {n} files | wall {median:.2f} s | CPU {median_cpu:.2f} s | {runs} |")


_INDEX_CHILD = """
import resource, sys
sys.path.insert(0, {repo!r})
from core.library import Library
with Library.open({root!r}, model={spec!r}) as lib:
    lib.add_folder({folder!r})
    lib.index()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_SEARCH_CHILD = """
import resource, sys
sys.path.insert(0, {repo!r})
from core.library import Library
with Library.open({root!r}, model={spec!r}) as lib:
    for q in ["red car at night", "two kites over a snowy field", "a boat", "sunset - people"] * 5:
        lib.search(q, k=60)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(args: argparse.Namespace) -> None:
    """Peak resident memory of indexing, then of a search session, each in a process of its own."""
    import subprocess

    folder = _photos(args.photos)
    print("| model | photos | peak RSS while indexing | peak RSS of a search session (20 queries) |")
    print("|---|---|---|---|")
    for spec in args.model or ["random:ViT-B-32-256", "starter"]:
        root = tempfile.mkdtemp(prefix="bench-mem-")
        peaks = []
        for code in (_INDEX_CHILD, _SEARCH_CHILD):
            script = code.format(repo=str(HERE.parent), root=root, spec=spec, folder=str(folder))
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            peaks.append(int(out.stdout.split()[-1]) / 1024)  # ru_maxrss is in KiB on Linux
        shutil.rmtree(root, ignore_errors=True)
        print(f"| {spec} | {args.photos} x 12 MP | {peaks[0]:.0f} MiB | {peaks[1]:.0f} MiB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--photos", type=int, default=48)
    p.add_argument("--model", action="append", help="model spec (repeatable)")
    p.add_argument("--repeats", type=int, default=1)
    p = sub.add_parser("memory")
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--model", action="append", help="model spec (repeatable)")
    p = sub.add_parser("rescan")
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--spec", default="random:ViT-B-32-256")
    p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"throughput": throughput, "rescan": rescan, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
