"""Calibrate a model's match gate on the scene world, where the truth of "is there a match" is known.

    python benchmarks/calibrate_gate.py [--model starter] [--photos 600] [--queries 600] [--write]

Two libraries are rendered (non-held-out scenes, like the demo library) with different seeds: one
to choose the thresholds, one to check them. Queries name two to five attributes of a scene, in
the captions' varied phrasing; half come from held-out compositions, which no library photo has.
A query *has a match* when some photo of the library satisfies every attribute it names
(relevance 1.0). Each query is searched as the app does, and the gate statistics of its top tier
(median z, separation from the next tier, best raw score) are recorded. The thresholds that
maximise balanced accuracy on the first library are reported with their accuracy on the second;
``--write`` stores them where the library finds them for this model
(``resources/models/<arch>.gate.json`` for the starter, ``<checkpoint>.gate.json`` for a file).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.grading import MatchGate  # noqa: E402
from core.library import Library  # noqa: E402
from core.match_gate import gate_file_for, gate_to_json  # noqa: E402
from trainer.captions import describe  # noqa: E402
from trainer.demo_library import read_manifest, write_demo_library  # noqa: E402
from trainer.scenes import ATTRIBUTES, Scene, relevance_matrix, sample_scenes  # noqa: E402

OUT = HERE / "out"


def _queries(n: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    rng = np.random.default_rng(seed)
    seen = sample_scenes(n // 2, seed, split="test")
    held = sample_scenes(n - n // 2, seed, split="heldout")
    out = []
    for scene in seen + held:
        size = int(rng.integers(2, len(ATTRIBUTES) + 1))
        named = {str(a) for a in rng.choice(ATTRIBUTES, size=size, replace=False)}
        if "kind" not in named and "colour" in named:
            named.add("kind")  # a colour alone names no object
        attrs = {a: getattr(scene, a) for a in named}
        out.append((describe(scene, named, rng), attrs))
    return out


def _measure(spec: str, photos: int, queries: int, seed: int) -> list[dict]:
    folder = OUT / f"gate-library-{photos}-{seed}"
    write_demo_library(folder, count=photos, seed=seed, size=(640, 480))
    manifest = read_manifest(folder)
    scenes = [Scene(**{a: m["attributes"][a] for a in ATTRIBUTES}, seed=0) for m in manifest]
    qs = _queries(queries, seed + 1)
    best = relevance_matrix([a for _, a in qs], scenes).max(axis=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Library.open(tmp, model=spec) as lib:
        lib.add_folder(folder)
        lib.index()
        for (text, _), top_rel in zip(qs, best, strict=True):
            g = lib.search(text, k=60).grading
            rows.append(
                {
                    "text": text,
                    "match": bool(top_rel >= 1.0 - 1e-9),
                    "top_z": g.top_z,
                    "separation_z": g.separation_z,
                    "gap_z": g.gap_z,
                    "top_score": float(g.tiers[0].max_score) if g.tiers else float("nan"),
                }
            )
    return rows


def _accuracy(gate: MatchGate, rows: list[dict]) -> tuple[float, float, float]:
    """(balanced accuracy, recall on matches, recall on long-tail)."""
    said = np.array([gate.passes(r["top_z"], r["separation_z"], r["gap_z"], r["top_score"]) for r in rows])
    truth = np.array([r["match"] for r in rows])
    tpr = float(said[truth].mean()) if truth.any() else float("nan")
    tnr = float((~said[~truth]).mean()) if (~truth).any() else float("nan")
    return (tpr + tnr) / 2, tpr, tnr


def _search(rows: list[dict]) -> MatchGate:
    def quantiles(key: str) -> list[float]:
        values = np.array([r[key] for r in rows], np.float64)
        values = values[np.isfinite(values)]
        return sorted({round(float(q), 3) for q in np.quantile(values, np.linspace(0.02, 0.98, 25))})

    best, best_acc = MatchGate(), -1.0
    for top_z, sep, score in itertools.product(
        [-np.inf, *quantiles("top_z")], [-np.inf, *quantiles("separation_z")], [None, *quantiles("top_score")]
    ):
        gate = MatchGate(
            min_top_z=float(top_z), min_separation_z=float(sep), min_gap_z=-np.inf, min_top_score=score
        )
        acc = _accuracy(gate, rows)[0]
        if acc > best_acc + 1e-9:
            best, best_acc = gate, acc
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="starter")
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs=2, default=(101, 202), help="calibration and check seeds")
    parser.add_argument("--write", action="store_true", help="store the chosen gate for this model")
    args = parser.parse_args()

    fit = _measure(args.model, args.photos, args.queries, args.seeds[0])
    check = _measure(args.model, args.photos, args.queries, args.seeds[1])
    gate = _search(fit)
    default = MatchGate()
    print(f"model {args.model}; {args.photos} photos and {args.queries} queries per library")
    print(f"matches: {sum(r['match'] for r in fit)} (fit), {sum(r['match'] for r in check)} (check)")
    print(
        "| gate | fit balanced acc | check balanced acc | check recall (match) | check recall (long-tail) |"
    )
    print("|---|---|---|---|---|")
    for name, g in (("default", default), ("calibrated", gate)):
        f = _accuracy(g, fit)
        c = _accuracy(g, check)
        print(f"| {name} {g} | {f[0]:.3f} | {c[0]:.3f} | {c[1]:.3f} | {c[2]:.3f} |")
    if args.write:
        path = gate_file_for(args.model)
        if path is None:
            raise SystemExit(f"{args.model} has no weights file beside which to store a gate")
        record = {"match_gate": gate_to_json(gate), "calibrated_by": "python " + " ".join(sys.argv)}
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"written: {path}")


if __name__ == "__main__":
    main()
