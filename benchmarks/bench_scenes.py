"""Speed of the scene world: rendering at training and demo sizes, and relevance matrices.

    python benchmarks/bench_scenes.py [--scenes 100] [--big 8] [--rounds 5]

Rendering is timed per scene over ``--scenes`` training scenes at 64 x 64 and 128 x 128 and
``--big`` scenes at 1600 x 1200 (plus the JPEG encode a demo photo needs), after one warm-up
render, in ``--rounds`` rounds: the best round estimates the cost on an idle core, the median
what a busy machine gives; process CPU time is printed too, steadier when cores are shared.
Relevance matrices are timed at a training batch (512 x 512) and a benchmark pool (1000
queries x 20000 scenes).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.captions import partial_caption
from trainer.scene_render import render_scene
from trainer.scenes import relevance_matrix, sample_scenes


def time_renders(scenes, size, rounds: int, encode: bool = False) -> tuple[float, float, float]:
    """(best wall, median wall, best process CPU) ms per scene over ``rounds`` rounds."""
    render_scene(scenes[0], size)  # warm-up
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for scene in scenes:
            img = render_scene(scene, size)
            if encode:
                img.save(io.BytesIO(), "JPEG", quality=90)
        walls.append((time.perf_counter() - wall) * 1000 / len(scenes))
        cpus.append((time.process_time() - cpu) * 1000 / len(scenes))
    return min(walls), statistics.median(walls), min(cpus)


def time_relevance(n_queries: int, n_scenes: int, runs: int = 5) -> float:
    """Median ms for one (n_queries, n_scenes) relevance matrix from attribute dicts, codes cached."""
    from trainer.scenes import encode_queries, encode_scenes

    rng = np.random.default_rng(0)
    scenes = sample_scenes(n_scenes, seed=1)
    queries = [partial_caption(s, rng)[1] for s in sample_scenes(n_queries, seed=2)]
    q, s = encode_queries(queries), encode_scenes(scenes)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        relevance_matrix(q, s)
        times.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    relevance_matrix(queries, scenes)
    with_encoding = (time.perf_counter() - start) * 1000
    median = statistics.median(times)
    print(f"  relevance {n_queries} x {n_scenes}: {median:.1f} ms (with encoding {with_encoding:.1f} ms)")
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100, help="scenes per small size")
    parser.add_argument("--big", type=int, default=8, help="scenes at 1600 x 1200")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; best and median are reported")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}")
    scenes = sample_scenes(args.scenes, seed=0)
    cases = [((64, 64), scenes, False), ((128, 128), scenes, False)]
    cases += [((1600, 1200), scenes[: args.big], False), ((1600, 1200), scenes[: args.big], True)]
    for size, batch, encode in cases:
        best, median, cpu = time_renders(batch, size, args.rounds, encode)
        what = "render + JPEG q90" if encode else "render"
        print(
            f"  {what} {size[0]}x{size[1]}: wall best {best:.1f} / median {median:.1f} ms, cpu {cpu:.1f} ms"
        )
    time_relevance(512, 512)
    time_relevance(1000, 20000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
