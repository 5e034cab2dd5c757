"""The model picker: the catalog with what this computer has, switching through the session, the
offline failure, the free-text entry, speed measurement, and the question asked before the bundled
starter model reads a folder of the user's own photos."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog

from app.errors_text import user_message
from app.model_panel import ModelBox
from app.model_picker import COLUMNS, ModelPicker
from app.session import DEMO_FOLDER, StepProgress
from core.model_catalog import (
    DEFAULT_SPEC,
    SpeedRecord,
    catalog_entries,
    find_entry,
    measure_and_record,
    model_choices,
    read_speeds,
    record_speed,
)
from core.models import DownloadProgress
from tests.core.test_model_catalog import fake_hub_cache

LARGE = "openclip:ViT-L-14/datacomp_xl_s13b_b90k"
LAION = "openclip:ViT-B-32/laion2b_s34b_b79k"


@pytest.fixture
def model_spec() -> str:
    """The windows of this module open their library on the bundled starter model."""
    return "starter"


@pytest.fixture
def choices(tmp_path):
    """The catalog as a computer sees it that has the default model downloaded and the starter timed."""
    cache = tmp_path / "hf"
    fake_hub_cache(cache, find_entry(DEFAULT_SPEC).hf_hub)
    speeds = tmp_path / "speeds.json"
    record_speed("starter", SpeedRecord(42.0, "cpu", 16, "t"), speeds)
    return lambda: model_choices(cache, speeds)


class FakeSession(QObject):
    """The session's signals and the calls the model panel makes; nothing runs."""

    download_progress = Signal(object)
    index_progress = Signal(object)
    index_finished = Signal(object)
    index_failed = Signal(str)
    model_failed = Signal(str)
    index_started = Signal()
    library_changed = Signal()

    def __init__(self, root: Path, model_spec: str = "starter") -> None:
        super().__init__()
        self.root = str(root)
        self.model_spec = model_spec
        self.is_indexing = False
        self.is_closed = False
        self.switches: list[str] = []
        self.added: list[str] = []

    def set_model(self, spec: str) -> None:
        self.switches.append(spec)
        self.is_indexing = True
        self.index_started.emit()

    def add_folder(self, path: str) -> bool:
        self.added.append(path)
        return True


@pytest.fixture
def fake_box(qtbot, tmp_path, choices, monkeypatch):
    monkeypatch.setattr("app.model_panel.model_choices", choices)
    session = FakeSession(tmp_path / "library")
    box = ModelBox(session)
    qtbot.addWidget(box)
    box.model_requested.connect(session.set_model)  # as the main window's change_model does
    box.set_model("starter", "the starter", True)
    box.show()
    return box, session


def cell(picker: ModelPicker, spec: str, column: str) -> str:
    return picker.table.item(picker.row_of(spec), COLUMNS.index(column)).text()


def offline_message() -> str:
    """What the session reports when an open_clip model is neither cached nor downloadable."""
    from core.models import load_model

    with pytest.raises(Exception) as caught:
        load_model(LAION, device="cpu")
    return user_message(caught.value, "indexing")


# ---------------------------------------------------------------------- the list


def test_the_picker_lists_the_catalog_with_cache_state_speed_and_the_current_model(qtbot, choices):
    picker = ModelPicker("starter", choices())
    qtbot.addWidget(picker)
    entries = catalog_entries()
    assert picker.table.rowCount() == len(entries)
    assert [picker.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(len(entries))] == [
        e.spec for e in entries
    ]
    assert cell(picker, DEFAULT_SPEC, "On this computer") == "downloaded"
    assert cell(picker, LARGE, "On this computer") == "not downloaded"
    assert cell(picker, LARGE, "Download") == "about 1,710 MB"
    assert cell(picker, "starter", "On this computer") == "included"
    assert cell(picker, "starter", "Speed here") == "42 photos/s (CPU)"
    assert cell(picker, DEFAULT_SPEC, "Speed here") == "not measured yet"
    assert cell(picker, "starter", "Model").endswith("(in use)")
    assert not cell(picker, DEFAULT_SPEC, "Model").endswith("(in use)")
    assert picker.table.item(picker.row_of("starter"), 0).font().bold()
    # The current model is selected; it cannot be switched to again.
    assert picker.spec() == "starter" and not picker.use_button.isEnabled()
    assert "demo scene world" in picker.details.text()
    picker.select(DEFAULT_SPEC)
    assert picker.spec() == DEFAULT_SPEC and picker.use_button.isEnabled()
    assert "72.8%" in picker.details.text() and "Recommended" in picker.details.text()
    assert picker.measure_button.isEnabled()  # downloaded: it can be timed
    picker.select(LARGE)
    assert not picker.measure_button.isEnabled()  # not here: timing it would download it


# ---------------------------------------------------------------------- switching


def test_use_this_model_asks_the_session_and_closes_once_the_model_is_loaded(qtbot, fake_box):
    box, session = fake_box
    qtbot.mouseClick(box.change_button, Qt.MouseButton.LeftButton)
    picker = box.dialog
    assert picker is not None and picker.isVisible()
    picker.select(LARGE)
    qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert session.switches == [LARGE]
    assert picker.isVisible() and picker.awaiting == LARGE and not picker.use_button.isEnabled()
    assert "Downloading ViT-L/14 DataComp-XL (about 1,710 MB)" in picker.status.text()
    session.download_progress.emit(
        DownloadProgress("open_clip_model.safetensors", 171_000_000, 1_710_000_000)
    )
    assert "171 of 1,710 MB (10%)" in picker.status.text()
    session.index_progress.emit(StepProgress("model"))  # still loading
    assert box.dialog is picker and picker.isVisible()
    session.index_progress.emit(SimpleNamespace(phase="scan"))  # loaded: photos are being read
    qtbot.waitUntil(lambda: box.dialog is None, timeout=5_000)
    assert session.switches == [LARGE]


def test_offline_the_picker_says_so_plainly_and_nothing_changes(qtbot, fake_box):
    box, session = fake_box
    picker = box.open_dialog()
    picker.select(LAION)
    qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert session.switches == [LAION]
    message = offline_message()
    session.index_failed.emit(message)
    text = picker.status.text()
    assert text.startswith("ViT-B/32 LAION-2B could not be downloaded: this computer seems to be offline")
    assert "Nothing was changed: LadderLens still uses Starter model (bundled)." in text
    assert message in text and "Traceback" not in text
    assert box.dialog is picker and picker.isVisible() and picker.awaiting is None
    session.is_indexing = False
    session.library_changed.emit()
    assert picker.use_button.isEnabled()  # another try, or another model
    assert session.model_spec == "starter"


def test_offline_through_the_real_session_keeps_the_current_model(window, library, qtbot):
    qtbot.mouseClick(window.model_box.change_button, Qt.MouseButton.LeftButton)
    picker = window.model_box.dialog
    picker.select(LAION)
    with qtbot.waitSignal(window.session.index_failed, timeout=60_000):
        qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert "could not be downloaded: this computer seems to be offline" in picker.status.text()
    assert picker.isVisible()
    qtbot.waitUntil(lambda: not window.session.is_indexing, timeout=30_000)
    assert library.model_spec == "starter" and library.target_model_spec is None
    qtbot.waitUntil(picker.use_button.isEnabled, timeout=10_000)
    picker.reject()


def test_other_model_takes_a_spec_typed_by_hand(qtbot, fake_box, tiny_checkpoint):
    box, session = fake_box
    picker = box.open_dialog()
    assert picker.other_box.isHidden()
    qtbot.mouseClick(picker.other_button, Qt.MouseButton.LeftButton)
    assert picker.other_box.isVisible()
    picker.spec_edit.setText("openclip:ViT-B-32-256")  # no pretrained tag
    assert not picker.table.selectionModel().selectedRows()
    qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert session.switches == [] and "names no pretrained tag" in picker.status.text()
    picker.spec_edit.setText(f"openclip:{DEFAULT_SPEC.partition(':')[2]}")
    assert picker.table.selectionModel().selectedRows()[0].row() == picker.row_of(DEFAULT_SPEC)
    picker.spec_edit.setText(f"file:{tiny_checkpoint}")
    assert "named by hand" in picker.details.text()
    qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert session.switches == [f"file:{tiny_checkpoint}"]


def test_without_a_session_the_picker_closes_when_a_model_is_chosen(qtbot, choices, monkeypatch):
    monkeypatch.setattr("app.model_panel.model_choices", choices)
    box = ModelBox()
    qtbot.addWidget(box)
    box.set_model("starter", "the starter", True)
    requested: list[str] = []
    box.model_requested.connect(requested.append)
    picker = box.open_dialog()
    picker.select(DEFAULT_SPEC)
    qtbot.mouseClick(picker.use_button, Qt.MouseButton.LeftButton)
    assert requested == [DEFAULT_SPEC]
    qtbot.waitUntil(lambda: box.dialog is None, timeout=5_000)


# ---------------------------------------------------------------------- speed


def test_measure_speed_times_a_model_that_is_here_and_remembers_it(qtbot, choices):
    picker = ModelPicker("starter", choices())
    qtbot.addWidget(picker)
    picker.measure = lambda spec: measure_and_record(spec, device="cpu", images=2)
    picker.select("starter")
    with qtbot.waitSignal(picker.speed_measured, timeout=120_000) as measured:
        qtbot.mouseClick(picker.measure_button, Qt.MouseButton.LeftButton)
        assert not picker.measure_button.isEnabled()
    spec, record = measured.args
    assert spec == "starter" and record.images_per_second > 0
    assert cell(picker, "starter", "Speed here").endswith("photos/s (CPU)")
    assert read_speeds()["starter"] == record  # kept in the per-user cache folder
    qtbot.waitUntil(picker.measure_button.isEnabled, timeout=10_000)


def test_a_failed_measurement_is_said_plainly(qtbot, choices):
    picker = ModelPicker("starter", choices())
    qtbot.addWidget(picker)

    def fail(spec):
        from core.errors import ModelUnavailableError

        raise ModelUnavailableError(f"{spec} went missing")

    picker.measure = fail
    picker.select(DEFAULT_SPEC)
    picker.measure_selected()
    qtbot.waitUntil(lambda: "went missing" in picker.status.text(), timeout=10_000)
    qtbot.waitUntil(picker.measure_button.isEnabled, timeout=10_000)
    assert cell(picker, DEFAULT_SPEC, "Speed here") == "not measured yet"


# ---------------------------------------------------------------------- the starter and the user's own photos


def test_adding_a_folder_with_the_starter_asks_for_a_model_first(window, library, photos, qtbot, monkeypatch):
    added: list[str] = []
    monkeypatch.setattr(window.session, "add_folder", added.append)
    assert "only knows the demo" in window.welcome.model_note.text()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(photos))
    qtbot.mouseClick(window.welcome.add_button, Qt.MouseButton.LeftButton)
    prompt = window.model_box.prompt
    assert prompt is not None and prompt.isVisible() and added == []
    assert "only the demo's scene world" in prompt.text() and "recommended" in prompt.informativeText()

    # One click to the picker, the model for real photos chosen already.
    prompt_choose = window.model_box.prompt_choose
    qtbot.mouseClick(prompt_choose, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.model_box.dialog is not None, timeout=5_000)
    picker = window.model_box.dialog
    assert picker.spec() == DEFAULT_SPEC and picker.use_button.isEnabled()
    assert "Your folder is added when this window closes" in picker.context.text()
    assert added == []
    picker.reject()  # closed without a switch: the folder is added, read by the model in use
    qtbot.waitUntil(lambda: added == [str(photos)], timeout=5_000)


def test_keep_the_starter_adds_the_folder_and_is_not_asked_again(window, photos, qtbot, monkeypatch):
    added: list[str] = []
    monkeypatch.setattr(window.session, "add_folder", added.append)
    window.add_folder(str(photos))
    qtbot.mouseClick(window.model_box.prompt_keep, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: added == [str(photos)], timeout=5_000)
    assert window.model_box.prompt is None
    window.add_folder(str(photos / "more"))
    assert added == [str(photos), str(photos / "more")] and window.model_box.prompt is None


def test_cancel_adds_nothing_and_the_demo_library_is_never_held(window, library, photos, qtbot, monkeypatch):
    added: list[str] = []
    monkeypatch.setattr(window.session, "add_folder", added.append)
    window.add_folder(str(photos))
    prompt = window.model_box.prompt
    prompt.reject()
    qtbot.waitUntil(lambda: window.model_box.prompt is None, timeout=5_000)
    assert added == [] and window.model_box.held_folders == []
    demo = Path(library.root) / DEMO_FOLDER
    window.add_folder(str(demo))
    assert added == [str(demo)] and window.model_box.prompt is None


def test_the_welcome_page_opens_the_picker(window, qtbot):
    assert window.pages.currentWidget() is window.welcome
    qtbot.mouseClick(window.welcome.model_button, Qt.MouseButton.LeftButton)
    picker = window.model_box.dialog
    assert picker is not None and picker.isVisible()
    assert cell(picker, "starter", "Model").endswith("(in use)")
    picker.reject()
