"""Persistent GUI settings (QSettings, INI format), the search history, and applying the settings
that take effect at start (the theme, the model's device).

Everything goes through one ``QSettings`` object handed to the widgets, so tests pass their own
(an INI file in a temporary folder) and nothing leaks into the user's real settings.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

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


# ---------------------------------------------------------------------- the Settings dialog's values

THEME_KEY = "appearance/theme"
THEMES = ("system", "light", "dark")
DEVICE_KEY = "engine/device"
DEVICES = ("auto", "cpu", "cuda", "mps")
CACHE_LIMIT_KEY = "thumbnails/cache_limit_mb"
CACHE_LIMIT_MB_DEFAULT = 512
CACHE_LIMIT_MB_MIN = 64
CACHE_LIMIT_MB_MAX = 8192
CACHE_DIR_KEY = "thumbnails/cache_dir"
THEME_LABELS = {"system": "System", "light": "Light", "dark": "Dark"}
DEVICE_LABELS = {
    "auto": "Automatic (a GPU when there is one, else the CPU)",
    "cpu": "CPU",
    "cuda": "GPU (CUDA)",
    "mps": "GPU (Apple MPS)",
}


def read_choice(settings: QSettings, key: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` stored under ``key`` (case-insensitive); the first choice when it is
    missing, and with a warning when it is something else."""
    value = settings.value(key, None)
    if value is None or value == "":
        return choices[0]
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    logger.warning("ignoring the setting %s: expected one of %s, found %r", key, ", ".join(choices), value)
    return choices[0]


def read_int(settings: QSettings, key: str, default: int, minimum: int, maximum: int) -> int:
    """A whole number stored under ``key`` (INI stores it as text), within [minimum, maximum];
    ``default`` when it is missing or not a number, the nearest bound when it is out of range,
    with a warning for each."""
    value = settings.value(key, None)
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None:
        logger.warning("ignoring the setting %s: expected a whole number, found %r", key, value)
        return default
    if not minimum <= number <= maximum:
        logger.warning(
            "the setting %s (%d) is outside %d-%d: using %s",
            key,
            number,
            minimum,
            maximum,
            min(max(number, minimum), maximum),
        )
        return min(max(number, minimum), maximum)
    return number


def read_folder(settings: QSettings, key: str) -> Path | None:
    """An absolute folder path stored under ``key``; None when it is missing (the default place),
    and with a warning when it is not an absolute path."""
    value = settings.value(key, None)
    if value is None or value == "":
        return None
    if isinstance(value, str) and Path(value).expanduser().is_absolute():
        return Path(value).expanduser()
    logger.warning("ignoring the setting %s: expected an absolute folder path, found %r", key, value)
    return None


def read_theme(settings: QSettings) -> str:
    """ "system", "light" or "dark"."""
    return read_choice(settings, THEME_KEY, THEMES)


def read_device(settings: QSettings) -> str:
    """Where the model runs: "auto", "cpu", "cuda" or "mps"."""
    return read_choice(settings, DEVICE_KEY, DEVICES)


def read_cache_limit_mb(settings: QSettings) -> int:
    """The thumbnail cache's size limit in MB."""
    return read_int(settings, CACHE_LIMIT_KEY, CACHE_LIMIT_MB_DEFAULT, CACHE_LIMIT_MB_MIN, CACHE_LIMIT_MB_MAX)


def read_cache_dir(settings: QSettings) -> Path | None:
    """The thumbnail cache's folder; None: the default one (``app.thumbnails.thumbnail_dir``)."""
    return read_folder(settings, CACHE_DIR_KEY)


# ---------------------------------------------------------------------- theme


class _PlatformLook:
    """The style the app started with, kept when a theme first replaces it."""

    style: str | None = None


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style."""
    palette = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    highlight, disabled = QColor(42, 130, 218), QColor(128, 128, 128)
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor(55, 55, 58),
        QPalette.ColorRole.ToolTipBase: window,
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: QColor(150, 150, 150),
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(53, 53, 56),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 90, 90),
        QPalette.ColorRole.Light: QColor(75, 75, 78),
        QPalette.ColorRole.Midlight: QColor(62, 62, 65),
        QPalette.ColorRole.Mid: QColor(40, 40, 42),
        QPalette.ColorRole.Dark: QColor(25, 25, 27),
        QPalette.ColorRole.Shadow: QColor(0, 0, 0),
        QPalette.ColorRole.Link: QColor(90, 160, 240),
        QPalette.ColorRole.LinkVisited: QColor(170, 130, 230),
        QPalette.ColorRole.Highlight: highlight,
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
    }
    for role, color in roles.items():
        palette.setColor(role, color)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor(80, 80, 80))
    return palette


def apply_theme(theme: str, app: QApplication | None = None) -> None:
    """Give the app the look ``theme`` names: "system" (the platform's style and palette), "light"
    (Fusion, light) or "dark" (Fusion with :func:`dark_palette`)."""
    app = app or QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if _PlatformLook.style is None:
        if theme == "system":
            return  # the platform's look is still in place
        _PlatformLook.style = app.style().name()
    if theme == "system":
        app.setStyle(_PlatformLook.style)
        app.setPalette(QPalette())  # an empty palette: the app follows the platform's again
        return
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if theme == "dark" else app.style().standardPalette())


# ---------------------------------------------------------------------- device


class _Probe:
    """What :func:`probe_gpus` found, once found (the GPUs do not change while the app runs)."""

    found: dict[str, str] | None = None


def probe_gpus() -> dict[str, str]:
    """The GPUs the model could run on here, as {device: description}: "cuda", "mps" or neither.

    Imports torch when it is not yet imported (slow): call it in a worker, not on the GUI thread.
    """
    if _Probe.found is not None:
        return dict(_Probe.found)
    found: dict[str, str] = {}
    if importlib.util.find_spec("torch") is not None:
        import torch

        try:
            if torch.cuda.is_available():
                count = torch.cuda.device_count()
                found["cuda"] = f"{count} CUDA GPU{'s' if count != 1 else ''}"
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                found["mps"] = "Apple GPU (MPS)"
        except Exception as exc:  # a broken driver means no GPU, not a crash
            logger.warning("could not check for a GPU: %s", exc)
    _Probe.found = found
    return dict(found)


def library_device(settings: QSettings, probe: Callable[[], dict[str, str]] = probe_gpus) -> str | None:
    """The ``device`` to open the library with: None for automatic, else "cpu", "cuda" or "mps".

    A GPU chosen earlier that this computer does not have now falls back to automatic, with a
    warning, instead of failing to load the model.
    """
    device = read_device(settings)
    if device == "auto":
        return None
    if device != "cpu" and device not in probe():
        logger.warning("the chosen device %s is not available here: choosing automatically", device)
        return None
    return device
