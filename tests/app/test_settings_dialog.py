"""The Settings dialog: excluded folders, the thumbnail cache, the device and the theme are saved,
read back, validated and applied when the dialog says they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMessageBox

from app.app_settings import (
    CACHE_DIR_KEY,
    CACHE_LIMIT_KEY,
    CACHE_LIMIT_MB_DEFAULT,
    DEVICE_KEY,
    THEME_KEY,
    apply_theme,
    library_device,
    read_cache_dir,
    read_cache_limit_mb,
    read_device,
    read_theme,
    settings_at,
)
from app.session import LibrarySession
from app.settings_dialog import SettingsDialog, check_cache_folder, check_pattern
from app.thumbnails import ThumbnailLoader, cache_key, thumbnail_dir
from tests.app.conftest import BATCH, small_image

MB = 1 << 20


@pytest.fixture
def folder(tmp_path) -> Path:
    """A library folder: two photos at its top, one in raw/ and one in 2019/tmp-export/."""
    root = tmp_path / "pictures"
    for rel, color in [
        ("a.jpg", (200, 30, 30)),
        ("b.jpg", (30, 200, 30)),
        ("raw/c.jpg", (30, 30, 200)),
        ("2019/tmp-export/d.jpg", (200, 200, 30)),
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        small_image(root / rel, color)
    return root


@pytest.fixture
def session(library, folder, qtbot):
    library.add_folder(folder)
    session = LibrarySession(library, index_options={"batch_size": BATCH, "workers": 1})
    yield session
    assert session.close(30_000)


@pytest.fixture
def settings(tmp_path):
    return settings_at(tmp_path / "settings.ini")


@pytest.fixture
def loader(tmp_path):
    loader = ThumbnailLoader(cache_dir=tmp_path / "thumbs", threads=1)
    yield loader
    assert loader.shutdown(30_000)


@pytest.fixture
def make_dialog(qtbot, session, settings, loader):
    def make(probe=dict, thumbnails=loader) -> SettingsDialog:
        dialog = SettingsDialog(session, settings, thumbnails, gpu_probe=probe)
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(lambda: "Looking" not in dialog.device_page.gpu_label.text())
        qtbot.waitUntil(lambda: dialog.cache_page.usage_label.text() != "Measuring…")
        return dialog

    return make


@pytest.fixture
def platform_look():
    """The app's palette before the test; the system theme is restored after it."""
    before = QPalette(QApplication.palette())
    yield before
    apply_theme("system")


def _thumbnails(cache: Path, count: int, size: int = 100) -> list[Path]:
    """``count`` cache files named as the loader names them, oldest first."""
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = cache / cache_key(f"/photos/{i}.jpg", 1, 1, 256)
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: a large size costs no disk
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        files.append(path)
    return files


def _apply(dialog: SettingsDialog) -> None:
    assert dialog.apply_button.isEnabled()
    dialog.apply_button.click()


# ---------------------------------------------------------------------- values read back


def test_bad_stored_values_fall_back_with_a_warning(tmp_path, caplog):
    path = tmp_path / "bad.ini"
    path.write_text(
        "[appearance]\ntheme=purple\n[engine]\ndevice=@Rect(1 2 3 4)\n"
        "[thumbnails]\ncache_limit_mb=lots\ncache_dir=relative/thumbs\n"
    )
    with caplog.at_level("WARNING"):
        settings = settings_at(path)
        assert read_theme(settings) == "system"
        assert read_device(settings) == "auto"
        assert read_cache_limit_mb(settings) == CACHE_LIMIT_MB_DEFAULT
        assert read_cache_dir(settings) is None
    for key in ("appearance/theme", "engine/device", "thumbnails/cache_limit_mb", "thumbnails/cache_dir"):
        assert f"ignoring the setting {key}" in caplog.text


def test_out_of_range_limits_are_clamped_and_missing_values_are_the_defaults(tmp_path, caplog):
    settings = settings_at(tmp_path / "s.ini")
    assert (read_theme(settings), read_device(settings)) == ("system", "auto")
    assert read_cache_limit_mb(settings) == CACHE_LIMIT_MB_DEFAULT and read_cache_dir(settings) is None
    settings.setValue(CACHE_LIMIT_KEY, 10)
    with caplog.at_level("WARNING"):
        assert read_cache_limit_mb(settings) == 64
    settings.setValue(CACHE_LIMIT_KEY, "1000000")
    assert read_cache_limit_mb(settings) == 8192
    settings.setValue(THEME_KEY, " Dark ")
    assert read_theme(settings) == "dark"
    assert "outside 64-8192" in caplog.text


def test_every_setting_is_saved_and_read_back(make_dialog, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    dialog = make_dialog(probe=lambda: {"cuda": "1 CUDA GPU"})
    assert not dialog.apply_button.isEnabled()  # nothing changed yet
    dialog.device_page.device_box.setCurrentIndex(dialog.device_page.device_box.findData("cuda"))
    dialog.theme_page.theme_box.setCurrentIndex(dialog.theme_page.theme_box.findData("light"))
    dialog.cache_page.limit_box.setValue(1024)
    assert dialog.cache_page.set_folder(tmp_path / "new-thumbs")
    assert dialog.folders_page.add_pattern("raw")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert not dialog.isVisible()

    reread = settings_at(tmp_path / "settings.ini")
    assert read_device(reread) == "cuda" and read_theme(reread) == "light"
    assert read_cache_limit_mb(reread) == 1024 and read_cache_dir(reread) == tmp_path / "new-thumbs"
    again = make_dialog(probe=lambda: {"cuda": "1 CUDA GPU"})
    assert again.device_page.device == "cuda" and again.theme_page.theme == "light"
    assert again.cache_page.limit_box.value() == 1024
    assert again.cache_page.folder_edit.text() == str(tmp_path / "new-thumbs")
    assert again.folders_page.edited[again.folders_page.folder] == ["raw"]
    apply_theme("system")


def test_cancel_saves_nothing(make_dialog, settings, platform_look):
    dialog = make_dialog()
    dialog.theme_page.theme_box.setCurrentIndex(dialog.theme_page.theme_box.findData("dark"))
    dialog.cache_page.limit_box.setValue(128)
    dialog.folders_page.add_pattern("raw")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
    assert settings.value(THEME_KEY) is None and settings.value(CACHE_LIMIT_KEY) is None
    assert QApplication.palette() == platform_look
    assert dialog.folders_page.session.folder_excludes() == {dialog.folders_page.folder: ()}


def test_the_dialog_fits_an_800_by_600_screen(make_dialog):
    dialog = make_dialog()
    for hint in (dialog.minimumSizeHint(), dialog.sizeHint(), dialog.size()):
        assert hint.width() <= 800 and hint.height() <= 600, hint


# ---------------------------------------------------------------------- theme


def test_the_theme_is_applied_to_the_application_at_once(make_dialog, settings, platform_look, qtbot):
    dialog = make_dialog()
    box = dialog.theme_page.theme_box
    box.setCurrentIndex(box.findData("dark"))
    _apply(dialog)
    palette = QApplication.palette()
    assert palette.color(QPalette.ColorRole.Window).lightness() < 80
    assert palette.color(QPalette.ColorRole.WindowText).lightness() > 180
    assert QApplication.style().name().lower() == "fusion"
    dark_window = palette.color(QPalette.ColorRole.Window)
    qtbot.waitUntil(lambda: dialog.palette().color(QPalette.ColorRole.Window) == dark_window)
    assert settings.value(THEME_KEY) == "dark"

    box.setCurrentIndex(box.findData("light"))
    _apply(dialog)
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 180

    box.setCurrentIndex(box.findData("system"))
    _apply(dialog)
    assert QApplication.palette() == platform_look  # the platform's own palette again
    assert settings.value(THEME_KEY) == "system"


# ---------------------------------------------------------------------- device


def test_the_device_lists_the_gpus_found_and_is_saved_for_the_next_start(make_dialog, settings):
    dialog = make_dialog(probe=lambda: {"cuda": "1 CUDA GPU"})
    box = dialog.device_page.device_box
    assert [box.itemData(i) for i in range(box.count())] == ["auto", "cpu", "cuda"]
    assert "1 CUDA GPU" in dialog.device_page.gpu_label.text()
    box.setCurrentIndex(box.findData("cpu"))
    _apply(dialog)
    assert settings.value(DEVICE_KEY) == "cpu"
    assert library_device(settings, probe=dict) == "cpu"


def test_without_a_gpu_cuda_is_not_offered_and_a_saved_cuda_falls_back_at_start(
    make_dialog, settings, caplog
):
    dialog = make_dialog(probe=dict)
    box = dialog.device_page.device_box
    assert [box.itemData(i) for i in range(box.count())] == ["auto", "cpu"]
    assert "No GPU found" in dialog.device_page.gpu_label.text()
    dialog.reject()

    settings.setValue(DEVICE_KEY, "cuda")
    dialog = make_dialog(probe=dict)
    box = dialog.device_page.device_box
    assert dialog.device_page.device == "cuda"  # the saved choice is shown, marked missing
    assert "not found" in box.currentText()
    with caplog.at_level("WARNING"):
        assert library_device(settings, probe=dict) is None
    assert "not available here" in caplog.text
    assert library_device(settings, probe=lambda: {"cuda": "GPU"}) == "cuda"
    settings.setValue(DEVICE_KEY, "auto")
    assert library_device(settings, probe=lambda: {"cuda": "GPU"}) is None


def test_the_gpu_check_runs_in_the_background(make_dialog, qtbot):
    import threading

    seen = []

    def probe():
        seen.append(threading.current_thread() is threading.main_thread())
        return {}

    make_dialog(probe=probe)
    assert seen == [False]


# ---------------------------------------------------------------------- thumbnail cache


def test_the_cache_limit_is_used_by_pruning(make_dialog, loader, settings):
    files = _thumbnails(loader.cache_dir, 3, size=40 * MB)
    dialog = make_dialog()
    page = dialog.cache_page
    assert "120.0 MB in 3 thumbnails" in page.usage_label.text()
    page.limit_box.setValue(64)
    _apply(dialog)
    assert settings.value(CACHE_LIMIT_KEY) == 64
    assert loader.cache_limit == 64 * MB  # the loader's own pruning keeps to it from now on
    dialog.done(0)  # waits for the pruning
    assert [f.exists() for f in files] == [False, False, True]  # the least recently used went


def test_the_loader_of_the_app_uses_the_saved_limit_and_folder(settings, tmp_path):
    from app.main import thumbnail_loader

    loader = thumbnail_loader(settings)
    assert loader.cache_dir == thumbnail_dir() and loader.cache_limit == CACHE_LIMIT_MB_DEFAULT * MB
    loader.shutdown()
    settings.setValue(CACHE_LIMIT_KEY, 256)
    settings.setValue(CACHE_DIR_KEY, str(tmp_path / "elsewhere"))
    loader = thumbnail_loader(settings)
    assert loader.cache_dir == tmp_path / "elsewhere" and loader.cache_limit == 256 * MB
    loader.shutdown()


def test_clear_cache_deletes_the_thumbnails_and_nothing_else(make_dialog, loader, qtbot):
    files = _thumbnails(loader.cache_dir, 4)
    other = loader.cache_dir / "notes.txt"
    other.write_text("mine")
    photo = loader.cache_dir / "holiday.jpg"
    photo.write_bytes(b"a photo")
    dialog = make_dialog()
    page = dialog.cache_page
    assert page.usage_label.text() == "0 KB in 4 thumbnails" and page.clear_button.isEnabled()
    page.clear_button.click()
    qtbot.waitUntil(lambda: page.usage_label.text() == "0 KB in 0 thumbnails")
    assert not any(f.exists() for f in files)
    assert other.read_text() == "mine" and photo.read_bytes() == b"a photo"
    assert not page.clear_button.isEnabled()


def test_moving_the_cache_applies_at_once_and_clears_the_old_folder(
    make_dialog, loader, settings, tmp_path, qtbot, monkeypatch
):
    old_files = _thumbnails(loader.cache_dir, 2)
    new = tmp_path / "new cache"
    dialog = make_dialog()
    page = dialog.cache_page
    monkeypatch.setattr("app.settings_dialog.QFileDialog.getExistingDirectory", lambda *a, **k: str(new))
    page.choose_button.click()
    assert page.folder_edit.text() == str(new)
    _apply(dialog)
    assert new.is_dir() and loader.cache_dir == new
    assert settings.value(CACHE_DIR_KEY) == str(new)
    qtbot.waitUntil(lambda: not any(f.exists() for f in old_files))
    page.default_button.click()
    _apply(dialog)
    assert loader.cache_dir == thumbnail_dir() and settings.value(CACHE_DIR_KEY) is None


def test_a_cache_folder_holding_other_files_is_refused(make_dialog, tmp_path, settings):
    photos = tmp_path / "my photos"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"x")
    assert "holds other files" in check_cache_folder(photos)
    assert "full folder path" in check_cache_folder(Path("relative"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a folder" in check_cache_folder(a_file)
    assert check_cache_folder(tmp_path / "missing") is None
    dialog = make_dialog()
    page = dialog.cache_page
    assert not page.set_folder(photos)
    assert "holds other files" in page.error_label.text()
    assert not dialog.apply_button.isEnabled() and settings.value(CACHE_DIR_KEY) is None


def test_a_cache_folder_that_cannot_be_made_keeps_the_dialog_open(make_dialog, tmp_path, settings):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    dialog = make_dialog()
    dialog.cache_page.chosen_dir = blocker / "thumbs"  # inside a file: cannot be made
    dialog.cache_page.changed.emit()
    dialog.tabs.setCurrentIndex(0)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.isVisible() and dialog.tabs.currentWidget() is dialog.cache_page
    assert "cannot be made" in dialog.cache_page.error_label.text()
    assert settings.value(CACHE_DIR_KEY) is None


# ---------------------------------------------------------------------- excluded folders


def test_patterns_are_checked():
    assert check_pattern("raw*", []) is None
    assert check_pattern("2019/tmp*", ["raw"]) is None
    assert check_pattern("   ", []) is not None
    assert "full path" in check_pattern("/home/me/raw", [])
    assert "full path" in check_pattern("C:\\photos", [])
    assert ".." in check_pattern("../other", [])
    assert "every photo" in check_pattern("*", [])
    assert "already" in check_pattern("RAW", ["raw"])


def test_excludes_are_edited_and_stored_in_the_catalog(make_dialog, session, folder, monkeypatch):
    dialog = make_dialog()
    page = dialog.folders_page
    assert page.folder == str(folder)
    page.pattern_edit.setText("raw")
    page.add_button.click()
    page.pattern_edit.setText("2019/tmp*")
    page.pattern_edit.returnPressed.emit()
    page.pattern_edit.setText("/etc")
    page.add_button.click()
    assert "full path" in page.error_label.text()
    page.pattern_edit.setText("scratch")
    page.add_button.click()
    page.patterns.item(2).setSelected(True)
    page.remove_button.click()
    assert [page.patterns.item(i).text() for i in range(page.patterns.count())] == ["raw", "2019/tmp*"]
    assert session.folder_excludes() == {str(folder): ()}  # nothing stored before Apply

    rescans = []
    monkeypatch.setattr(session, "index", lambda folders=None: rescans.append(folders))
    _apply(dialog)
    assert session.library.catalog.folder_by_path(folder).excludes == ("raw", "2019/tmp*")
    assert page.notice.isVisible() and "next re-scan" in page.notice.text()
    assert page.rescan_button.isVisible()
    page.rescan_button.click()
    assert rescans == [[str(folder)]]
    assert not page.rescan_button.isVisible()


def test_ok_offers_the_rescan_and_later_says_when_it_applies(make_dialog, session, monkeypatch, qtbot):
    asked = []

    def answer(*args, **kwargs):
        asked.append(args[2])
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    rescans = []
    monkeypatch.setattr(session, "index", lambda folders=None: rescans.append(folders))
    dialog = make_dialog()
    dialog.folders_page.add_pattern("raw")
    with qtbot.waitSignal(dialog.rescan_offered) as offered:
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert len(asked) == 1 and "next re-scan" in asked[0]
    assert offered.args == [[dialog.folders_page.folder]] and rescans == []

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dialog = make_dialog()
    dialog.folders_page.patterns.item(0).setSelected(True)
    dialog.folders_page.remove_button.click()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert rescans == [[dialog.folders_page.folder]]
    assert session.folder_excludes() == {dialog.folders_page.folder: ()}


@pytest.mark.slow
def test_the_next_rescan_applies_the_excludes(session, folder, qtbot):
    """Indexing skips what the patterns name, and forgets photos indexed before they were excluded."""

    def indexed_names() -> set[str]:
        return {
            Path(p).name
            for p in session.library.catalog.folder_photos(session.library.catalog.folder_by_path(folder).id)
        }

    session.index(None)
    qtbot.waitUntil(lambda: not session.is_indexing, timeout=120_000)
    assert indexed_names() == {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}
    session.set_folder_excludes(str(folder), ["RAW", "2019/tmp*"])
    session.index([str(folder)])
    qtbot.waitUntil(lambda: not session.is_indexing, timeout=120_000)
    assert indexed_names() == {"a.jpg", "b.jpg"}


def test_a_folder_that_is_gone_is_an_error_not_a_crash(make_dialog, session, monkeypatch):
    dialog = make_dialog()
    dialog.folders_page.add_pattern("raw")

    def gone(path, patterns):
        raise OSError("database is locked")

    monkeypatch.setattr(session, "set_folder_excludes", gone)
    assert not dialog.apply()
    assert dialog.tabs.currentWidget() is dialog.folders_page


# ---------------------------------------------------------------------- the main window and the start


def test_the_file_menu_opens_the_settings(window, qtbot, monkeypatch):
    monkeypatch.setattr("app.settings_dialog.probe_gpus", dict)
    action = window.settings_action
    assert action.shortcut() == QKeySequence(QKeySequence.StandardKey.Preferences)
    action.trigger()
    dialog = window.settings_dialog
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.folders_page.session is window.session
    assert dialog.cache_page.thumbnails is window.thumbnails
    action.trigger()  # brings the open one forward
    assert window.settings_dialog is dialog
    dialog.reject()
    assert not dialog.isVisible()


def test_the_app_starts_with_the_saved_theme_device_and_cache(
    qtbot, tmp_path, model_spec, monkeypatch, platform_look
):
    import sys

    from PySide6.QtCore import QTimer

    from app.main import run
    from app.main_window import MainWindow
    from core.library import Library

    settings = settings_at(tmp_path / "s.ini")
    settings.setValue(THEME_KEY, "dark")
    settings.setValue(DEVICE_KEY, "cpu")
    settings.setValue(CACHE_LIMIT_KEY, 96)
    settings.setValue(CACHE_DIR_KEY, str(tmp_path / "thumbs"))
    settings.sync()
    opened, seen = [], []
    real_open = Library.open.__func__

    def record_open(cls, *args, **kwargs):
        opened.append(kwargs.get("device"))
        return real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Library, "open", classmethod(record_open))

    def check() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not windows:
            QTimer.singleShot(20, check)
            return
        palette = QApplication.palette()
        seen.append(
            (
                palette.color(QPalette.ColorRole.Window).lightness(),
                windows[0].thumbnails.cache_dir,
                windows[0].thumbnails.cache_limit,
            )
        )
        windows[0].close()

    QTimer.singleShot(0, check)
    before = sys.getswitchinterval()
    try:
        code = run(
            ["--library", str(tmp_path / "lib"), "--model", model_spec, "--settings", str(tmp_path / "s.ini")]
        )
    finally:
        sys.setswitchinterval(before)
    assert code == 0 and opened == ["cpu"]
    assert len(seen) == 1
    lightness, cache_dir, limit = seen[0]
    assert lightness < 80 and cache_dir == tmp_path / "thumbs" and limit == 96 * MB
