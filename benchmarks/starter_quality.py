"""Quality of a scene-world model, and the statistics the search gate needs to be calibrated.

    python benchmarks/starter_quality.py                         # the bundled starter model
    python benchmarks/starter_quality.py --model file:runs/x/model.safetensors --json out.json

Part 1 (retrieval): on held-out-seed test scenes and on held-out compositions, with one full
caption per scene: R@1/5/10 in both directions (a hit is any scene matching every attribute
of the caption; "instance" counts only the captioned scene), CS@100 with its ceiling, CS@N
over the whole pool, nDCG@20, mean rank. Also partial captions (1-4 attributes) text->image.

Part 2 (attributes): for every test scene, a counterfactual twin per attribute (the same look
with its count, colour, kind, setting or time changed, :func:`trainer.scenes.counterfactual_twins`
style): the AUC of the scene's full caption scoring its own picture above the twin's, per
attribute (0.5: the model cannot see that attribute).

Part 3 (gate): a library of test-split scenes (no held-out composition occurs in it) is
queried with captions that have a full match in it and with captions of held-out
compositions, which have none (long-tail queries). For each query: the top-1 cosine, its z
against the query's own scores over the library, and the statistics core.grading's MatchGate
tests (top tier median z, separation). The best single thresholds are reported with their
balanced accuracy, plus how the default gate does.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

logger = logging.getLogger("starter_quality")


def _load(spec: str):
    import torch

    from core.models import load_model

    torch.manual_seed(0)
    return load_model(spec, device="cpu")


def _encoders(loaded):
    import open_clip
    import torch

    from trainer.data import ImageNormalizer
    from trainer.train import TwinTowerForward

    model = loaded.model.eval()
    forward = TwinTowerForward(model)
    mean = tuple(open_clip.get_model_preprocess_cfg(model).get("mean") or (0.48145466, 0.4578275, 0.40821073))
    std = tuple(open_clip.get_model_preprocess_cfg(model).get("std") or (0.26862954, 0.26130258, 0.27577711))
    normalizer = ImageNormalizer(mean, std)

    def images(pixels: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(pixels), 256):
                out.append(model.encode_image(normalizer(pixels[s : s + 256]), normalize=True))
        return torch.cat(out).numpy()

    def texts(tokens) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(tokens), 512):
                out.append(forward.encode_text(tokens[s : s + 512]))
        return torch.cat(out).numpy()

    return images, texts


def retrieval(images, texts, tokenizer, image_size: int, n_test: int, n_heldout: int) -> dict:
    from trainer.data import SceneSetSpec, build_eval_set, load_scene_set
    from trainer.metrics import recall_at_k, retrieval_report

    report = {}
    test = load_scene_set(SceneSetSpec("test", n_test, 0, image_size))
    heldout = load_scene_set(SceneSetSpec("heldout", n_heldout, 0, image_size))
    pools = [
        ("test", build_eval_set("test", test, tokenizer, 0)),
        ("heldout", build_eval_set("heldout", heldout, tokenizer, 0)),
        ("test-partial", build_eval_set("test-partial", test, tokenizer, 0, full=False)),
    ]
    vecs = {}
    for name, pool in pools:
        key = id(pool.data)
        if key not in vecs:
            vecs[key] = images(pool.data.images)
        sim = texts(pool.captions.tokens) @ vecs[key].T
        match = pool.relevance >= 1 - 1e-6
        directions = [("t2i", sim, pool.relevance, match)]
        if pool.full:
            directions.append(("i2t", sim.T, pool.relevance.T, match.T))
        for direction, s, r, gt in directions:
            rep = retrieval_report(s, r, gt, cs_ks=(100, len(pool.data)), ndcg_ks=(20,))
            rep.update({f"R@{k}_instance": v for k, v in recall_at_k(s, np.arange(len(pool.data))).items()})
            report[f"{name}/{direction}"] = {k: round(float(v), 4) for k, v in rep.items()}
    return report


def attribute_auc(images, texts, tokenizer, image_size: int, n_scenes: int, seed: int = 21) -> dict:
    """Per attribute: how often a full caption scores its scene above that scene's one-attribute twin."""
    from trainer import captions, scenes
    from trainer.data import render_images

    base = scenes.sample_scenes(n_scenes, seed=seed, split="test")
    rng = np.random.default_rng(seed)
    caps = [captions.caption(s, rng) for s in base]
    text_vecs = texts(tokenizer(caps))
    own = np.einsum("nd,nd->n", text_vecs, images(render_images(base, image_size)))
    out = {}
    for attr in scenes.ATTRIBUTES:
        twins = []
        for s in base:
            attrs = s.attributes()
            options = [v for v in scenes.VOCABULARY[attr] if v != attrs[attr]]
            twins.append(
                scenes.Scene(**{**attrs, attr: options[int(rng.integers(len(options)))]}, seed=s.seed)
            )
        twin_scores = np.einsum("nd,nd->n", text_vecs, images(render_images(twins, image_size)))
        auc = float(np.mean((own > twin_scores) + 0.5 * (own == twin_scores)))
        out[attr] = round(auc, 4)
    return {"scenes": n_scenes, "auc": out}


def gate_statistics(images, texts, tokenizer, image_size: int, library_size: int, n_queries: int) -> dict:
    from core.grading import MatchGate, grade
    from trainer import captions, scenes
    from trainer.data import SceneSetSpec, load_scene_set

    library = load_scene_set(SceneSetSpec("test", library_size, 0, image_size))
    lib_vecs = images(library.images)
    rng = np.random.default_rng(11)
    heldout_scenes = scenes.sample_scenes(n_queries, seed=5, split="heldout")
    query_sets = {
        "full match": [captions.caption(s, rng) for s in library.scenes[:n_queries]],
        "partial match": [
            captions.partial_caption(s, rng, named=["kind", "colour", "setting"])[0]
            for s in library.scenes[n_queries : 2 * n_queries]
        ],
        "long tail (full caption)": [captions.caption(s, rng) for s in heldout_scenes],
        "long tail (composition only)": [
            captions.describe(s, _composition_of(s), rng) for s in heldout_scenes
        ],
    }
    lib_codes = scenes.encode_scenes(library.scenes)
    out: dict = {"library": library_size, "queries_per_set": n_queries, "sets": {}}
    samples: dict[str, dict[str, np.ndarray]] = {}
    for name, texts_ in query_sets.items():
        attrs = [captions.attributes_in_text(t) for t in texts_]
        rel = scenes.relevance_matrix(attrs, lib_codes)
        has_match = (rel >= 1 - 1e-6).any(axis=1)
        sims = texts(tokenizer(texts_)) @ lib_vecs.T
        stats = {"top1": [], "top1_z": [], "top_z": [], "separation_z": [], "default_gate_match": []}
        for row in sims:
            g = grade(np.sort(row)[::-1][:200], row)
            stats["top1"].append(float(row.max()))
            stats["top1_z"].append(float((row.max() - row.mean()) / max(row.std(), 1e-6)))
            stats["top_z"].append(g.top_z)
            stats["separation_z"].append(g.separation_z if math.isfinite(g.separation_z) else 99.0)
            stats["default_gate_match"].append(not g.long_tail)
        arrays = {k: np.asarray(v, dtype=float) for k, v in stats.items()}
        samples[name] = arrays
        out["sets"][name] = {
            "has_full_match": float(has_match.mean()),
            "top1_best_relevance": float(rel.max(axis=1).mean()),
            **{k: _quantiles(arrays[k]) for k in ("top1", "top1_z", "top_z", "separation_z")},
            "default_gate_says_match": float(arrays["default_gate_match"].mean()),
        }
    pos = {
        k: np.concatenate([samples["full match"][k], samples["partial match"][k]])
        for k in samples["full match"]
    }
    neg = {
        k: np.concatenate(
            [samples["long tail (full caption)"][k], samples["long tail (composition only)"][k]]
        )
        for k in pos
    }
    out["thresholds"] = {k: _best_threshold(pos[k], neg[k]) for k in ("top1", "top1_z", "top_z")}
    default = MatchGate()
    out["default_gate"] = {
        "gate": default.to_dict() if hasattr(default, "to_dict") else str(default),
        "match_rate_on_matches": float(pos["default_gate_match"].mean()),
        "match_rate_on_long_tail": float(neg["default_gate_match"].mean()),
    }
    return out


def _composition_of(scene) -> list[str]:
    from trainer import scenes

    for comp in scenes.HELD_OUT_COMPOSITIONS:
        if all(getattr(scene, k) == v for k, v in comp.items()):
            return list(comp)
    return ["kind", "colour"]


def _quantiles(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "mean": round(float(x.mean()), 4),
        **{f"p{p}": round(float(v), 4) for p, v in zip((5, 25, 50, 75, 95), q, strict=True)},
    }


def _best_threshold(pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
    """The threshold on a statistic with the best balanced accuracy (match if value >= t)."""
    values = np.unique(np.concatenate([pos, neg]))
    best = (0.0, float("nan"))
    for t in values:
        acc = 0.5 * ((pos >= t).mean() + (neg < t).mean())
        if acc > best[0]:
            best = (float(acc), float(t))
    labels = np.concatenate([np.ones_like(pos), np.zeros_like(neg)])
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores)
    ranks = np.empty_like(order, dtype=float)
    ranks[order] = np.arange(1, len(scores) + 1)
    auc = (ranks[labels == 1].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    return {
        "threshold": round(best[1], 4),
        "balanced_accuracy": round(best[0], 4),
        "auc": round(float(auc), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="starter", help="model spec (default: the bundled starter)")
    parser.add_argument("--test-scenes", type=int, default=1000)
    parser.add_argument("--heldout-scenes", type=int, default=500)
    parser.add_argument("--library", type=int, default=1000, help="gate library size (test-split scenes)")
    parser.add_argument("--queries", type=int, default=200, help="queries per gate query set")
    parser.add_argument("--json", metavar="PATH", help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    loaded = _load(args.model)
    images, texts = _encoders(loaded)
    size = loaded.model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else int(size)
    report = {
        "model": args.model,
        "identity": str(loaded.identity),
        "retrieval": retrieval(images, texts, loaded.tokenizer, size, args.test_scenes, args.heldout_scenes),
        "attributes": attribute_auc(images, texts, loaded.tokenizer, size, args.test_scenes),
        "gate": gate_statistics(images, texts, loaded.tokenizer, size, args.library, args.queries),
        "seconds": round(time.monotonic() - started, 1),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
