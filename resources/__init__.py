"""LadderLens's bundled data, installed as the ``ladderlens`` package.

``models/`` holds the open_clip configs and the starter model's weights, model card and
vocabulary; code finds them through :func:`models_dir` (``importlib.resources``), so they are found in a
wheel install as well as in a checkout. ``python -m ladderlens`` runs the command line.
"""

from __future__ import annotations

from importlib import metadata
from importlib.resources import as_file, files
from pathlib import Path

__all__ = ["__version__", "models_dir"]

try:
    __version__ = metadata.version("ladderlens")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"


def models_dir() -> Path:
    """The folder of the bundled model files (configs, starter weights, vocabulary, card)."""
    with as_file(files(__name__) / "models") as path:  # a real folder for any non-zipped install
        return Path(path)
