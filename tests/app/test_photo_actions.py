"""Acting on the selected photos: copy paths, export copies, drag out, tag, show folders."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog

from app.photo_actions import ExportReport, export_files, folders_of, free_name, parse_tags
from tests.app.conftest import wait_indexed
from tests.app.test_main_window import _index_folder, _search_typed


def test_export_never_overwrites_and_reports_failures(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    first, second = src / "a" / "IMG_1.jpg", src / "b" / "IMG_1.jpg"  # the same name twice
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "IMG_1.jpg").write_bytes(b"already there")
    gen = export_files([str(first), str(second), str(src / "gone.jpg")], str(dest))
    progress = []
    try:
        while True:
            progress.append(next(gen))
    except StopIteration as stop:
        report: ExportReport = stop.value
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert (dest / "IMG_1.jpg").read_bytes() == b"already there"  # untouched
    assert (dest / "IMG_1 (2).jpg").read_bytes() == b"one" and (dest / "IMG_1 (3).jpg").read_bytes() == b"two"
    assert len(report.copied) == 2 and report.failed[0][0].endswith("gone.jpg")
    assert report.text(str(dest)).startswith(f"Copied 2 photos to {dest}; 1 could not be copied")
    assert free_name(dest, "new.jpg") == dest / "new.jpg"
    assert folders_of(["/a/1.jpg", "/b/2.jpg", "/a/3.jpg"]) == ["/a", "/b"]
    assert parse_tags(" beach, , summer 2023 ,") == ["beach", "summer 2023"]


def test_selection_actions_in_the_window(window, photos, qtbot, tmp_path, monkeypatch):
    _index_folder(qtbot, window, photos)
    wait_indexed(qtbot, window)
    _search_typed(qtbot, window, "red car")
    view, model, actions = window.results_view, window.results_model, window.photo_actions
    rows = model.photo_rows()[:3]
    view.select_photos([model.row(r).photo_id for r in rows], model.row(rows[0]).photo_id)
    chosen = actions.selected()
    assert [pid for pid, _ in chosen] == [model.row(r).photo_id for r in rows]
    assert actions.copy_action.isEnabled() and not actions.like_action.isEnabled()  # like: one photo

    # Copy paths: files for a file manager, lines of text for anything else.
    view.setFocus()
    actions.copy_paths()
    mime = QGuiApplication.clipboard().mimeData()
    assert mime.text().splitlines() == [p for _, p in chosen]
    assert [u.toLocalFile() for u in mime.urls()] == [p for _, p in chosen]

    # Dragging the selection out carries the same files.
    dragged = model.mimeData([model.index(r) for r in rows])
    assert [u.toLocalFile() for u in dragged.urls()] == [p for _, p in chosen]
    assert model.flags(model.index(rows[0])) & Qt.ItemFlag.ItemIsDragEnabled

    # Export copies, in a worker.
    dest = tmp_path / "export"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(dest))
    with qtbot.waitSignal(
        actions.message, check_params_cb=lambda text: text.startswith("Copied"), timeout=10_000
    ):
        actions.export_action.trigger()
    assert sorted(p.name for p in dest.iterdir()) == sorted(Path(p).name for _, p in chosen)

    # Show in folder opens each folder once.
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    actions.folder_action.trigger()
    assert opened == list(dict.fromkeys(str(Path(p).parent) for _, p in chosen))

    # Tag the selection: every photo gets the tags (read back from the library).
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("road trip, red", True))
    with qtbot.waitSignal(window.session.tags_changed, timeout=10_000):
        actions.tag_action.trigger()
    library = window.session.library
    for pid, _ in chosen:
        assert {"road trip", "red"} <= set(library.photo_tags(pid).given)

    # The context menu holds the actions; right-clicking a photo outside the selection selects it.
    other = model.photo_rows()[5]
    menu = actions.show_menu(view.visualRect(model.index(other)).center())
    assert [a.text() for a in menu.actions() if a.text()][:2] == ["&View full size", "&Copy paths"]
    menu.close()
    assert actions.selected() == [(model.row(other).photo_id, model.row(other).path)]
    assert actions.like_action.isEnabled()
    actions.like_action.trigger()
    want = model.row(other).photo_id
    qtbot.waitUntil(lambda: window.last_request.like_photo_id == want, timeout=10_000)


def test_copied_paths_do_not_crash_the_exit(tmp_path):
    """Copy paths, then exit as the app does: a process-only clipboard is emptied first (Qt would
    free the copied data after Python has finished and crash the process)."""
    import subprocess
    import sys

    script = (
        "from PySide6.QtWidgets import QApplication\n"
        "from PySide6.QtGui import QGuiApplication\n"
        "from app.photo_actions import release_in_process_clipboard\n"
        "from app.results_model import paths_mime\n"
        "app = QApplication([])\n"
        "QGuiApplication.clipboard().setMimeData(paths_mime(['/photos/a.jpg']))\n"
        "assert QGuiApplication.clipboard().text() == '/photos/a.jpg'\n"
        "assert release_in_process_clipboard()\n"
        "assert QGuiApplication.clipboard().text() == ''\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
