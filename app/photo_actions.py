"""What can be done with the photos selected in the results: view, copy their paths, export copies,
show their folders, tag them, search like or not like one of them.

The actions live in the window's *Photos* menu and in the grid's context menu, and act on the
selection (or the photo under the pointer when nothing is selected). Exporting copies files in the
worker pool, never overwriting: a name already taken in the destination gets " (2)", " (3)"...
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QWidget

from app.results_model import paths_mime
from app.workers import Worker, WorkerPool

MAX_FOLDERS_OPENED = 5  # "Show in folder" on a selection from many folders opens at most these

# Platforms without a system clipboard: Qt keeps their clipboard in a static of its own, inside this
# process, which it destroys after Python has finished; mime data made in Python crashes it then.
IN_PROCESS_CLIPBOARD_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "linuxfb", "eglfs"})


def release_in_process_clipboard() -> bool:
    """Empty the clipboard where it lives only in this process (nothing outside can read it, so
    nothing is lost), while Python can still free what was copied; call before the app exits.

    Returns whether it was emptied. On a desktop's clipboard it does nothing: what the user copied
    stays pasteable after the app quits.
    """
    app = QGuiApplication.instance()
    if app is None or QGuiApplication.platformName() not in IN_PROCESS_CLIPBOARD_PLATFORMS:
        return False
    QGuiApplication.clipboard().clear()
    return True


@dataclass
class ExportReport:
    copied: list[str] = field(default_factory=list)  # destination paths
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    def text(self, dest: str) -> str:
        n = len(self.copied)
        text = f"Copied {n} photo{'s' if n != 1 else ''} to {dest}"
        if self.failed:
            text += f"; {len(self.failed)} could not be copied ({self.failed[0][1]}, …)"
        return text + "."


def free_name(dest: Path, name: str) -> Path:
    """``dest / name``, or ``name (2)``, ``name (3)``... when it is taken."""
    target = dest / name
    stem, suffix = os.path.splitext(name)
    n = 2
    while target.exists():
        target = dest / f"{stem} ({n}){suffix}"
        n += 1
    return target


def export_files(paths: Sequence[str], dest: str) -> Generator[tuple[int, int], None, ExportReport]:
    """Copy ``paths`` into the folder ``dest`` (created if needed), never overwriting; yields
    (done, total) after each file, a cancellation point."""
    report = ExportReport()
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for done, source in enumerate(paths, 1):
        try:
            target = free_name(folder, os.path.basename(source))
            shutil.copy2(source, target)
            report.copied.append(str(target))
        except OSError as e:
            report.failed.append((source, (e.strerror or str(e)).lower()))
        yield done, len(paths)
    return report


def folders_of(paths: Sequence[str]) -> list[str]:
    """The distinct folders of ``paths``, in their order."""
    return list(dict.fromkeys(os.path.dirname(p) for p in paths))


def parse_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class PhotoActions(QObject):
    """The actions on the selected photos, for a window with ``results_view``, ``results_model``,
    ``session``, ``open_viewer``, ``search_like_photo`` and ``search_not_like_photo``."""

    message = Signal(str)  # a line for the status bar

    def __init__(self, window: QWidget, pool: WorkerPool | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.pool = pool or WorkerPool(max_threads=1, parent=self, name="export")
        self.view_action = self._action("&View full size", self._view)  # Enter or Space in the grid
        self.copy_action = self._action("&Copy paths", self.copy_paths, QKeySequence.StandardKey.Copy)
        self.export_action = self._action("&Export copies…", self.export_dialog)
        self.folder_action = self._action("Show in &folder", self.show_in_folder)
        self.tag_action = self._action("&Tag…", self.tag_dialog)
        self.like_action = self._action("More &like this", self._like)
        self.unlike_action = self._action("&Not like this", self._unlike)
        # Shortcuts of these apply in the grid only (Space and Ctrl+C mean other things elsewhere).
        for action in (self.view_action, self.copy_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            window.results_view.addAction(action)
        window.results_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        window.results_view.customContextMenuRequested.connect(self.show_menu)
        window.results_view.selectionModel().selectionChanged.connect(self.update_enabled)
        window.results_model.modelReset.connect(self.update_enabled)
        self.update_enabled()

    def _action(self, text: str, slot: Callable[[], object], shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    @property
    def actions(self) -> list[QAction]:
        return [
            self.view_action,
            self.copy_action,
            self.export_action,
            self.folder_action,
            self.tag_action,
            self.like_action,
            self.unlike_action,
        ]

    # ------------------------------------------------------------------ the selection

    def selected(self) -> list[tuple[int, str]]:
        """(photo id, path) of the selected photos in grid order; the current one when none is."""
        view, model = self.window.results_view, self.window.results_model
        ids = set(view.selected_photo_ids())
        current = view.current_photo_id()
        if not ids and current is not None:
            ids = {current}
        rows = (model.row(i) for i in model.photo_rows())
        return [(r.photo_id, r.path) for r in rows if r.photo_id in ids]

    def update_enabled(self, *_args) -> None:
        n = len(self.selected())
        for action in self.actions:
            action.setEnabled(n > 0)
        for action in (self.like_action, self.unlike_action):
            action.setEnabled(n == 1)  # an example is one photo

    def show_menu(self, pos: QPoint) -> QMenu:
        view = self.window.results_view
        index = view.indexAt(pos)
        if index.isValid() and not view.selectionModel().isSelected(index):
            view.setCurrentIndex(index)  # right-clicking a photo outside the selection selects it
        self.update_enabled()
        menu = QMenu(view)
        menu.addActions(self.actions[:5])
        menu.addSeparator()
        menu.addActions(self.actions[5:])
        menu.popup(view.viewport().mapToGlobal(pos))
        return menu

    # ------------------------------------------------------------------ actions

    def _view(self) -> None:
        chosen = self.selected()
        if chosen:
            self.window.open_viewer(chosen[0][0])

    def copy_paths(self) -> list[str]:
        paths = [p for _, p in self.selected()]
        if paths:
            QGuiApplication.clipboard().setMimeData(paths_mime(paths))
            self.message.emit(f"Copied {len(paths)} path{'s' if len(paths) != 1 else ''}.")
        return paths

    def export_dialog(self) -> None:
        paths = [p for _, p in self.selected()]
        if not paths:
            return
        dest = QFileDialog.getExistingDirectory(self.window, f"Export copies of {len(paths)} photos to")
        if dest:
            self.export(paths, dest)

    def export(self, paths: Sequence[str], dest: str) -> Worker:
        worker = Worker(export_files, list(paths), dest)
        worker.yielded.connect(lambda p: self.message.emit(f"Exporting… {p[0]} of {p[1]}"))
        worker.returned.connect(lambda report: self.message.emit(report.text(dest)))
        worker.errored.connect(lambda exc: self.message.emit(f"Could not export to {dest}: {exc}"))
        return self.pool.start(worker)

    def show_in_folder(self) -> list[str]:
        folders = folders_of([p for _, p in self.selected()])[:MAX_FOLDERS_OPENED]
        for folder in folders:
            QDesktopServices.openUrl(QUrl.fromLocalFile(folder))
        return folders

    def tag_dialog(self) -> None:
        chosen = self.selected()
        if not chosen:
            return
        text, ok = QInputDialog.getText(
            self.window,
            "Tag photos",
            f"Tags for {len(chosen)} photo{'s' if len(chosen) != 1 else ''} (comma separated):",
        )
        if ok:
            self.tag([pid for pid, _ in chosen], parse_tags(text))

    def tag(self, photo_ids: Sequence[int], tags: Sequence[str]) -> None:
        if photo_ids and tags:
            self.window.session.tag_photos(photo_ids, tags)
            self.message.emit(
                f"Tagged {len(photo_ids)} photo{'s' if len(photo_ids) != 1 else ''}: {', '.join(tags)}"
            )

    def _like(self) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            self.window.search_like_photo(chosen[0][0])

    def _unlike(self) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            self.window.search_not_like_photo(chosen[0][0])
