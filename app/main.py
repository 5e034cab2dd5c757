"""Start the desktop app: ``run(argv)`` opens the library and shows the main window."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from app.app_settings import APPLICATION, ORGANIZATION, default_settings

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
    tune_interpreter()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "ladderlens", *argv])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QApplication.setApplicationDisplayName("LadderLens")

    from app.errors_text import user_message
    from app.main_window import MainWindow
    from app.session import LibrarySession
    from core.errors import LadderLensError
    from core.library import Library

    try:
        library = Library.open(args.library, model=args.model)
    except LadderLensError as exc:
        QMessageBox.critical(None, "LadderLens", f"The library cannot be opened.\n\n{user_message(exc)}")
        return 1
    settings = QSettings(args.settings, QSettings.Format.IniFormat) if args.settings else default_settings()
    session = LibrarySession(library)
    window = MainWindow(session, settings)
    window.show()
    try:
        return int(app.exec())
    finally:
        session.shutdown()
        library.close()


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(run())
