"""Running the library's long operations, which are generators of progress records.

Every long operation (indexing, switching profiles, scanning tags, fine-tuning) is written as a
generator that yields plain progress records and returns its result, so that a GUI worker can
forward each record, cancel between records, or a script can simply run it to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")


def drive(run: Generator[P, None, R], on_progress: Callable[[P], None] | None = None) -> R:
    """Run a progress generator to its end, passing each record to ``on_progress``; its result."""
    while True:
        try:
            record = next(run)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(record)
