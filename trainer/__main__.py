"""Command line of the trainer: ``python -m trainer train ...`` (also ``python main.py train ...``).

Examples::

    python -m trainer train --preset starter          # the bundled starter model (~2 h on 2 cores)
    python -m trainer train --loss infonce --epochs 3 --out runs/try
    python -m trainer train --out runs/try --resume   # go on from runs/try/checkpoint-last.pt
    torchrun --nproc_per_node 2 -m trainer train --device cpu --steps 200 --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.arguments import duration, finite_number, positive_int

logger = logging.getLogger("trainer")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

STARTER_EXPORT = (
    Path(__file__).resolve().parent.parent / "resources" / "models" / "ladderlens-starter.safetensors"
)

# Named recipes. Options given on the command line override them.
PRESETS: dict[str, dict[str, Any]] = {
    # The bundled starter model, from scratch on the scene world: a contrastive phase builds the
    # embedding (a ladder/triplet loss alone collapses from random weights), then the adaptive
    # ladder loss is added to order the near misses. Every batch holds counterfactual pairs (the
    # same scene with its count, colour or kind changed): without them the model could not tell
    # counts apart. About two hours on 2 CPU cores.
    "starter": {
        "arch": "ladderlens-starter",
        "loss": "infonce; 0.5: infonce+1*adaptive",
        "time_budget_s": 120 * 60,
        "batch_size": 128,
        "lr": 2e-3,
        "warmup": 0.03,
        "weight_decay": 0.1,
        "train_scenes": 24000,
        "twins": True,
        "val_scenes": 1000,
        "heldout_scenes": 500,
        "seed": 0,
        "out_dir": "runs/starter",
        "export": str(STARTER_EXPORT),
    },
    # A few seconds, for trying the pipeline end to end.
    "smoke": {
        "arch": "ladderlens-starter",
        "loss": "infonce",
        "steps": 20,
        "batch_size": 32,
        "train_scenes": 640,
        "val_scenes": 100,
        "heldout_scenes": 100,
        "out_dir": "runs/smoke",
    },
}


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` command's parser. Options not given stay absent (presets and resume fill them)."""
    p = argparse.ArgumentParser(
        prog="python -m trainer train",
        description="Train an open_clip model on the scene world with the ladder-loss family.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (options given override it)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="open_clip architecture (default: ladderlens-starter)")
    g.add_argument(
        "--model-config", dest="model_config", metavar="JSON", help="register this open_clip config first"
    )
    g.add_argument(
        "--init", metavar="PATH", help="start from these weights (.safetensors or a training checkpoint)"
    )
    g = p.add_argument_group("objective and schedule")
    g.add_argument(
        "--loss",
        metavar="SPEC",
        help="triplet | infonce | ladder2 | ladder3 | adaptive, sums like 'infonce+0.5*adaptive', "
        "phases like 'infonce; 0.5: infonce+1*adaptive' (default: infonce)",
    )
    g.add_argument("--steps", type=positive_int, help="optimisation steps")
    g.add_argument("--epochs", type=finite_number, help="passes over the training scenes")
    g.add_argument(
        "--time-budget",
        dest="time_budget_s",
        type=duration,
        metavar="DURATION",
        help="wall-clock budget (25m, 90s, 1.5h); alone, the schedule follows the clock",
    )
    g.add_argument(
        "--batch-size", dest="batch_size", type=positive_int, help="pairs per batch and process (128)"
    )
    g.add_argument("--lr", type=finite_number, help="peak learning rate (1e-3)")
    g.add_argument("--weight-decay", dest="weight_decay", type=finite_number, help="AdamW weight decay (0.1)")
    g.add_argument("--warmup", type=finite_number, help="warm-up fraction of the run (0.05)")
    g.add_argument("--min-lr-ratio", dest="min_lr_ratio", type=finite_number, help="final lr / peak lr (0)")
    g.add_argument(
        "--grad-clip", dest="grad_clip", type=finite_number, help="gradient norm clip, 0 = off (1.0)"
    )
    g.add_argument(
        "--init-logit-scale", dest="init_logit_scale", type=finite_number, help="start logit scale (model's)"
    )
    g.add_argument("--seed", type=int, help="training seed (0)")
    g = p.add_argument_group("data")
    g.add_argument("--scenes", dest="train_scenes", type=positive_int, help="training scenes (24000)")
    g.add_argument(
        "--val-scenes", dest="val_scenes", type=positive_int, help="held-out-seed test scenes (1000)"
    )
    g.add_argument(
        "--heldout-scenes",
        dest="heldout_scenes",
        type=positive_int,
        help="held-out composition scenes (500)",
    )
    g.add_argument("--scene-seed", dest="scene_seed", type=int, help="which scenes are drawn (0)")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="no mirroring or shifts")
    g.add_argument(
        "--twins",
        dest="twins",
        action="store_true",
        help="every batch holds counterfactual pairs: the same scene with one attribute changed",
    )
    g.add_argument(
        "--allow-ambiguous",
        dest="unambiguous",
        action="store_false",
        help="keep partial captions that fully match another scene of their batch",
    )
    g.add_argument(
        "--cache-dir", dest="cache_dir", metavar="DIR", help="rendered-scene cache (default: user cache)"
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", dest="out_dir", metavar="DIR", help="output folder (runs/train)")
    g.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="CHECKPOINT",
        help="go on from the last checkpoint in --out (or this file), with its settings",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="start a new run in an output folder that already holds one"
    )
    g.add_argument(
        "--export", metavar="PATH", help="where to write the best weights (<out>/model.safetensors)"
    )
    g.add_argument(
        "--eval-every", dest="eval_every", type=positive_int, help="steps between validations (an epoch)"
    )
    g.add_argument(
        "--select-metric", dest="select_metric", help="validation metric that picks the best (score)"
    )
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (auto)")
    g.add_argument("--threads", type=positive_int, help="CPU threads for torch (torch's default)")
    g.add_argument("--no-progress", dest="progress_bar", action="store_false", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("-v", "--verbose", action="count", help="more log output")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    return p


def config_from_args(args: argparse.Namespace):
    """TrainConfig from defaults <- preset <- resumed checkpoint's settings <- options given."""
    from trainer import checkpointing
    from trainer.train import TrainConfig

    given = {k: v for k, v in vars(args).items() if k not in ("preset", "resume", "json", "verbose", "quiet")}
    values: dict[str, Any] = TrainConfig().to_dict()
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    resume = getattr(args, "resume", False)
    if resume:
        out_dir = Path(given.get("out_dir", values["out_dir"]))
        path = Path(resume) if isinstance(resume, str) else out_dir / checkpointing.LAST_NAME
        values.update(checkpointing.load_training_state(path)["config"])
        values["out_dir"] = given.get("out_dir", str(path.parent))
    values.update(given)
    if "model_config" in given and "arch" not in given:
        values["arch"] = Path(given["model_config"]).stem  # open_clip names a config by its file
    if "steps" in given or "epochs" in given or "time_budget_s" in given:
        for key in ("steps", "epochs", "time_budget_s"):
            if key not in given and not resume:
                values[key] = None
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run the ``train`` command for parsed ``args``; returns the exit status."""
    from core.errors import LadderLensError
    from trainer.train import train

    _configure_logging(getattr(args, "verbose", 0) or 0, getattr(args, "quiet", False))
    try:
        config = _checked_config(args, argv)
    except ValueError as exc:
        return _error(exc, EXIT_USAGE)
    except LadderLensError as exc:
        return _error(exc, EXIT_ERROR)

    started = time.monotonic()
    try:
        result = train(config, resume=getattr(args, "resume", False), on_progress=_progress_logger(config))
    except ValueError as exc:
        return _error(exc, EXIT_USAGE)
    except LadderLensError as exc:
        return _error(exc, EXIT_ERROR)
    except KeyboardInterrupt:
        print(
            f"interrupted; the last checkpoint in {config.out_dir} is kept: add --resume to go on",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if _is_main_process():
        if result.export_path:
            write_vocabulary(Path(result.export_path))  # the words the model knows, for search
        _report(result, getattr(args, "json", False), time.monotonic() - started)
    return EXIT_OK


def _checked_config(args: argparse.Namespace, argv: Sequence[str] | None):
    """The run's validated TrainConfig, with the command line that started it."""
    from trainer.train import command_line

    config = config_from_args(args)
    config.command = "python -m trainer train " + command_line(list(argv or []))
    config.validate()
    return config


def _error(exc: Exception, status: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return status


def _progress_logger(config):
    """A progress callback that logs a step every 30 s when no progress bar shows, and the
    preparation's messages."""
    from trainer.train import TrainProgress

    last_log = [0.0]

    def on_progress(record: TrainProgress) -> None:
        if record.kind == "step" and (not config.progress_bar or not sys.stderr.isatty()):
            now = time.monotonic()
            if now - last_log[0] >= 30 or record.step == 1:
                last_log[0] = now
                total = f"/{record.total_steps}" if record.total_steps else ""
                logger.info(
                    "step %d%s epoch %d loss %.4f lr %.2e progress %.0f%% elapsed %.0fs",
                    record.step,
                    total,
                    record.epoch,
                    record.loss or float("nan"),
                    record.lr or 0.0,
                    100 * record.progress,
                    record.elapsed_s,
                )
        elif record.kind == "prepare":
            logger.info("%s", record.message)

    return on_progress


def _report(result, as_json: bool, wall_s: float) -> None:
    if as_json:
        payload = {
            "out_dir": str(result.out_dir),
            "steps": result.steps,
            "epochs": round(result.epochs_done, 3),
            "elapsed_s": round(wall_s, 1),
            "stopped": result.stopped,
            "export": str(result.export_path) if result.export_path else None,
            "plot": str(result.plot_path) if result.plot_path else None,
            "best_metrics": result.best_metrics,
        }
        print(json.dumps(payload, indent=1, sort_keys=True))
        return
    m = result.best_metrics
    print(
        f"trained {result.steps} steps ({result.epochs_done:.2f} epochs) "
        f"in {wall_s / 60:.1f} min: {result.stopped}"
    )
    if m:
        print(f"best at step {int(m.get('step', 0))} (score {m.get('score', float('nan')):.3f}):")
        for pool in ("test", "heldout"):
            cells = []
            for key in (
                "t2i_R@1",
                "t2i_R@5",
                "t2i_R@10",
                "i2t_R@1",
                "i2t_R@5",
                "i2t_R@10",
                "t2i_CS@100",
                "t2i_nDCG@20",
            ):
                value = m.get(f"{pool}/{key}")
                if value is not None:
                    cells.append(f"{key}={value:.3f}")
            if cells:
                print(f"  {pool:8s} " + " ".join(cells))
    if result.export_path:
        print(f"weights: {result.export_path}")
        print(f"vocabulary: {Path(result.export_path).with_suffix('.vocab.json')}")
    if result.plot_path:
        print(f"plot:    {result.plot_path}")


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _configure_logging(verbosity: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbosity >= 1 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def write_vocabulary(weights: Path) -> Path:
    """Write the scene world's caption vocabulary beside a model's weights (``<stem>.vocab.json``)."""
    from trainer.captions import caption_vocabulary, class_values

    path = weights.with_name(weights.stem + ".vocab.json")
    record = {
        "words": caption_vocabulary(),
        "values": class_values(),
        "made_by": "python -m trainer vocabulary " + weights.name,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``argv`` are the ``train`` options (a leading ``train`` word is accepted).

    ``vocabulary WEIGHTS`` writes the captions' vocabulary beside a scene-world model's weights
    (training does it for its export).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["vocabulary"]:
        if len(argv) != 2:
            print("usage: python -m trainer vocabulary WEIGHTS.safetensors", file=sys.stderr)
            return EXIT_USAGE
        print(f"written: {write_vocabulary(Path(argv[1]))}")
        return EXIT_OK
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    return run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
