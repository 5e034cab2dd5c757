"""The fine-tune dialog and the profile switcher over a session on a real library (tiny model, tagged
scene photos)."""

from __future__ import annotations

import shutil

import pytest

from app.finetune_dialog import MIN_SPAN, FinetuneDialog, LossPlot, axis_range
from app.profile_switcher import BASE_LABEL, ProfileSwitcher
from app.session import LibrarySession
from core.library import Library
from core.models import ModelIdentity
from tests.trainer.test_finetune import made_report, metrics
from trainer.finetune import VERDICTS
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
    assert dialog.report_view.toPlainText().startswith("Recommendation: ")
    assert dialog.verdict_label.isVisible()
    assert dialog.verdict_label.text().startswith(tuple(f"{v}. " for v in VERDICTS.values()))
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


def test_a_tag_with_one_photo_is_named_before_training(qtbot, session, tagged_library, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(tagged_library / "Tagged", tree)  # the same photos: indexed already
    photo = sorted(tree.rglob("*.jpg"))[0]
    (photo.parent / "tags.txt").write_text(f"{photo.name}: lighthouse\n", encoding="utf-8")
    made = FinetuneDialog(session)
    qtbot.addWidget(made)
    made.show()
    made.root_edit.setText(str(tree))
    with qtbot.waitSignal(made.jobs.preview_ready, timeout=60_000):
        made.scan_button.click()
    assert made.warning_label.isVisible()
    warning = made.warning_label.text()
    assert warning.startswith("Warning: Tag 'lighthouse' has only one photo.")
    assert "cannot be both learned from and held out" in warning
    model = made.tag_model
    notes = {model.item(r, 0).text(): model.item(r, 2).text() for r in range(model.rowCount())}
    assert notes["lighthouse"] == "only one photo: nothing reliable to learn"
    assert [tag for tag, note in notes.items() if note] == ["lighthouse"]
    row = next(r for r in range(model.rowCount()) if model.item(r, 0).text() == "lighthouse")
    assert model.item(row, 1).data(0) == 1 and "held out" in model.item(row, 0).toolTip()
    qtbot.waitUntil(lambda: not made.jobs.busy)
    made.jobs.shutdown()


def test_the_single_photo_warning_names_many_tags():
    from app.finetune_dialog import single_photo_tags, single_photo_warning

    assert single_photo_warning([]) == ""
    tags = single_photo_tags([("oak", 5), ("boat", 1), ("anchor", 1)])
    assert tags == ["anchor", "boat"]
    assert single_photo_warning(tags).startswith("Warning: 2 tags have only one photo: 'anchor', 'boat'.")
    many = single_photo_warning([f"t{i:02d}" for i in range(15)])
    assert "15 tags" in many and "'t11' and 3 more." in many and "t12" not in many


def result_of(report):
    from types import SimpleNamespace

    return SimpleNamespace(report=report)


@pytest.mark.parametrize(
    ("tuned", "change", "low", "high", "verdict", "says"),
    [
        (metrics(0.7, 0.48), 0.08, 0.03, 0.13, "Worth applying", "rose by 0.080"),
        (metrics(0.5, 0.40), 0.0, 0.0, 0.0, "No gain: not worth applying", "did not change: 0.000"),
        (metrics(0.525, 0.41), 0.01, -0.02, 0.04, "No gain: not worth applying", "within noise"),
        (metrics(0.3, 0.34), -0.06, -0.1, -0.02, "Worse: do not apply", "fell by 0.060"),
    ],
)
def test_the_dialog_shows_the_verdict_in_words(qtbot, session, tuned, change, low, high, verdict, says):
    made = FinetuneDialog(session)
    qtbot.addWidget(made)
    made.show()
    made._on_trained(result_of(made_report(metrics(0.5, 0.40), tuned, change, low, high)))
    assert made.verdict_label.isVisible() and made.verdict_label.text().startswith(f"{verdict}. ")
    assert says in made.verdict_label.text()
    text = made.report_view.toPlainText()
    assert text.startswith(f"Recommendation: {verdict}.") and says in text
    if change == 0:
        assert "+0.000" not in text and "What improved" not in text
    assert not made.verdict_label.visibleRegion().isEmpty()  # beside the buttons
    view = made.report_view  # scrolled into sight, all of it
    qtbot.waitUntil(lambda: view.visibleRegion().boundingRect() == view.rect())
    assert made.apply_button.isEnabled()
    made.discard_button.click()
    assert not made.verdict_label.isVisible() and not made.report_view.isVisible()


def test_the_plot_does_not_zoom_onto_noise(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 180)
    plot.show()
    assert plot.score_range() == (0.0, MIN_SPAN) and plot.loss_range() == (0.0, MIN_SPAN)
    for i, score in enumerate((0.5001, 0.5003, 0.5002, 0.5002)):
        plot.add_loss(10 * (i + 1), 1.2341 + 0.0001 * (i % 2), 40)
        plot.add_score(10 * (i + 1), score)
    low, high = plot.score_range()
    assert low == 0.0 and high >= 0.5003 and high - low >= MIN_SPAN
    assert high <= 1.0  # near-constant 0.5: the change fills a thousandth of the axis at most
    assert (0.5003 - 0.5001) / (high - low) < 0.001
    low, high = plot.loss_range()
    assert low == 0.0 and 1.2342 <= high <= 2.0
    plot.grab()  # paints with titled axes
    assert axis_range([0.02, 0.021]) == (0.0, 0.1)
    assert axis_range([-0.2, 0.3]) == (-0.2, pytest.approx(0.3))
    assert axis_range([3.7]) == (0.0, 5.0)


def buttons_in_sight(dialog):
    from PySide6.QtCore import QPoint

    for button in (dialog.start_button, dialog.apply_button, dialog.cancel_button):
        corner = button.mapTo(dialog, QPoint(0, 0))
        assert button.isVisible() and not button.visibleRegion().isEmpty(), button.text()
        assert 0 <= corner.y() <= dialog.height() - button.height(), button.text()
        assert 0 <= corner.x() <= dialog.width() - button.width(), button.text()


def test_the_dialog_fits_a_600_pixel_high_screen(qtbot, session):
    made = FinetuneDialog(session)
    qtbot.addWidget(made)
    made.show()
    assert made.height() <= made.screen().availableGeometry().height()
    made.resize(800, 560)
    qtbot.waitUntil(lambda: made.height() == 560)
    assert made.minimumSizeHint().height() <= 560 and made.minimumHeight() <= 560
    assert made.start_button.text() == "Train"
    buttons_in_sight(made)
    report = made_report(metrics(0.5, 0.40), metrics(0.7, 0.48), 0.08, 0.03, 0.13)
    report["single_photo_tags"] = ["lighthouse"]
    made._on_trained(result_of(report))  # the longest the dialog gets: the report is shown
    made.resize(800, 560)
    qtbot.waitUntil(lambda: made.height() == 560)
    assert made.minimumSizeHint().height() <= 560
    buttons_in_sight(made)
    assert not made.verdict_label.visibleRegion().isEmpty()
    bar = made.scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the content scrolls rather than being cut off
    bar.setValue(bar.maximum())
    assert not made.report_view.visibleRegion().isEmpty()


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
