"""Query families with known answers on a scene-world library: what search quality is measured on.

Each family asks a different question of the grading: ``full`` and ``partial`` queries have a
match in the library, ``heldout`` (compositions never rendered), ``near_count`` / ``near_colour``
/ ``near_kind`` (a library photo with one attribute changed to a combination the library lacks),
``unknown`` (words outside the scene world) and ``nonsense`` have none. Used by
``benchmarks/search_quality.py`` and by the tests.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.captions import caption, describe
from trainer.metrics import kendall_tau_b
from trainer.scenes import ATTRIBUTES, VOCABULARY, Scene, is_held_out, relevance_matrix, sample_scenes

FAMILIES = ("full", "partial", "heldout", "near_count", "near_colour", "near_kind", "unknown", "nonsense")
HAS_MATCH = frozenset({"full", "partial"})
UNKNOWN_NOUNS = ("dog", "cat", "person", "bicycle", "horse", "bridge", "giraffe", "umbrella")


@dataclass(frozen=True)
class FamilyQuery:
    """A query, its family, and the scene-world attributes it names (what relevance is computed on)."""

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


def make_queries(scenes: list[Scene], n: int, seed: int) -> list[FamilyQuery]:
    """``n`` queries of every family for a library of ``scenes``."""
    rng = np.random.default_rng(seed)
    present = {tuple(s.attributes()[a] for a in ATTRIBUTES) for s in scenes}
    out: list[FamilyQuery] = []
    pick = lambda: scenes[int(rng.integers(len(scenes)))]  # noqa: E731
    for _ in range(n):
        s = pick()
        out.append(FamilyQuery("full", caption(s, rng), s.attributes()))
        s = pick()
        k = int(rng.integers(1, len(ATTRIBUTES)))
        named = [str(a) for a in rng.choice(ATTRIBUTES, size=k, replace=False)]
        out.append(FamilyQuery("partial", describe(s, named, rng), {a: s.attributes()[a] for a in named}))
    for s in sample_scenes(n, seed, split="heldout"):
        out.append(FamilyQuery("heldout", caption(s, rng), s.attributes()))
    for attr, family in (("count", "near_count"), ("colour", "near_colour"), ("kind", "near_kind")):
        made = tries = 0
        while made < n and tries < 50 * n:
            tries += 1
            twin = _near_miss(pick(), attr, present, rng)
            if twin is not None:
                out.append(FamilyQuery(family, caption(twin, rng), twin.attributes()))
                made += 1
    for i in range(n):
        noun = UNKNOWN_NOUNS[i % len(UNKNOWN_NOUNS)]
        if i % 2:
            out.append(FamilyQuery("unknown", f"a {noun}", {}))
        else:
            s = pick()
            named = ["setting", "time"] if i % 4 else ["count", "colour", "kind", "time"]
            text = f"{describe(s, named, rng)} with a {noun}"
            out.append(FamilyQuery("unknown", text, {a: s.attributes()[a] for a in named}))
    letters = np.array(list("bcdfghjklmnpqrstvwxz" + "aeiouy"))
    for _ in range(n):
        words = [
            "".join(rng.choice(letters, size=int(rng.integers(4, 9)))) for _ in range(int(rng.integers(1, 4)))
        ]
        out.append(FamilyQuery("nonsense", " ".join(words), {}))
    return out


K = 100  # results asked for per query


def scene_library(
    photos: Path, root: Path, model: str, size: int, seed: int, photo_size: tuple[int, int] = (192, 144)
) -> tuple[Any, list[Scene], dict[str, int]]:
    """A scene-world library of ``size`` photos rendered into ``photos`` (kept between runs), opened
    at ``root`` with ``model`` and indexed: ``(library, scenes, where)``, ``where`` mapping each
    photo's resolved path to its scene's index.
    """
    from core.library import Library
    from trainer.demo_library import read_manifest, write_demo_library

    write_demo_library(photos, count=size, seed=seed, size=photo_size)
    manifest = read_manifest(photos)
    scenes = [Scene(**{a: m["attributes"][a] for a in ATTRIBUTES}, seed=0) for m in manifest]
    where = {str((photos / m["file"]).resolve()): i for i, m in enumerate(manifest)}
    lib = Library.open(root, model=model)
    lib.add_folder(photos)
    lib.index()
    return lib, scenes, where


def evaluate(lib: Any, scenes: list[Scene], where: dict[str, int], queries: list[FamilyQuery]) -> list[dict]:
    """One record per query: what ``lib`` (a :class:`core.library.Library`) said, and how true it was.

    ``where`` maps a photo's resolved path to its index in ``scenes``.
    """
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
        idx = np.array([where[str(Path(h.path).resolve())] for h in result.hits], np.int64)
        got = r[idx] if idx.size else np.zeros(0)
        tiers = np.array([h.tier - 1 for h in result.hits], np.int64)  # 0 = best
        scores = np.array([h.score for h in result.hits], np.float64)
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


COLUMNS = (
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
