"""Render the real main window on a demo library, with a query and its tiers, and save a PNG.

    python benchmarks/screenshot.py                         # -> resources/screenshot.png
    python benchmarks/screenshot.py --query "two kites over a meadow" --out /tmp/shot.png
    python benchmarks/screenshot.py --more --out /tmp/more.png   # scrolled to the end: more results

Without a display the script re-runs itself under ``xvfb-run`` (``apt-get install xvfb``), so the
window is drawn by a real X server with real fonts, as a user would see it. The demo library is
rendered into a temporary folder (or ``--library``) and indexed before the window opens.

``--model`` picks the model (default: the bundled starter model). ``--model random`` uses a
random-weights model of the starter's architecture: the results are meaningless, but the layout can
be checked before the starter model is trained.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("screenshot")
_UNDER_XVFB = "LADDERLENS_SCREENSHOT_XVFB"
DEFAULT_QUERY = "two sailboats on the sea at sunset"  # a ladder with clear best matches on the demo


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "resources" / "screenshot.png")
    p.add_argument("--library", type=Path, default=None, help="library folder (default: a temporary one)")
    p.add_argument("--model", default="starter", help="model spec, or 'random' (layout checks only)")
    p.add_argument("--count", type=int, default=400, help="demo photos (the app's demo has 400)")
    p.add_argument("--query", default=DEFAULT_QUERY, help=f"query (default: {DEFAULT_QUERY!r})")
    p.add_argument("--size", default="1440x900", help="window size WxH")
    p.add_argument(
        "--details", action=argparse.BooleanOptionalAction, default=True, help="show the details pane"
    )
    p.add_argument(
        "--more", action="store_true", help="scroll the grid to its end, so more results load below the tiers"
    )
    return p.parse_args(argv)


def _rerun_under_xvfb(argv: list[str]) -> int:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        print("No display and no xvfb-run: install it with `apt-get install -y xvfb`.", file=sys.stderr)
        return 2
    env = dict(os.environ, **{_UNDER_XVFB: "1"})
    env.pop("QT_QPA_PLATFORM", None)
    cmd = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.call(cmd, env=env)


def _random_starter(folder: Path) -> str:
    """A checkpoint of the starter architecture with random weights (for layout checks)."""
    import torch

    from core.models import STARTER_ARCH, create_architecture, register_bundled_configs, save_checkpoint

    register_bundled_configs()
    torch.manual_seed(0)
    path = folder / "random-starter.safetensors"
    save_checkpoint(create_architecture(STARTER_ARCH), path, STARTER_ARCH)
    return f"file:{path}"


def _wait(app, condition, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("DISPLAY") and not os.environ.get(_UNDER_XVFB):
        return _rerun_under_xvfb(argv)
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(tempfile.mkdtemp(prefix="ladderlens-shot-"))
    os.environ["LADDERLENS_CACHE"] = str(work / "cache")
    try:
        return _shoot(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _shoot(args: argparse.Namespace, work: Path) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["ladderlens"])
    app.setApplicationDisplayName("LadderLens")

    from app.app_settings import settings_at
    from app.main_window import MainWindow
    from app.session import DEMO_FOLDER, LibrarySession
    from app.thumbnails import ThumbnailLoader
    from core.library import Library
    from trainer.demo_library import example_queries, write_demo_library

    model = _random_starter(work) if args.model == "random" else args.model
    root = args.library or work / "library"
    library = Library.open(root, model=model)
    demo = Path(library.root) / DEMO_FOLDER
    t0 = time.perf_counter()
    write_demo_library(demo, count=args.count, seed=7, size=(1024, 768))
    library.add_folder(demo)
    report = library.index()
    logger.info(
        "demo library: %d photos indexed in %.1f s", report.embedded + report.reused, time.perf_counter() - t0
    )

    session = LibrarySession(library)
    thumbnails = ThumbnailLoader(cache_dir=work / "cache" / "thumbnails", threads=4)
    window = MainWindow(session, settings_at(work / "settings.ini"), thumbnails)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    _wait(app, window.isVisible)

    query = args.query or example_queries()[0].text
    window.search_bar.set_text(query)
    window.search_now()
    if not _wait(app, lambda: window.last_request is not None and window.last_request.text == query):
        print("the search did not finish", file=sys.stderr)
        return 1
    if args.details and window.results_model.photo_rows():
        window.results_view.setFocus()
        window.results_view.select_first_photo()
        window.show_details(window.results_view.current_photo_id())
    if args.more:
        bar = window.results_view.verticalScrollBar()
        model = window.results_model
        bar.setValue(bar.maximum())
        _wait(app, lambda: model.more_count > 0 or not model.more_available, timeout_s=60)
        _wait(app, lambda: False, timeout_s=0.3)  # the new rows are laid out
        bar.setValue(bar.maximum())
    # Let every visible thumbnail (and the preview) arrive and be painted.
    _wait(app, lambda: False, timeout_s=0.5)
    _wait(app, lambda: thumbnails.wait_for_done(10), timeout_s=30)
    _wait(app, lambda: False, timeout_s=0.5)
    window.results_view.viewport().update()
    app.processEvents()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    pixmap = window.grab()
    if not pixmap.save(str(args.out), "PNG"):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    result = window._result
    tiers = ", ".join(f"{t.label} {t.count}" for t in result.tiers) if result else "none"
    logger.info("query %r: %s%s", query, tiers, " (long tail)" if result and result.long_tail else "")
    logger.info("wrote %s (%dx%d)", args.out, pixmap.width(), pixmap.height())
    parts = {
        "window": window,
        "library panel": window.library_dock,
        "results": window.left_splitter,
        "details": window.details,
    }
    logger.info(
        "narrowest widths: %s",
        ", ".join(f"{name} {w.minimumSizeHint().width()}" for name, w in parts.items() if w.isVisible()),
    )
    window.close()
    library.close()
    del Qt
    return 0


if __name__ == "__main__":
    sys.exit(main())
