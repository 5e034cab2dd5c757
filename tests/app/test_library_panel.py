"""The library panel's tables: refreshes update what changed and keep the selection."""

from __future__ import annotations

from types import SimpleNamespace

from PySide6.QtCore import Qt

from app.library_panel import LibraryPanel


def _folder(path: str, photos: int, indexed: int | None = None, state: str = "online", failures: int = 0):
    return SimpleNamespace(
        path=path,
        photos=photos,
        indexed=photos if indexed is None else indexed,
        failures=failures,
        state=state,
        last_scan=None,
    )


def _failure(path: str, reason: str):
    return SimpleNamespace(path=path, reason=reason)


def test_a_refresh_of_the_same_folders_updates_counts_and_keeps_the_selection(qtbot):
    panel = LibraryPanel()
    qtbot.addWidget(panel)
    panel.show()
    model = panel.folders_model
    panel.set_folders([_folder("/photos/trips", 10, 4), _folder("/photos/family", 3)])
    assert model.paths() == ["/photos/trips", "/photos/family"]
    assert [model.index(0, c).data() for c in range(4)] == ["trips", "4 / 10", "0", "online"]
    panel.folders_view.selectRow(1)
    assert panel.selected_folder() == "/photos/family"

    resets = []
    model.modelReset.connect(lambda: resets.append("reset"))
    model.rowsRemoved.connect(lambda *a: resets.append("removed"))
    panel.set_folders([_folder("/photos/trips", 10, 9), _folder("/photos/family", 3, state="offline")])
    assert resets == []
    assert model.index(0, 1).data() == "9 / 10"
    assert model.index(1, 3).data() == "offline"
    assert model.index(1, 0).data(Qt.ItemDataRole.ForegroundRole) is not None  # offline in colour
    assert "cannot be reached" in model.index(1, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert panel.selected_folder() == "/photos/family"

    # Another set of folders replaces the rows.
    panel.set_folders([_folder("/photos/new", 1)])
    assert model.rowCount() == 1 and model.paths() == ["/photos/new"] and panel.selected_folder() is None
    assert model.index(0, 1).data(Qt.ItemDataRole.TextAlignmentRole) == int(
        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    )


def test_failures_are_listed_and_an_unchanged_list_is_left_alone(qtbot):
    panel = LibraryPanel()
    qtbot.addWidget(panel)
    panel.show()
    model = panel.failures_model
    failures = [_failure("/p/a.jpg", "not an image"), _failure("/p/b.jpg", "empty file")]
    panel.set_failures(failures)
    assert model.reasons() == {"/p/a.jpg": "not an image", "/p/b.jpg": "empty file"}
    assert [model.index(1, c).data() for c in range(2)] == ["b.jpg", "empty file"]
    assert model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole) == "/p/a.jpg\nnot an image"
    assert "(2)" in panel.failures_box.title() and not panel.failures_box.isHidden()
    changes = []
    model.rowsRemoved.connect(lambda *a: changes.append("removed"))
    model.rowsInserted.connect(lambda *a: changes.append("inserted"))
    panel.set_failures(list(failures))
    assert changes == []
    panel.set_failures(failures[:1])
    assert model.rowCount() == 1 and changes
    panel.set_failures([])
    assert model.rowCount() == 0 and panel.failures_box.isHidden()


def test_tab_leaves_the_folders_table(qtbot):
    panel = LibraryPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_folders([_folder("/photos/trips", 10, 4), _folder("/photos/family", 3)])
    panel.folders_view.setFocus()
    panel.folders_view.selectRow(0)
    qtbot.waitUntil(panel.folders_view.hasFocus)
    qtbot.keyClick(panel.folders_view, Qt.Key.Key_Down)  # arrows move within the table
    assert panel.selected_folder() == "/photos/family" and panel.folders_view.hasFocus()
    qtbot.keyClick(panel.folders_view, Qt.Key.Key_Tab)
    assert not panel.folders_view.hasFocus()  # on to the next control, not the next cell
