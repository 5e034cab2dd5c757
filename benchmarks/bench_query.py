"""Query latency of the search path on synthetic CLIP-like vectors: exact vs hnswlib, recall, grading.

For each library size it measures, with hot caches and one query at a time (as the app asks):

* the exact matrix product (numpy float32) and the hnswlib graph, for several ``ef``;
* recall@10 of the graph against the exact answer;
* the grading of the candidates (background scores + z + 1-D k-means tiers);
* the whole :class:`core.search.Searcher` path with the text encoder stubbed out, and, with
  ``--embedder SPEC``, end to end with a real text encoder.

The vectors are not uniform: a shared "image" direction, 100 topics of 20 sub-topics each and
anisotropic noise give image-image cosines around 0.45 (0.8 to the nearest neighbour) and
queries from a separate "text" direction, like CLIP embeddings. Built indexes are cached under
``benchmarks/out/`` so reruns skip the build.

Usage::

    python benchmarks/bench_query.py                          # 10k, 100k, 1M
    python benchmarks/bench_query.py --sizes 10000 100000 --ef 32 64 128
    python benchmarks/bench_query.py --build-only --sizes 1000000
    python benchmarks/bench_query.py --embedder random:ViT-B-32-256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.index import VectorIndex  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
DIM = 512
TOPICS, SUBTOPICS = 100, 20
CHUNK = 50_000


class ClipLikeWorld:
    """Deterministic generator of clustered unit vectors resembling CLIP image and text embeddings."""

    def __init__(self, dim: int = DIM, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.seed = seed
        self.mu_image = _unit(rng.standard_normal(dim))
        self.mu_text = _unit(0.35 * self.mu_image + 0.94 * _unit(rng.standard_normal(dim)))
        self.topics = _unit(rng.standard_normal((TOPICS, dim)))
        self.subtopics = _unit(rng.standard_normal((TOPICS * SUBTOPICS, dim)))
        spectrum = np.arange(1, dim + 1, dtype=np.float64) ** -0.6
        self.spectrum = spectrum / np.linalg.norm(spectrum)

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return _unit(rng.standard_normal((n, self.dim)) * self.spectrum)

    def images(self, n: int) -> np.ndarray:
        """``n`` image vectors (float32, unit), generated in chunks to keep memory flat."""
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            rng = np.random.default_rng([self.seed, 1, start])
            sub = rng.integers(0, TOPICS * SUBTOPICS, stop - start)
            v = (
                0.67 * self.mu_image
                + 0.447 * self.topics[sub // SUBTOPICS]
                + 0.387 * self.subtopics[sub]
                + 0.447 * self._noise(rng, stop - start)
            )
            out[start:stop] = _unit(v)
        return out

    def queries(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2])
        sub = rng.integers(0, TOPICS * SUBTOPICS, n)
        v = (
            0.8 * self.mu_text
            + 0.25 * self.topics[sub // SUBTOPICS]
            + 0.22 * self.subtopics[sub]
            + 0.5 * self._noise(rng, n)
        )
        return _unit(v).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row numbers for a batch of queries (chunked over the library)."""
    best_s = np.full((q.shape[0], 0), -np.inf, np.float32)
    best_i = np.empty((q.shape[0], 0), np.int64)
    for start in range(0, x.shape[0], 200_000):
        s = q @ x[start : start + 200_000].T
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


class Timings(list):
    """Wall-clock milliseconds per call, with the process CPU milliseconds in ``.cpu``."""

    cpu: list[float]


def timed(fn, items, warmup: int = 3) -> Timings:
    for it in items[:warmup]:
        fn(it)
    wall, cpu = Timings(), []
    for it in items:
        c0, t0 = time.process_time(), time.perf_counter()
        fn(it)
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    wall.cpu = cpu
    return wall


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def graph_index(world: ClipLikeWorld, x: np.ndarray, M: int, efc: int, log) -> tuple[VectorIndex, dict]:
    """The hnswlib index of ``x`` (ids = row numbers), from the cache when there is one."""
    path = OUT / f"graph-n{x.shape[0]}-d{world.dim}-M{M}-efc{efc}-seed{world.seed}.index"
    info: dict = {}
    if path.exists():
        t0 = time.perf_counter()
        index = VectorIndex.load(path, world.dim, expected_count=x.shape[0], exact_threshold=0, M=M)
        info["load_s"] = time.perf_counter() - t0
        log(f"  loaded cached graph {path.name} in {info['load_s']:.1f} s")
        return index, info
    log(f"  building the graph of {x.shape[0]} vectors (M={M}, ef_construction={efc})...")
    index = VectorIndex(world.dim, exact_threshold=0, M=M, ef_construction=efc)
    t0 = time.perf_counter()
    last = [t0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            log(f"    {done}/{total} after {last[0] - t0:.0f} s")

    index.add(np.arange(x.shape[0]), x, on_progress=progress)
    info["build_s"] = time.perf_counter() - t0
    log(f"  built in {info['build_s']:.0f} s; saving")
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    index.save(path)
    info["save_s"] = time.perf_counter() - t0
    return index, info


def bench_size(n: int, args, log) -> dict:
    world = ClipLikeWorld(seed=args.seed)
    log(f"n={n}: generating vectors")
    x = world.images(n)
    queries = world.queries(args.queries)
    k = 10
    truth = exact_top(x, queries, k)
    row = {"n": n}

    # Exact: the matrix product of VectorIndex's exact regime, one query at a time.
    exact = VectorIndex(world.dim, exact_threshold=n + 1)
    exact.add(np.arange(n), x)
    n_exact = args.queries if n <= 200_000 else min(args.queries, 30)
    t = timed(lambda q: exact.search(q, 100), list(queries[:n_exact]))
    row["exact_p50_ms"], row["exact_p95_ms"], row["exact_cpu_ms"] = pct(t, 50), pct(t, 95), pct(t.cpu, 50)
    got = exact.search(queries, k)[0]
    row["exact_recall10"] = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)])
    )
    exact = None  # free the matrix copy before the graph loads
    log(f"  exact: p50 {row['exact_p50_ms']:.2f} ms")
    if args.build_only:
        graph_index(world, x, args.M, args.efc, log)
        return row

    graph, info = graph_index(world, x, args.M, args.efc, log)
    row.update(info)
    row["graph"] = {}
    for ef in args.ef:
        graph.ef_search = ef
        t = timed(lambda q: graph.search(q, k), list(queries))
        got = graph.search(queries, k)[0]
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
        row["graph"][ef] = {
            "p50_ms": pct(t, 50),
            "p95_ms": pct(t, 95),
            "cpu_ms": pct(t.cpu, 50),
            "recall10": recall,
        }
        log(f"  graph ef={ef}: p50 {pct(t, 50):.2f} ms, recall@10 {recall:.3f}")

    # Grading and the whole search path (text encoder stubbed: the query vector is precomputed).
    from core.grading import grade
    from core.search import Searcher

    graph.ef_search = args.ef_default
    row["ef_used"] = graph.effective_ef()
    # What the app asks: k=100 candidates (so ef = max(ef_search, 100)); recall of their top 10.
    t = timed(lambda q: graph.search(q, 100), list(queries))
    got = graph.search(queries, 100)[0][:, :k]
    row["k100_p50_ms"], row["k100_p95_ms"], row["k100_cpu_ms"] = pct(t, 50), pct(t, 95), pct(t.cpu, 50)
    row["k100_recall10"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
    background = graph.sample(args.background, seed=1)
    candidates = [graph.search(q, 100)[1][0] for q in queries]
    bg_scores = [background @ q for q in queries]
    t = timed(lambda i: grade(candidates[i], bg_scores[i]), list(range(len(queries))))
    row["grade_p50_ms"], row["grade_p95_ms"], row["grade_cpu_ms"] = pct(t, 50), pct(t, 95), pct(t.cpu, 50)
    vec_of = {f"query {i}": q for i, q in enumerate(queries)}
    searcher = Searcher(lambda texts: np.stack([vec_of[s] for s in texts]), graph, background, cache_size=0)
    t = timed(lambda i: searcher.search(f"query {i}", k=100), list(range(args.queries)))
    row["search_p50_ms"], row["search_p95_ms"], row["search_cpu_ms"] = pct(t, 50), pct(t, 95), pct(t.cpu, 50)
    results = [searcher.search(f"query {i}", k=100) for i in range(args.queries)]
    row["long_tail_share"] = float(np.mean([r.long_tail for r in results]))
    row["mean_tiers"] = float(np.mean([len(r.tiers) for r in results]))
    log(f"  grade p50 {row['grade_p50_ms']:.2f} ms; search (no encoder) p50 {row['search_p50_ms']:.2f} ms")

    if args.embedder:
        from core.embedder import Embedder

        embedder = Embedder.from_spec(args.embedder)
        if embedder.dim != world.dim:
            log(f"  embedder {args.embedder} makes {embedder.dim}-d vectors; end-to-end skipped")
        else:
            searcher = Searcher(embedder.encode_texts, graph, background, cache_size=0)
            texts = [
                f"a photo of {w} number {i}" for i, w in enumerate(["a dog", "the beach", "a red car"] * 20)
            ]
            t = timed(lambda s: embedder.encode_texts([s]), texts)
            row["encode_p50_ms"], row["encode_cpu_ms"] = pct(t, 50), pct(t.cpu, 50)
            t = timed(lambda s: searcher.search(s, k=100), texts)
            row["e2e_p50_ms"], row["e2e_p95_ms"], row["e2e_cpu_ms"] = pct(t, 50), pct(t, 95), pct(t.cpu, 50)
            log(f"  end to end with {args.embedder}: p50 {row['e2e_p50_ms']:.1f} ms")
    return row


def exact_only(sizes: list[int], args, log) -> list[dict]:
    world = ClipLikeWorld(seed=args.seed)
    queries = list(world.queries(60))
    rows = []
    for n in sizes:
        index = VectorIndex(world.dim, exact_threshold=n + 1)
        index.add(np.arange(n), world.images(n))
        t = timed(lambda q, index=index: index.search(q, 100), queries)
        rows.append({"n": n, "p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "cpu_ms": pct(t.cpu, 50)})
        log(f"exact n={n}: p50 {pct(t, 50):.2f} ms")
    return rows


def markdown(rows: list[dict], exact_rows: list[dict], args, load: tuple[float, float]) -> str:
    cpu = f"{os.cpu_count()} CPUs, {platform.machine()}, numpy {np.__version__}"
    lines = [
        f"Machine: {cpu}; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end. Times in ms:",
        "wall-clock p50 / p95, and in brackets the process CPU time p50 (what a quiet machine would show",
        "for single-threaded work).",
        "",
        f"### Retrieval, one {DIM}-d query at a time",
        "",
        f"Exact: matrix product over all vectors, k=100. hnswlib: M={args.M}, ef_construction={args.efc}, "
        "k=10; recall@10 against the exact top 10.",
        "",
        "| photos | exact | ef | hnswlib | recall@10 |",
        "|---:|---:|---:|---:|---:|",
    ]

    def ms(p50: float, p95: float, cpu_ms: float) -> str:
        return f"{p50:.2f} / {p95:.2f} ({cpu_ms:.2f})"

    for r in rows:
        for i, (ef, g) in enumerate(r.get("graph", {}).items()):
            exact = ms(r["exact_p50_ms"], r["exact_p95_ms"], r["exact_cpu_ms"]) if i == 0 else ""
            graph = ms(g["p50_ms"], g["p95_ms"], g["cpu_ms"])
            lines.append(f"| {r['n']:,} | {exact} | {ef} | {graph} | {g['recall10']:.3f} |")
    lines += [
        "",
        f"### The search path as the app runs it (k=100, ef_search "
        f"{args.ef_default or 'scaled with the library'}, {args.background} background vectors)",
        "",
        "| photos | ef | retrieve k=100 | recall@10 | grade | Searcher.search (encoder stubbed) "
        "| long-tail share | tiers (mean) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "search_p50_ms" not in r:
            continue
        lines.append(
            f"| {r['n']:,} | {r['ef_used']} | {ms(r['k100_p50_ms'], r['k100_p95_ms'], r['k100_cpu_ms'])} "
            f"| {r['k100_recall10']:.3f} | {ms(r['grade_p50_ms'], r['grade_p95_ms'], r['grade_cpu_ms'])} "
            f"| {ms(r['search_p50_ms'], r['search_p95_ms'], r['search_cpu_ms'])} "
            f"| {r['long_tail_share']:.2f} | {r['mean_tiers']:.1f} |"
        )
    e2e = [r for r in rows if "e2e_p50_ms" in r]
    if e2e:
        lines += [
            "",
            f"### End to end with the text tower of `{args.embedder}` (random weights, same compute)",
            "",
            "| photos | text encoding p50 (cpu) | search end to end |",
            "|---:|---:|---:|",
        ]
        lines += [
            f"| {r['n']:,} | {r['encode_p50_ms']:.1f} ({r['encode_cpu_ms']:.1f}) "
            f"| {ms(r['e2e_p50_ms'], r['e2e_p95_ms'], r['e2e_cpu_ms'])} |"
            for r in e2e
        ]
    builds = [r for r in rows if "build_s" in r]
    if builds:
        lines += ["", "Graph build: " + ", ".join(f"{r['n']:,} in {r['build_s']:.0f} s" for r in builds)]
    loads = [r for r in rows if "load_s" in r]
    if loads:
        lines += [
            "",
            "Index load (checksum + hnswlib read): "
            + ", ".join(f"{r['n']:,} in {r['load_s']:.1f} s" for r in loads),
        ]
    if exact_rows:
        lines += [
            "",
            "### Exact search alone (choosing exact_threshold)",
            "",
            "| photos | exact |",
            "|---:|---:|",
        ]
        lines += [f"| {r['n']:,} | {ms(r['p50_ms'], r['p95_ms'], r['cpu_ms'])} |" for r in exact_rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--exact-sizes", type=int, nargs="*", default=[25_000, 50_000, 200_000, 400_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument(
        "--ef-default",
        type=int,
        default=None,
        help="ef for the app-path rows (default: the index's own scaling)",
    )
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--efc", type=int, default=200)
    parser.add_argument("--background", type=int, default=4096, help="library sample for z-scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedder", default=None, help="e.g. random:ViT-B-32-256 for end to end")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    rows = [bench_size(n, args, log) for n in args.sizes]
    if args.build_only:
        return
    exact_rows = exact_only(args.exact_sizes, args, log) if args.exact_sizes else []
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_query.json").write_text(json.dumps({"rows": rows, "exact": exact_rows}, indent=1))
    print(markdown(rows, exact_rows, args, (load_start, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
