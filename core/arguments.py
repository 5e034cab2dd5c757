"""Command-line value types shared by ``main.py`` and ``python -m trainer``.

Each turns one argument's text into a value or raises :class:`argparse.ArgumentTypeError` with a
message naming what was expected, which argparse prints next to the option.
"""

from __future__ import annotations

import argparse
import math
import re


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def finite_number(text: str) -> float:
    """Any finite float (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def duration(text: str) -> float:
    """'25m', '90s', '1.5h' or a bare number of minutes -> seconds (> 0)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration such as 25m, 90s or 1.5h, got {text!r}")
    value = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "": 60}[match[2]]
    if value <= 0:
        raise argparse.ArgumentTypeError("the time budget must be positive")
    return value
