"""``app.main.run``: opens the window on a library and returns when it closes; errors are dialogs."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QSplashScreen

from app.main import GIL_SWITCH_INTERVAL_S, run
from app.main_window import MainWindow


def _close_when_shown(seen: list) -> None:
    def check() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows:
            seen.append(windows[0].windowTitle())
            windows[0].close()
        else:
            QTimer.singleShot(20, check)

    QTimer.singleShot(0, check)


@pytest.fixture
def _keep_switch_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_run_opens_the_window_and_returns_zero_when_it_closes(
    qtbot, tmp_path, model_spec, _keep_switch_interval
):
    seen: list[str] = []
    _close_when_shown(seen)
    settings = tmp_path / "settings.ini"
    sys.setswitchinterval(0.005)
    code = run(["--library", str(tmp_path / "lib"), "--model", model_spec, "--settings", str(settings)])
    assert code == 0
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    assert seen == ["LadderLens"]
    assert settings.exists()  # the window state was saved there, not in the user's settings
    assert (tmp_path / "lib" / "catalog.sqlite").exists()


def test_a_library_that_cannot_be_opened_is_a_message_not_a_traceback(
    qtbot, tmp_path, monkeypatch, _keep_switch_interval
):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: shown.append(text))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert run(["--library", str(not_a_folder), "--settings", str(tmp_path / "s.ini")]) == 1
    assert len(shown) == 1 and "cannot be opened" in shown[0] and "Traceback" not in shown[0]


def test_the_model_runtime_is_imported_behind_a_splash_before_the_window_opens(
    qtbot, tmp_path, model_spec, monkeypatch, _keep_switch_interval
):
    from app import main as app_main

    events: list[str] = []
    real_import = app_main.importlib.import_module

    def record_import(name: str):
        tops = QApplication.topLevelWidgets()
        splashes = [w for w in tops if isinstance(w, QSplashScreen) and w.isVisible()]
        windows = [w for w in tops if isinstance(w, MainWindow) and w.isVisible()]
        events.append(f"import {name}, splash shown: {bool(splashes)}, windows: {len(windows)}")
        return real_import(name)

    monkeypatch.setattr(app_main.importlib, "import_module", record_import)
    seen: list[str] = []
    _close_when_shown(seen)
    args = ["--library", str(tmp_path / "lib"), "--model", model_spec, "--settings", str(tmp_path / "s.ini")]
    code = run(args)
    assert code == 0 and seen == ["LadderLens"]
    optional = [n for n in app_main.OPTIONAL_RUNTIME_MODULES if importlib.util.find_spec(n) is not None]
    expected = [*app_main.RUNTIME_MODULES, *optional]
    assert events == [f"import {name}, splash shown: True, windows: 0" for name in expected]
    splashes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QSplashScreen)]
    assert not any(s.isVisible() for s in splashes)  # gone once the window is up


def test_a_runtime_that_cannot_be_imported_still_opens_the_window(
    qtbot, tmp_path, model_spec, monkeypatch, caplog, _keep_switch_interval
):
    from app import main as app_main

    def broken(name: str):
        raise OSError(f"lib{name}_cpu.so: cannot open shared object file")

    monkeypatch.setattr(app_main.importlib, "import_module", broken)
    seen: list[str] = []
    _close_when_shown(seen)
    args = ["--library", str(tmp_path / "lib"), "--model", model_spec, "--settings", str(tmp_path / "s.ini")]
    with caplog.at_level("WARNING", logger="app.main"):
        code = run(args)
    assert code == 0 and seen == ["LadderLens"]
    assert "could not import torch" in caplog.text and "cannot open shared object" in caplog.text
