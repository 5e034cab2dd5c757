"""Where things live on disk: the library folder, the cache folder and the log folder.

Resolution order for the library: an explicit argument, then ``$LADDERLENS_HOME``, then the
platform's per-user data folder (``platformdirs``). The cache (thumbnails, rendered training
data) follows ``$LADDERLENS_CACHE``, then the platform's per-user cache folder; the app's log
``$LADDERLENS_LOGS``, then the platform's per-user log folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "LadderLens"


def library_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The library folder to use (not created here)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("LADDERLENS_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder to use (not created here)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("LADDERLENS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    """The folder of the app's log file (not created here)."""
    env = os.environ.get("LADDERLENS_LOGS")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
