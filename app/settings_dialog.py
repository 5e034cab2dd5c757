"""The Settings dialog: excluded folders, the thumbnail cache, the model's device and the theme.

Each page edits a copy of its values; OK and Apply save them (OK then closes), Cancel drops what
was not applied. When each setting takes effect:

* Excluded folders are stored in the catalog at once; the next re-scan of the folder applies them
  (the dialog offers "Re-scan now"). Photos an exclusion hides leave the library at that re-scan.
* The thumbnail cache's size limit and folder apply at once: the cache is pruned to a lower limit,
  and a new folder takes the next thumbnails while the old folder's thumbnails are deleted.
* The device applies the next time the app starts (``app.app_settings.library_device``, which
  ``app.main`` calls).
* The theme applies at once (``app.app_settings.apply_theme``, also called at start).

Values are validated twice: when typed (the dialog refuses what it cannot use) and when read
back from the settings file (``app.app_settings`` falls back, with a warning, on a bad value).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.app_settings import (
    CACHE_DIR_KEY,
    CACHE_LIMIT_KEY,
    CACHE_LIMIT_MB_MAX,
    CACHE_LIMIT_MB_MIN,
    DEVICE_KEY,
    DEVICE_LABELS,
    THEME_KEY,
    THEME_LABELS,
    apply_theme,
    probe_gpus,
    read_cache_dir,
    read_cache_limit_mb,
    read_device,
    read_theme,
)
from app.thumbnails import cache_usage, clear_cache, is_thumbnail_name, prune_cache, thumbnail_dir
from app.workers import Worker, WorkerPool
from core.scanner import DEFAULT_EXCLUDES

logger = logging.getLogger(__name__)

MB = 1 << 20


# ---------------------------------------------------------------------- checks


def check_pattern(pattern: str, existing: Sequence[str]) -> str | None:
    """Why ``pattern`` cannot be an exclude pattern of a folder, or None when it can."""
    text = pattern.strip().replace("\\", "/")
    if not text.strip("/"):
        return "Type a folder or file name, or a path inside the folder."
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or text.startswith("~"):
        return "Give a name or a path inside the library folder (like “2019/tmp*”), not a full path."
    if ".." in text.split("/"):
        return "A pattern cannot leave the library folder (“..”)."
    if not text.replace("*", "").replace("?", "").strip("/"):
        return "This pattern would skip every photo in the folder."
    if text.strip("/").casefold() in {p.strip("/").casefold() for p in existing}:
        return "This pattern is already in the list."
    return None


def check_cache_folder(path: Path) -> str | None:
    """Why ``path`` cannot hold the thumbnail cache, or None when it can (missing folders are made).

    The folder must be empty or hold only thumbnails: clearing the cache deletes thumbnails, and
    nothing else is ever mixed with them.
    """
    if not path.is_absolute():
        return "Choose a full folder path."
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} is not a folder."
    if not os.access(path, os.W_OK | os.X_OK):
        return f"LadderLens cannot write in {path}."
    try:
        with os.scandir(path) as it:
            foreign = any(not is_thumbnail_name(e.name) and not e.name.endswith(".tmp") for e in it)
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}."
    if foreign:
        return f"{path} holds other files: choose an empty folder, or one that holds only thumbnails."
    return None


def format_size(size: int) -> str:
    if size < MB:
        return f"{size / 1024:.0f} KB"
    if size < 1024 * MB:
        return f"{size / MB:.1f} MB"
    return f"{size / (1024 * MB):.2f} GB"


def _note(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


# ---------------------------------------------------------------------- pages


class _Page(QWidget):
    """A page of the dialog: ``changed`` when its values differ from the saved ones."""

    changed = Signal()

    def is_modified(self) -> bool:
        raise NotImplementedError

    def apply(self) -> str | None:
        """Save the page's values; an error message when they cannot be used (nothing is saved)."""
        raise NotImplementedError


class FoldersPage(_Page):
    """The exclude patterns of each library folder."""

    def __init__(self, session: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.saved: dict[str, tuple[str, ...]] = session.folder_excludes()
        self.edited: dict[str, list[str]] = {path: list(p) for path, p in self.saved.items()}
        self.rescan_paths: list[str] = []
        self.folder_box = QComboBox()
        self.folder_box.addItems(sorted(self.saved))
        self.folder_box.setAccessibleName("Library folder")
        self.patterns = QListWidget()
        self.patterns.setAccessibleName("Excluded in this folder")
        self.pattern_edit = QLineEdit()
        self.pattern_edit.setPlaceholderText("A name (raw*) or a path inside the folder (2019/tmp*)")
        self.pattern_edit.setAccessibleName("Pattern to exclude")
        self.add_button = QPushButton("&Add")
        self.remove_button = QPushButton("&Remove")
        self.error_label = _note()
        self.error_label.setStyleSheet("color: #c0392b")
        self.notice = _note()
        self.rescan_button = QPushButton("Re-scan &now")
        self._layout()
        self._connect()
        self._show_folder()

    def _layout(self) -> None:
        layout = QVBoxLayout(self)
        if not self.saved:
            layout.addWidget(_note("There are no library folders yet: add one first (File ▸ Add folder…)."))
        form = QFormLayout()
        form.addRow("&Folder:", self.folder_box)
        layout.addLayout(form)
        layout.addWidget(QLabel("Skipped when indexing this folder:"))
        layout.addWidget(self.patterns, 1)
        add_row = QHBoxLayout()
        add_row.addWidget(self.pattern_edit, 1)
        add_row.addWidget(self.add_button)
        add_row.addWidget(self.remove_button)
        layout.addLayout(add_row)
        layout.addWidget(self.error_label)
        defaults = ", ".join(DEFAULT_EXCLUDES)
        layout.addWidget(
            _note(
                "Patterns are matched without regard to case; * and ? are wildcards. Always skipped: "
                f"hidden files and folders, and {defaults}."
            )
        )
        notice_row = QHBoxLayout()
        notice_row.addWidget(self.notice, 1)
        notice_row.addWidget(self.rescan_button)
        layout.addLayout(notice_row)
        self.notice.hide()
        self.rescan_button.hide()

    def _connect(self) -> None:
        self.folder_box.currentIndexChanged.connect(self._show_folder)
        self.add_button.clicked.connect(self.add_pattern)
        self.pattern_edit.returnPressed.connect(self.add_pattern)
        self.pattern_edit.textChanged.connect(lambda _t: self.error_label.clear())
        self.remove_button.clicked.connect(self.remove_selected)
        self.patterns.itemSelectionChanged.connect(self._update_buttons)
        self.rescan_button.clicked.connect(self.rescan_now)

    @property
    def folder(self) -> str | None:
        return self.folder_box.currentText() or None

    def _show_folder(self) -> None:
        self.patterns.clear()
        if self.folder is not None:
            self.patterns.addItems(self.edited[self.folder])
        self._update_buttons()

    def _update_buttons(self) -> None:
        has_folder = self.folder is not None
        self.pattern_edit.setEnabled(has_folder)
        self.add_button.setEnabled(has_folder)
        self.remove_button.setEnabled(has_folder and bool(self.patterns.selectedItems()))

    def add_pattern(self, pattern: str | None = None) -> bool:
        """Add ``pattern`` (default: the one typed) to the current folder's list; False, with the
        reason shown, when it cannot be used."""
        folder = self.folder
        text = self.pattern_edit.text() if not isinstance(pattern, str) else pattern
        if folder is None:
            return False
        error = check_pattern(text, self.edited[folder])
        if error:
            self.error_label.setText(error)
            return False
        self.edited[folder].append(text.strip().replace("\\", "/").strip("/"))
        self.pattern_edit.clear()
        self._show_folder()
        self.changed.emit()
        return True

    def remove_selected(self) -> None:
        folder = self.folder
        rows = sorted((self.patterns.row(item) for item in self.patterns.selectedItems()), reverse=True)
        if folder is None or not rows:
            return
        for row in rows:
            del self.edited[folder][row]
        self._show_folder()
        self.changed.emit()

    def changed_folders(self) -> list[str]:
        return [path for path, patterns in self.edited.items() if tuple(patterns) != self.saved[path]]

    def is_modified(self) -> bool:
        return bool(self.changed_folders())

    def apply(self) -> str | None:
        changed = self.changed_folders()
        for path in changed:
            try:
                self.session.set_folder_excludes(path, self.edited[path])
            except Exception as exc:
                logger.warning("could not save the excluded folders of %s: %s", path, exc)
                return f"The excluded folders of {path} could not be saved: {exc}"
            self.saved[path] = tuple(self.edited[path])
        if changed:
            self.rescan_paths = list(dict.fromkeys([*self.rescan_paths, *changed]))
            self.notice.setText(
                "Saved. The next re-scan applies it: photos the patterns skip leave the library, "
                "photos no longer skipped are indexed."
            )
            self.notice.show()
            self.rescan_button.show()
        return None

    def rescan_now(self) -> None:
        """Re-scan the folders whose patterns changed (queued after a scan that runs now)."""
        if not self.rescan_paths:
            return
        self.session.index(self.rescan_paths)
        self.rescan_paths = []
        self.notice.setText("Re-scanning; the library panel shows the progress.")
        self.rescan_button.hide()


class CachePage(_Page):
    """The thumbnail cache: its size limit, its folder, what it holds now, and clearing it."""

    def __init__(
        self, settings: QSettings, thumbnails: Any, pool: WorkerPool, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.thumbnails = thumbnails
        self._pool = pool
        self.saved_limit_mb = read_cache_limit_mb(settings)
        self.saved_dir = read_cache_dir(settings)  # None: the default folder
        self.chosen_dir = self.saved_dir
        self.limit_box = QSpinBox()
        self.limit_box.setRange(CACHE_LIMIT_MB_MIN, CACHE_LIMIT_MB_MAX)
        self.limit_box.setSingleStep(64)
        self.limit_box.setSuffix(" MB")
        self.limit_box.setValue(self.saved_limit_mb)
        self.limit_box.setAccessibleName("Cache size limit")
        self.folder_edit = QLineEdit()
        self.folder_edit.setReadOnly(True)
        self.folder_edit.setAccessibleName("Cache folder")
        self.choose_button = QPushButton("C&hoose…")
        self.default_button = QPushButton("De&fault")
        self.usage_label = _note("Measuring…")
        self.clear_button = QPushButton("&Clear cache")
        self.error_label = _note()
        self.error_label.setStyleSheet("color: #c0392b")
        self.busy = 0  # cache jobs running
        self._layout()
        self.limit_box.valueChanged.connect(lambda _v: self.changed.emit())
        self.choose_button.clicked.connect(self.choose_folder)
        self.default_button.clicked.connect(lambda: self.set_folder(None))
        self.clear_button.clicked.connect(self.clear)
        self._show_folder()
        self.measure()

    def _layout(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("&Size limit:", self.limit_box)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.choose_button)
        folder_row.addWidget(self.default_button)
        form.addRow("Folder:", folder_row)
        usage_row = QHBoxLayout()
        usage_row.addWidget(self.usage_label, 1)
        usage_row.addWidget(self.clear_button)
        form.addRow("In use:", usage_row)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(
            _note(
                "Thumbnails are kept so that results show quickly; the least recently shown go first "
                "when the cache is full. Both settings apply at once: a lower limit prunes the cache, "
                "and a new folder takes the next thumbnails while those in the old folder are deleted. "
                "Clearing the cache deletes only thumbnails; they are made again when shown."
            )
        )
        layout.addStretch(1)

    def folder_in_use(self) -> Path | None:
        """The folder thumbnails go to now (None: the app keeps no cache)."""
        if self.thumbnails is not None:
            return self.thumbnails.cache_dir
        return self.saved_dir or thumbnail_dir()

    def _show_folder(self) -> None:
        shown = self.chosen_dir or thumbnail_dir()
        self.folder_edit.setText(str(shown))
        self.folder_edit.setToolTip(str(shown) + ("" if self.chosen_dir else " (the default folder)"))
        self.default_button.setEnabled(self.chosen_dir is not None)

    def choose_folder(self) -> None:
        start = str(self.chosen_dir or thumbnail_dir())
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the thumbnail cache", start)
        if chosen:
            self.set_folder(Path(chosen))

    def set_folder(self, path: Path | None) -> bool:
        """Choose the cache folder (None: the default one); False, with the reason shown, when it
        cannot hold the cache."""
        error = check_cache_folder(path) if path is not None else None
        if error:
            self.error_label.setText(error)
            return False
        self.error_label.clear()
        self.chosen_dir = None if path is None or path == thumbnail_dir() else path
        self._show_folder()
        self.changed.emit()
        return True

    def is_modified(self) -> bool:
        return self.limit_box.value() != self.saved_limit_mb or self.chosen_dir != self.saved_dir

    def apply(self) -> str | None:
        if self.chosen_dir != self.saved_dir:
            error = self._move_folder()
            if error:
                return error
        limit_mb = self.limit_box.value()
        if limit_mb != self.saved_limit_mb:
            self.settings.setValue(CACHE_LIMIT_KEY, limit_mb)
            self.saved_limit_mb = limit_mb
            if self.thumbnails is not None:
                self.thumbnails.cache_limit = limit_mb * MB
            folder = self.folder_in_use()
            if folder is not None:
                self._run(prune_cache, folder, limit_mb * MB)
        return None

    def _move_folder(self) -> str | None:
        new = self.chosen_dir or thumbnail_dir()
        error = check_cache_folder(new)
        if error is None:
            try:
                new.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                error = f"The folder {new} cannot be made: {exc.strerror or exc}."
        if error:
            self.error_label.setText(error)
            return error
        if self.chosen_dir is None:
            self.settings.remove(CACHE_DIR_KEY)
        else:
            self.settings.setValue(CACHE_DIR_KEY, str(self.chosen_dir))
        old = self.folder_in_use()
        self.saved_dir = self.chosen_dir
        if self.thumbnails is not None:
            self.thumbnails.cache_dir = new
            if old is not None and old != new:
                self._run(clear_cache, old)
        self.measure()
        return None

    def clear(self) -> None:
        """Delete the thumbnails of the cache in use (in the background)."""
        folder = self.folder_in_use()
        if folder is not None:
            self.clear_button.setEnabled(False)
            self.usage_label.setText("Clearing…")
            self._run(clear_cache, folder)

    def measure(self) -> None:
        """Show what the cache in use holds (measured in the background)."""
        folder = self.folder_in_use()
        if folder is None:
            self.usage_label.setText("Thumbnails are not cached on disk.")
            self.clear_button.setEnabled(False)
            return
        worker = Worker(cache_usage, folder)
        worker.returned.connect(self._show_usage)
        self._pool.start(worker)

    def _show_usage(self, usage: tuple[int, int]) -> None:
        files, size = usage
        plural = "" if files == 1 else "s"
        self.usage_label.setText(f"{format_size(size)} in {files:,} thumbnail{plural}")
        self.clear_button.setEnabled(self.busy == 0 and files > 0)

    def _run(self, job: Callable[..., Any], *args: Any) -> None:
        """Run a cache job in the background, then measure the cache again."""
        self.busy += 1
        worker = Worker(job, *args)
        worker.finished.connect(self._job_done)
        self._pool.start(worker)

    def _job_done(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.measure()


class DevicePage(_Page):
    """Where the model runs: chosen automatically, the CPU, or a GPU this computer has."""

    def __init__(
        self,
        settings: QSettings,
        pool: WorkerPool,
        probe: Callable[[], dict[str, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.saved = read_device(settings)
        self.device_box = QComboBox()
        self.device_box.setAccessibleName("Device")
        self.gpu_label = _note("Looking for a GPU…")
        self._fill({}, probed=False)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("&Run the model on:", self.device_box)
        layout.addLayout(form)
        layout.addWidget(self.gpu_label)
        layout.addWidget(
            _note(
                "Applies the next time LadderLens starts. A GPU searches and indexes faster; the CPU "
                "leaves the GPU to other programs. Should a chosen GPU be missing, the device is "
                "chosen automatically."
            )
        )
        layout.addStretch(1)
        self.device_box.currentIndexChanged.connect(lambda _i: self.changed.emit())
        worker = Worker(probe)
        worker.returned.connect(self._on_probed)
        worker.errored.connect(lambda exc: self._on_probed({}, str(exc)))
        pool.start(worker)

    def _fill(self, found: dict[str, str], probed: bool = True) -> None:
        """List automatic, the CPU, each GPU found, and the saved choice even when not found."""
        current = self.device_box.currentData() or self.saved
        self.device_box.blockSignals(True)
        self.device_box.clear()
        for device, label in DEVICE_LABELS.items():
            if device in ("auto", "cpu") or device in found:
                self.device_box.addItem(label, device)
            elif device == current:
                missing = " — not found on this computer" if probed else ""
                self.device_box.addItem(label + missing, device)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(current)))
        self.device_box.blockSignals(False)

    def _on_probed(self, found: dict[str, str], error: str = "") -> None:
        self._fill(found)
        if found:
            self.gpu_label.setText("Found: " + ", ".join(found.values()) + ".")
        else:
            reason = f" ({error})" if error else ""
            self.gpu_label.setText(f"No GPU found{reason}: the model runs on the CPU.")

    @property
    def device(self) -> str:
        return self.device_box.currentData() or "auto"

    def is_modified(self) -> bool:
        return self.device != self.saved

    def apply(self) -> str | None:
        self.settings.setValue(DEVICE_KEY, self.device)
        self.saved = self.device
        return None


class ThemePage(_Page):
    """The app's look: the system's, light or dark."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.saved = read_theme(settings)
        self.theme_box = QComboBox()
        self.theme_box.setAccessibleName("Theme")
        for theme, label in THEME_LABELS.items():
            self.theme_box.addItem(label, theme)
        self.theme_box.setCurrentIndex(self.theme_box.findData(self.saved))
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("&Theme:", self.theme_box)
        layout.addLayout(form)
        layout.addWidget(_note("Applies at once. System follows the look of your desktop."))
        layout.addStretch(1)
        self.theme_box.currentIndexChanged.connect(lambda _i: self.changed.emit())

    @property
    def theme(self) -> str:
        return self.theme_box.currentData()

    def is_modified(self) -> bool:
        return self.theme != self.saved

    def apply(self) -> str | None:
        self.settings.setValue(THEME_KEY, self.theme)
        self.saved = self.theme
        apply_theme(self.theme)
        return None


# ---------------------------------------------------------------------- the dialog


class SettingsDialog(QDialog):
    """Settings with OK, Cancel and Apply. ``rescan_offered`` carries the folders whose excludes
    were saved when OK closed the dialog without re-scanning them."""

    rescan_offered = Signal(list)

    def __init__(
        self,
        session: Any,
        settings: QSettings,
        thumbnails: Any = None,
        parent: QWidget | None = None,
        *,
        gpu_probe: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """Args:
        gpu_probe: Finds the GPUs (run in a worker); by default :func:`probe_gpus`.
        """
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        # Without a parent: a pool outlives the dialog until its workers' last signals are delivered
        # (a pool deleted with the dialog would miss them).
        self._pool = WorkerPool(max_threads=1, name="settings: thumbnail cache")
        self._probe_pool = WorkerPool(max_threads=1, name="settings: GPU check")
        self.folders_page = FoldersPage(session)
        self.cache_page = CachePage(settings, thumbnails, self._pool)
        self.device_page = DevicePage(settings, self._probe_pool, gpu_probe or probe_gpus)
        self.theme_page = ThemePage(settings)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.folders_page, "&Excluded folders")
        self.tabs.addTab(self.cache_page, "T&humbnail cache")
        self.tabs.addTab(self.device_page, "&Device")
        self.tabs.addTab(self.theme_page, "Th&eme")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
        )
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.buttons)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.clicked.connect(self._on_clicked)
        for page in self.pages:
            page.changed.connect(self._update_apply)
        self._update_apply()
        self.resize(620, 480)

    @property
    def pages(self) -> list[_Page]:
        return [self.folders_page, self.cache_page, self.device_page, self.theme_page]

    def _update_apply(self) -> None:
        self.apply_button.setEnabled(any(page.is_modified() for page in self.pages))

    def _on_clicked(self, button: QAbstractButton) -> None:
        if button is self.apply_button:
            self.apply()

    def apply(self) -> bool:
        """Save every page's changes; False (showing the page at fault) when one cannot be used."""
        for page in self.pages:
            if page.is_modified() and page.apply() is not None:
                self.tabs.setCurrentWidget(page)
                self._update_apply()
                return False
        self.settings.sync()
        self._update_apply()
        return True

    def accept(self) -> None:
        if not self.apply():
            return
        pending = self.folders_page.rescan_paths
        if pending and self._ask_rescan():
            self.folders_page.rescan_now()
        elif pending:
            self.rescan_offered.emit(list(pending))
        super().accept()

    def _ask_rescan(self) -> bool:
        answer = QMessageBox.question(
            self,
            "Excluded folders",
            "The excluded folders apply at the next re-scan. Re-scan the changed folders now?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def done(self, result: int) -> None:
        """Close; the cache jobs and the GPU check still running finish first (they are short)."""
        self._pool.wait_for_done(30_000)
        self._probe_pool.wait_for_done(30_000)
        super().done(result)
