"""Search quality as a user meets it: tiers, "no exact match", ranking, by query family and library size.

    python benchmarks/search_quality.py [--model starter] [--sizes 400 1200 5000] [--queries 80]
                                        [--seed 4100] [--margins 0.5] [--json OUT]

Scene-world libraries (rendered JPEGs, indexed by the real :class:`core.library.Library`, searched
with ``Library.search`` exactly as the CLI and the app search) of each size, with seeds of their
own (``seed + size``). Query families, ``--queries`` of each per library:

- ``full``: a full caption (all 5 attributes) of a library photo: a match exists.
- ``partial``: 1-4 attributes of a library photo, in the captions' phrasing: a match exists.
- ``heldout``: a full caption of a held-out composition (e.g. a purple car): no library photo has it.
- ``near_count`` / ``near_colour`` / ``near_kind``: a library photo's full caption with its count,
  colour or object kind changed to a combination no library photo has.
- ``unknown``: words outside the scene world ("a dog", "two red cars with a dog"): no match.
- ``nonsense``: letter strings ("xyzzy").

Per family and size: R@1 (top result matches every attribute; queries with a match), tier-0
precision (share of full matches among the "Best matches", where shown) and recall (full matches of
the library in it, out of at most k), CS@100 (Kendall tau-b of the top 100 scores against true
relevance), how often "no exact match" is said wrongly (a match exists) and rightly (none exists),
and how often the tiers are ordered by mean true relevance. ``--margins`` repeats every search for
each probe margin (the evidence threshold of :mod:`core.search`); ``none`` grades statistically only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.library import Library  # noqa: E402
from trainer.captions import caption, describe  # noqa: E402
from trainer.demo_library import read_manifest, write_demo_library  # noqa: E402
from trainer.metrics import kendall_tau_b  # noqa: E402
from trainer.scenes import ATTRIBUTES, VOCABULARY, Scene, is_held_out, relevance_matrix, sample_scenes  # noqa: E402

OUT = HERE / "out"
K = 100
FAMILIES = ("full", "partial", "heldout", "near_count", "near_colour", "near_kind", "unknown", "nonsense")
UNKNOWN_NOUNS = ("dog", "cat", "person", "bicycle", "horse", "bridge", "giraffe", "umbrella")
PHOTO_SIZE = (192, 144)


@dataclass
class TestQuery:
    family: str
    text: str
    attrs: dict[str, str]  # what the query names that the scene world knows


def _near_miss(scene: Scene, attr: str, present: set[tuple], rng: np.random.Generator) -> Scene | None:
    attrs = scene.attributes()
    options = [v for v in VOCABULARY[attr] if v != attrs[attr]]
    rng.shuffle(options)
    for value in options:
        candidate = {**attrs, attr: value}
        if tuple(candidate[a] for a in ATTRIBUTES) not in present and not is_held_out(candidate):
            return Scene(**candidate, seed=scene.seed)
    return None


def make_queries(scenes: list[Scene], n: int, seed: int) -> list[TestQuery]:
    """``n`` queries of every family for a library of ``scenes``."""
    rng = np.random.default_rng(seed)
    present = {tuple(s.attributes()[a] for a in ATTRIBUTES) for s in scenes}
    out: list[TestQuery] = []
    pick = lambda: scenes[int(rng.integers(len(scenes)))]  # noqa: E731
    for _ in range(n):
        s = pick()
        out.append(TestQuery("full", caption(s, rng), s.attributes()))
        s = pick()
        k = int(rng.integers(1, len(ATTRIBUTES)))
        named = [str(a) for a in rng.choice(ATTRIBUTES, size=k, replace=False)]
        out.append(TestQuery("partial", describe(s, named, rng), {a: s.attributes()[a] for a in named}))
    for s in sample_scenes(n, seed, split="heldout"):
        out.append(TestQuery("heldout", caption(s, rng), s.attributes()))
    for attr, family in (("count", "near_count"), ("colour", "near_colour"), ("kind", "near_kind")):
        made = tries = 0
        while made < n and tries < 50 * n:
            tries += 1
            twin = _near_miss(pick(), attr, present, rng)
            if twin is not None:
                out.append(TestQuery(family, caption(twin, rng), twin.attributes()))
                made += 1
    for i in range(n):
        noun = UNKNOWN_NOUNS[i % len(UNKNOWN_NOUNS)]
        if i % 2:
            out.append(TestQuery("unknown", f"a {noun}", {}))
        else:
            s = pick()
            named = ["setting", "time"] if i % 4 else ["count", "colour", "kind", "time"]
            text = f"{describe(s, named, rng)} with a {noun}"
            out.append(TestQuery("unknown", text, {a: s.attributes()[a] for a in named}))
    letters = np.array(list("bcdfghjklmnpqrstvwxz" + "aeiouy"))
    for _ in range(n):
        words = [
            "".join(rng.choice(letters, size=int(rng.integers(4, 9)))) for _ in range(int(rng.integers(1, 4)))
        ]
        out.append(TestQuery("nonsense", " ".join(words), {}))
    return out


def build_library(
    root: Path, model: str, size: int, seed: int
) -> tuple[Library, list[Scene], dict[str, int]]:
    folder = OUT / f"quality-library-{size}-{seed}"
    write_demo_library(folder, count=size, seed=seed, size=PHOTO_SIZE)
    manifest = read_manifest(folder)
    scenes = [Scene(**{a: m["attributes"][a] for a in ATTRIBUTES}, seed=0) for m in manifest]
    where = {str((folder / m["file"]).resolve()): i for i, m in enumerate(manifest)}
    lib = Library.open(root, model=model)
    lib.add_folder(folder)
    lib.index()
    return lib, scenes, where


def evaluate(
    lib: Library, scenes: list[Scene], where: dict[str, int], queries: list[TestQuery]
) -> list[dict]:
    """One record per query: what the user was told, and how true it was."""
    with_attrs = [i for i, q in enumerate(queries) if q.attrs]
    rel = np.zeros((len(queries), len(scenes)), np.float32)
    if with_attrs:
        rel[with_attrs] = relevance_matrix([queries[i].attrs for i in with_attrs], scenes)
    rows = []
    for q, r in zip(queries, rel, strict=True):
        has_match = bool(q.attrs) and q.family not in ("unknown", "nonsense") and float(r.max()) >= 1 - 1e-6
        started = time.perf_counter()
        result = lib.search(q.text, k=K)
        elapsed = time.perf_counter() - started
        idx = np.array([where[str(Path(h.path).resolve())] for h in result.results], np.int64)
        got = r[idx] if idx.size else np.zeros(0)
        tiers = np.array([h.tier for h in result.results], np.int64)
        scores = np.array([h.score for h in result.results], np.float64)
        exact = got >= 1 - 1e-6
        n_matches = int(np.count_nonzero(r >= 1 - 1e-6)) if has_match else 0
        tier0 = (tiers == 0) & (not result.long_tail)
        means = [float(got[tiers == t].mean()) for t in range(len(result.tiers)) if np.any(tiers == t)]
        rows.append(
            {
                "family": q.family,
                "text": q.text,
                "has_match": has_match,
                "said_no_match": bool(result.long_tail),
                "unknown_words": list(result.unknown_words),
                "top1_exact": bool(exact[0]) if exact.size else False,
                "tier0_size": int(tier0.sum()),
                "tier0_precision": float(exact[tier0].mean()) if tier0.any() else math.nan,
                "tier0_recall": float(exact[tier0].sum() / min(n_matches, K)) if n_matches else math.nan,
                "cs": float(kendall_tau_b(scores[None], got[None])[0])
                if q.attrs and got.size > 1
                else math.nan,
                "tiers_ordered": bool(all(a >= b - 1e-9 for a, b in itertools.pairwise(means)))
                if q.attrs
                else None,
                "ms": 1000 * elapsed,
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict[str, float]:
    def mean(key: str, where=lambda r: True) -> float:
        values = [r[key] for r in rows if where(r) and r[key] is not None and not _isnan(r[key])]
        return float(np.mean(values)) if values else math.nan

    return {
        "queries": len(rows),
        "with_match": sum(r["has_match"] for r in rows),
        "R@1": mean("top1_exact", lambda r: r["has_match"]),
        "tier0_precision": mean("tier0_precision"),
        "tier0_recall": mean("tier0_recall", lambda r: r["has_match"]),
        "tier0_size": mean("tier0_size", lambda r: not r["said_no_match"]),
        "CS@100": mean("cs"),
        "wrong_no_match": mean("said_no_match", lambda r: r["has_match"]),
        "right_no_match": mean("said_no_match", lambda r: not r["has_match"]),
        "tiers_ordered": mean("tiers_ordered"),
        "ms_median": float(np.median([r["ms"] for r in rows])) if rows else math.nan,
    }


_COLUMNS = (
    "R@1",
    "tier0_precision",
    "tier0_recall",
    "tier0_size",
    "CS@100",
    "wrong_no_match",
    "right_no_match",
    "tiers_ordered",
)


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _fmt(x: float) -> str:
    return "-" if _isnan(x) else f"{x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="starter")
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 1200, 5000])
    parser.add_argument("--queries", type=int, default=80, help="queries per family and library")
    parser.add_argument("--seed", type=int, default=4100)
    parser.add_argument(
        "--margins", nargs="+", default=["default"], help="probe margins to compare, or 'none'"
    )
    parser.add_argument("--json", type=Path, help="write every query's record here")
    args = parser.parse_args()

    records: dict[str, list[dict]] = {}
    print(f"model {args.model}; k = {K}; {args.queries} queries per family and library\n")
    header = (
        "| size | margin | family | queries | R@1 | tier-0 precision | tier-0 recall | tier-0 size | CS@100 "
        "| wrong 'no match' | right 'no match' | tiers ordered | ms |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size in args.sizes:
        seed = args.seed + size
        with tempfile.TemporaryDirectory() as tmp:
            lib, scenes, where = build_library(Path(tmp), args.model, size, seed)
            with lib:
                queries = make_queries(scenes, args.queries, seed + 1)
                searcher = lib.searcher()
                default_margin = searcher.probe_margin
                for margin in args.margins:
                    value = {"default": default_margin, "none": None}.get(margin, margin)
                    searcher.probe_margin = None if value is None else float(value)
                    searcher.clear_cache()
                    rows = evaluate(lib, scenes, where, queries)
                    records[f"{size}/{margin}"] = rows
                    for family in (*FAMILIES, "all"):
                        sub = rows if family == "all" else [r for r in rows if r["family"] == family]
                        if not sub:
                            continue
                        m = summarise(sub)
                        cells = [size, margin, family, m["queries"]]
                        cells += [_fmt(m[key]) for key in _COLUMNS] + [f"{m['ms_median']:.1f}"]
                        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
