"""LadderLens entry point: the desktop app by default, sub-commands for headless use.

python main.py                         open the app
python main.py index ~/Pictures        add a folder and index it
python main.py search "red car at night" [--json]
python main.py status
python main.py demo                    render the demo library, index it, show searches
python main.py train ...               train a model on the scene world
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("ladderlens")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _common_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="library folder (default: $LADDERLENS_HOME or the per-user data folder)",
    )
    common.add_argument(
        "--model",
        metavar="SPEC",
        default=argparse.SUPPRESS,
        help="model: 'starter', 'openclip:ARCH/TAG' or 'file:PATH[#ARCH]' (default: the library's model)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (repeatable)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="ladderlens",
        description="Search a personal photo library by describing it.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", parents=[common], help="add folders to the library and index them")
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="folders to add (default: re-scan all)")
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip folders matching GLOB"
    )
    p.add_argument("--workers", type=_positive_int, default=None, help="decode threads (default: CPU count)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="images per model batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("search", parents=[common], help="search the library")
    p.add_argument(
        "query",
        nargs="?",
        default="",
        help='free text; combine with + and -: \'"beach" - "people"\'',
    )
    p.add_argument("--image", metavar="PATH", help="more like this photo (combined with the text, if any)")
    p.add_argument("-k", type=_positive_int, default=50, help="how many results (default 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("status", parents=[common], help="folders, counts, model, failures")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--failures", action="store_true", help="list every file that failed and why")

    p = sub.add_parser("remove", parents=[common], help="forget folders (files stay on disk)")
    p.add_argument("folders", nargs="+", metavar="FOLDER")

    p = sub.add_parser("demo", parents=[common], help="render the demo library, index it and show searches")
    p.add_argument("--out", metavar="DIR", help="where to write the demo photos (default: in the library)")
    p.add_argument("--count", type=_positive_int, default=400, help="number of photos (default 400)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    sub.add_parser(
        "train", parents=[common], help="train a model on the scene world (see: train --help)", add_help=False
    )
    sub.add_parser("gui", parents=[common], help="open the desktop app (the default)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _library(args: argparse.Namespace, model: str | None = None):
    from core.library import Library

    return Library.open(getattr(args, "library", None), model=model or getattr(args, "model", None))


def _progress_printer(enabled: bool):
    """A callback drawing indexing progress: a bar on a terminal, nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=None, unit="photo", dynamic_ncols=True, file=sys.stderr)

    def update(p) -> None:
        if p.phase == "scan":
            bar.set_description(f"scanning ({p.done} files)")
            return
        if p.total is not None and bar.total != p.total:
            bar.reset(total=p.total)
        bar.set_description("indexing" if p.phase == "embed" else p.phase)
        bar.n = p.done
        bar.set_postfix(new=p.new, reused=p.reused, failed=p.failed, refresh=False)
        bar.refresh()

    return update, bar.close


def cmd_index(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        for folder in args.folders:
            status = lib.add_folder(folder, excludes=args.exclude)
            print(f"folder: {status.path}")
        if not lib.folders():
            print("The library has no folders yet: python main.py index FOLDER", file=sys.stderr)
            return EXIT_USAGE
        update, close = _progress_printer(not args.no_progress)
        try:
            report = lib.index(on_progress=update, workers=args.workers, batch_size=args.batch_size)
        finally:
            close()
        print(
            f"{report.scanned} photos found: {report.embedded} embedded, {report.reused} reused, "
            f"{report.unchanged} unchanged, {report.failed} failed, {report.removed} removed "
            f"({report.elapsed_s:.1f} s)"
        )
        for path in report.offline_folders:
            print(f"offline (photos kept): {path}")
        for path, reason in report.problems:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if report.failed:
            print("see the failures with: python main.py status --failures")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        result = lib.search(args.query, image=args.image, k=args.k)
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
            return EXIT_OK
        print(format_result(result))
    return EXIT_OK


def format_result(result) -> str:
    """Human-readable graded results."""
    lines = [f"{result.query!r} ({result.model})"]
    if result.long_tail:
        lines.append("No exact match; here are the nearest alternatives.")
    if not result.results:
        lines.append("Nothing indexed yet: python main.py index FOLDER")
    for rank, tier in enumerate(result.tiers):
        lines.append(
            f"\n{tier.label}: {tier.count} photo{'s' if tier.count != 1 else ''} "
            f"(scores {tier.min_score:.3f} to {tier.max_score:.3f})"
        )
        for hit in result.results:
            if hit.tier == rank:
                lines.append(f"  {hit.score:6.3f}  z={hit.z:5.2f}  {hit.path}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        status = lib.status()
        failures = lib.failures() if args.failures else []
        if args.json:
            data = status.to_dict()
            if args.failures:
                data["failure_list"] = [{"path": f.path, "reason": f.reason} for f in failures]
            print(json.dumps(data, ensure_ascii=False))
            return EXIT_OK
        print(f"library: {status.root}")
        print(f"model:   {status.model_spec}")
        if status.is_starter:
            print(f"         {status.model}")
        if status.target_model:
            print(f"switching to: {status.target_model} (run: python main.py index)")
        print(f"photos:  {status.photos} ({status.indexed} indexed), {status.failures} failed")
        for f in status.folders:
            state = "" if f.state == "online" else f"  [{f.state}]"
            print(f"  {f.path}: {f.photos} photos, {f.indexed} indexed, {f.failures} failed{state}")
        if not status.folders:
            print("  no folders yet: python main.py index FOLDER")
        for failure in failures:
            print(f"  failed: {failure.path}: {failure.reason}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        for folder in args.folders:
            lib.remove_folder(folder)
            print(f"removed from the library: {folder}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainer.demo_library import example_queries, write_demo_library

    with _library(args, model=getattr(args, "model", None) or "starter") as lib:
        out = Path(args.out) if args.out else lib.root / "demo-photos"
        print(f"rendering {args.count} demo photos into {out} ...")
        write_demo_library(out, count=args.count, seed=args.seed)
        lib.add_folder(out)
        update, close = _progress_printer(True)
        try:
            report = lib.index(on_progress=update)
        finally:
            close()
        print(f"indexed {report.embedded + report.reused + report.unchanged} photos with {lib.model_spec}")
        for example in example_queries():
            result = lib.search(example.text, k=12)
            print()
            print(format_result(result))
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from app.main import run
    except ImportError as e:
        print(f"The desktop app cannot start ({e}). Use the sub-commands:", file=sys.stderr)
        build_parser().print_help()
        return EXIT_ERROR
    return run(args)


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "status": cmd_status,
    "remove": cmd_remove,
    "demo": cmd_demo,
    "gui": cmd_gui,
    None: cmd_gui,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `train` has its own parser (shared with `python -m trainer`).
    if argv and argv[0] == "train":
        from trainer.__main__ import main as train_main

        return train_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", 0))

    from core.errors import LadderLensError

    try:
        return COMMANDS[args.command](args)
    except LadderLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; finished work is kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
