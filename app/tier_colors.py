"""One colour per relevance level, shared by the grid's headers, its score badges and the tier inspector.

A colour means the same in every result: green is a match, blue close (one detail differs), amber
partly related, grey loosely related. A long-tail query's first tier is never green.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

_LEVELS = ("#2e9e5b", "#2f7fc1", "#d08a1e", "#8a8f98")


def tier_color(level: int) -> QColor:
    """Colour of a tier of relevance ``level`` (0 = match; see :attr:`core.grading.Tier.level`)."""
    return QColor(_LEVELS[min(max(int(level), 0), len(_LEVELS) - 1)])


def level_of(tier) -> int:
    """A tier's level (tiers made without one: their rank, best = 0)."""
    level = getattr(tier, "level", None)
    return int(level) if level is not None else max(int(tier.rank) - 1, 0)
