"""Turn exceptions into messages a user can act on (never a stack trace)."""

from __future__ import annotations

import logging
import sqlite3

from core.errors import LadderLensError, ModelUnavailableError

logger = logging.getLogger(__name__)


def user_message(exc: BaseException, doing: str = "") -> str:
    """A plain-words message for ``exc``; unexpected errors are logged with their traceback."""
    if isinstance(exc, ModelUnavailableError):
        return str(exc) or "The model is not available on this computer."
    if isinstance(exc, LadderLensError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError):
        from core.catalog import storage_error

        return str(storage_error(exc, "catalog.sqlite"))
    if isinstance(exc, MemoryError):
        return f"Out of memory{' while ' + doing if doing else ''}. Close other programs and try again."
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return (
            f"{'Could not ' + doing if doing else 'A file operation failed'}{where}: {exc.strerror or exc}."
        )
    logger.error("unexpected error%s", f" while {doing}" if doing else "", exc_info=exc)
    detail = str(exc) or type(exc).__name__
    return f"Something went wrong{' while ' + doing if doing else ''}: {detail}. Details are in the log."
