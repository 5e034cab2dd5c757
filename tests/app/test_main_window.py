"""The app's flows, driven as a user would, on a real library and the tiny test model."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QDate, QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from app.results_model import PhotoRow, Role, differs_text, format_score
from app.session import DEMO_FOLDER
from tests.app.conftest import DEMO_SIZE, gate_indexing, photo_count, small_image, wait_indexed


def _readable(photos: Path) -> int:
    return photo_count(photos) - 2  # broken.jpg and empty.jpg


def _drop(widget, paths: list[Path]) -> None:
    """Drag files or folders from a file manager and drop them on ``widget``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(
        pos.toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, drop)
    assert drop.isAccepted()


def _search_typed(qtbot, window, text: str):
    """Type ``text`` into the search bar; wait for its results (search-as-you-type, no Enter)."""
    window.search_bar.focus()
    qtbot.keyClicks(window.search_bar.edit, text)
    qtbot.waitUntil(
        lambda: window.last_request is not None and window.last_request.text == text, timeout=30_000
    )
    # The results may have come at the end of a wait slice, their layout still posted: a banner an
    # earlier keystroke's results showed is hidden, but the grid has not grown into its place yet.
    QApplication.processEvents()
    return window._result


def _clear_match_result(like: Any) -> Any:
    """``like``'s photos re-scored so that three of them stand far above the rest."""
    from core.grading import grade
    from core.search import Hit, SearchResult

    rng = np.random.default_rng(0)
    n = len(like.hits)
    scores = np.sort(np.concatenate([[0.31, 0.305, 0.30], rng.normal(0.12, 0.02, n - 3)]))[::-1]
    background = rng.normal(0.10, 0.02, 500)
    g = grade(scores, background)
    hits = [
        Hit(h.photo_id, float(s), float(z), int(t), path=h.path)
        for h, s, z, t in zip(like.hits, scores, g.z, g.tier_of, strict=True)
    ]
    return SearchResult("clear", g.long_tail, g.tiers, hits, grading=g, model=like.model)


def _index_folder(qtbot, window, photos: Path) -> None:
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000):
        window.add_folder(str(photos))
    wait_indexed(qtbot, window)


def test_add_folder_search_tiers_filter_details_and_more_like_this(
    app_window, photos, qtbot, monkeypatch, opened_urls
):
    window = app_window
    assert window.pages.currentWidget() is window.welcome  # empty library: the welcome page
    assert not window.search_bar.isEnabled()  # nothing to search yet
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(photos))
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000) as finished:
        qtbot.mouseClick(window.welcome.add_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert report.embedded + report.reused == _readable(photos) and report.failed == 2
    wait_indexed(qtbot, window)
    assert window.pages.currentWidget() is window.main_splitter and window.search_bar.isEnabled()
    library = window.session.library
    assert library.states.get(library.model_spec).encoder.alive  # decoded and embedded in a child process

    # Library panel: the folder with its counts, the files that failed and why.
    folders = window.library_panel.folders_model
    assert folders.paths() == [str(photos.resolve())]
    assert folders.index(0, 1).data() == str(_readable(photos))
    assert folders.index(0, 2).data() == "2"
    assert folders.index(0, 3).data() == "online"
    reasons = {Path(p).name: r for p, r in window.library_panel.failures_model.reasons().items()}
    assert reasons == {"broken.jpg": "not an image", "empty.jpg": "empty file"}
    assert window.library_panel.failures_box.isVisible()
    assert "2 could not be read" in window.library_panel.summary.text()

    # Search as you type: tiers under headers, best first, and the inspector shows the same tiers.
    result = _search_typed(qtbot, window, "red car")
    model = window.results_model
    assert len(result.tiers) >= 2
    assert [model.row(r).rank for r in model.header_rows()] == [t.rank for t in result.tiers]
    assert len(model.photo_rows()) == len(result.hits)
    assert [t.rank for t in window.tier_plot.tiers] == [t.rank for t in result.tiers]
    assert "red car" in window.results_summary.text()
    summary = window.results_summary.text()
    if result.long_tail:
        assert summary.startswith("No exact match")
    else:
        assert summary.startswith(f"{result.match_count:,} photo") and f"{len(result.hits)} shown" in summary
    assert window.grid_stack.currentWidget() is window.results_view

    # Inspector: clicking a tier's chip filters the grid to it; "All" clears.
    second = result.tiers[1]
    qtbot.mouseClick(
        window.tier_plot, Qt.MouseButton.LeftButton, pos=window.tier_plot.chip_rect(second.rank).center()
    )
    assert model.tier_filter == second.rank
    assert {model.row(r).tier for r in model.photo_rows()} == {second.rank}
    assert len(model.photo_rows()) == second.count
    assert "showing only" in window.results_summary.text()
    qtbot.mouseClick(
        window.tier_plot, Qt.MouseButton.LeftButton, pos=window.tier_plot.chip_rect(None).center()
    )
    assert model.tier_filter is None and len(model.photo_rows()) == len(result.hits)
    # ... and Esc clears a filter before it clears the search.
    band = window.tier_plot.band_rect(result.tiers[0].rank)
    qtbot.mouseClick(window.tier_plot, Qt.MouseButton.LeftButton, pos=band.center().toPoint())
    assert model.tier_filter == result.tiers[0].rank
    qtbot.keyClick(window.results_view, Qt.Key.Key_Escape)
    assert model.tier_filter is None and window.search_bar.text() == "red car"

    # Keyboard: Down from the search bar enters the grid, arrows move, Enter opens the viewer.
    window.search_bar.focus()
    qtbot.keyClick(window.search_bar.edit, Qt.Key.Key_Down)
    assert window.results_view.hasFocus()
    qtbot.keyClick(window.results_view, Qt.Key.Key_Right)
    current = model.row(window.results_view.currentIndex())
    assert isinstance(current, PhotoRow)
    assert current.photo_id == result.hits[1].photo_id
    # Enter shows the results full size, from the current photo; the viewer steps through them and
    # the grid follows it.
    qtbot.keyClick(window.results_view, Qt.Key.Key_Return)
    viewer = window.viewer
    assert viewer.isVisible() and viewer.current.photo_id == current.photo_id
    qtbot.waitUntil(viewer.is_loaded, timeout=10_000)
    assert viewer.error() is None and viewer.picture.pixmap().width() > 0
    qtbot.keyClick(viewer, Qt.Key.Key_Left)
    assert model.row(window.results_view.currentIndex()).photo_id == result.hits[0].photo_id
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    assert not viewer.isVisible()
    qtbot.waitUntil(window.results_view.hasFocus)  # back on the grid
    assert model.row(window.results_view.currentIndex()).photo_id == current.photo_id
    # The details pane shows the current photo.
    window.details_action.setChecked(True)
    details = window.details
    qtbot.waitUntil(lambda: details.details is not None and details.details.photo_id == current.photo_id)
    assert details.isVisible()
    assert details.name_label.text() == Path(current.path).name
    assert details.score_value.text() == format_score(current.score)
    assert details.size_value.text().startswith(f"{DEMO_SIZE[0]} × {DEMO_SIZE[1]} px")
    # The hovered cell's tooltip tells score, z and tier.
    tip = window.results_view.currentIndex().data(Qt.ItemDataRole.ToolTipRole)
    assert format_score(current.score) in tip and "tier" in tip
    # "red car" names a colour and an object, checked photo by photo: the pane and the tooltip say
    # what this photo gets wrong ("no difference found" when nothing).
    assert result.details_checked
    (hit,) = [h for h in result.hits if h.photo_id == current.photo_id]
    told = differs_text(hit.differs)
    assert told and told in tip
    assert details.tier_value.text().splitlines()[1].lower() == told
    shown_details = details.details
    details.show_details(replace(shown_details, differs=None))  # not checked: nothing said
    assert len(details.tier_value.text().splitlines()) == 1
    details.show_details(shown_details)

    qtbot.mouseClick(details.open_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(details.folder_button, Qt.MouseButton.LeftButton)
    assert [u.toLocalFile() for u in opened_urls] == [current.path, str(Path(current.path).parent)]
    qtbot.mouseClick(details.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == current.path

    # More like this: a photo query, shown as a chip; the photo itself is left out of its results.
    qtbot.mouseClick(details.like_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.last_request.like_photo_id == current.photo_id, timeout=30_000)
    assert window.search_bar.has_photo_query() and Path(current.path).name in window.search_bar.chip.text()
    assert current.photo_id not in {model.row(r).photo_id for r in model.photo_rows()}
    assert model.photo_rows()

    # Esc clears the search.
    qtbot.keyClick(window.results_view, Qt.Key.Key_Escape)
    assert model.rowCount() == 0 and not window.search_bar.has_photo_query()
    assert window.search_bar.edit.hasFocus()


def test_long_tail_banner_and_dropped_folder_and_image(window, photos, qtbot, tmp_path):
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000):
        _drop(window, [photos])  # a folder dropped on the window is added and indexed
    wait_indexed(qtbot, window)
    assert window.library_panel.folders_model.paths() == [str(photos.resolve())]

    # The random tiny model tells no scene apart: a query it can only grade on scores (it names no
    # checkable attribute) gets nearest alternatives only.
    text_result = _search_typed(qtbot, window, "a picture of something")
    assert text_result.long_tail
    assert not window.long_tail_banner.isHidden()
    assert "No exact match" in window.long_tail_banner.text()
    assert window.results_model.photo_rows()  # alternatives are still shown, graded
    labels = [window.results_model.row(r).label for r in window.results_model.header_rows()]
    assert labels == [t.label for t in text_result.tiers] and "alternatives" in labels[0]

    # A query with clear matches (scores graded by the real grading) shows no banner.
    matched = _clear_match_result(text_result)
    assert not matched.long_tail
    window.session.search_finished.emit(window.last_request, matched)
    assert window.long_tail_banner.isHidden()
    assert window.results_model.row(0).label == matched.tiers[0].label

    # Words the model does not know are named in the banner.
    unknown = dataclasses.replace(text_result, unknown_words=("dog", "leash"))
    window.session.search_finished.emit(window.last_request, unknown)
    assert "does not know “dog” or “leash”" in window.long_tail_banner.text()
    assert "No exact match" in window.long_tail_banner.text()

    # An image dropped on the search bar searches for photos like it.
    image = small_image(tmp_path / "probe.jpg")
    _drop(window.search_bar.edit, [image])
    qtbot.waitUntil(
        lambda: window.last_request is not None and window.last_request.image == str(image), timeout=30_000
    )
    assert "probe.jpg" in window.search_bar.chip.text()
    assert window.long_tail_banner.isHidden() == (not window._result.long_tail)


def test_cancel_indexing_keeps_what_was_done_and_rescan_finishes(window, library, photos, qtbot, monkeypatch):
    gate = gate_indexing(monkeypatch, library)
    panel = window.library_panel
    with qtbot.waitSignal(window.session.index_progress, timeout=30_000):
        window.add_folder(str(photos))
    assert panel.progress.cancel_button.isVisible() and panel.progress.bar.isVisible()
    assert not panel.rescan_button.isEnabled()
    gate.wait_held()
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000) as finished:
        qtbot.mouseClick(panel.progress.cancel_button, Qt.MouseButton.LeftButton)
        assert not panel.progress.cancel_button.isEnabled()
        gate.release()
    assert finished.args == [None]  # cancelled
    wait_indexed(qtbot, window)
    assert "stopped" in panel.progress.label.text()
    status = library.status()
    assert 0 < status.indexed < _readable(photos)  # the batches finished before the cancel are kept
    assert panel.progress.cancel_button.isHidden()

    # Re-scan picks up where it stopped.
    monkeypatch.undo()
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000) as finished:
        qtbot.mouseClick(panel.rescan_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert report is not None and not report.cancelled
    assert report.unchanged == status.indexed
    wait_indexed(qtbot, window)
    assert library.status().indexed == _readable(photos)


def test_closing_during_indexing_leaves_a_consistent_library(
    make_window, library, photos, qtbot, monkeypatch, tmp_path, model_spec
):
    window = make_window(library, separate_process=True)
    gate = gate_indexing(monkeypatch, library)
    with qtbot.waitSignal(window.session.index_progress, timeout=30_000):
        window.add_folder(str(photos))
    worker = window.session._index_worker
    gate.wait_held()
    releaser = threading.Thread(target=lambda: (worker._abort.wait(30), gate.release()))
    releaser.start()
    window.close()  # stops indexing at its next safe point and waits for it
    releaser.join(30)
    assert worker.is_done
    assert not window.session.is_indexing or worker.is_done
    monkeypatch.undo()
    library.close()

    from core.library import Library

    with Library.open(tmp_path / "library", model=model_spec) as reopened:
        partial = reopened.status()
        assert 0 < partial.indexed < _readable(photos)
        assert reopened.search("a red car", k=10).hits  # what was indexed is searchable
        report = reopened.index()
        assert report.unchanged == partial.indexed and report.failed == 2
        assert reopened.status().indexed == _readable(photos)


def test_model_switch_and_unavailable_model(window, library, photos, qtbot, tmp_path, tiny_arch):
    import torch

    from core.models import create_architecture, save_checkpoint

    _index_folder(qtbot, window, photos)
    old_spec = library.model_spec
    assert old_spec in window.model_box.title.text()
    assert window.model_box.description.text() == library.model_description

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        other = create_architecture(tiny_arch)
    checkpoint = tmp_path / "other.safetensors"
    save_checkpoint(other, checkpoint, tiny_arch)

    # Change model…: the dialog takes a spec; the photos are read again in the background.
    qtbot.mouseClick(window.model_box.change_button, Qt.MouseButton.LeftButton)
    dialog = window.model_box.dialog
    assert dialog is not None and dialog.spec() == old_spec
    dialog.spec_edit.setText(f"file:{checkpoint}")
    with qtbot.waitSignal(window.session.index_finished, timeout=60_000) as finished:
        dialog.accept()
        assert not window.model_box.pending.isHidden()
    assert finished.args[0] is not None and finished.args[0].embedded == _readable(photos)
    wait_indexed(qtbot, window)
    assert library.model_spec == f"file:{checkpoint}"
    assert str(checkpoint) in window.model_box.title.text() and window.model_box.pending.isHidden()
    result = _search_typed(qtbot, window, "two kites")
    assert result.hits

    # An open_clip model that is not cached cannot be had offline: a clear message, no traceback,
    # and the current model stays.
    window.change_model("openclip:ViT-B-32/laion2b_s34b_b79k")
    qtbot.waitUntil(lambda: not window.message_banner.isHidden(), timeout=60_000)
    wait_indexed(qtbot, window)
    message = window.message_banner.text()
    assert "not available" in message and "Traceback" not in message
    assert library.model_spec == f"file:{checkpoint}" and library.target_model_spec is None
    assert window.model_box.pending.isHidden()


def test_welcome_page_demo_library(window, library, qtbot):
    assert window.pages.currentWidget() is window.welcome
    assert window.welcome.demo_button.isEnabled()
    with qtbot.waitSignal(window.session.index_finished, timeout=120_000) as finished:
        qtbot.mouseClick(window.welcome.demo_button, Qt.MouseButton.LeftButton)
        assert not window.welcome.demo_button.isEnabled()
    assert finished.args[0] is not None and finished.args[0].embedded == 12
    wait_indexed(qtbot, window)
    demo = Path(library.root) / DEMO_FOLDER
    assert window.library_panel.folders_model.paths() == [str(demo.resolve())]
    # An example query runs by itself, so the first thing seen is a search.
    qtbot.waitUntil(lambda: window.last_request is not None, timeout=30_000)
    assert window.search_bar.text() == window.last_request.text and window.results_model.photo_rows()


def test_empty_library_states_and_remove_folder(window, library, photos, qtbot, monkeypatch):
    assert window.pages.currentWidget() is window.welcome
    assert window.tier_plot.has_data() is False
    _index_folder(qtbot, window, photos)
    assert "Describe what you are looking for" in window.empty_label.text()
    window.library_panel.folders_view.selectRow(0)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(window.session.folder_removed, timeout=30_000):
        qtbot.mouseClick(window.library_panel.remove_button, Qt.MouseButton.LeftButton)
    assert library.folders() == []
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.welcome, timeout=10_000)
    # A folder that does not exist is refused with a message, not an exception.
    window.add_folder(str(photos / "no-such-folder"))
    assert not window.message_banner.isHidden() and "does not exist" in window.message_banner.text()


def test_history_window_state_and_shortcuts_persist(make_window, library, photos, qtbot):
    window = make_window(library)
    _index_folder(qtbot, window, photos)
    window.search_bar.focus()
    qtbot.keyClicks(window.search_bar.edit, "green tree")
    qtbot.keyClick(window.search_bar.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.last_request is not None and window.last_request.text == "green tree", timeout=30_000
    )
    window.library_dock.hide()
    window.inspector_action.setChecked(False)
    window.close()

    again = make_window(library)
    assert "green tree" in again.search_bar.history_model.stringList()
    assert again.library_dock.isHidden()
    assert not again.inspector_action.isChecked() and again.tier_plot.isHidden()
    again.activateWindow()
    qtbot.waitUntil(again.isActiveWindow)
    again.results_view.setFocus()
    qtbot.keyClick(again.results_view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert again.search_bar.edit.hasFocus()
    # The completer offers the remembered query.
    again.search_bar.edit.clear()
    qtbot.keyClicks(again.search_bar.edit, "gre")
    completer = again.search_bar.completer
    assert completer.completionCount() >= 1 and completer.currentCompletion() == "green tree"
    again.throttle.cancel()


@pytest.mark.parametrize("query", ["", "   "])
def test_blank_queries_clear_results(window, photos, qtbot, query):
    _index_folder(qtbot, window, photos)
    _search_typed(qtbot, window, "car")
    window.search_bar.edit.clear()
    qtbot.keyClicks(window.search_bar.edit, query)
    qtbot.keyClick(window.search_bar.edit, Qt.Key.Key_Return)
    assert window.results_model.rowCount() == 0 and window.last_request is None
    assert not window.tier_plot.has_data()


def test_scrolling_to_the_end_shows_more_results_below_the_tiers(window, library, photos, qtbot):
    from PySide6.QtWidgets import QAbstractSlider

    _index_folder(qtbot, window, photos)
    window.results_page = 8  # the library is small: pages of 8 photos
    window.resize(760, 620)
    result = _search_typed(qtbot, window, "a red car")
    model, view = window.results_model, window.results_view
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=10_000)  # the page is taller than the grid
    assert len(result.hits) == 8 and model.more_count == 0 and model.more_available
    banner_hidden = window.long_tail_banner.isHidden()
    plot_tiers = window.tier_plot.tiers

    # Pick a photo, then scroll to the end: more photos come, below the tiers, best first.
    first = result.tiers[0]
    in_first = [r for r in model.photo_rows() if model.row(r).tier == first.rank]
    target = model.index(in_first[-1])
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(target).center())
    picked = view.current_photo_id()
    graded_rows = [model.row(i) for i in range(model.rowCount())]
    bar.triggerAction(QAbstractSlider.SliderAction.SliderToMaximum)
    position = bar.value()
    qtbot.waitUntil(lambda: model.more_count > 0, timeout=30_000)
    rows = [model.row(i) for i in range(model.rowCount())]
    assert rows[: len(graded_rows)] == graded_rows  # the graded tiers did not change
    assert rows[len(graded_rows)].label == "More results"
    extra = rows[len(graded_rows) + 1 :]
    larger = library.search("a red car", k=16).hits
    shown = {h.photo_id for h in result.hits}
    assert {r.photo_id for r in extra} == {h.photo_id for h in larger} - shown
    scores = [r.score for r in rows if isinstance(r, PhotoRow)]
    assert scores == sorted(scores, reverse=True)
    assert view.current_photo_id() == picked and bar.value() == position
    assert [i.data(Role.PHOTO_ID) for i in view.selectionModel().selectedIndexes()] == [picked]
    assert window.long_tail_banner.isHidden() == banner_hidden and window.tier_plot.tiers == plot_tiers
    assert f"and {len(extra)} more below them" in window.results_summary.text()

    # A tier shown alone is complete: the end of it asks for nothing; "All" brings the rest back.
    # The selected photo stays selected throughout.
    qtbot.mouseClick(
        window.tier_plot, Qt.MouseButton.LeftButton, pos=window.tier_plot.chip_rect(first.rank).center()
    )
    assert {model.row(r).tier for r in model.photo_rows()} == {first.rank}
    assert len(model.photo_rows()) == first.count and view.current_photo_id() == picked
    bar.triggerAction(QAbstractSlider.SliderAction.SliderToMaximum)
    assert not model.is_fetching_more
    qtbot.mouseClick(
        window.tier_plot, Qt.MouseButton.LeftButton, pos=window.tier_plot.chip_rect(None).center()
    )
    assert [model.row(i) for i in range(len(rows))] == rows
    assert view.current_photo_id() == picked and view.selected_photo_ids() == [picked]

    # Scrolling on to the end of the library shows every photo once.
    for _ in range(10):
        if not model.more_available:
            break
        qtbot.waitUntil(lambda: bar.maximum() > bar.value(), timeout=10_000)  # new rows laid out
        bar.triggerAction(QAbstractSlider.SliderAction.SliderToMaximum)
        qtbot.waitUntil(lambda: not model.is_fetching_more, timeout=30_000)
    assert not model.more_available
    ids = [model.row(r).photo_id for r in model.photo_rows()]
    assert len(ids) == len(set(ids)) == library.status().indexed
    assert view.current_photo_id() == picked


def test_profile_switcher_and_fine_tune_dialog_in_the_window(window, library, photos, qtbot):
    from app.finetune_dialog import FinetuneDialog
    from app.profile_switcher import BASE_LABEL
    from tests.core.test_profiles import adapter

    _index_folder(qtbot, window, photos)
    switcher = window.profile_switcher
    assert switcher.combo.currentText() == BASE_LABEL and switcher.combo.count() == 1
    assert switcher.combo.toolTip() == BASE_LABEL  # the whole label, however narrow the panel
    base_result = _search_typed(qtbot, window, "a red car")
    base_scores = [hit.score for hit in base_result.hits]

    # A profile saved by a fine-tune appears once the dialog reports it applied.
    identity = library.embedder().identity
    info = library.profile_store.save_adapter("garden", adapter(seed=3), identity, library.model_spec)
    window.finetune_action.trigger()
    dialog = window.finetune_dialog
    assert isinstance(dialog, FinetuneDialog) and dialog.isVisible()
    library.use_profile(info.name, info.version)
    with qtbot.waitSignal(window.session.search_finished, timeout=30_000) as searched:
        dialog.profile_applied.emit(library.active_profile)  # as Apply does once the profile serves
    assert switcher.combo.currentText().startswith("garden v1")
    tuned_scores = [hit.score for hit in searched.args[1].hits]
    assert tuned_scores != base_scores  # the same query, answered through the adapter
    qtbot.waitUntil(lambda: "fine-tuned: <b>garden v1</b>" in window.model_box.title.text(), timeout=10_000)
    dialog.reject()

    # Back to the model alone from the switcher: searches answer as before.
    with qtbot.waitSignal(window.session.search_finished, timeout=30_000) as searched:
        switcher.choose(None)
    assert library.active_profile is None
    assert [hit.score for hit in searched.args[1].hits] == pytest.approx(base_scores)
    qtbot.waitUntil(lambda: "fine-tuned" not in window.model_box.title.text(), timeout=10_000)

    # And forth again, from the switcher.
    with qtbot.waitSignal(switcher.switched, timeout=30_000):
        switcher.choose("garden")
    assert library.active_profile.label == "garden v1"
    assert window.finetune_action.isEnabled()


def test_details_pane_shows_and_edits_tags(window, library, photos, qtbot):
    _index_folder(qtbot, window, photos)
    result = _search_typed(qtbot, window, "a red car")
    photo_id = result.hits[0].photo_id
    with qtbot.waitSignal(window.session.tags_read, timeout=30_000):
        window.show_details(photo_id)
    details = window.details
    assert details.tags is not None and details.tags.photo_id == photo_id
    expected_disk = library.photo_tags(photo_id).on_disk
    assert details.disk_tags_value.text() == (", ".join(expected_disk) or "–")
    assert details.given_tags.count() == 0

    # Type two tags and Enter: stored by the library (normalised), listed in the pane.
    details.tag_edit.setFocus()
    qtbot.keyClicks(details.tag_edit, "The Red Kayak,  Lisbon_2019 ")
    with qtbot.waitSignal(window.session.tags_read, timeout=30_000):
        qtbot.keyClick(details.tag_edit, Qt.Key.Key_Return)
    assert set(library.tags.of([photo_id])[photo_id]) == {"the red kayak", "lisbon 2019"}
    listed = [details.given_tags.item(i).text() for i in range(details.given_tags.count())]
    assert set(listed) == {"the red kayak", "lisbon 2019"} and details.tag_edit.text() == ""

    # Select one and press Delete: it is gone from the library and the pane.
    item = details.given_tags.findItems("the red kayak", Qt.MatchFlag.MatchExactly)[0]
    details.given_tags.setCurrentItem(item)
    assert details.remove_tags_button.isEnabled()
    details.given_tags.setFocus()
    with qtbot.waitSignal(window.session.tags_read, timeout=30_000):
        qtbot.keyClick(details.given_tags, Qt.Key.Key_Delete)
    assert library.tags.of([photo_id])[photo_id] == ("lisbon 2019",)
    assert [details.given_tags.item(i).text() for i in range(details.given_tags.count())] == ["lisbon 2019"]

    # Another photo: its own tags, none given.
    other = result.hits[1].photo_id
    with qtbot.waitSignal(window.session.tags_read, timeout=30_000):
        window.show_details(other)
    assert details.tags.photo_id == other and details.given_tags.count() == 0


def test_weights_download_progress_shows_under_the_model(window, library, qtbot):
    """A model switch that downloads weights shows how far the download is (reported from the
    loading thread, a few times a second, the last report always)."""
    from core.models import DownloadProgress

    assert library.on_download == window.session._on_download
    emitted: list[DownloadProgress] = []
    window.session.download_progress.connect(emitted.append)
    reports = [DownloadProgress("open_clip_model.safetensors", n * 1_000_000, 600_000_000) for n in (1, 2, 3)]

    def download():
        for report in reports:
            library.on_download(report)
        library.on_download(DownloadProgress("open_clip_model.safetensors", 600_000_000, 600_000_000))

    loader = threading.Thread(target=download)
    loader.start()
    loader.join(10)
    qtbot.waitUntil(lambda: "600 of 600 MB (100%)" in window.model_box.pending.text(), timeout=10_000)
    assert window.model_box.pending.isVisible()
    assert "only the first time" in window.model_box.pending.text()
    # the first report went through, the two right after it were too soon; the last one always goes
    assert [r.done_bytes for r in emitted] == [1_000_000, 600_000_000]
    window.session._last_download_report = 0.0
    library.on_download(DownloadProgress("other.bin", 5_000_000, None))
    qtbot.waitUntil(lambda: "other.bin: 5 MB" in window.model_box.pending.text(), timeout=10_000)


def test_a_settings_file_of_wrong_types_still_opens_the_window(make_window, library, tmp_path):
    (tmp_path / "odd.ini").write_text(
        "[search]\nhistory=@Point(1 2)\n[view]\ninspector=@Rect(1 2 3 4)\ndetails=perhaps\n"
        "[window]\ngeometry=12\nstate=@Size(3 4)\n"
    )
    window = make_window(library, settings_name="odd.ini")
    assert window.isVisible() and window.search_bar.history_model.stringList() == []
    assert window.inspector_action.isChecked() and not window.details_action.isChecked()


def test_the_summary_says_how_many_match_not_the_page_size():
    from types import SimpleNamespace

    from app.main_window import summary_text

    hits, tiers = [object()] * 60, [object()] * 3
    many = SimpleNamespace(hits=hits, tiers=tiers, long_tail=False, match_count=83, match_count_capped=False)
    assert summary_text(many, "“trees”") == "83 photos match “trees”; 60 shown in 3 tiers"
    capped = SimpleNamespace(
        hits=hits, tiers=tiers, long_tail=False, match_count=1000, match_count_capped=True
    )
    assert summary_text(capped, "“a car”").startswith("At least 1,000 photos match")
    one = SimpleNamespace(
        hits=hits[:5], tiers=tiers[:1], long_tail=False, match_count=1, match_count_capped=False
    )
    assert summary_text(one, "“x”") == "1 photo matches “x”; 5 shown in 1 tier"
    none = SimpleNamespace(
        hits=hits[:7], tiers=tiers[:2], long_tail=True, match_count=0, match_count_capped=False
    )
    assert summary_text(none, "“x”") == "No exact match for “x”; the 7 nearest alternatives in 2 tiers"


def test_usable_at_800_by_600_with_panels_that_collapse(window, photos, qtbot):
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.width() == 800)  # nothing holds the window wider
    assert window.minimumSizeHint().width() <= 800
    _index_folder(qtbot, window, photos)
    wait_indexed(qtbot, window)
    _search_typed(qtbot, window, "red car")
    view = window.results_view
    cells = window.results_model.photo_rows()[:3]
    lefts = {view.visualRect(window.results_model.index(r)).left() for r in cells}
    assert len(lefts) >= 2  # the grid has two columns at least, beside the library panel
    plot = window.tier_plot
    assert all(plot.chip_rect(t.rank).right() <= plot.width() for t in plot.tiers)  # no chip clipped
    # Ctrl+Shift+L hides the library panel, and the grid takes its room.
    before = view.viewport().width()
    qtbot.keyClick(
        window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    qtbot.waitUntil(lambda: not window.library_dock.isVisible())
    qtbot.waitUntil(lambda: view.viewport().width() > before + 150)
    qtbot.keyClick(window, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert window.details_action.isChecked()
    # With the library panel back and the details pane open, the window still fits 800 px.
    qtbot.keyClick(
        window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    qtbot.waitUntil(lambda: window.library_dock.isVisible())
    window.show_details(window.results_model.row(cells[0]).photo_id)  # a photo in it
    qtbot.waitUntil(lambda: window.details.isVisible())
    parts = {  # side by side, with room for the splitter handles and dock margins
        name: widget.minimumSizeHint().width()
        for name, widget in (
            ("library", window.library_dock),
            ("results", window.left_splitter),
            ("details", window.details),
        )
    }
    assert sum(parts.values()) + 24 <= 800, parts
    qtbot.waitUntil(lambda: window.width() == 800)
    assert view.viewport().width() >= 180


def test_help_lists_the_shortcuts_and_about_names_the_version_and_library(window, qtbot):
    shortcuts = window.show_shortcuts()
    table = shortcuts.table
    keys = {table.item(r, 1).text() for r in range(table.rowCount())}
    assert {"Ctrl+F", "Ctrl+Shift+L", "Ctrl+I", "Enter, Space or double click"} <= keys
    for action in (window.details_action, window.inspector_action):
        assert action.shortcut().toString() in keys  # the table tells what the menus do
    about = window.show_about()
    text = about.label.text()
    assert "LadderLens" in text and window.session.root in text and window.session.model_spec in text
    shortcuts.close()
    about.close()


def test_filters_like_with_words_and_not_like(window, photos, qtbot):
    _index_folder(qtbot, window, photos)
    result = _search_typed(qtbot, window, "red car")
    everything = len(result.hits)
    day = window.session.photo(result.hits[0].photo_id).taken_at[:10]  # the demo photos carry EXIF dates
    y, m, d = (int(x) for x in day.split("-"))
    same_day = set(window.session.library.catalog.photo_ids_where(None, day, day))
    assert 0 < len(same_day) < everything

    # Filters: only photos taken that day, with the same words.
    qtbot.keyClick(
        window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert window.filter_bar.isVisible() and window.filter_button.isChecked()
    window.filter_bar.from_edit.setDate(QDate(y, m, d))
    window.filter_bar.to_edit.setDate(QDate(y, m, d))
    qtbot.waitUntil(
        lambda: window.last_request.where is not None and window.last_request.where.taken_to == day
    )
    qtbot.waitUntil(lambda: {h.photo_id for h in window._result.hits} == same_day)
    assert window.last_request.text == "red car"
    # Hiding the filters clears them: a hidden filter would hide photos.
    window.filter_action.setChecked(False)
    qtbot.waitUntil(lambda: window.last_request.where is None and len(window._result.hits) == everything)

    # More like this keeps the words typed ("like this, but ..."); not like this moves away.
    photo = window._result.hits[0].photo_id
    window.search_like_photo(photo)
    qtbot.waitUntil(
        lambda: window.last_request.like_photo_id == photo and window.last_request.text == "red car"
    )
    assert window.search_bar.chip.text().startswith("Like:")
    window.search_not_like_photo(photo)
    qtbot.waitUntil(
        lambda: window.last_request.example_weight < 0 and window.last_request.like_photo_id == photo
    )
    assert window.search_bar.chip.text().startswith("Not like:")
    qtbot.waitUntil(lambda: window._result is not None and bool(window._result.hits))
    assert photo not in {h.photo_id for h in window._result.hits}
    assert "not like" in window.results_summary.text()


def test_the_size_slider_resizes_thumbnails_and_is_remembered(window, photos, qtbot):
    from app.results_view import THUMB_SIDES

    _index_folder(qtbot, window, photos)
    _search_typed(qtbot, window, "red car")
    view, model = window.results_view, window.results_model
    first = model.index(model.photo_rows()[0])
    before = view.visualRect(first).width()
    window.size_slider.setValue(len(THUMB_SIDES) - 1)
    assert view.thumb_side == THUMB_SIDES[-1] and model.thumb_pixels >= THUMB_SIDES[-1]
    qtbot.waitUntil(lambda: view.visualRect(first).width() > before + 100)
    window.size_slider.setValue(0)
    qtbot.waitUntil(lambda: view.visualRect(first).width() < before)
    window.save_state()
    assert int(window.settings.value("view/thumb_side")) == THUMB_SIDES[0]
