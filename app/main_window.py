"""The main window: search bar, tiered results grid, tier inspector, details and library panels.

The window wires widgets to the :class:`~app.session.LibrarySession` with signals and keeps only
presentation state (which photo query is active, which tier is shown). Everything slow runs in the
session's workers or the thumbnail pool.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeyEvent,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.app_settings import QueryHistory
from app.banner import Banner, BannerKind
from app.browse_mode import BrowseMode
from app.details_pane import DetailsPane, PhotoDetails
from app.filter_bar import FilterBar
from app.indexing_view import IndexingView
from app.library_panel import LibraryPanel, progress_text, report_text
from app.model_panel import ModelBox
from app.photo_actions import PhotoActions
from app.profile_switcher import ProfileSwitcher
from app.results_model import PhotoRow, ResultsModel, format_score, rows_from_hits
from app.results_view import THUMB_SIDES, ResultsView
from app.search_bar import SearchBar, is_image_path, local_paths
from app.session import RESULTS_PAGE, LibrarySession, SearchRequest
from app.throttle import Throttle
from app.thumbnails import ThumbnailLoader
from app.tier_plot import TierPlot
from app.welcome_page import WelcomePage
from core.query import NOT_LIKE_WEIGHT

logger = logging.getLogger(__name__)

SEARCH_DELAY_MS = 250
LONG_TAIL_TEXT = "No exact match — nearest alternatives below."


def long_tail_text(unknown_words: tuple[str, ...] = ()) -> str:
    """The long-tail banner: what the model does not know, then that nothing matches."""
    if not unknown_words:
        return LONG_TAIL_TEXT
    quoted = [f"“{w}”" for w in unknown_words]
    words = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"This model does not know {words}. {LONG_TAIL_TEXT}"


STATUS_REFRESH_MS = 2000


class MainWindow(QMainWindow):
    """LadderLens's window over one library session."""

    results_shown = Signal(object)  # the SearchResult now on screen

    def __init__(
        self,
        session: LibrarySession,
        settings: QSettings,
        thumbnails: ThumbnailLoader | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.thumbnails = thumbnails or ThumbnailLoader(parent=self)
        self.history = QueryHistory(settings)
        self.setWindowTitle("LadderLens")
        self.setAcceptDrops(True)
        self._photo_query: tuple[str, Any, str] | None = None  # ("image", path, label) / ("like", id, label)
        self._result: Any = None
        self._search_t0: float | None = None
        self._closing = False
        self._demo_running = False
        self.last_request: SearchRequest | None = None  # the request whose results are shown
        self.results_page = RESULTS_PAGE  # results asked for at first, and more each time
        self._switching_to: str | None = None  # a model switch asked for and not finished
        self._has_folders = True  # until the first read of the library says otherwise
        self._indexed = -1
        self.finetune_dialog: Any = None  # the fine-tune dialog, once opened
        self.viewer: Any = None  # the full-size viewer, once opened

        self._build_widgets()
        self._build_menus()
        self._connect()
        self._restore_state()
        self.refresh_library()

    # ------------------------------------------------------------------ construction

    def _build_widgets(self) -> None:
        self.search_bar = SearchBar()
        self.search_bar.set_history(self.history.items)
        self.throttle = Throttle(self._search_typed_text, SEARCH_DELAY_MS, self)
        self.long_tail_banner = Banner(closable=False)
        self.long_tail_banner.setAccessibleName("No exact match")
        self.message_banner = Banner(closable=True)
        self._build_results_grid()
        self._build_splitters()
        self._build_central()
        self._build_library_dock()
        self._build_status_bar()

    def _build_results_grid(self) -> None:
        """The results grid with its summary line, and the label shown instead when it is empty."""
        self.results_model = ResultsModel(self.thumbnails, self)
        self.results_view = ResultsView()
        self.results_view.setModel(self.results_model)
        self.tier_plot = TierPlot()
        self.results_summary = QLabel()
        self.results_summary.setTextFormat(Qt.TextFormat.PlainText)  # it quotes the query as typed
        self.results_summary.setWordWrap(True)
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)
        self.grid_stack = QStackedWidget()
        self.grid_stack.addWidget(self.empty_label)
        self.grid_stack.addWidget(self.results_view)
        self.indexing_view = IndexingView(self.thumbnails)  # while a library is read, nothing searched
        self.grid_stack.addWidget(self.indexing_view)

    def _build_splitters(self) -> None:
        """The tier inspector above the grid (left), the details pane beside them (right)."""
        grid_box = QWidget()
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addWidget(self.results_summary)
        grid_layout.addWidget(self.grid_stack, 1)

        self.left_splitter = QSplitter(Qt.Orientation.Vertical)
        self.left_splitter.setObjectName("leftSplitter")
        self.left_splitter.addWidget(self.tier_plot)
        self.left_splitter.addWidget(grid_box)
        self.left_splitter.setStretchFactor(0, 0)
        self.left_splitter.setStretchFactor(1, 1)
        self.left_splitter.setCollapsible(1, False)
        self.left_splitter.setSizes([190, 600])

        self.details = DetailsPane(self.thumbnails)
        self.details.hide()
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.addWidget(self.left_splitter)
        self.main_splitter.addWidget(self.details)
        self.main_splitter.setStretchFactor(0, 1)
        self.main_splitter.setStretchFactor(1, 0)
        self.main_splitter.setCollapsible(0, False)
        self.main_splitter.setSizes([900, 320])

    def _build_central(self) -> None:
        """The search bar and the banners over the pages: the welcome page, or the results."""
        self.welcome = WelcomePage()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(self.main_splitter)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 8, 8, 4)
        top = QHBoxLayout()
        top.addWidget(self.search_bar, 1)
        self.filter_button = QToolButton()
        self.filter_button.setText("Filter")
        self.filter_button.setCheckable(True)
        self.filter_button.setToolTip("Only photos of one folder or taken between two days (Ctrl+Shift+F)")
        top.addWidget(self.filter_button)
        self.browse = BrowseMode(self, self.settings)
        top.addWidget(self.browse.button)
        top.addWidget(self.browse.sort_combo)
        layout.addLayout(top)
        self.filter_bar = FilterBar()
        self.filter_bar.hide()
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.message_banner)
        layout.addWidget(self.long_tail_banner)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

    def _build_library_dock(self) -> None:
        """The library panel, and under it the model with the profile switcher, in a dock."""
        self.library_panel = LibraryPanel()
        self.model_box = ModelBox(self.session)
        dock_body = QWidget()
        dock_layout = QVBoxLayout(dock_body)
        dock_layout.setContentsMargins(8, 0, 8, 8)
        dock_layout.addWidget(self.library_panel, 1)
        model_group = QGroupBox("Model")
        model_layout = QVBoxLayout(model_group)
        model_layout.setContentsMargins(0, 0, 0, 0)
        model_layout.addWidget(self.model_box)
        self.profile_switcher = ProfileSwitcher(self.session, parent=self)
        self.profile_switcher.setToolTip(
            "Fine-tune profiles made from your tagged folders (Library ▸ Fine-tune…); "
            "the model alone is always one click away"
        )
        model_layout.addWidget(self.profile_switcher)
        dock_layout.addWidget(model_group)
        self.library_dock = QDockWidget("Library", self)
        self.library_dock.setObjectName("libraryDock")
        self.library_dock.setWidget(dock_body)
        self.library_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetClosable | QDockWidget.DockWidgetFeature.DockWidgetMovable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.library_dock)
        self.resizeDocks([self.library_dock], [300], Qt.Orientation.Horizontal)

    def _build_status_bar(self) -> None:
        """The library's count and model in the status bar, re-read every few seconds while indexing."""
        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(0, len(THUMB_SIDES) - 1)
        self.size_slider.setPageStep(1)
        self.size_slider.setFixedWidth(90)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.setAccessibleName("Thumbnail size")
        self.size_slider.setValue(THUMB_SIDES.index(self.results_view.thumb_side))
        self.size_slider.valueChanged.connect(lambda i: self.results_view.set_thumb_side(THUMB_SIDES[i]))
        self.statusBar().addPermanentWidget(self.size_slider)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_REFRESH_MS)
        self._status_timer.timeout.connect(self.refresh_library)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.add_folder_action = QAction("&Add folder…", self)
        self.add_folder_action.triggered.connect(self.library_panel.choose_folder)
        self.demo_action = QAction("Try the &demo library", self)
        self.demo_action.triggered.connect(self.start_demo)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(self.add_folder_action)
        file_menu.addAction(self.demo_action)
        file_menu.addSeparator()
        self.settings_action = QAction("&Settings…", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.settings_action.triggered.connect(self.open_settings_dialog)
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        library_toggle = self.library_dock.toggleViewAction()
        library_toggle.setShortcut(QKeySequence("Ctrl+Shift+L"))  # a narrow window gives the grid its room
        view_menu.addAction(library_toggle)
        self.inspector_action = QAction("&Tier inspector", self, checkable=True, checked=True)
        self.inspector_action.setShortcut(QKeySequence("Ctrl+Shift+T"))
        self.inspector_action.toggled.connect(self.tier_plot.setVisible)
        view_menu.addAction(self.inspector_action)
        self.details_action = QAction("&Details", self, checkable=True, checked=False)
        self.details_action.setShortcut(QKeySequence("Ctrl+I"))
        self.details_action.toggled.connect(self._set_details_visible)
        view_menu.addAction(self.details_action)

        self._build_photos_menu()
        library_menu = self.menuBar().addMenu("&Library")
        self.rescan_action = QAction("&Re-scan folders", self)
        self.rescan_action.setShortcut(QKeySequence.StandardKey.Refresh)
        self.rescan_action.triggered.connect(lambda: self.session.index(None))
        self.model_action = QAction("Change &model…", self)
        self.model_action.triggered.connect(self.model_box.open_dialog)
        self.finetune_action = QAction("&Fine-tune on tagged folders…", self)
        self.finetune_action.triggered.connect(self.open_finetune_dialog)
        library_menu.addAction(self.rescan_action)
        library_menu.addAction(self.model_action)
        library_menu.addAction(self.finetune_action)

        self.filter_action = QAction("&Filters", self, checkable=True, checked=False)
        self.filter_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.filter_action.toggled.connect(self._set_filters_visible)
        self.filter_button.toggled.connect(self.filter_action.setChecked)
        view_menu.addAction(self.filter_action)
        view_menu.addAction(self.browse.action)

        self._build_help_menu()

        QShortcut(QKeySequence.StandardKey.Find, self, self.search_bar.focus)

    def _build_photos_menu(self) -> None:
        """What can be done with the selected photos (also the grid's context menu)."""
        self.photo_actions = PhotoActions(self)
        self.photo_actions.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        photos_menu = self.menuBar().addMenu("&Photos")
        photos_menu.addActions(self.photo_actions.actions[:5])
        photos_menu.addSeparator()
        photos_menu.addActions(self.photo_actions.actions[5:])

    def _on_tags_changed(self, photo_ids: list[int]) -> None:
        """Photos were tagged together: the details pane reads the tags of the one it shows again."""
        shown = self.details.details
        if shown is not None and shown.photo_id in photo_ids:
            self.session.read_tags(shown.photo_id)

    def _build_help_menu(self) -> None:
        help_menu = self.menuBar().addMenu("&Help")
        self.shortcuts_action = QAction("&Keyboard shortcuts", self)
        self.shortcuts_action.triggered.connect(self.show_shortcuts)
        self.about_action = QAction("&About LadderLens", self)
        self.about_action.triggered.connect(self.show_about)
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_action)

    def _connect(self) -> None:
        sb = self.search_bar
        sb.text_edited.connect(self._on_text_edited)
        sb.submitted.connect(self.search_now)
        sb.image_query.connect(self.search_like_image)
        sb.photo_query_cleared.connect(self._on_photo_query_cleared)
        sb.edit.down_handler = self._enter_results

        self.results_view.activated_photo.connect(self.open_viewer)
        self.results_view.current_photo_changed.connect(self._on_current_photo)
        self.results_model.filter_changed.connect(self._on_filter_changed)
        self.results_model.more_requested.connect(self._search_more)
        self.tier_plot.tier_clicked.connect(self.set_tier_filter)
        self.details.more_like_this.connect(self.search_like_photo)
        self.details.not_like_this.connect(self.search_not_like_photo)
        self.filter_bar.changed.connect(self._on_photo_filter_changed)
        self.details.tags_added.connect(lambda pid, tags: self.session.change_tags(pid, add=tags))
        self.details.tags_removed.connect(lambda pid, tags: self.session.change_tags(pid, remove=tags))

        self.welcome.add_folder_requested.connect(self.library_panel.choose_folder)
        self.welcome.demo_requested.connect(self.start_demo)
        self.welcome.choose_model_requested.connect(self.model_box.open_dialog)

        lp = self.library_panel
        lp.folder_chosen.connect(self.add_folder)
        lp.remove_requested.connect(self._remove_folder)
        lp.rescan_requested.connect(lambda: self.session.index(None))
        lp.cancel_requested.connect(self.session.cancel_index)
        self.model_box.model_requested.connect(self.change_model)
        self.profile_switcher.switched.connect(self._on_profile_switched)
        self.profile_switcher.failed.connect(self._on_profile_failed)

        s = self.session
        s.search_started.connect(self._on_search_started)
        s.search_finished.connect(self._on_search_finished)
        s.search_failed.connect(self._on_search_failed)
        s.index_started.connect(self._on_index_started)
        s.index_progress.connect(self._on_index_progress)
        s.index_finished.connect(self._on_index_finished)
        s.index_failed.connect(self._on_index_failed)
        s.model_failed.connect(self._on_model_failed)
        s.library_changed.connect(self.refresh_library)
        s.state_read.connect(self._on_state_read)
        s.folder_removed.connect(self._on_folder_removed)
        s.tags_read.connect(self.details.set_tags)
        s.download_progress.connect(self._on_download_progress)
        s.tags_failed.connect(self.show_error)
        s.tags_changed.connect(self._on_tags_changed)
        s.state_failed.connect(self.show_error)

    # ------------------------------------------------------------------ library state

    def refresh_library(self) -> None:
        """Ask for the library's folders, counts, failures and model (read in a worker)."""
        if not self._closing:
            self.session.refresh()

    def _on_state_read(self, state: Any) -> None:
        if self._closing:
            return
        status, folders, failures = state.status, state.folders, state.failures
        self.library_panel.set_folders(folders)
        self.filter_bar.set_folders([f.path for f in folders])
        self.library_panel.set_failures(failures)
        photos = int(getattr(status, "photos", 0) or 0)
        indexed = int(getattr(status, "indexed", 0) or 0)
        summary = f"{_plural(photos, 'photo')} in {_plural(len(folders), 'folder')}"
        if indexed < photos:
            summary += f" · {indexed:,} searchable"
        if failures:
            summary += f" · {len(failures):,} could not be read"
        self.library_panel.set_summary(summary)
        self.status_label.setText(f"{indexed:,} photos searchable · model: {state.model_spec}")
        self.model_box.set_model(
            state.model_spec,
            state.model_description,
            bool(getattr(status, "is_starter", False)),
            getattr(status, "profile", None),
        )
        target = getattr(status, "target_model", None) or self._switching_to
        self.model_box.set_pending(
            f"Switching to {target}: photos are read again in the background; "
            "searches keep using the current model until then."
            if target
            else None
        )
        self._has_folders = bool(folders)
        self._indexed = indexed
        self._update_page()
        if indexed > 0:
            self.session.warm_up()

    def _update_page(self) -> None:
        has_folders, indexed = self._has_folders, self._indexed
        empty_library = not has_folders and indexed == 0
        if empty_library and not self.session.is_indexing:
            self.pages.setCurrentWidget(self.welcome)
            self.welcome.set_busy(False)
        else:
            self.pages.setCurrentWidget(self.main_splitter)
        self.search_bar.setEnabled(not empty_library)  # nothing to search yet
        if self.results_model.rowCount() == 0:
            if indexed < 0:
                text = "Opening the library…"
            elif self.session.is_indexing:
                self.grid_stack.setCurrentWidget(self.indexing_view)  # stage, counts, photos just read
                return
            elif indexed == 0:
                text = "No photos yet: add a folder in the Library panel."
            elif self._result is not None:
                text = "Nothing found."
            else:
                text = f"Describe what you are looking for to search {indexed:,} photos."
            self.empty_label.setText(text)
            self.grid_stack.setCurrentWidget(self.empty_label)
        else:
            self.grid_stack.setCurrentWidget(self.results_view)

    def add_folder(self, path: str) -> None:
        self.message_banner.hide()
        if self.model_box.hold_folder(path):
            return  # the starter would read the user's own photos: asked which model first
        self.session.add_folder(path)

    def _remove_folder(self, path: str) -> None:
        self.session.remove_folder(path)

    def _on_folder_removed(self, _path: str) -> None:
        if self.current_request_is_active():
            self._research()

    def start_demo(self) -> None:
        self.welcome.set_busy(True)
        self.message_banner.hide()
        self._demo_running = True
        self.session.make_demo()

    def change_model(self, spec: str) -> None:
        spec = spec.strip()
        if not spec or spec == self.session.model_spec:
            return
        self.message_banner.hide()
        self._switching_to = spec
        self.model_box.set_pending(f"Loading {spec}…")
        self.session.set_model(spec)

    # ------------------------------------------------------------------ indexing feedback

    def _on_index_started(self) -> None:
        self.library_panel.set_indexing(True)
        self.rescan_action.setEnabled(False)
        self.demo_action.setEnabled(False)
        self.model_box.change_button.setEnabled(False)
        self.indexing_view.reset()
        self._status_timer.start()
        self.refresh_library()

    def _on_index_progress(self, progress: Any) -> None:
        self.library_panel.progress.show_progress(progress)
        self.statusBar().showMessage(progress_text(progress))
        self.indexing_view.show_progress(progress)

    def _on_index_finished(self, report: Any) -> None:
        text = report_text(report) if report is not None else "Indexing stopped; what was done is kept."
        demo, self._demo_running = self._demo_running, False
        self._end_indexing(text)
        if not self._closing:
            self.profile_switcher.refresh()  # a model switch changes which profiles can be used
        if demo and report is not None and not self.current_request_is_active():
            self._try_example_query()
        elif self.current_request_is_active():
            self._research()
        else:
            self.browse.refresh()  # the photos just indexed

    def _try_example_query(self) -> None:
        """After the demo is ready, show what a search looks like with one of its example queries."""
        from trainer.demo_library import example_queries

        examples = example_queries()
        if examples:
            self.search_bar.set_text(examples[0].text)
            self.search_now()

    def _on_index_failed(self, message: str) -> None:
        self._demo_running = False
        self._end_indexing("Indexing did not finish.")
        self.show_error(message)

    def _end_indexing(self, text: str) -> None:
        self._switching_to = None
        self._status_timer.stop()
        self.library_panel.set_indexing(False)
        self.library_panel.progress.set_idle(text)
        self.statusBar().showMessage(text, 10_000)
        self.rescan_action.setEnabled(True)
        self.demo_action.setEnabled(True)
        self.model_box.change_button.setEnabled(True)
        self.model_box.set_pending(None)
        self.welcome.set_busy(False)

    def _on_download_progress(self, progress: Any) -> None:
        done = progress.done_bytes / 1e6
        if progress.total_bytes:
            text = f"Downloading {progress.name}: {done:,.0f} of {progress.total_bytes / 1e6:,.0f} MB"
            text += f" ({progress.fraction:.0%}); only the first time."
        else:
            text = f"Downloading {progress.name}: {done:,.0f} MB; only the first time."
        self.model_box.set_pending(text)
        self.statusBar().showMessage(text, 5_000)

    def _on_model_failed(self, message: str) -> None:
        self.model_box.set_pending(None)
        self.show_error(message)

    def show_error(self, message: str) -> None:
        self.message_banner.show_message(message, BannerKind.ERROR)

    # ------------------------------------------------------------------ searching

    def _on_text_edited(self, text: str) -> None:
        if not text.strip() and self._photo_query is None:
            self.throttle.cancel()
            self.clear_results()
            return
        self.throttle(text)

    def _search_typed_text(self, text: str) -> None:
        self._search(text)

    def search_now(self, text: str | None = None) -> None:
        """Search at once (Enter); the query goes into the history."""
        text = self.search_bar.text() if text is None else text
        self.throttle.cancel()
        if not text.strip() and self._photo_query is None:
            self.clear_results()
            return
        if text.strip() and self.history.add(text):
            self.search_bar.set_history(self.history.items)
        self._search(text)

    def search_like_photo(self, photo_id: int) -> None:
        """ "More like this": photos like one of the library's photos."""
        try:
            label = Path(self.session.photo(photo_id).path).name
        except Exception:
            label = f"photo {photo_id}"
        self._photo_query = ("like", int(photo_id), label)
        self.search_bar.set_photo_query(label)
        self._search(self.search_bar.text())  # with the words typed: "like this, but at night"

    def search_not_like_photo(self, photo_id: int) -> None:
        """ "Not like this": the words typed, away from photos like one of the library's photos."""
        try:
            name = Path(self.session.photo(photo_id).path).name
        except Exception:
            name = f"photo {photo_id}"
        self._photo_query = ("unlike", int(photo_id), f"not like {name}")
        self.search_bar.set_photo_query(name, unlike=True)
        if not self.search_bar.text().strip():
            self.statusBar().showMessage(
                f"Type what you are looking for; results move away from {name}.", 10_000
            )
            self.search_bar.focus()
            return
        self._search(self.search_bar.text())

    def search_like_image(self, path: str) -> None:
        """Photos like an image file (dropped on the window or the search bar)."""
        label = Path(path).name
        self._photo_query = ("image", str(path), label)
        self.search_bar.set_photo_query(label)
        self._search(self.search_bar.text())

    def _on_photo_query_cleared(self) -> None:
        self._photo_query = None
        text = self.search_bar.text()
        if text.strip():
            self._search(text)
        else:
            self.clear_results()

    def current_request_is_active(self) -> bool:
        return (
            self._result is not None or bool(self.search_bar.text().strip()) or self._photo_query is not None
        )

    def _research(self) -> None:
        if self.search_bar.text().strip() or self._photo_query is not None:
            self._search(self.search_bar.text())

    def _search(self, text: str) -> None:
        kind = self._photo_query[0] if self._photo_query else None
        request = SearchRequest(
            text=text.strip(),
            image=self._photo_query[1] if kind == "image" else None,
            like_photo_id=self._photo_query[1] if kind in ("like", "unlike") else None,
            example_weight=NOT_LIKE_WEIGHT if kind == "unlike" else 1.0,
            where=self.filter_bar.photo_filter(),
            k=self.results_page,
        )
        if request.is_empty():
            self.clear_results()
            return
        self._search_t0 = time.perf_counter()
        self.session.search(request)

    def _search_more(self) -> None:
        """The grid reached its end: the same search, asked for one page more than is shown."""
        shown = self.last_request
        if shown is None or self._result is None or self.session.latest_search_seq() != shown.seq:
            # A newer search is on its way (its results replace these), or nothing is shown.
            self.results_model.more_failed()
            return
        self.session.search(replace(shown, k=shown.k + self.results_page, extends=shown.seq))

    def _on_search_started(self, request: SearchRequest) -> None:
        self.statusBar().showMessage("Loading more results…" if request.extends else "Searching…")

    def _on_search_finished(self, request: SearchRequest, result: Any) -> None:
        if self.message_banner.kind == BannerKind.ERROR:
            self.message_banner.hide()
        shown = self.last_request
        if request.extends and shown is not None and request.extends == shown.seq:
            self._show_more(request, result)
            return
        self._result = result
        self.last_request = request
        self.browse.leave()
        self.tier_plot.setVisible(self.inspector_action.isChecked())
        self.thumbnails.forget_pending()
        tiers = list(result.tiers)
        rows = rows_from_hits(result.hits, bool(getattr(result, "details_checked", False)))
        more = len(result.hits) >= request.k  # as many as asked for: there may be more
        self.results_model.set_results(tiers, rows, bool(result.long_tail), more_available=more)
        self.tier_plot.set_data(
            tiers,
            [r.score for r in rows],
            [r.tier for r in rows],
            (),  # the grading's histogram stands for the library
            bool(result.long_tail),
            histogram=_histogram_of(result),
        )
        unknown = tuple(getattr(result, "unknown_words", ()))
        if result.long_tail and rows:
            self.long_tail_banner.show_message(long_tail_text(unknown), BannerKind.NOTICE)
        else:
            self.long_tail_banner.hide()
        self._update_summary()
        elapsed = f" in {1000 * (time.perf_counter() - self._search_t0):.0f} ms" if self._search_t0 else ""
        self.statusBar().showMessage(f"Searched{elapsed}", 5000)
        if rows:
            self.grid_stack.setCurrentWidget(self.results_view)
        else:
            self.empty_label.setText("Nothing found.")
            self.grid_stack.setCurrentWidget(self.empty_label)
        self.results_view.scrollToTop()
        if self.details.isVisible():
            self.details.show_details(None)
        self.results_shown.emit(result)

    def _show_more(self, request: SearchRequest, result: Any) -> None:
        """Add the results of a larger search below the graded tiers (which stay as they are)."""
        self.last_request = request
        more = len(result.hits) >= request.k
        added = self.results_model.append_more(result.hits, more_available=more)
        if added:
            self.tier_plot.add_results([r.score for r in self.results_model.more_rows()[-added:]])
        self._update_summary()
        self.statusBar().showMessage(f"{added} more results" if added else "No more results", 5000)

    def _on_search_failed(self, request: SearchRequest, message: str) -> None:
        self.statusBar().clearMessage()
        if request.extends:
            self.results_model.more_failed()
        self.show_error(message)

    def clear_results(self) -> None:
        self._result = None
        self.last_request = None
        self.results_model.clear()
        self.tier_plot.clear()
        self.long_tail_banner.hide()
        self.results_summary.clear()
        self.details.show_details(None)
        self._update_page()
        if not self._closing:
            self.browse.refresh()  # nothing searched: the photos, when browsing

    def _update_summary(self) -> None:
        result = self._result
        if result is None:
            self.results_summary.clear()
            return
        text = summary_text(result, self._describe_query())
        more = self.results_model.more_count
        if more:
            text += f", and {more} more below them"
        rank = self.results_model.tier_filter
        if rank is not None:
            tier = next((t for t in result.tiers if t.rank == rank), None)
            if tier is not None:
                text += (
                    f" — showing only “{tier.label}” ({tier.count}, scores {format_score(tier.min_score)}"
                    f"–{format_score(tier.max_score)}); Esc or “All” shows every tier"
                )
        self.results_summary.setText(text)

    def _describe_query(self) -> str:
        parts = []
        if self._photo_query is not None and self._photo_query[0] == "unlike":
            parts.append(self._photo_query[2])
        elif self._photo_query is not None:
            parts.append(f"photos like {self._photo_query[2]}")
        text = self.search_bar.text().strip()
        if text:
            parts.append(f"“{text}”")
        return " and ".join(parts) or "this query"

    def set_tier_filter(self, rank: int | None) -> None:
        """Show one tier only (None: all); the selected photos that stay in view stay selected."""
        view = self.results_view
        current, selected = view.current_photo_id(), view.selected_photo_ids()
        self.results_model.set_tier_filter(rank)
        view.select_photos(selected, current)

    def _on_filter_changed(self, rank: int | None) -> None:
        self.tier_plot.set_selected(rank)
        self._update_summary()

    # ------------------------------------------------------------------ details

    def open_viewer(self, photo_id: int) -> None:
        """Show the results full size, from ``photo_id`` on (Enter, Space or a double click)."""
        from app.viewer import PhotoViewer

        rows = [self.results_model.row(i) for i in self.results_model.photo_rows()]
        photos = [(r.photo_id, r.path) for r in rows if isinstance(r, PhotoRow)]
        index = next((i for i, (pid, _) in enumerate(photos) if pid == photo_id), None)
        if index is None:
            return
        if self.viewer is None:
            self.viewer = PhotoViewer(self)
            self.viewer.current_changed.connect(self._on_viewer_photo)
            self.viewer.closed.connect(self._on_viewer_closed)
        self.viewer.show_photos(photos, index)

    def _on_viewer_photo(self, photo_id: int) -> None:
        """Keep the grid's current photo on the one the viewer shows (closing it lands there)."""
        idx = self.results_model.index_of_photo(photo_id)
        if idx.isValid():
            self.results_view.setCurrentIndex(idx)

    def _set_filters_visible(self, visible: bool) -> None:
        self.filter_bar.setVisible(visible)
        self.filter_button.setChecked(visible)
        if visible:
            self.filter_bar.folder_combo.setFocus()
        elif self.filter_bar.photo_filter() is not None:
            self.filter_bar.clear()  # a hidden filter would silently hide photos

    def _on_photo_filter_changed(self, _where: object) -> None:
        if self.current_request_is_active():
            self._research()
        else:
            self.browse.refresh()

    def show_shortcuts(self) -> QDialog:
        from app.help_dialogs import ShortcutsDialog

        dialog = ShortcutsDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def show_about(self) -> QDialog:
        from app.help_dialogs import AboutDialog, about_text
        from app.log_file import LOG_NAME
        from core.paths import log_dir

        try:
            log_file: str | None = str(log_dir() / LOG_NAME)
        except OSError:
            log_file = None
        dialog = AboutDialog(about_text(self.session.model_spec, self.session.root, log_file), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _on_viewer_closed(self) -> None:
        """Back to the grid, on the photo the viewer showed last."""
        if not self._closing:
            self.activateWindow()
            self.results_view.setFocus()

    def show_details(self, photo_id: int) -> None:
        """Show one photo in the details pane."""
        self.details_action.setChecked(True)
        self._fill_details(photo_id)

    def _on_current_photo(self, photo_id: int | None) -> None:
        if self.details.isVisible():
            self._fill_details(photo_id)

    def _fill_details(self, photo_id: int | None) -> None:
        if photo_id is None:
            self.details.show_details(None)
            return
        idx = self.results_model.index_of_photo(photo_id)
        row = self.results_model.row(idx) if idx.isValid() else None
        try:
            info = self.session.photo(photo_id)
        except Exception as exc:
            from app.errors_text import user_message

            self.show_error(user_message(exc, "reading the photo's details"))
            return
        tier_label = self.results_model.tier_label(row.tier) if row else ""
        self.details.show_details(
            PhotoDetails(
                photo_id=int(photo_id),
                path=str(info.path),
                size=getattr(info, "size", None),
                width=getattr(info, "width", None),
                height=getattr(info, "height", None),
                taken_at=getattr(info, "taken_at", None),
                score=row.score if row else float("nan"),
                z=row.z if row else float("nan"),
                tier=row.tier if row else 0,
                tier_label=tier_label,
                differs=row.differs if row else None,
            )
        )
        self.session.read_tags(photo_id)
        if row is not None and self.history.add(self.search_bar.text()):
            self.search_bar.set_history(self.history.items)

    def _set_details_visible(self, visible: bool) -> None:
        self.details.setVisible(visible)
        if visible:
            self._fill_details(self.results_view.current_photo_id())

    # ------------------------------------------------------------------ keyboard, drops

    def _enter_results(self) -> bool:
        """Down in the search bar: into the results grid (when there are results)."""
        if not self.results_model.rowCount():
            return False
        self.results_view.setFocus(Qt.FocusReason.OtherFocusReason)
        if self.results_view.current_photo_id() is None:
            self.results_view.select_first_photo()
        return True

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.escape()
            event.accept()
            return
        super().keyPressEvent(event)

    def escape(self) -> None:
        """Esc: clear the tier filter first, then the search."""
        if self.results_model.tier_filter is not None:
            self.set_tier_filter(None)
            return
        if self.search_bar.text() or self._photo_query is not None:
            self.throttle.cancel()
            self.search_bar.set_text("")
            self._photo_query = None
            self.search_bar.set_photo_query(None)
            self.clear_results()
            self.search_bar.focus()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        paths = local_paths(event.mimeData())
        if any(p.is_dir() or is_image_path(p) for p in paths):
            event.acceptProposedAction()
            return
        super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        paths = local_paths(event.mimeData())
        if any(p.is_dir() or is_image_path(p) for p in paths):
            event.acceptProposedAction()
            return
        super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        folders = [p for p in paths if p.is_dir()]
        images = [p for p in paths if p.is_file() and is_image_path(p)]
        if not folders and not images:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        for folder in folders:
            self.add_folder(str(folder))
        if images and not folders:
            self.search_like_image(str(images[0]))

    # ------------------------------------------------------------------ state

    def _restore_state(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(QByteArray(geometry))
        else:
            self.resize(1280, 820)
        state = s.value("window/state")
        if isinstance(state, QByteArray | bytes):
            self.restoreState(QByteArray(state))
        for splitter in (self.left_splitter, self.main_splitter):
            value = s.value(f"window/{splitter.objectName()}")
            if isinstance(value, QByteArray | bytes):
                splitter.restoreState(QByteArray(value))
        self.inspector_action.setChecked(_as_bool(s.value("view/inspector", True), default=True))
        self.details_action.setChecked(_as_bool(s.value("view/details", False), default=False))
        side = s.value("view/thumb_side", self.results_view.thumb_side)
        if isinstance(side, int | str) and str(side).isdigit() and int(side) in THUMB_SIDES:
            self.size_slider.setValue(THUMB_SIDES.index(int(side)))

    def save_state(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        for splitter in (self.left_splitter, self.main_splitter):
            s.setValue(f"window/{splitter.objectName()}", splitter.saveState())
        s.setValue("view/inspector", self.inspector_action.isChecked())
        s.setValue("view/details", self.details_action.isChecked())
        s.setValue("view/thumb_side", self.results_view.thumb_side)
        self.browse.save()
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Save the window's state, stop indexing at its next safe point, and close."""
        if not self._closing:
            self._closing = True
            self.save_state()
            self.throttle.cancel()
            self._status_timer.stop()
            if self.session.is_indexing:
                self.statusBar().showMessage("Stopping indexing…")
            if self.finetune_dialog is not None:
                self.finetune_dialog.reject()  # stops a running step: nothing half-applied
            self.profile_switcher.shutdown()
            self.session.shutdown()
            self.thumbnails.shutdown()
            if self.viewer is not None:
                self.viewer.close()
                self.viewer.pool.shutdown()
        event.accept()

    # ------------------------------------------------------------------ fine-tune profiles

    def open_settings_dialog(self) -> None:
        """Open the Settings dialog (excluded folders, thumbnail cache, device, theme), or bring
        forward the one already open."""
        from app.settings_dialog import SettingsDialog

        dialog = getattr(self, "settings_dialog", None)
        if dialog is not None and dialog.isVisible():
            dialog.raise_()
            dialog.activateWindow()
            return
        if dialog is not None:
            dialog.deleteLater()
        self.settings_dialog = SettingsDialog(self.session, self.settings, self.thumbnails, self)
        self.settings_dialog.rescan_offered.connect(
            lambda _folders: self.statusBar().showMessage(
                "The new excluded folders apply at the next re-scan (Library ▸ Re-scan folders).", 15_000
            )
        )
        self.settings_dialog.open()

    def open_finetune_dialog(self) -> None:
        """Open (or bring forward) the fine-tune dialog over this window's library."""
        from app.finetune_dialog import FinetuneDialog

        if self.finetune_dialog is None:
            self.finetune_dialog = FinetuneDialog(self.session, self)
            self.finetune_dialog.profile_applied.connect(self._on_profile_applied)
        self.finetune_dialog.show()
        self.finetune_dialog.raise_()
        self.finetune_dialog.activateWindow()

    def _on_profile_applied(self, info: Any) -> None:
        self.profile_switcher.refresh()
        self._on_profile_switched(info)

    def _on_profile_switched(self, info: Any) -> None:
        """A profile (or the model alone, ``None``) answers searches now: show the current query's
        results under it."""
        if self._closing:
            return
        if info is not None:
            self.statusBar().showMessage(f"Searching with profile {info.label}.", 10_000)
        else:
            self.statusBar().showMessage("Searching with the model alone.", 10_000)
        self.refresh_library()
        self._research()

    def _on_profile_failed(self, message: str) -> None:
        self.message_banner.show_message(message, BannerKind.ERROR)


def summary_text(result: Any, query: str) -> str:
    """ "83 photos match red cars; 60 shown in 3 tiers", or what is shown when nothing matches."""
    n = len(result.hits)
    tiers = f"{len(result.tiers)} tier{'s' if len(result.tiers) != 1 else ''}"
    if result.long_tail:
        return f"No exact match for {query}; the {n} nearest alternative{'s' if n != 1 else ''} in {tiers}"
    shown = f"{n} shown in {tiers}"
    count = int(getattr(result, "match_count", 0))
    photos = f"{count:,} photo{'' if count == 1 else 's'}"
    lead = f"at least {photos}" if getattr(result, "match_count_capped", False) else photos
    verb = "matches" if count == 1 else "match"
    return f"{lead[0].upper()}{lead[1:]} {verb} {query}; {shown}"


def _histogram_of(result: Any) -> tuple[Any, Any] | None:
    """The grading's histogram of the query's scores over a sample of the library."""
    grading = getattr(result, "grading", None)
    if grading is None:
        return None
    return grading.histogram_counts, grading.histogram_edges


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _as_bool(value: Any, default: bool = False) -> bool:
    """A stored yes/no (INI stores it as text); anything else is the default."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    if isinstance(value, int):
        return bool(value)
    return default


__all__ = ["LONG_TAIL_TEXT", "MainWindow", "long_tail_text"]
