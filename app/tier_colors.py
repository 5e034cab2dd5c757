"""One colour per tier rank, shared by the grid's headers, its score badges and the tier inspector."""

from __future__ import annotations

from PySide6.QtGui import QColor

_MATCH = ("#2e9e5b", "#2f7fc1", "#d08a1e", "#8a8f98")
_LONG_TAIL = ("#8c6bb1", "#7a8fa6", "#a08f7a", "#8a8f98")


def tier_color(rank: int, long_tail: bool = False) -> QColor:
    """Colour of tier ``rank`` (1 = best); long-tail results use a muted set."""
    palette = _LONG_TAIL if long_tail else _MATCH
    if rank < 1:
        return QColor("#8a8f98")
    return QColor(palette[min(rank, len(palette)) - 1])
