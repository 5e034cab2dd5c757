"""Fine-tuning on tagged folders: speed of the adapter mode, and quality on the scene world.

    python benchmarks/bench_finetune.py speed [--photos 10000] [--apply 100000] [--text-model random:ViT-B-32]
    python benchmarks/bench_finetune.py quality [--model SPEC] [--photos 1500] [--seeds 0 1 2]
                                                [--losses adaptive triplet]

``speed``:

* fine-tune: ``--photos`` tagged photos (a place / thing / colour / year tree, 240 leaf folders)
  with synthetic 512-d image vectors that follow their tags; captions and tags go through a real
  text tower (``--text-model``, random weights: the same compute as trained ones). Times the
  whole adapter fine-tune (captions, relevance, levels, training with early stopping, blend,
  report) and, apart, the one-time imports a fresh process pays.
* apply: a library of ``--apply`` photos with 512-d vectors; times switching to a saved adapter
  profile (transform every stored vector, store them, build and save the profile's index), with
  the model already loaded as it is in the running app.

``quality``: a tagged tree made from the scene world (:mod:`trainer.tagged_world`: personal names
for places and things, "Grandma's garden", "the kayak", that the base model never read; colours
it knows), indexed with the base model (``--model``; default the bundled starter, else a weights
file). For every seed, the same split is fine-tuned with each loss; held-out photos are scored
with tag-set queries, against the tag relevance and against the scene world's own attribute
relevance (independent of the tag formula), and on the general scene-world set (the cost).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.progress import drive

OUT = Path(__file__).resolve().parent / "out" / "finetune"


def _machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )


# ------------------------------------------------------------------------------------------ speed


def synthetic_tagged(n: int, dim: int, seed: int = 0, years: bool = False):
    """Tags (place, thing, colour, and a year with ``years``) and image vectors that follow them:
    240 distinct tag sets (960 with years), as a place/thing/colour folder tree gives."""
    from trainer.tagged_world import PLACE_NAMES, THING_NAMES

    rng = np.random.default_rng(seed)
    places, things = list(PLACE_NAMES.values()), list(THING_NAMES.values())
    colours = ["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
    year_names = ["2019", "2020", "2021", "2022"] if years else [""]
    words = places + things + colours + year_names
    direction = {w: rng.normal(size=dim) for w in words}
    tags, vecs = [], []
    for _ in range(n):
        tag_set = (
            places[rng.integers(len(places))],
            things[rng.integers(len(things))],
            colours[rng.integers(len(colours))],
            year_names[rng.integers(len(year_names))],
        )
        tags.append(tuple(t.lower() for t in tag_set if t))
        vecs.append(sum(direction[w] for w in tag_set) + 1.5 * rng.normal(size=dim))
    vecs = np.array(vecs, np.float32)
    return tags, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def bench_finetune_speed(photos: int, text_model: str, epochs: int | None, years: bool = False) -> dict:
    t0 = time.perf_counter()
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use)

    from core.embedder import Embedder
    from trainer.finetune import FinetuneConfig, iter_anchor_texts, iter_train_adapter
    from trainer.finetune_data import iter_prepare

    imports = time.perf_counter() - t0
    embedder = Embedder.from_spec(text_model, device="cpu")
    tags, image = synthetic_tagged(photos, embedder.dim, years=years)
    config = FinetuneConfig(general_scenes=0)
    if epochs:
        config.epochs = epochs
    phases: dict[str, float] = {}
    start = time.perf_counter()
    anchors = drive(iter_anchor_texts(embedder, config.anchors))  # cached after the first run
    phases["everyday captions"] = time.perf_counter() - start
    mark = time.perf_counter()
    data = drive(iter_prepare(tags, image, embedder.encode_texts, config))
    phases["captions + relevance"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _adapter, report = drive(iter_train_adapter(data, config, None, anchors))
    phases["levels + training + blend + report"] = time.perf_counter() - mark
    total = time.perf_counter() - start
    h = report["heldout"]
    return {
        "photos": photos,
        "tag_sets": len(data.tag_sets),
        "captions": len(data.caption_texts) + config.anchors,
        "text_model": text_model,
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "imports_s": imports,
        "phases_s": phases,
        "finetune_s": total,
        "heldout_R@1": (h["base"]["R@1"], h["finetuned"]["R@1"]),
        "heldout_CS": (h["base"]["CS"], h["finetuned"]["CS"]),
    }


def bench_apply_speed(count: int, dim: int, repeats: int) -> dict:
    """Switch a library of ``count`` photos to an adapter profile; the model is loaded first."""
    import tempfile

    from core.adapters import Adapter, ResidualMLP
    from core.catalog import Catalog, PhotoEntry
    from core.embedder import Embedder
    from core.index import VectorIndex
    from core.library import Library
    from core.vectors import VectorStore

    spec = "random:ViT-B-32"
    embedder = Embedder.from_spec(spec, device="cpu")
    assert embedder.dim == dim, f"{spec} makes {embedder.dim}-d vectors"
    times: list[float] = []
    saved: list[float] = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        root = Path(tmp) / "lib"
        rng = np.random.default_rng(0)
        vecs = rng.normal(size=(count, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        hashes = [f"{i:032x}" for i in range(count)]
        with Catalog(root / "catalog.sqlite") as catalog:
            folder = catalog.add_folder(Path(tmp) / "photos")
            catalog.upsert_photos(
                folder.id, (PhotoEntry(f"{tmp}/photos/{i}.jpg", 1, 1, h) for i, h in enumerate(hashes))
            )
            store = VectorStore(catalog, root / "vectors", embedder.identity, dim)
            store.put(hashes, vecs)
            ids, matrix = store.photo_matrix()
            index = VectorIndex(dim, exact_threshold=count + 1)
            index.add(ids, matrix)
            index.save(root / "index" / f"{embedder.identity.key}.idx")
        side = lambda s: ResidualMLP(  # noqa: E731
            *(
                np.random.default_rng(s).normal(0, 0.05, shape)
                for shape in ((128, dim), (128,), (dim, 128), (dim,))
            )
        )
        with Library.open(root, model=spec) as lib:
            lib.embedder()
            lib.search("warm up", k=10)
            for r in range(repeats):
                lib.profile_store.save_adapter(
                    f"p{r}", Adapter(side(r), side(r + 50)), lib.embedder().identity, spec
                )
                start = time.perf_counter()
                lib.use_profile(f"p{r}")
                times.append(time.perf_counter() - start)
                lib._wait_for_saves()  # the profile's index file, written in the background
                saved.append(time.perf_counter() - start)
                lib.use_profile(None)
            start = time.perf_counter()
            lib.use_profile("p0")  # vectors and index already there: the switch itself
            again = time.perf_counter() - start
            lib.search("a red car", k=10)
    return {
        "vectors": count,
        "apply_s": times,
        "apply_median_s": statistics.median(times),
        "on_disk_median_s": statistics.median(saved),
        "switch_again_s": again,
    }


def cmd_speed(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"machine": _machine()}
    if args.photos:
        result["finetune"] = bench_finetune_speed(args.photos, args.text_model, args.epochs, args.years)
    if args.apply:
        result["apply"] = bench_apply_speed(args.apply, 512, args.repeats)
    print(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------------------ quality


def default_model() -> str:
    from core.models import starter_weights_path

    if starter_weights_path().is_file():
        return "starter"
    fallback = OUT / "base2.safetensors"
    if fallback.is_file():
        return f"file:{fallback}#ladderlens-starter"
    raise SystemExit(
        "no base model: train the starter (python -m trainer train --preset starter) or a weak one:\n"
        "  python -m trainer train --loss infonce --time-budget 12m --lr 2e-3 --batch-size 64 "
        "--scenes 8000 --export benchmarks/out/finetune/base.safetensors"
    )


def prepare_library(model: str, photos: int, size: int, seed: int):
    """The tagged tree and a library indexed with the base model (made once, kept in OUT)."""
    from core.library import Library
    from trainer.tagged_world import write_tagged_tree

    tree = OUT / f"tree-n{photos}-s{seed}-{size}px"
    manifest = tree / "manifest.json"
    if not manifest.is_file():
        written = write_tagged_tree(tree, photos, seed=seed, size=(size, size), split="test")
        manifest.write_text(
            json.dumps([[str(w.path), w.scene.attributes(), w.scene.seed] for w in written]), encoding="utf-8"
        )
    scenes = {path: attrs for path, attrs, _seed in json.loads(manifest.read_text(encoding="utf-8"))}
    lib = Library.open(OUT / f"lib-{tree.name}", model=model)
    lib.add_folder(tree)
    started = time.perf_counter()
    report = lib.index()
    print(f"indexed {report.embedded} new photos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return lib, tree, scenes


def scene_truth(pool, data, items, scenes) -> np.ndarray:
    """Relevance of the pool's queries to its photos from the scene world's attributes alone."""
    from trainer.scenes import relevance_matrix
    from trainer.tagged_world import PLACE_NAMES, THING_NAMES

    attribute = {v.lower(): ("setting", k) for k, v in PLACE_NAMES.items()}
    attribute.update({v.lower(): ("kind", k) for k, v in THING_NAMES.items()})
    queries = []
    for c in pool.queries:
        named = [attribute.get(tag, ("colour", tag)) for tag in data.caption_sets[c]]
        queries.append(dict(named))
    photo_scenes = []
    from trainer.scenes import Scene

    for i in pool.items:
        attrs = scenes[items[i].path]
        photo_scenes.append(Scene(**attrs))
    return relevance_matrix(queries, photo_scenes)


def cmd_quality(args: argparse.Namespace) -> None:
    from trainer.finetune import FinetuneConfig, iter_anchor_texts, iter_train_adapter
    from trainer.finetune_data import iter_collect, iter_prepare
    from trainer.finetune_eval import iter_general_set, pool_metrics

    OUT.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model()
    lib, tree, scenes = prepare_library(model, args.photos, args.size, args.tree_seed)
    embedder = lib.embedder()
    collection = drive(iter_collect(lib, tree))
    items = collection.items
    image = lib.vectors().get([i.content_hash for i in items])
    general = drive(iter_general_set(embedder, args.general, OUT / "general"))
    anchors = drive(iter_anchor_texts(embedder, 512, OUT / "general"))
    rows = []
    for seed in args.seeds:
        for loss in args.losses:
            config = FinetuneConfig(
                loss=loss, seed=seed, epochs=args.epochs, general_scenes=0, preserve=args.preserve
            )
            if args.batch_size:
                config.batch_size = args.batch_size
            started = time.perf_counter()
            data = drive(iter_prepare([i.tags for i in items], image, embedder.encode_texts, config))
            adapter, report = drive(iter_train_adapter(data, config, general, anchors))
            elapsed = time.perf_counter() - started
            test = data.pools["test"]
            truth = scene_truth(test, data, items, scenes)
            truth_gt = truth >= 1.0 - 1e-6
            qv = data.query_vecs[test.queries]
            iv = data.image[test.items]
            base_truth = pool_metrics(iv, qv, truth, truth_gt, config.cs_k)
            tuned_truth = pool_metrics(
                adapter.apply_image(iv), adapter.apply_text(qv), truth, truth_gt, config.cs_k
            )
            row = {
                "seed": seed,
                "loss": loss,
                "seconds": elapsed,
                "epochs": report["epochs_run"],
                "blend": report["blend"],
                "heldout": report["heldout"],
                "heldout_tags": report.get("heldout_tags"),
                "heldout_sets": report.get("heldout_sets"),
                "heldout_scene_truth": {"base": base_truth, "finetuned": tuned_truth},
                "general": report.get("general"),
            }
            rows.append(row)
            h = report["heldout"]
            print(
                f"seed {seed} {loss:10} R@1 {h['base']['R@1']:.3f}->{h['finetuned']['R@1']:.3f} "
                f"R@10 {h['base']['R@10']:.3f}->{h['finetuned']['R@10']:.3f} "
                f"CS {h['base']['CS']:.3f}->{h['finetuned']['CS']:.3f} "
                f"CS(scene) {base_truth['CS']:.3f}->{tuned_truth['CS']:.3f} blend {report['blend']} "
                f"({elapsed:.0f} s)",
                file=sys.stderr,
            )
    lib.close()
    summary = summarise(rows)
    result = {
        "machine": _machine(),
        "model": model,
        "photos": len(items),
        "tree": str(tree),
        "split": rows[0]["heldout"]["base"]["photos"] if rows else None,
        "summary": summary,
        "runs": rows,
    }
    out = OUT / f"quality-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    print(format_summary(summary, model, len(items)))
    print(f"(all numbers: {out})")


METRICS = ("R@1", "R@5", "R@10", "CS", "nDCG@10")


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every metric, per loss and per part."""
    out: dict = {}
    for part in ("heldout", "heldout_tags", "heldout_sets", "heldout_scene_truth", "general"):
        out[part] = {}
        for loss in dict.fromkeys(r["loss"] for r in rows):
            mine = [r for r in rows if r["loss"] == loss and r.get(part)]
            if not mine:
                continue
            for label in ("base", "finetuned"):
                key = "base" if label == "base" else loss
                stats = {}
                for m in METRICS:
                    values = [r[part][label][m] for r in mine if math.isfinite(r[part][label][m])]
                    stats[m] = (
                        (statistics.mean(values), statistics.pstdev(values)) if values else (math.nan, 0)
                    )
                out[part][key] = stats
    return out


def format_summary(summary: dict, model: str, photos: int) -> str:
    lines = [f"base model {model}; {photos} tagged photos; mean (std) over seeds"]
    titles = {
        "heldout": "held-out photos, all queries, tag relevance",
        "heldout_tags": "held-out photos, one-tag queries",
        "heldout_sets": "held-out photos, tag-set queries",
        "heldout_scene_truth": "held-out photos, all queries, scene-world relevance",
        "general": "general scene world (cost)",
    }
    for part, title in titles.items():
        if not summary.get(part):
            continue
        lines.append(f"\n{title}")
        lines.append(f"{'':12}" + "".join(f"{m:>16}" for m in METRICS))
        for name, stats in summary[part].items():
            lines.append(f"{name:12}" + "".join(f"{stats[m][0]:9.3f} ({stats[m][1]:.3f})" for m in METRICS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--photos", type=int, default=10000)
    p.add_argument("--apply", type=int, default=100000)
    p.add_argument("--text-model", default="random:ViT-B-32")
    p.add_argument("--epochs", type=int, default=None, help="default: the fine-tune default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--years", action="store_true", help="a year level too: 960 tag sets instead of 240")
    p = sub.add_parser("quality")
    p.add_argument("--model", default=None)
    p.add_argument("--photos", type=int, default=1500)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--tree-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--losses", nargs="+", default=["infonce+adaptive", "infonce+triplet", "adaptive", "triplet"]
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--general", type=int, default=500)
    p.add_argument("--preserve", type=float, default=1.0, help="weight of keeping everyday captions' scores")
    args = parser.parse_args(argv)
    {"speed": cmd_speed, "quality": cmd_quality}[args.command](args)


if __name__ == "__main__":
    main()
