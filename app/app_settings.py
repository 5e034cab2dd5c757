"""Persistent GUI settings (QSettings, INI format) and the search history.

Everything goes through one ``QSettings`` object handed to the widgets, so tests pass their own
(an INI file in a temporary folder) and nothing leaks into the user's real settings.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings

logger = logging.getLogger(__name__)

ORGANIZATION = "LadderLens"
APPLICATION = "LadderLens"
HISTORY_KEY = "search/history"
HISTORY_LIMIT = 50


def default_settings() -> QSettings:
    """The user's settings: an INI file in the platform's per-user configuration folder."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def settings_at(path: str | Path) -> QSettings:
    """Settings stored in one INI file (tests, portable installs)."""
    return QSettings(str(path), QSettings.Format.IniFormat)


def read_str_list(settings: QSettings, key: str) -> list[str]:
    """A list of strings stored under ``key`` (INI stores a one-item list as a plain string).

    A value of another type (a hand-edited or foreign settings file) is ignored with a warning.
    """
    value = settings.value(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value if str(v)]
    logger.warning("ignoring the setting %s: expected a list of texts, found %r", key, value)
    return []


class QueryHistory:
    """The most recent distinct queries, newest first, persisted in settings."""

    def __init__(self, settings: QSettings, limit: int = HISTORY_LIMIT) -> None:
        self._settings = settings
        self._limit = limit
        self._items = read_str_list(settings, HISTORY_KEY)[:limit]

    @property
    def items(self) -> list[str]:
        return list(self._items)

    def add(self, query: str) -> bool:
        """Remember ``query`` (moved to the front if already there); False when it is blank."""
        query = " ".join(query.split())
        if not query:
            return False
        self._items = [query, *(q for q in self._items if q.casefold() != query.casefold())][: self._limit]
        self._settings.setValue(HISTORY_KEY, self._items)
        return True

    def clear(self) -> None:
        self._items = []
        self._settings.setValue(HISTORY_KEY, [])
