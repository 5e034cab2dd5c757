"""Start the desktop app: ``run(argv)`` opens the library and shows the main window."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication, QMessageBox, QSplashScreen

from app.app_settings import (
    APPLICATION,
    ORGANIZATION,
    apply_theme,
    default_settings,
    library_device,
    read_cache_dir,
    read_cache_limit_mb,
    read_theme,
)

logger = logging.getLogger(__name__)


GIL_SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """Let the GUI thread win the interpreter lock back quickly from busy worker threads.

    Indexing and thumbnail threads run Python code between their native calls; with the default
    5 ms switch interval the GUI thread can wait several intervals in a row for the lock, and the
    window stalls. A 1 ms interval cut event-loop stalls over 50 ms while indexing by about half
    (benchmarks/bench_gui.py) without slowing indexing measurably.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


# Imported on the GUI thread before the window opens (see :func:`load_runtime`); the optional
# ones only where installed. triton (a torch dependency on Linux) is imported while the model is
# built, and its extension initialises for about 50 ms in one piece with the lock held. The others
# were imported by worker threads at the first search or thumbnail, just as the window showed its
# first page of results: the search code (core.search with grading and the index, 45-50 ms), PIL's
# TIFF plugin (EXIF, about 20 ms), threadpoolctl.
RUNTIME_MODULES = ("torch", "core.search", "core.match_gate", "PIL.TiffImagePlugin")
OPTIONAL_RUNTIME_MODULES = ("triton", "threadpoolctl")


def load_runtime() -> float:
    """Import the model runtime (torch) now, on the calling thread; returns the seconds it took.

    ``import torch`` loads torch's shared libraries and initialises its C++ extension in one piece
    with the interpreter lock held (0.3-0.45 s here): no other Python thread runs meanwhile, the
    GUI's included. Done by the model's loading thread after the window had opened, it froze the
    window once, just as indexing began (benchmarks/bench_gui.py: a 320-390 ms stall). So the app
    imports it before the window opens, behind a splash screen; the rest of loading a model (the
    model code, the weights) still runs in the background, in small pieces.

    A runtime that cannot be imported is not an error here: the window opens, and loading the
    model reports what is wrong.
    """
    start = time.perf_counter()
    optional = [name for name in OPTIONAL_RUNTIME_MODULES if importlib.util.find_spec(name) is not None]
    for name in (*RUNTIME_MODULES, *optional):
        try:
            importlib.import_module(name)
        except Exception as exc:  # the model's loader reports it in the window
            logger.warning("could not import %s before opening the window: %s", name, exc)
    return time.perf_counter() - start


def _splash() -> QSplashScreen:
    """A plain splash screen: the app's name and what it is doing, in the palette's colours."""
    ratio = QApplication.primaryScreen().devicePixelRatio() if QApplication.primaryScreen() else 1.0
    pixmap = QPixmap(round(420 * ratio), round(150 * ratio))
    pixmap.setDevicePixelRatio(ratio)
    palette = QApplication.palette()
    pixmap.fill(palette.color(QPalette.ColorRole.Window))
    painter = QPainter(pixmap)
    try:
        painter.setPen(QColor(palette.color(QPalette.ColorRole.Mid)))
        painter.drawRect(0, 0, 419, 149)
        title = QFont(QApplication.font())
        title.setPointSizeF(title.pointSizeF() * 2)
        title.setBold(True)
        painter.setFont(title)
        painter.setPen(palette.color(QPalette.ColorRole.WindowText))
        left = Qt.AlignmentFlag.AlignLeft
        painter.drawText(24, 20, 372, 60, left | Qt.AlignmentFlag.AlignBottom, "LadderLens")
        painter.setFont(QApplication.font())
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(24, 88, 372, 40, left | Qt.AlignmentFlag.AlignTop, "Loading the search engine\u2026")
    finally:
        painter.end()
    return QSplashScreen(pixmap)


def thumbnail_loader(settings: QSettings) -> Any:
    """The thumbnail loader with the cache folder and size limit of the settings."""
    from app.thumbnails import ThumbnailLoader

    return ThumbnailLoader(
        cache_dir=read_cache_dir(settings), cache_limit=read_cache_limit_mb(settings) << 20
    )


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ladderlens", description="LadderLens desktop app")
    parser.add_argument("--library", metavar="DIR", default=None, help="library folder")
    parser.add_argument("--model", metavar="SPEC", default=None, help="model to use")
    parser.add_argument("--settings", metavar="FILE", default=None, help="settings file (INI)")
    args, _qt_args = parser.parse_known_args(list(argv))
    return args


def run(argv: Sequence[str] | None = None) -> int:
    """Open the app on the library; returns the exit status. Errors become dialogs, never tracebacks.

    Args:
        argv: ``--library DIR``, ``--model SPEC``, ``--settings FILE`` and Qt's own options.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    from app.log_file import install_log_file

    log_path = install_log_file()
    logger.info("LadderLens starting (log: %s)", log_path)
    tune_interpreter()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "ladderlens", *argv])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QApplication.setApplicationDisplayName("LadderLens")
    settings = QSettings(args.settings, QSettings.Format.IniFormat) if args.settings else default_settings()
    apply_theme(read_theme(settings))

    splash = _splash()
    splash.show()
    app.processEvents()
    loaded_s = load_runtime()
    logger.debug("model runtime imported in %.2f s", loaded_s)

    from app.errors_text import user_message
    from app.main_window import MainWindow
    from app.photo_actions import release_in_process_clipboard
    from app.session import LibrarySession
    from core.errors import LadderLensError
    from core.library import Library

    try:
        library = Library.open(args.library, model=args.model, device=library_device(settings))
    except LadderLensError as exc:
        splash.close()
        QMessageBox.critical(None, "LadderLens", f"The library cannot be opened.\n\n{user_message(exc)}")
        return 1
    session = LibrarySession(library)
    window = MainWindow(session, settings, thumbnail_loader(settings))
    window.show()
    splash.finish(window)
    try:
        return int(app.exec())
    finally:
        session.shutdown()
        library.close()
        release_in_process_clipboard()


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(run())
