"""Triplet vs InfoNCE vs ladder (L=2, L=3) vs adaptive ladder on the scene world, several seeds.

    python benchmarks/compare_losses.py                       # warm start + 5 losses x 3 seeds
    python benchmarks/compare_losses.py --warm-start runs/starter/phase-1.safetensors --steps 120 \
        --losses triplet,infonce,ladder2,ladder3,adaptive,infonce+adaptive --threads 1
    python benchmarks/compare_losses.py --protocol whole --steps 1000 --eval-every 100 --jobs 2 \
        --losses "infonce,softnce,infonce+ladder3,infonce+adaptive,infonce+adaptive-ref"

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

Whole runs (``--protocol whole``): every loss trains the model from random weights with the
starter's recipe (peak lr 2e-3, 3% warm-up then cosine, counterfactual twins in every batch) for
the same number of steps, once per seed (the seed changes the initial weights too), validating
every ``--eval-every`` steps. Since a loss can trade recall for coherence, the runs are compared
twice: at their end, and at matched R@1, where each run's CS@100 and CS@N are read off its own
validation curve (linear interpolation) at the first point its t2i R@1 reaches the target. The
target is the highest R@1 that every run reaches (or ``--match-r1``).

Results go to ``benchmarks/out/compare_losses[-whole].{json,md}`` (and the console).
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
COLLAPSED_R1 = 0.2  # a whole run whose t2i R@1 never passes this learned nothing to compare
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


def train_whole(args, out: Path, loss: str, seed: int) -> dict:
    """One whole run from random weights; its summary holds the final metrics and the curve."""
    from trainer.train import train

    run_dir = out / f"{_slug(loss)}-seed{seed}"
    summary = run_dir / "summary.json"
    if summary.is_file() and not args.fresh:
        return json.loads(summary.read_text())
    config = _config(
        args, loss=loss, steps=args.steps, lr=args.lr, warmup=0.03, seed=seed, twins=True,
        out_dir=str(run_dir), eval_every=args.eval_every, select_metric="step", overwrite=True,
    )  # fmt: skip
    started = time.monotonic()
    monitor = CollapseMonitor(args.eval_every)
    result = train(config, on_progress=monitor)
    keys = ("step", "test/t2i_R@1", "test/t2i_CS@100", f"test/t2i_CS@{args.val_scenes}", "heldout/t2i_CS@100")
    record = {
        "loss": loss,
        "seed": seed,
        "final": dict(result.final_metrics),
        "curve": [{k: e[k] for k in keys if k in e} for e in result.history["evaluations"]],
        "monitor": monitor.windows,
        "seconds": round(time.monotonic() - started, 1),
    }
    summary.write_text(json.dumps(record, indent=1))
    if not args.keep_weights:
        for name in ("checkpoint-last.pt", "best.safetensors", "model.safetensors"):
            (run_dir / name).unlink(missing_ok=True)
    return record


class CollapseMonitor:
    """Training progress callback: the loss and each ladder boundary's active share and mean
    violation (the ``stat_`` terms of ``trainer.losses``), averaged over windows of ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self.windows: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def __call__(self, record) -> None:
        if record.kind != "step" or record.loss is None:
            return
        values = {"loss": float(record.loss)}
        values.update({k: float(v) for k, v in record.terms.items() if "stat_" in k})
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1
        if record.step % self.every == 0:
            window = {k: v / self._count for k, v in self._sums.items()}
            self.windows.append({"step": float(record.step), **window})
            self._sums, self._count = {}, 0


def monitor_table(records: dict[str, list[dict]]) -> str:
    """Per ladder loss and validation window: mean over seeds of each boundary's active share and
    mean violation (active share 1 with a steady violation: that boundary is not being learned)."""
    lines = [
        "| loss | steps | loss value | active share by boundary | mean violation by boundary |",
        "|---|---|---|---|---|",
    ]
    for loss, runs in records.items():
        monitored = [r["monitor"] for r in runs if r.get("monitor")]
        if not monitored or not any(k.endswith("stat_active_0") for k in monitored[0][0]):
            continue
        for i in range(min(len(m) for m in monitored)):
            windows = [m[i] for m in monitored]
            active = sorted(k for k in windows[0] if "stat_active_" in k)
            violation = sorted(k for k in windows[0] if "stat_violation_" in k)

            def mean(key: str, windows=windows) -> float:
                return float(np.mean([w.get(key, float("nan")) for w in windows]))

            lines.append(
                f"| {loss} | {int(windows[0]['step'])} | {mean('loss'):.3f} | "
                + " / ".join(f"{mean(k):.2f}" for k in active)
                + " | "
                + " / ".join(f"{mean(k):.3f}" for k in violation)
                + " |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def _slug(loss: str) -> str:
    return "".join(c if c.isalnum() or c in "+-." else "_" for c in loss.replace(" ", ""))


def at_matched_recall(curve: list[dict[str, float]], target: float, key: str) -> float | None:
    """``key`` where the curve's t2i R@1 first reaches ``target`` (linear between validations)."""
    previous = None
    for point in curve:
        recall = point["test/t2i_R@1"]
        if recall >= target:
            if previous is None or recall == previous["test/t2i_R@1"]:
                return point[key]
            t = (target - previous["test/t2i_R@1"]) / (recall - previous["test/t2i_R@1"])
            return previous[key] + t * (point[key] - previous[key])
        previous = point
    return None


def _mean_std(values: np.ndarray, digits: int) -> str:
    """A table cell: "-" for no runs, the value of one, mean ± sample std of several."""
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def whole_table(records: dict[str, list[dict]], target: float, pool_size: int) -> str:
    columns = (
        ("final t2i R@1", "final", "test/t2i_R@1"),
        ("final CS@100", "final", "test/t2i_CS@100"),
        ("final CS@N", "final", f"test/t2i_CS@{pool_size}"),
        ("final held-out CS@100", "final", "heldout/t2i_CS@100"),
        (f"CS@100 at R@1 {target:.3f}", "matched", "test/t2i_CS@100"),
        (f"CS@N at R@1 {target:.3f}", "matched", f"test/t2i_CS@{pool_size}"),
        ("step at match", "matched", "step"),
    )
    lines = [
        "| loss | runs | " + " | ".join(name for name, _, _ in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for loss, runs in records.items():
        cells = []
        for _, where, key in columns:
            if where == "final":
                values = [r["final"].get(key) for r in runs]
            else:
                values = [at_matched_recall(r["curve"], target, key) for r in runs]
            values = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
            cells.append(_mean_std(values, 0 if key == "step" else 3))
            if where == "matched" and values.size < len(runs):
                cells[-1] += f" ({len(runs) - values.size} never reached)"
        lines.append(f"| {loss} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_whole(args, losses: list[str], out: Path) -> int:
    started = time.monotonic()
    jobs = [(loss, seed) for seed in range(args.seeds) for loss in losses]
    records: dict[str, list[dict]] = {loss: [] for loss in losses}
    if args.jobs > 1:
        # One process per run: each trains on its own thread(s), so two cores hold two runs.
        context = __import__("multiprocessing").get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(train_whole, args, out, loss, seed): loss for loss, seed in jobs}
            for future in concurrent.futures.as_completed(futures):
                record = future.result()
                records[futures[future]].append(record)
                logger.warning("%s seed %d: %.0f s", record["loss"], record["seed"], record["seconds"])
    else:
        for loss, seed in jobs:
            record = train_whole(args, out, loss, seed)
            records[loss].append(record)
            logger.warning("%s seed %d: %.0f s", loss, seed, record["seconds"])
    for runs in records.values():
        runs.sort(key=lambda r: r["seed"])
    reached = [max(p["test/t2i_R@1"] for p in r["curve"]) for runs in records.values() for r in runs]
    healthy = [r for r in reached if r >= COLLAPSED_R1] or reached
    target = args.match_r1 if args.match_r1 is not None else min(healthy)
    collapsed = {
        loss: sum(max(p["test/t2i_R@1"] for p in r["curve"]) < COLLAPSED_R1 for r in runs)
        for loss, runs in records.items()
    }
    md = whole_table(records, target, args.val_scenes)
    monitor = monitor_table(records)
    if monitor:
        md += "\n\nCollapse monitor (mean over the seeds whose runs logged it):\n\n" + monitor
    protocol = (
        f"Whole runs from random weights: {args.steps} steps each (batch {args.batch_size}, peak lr "
        f"{args.lr:g}, 3% warm-up then cosine, counterfactual twins), validated every {args.eval_every} "
        f"steps, {args.seeds} seeds; test pool of {args.val_scenes} held-out-seed scenes with full "
        f"captions, held-out pool of {args.heldout_scenes} scenes. Matched R@1 = {target:.3f}, the "
        f"highest every run reached, leaving out collapsed runs (R@1 never above {COLLAPSED_R1}: "
        f"{', '.join(f'{k} {v} of {len(records[k])}' for k, v in collapsed.items() if v) or 'none'}). "
        f"Total {time.monotonic() - started:.0f} s with {args.jobs} job(s)."
    )
    (out.parent / f"{out.name}.md").write_text(f"{protocol}\n\n{md}\n")
    (out.parent / f"{out.name}.json").write_text(
        json.dumps({"protocol": protocol, "matched_r1": target, "runs": records}, indent=1)
    )
    print(protocol)
    print(md)
    return 0


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
            cells.append(_mean_std(values, 3))
        lines.append(f"| {loss} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated (default: all five)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--protocol", choices=("warm", "whole"), default="warm",
        help="fine-tune one warm start (default) or train every run from random weights",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="steps per run (150 warm, 1000 whole)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (2e-4 warm, 2e-3 whole)")
    parser.add_argument("--eval-every", type=int, default=100, help="whole runs: steps between validations")
    parser.add_argument("--match-r1", type=float, default=None, help="whole runs: R@1 to compare CS at")
    parser.add_argument("--jobs", type=int, default=1, help="whole runs: runs trained at once (processes)")
    parser.add_argument("--warm-start", metavar="SAFETENSORS", help="start every run from these weights")
    parser.add_argument("--warm-steps", type=int, default=1500, help="InfoNCE steps of a fresh warm start")
    parser.add_argument("--warm-lr", type=float, default=2e-3)
    parser.add_argument("--arch", default="ladderlens-starter")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--scenes", type=int, default=24000)
    parser.add_argument("--val-scenes", type=int, default=1000)
    parser.add_argument("--heldout-scenes", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="run folder (default: benchmarks/out/compare_losses...)")
    parser.add_argument("--fresh", action="store_true", help="ignore finished runs in --out")
    parser.add_argument("--keep-weights", action="store_true", help="keep each run's checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from trainer.objectives import parse_objective
    from trainer.schedule import parse_phases

    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    for name in losses:
        for phase in parse_phases(name):
            parse_objective(phase.loss)
    whole = args.protocol == "whole"
    if args.steps is None:
        args.steps = 1000 if whole else 150
    if args.lr is None:
        args.lr = 2e-3 if whole else 2e-4
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    default_out = "compare_losses-whole" if whole else "compare_losses"
    out = Path(args.out or ROOT / "benchmarks" / "out" / default_out)
    out.mkdir(parents=True, exist_ok=True)
    if whole:
        return run_whole(args, losses, out)
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
