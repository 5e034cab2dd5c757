"""The fine-tune dialog and the profile switcher over a session on a real library (tiny model, tagged
scene photos)."""

from __future__ import annotations

import shutil

import pytest

from app.finetune_dialog import FinetuneDialog, LossPlot
from app.profile_switcher import BASE_LABEL, ProfileSwitcher
from app.session import LibrarySession
from core.library import Library
from core.models import ModelIdentity
from trainer.tagged_world import write_tagged_tree


@pytest.fixture(scope="module")
def tagged_library(tmp_path_factory, tiny_checkpoint):
    base = tmp_path_factory.mktemp("app-tagged")
    write_tagged_tree(base / "Tagged", 40, seed=3, size=(32, 32))
    with Library.open(base / "lib", model=f"file:{tiny_checkpoint}") as lib:
        lib.add_folder(base / "Tagged")
        lib.index()
    return base


@pytest.fixture
def tuned_library(tagged_library, tmp_path, tiny_checkpoint):
    shutil.copytree(tagged_library / "lib", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}")
    yield lib
    lib.close()


@pytest.fixture
def session(tuned_library):
    made = LibrarySession(tuned_library)
    yield made
    assert made.shutdown(60_000)


@pytest.fixture
def dialog(qtbot, session, tagged_library):
    made = FinetuneDialog(session, root=str(tagged_library / "Tagged"))
    made.epochs_spin.setValue(2)
    qtbot.addWidget(made)
    made.show()
    qtbot.waitUntil(lambda: made.preview is not None, timeout=60_000)
    yield made
    made.jobs.cancel()
    assert made.jobs.shutdown(60_000)


def fast(dialog):
    config = dialog.config()
    config.general_scenes = 0
    config.batch_size = 8
    dialog.config = lambda: config


def test_preview_lists_the_tags_and_their_counts(dialog):
    preview = dialog.preview
    assert preview.photos == 40 and preview.not_indexed == 0
    model = dialog.tag_model
    rows = {model.item(r, 0).text(): model.item(r, 1).data(0) for r in range(model.rowCount())}
    assert rows == dict(preview.counts)
    colours = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
    assert sum(rows.get(c, 0) for c in colours) == 40  # every photo sits in one colour folder
    assert "40 tagged photos" in dialog.summary.text()
    assert dialog.name_edit.text() == "tagged"
    assert dialog.start_button.isEnabled() and not dialog.apply_button.isEnabled()


def test_train_watch_then_apply(qtbot, dialog, tuned_library):
    fast(dialog)
    with qtbot.waitSignal(dialog.jobs.trained, timeout=120_000):
        dialog.start_button.click()
        assert dialog.cancel_button.isEnabled()
    assert dialog.plot.losses and dialog.plot.scores  # live loss and validation score
    assert "held-out, one-tag queries" in dialog.report_view.toPlainText()
    assert dialog.apply_button.isEnabled() and dialog.discard_button.isEnabled()
    assert tuned_library.profiles() == []  # not saved before Apply
    dialog.name_edit.setText("My Garden")
    with qtbot.waitSignal(dialog.profile_applied, timeout=60_000) as applied:
        dialog.apply_button.click()
    assert applied.args[0].label == "my-garden v1"
    assert tuned_library.active_profile.label == "my-garden v1"
    assert not dialog.apply_button.isEnabled()


def test_cancel_in_the_middle_keeps_nothing(qtbot, dialog, tuned_library):
    config = dialog.config()
    config.general_scenes = 0
    config.epochs = 500
    config.patience = 500
    dialog.config = lambda: config
    dialog.start_button.click()
    qtbot.waitUntil(lambda: len(dialog.plot.losses) >= 3, timeout=120_000)
    with qtbot.waitSignal(dialog.jobs.cancelled, timeout=60_000):
        dialog.cancel_button.click()
    assert "nothing was changed" in dialog.status_label.text()
    assert dialog.result is None and tuned_library.profiles() == [] and tuned_library.active_profile is None
    qtbot.waitUntil(dialog.start_button.isEnabled)  # once the worker has finished


def test_discard_forgets_the_result(qtbot, dialog, tuned_library):
    fast(dialog)
    with qtbot.waitSignal(dialog.jobs.trained, timeout=120_000):
        dialog.start_button.click()
    dialog.discard_button.click()
    assert dialog.result is None and not dialog.apply_button.isEnabled()
    assert tuned_library.profiles() == []


def test_a_folder_without_photos_says_so(qtbot, session, tmp_path):
    (tmp_path / "empty" / "boats").mkdir(parents=True)
    made = FinetuneDialog(session)
    qtbot.addWidget(made)
    made.root_edit.setText(str(tmp_path / "empty"))
    with qtbot.waitSignal(made.jobs.preview_ready, timeout=30_000):
        made.scan_button.click()
    assert "0 tagged photos" in made.summary.text() and "1 folders hold no photos" in made.summary.text()
    assert not made.start_button.isEnabled()
    qtbot.waitUntil(lambda: not made.jobs.busy)  # the preview's worker has finished
    made.root_edit.setText(str(tmp_path / "missing"))
    with qtbot.waitSignal(made.jobs.failed, timeout=30_000):
        made.scan_button.click()
    assert "missing" in made.summary.text()
    made.jobs.shutdown()


def test_the_session_previews_tags_for_any_caller(session, tagged_library, tmp_path):
    from PIL import Image

    from core.progress import drive

    preview = drive(session.iter_preview_tags(str(tagged_library / "Tagged")))
    assert preview.root == str(tagged_library / "Tagged")
    assert preview.photos == 40 and preview.not_indexed == 0 and preview.problems == []
    counts = [count for _tag, count in preview.counts]
    assert counts == sorted(counts, reverse=True)  # most common tags first

    (tmp_path / "new" / "boats").mkdir(parents=True)
    Image.new("RGB", (24, 24), (10, 200, 30)).save(tmp_path / "new" / "boats" / "fresh.jpg")
    preview = drive(session.iter_preview_tags(str(tmp_path / "new")))
    assert preview.photos == 0 and preview.not_indexed == 1  # tagged, but not in the library


def test_loss_plot_paints_without_data_and_with(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    plot.show()
    plot.grab()
    plot.add_loss(1, 0.9, 10)
    plot.add_loss(2, 0.7, 10)
    plot.add_score(2, 0.3)
    plot.add_loss(3, float("nan"), 10)
    plot.grab()
    assert len(plot.losses) == 2 and plot.total_steps == 10


# ---------------------------------------------------------------------------------------- switcher


def test_switcher_lists_switches_and_refuses_other_bases(qtbot, session, tuned_library):
    from tests.core.test_profiles import adapter

    lib = tuned_library
    identity = lib.embedder().identity
    lib.profile_store.save_adapter("garden", adapter(1), identity, lib.model_spec)
    lib.profile_store.save_adapter("garden", adapter(2), identity, lib.model_spec)
    lib.profile_store.save_adapter(
        "elsewhere", adapter(3), ModelIdentity("x", "sha256:00"), "file:/x.safetensors"
    )
    switcher = ProfileSwitcher(session)
    qtbot.addWidget(switcher)
    labels = [switcher.combo.itemText(i) for i in range(switcher.combo.count())]
    assert labels == [BASE_LABEL, "elsewhere v1", "garden v1", "garden v2"]
    other = switcher.combo.model().item(1)
    assert not other.isEnabled() and "another model" in other.toolTip()

    with qtbot.waitSignal(switcher.switched, timeout=60_000) as switched:
        switcher.choose("garden")
    assert switched.args[0].label == "garden v2" and lib.active_profile.label == "garden v2"
    qtbot.waitUntil(lambda: not switcher.is_switching)
    assert switcher.combo.currentText() == "garden v2"

    with qtbot.waitSignal(switcher.switched, timeout=60_000) as switched:
        switcher.choose(None)
    assert switched.args[0] is None and lib.active_profile is None
    qtbot.waitUntil(lambda: not switcher.is_switching)

    with qtbot.waitSignal(switcher.failed, timeout=60_000) as failed:
        switcher.combo.setCurrentIndex(1)  # disabled in the popup; forced here: the library refuses it
    assert "Switch the library back to file:/x.safetensors" in failed.args[0]
    qtbot.waitUntil(lambda: not switcher.is_switching)
    assert lib.active_profile is None and switcher.combo.currentText() == BASE_LABEL
    assert switcher.shutdown()
