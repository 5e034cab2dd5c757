"""A single-shot-timer throttle for search-as-you-type (after qutebrowser's ``misc/throttle.py``).

The first call runs at once; calls within ``delay_ms`` of the last run are coalesced into one
call, with the latest arguments, when the delay has passed. Typing "red car" therefore searches
for "r" at once (instant feedback), then once for the latest text per delay window, and always
for the final text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer

logger = logging.getLogger(__name__)


class Throttle(QObject):
    """Call ``func`` at most once per ``delay_ms``, always with the latest arguments."""

    def __init__(self, func: Callable[..., Any], delay_ms: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._func = func
        self._delay_ms = delay_ms
        self._pending: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._last_call_ms: float | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._call_pending)

    @property
    def delay_ms(self) -> int:
        return self._delay_ms

    @property
    def is_pending(self) -> bool:
        return self._pending is not None

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        now = time.monotonic() * 1000
        idle = self._last_call_ms is None or now - self._last_call_ms >= self._delay_ms
        if idle and not self._timer.isActive():
            self._run(args, kwargs)
            return
        self._pending = (args, kwargs)
        if not self._timer.isActive():
            wait = (
                self._delay_ms if self._last_call_ms is None else self._delay_ms - (now - self._last_call_ms)
            )
            self._timer.start(max(0, int(wait)))

    def flush(self) -> None:
        """Run the pending call now, if there is one."""
        if self._pending is not None:
            self._timer.stop()
            self._call_pending()

    def cancel(self) -> None:
        """Forget the pending call."""
        self._timer.stop()
        self._pending = None

    def _call_pending(self) -> None:
        if self._pending is None:
            return
        args, kwargs = self._pending
        self._run(args, kwargs)

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._pending = None
        self._last_call_ms = time.monotonic() * 1000
        self._func(*args, **kwargs)
