"""The GUI's handle on one library: quick reads on the GUI thread, long work in workers.

:class:`LibrarySession` is the only part of the app that calls the :class:`core.library.Library`
facade. Searches, indexing, model switches and the demo run in :class:`~app.workers.Worker`\\ s;
their results come back as signals carrying plain data (the facade's records), keyed by request
ids so a late answer to an old query is dropped instead of shown.

* Searches run one at a time; while one runs, only the newest request waits (intermediate
  queries typed meanwhile are skipped).
* Indexing runs one at a time; asking for more while it runs queues one more run afterwards.
* :meth:`shutdown` (also :meth:`close`) cancels indexing, drops queued work and waits, within one
  time limit for everything, until every worker has returned: closing the window mid-indexing
  leaves a consistent library, and no thread of the session is left running over a library
  that its owner closes next.
* Fine-tune profiles: the profile switcher and the fine-tune dialog run the session's profile jobs
  (:meth:`LibrarySession.use_profile`, :meth:`~LibrarySession.iter_preview_tags`,
  :meth:`~LibrarySession.iter_finetune`, :meth:`~LibrarySession.iter_apply_finetune`) in workers
  of their own; the jobs take plain values, so no widget holds the library.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDeadlineTimer, QObject, Signal

from app.errors_text import user_message
from app.garbage_collection import collector_paused, freeze_heap
from app.workers import Worker, WorkerPool
from core.errors import FolderError, ModelError

logger = logging.getLogger(__name__)

DEMO_FOLDER = "demo-library"
DEMO_COUNT = 400
DEMO_SEED = 7
DEMO_SIZE = (1024, 768)
# Indexing runs at a much lower CPU priority than the GUI and searches. The scheduler shares the
# CPUs between threads, not processes, and indexing runs several at once (its own, decoding, the
# model's compute threads): at nice 5 together they outweighed the GUI thread, which on a busy
# two-core machine then waited for a CPU while painting (benchmarks/bench_gui.py: 24-73 ticks
# over 50 ms at nice 5, 1-9 at nice 10, indexing no slower).
INDEX_NICENESS = 10
SHUTDOWN_TIMEOUT_MS = 60_000  # closing waits at most this long, in all, for the workers to return


DOWNLOAD_REPORT_S = 0.2  # a weights download reports its progress to the window this often at most
RESULTS_PAGE = 60  # results a search asks for at first, and how many more each time the grid asks
BROWSE_LIMIT = 3000  # photos shown without a query (Filters narrow a larger library)


@dataclass(frozen=True)
class SearchRequest:
    """What to search for: text, an image file, a photo of the library, or a mix.

    ``k`` results are asked for. ``extends`` is the ``seq`` of the request whose results this one
    continues (0: a new search): its results beyond those already shown are added below them.
    """

    text: str = ""
    image: str | None = None
    like_photo_id: int | None = None
    example_weight: float = 1.0  # of the image or photo; negative: "not like this"
    where: Any = None  # a core.query.PhotoFilter (folder, dates), or None
    k: int = RESULTS_PAGE
    seq: int = 0
    extends: int = 0

    def is_empty(self) -> bool:
        return not self.text.strip() and self.image is None and self.like_photo_id is None


@dataclass(frozen=True)
class BrowseRequest:
    """The library's photos without a query: ``order`` "date" (newest first) or "folder"."""

    order: str = "date"
    where: Any = None  # a core.query.PhotoFilter, or None
    limit: int = BROWSE_LIMIT
    seq: int = 0


@dataclass(frozen=True)
class LibraryState:
    """A snapshot of what the library panel shows, read in a worker."""

    status: Any
    folders: list[Any]
    failures: list[Any]
    model_spec: str
    model_description: str


@dataclass(frozen=True)
class StepProgress:
    """Progress of a step that is not indexing proper (making the demo, loading a model)."""

    phase: str
    done: int = 0
    total: int | None = None
    rate: float | None = None
    eta_s: float | None = None
    path: str | None = None
    failed: int = 0


@dataclass(frozen=True)
class TagPreview:
    """What a tagged folder holds, for the fine-tune dialog to show before training."""

    root: str
    photos: int
    not_indexed: int
    untagged: int
    counts: list[tuple[str, int]]
    problems: list[tuple[str, str]]
    empty_folders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileChoices:
    """The library's saved profiles, the one answering searches (None: the model alone), and the
    base model a profile must have been made on to be chosen now."""

    profiles: list[Any]
    active: Any
    base_spec: str

    def usable(self, info: Any) -> bool:
        """Whether profile ``info`` was made on the base model searches run on now."""
        return bool(info.base_spec == self.base_spec)

    def is_active(self, info: Any) -> bool:
        return self.active is not None and self.active.label == info.label


class LibrarySession(QObject):
    """Runs the library's operations for the GUI; signals carry plain records."""

    search_started = Signal(object)  # SearchRequest
    search_finished = Signal(object, object)  # SearchRequest, SearchResult
    search_failed = Signal(object, str)  # SearchRequest, message
    browse_finished = Signal(object, object)  # BrowseRequest, (photos, total)
    browse_failed = Signal(str)
    index_started = Signal()
    index_progress = Signal(object)  # IndexProgress or StepProgress
    index_finished = Signal(object)  # IndexReport, or None when cancelled
    index_failed = Signal(str)
    library_changed = Signal()  # folders, counts, failures or model may have changed
    folder_removed = Signal(str)
    state_read = Signal(object)  # LibraryState
    state_failed = Signal(str)
    model_failed = Signal(str)
    tags_read = Signal(object)  # core.library.PhotoTags
    download_progress = Signal(object)  # core.models.DownloadProgress, at most every DOWNLOAD_REPORT_S
    tags_failed = Signal(str)
    tags_changed = Signal(object)  # photo ids given tags together

    def __init__(
        self,
        library: Any,
        parent: QObject | None = None,
        *,
        index_options: dict[str, Any] | None = None,
        demo_count: int = DEMO_COUNT,
        demo_size: tuple[int, int] = DEMO_SIZE,
    ) -> None:
        """Args:
        library: An open :class:`core.library.Library` (thread-safe for one writer, many readers).
        index_options: Extra keyword arguments of ``iter_index`` (``workers``, ``batch_size``,
            ``separate_process``). By default photos are decoded and embedded in a separate
            process (on a CPU), so the GUI thread never waits for the interpreter lock behind
            indexing: the event loop's p99 while indexing fell from 20-29 ms to 16 ms and the
            late ticks over 50 ms from 5 to 2 in three runs each (benchmarks/bench_gui.py).
        demo_count: Photos in the demo library; ``demo_size`` their (width, height).
        """
        super().__init__(parent)
        self.library = library
        self._last_download_report = 0.0
        if hasattr(library, "on_download"):
            library.on_download = self._on_download  # called from the thread loading the model
        self.index_options = {
            "workers": interactive_decode_workers(),
            "separate_process": True,
            **(index_options or {}),
        }
        self.demo_count = demo_count
        self.demo_size = demo_size
        self._search_pool = WorkerPool(max_threads=1, parent=self, name="search")
        self._read_pool = WorkerPool(max_threads=1, parent=self, name="library reads")
        self._reading = False
        self._read_again = False
        self._index_pool = WorkerPool(max_threads=1, parent=self, name="indexing")
        self._search_worker: Worker | None = None
        self._pending_search: SearchRequest | None = None
        self._search_seq = 0
        self._warmed = False
        self._index_worker: Worker | None = None
        self._index_again: tuple[str, ...] | bool | None = False
        self._closed = False

    # ------------------------------------------------------------------ library state (read in a worker)

    def refresh(self) -> None:
        """Read the library's state in a worker; ``state_read`` delivers it. Calls while a read runs
        are coalesced into one more read after it.

        The reads are quick catalog queries, but they can wait on the library while it loads a
        model or saves its index: the GUI thread never waits with them.
        """
        if self._closed:
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        worker = Worker(self._read_state)
        worker.returned.connect(self.state_read)
        worker.errored.connect(lambda exc: self.state_failed.emit(user_message(exc, "reading the library")))
        worker.finished.connect(self._on_read_finished)
        self._read_pool.start(worker)

    @property
    def is_refreshing(self) -> bool:
        return self._reading

    def _read_state(self) -> LibraryState:
        lib = self.library
        return LibraryState(
            status=lib.status(),
            folders=list(lib.folders()),
            failures=list(lib.failures()),
            model_spec=str(lib.model_spec),
            model_description=str(lib.model_description),
        )

    def _on_read_finished(self) -> None:
        self._reading = False
        if self._read_again and not self._closed:
            self._read_again = False
            self.refresh()

    # ------------------------------------------------------------------ weights downloads

    def _on_download(self, progress: Any) -> None:
        """Forward a download's progress to the GUI (a queued signal), a few times a second."""
        now = time.monotonic()
        finished = progress.total_bytes is not None and progress.done_bytes >= progress.total_bytes
        if finished or now - self._last_download_report >= DOWNLOAD_REPORT_S:
            self._last_download_report = now
            if not self._closed:
                self.download_progress.emit(progress)

    # ------------------------------------------------------------------ tags of one photo

    def read_tags(self, photo_id: int) -> None:
        """Read a photo's tags in a worker; ``tags_read`` delivers them."""
        self.change_tags(photo_id)

    def change_tags(self, photo_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Give a photo tags and take given tags away, in a worker (the catalog may be busy with
        indexing); ``tags_read`` then delivers the photo's tags as they are now."""
        if self._closed:
            return
        worker = Worker(self._change_tags, int(photo_id), tuple(add), tuple(remove))
        worker.returned.connect(self.tags_read)
        worker.errored.connect(lambda exc: self.tags_failed.emit(user_message(exc, "changing the tags")))
        self._read_pool.start(worker)

    def browse(self, request: BrowseRequest) -> Worker | None:
        """List photos without a query, in a worker; ``browse_finished`` delivers a page of them and
        how many there are (no model is needed)."""
        if self._closed:
            return None
        worker = Worker(self.library.browse, request.order, request.where, 0, request.limit)
        worker.returned.connect(lambda page, r=request: self.browse_finished.emit(r, page))
        worker.errored.connect(lambda exc: self.browse_failed.emit(user_message(exc, "listing the photos")))
        self._read_pool.start(worker)
        return worker

    def tag_photos(self, photo_ids: Sequence[int], tags: Sequence[str]) -> Worker | None:
        """Give several photos the same tags, in a worker; ``tags_changed`` says which photos."""
        if self._closed or not photo_ids or not tags:
            return None
        ids = [int(i) for i in photo_ids]
        worker = Worker(self.library.tags.add, ids, tuple(tags))
        worker.returned.connect(lambda _result, ids=ids: self.tags_changed.emit(ids))
        worker.errored.connect(lambda exc: self.tags_failed.emit(user_message(exc, "tagging the photos")))
        self._read_pool.start(worker)
        return worker

    def _change_tags(self, photo_id: int, add: tuple[str, ...], remove: tuple[str, ...]) -> Any:
        if add:
            self.library.tags.add([photo_id], add)
        if remove:
            self.library.tags.remove([photo_id], remove)
        return self.library.photo_tags(photo_id)

    # ------------------------------------------------------------------ quick reads (GUI thread)

    def status(self) -> Any:
        return self.library.status()

    def folders(self) -> list[Any]:
        return list(self.library.folders())

    def failures(self) -> list[Any]:
        return list(self.library.failures())

    def photo(self, photo_id: int) -> Any:
        return self.library.photo(photo_id)

    @property
    def model_spec(self) -> str:
        return str(self.library.model_spec)

    @property
    def model_description(self) -> str:
        return str(self.library.model_description)

    @property
    def is_indexing(self) -> bool:
        return self._index_worker is not None

    @property
    def is_searching(self) -> bool:
        return self._search_worker is not None

    # ------------------------------------------------------------------ fine-tune profiles

    @property
    def root(self) -> str:
        """The library's folder."""
        return str(self.library.root)

    def profiles(self) -> list[Any]:
        """Every saved profile version of the library (``core.profiles.ProfileInfo``)."""
        return list(self.library.profiles())

    @property
    def active_profile(self) -> Any:
        """The profile answering searches, or None (the model alone answers)."""
        return self.library.active_profile

    def profile_choices(self) -> ProfileChoices:
        """The profiles to choose from, the active one, and the base model they must sit on.

        While a full profile answers, its own weights are the library's model: the profiles usable
        then are those made on the base model it was trained from. The spec is read without loading
        the model; a switch checks the exact weights itself and says so when they differ.
        """
        active = self.library.active_profile
        base_spec = active.base_spec if active is not None and active.mode == "full" else None
        return ProfileChoices(self.profiles(), active, str(base_spec or self.library.model_spec))

    # Jobs for a widget's worker: they take plain values, never a library, and the generators
    # yield progress records (each yield is a cancellation point that leaves the library as it was).

    def use_profile(self, name: str | None, version: int | None = None) -> Any:
        """Make profile ``name`` (its latest version without ``version``; None: the model alone)
        answer searches, and return its ``ProfileInfo`` (or None). Blocks: run it in a worker."""
        return self.library.use_profile(name, version)

    def iter_preview_tags(self, root: str) -> Generator[Any, None, TagPreview]:
        """Read the tags under ``root`` and match their photos to the library's."""
        from trainer.finetune import iter_collect

        collection = yield from iter_collect(self.library, root)
        return TagPreview(
            root=root,
            photos=len(collection.items),
            not_indexed=len(collection.not_indexed),
            untagged=collection.untagged,
            counts=collection.counts().most_common(),
            problems=[(p.path, p.reason) for p in collection.problems],
            empty_folders=list(collection.empty_folders),
        )

    def iter_finetune(self, root: str, config: Any) -> Generator[Any, None, Any]:
        """Fine-tune on the tagged photos under ``root`` with ``config`` (a ``FinetuneConfig``);
        returns the ``FinetuneResult``. Nothing is saved."""
        from trainer.finetune import iter_finetune

        return (yield from iter_finetune(self.library, root, config))

    def iter_apply_finetune(self, result: Any, name: str) -> Generator[Any, None, Any]:
        """Save a fine-tune ``result`` as the next version of profile ``name`` and make it answer
        searches; returns its ``ProfileInfo``."""
        from trainer.finetune import save_profile

        info = save_profile(self.library, result, name)
        yield from self.library.iter_use_profile(info.name, info.version)
        return info

    # ------------------------------------------------------------------ search

    def search(self, request: SearchRequest) -> SearchRequest:
        """Queue a search; only the newest request's answer is delivered. Returns it with its seq."""
        self._search_seq += 1
        request = replace(request, seq=self._search_seq)
        if self._closed:
            return request
        if self._search_worker is not None:
            self._pending_search = request
        else:
            self._start_search(request)
        return request

    def warm_up(self) -> None:
        """Load the model and the search index in the search thread, ahead of the first search.

        Loading imports torch and builds the model: seconds, and the import holds the interpreter
        lock in bursts. Done right after the window opens, the first search is fast.
        """
        if self._closed or self._search_worker is not None or self._warmed:
            return
        self._warmed = True
        worker = Worker(self._warm_up_job)
        worker.errored.connect(self._on_warm_up_failed)
        worker.finished.connect(self._on_search_finished)
        self._search_worker = worker
        self._search_pool.start(worker)

    def _warm_up_job(self) -> None:
        with collector_paused():  # the first import of torch makes millions of objects
            self.library.embedder()
        _one_compute_thread()

    def _on_warm_up_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ModelError) and not self._closed:
            self.model_failed.emit(user_message(exc, "loading the model"))  # e.g. offline, not installed
        else:
            logger.info("model not loaded ahead: %s", exc)

    def latest_search_seq(self) -> int:
        return self._search_seq

    def _start_search(self, request: SearchRequest) -> None:
        worker = Worker(self._run_search, request)
        worker.returned.connect(lambda result, r=request: self._on_search_returned(r, result))
        worker.errored.connect(lambda exc, r=request: self._on_search_errored(r, exc))
        worker.finished.connect(self._on_search_finished)
        self._search_worker = worker
        self.search_started.emit(request)
        self._search_pool.start(worker)

    def _run_search(self, request: SearchRequest) -> Any:
        _one_compute_thread()
        kwargs: dict[str, Any] = {"k": request.k}
        if request.image is not None:
            kwargs["image"] = request.image
        if request.like_photo_id is not None:
            kwargs["like_photo_id"] = request.like_photo_id
        if request.image is not None or request.like_photo_id is not None:
            kwargs["example_weight"] = request.example_weight
        if request.where is not None:
            kwargs["where"] = request.where
        return self.library.search(request.text, **kwargs)

    def _on_search_returned(self, request: SearchRequest, result: Any) -> None:
        if request.seq == self._search_seq and not self._closed:
            self.search_finished.emit(request, result)

    def _on_search_errored(self, request: SearchRequest, exc: BaseException) -> None:
        if request.seq == self._search_seq and not self._closed:
            self.search_failed.emit(request, user_message(exc, "searching"))

    def _on_search_finished(self) -> None:
        self._search_worker = None
        pending, self._pending_search = self._pending_search, None
        if pending is not None and not self._closed:
            self._start_search(pending)

    # ------------------------------------------------------------------ folders and indexing

    def add_folder(self, path: str | Path) -> bool:
        """Add a folder and index it in the background; False (and ``index_failed``) when refused."""
        try:
            self.library.add_folder(path)
        except Exception as exc:
            self.index_failed.emit(user_message(exc, "adding the folder"))
            return False
        self.library_changed.emit()
        self.index([str(path)])
        return True

    def remove_folder(self, path: str | Path) -> None:
        """Forget a folder in the background (after any indexing run: one writer at a time).

        The library saves its search index when a folder goes, which takes a while on a large
        library: the GUI thread does not wait for it. ``folder_removed`` follows.
        """
        if self._closed:
            return
        worker = Worker(self.library.remove_folder, str(path))
        worker.returned.connect(lambda _r, p=str(path): self.folder_removed.emit(p))
        worker.errored.connect(lambda exc: self.index_failed.emit(user_message(exc, "removing the folder")))
        worker.finished.connect(self.library_changed)
        self._index_pool.start(worker)

    def folder_excludes(self) -> dict[str, tuple[str, ...]]:
        """Each library folder's own exclude patterns (beyond the scanner's defaults), by path."""
        return {folder.path: tuple(folder.excludes) for folder in self.library.catalog.folders()}

    def set_folder_excludes(self, path: str | Path, patterns: Sequence[str]) -> None:
        """Store a library folder's exclude patterns; the next indexing run of it skips them (and
        forgets the photos they now hide, as if deleted).

        Raises:
            FolderError: ``path`` is not a library folder.
        """
        folder = self.library.catalog.folder_by_path(path)
        if folder is None:
            raise FolderError(f"{path} is not a library folder.")
        self.library.catalog.set_folder_excludes(folder.id, list(patterns))

    def index(self, folders: Sequence[str] | None = None) -> None:
        """Index ``folders`` (None: all) in the background; queued when indexing already runs."""
        if self._closed:
            return
        if self._index_worker is not None:
            self._queue_index(folders)
            return
        self._start_index(self._index_job, None if folders is None else tuple(folders))

    def _queue_index(self, folders: Sequence[str] | None) -> None:
        current = self._index_again
        if folders is None or current is None:
            self._index_again = None  # everything
        elif current is False:
            self._index_again = tuple(folders)
        else:
            self._index_again = tuple(dict.fromkeys([*current, *folders]))

    def make_demo(self) -> None:
        """Write the demo library into the library folder, add it and index it (all in a worker)."""
        if self._closed or self._index_worker is not None:
            return
        out = Path(self.library.root) / DEMO_FOLDER
        self._start_index(self._demo_job, out, self.demo_count, self.demo_size)

    def set_model(self, spec: str) -> None:
        """Switch models in the background, then index with it; the old vectors serve meanwhile."""
        if self._closed:
            return
        if self._index_worker is not None:
            self.model_failed.emit("Wait for indexing to finish (or cancel it) before changing the model.")
            return
        self._start_index(self._model_job, spec)

    def cancel_index(self) -> None:
        if self._index_worker is not None:
            self._index_again = False
            self._index_worker.quit()

    def _start_index(self, job: Any, *args: Any) -> None:
        worker = Worker(job, *args)
        worker.niceness = INDEX_NICENESS
        worker.yielded.connect(self.index_progress)
        worker.returned.connect(self._on_index_returned)
        worker.aborted.connect(self._on_index_aborted)
        worker.errored.connect(self._on_index_errored)
        worker.finished.connect(self._on_index_finished)
        self._index_worker = worker
        self.index_started.emit()
        self._index_pool.start(worker)

    # The jobs run in the worker thread: they touch only the library, never a widget.

    def _index_job(self, folders: tuple[str, ...] | None) -> Generator[Any, None, Any]:
        chosen = list(folders) if folders is not None else None
        report = yield from _model_loaded_quietly(self.library.iter_index(chosen, **self.index_options))
        return report

    def _demo_job(self, out: Path, count: int, size: tuple[int, int]) -> Generator[Any, None, Any]:
        yield StepProgress("demo", 0, count)
        yield from _write_demo(out, count, size)
        self.library.add_folder(out)
        report = yield from _model_loaded_quietly(self.library.iter_index([str(out)], **self.index_options))
        return report

    def _model_job(self, spec: str) -> Generator[Any, None, Any]:
        yield StepProgress("model")
        previous = self.library.model_spec
        self.library.set_model(spec)
        try:
            report = yield from _model_loaded_quietly(self.library.iter_index(None, **self.index_options))
        except Exception:
            # The new model cannot be used (offline, bad file): keep the current one, switch nothing.
            if self.library.model_spec == previous:
                self.library.set_model(previous)
            raise
        return report

    def _on_index_returned(self, report: Any) -> None:
        self.index_finished.emit(report)

    def _on_index_aborted(self) -> None:
        self.index_finished.emit(None)

    def _on_index_errored(self, exc: BaseException) -> None:
        self.index_failed.emit(user_message(exc, "indexing"))

    def _on_index_finished(self) -> None:
        self._index_worker = None
        freeze_heap()  # what indexing left alive (caches, the index) stays out of collections' walks
        self.library_changed.emit()
        again, self._index_again = self._index_again, False
        if again is not False and not self._closed:
            self.index(None if again is None else list(again))

    # ------------------------------------------------------------------ shutdown

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_busy(self) -> bool:
        """Whether any of the session's workers is still running or queued."""
        return any(pool.active for pool in self._pools())

    def shutdown(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> bool:
        """Stop all work and wait for it; True when every worker has returned.

        Indexing stops at its next cancellation point (its generator is closed, so the library
        keeps what was finished); queued work is dropped; a search or library read in progress
        runs to its end. Everything is asked to stop first, then waited for, so the time limit
        ``timeout_ms`` bounds the whole wait. Safe to call again (it waits again for what is left).
        """
        self._closed = True
        self._pending_search = None
        self._index_again = False
        self._read_again = False
        pools = self._pools()
        for pool in pools:
            pool.quit_all()
        deadline = QDeadlineTimer(max(0, timeout_ms))
        done = all([pool.wait_for_done(max(0, deadline.remainingTime())) for pool in pools])
        if done:  # nothing runs, and a closed session starts nothing: its state says so at once
            self._index_worker = self._search_worker = None
            self._reading = False
        else:
            busy = [w.name for pool in pools for w in pool.active]
            logger.warning("still running %d s after closing: %s", timeout_ms // 1000, ", ".join(busy))
        return done

    close = shutdown

    def _pools(self) -> list[WorkerPool]:
        return [self._index_pool, self._search_pool, self._read_pool]


def interactive_decode_workers() -> int:
    """Decode threads for indexing behind the window: one core fewer than the machine has.

    Decoding (draft JPEG decode) is cheap next to the model, so a thread less costs indexing
    little, and the GUI thread stops queueing for a CPU behind busy decoders: on 2 cores the
    event loop's p99 while indexing fell from 24-30 ms to 16 ms at the same photos/s
    (benchmarks/bench_gui.py latency).
    """
    return max(1, (os.cpu_count() or 1) - 1)


def _one_compute_thread() -> None:
    """Run this thread's model computations on one CPU thread.

    A search encodes one short phrase: handing it to a team of compute threads costs more than it
    saves (on a busy two-core machine a phrase took 10-290 ms with two threads, 2-12 ms with one),
    and indexing keeps the other cores. The setting is per thread (OpenMP), so indexing is not
    affected. torch is only touched once the library has loaded it.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _model_loaded_quietly(run: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
    """``run``'s records and result; its first step, which loads the model (and imports torch the
    first time), runs with the garbage collector paused (see :mod:`app.garbage_collection`)."""
    try:
        with collector_paused():
            first = next(run)
    except StopIteration as stop:
        return stop.value
    try:
        yield first
        return (yield from run)
    finally:
        run.close()


class _Stop(Exception):
    """Raised from the demo writer's progress callback to stop it early."""


def _write_demo(out: Path, count: int, size: tuple[int, int]) -> Generator[StepProgress, None, None]:
    """Render the demo library in a helper thread, yielding its progress (a cancellation point each).

    ``write_demo_library`` reports through a callback; the helper thread turns callbacks into queue
    items this generator yields. Closing the generator stops the writer at its next photo (a partly
    written demo folder is completed by the next run: the writer skips files already right).
    """
    import queue
    import threading

    from trainer.demo_library import write_demo_library

    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    failure: list[BaseException] = []

    def on_progress(p: Any) -> None:
        if stop.is_set():
            raise _Stop
        events.put(StepProgress("demo", p.done, p.total, path=str(out / p.file)))

    def write() -> None:
        try:
            write_demo_library(out, count=count, seed=DEMO_SEED, size=size, on_progress=on_progress)
        except _Stop:
            pass
        except BaseException as exc:
            failure.append(exc)
        finally:
            events.put(None)

    thread = threading.Thread(target=write, name="demo-writer", daemon=True)
    thread.start()
    try:
        while (item := events.get()) is not None:
            yield item
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]
