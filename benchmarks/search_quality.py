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
import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from trainer.query_families import COLUMNS, FAMILIES, K, evaluate, make_queries, scene_library, summarise  # noqa: E402

OUT = HERE / "out"


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


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
            lib, scenes, where = scene_library(
                OUT / f"quality-library-{size}-{seed}", Path(tmp), args.model, size, seed
            )
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
                        cells += [_fmt(m[key]) for key in COLUMNS] + [f"{m['ms_median']:.1f}"]
                        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
