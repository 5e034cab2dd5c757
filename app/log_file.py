"""The app's log file: what went wrong, with tracebacks, for a user to look at or send along.

Messages of INFO and above go to ``ladderlens.log`` in :func:`core.paths.log_dir`, rotated at
1 MB with three old files kept, so it never grows without bound. Error dialogs say "details are in
the log"; Help names the file.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from core.paths import log_dir

logger = logging.getLogger(__name__)

LOG_NAME = "ladderlens.log"
MAX_BYTES = 1 << 20
BACKUPS = 3


def install_log_file(folder: Path | None = None) -> Path | None:
    """Send log records (INFO and above) to the log file as well; its path, or None when the folder
    cannot be written (the app runs on without a file)."""
    path = (folder or log_dir()) / LOG_NAME
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    except OSError as exc:
        logger.warning("no log file (%s): %s", path, exc)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return path
