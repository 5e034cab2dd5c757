"""Triplet vs InfoNCE vs ladder (L=2, L=3) vs adaptive ladder on the scene world, several seeds.

    python benchmarks/compare_losses.py                       # warm start + 5 losses x 3 seeds
    python benchmarks/compare_losses.py --warm-start runs/starter/phase-1.safetensors --steps 120 \
        --losses triplet,infonce,ladder2,ladder3,adaptive,infonce+adaptive --threads 1

``--losses`` takes any objective spec of ``trainer.objectives`` (sums such as
``infonce+adaptive`` too). Finished runs in ``--out`` are reused (``--fresh`` redoes them).

Protocol (the papers fine-tune their ladder losses on top of pretrained features, and a
hardest-negative triplet loss collapses when trained from random weights):

1. Warm start: one model trained with InfoNCE alone from scratch (``--warm-steps``), or an
   existing checkpoint given with ``--warm-start`` (the starter recipe saves the weights it
   reaches at the end of its InfoNCE phase as ``phase-1.safetensors``).
2. Every loss fine-tunes that same checkpoint for the same number of steps, batch size,
   learning-rate schedule and data, once per seed (the seed changes the batch order, the
   captions drawn and the augmentation; the scenes and validation pools stay fixed).
3. Each run is evaluated at its end on the held-out-seed test pool (full captions): R@1/5/10
   both directions (a hit is a scene matching every attribute of the caption), CS@100,
   CS@N over the whole pool (N = pool size), nDCG@20 and mean rank, plus CS@100 on held-out
   compositions. The table shows mean +- std over seeds; the warm start alone is the first row.

Results go to ``benchmarks/out/compare_losses.{json,md}`` (and the console).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("compare_losses")

LOSSES = ("triplet", "infonce", "ladder2", "ladder3", "adaptive")
COLUMNS = (
    ("t2i R@1", "test/t2i_R@1"),
    ("t2i R@5", "test/t2i_R@5"),
    ("t2i R@10", "test/t2i_R@10"),
    ("i2t R@1", "test/i2t_R@1"),
    ("i2t R@5", "test/i2t_R@5"),
    ("i2t R@10", "test/i2t_R@10"),
    ("CS@100", "test/t2i_CS@100"),
    ("CS@N", "test/t2i_CS@{n}"),
    ("nDCG@20", "test/t2i_nDCG@20"),
    ("mean rank", "test/t2i_mean_rank"),
    ("held-out CS@100", "heldout/t2i_CS@100"),
)


def _config(args, **overrides):
    from trainer.train import TrainConfig

    values = dict(
        arch=args.arch,
        batch_size=args.batch_size,
        train_scenes=args.scenes,
        val_scenes=args.val_scenes,
        heldout_scenes=args.heldout_scenes,
        threads=args.threads,
        progress_bar=False,
        select_metric="score",
    )
    values.update(overrides)
    return TrainConfig(**values)


def warm_start(args, out: Path) -> Path:
    """Train (or reuse) the shared contrastive starting point."""
    from trainer.train import train

    if args.warm_start:
        return Path(args.warm_start)
    path = out / "warm-start" / "model.safetensors"
    if path.is_file() and not args.fresh:
        return path
    logger.warning("training the warm start: InfoNCE from scratch, %d steps", args.warm_steps)
    config = _config(
        args, loss="infonce", steps=args.warm_steps, lr=args.warm_lr, warmup=0.05, seed=1000,
        out_dir=str(out / "warm-start"), eval_every=args.warm_steps, overwrite=True,
    )  # fmt: skip
    # Export the last weights, not the best: every loss must start from the same known point.
    config.select_metric = "step"
    result = train(config)
    return result.export_path


def fine_tune(args, out: Path, warm: Path, loss: str, seed: int) -> dict[str, float]:
    from trainer.train import train

    run_dir = out / f"{loss}-seed{seed}"
    summary = run_dir / "summary.json"
    if summary.is_file() and not args.fresh:
        return json.loads(summary.read_text())
    config = _config(
        args, loss=loss, init=str(warm), steps=args.steps, lr=args.lr, warmup=0.05, seed=seed,
        out_dir=str(run_dir), eval_every=args.steps, select_metric="step", overwrite=True,
    )  # fmt: skip
    started = time.monotonic()
    result = train(config)
    metrics = dict(result.final_metrics)
    metrics["seconds"] = round(time.monotonic() - started, 1)
    summary.write_text(json.dumps(metrics, indent=1))
    if not args.keep_weights:  # about 125 MB a run
        for name in ("checkpoint-last.pt", "best.safetensors", "model.safetensors"):
            (run_dir / name).unlink(missing_ok=True)
    return metrics


def evaluate_warm(args, out: Path, warm: Path) -> dict[str, float]:
    """Metrics of the warm start itself (a zero-step fine-tune would cost a training setup)."""
    import open_clip
    import torch

    from core.models import load_model
    from trainer.data import ImageNormalizer, SceneSetSpec, build_eval_set, load_scene_set
    from trainer.train import evaluate

    summary = out / "warm-start" / "summary.json"
    if summary.is_file() and not args.fresh:
        return json.loads(summary.read_text())
    loaded = load_model(f"file:{warm}#{args.arch}", device="cpu")
    size = loaded.model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else int(size)
    cfg = open_clip.get_model_preprocess_cfg(loaded.model)
    normalizer = ImageNormalizer(cfg.get("mean"), cfg.get("std"))
    pools = [
        build_eval_set(
            "test", load_scene_set(SceneSetSpec("test", args.val_scenes, 0, size)), loaded.tokenizer, 0
        ),
        build_eval_set(
            "heldout",
            load_scene_set(SceneSetSpec("heldout", args.heldout_scenes, 0, size)),
            loaded.tokenizer,
            0,
        ),
    ]
    with torch.no_grad():
        metrics = evaluate(loaded.model, pools, normalizer, torch.device("cpu"))
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(metrics, indent=1))
    return metrics


def table(rows: dict[str, list[dict[str, float]]], pool_size: int) -> str:
    head = "| loss | runs | " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for loss, runs in rows.items():
        cells = []
        for _, key in COLUMNS:
            key = key.format(n=pool_size)
            values = np.array([r[key] for r in runs if key in r and math.isfinite(r[key])])
            if values.size == 0:
                cells.append("-")
            elif values.size == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}")
        lines.append(f"| {loss} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated (default: all five)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps per run")
    parser.add_argument("--lr", type=float, default=2e-4, help="fine-tuning peak learning rate")
    parser.add_argument("--warm-start", metavar="SAFETENSORS", help="start every run from these weights")
    parser.add_argument("--warm-steps", type=int, default=1500, help="InfoNCE steps of a fresh warm start")
    parser.add_argument("--warm-lr", type=float, default=2e-3)
    parser.add_argument("--arch", default="ladderlens-starter")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--scenes", type=int, default=24000)
    parser.add_argument("--val-scenes", type=int, default=1000)
    parser.add_argument("--heldout-scenes", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "compare_losses"))
    parser.add_argument("--fresh", action="store_true", help="ignore finished runs in --out")
    parser.add_argument("--keep-weights", action="store_true", help="keep each run's checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from trainer.objectives import parse_objective

    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    for name in losses:
        parse_objective(name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    warm = warm_start(args, out)
    rows: dict[str, list[dict[str, float]]] = {"warm start (InfoNCE)": [evaluate_warm(args, out, warm)]}
    for loss in losses:
        rows[loss] = []
        for seed in range(args.seeds):
            t0 = time.monotonic()
            rows[loss].append(fine_tune(args, out, warm, loss, seed))
            logger.warning("%s seed %d: %.0f s", loss, seed, time.monotonic() - t0)
    md = table(rows, args.val_scenes)
    protocol = (
        f"Warm start {warm}; each loss fine-tunes it for {args.steps} steps (batch {args.batch_size}, "
        f"peak lr {args.lr:g}, 5% warm-up then cosine), {args.seeds} seeds; test pool of {args.val_scenes} "
        f"held-out-seed scenes with full captions, held-out pool of {args.heldout_scenes} scenes. "
        f"Total {time.monotonic() - started:.0f} s."
    )
    (out.parent / "compare_losses.md").write_text(f"{protocol}\n\n{md}\n")
    (out.parent / "compare_losses.json").write_text(
        json.dumps({"protocol": protocol, "runs": rows}, indent=1)
    )
    print(protocol)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
