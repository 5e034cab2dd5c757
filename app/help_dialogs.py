"""Help ▸ Keyboard shortcuts and Help ▸ About."""

from __future__ import annotations

from importlib import metadata

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# (keys, what they do), grouped by where they work
SHORTCUTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Anywhere",
        (
            ("Ctrl+F", "Go to the search box"),
            ("Ctrl+Shift+L", "Show or hide the library panel"),
            ("Ctrl+Shift+T", "Show or hide the tier inspector"),
            ("Ctrl+I", "Show or hide the photo details"),
            ("Ctrl+Shift+F", "Show or hide the filters (folder, days taken)"),
            ("Ctrl+Shift+A", "Show every photo while nothing is searched"),
            ("F5", "Re-scan the library folders"),
            ("Tab / Shift+Tab", "Move between the search box, the inspector, the results and the panels"),
        ),
    ),
    (
        "Search box",
        (
            ("Enter", "Search now"),
            ("Down", "Go to the results"),
            ("Esc", "Clear the search"),
        ),
    ),
    (
        "Results",
        (
            ("Arrows", "Move between photos"),
            ("Enter, Space or double click", "Show the photo full size"),
            ("Ctrl+A / Shift+arrows", "Select photos"),
            ("Ctrl+C", "Copy the selected photos' paths (paste them as files or as text)"),
            ("Right click", "What can be done with the selected photos (also the Photos menu)"),
            ("Esc", "Show every tier again, then clear the search"),
        ),
    ),
    (
        "Tier inspector",
        (
            ("Left / Right", "Show one tier alone: the previous or next"),
            ("Home or Esc", "Show every tier"),
            ("End", "Show only the last tier"),
        ),
    ),
    (
        "Full-size viewer",
        (
            ("Left / Right, Page Up / Page Down", "Previous or next photo"),
            ("Home / End", "First or last photo"),
            ("+ / − or Ctrl+wheel", "Zoom in or out"),
            ("0 / 1", "Fit to the window / full size"),
            ("Esc or Space", "Back to the results"),
        ),
    ),
)


def app_version() -> str:
    try:
        return metadata.version("ladderlens")
    except metadata.PackageNotFoundError:
        return "(not installed)"


class ShortcutsDialog(QDialog):
    """A table of every keyboard shortcut, by where it works."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [(where, keys, does) for where, items in SHORTCUTS for keys, does in items]
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "What it does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        _lay_out_with_close(self, self.table, 640, 460)


def about_text(model: str, library: str, log_file: str | None) -> str:
    """The About box's text (rich text; paths as given)."""
    lines = [
        f"<h3>LadderLens {app_version()}</h3>",
        "<p>Search your photos by describing them. Results come in tiers, best matches first; when "
        "nothing matches exactly you see the nearest alternatives, in order.</p>",
        f"<p><b>Model:</b> {_escape(model)}<br><b>Library:</b> {_escape(library)}",
    ]
    if log_file:
        lines.append(f"<br><b>Log file:</b> {_escape(log_file)}")
    lines.append("</p><p>Everything stays on this computer: no photo or query leaves it.</p>")
    return "".join(lines)


class AboutDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About LadderLens")
        self.label = QLabel(text)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        _lay_out_with_close(self, self.label, 480, 260)


def _lay_out_with_close(dialog: QDialog, body: QWidget, width: int, height: int) -> None:
    """``body`` above a Close button, in a dialog of the given starting size."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(body)
    layout.addWidget(buttons)
    dialog.resize(width, height)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
