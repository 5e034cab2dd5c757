"""LadderLens entry point: the desktop app by default, sub-commands for headless use.

Installed, the command is ``ladderlens`` (also ``python -m ladderlens``; ``ladderlens-app`` opens
the app without a console window on Windows); in a checkout, ``python main.py`` does the same.

ladderlens                             open the app
ladderlens index ~/Pictures            add a folder and index it
ladderlens search "red car at night" [--json]
ladderlens status
ladderlens demo                        render the demo library, index it, show searches
ladderlens train ...                   train a model on the scene world
ladderlens finetune ~/Tagged           fine-tune on tagged folders into a profile
ladderlens profiles [use NAME|none]    list fine-tune profiles, or switch
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from core.arguments import positive_int

logger = logging.getLogger("ladderlens")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ladderlens")
    except metadata.PackageNotFoundError:
        return "(not installed)"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def shown(text: object) -> str:
    """Text for a terminal: control characters (which could drive the terminal) and bytes that are
    not UTF-8 (kept by Python as surrogates) are written as escapes, e.g. ``\\x1b`` and ``\\xff``."""
    value = str(text)
    value = _SURROGATE.sub(
        lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}" if ord(m.group()) >= 0xDC80 else "?", value
    )
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def json_text(data: object) -> str:
    """One JSON document, valid UTF-8 whatever the file names: a name's bytes that are not UTF-8
    are kept (as Python's surrogateescape does) as ``\\udcXX`` escapes, so that
    ``os.fsencode(json.loads(text)["path"])`` gives the name's bytes back."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint for a search term that starts with '-' (read as an unknown option)."""

    def error(self, message: str):
        if "unrecognized arguments: -" in message or "expected one argument" in message:
            message += (
                "\n(to leave something out of a search, put the whole query in quotes after --: "
                "ladderlens search -- 'beach -people')"
            )
        super().error(message)


def _add_search_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("search", parents=[common], help="search the library")
    p.add_argument(
        "query",
        nargs="?",
        default="",
        help='free text; combine with + and -: \'"beach" - "people"\'',
    )
    p.add_argument("--image", metavar="PATH", help="more like this photo (combined with the text, if any)")
    p.add_argument(
        "--not-like",
        action="store_true",
        help="with --image: away from that photo (the text says what to find)",
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="FOLDER",
        help="only photos of this library folder (repeatable)",
    )
    p.add_argument("--taken-from", metavar="YYYY-MM-DD", help="only photos taken on or after this day")
    p.add_argument("--taken-to", metavar="YYYY-MM-DD", help="only photos taken on or before this day")
    p.add_argument("-k", type=positive_int, default=50, help="how many results (default 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(
        prog="ladderlens",
        description="Search a personal photo library by describing it.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", parents=[common], help="add folders to the library and index them")
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="folders to add (default: re-scan all)")
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip folders matching GLOB"
    )
    p.add_argument("--workers", type=positive_int, default=None, help="decode threads (default: CPU count)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per model batch")
    p.add_argument(
        "--forget-missing",
        action="store_true",
        help="a library folder that is empty now lost its photos: forget them (by default an empty "
        "folder reads as an unplugged drive and its photos are kept)",
    )
    p.add_argument(
        "--no-relocate",
        action="store_true",
        help="add a folder as new even when it holds the photos of an offline library folder (moved)",
    )
    p.add_argument(
        "--follow-outside-links",
        action="store_true",
        help="follow links that lead out of a library folder (never into /proc, /sys or /dev)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    _add_search_parser(sub, common)

    p = sub.add_parser("status", parents=[common], help="folders, counts, model, failures")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--failures", action="store_true", help="list every file that failed and why")

    p = sub.add_parser("remove", parents=[common], help="forget folders (files stay on disk)")
    p.add_argument("folders", nargs="+", metavar="FOLDER")

    p = sub.add_parser("demo", parents=[common], help="render the demo library, index it and show searches")
    p.add_argument("--out", metavar="DIR", help="where to write the demo photos (default: in the library)")
    p.add_argument("--count", type=positive_int, default=400, help="number of photos (default 400)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    p = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune on tagged folders (folder names, XMP keywords, tags.txt) into a profile",
    )
    p.add_argument("root", metavar="ROOT", help="folder whose sub-folders name what their photos show")
    p.add_argument("--mode", choices=("adapter", "full"), default="adapter", help="default: adapter")
    p.add_argument("--epochs", type=positive_int, default=None, help="at most this many epochs")
    p.add_argument("--name", help="profile name (default: from ROOT's name); a new version if it exists")
    p.add_argument(
        "--loss",
        default=None,
        help="infonce+adaptive (default), adaptive, infonce+triplet, triplet, infonce, or other sums",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="pairs per batch")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the mode's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (split and training)")
    p.add_argument("--general", type=int, default=None, help="scene-world photos for the cost report")
    p.add_argument("--no-apply", action="store_true", help="save the profile without switching to it")
    p.add_argument("--no-index", action="store_true", help="do not index new photos under ROOT first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")

    p = sub.add_parser("profiles", parents=[common], help="list fine-tune profiles, switch or delete them")
    p.add_argument(
        "action", nargs="?", choices=("list", "use", "none", "delete"), default="list", help="default: list"
    )
    p.add_argument("name", nargs="?", help="the profile (use, delete)")
    p.add_argument("--version", type=positive_int, default=None, help="a version (default: the latest)")
    p.add_argument("--json", action="store_true", help="print one JSON object (list)")

    sub.add_parser(
        "train", parents=[common], help="train a model on the scene world (see: train --help)", add_help=False
    )
    sub.add_parser("gui", parents=[common], help="open the desktop app (the default)")
    return parser


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
        if p.phase == "wait":
            bar.set_description("waiting for another LadderLens indexing this library")
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
        known = {f.path for f in lib.folders()}
        for folder in args.folders:
            moved = None
            if str(Path(folder).expanduser().resolve()) not in known and not args.no_relocate:
                moved = lib.moved_folder(folder)
            if moved is not None:
                status = lib.relocate_folder(moved.path, folder)
                print(
                    f"folder: {shown(status.path)} holds the photos of the offline library folder "
                    f"{shown(moved.path)}: it now points here ({moved.photos} photos keep their vectors "
                    "and tags; --no-relocate adds it as a new folder instead)"
                )
            else:
                status = lib.add_folder(folder, excludes=args.exclude)
                print(f"folder: {shown(status.path)}")
        if not lib.folders():
            print("The library has no folders yet: ladderlens index FOLDER", file=sys.stderr)
            return EXIT_USAGE
        update, close = _progress_printer(not args.no_progress)
        try:
            report = lib.index(
                on_progress=update,
                workers=args.workers,
                batch_size=args.batch_size,
                outside_links=args.follow_outside_links,
                empty_means_deleted=args.forget_missing,
            )
        finally:
            close()
        print(
            f"{report.scanned} photos found: {report.embedded} embedded, {report.reused} reused, "
            f"{report.unchanged} unchanged, {report.failed} failed, {report.removed} removed "
            f"({report.elapsed_s:.1f} s)"
        )
        for path in report.offline_folders:
            hint = ""
            if Path(path).is_dir():
                hint = " (there but empty; if its photos were deleted: ladderlens index --forget-missing)"
            print(f"offline (photos kept): {shown(path)}{hint}")
        for path, reason in report.problems:
            print(f"skipped {shown(path)}: {shown(reason)}", file=sys.stderr)
        if report.failed:
            print("see the failures with: ladderlens status --failures")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from core.query import NOT_LIKE_WEIGHT, PhotoFilter

    where = PhotoFilter(tuple(args.folder), args.taken_from, args.taken_to)
    weight = NOT_LIKE_WEIGHT if args.not_like else 1.0
    with _library(args) as lib:
        result = lib.search(args.query, image=args.image, k=args.k, example_weight=weight, where=where)
        if args.json:
            print(json_text(result.to_dict()))
        else:
            print(format_result(result))
        if not result.hits and not where.is_empty:
            print(f"No photo {where.describe()}.", file=sys.stderr)
        elif not result.hits:
            photos = lib.status().photos
            if photos:
                print(
                    f"{photos} photos of the library are not indexed with {lib.model_spec} yet: "
                    "ladderlens index",
                    file=sys.stderr,
                )
            else:
                print("The library has no photos yet: ladderlens index FOLDER", file=sys.stderr)
    return EXIT_OK


def match_count_text(count: int, capped: bool, shown: int) -> str:
    """How many photos match, e.g. "83 photos match; the best 50 are shown (-k for more)."."""
    verb = "matches" if count == 1 else "match"
    text = f"{'At least ' if capped else ''}{count:,} photo{'' if count == 1 else 's'} {verb}"
    if count > shown:
        text += f"; the best {shown:,} are shown (-k for more)"
    return text + "."


def format_result(result) -> str:
    """Human-readable graded results."""
    lines = [f"{result.query!r} ({result.model})"]
    if result.unknown_words:
        lines.append(f"This model does not know {_quoted(result.unknown_words)}.")
    if result.long_tail:
        lines.append("No exact match; here are the nearest alternatives.")
    elif result.hits:
        lines.append(match_count_text(result.match_count, result.match_count_capped, len(result.hits)))
    for tier in result.tiers:
        # With words the model does not know nothing matches, whatever was found of the rest.
        say_none = result.details_checked and tier.level > 0 and not result.unknown_words
        scores = (
            f"score {tier.max_score:.3f}"
            if tier.count == 1
            else f"scores {tier.min_score:.3f} to {tier.max_score:.3f}"
        )
        lines.append(f"\n{tier.label}: {tier.count} photo{'s' if tier.count != 1 else ''} ({scores})")
        for hit in result.hits:
            if hit.tier == tier.rank:
                differs = _differs_note(hit.differs, say_none)
                offline = "  [offline: its folder is not reachable now]" if hit.offline else ""
                lines.append(f"  {hit.score:6.3f}  z={hit.z:5.2f}  {shown(hit.path)}{differs}{offline}")
    return "\n".join(lines)


def _differs_note(differs: Sequence[str], say_none: bool) -> str:
    """What a result gets wrong, e.g. "  (colour, place differ)". A tier is named for most of its
    photos and follows the score order, so a photo in a lower tier may have nothing found wrong:
    ``say_none`` says so instead of leaving the line bare."""
    if differs:
        return f"  ({', '.join(differs)} {'differs' if len(differs) == 1 else 'differ'})"
    return "  (no difference found)" if say_none else ""


def _quoted(words: Sequence[str]) -> str:
    quoted = [f"'{w}'" for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def cmd_status(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        status = lib.status()
        failures = lib.failures() if args.failures else []
        if args.json:
            data = status.to_dict()
            if args.failures:
                data["failure_list"] = [{"path": f.path, "reason": f.reason} for f in failures]
            print(json_text(data))
            return EXIT_OK
        print(f"library: {status.root}")
        print(f"model:   {status.model_spec}")
        if status.is_starter:
            print(f"         {status.model}")
        if status.target_model:
            print(f"switching to: {status.target_model} (run: ladderlens index)")
        if status.profile:
            print(f"profile: {status.profile} (fine-tuned; without it: ladderlens profiles none)")
        print(f"photos:  {status.photos} ({status.indexed} indexed), {status.failures} failed")
        for f in status.folders:
            state = "" if f.state == "online" else f"  [{f.state}]"
            print(f"  {shown(f.path)}: {f.photos} photos, {f.indexed} indexed, {f.failures} failed{state}")
        if not status.folders:
            print("  no folders yet: ladderlens index FOLDER")
        for failure in failures:
            print(f"  failed: {shown(failure.path)}: {shown(failure.reason)}")
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.profiles import suggest_profile_name
    from trainer.finetune import save_profile
    from trainer.finetune_full import distributed

    root = Path(args.root).expanduser()
    config = _finetune_config(args)
    name = args.name or suggest_profile_name(root.resolve().name)
    with distributed(args.mode == "full") as dist, _library(args) as lib:
        if dist.is_main and not args.no_index:
            _index_root(lib, root, not args.no_progress)
        dist.barrier()
        result = _run_finetune(lib, root, config, not args.no_progress and dist.is_main)
        if not dist.is_main:
            return EXIT_OK
        info = save_profile(lib, result, name)
        if args.json:
            print(json_text({"profile": info.label, **result.report}))
        else:
            _print_finetune_report(result.report)
            print(f"saved profile {info.label}")
        if not args.no_apply:
            _apply_profile(lib, info, progress=not args.no_progress, quiet=args.json)
    return EXIT_OK


def _finetune_config(args: argparse.Namespace):
    """The fine-tune's configuration: the defaults of its mode, with the options given."""
    from trainer.finetune import FinetuneConfig

    config = FinetuneConfig(mode=args.mode, seed=args.seed)
    for option, name in (
        ("loss", "loss"),
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("general", "general_scenes"),
    ):
        if getattr(args, option) is not None:
            setattr(config, name, getattr(args, option))
    return config


def _run_finetune(lib, root, config, progress: bool):
    """Run the fine-tune to its end, showing its progress; returns its result."""
    from trainer.finetune import iter_finetune

    show = _finetune_printer(progress)
    gen = iter_finetune(lib, root, config)
    try:
        while True:
            try:
                show(next(gen))
            except StopIteration as stop:
                return stop.value
    finally:
        gen.close()
        show(None)


def _print_finetune_report(report: dict) -> None:
    """The fine-tune's report, then the tagged photos it left out and the tag files it could not read."""
    from trainer.finetune import format_report

    print(format_report(report))
    problems = report.get("collection", {})
    if problems.get("not_indexed"):
        print(f"{problems['not_indexed']} tagged photos are not indexed and were left out.")
    if problems.get("problems"):
        listed = report.get("problems", [])
        print(f"{problems['problems']} tag files could not be read:")
        for path, reason in listed[:10]:
            print(f"  {shown(path)}: {shown(reason)}")
        if problems["problems"] > 10:
            print(f"  and {problems['problems'] - 10} more (--json lists up to {len(listed)})")


def _apply_profile(lib, info, *, progress: bool, quiet: bool) -> None:
    """Make searches use the new profile (``quiet``: without saying so, for --json)."""
    update, close = _step_printer(progress, "applying")
    try:
        lib.use_profile(info.name, info.version, on_progress=update)
    finally:
        close()
    if not quiet:
        print(f"searches now use profile {info.label}; without it: ladderlens profiles none")


def _index_root(lib, root, progress: bool) -> None:
    """Make sure the photos under ``root`` are indexed (adding it to the library if needed)."""
    from pathlib import Path

    from core.scanner import ScannedFile, scan_folder

    resolved = Path(root).expanduser().resolve()
    folder = next((f for f in lib.folders() if resolved.is_relative_to(f.path)), None)
    if folder is None:
        if not resolved.is_dir() or not any(isinstance(x, ScannedFile) for x in scan_folder(resolved)):
            return  # nothing to index: the fine-tune says what is wrong
        lib.add_folder(resolved)
        print(f"added {resolved} to the library", file=sys.stderr)
        folder_path = str(resolved)
    else:
        folder_path = folder.path
    update, close = _progress_printer(progress)
    try:
        lib.index(folders=[folder_path], on_progress=update)
    finally:
        close()


def _finetune_printer(enabled: bool):
    """A callback showing fine-tune progress: a bar over training steps on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return lambda p: None
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", dynamic_ncols=True, file=sys.stderr)
    state = {"score": None}

    def update(p) -> None:
        if p is None:
            bar.close()
            return
        if p.total is not None and bar.total != p.total:
            bar.reset(total=p.total)
        if p.phase == "validate" and p.metrics:
            state["score"] = p.metrics.get("score")
        if p.phase in ("train", "validate"):
            bar.set_description(f"epoch {p.epoch}/{p.epochs}")
            postfix = {"loss": f"{p.loss:.4f}" if p.loss is not None else "-"}
            if state["score"] is not None:
                postfix["val"] = f"{state['score']:.3f}"
            bar.set_postfix(postfix, refresh=False)
        else:
            bar.set_description(p.phase + (f" ({p.message})" if p.message else ""))
        bar.n = p.done
        bar.refresh()

    return update


def _step_printer(enabled: bool, label: str):
    """A bar for records with ``done`` and ``total`` (profile switches)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=None, unit="photo", dynamic_ncols=True, file=sys.stderr, desc=label)

    def update(p) -> None:
        if p.total is not None and bar.total != p.total:
            bar.reset(total=p.total)
        bar.set_description(f"{label}: {p.phase}")
        bar.n = p.done
        bar.refresh()

    return update, bar.close


def cmd_profiles(args: argparse.Namespace) -> int:
    with _library(args) as lib:
        if args.action in ("use", "delete") and not args.name:
            print(f"name the profile: ladderlens profiles {args.action} NAME", file=sys.stderr)
            return EXIT_USAGE
        if args.action == "use":
            update, close = _step_printer(True, "switching")
            try:
                info = lib.use_profile(args.name, args.version, on_progress=update)
            finally:
                close()
            print(f"searches now use profile {info.label}")
            return EXIT_OK
        if args.action == "none":
            lib.use_profile(None)
            print(f"searches now use the model alone: {lib.model_spec}")
            return EXIT_OK
        if args.action == "delete":
            for info in lib.delete_profile(args.name, args.version):
                print(f"deleted profile {info.label}")
            return EXIT_OK
        profiles = lib.profiles()
        active = lib.active_profile
        if args.json:
            rows = [
                {**p.to_dict(), "active": active is not None and p.label == active.label, "report": None}
                for p in profiles
            ]
            print(json_text({"model": lib.model_spec, "profiles": rows}))
            return EXIT_OK
        if not profiles:
            print("no profiles yet: ladderlens finetune FOLDER")
        for p in profiles:
            mark = "*" if active is not None and p.label == active.label else " "
            heldout = p.report.get("heldout", {})
            gain = ""
            if heldout:
                before, after = heldout["base"], heldout["finetuned"]
                gain = (
                    f"  held-out R@1 {before['R@1']:.2f} -> {after['R@1']:.2f}, "
                    f"CS {before['CS']:.2f} -> {after['CS']:.2f}"
                )
            print(f"{mark} {p.label:24} {p.mode:8} on {p.base_spec}{gain}")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from app.main import run
    except ImportError as e:
        print(f"The desktop app cannot start ({e}). Use the sub-commands:", file=sys.stderr)
        build_parser().print_help()
        return EXIT_ERROR
    argv = []
    if getattr(args, "library", None):
        argv += ["--library", args.library]
    if getattr(args, "model", None):
        argv += ["--model", args.model]
    return run(argv)


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "status": cmd_status,
    "remove": cmd_remove,
    "demo": cmd_demo,
    "finetune": cmd_finetune,
    "profiles": cmd_profiles,
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

    import sqlite3

    from core.catalog import storage_error
    from core.errors import LadderLensError

    try:
        return COMMANDS[args.command](args)
    except LadderLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.DatabaseError as exc:  # a read outside a transaction: same clear words
        from core.paths import library_dir

        catalog = library_dir(getattr(args, "library", None)) / "catalog.sqlite"
        print(f"error: {storage_error(exc, catalog)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; finished work is kept", file=sys.stderr)
        return EXIT_INTERRUPTED


def gui_main() -> int:
    """The ``ladderlens-app`` entry point: the desktop app (options as for ``ladderlens gui``)."""
    return main(["gui", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
