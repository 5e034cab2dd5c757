"""Incremental indexing: scan the library folders, embed what is new, sweep what vanished.

The work is a generator of :class:`IndexProgress` records, so the caller (a terminal progress bar,
a Qt worker) decides how to show it, and each ``yield`` is a point where the run can be cancelled
(``generator.close()``). Every batch is committed on its own (vectors first, then the catalog
rows), so a run stopped at any instant, even by ``kill -9``, leaves a library that opens, and the
next run resumes without redoing finished work.

What it costs per file:

* unchanged (same size and mtime, with a vector of this model): nothing but the directory walk;
* new or changed, but with content already embedded (renamed, moved, duplicate): a head+tail hash;
* new content: a hash, a decode (JPEG DCT-domain downscale) and a share of a model batch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .catalog import Catalog, Failure, FileState, Folder, PhotoEntry
from .decode import DecodedImage, decode_parallel, default_workers, failure_reason, open_image
from .errors import DecodeError, FolderError, ModelError
from .hashing import content_hash
from .scanner import DEFAULT_EXCLUDES, ScannedFile, ScanProblem, root_is_online, scan_folder

if TYPE_CHECKING:
    from .embedder import Embedder
    from .encoder_process import EncoderProcess
    from .index import VectorIndex
    from .vectors import VectorStore

logger = logging.getLogger(__name__)

Phase = Literal["wait", "scan", "embed", "sweep", "index", "done"]  # wait: for another writer

DEFAULT_BATCH = 32
_SCAN_REPORT_EVERY = 2000  # files between progress records while walking


@dataclass(frozen=True)
class IndexProgress:
    """One progress record. ``total`` is None while it is not known yet (during the walk)."""

    phase: Phase
    done: int
    total: int | None
    rate: float | None = None  # photos per second over the embed phase so far
    eta_s: float | None = None
    path: str | None = None
    new: int = 0
    reused: int = 0
    failed: int = 0


@dataclass
class IndexReport:
    """What a run did."""

    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    failed: int = 0
    removed: int = 0
    offline_folders: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable parts
    elapsed_s: float = 0.0
    cancelled: bool = False


@dataclass(frozen=True)
class _Work:
    """A file that needs more than the walk: a hash, and maybe a decode."""

    folder_id: int
    file: ScannedFile
    known_hash: str | None  # content hash from the catalog when size and mtime did not change


@dataclass(frozen=True)
class _Reuse:
    entry: PhotoEntry


@dataclass(frozen=True)
class _Decoded:
    entry: PhotoEntry
    pixels: Any  # the model's input tensor (C, H, W)


@dataclass(frozen=True)
class _ToEncode:
    """New content, to be decoded and embedded by the encoder process."""

    entry: PhotoEntry  # without the image's own metadata yet (size, date, orientation)


@dataclass
class _FolderWalk:
    """What the walk of one root found besides the files to index, checked against the catalog."""

    known: dict[str, FileState]  # the catalogued photos of the root, by path
    failures: dict[str, Failure]  # the files of the root that failed before, by path
    unchanged: list[tuple[str, FileState]] = field(default_factory=list)  # same size and mtime
    unchanged_failures: list[str] = field(default_factory=list)  # failed before, not changed since
    keep_prefixes: list[str] = field(default_factory=list)  # unreadable parts: their photos are kept

    def needs_work(self, item: ScannedFile) -> bool:
        """Whether a file needs a hash (it is new or changed); notes it as unchanged otherwise."""
        photo = self.known.get(item.path)
        if photo is not None and photo.size == item.size and photo.mtime_ns == item.mtime_ns:
            self.unchanged.append((item.path, photo))
            return False
        failure = self.failures.get(item.path)
        if failure is not None and failure.size == item.size and failure.mtime_ns == item.mtime_ns:
            self.unchanged_failures.append(item.path)  # failed before and did not change: not retried
            return False
        return True


@dataclass
class _Pending:
    """Prepared files waiting to be embedded or stored, in batches."""

    batch: list[tuple[int, _Decoded]] = field(default_factory=list)  # decoded here: this process embeds
    to_encode: list[tuple[_Work, PhotoEntry]] = field(default_factory=list)  # for the encoder process
    in_flight: deque[tuple[int, list[tuple[_Work, PhotoEntry]]]] = field(default_factory=deque)
    reuse: list[tuple[int, PhotoEntry]] = field(default_factory=list)  # content already embedded


_IN_FLIGHT = 2  # batches the encoder process works on ahead of the catalog (one decoding, one queued)
# A batch the encoder process has not answered in this long (it hangs, or is stopped) ends the run
# with an error instead of blocking it for ever; finished batches are kept.
ENCODE_TIMEOUT_S = 600.0


class Indexer:
    """Runs one indexing pass for one model over some library folders.

    Args:
        catalog: the library catalog.
        store: the vector store of the embedder's model identity.
        index: the in-memory vector index of that model, kept in step with the store.
        embedder: the model.
        workers: decode threads.
        batch_size: images per model batch.
        encoder: when given, called (once, when there is something to decode) for an
            :class:`~core.encoder_process.EncoderProcess` of the same model, which then decodes and
            embeds in its own process; this process only hashes and keeps the books.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: VectorStore,
        index: VectorIndex,
        embedder: Embedder,
        *,
        workers: int | None = None,
        batch_size: int | None = None,
        encoder: Callable[[], EncoderProcess] | None = None,
        outside_links: bool = False,
        empty_means_deleted: bool = False,
    ) -> None:
        self.catalog = catalog
        self.outside_links = outside_links
        self.empty_means_deleted = empty_means_deleted
        self.store = store
        self.index = index
        self.embedder = embedder
        self.workers = workers or default_workers()
        self.batch_size = batch_size or DEFAULT_BATCH
        self._encoder_factory = encoder
        self._encoder: EncoderProcess | None = None

    # ------------------------------------------------------------------ the run

    def run(self, folders: Sequence[Folder]) -> Generator[IndexProgress, None, IndexReport]:
        """Index ``folders``; yields progress, returns the report (``StopIteration.value``)."""
        report = IndexReport()
        started = time.monotonic()
        work: list[_Work] = []
        scans: list[tuple[Folder, int, list[str]]] = []  # (folder, scan id, unreadable prefixes)
        try:
            for folder in folders:
                scanned = yield from self._scan(folder, work, report)
                if scanned is not None:
                    scans.append(scanned)
            yield from self._process(work, report, started)
            for folder, scan_id, keep in scans:
                yield IndexProgress("sweep", 0, None, path=folder.path)
                gone = self.catalog.sweep(folder.id, scan_id, keep_prefixes=keep)
                if gone:
                    self.index.remove(gone)
                report.removed += len(gone)
        except GeneratorExit:
            report.cancelled = True
            logger.info("indexing cancelled; finished batches are kept")
            raise
        finally:
            report.elapsed_s = time.monotonic() - started
        yield IndexProgress(
            "done",
            report.embedded + report.reused + report.failed,
            len(work),
            new=report.embedded,
            reused=report.reused,
            failed=report.failed,
        )
        return report

    # ------------------------------------------------------------------ walk

    def _scan(
        self, folder: Folder, work: list[_Work], report: IndexReport
    ) -> Generator[IndexProgress, None, tuple[Folder, int, list[str]] | None]:
        online = self._bring_online(folder, report)
        if online is None:
            return None
        scan_id = self.catalog.begin_scan(online.id)
        walk = _FolderWalk(
            known=self.catalog.folder_file_states(online.id),
            failures={f.path: f for f in self.catalog.failures(online.id)},
        )
        yield from self._walk(online, walk, work, report)
        self._mark_unchanged(online, walk, work, report)
        yield IndexProgress("scan", report.scanned, None, path=online.path)
        return online, scan_id, walk.keep_prefixes

    def _bring_online(self, folder: Folder, report: IndexReport) -> Folder | None:
        """The root as it is now online; None, and marked offline, when it is not reachable."""
        had_photos = self.catalog.photo_count(folder.id) > 0 and not self.empty_means_deleted
        if not root_is_online(folder.path, had_photos=had_photos):
            logger.warning("%s is offline (missing or unreadable): its photos are kept", folder.path)
            self.catalog.set_folder_state(folder.id, "offline")
            report.offline_folders.append(folder.path)
            return None
        if folder.state != "online":
            self.catalog.set_folder_state(folder.id, "online")
            folder = self.catalog.folder(folder.id)
        return folder

    def _walk(
        self, folder: Folder, walk: _FolderWalk, work: list[_Work], report: IndexReport
    ) -> Generator[IndexProgress, None, None]:
        """Walk a root: new and changed files become work, the rest is noted in ``walk``."""
        excludes = tuple(DEFAULT_EXCLUDES) + tuple(folder.excludes)
        try:
            entries = scan_folder(folder.path, excludes=excludes, outside_links=self.outside_links)
            for count, item in enumerate(entries, 1):
                if isinstance(item, ScanProblem):
                    self._record_problem(folder, item, walk, report)
                    continue
                report.scanned += 1
                if not walk.needs_work(item):
                    continue
                work.append(_Work(folder.id, item, None))
                if count % _SCAN_REPORT_EVERY == 0:
                    yield IndexProgress("scan", report.scanned, None, path=item.path)
        except FolderError as e:  # the root vanished while walking it
            report.problems.append((folder.path, str(e)))
            walk.keep_prefixes.append(folder.path)

    def _record_problem(
        self, folder: Folder, item: ScanProblem, walk: _FolderWalk, report: IndexReport
    ) -> None:
        """An unreadable part of a root: a folder's photos are kept, a file is a failure."""
        report.problems.append((item.path, item.reason))
        if item.is_folder:
            walk.keep_prefixes.append(item.path)
        else:
            self.catalog.record_failure(item.path, item.reason, folder_id=folder.id)
            report.failed += 1

    def _mark_unchanged(
        self, folder: Folder, walk: _FolderWalk, work: list[_Work], report: IndexReport
    ) -> None:
        """Mark what the walk found unchanged as seen; unchanged files without a vector become work.

        Unchanged files need nothing if this model already has their vector; otherwise they are
        embedded, but their hash is already known. Everything else catalogued under the root
        (vanished, changed, or not yet embedded) is left unmarked for now.
        """
        has = self.store.has([p.content_hash for _, p in walk.unchanged])
        seen_ids = set()
        for (path, p), ok in zip(walk.unchanged, has, strict=True):
            if ok:
                seen_ids.add(p.id)
            else:
                work.append(_Work(folder.id, ScannedFile(path, p.size, p.mtime_ns), p.content_hash))
        report.unchanged += len(seen_ids)
        self.catalog.mark_all_seen(
            folder.id, except_ids=(p.id for p in walk.known.values() if p.id not in seen_ids)
        )
        if walk.unchanged_failures:
            self.catalog.mark_seen(folder.id, failure_paths=walk.unchanged_failures)

    # ------------------------------------------------------------------ hash, decode, embed

    def _prepare(self, item: _Work) -> _Reuse | _Decoded | _ToEncode:
        """Runs in a worker thread: hash; reuse a stored vector or decode for the model (here, or
        later in the encoder process)."""
        f = item.file
        digest = item.known_hash or content_hash(f.path, f.size)
        if item.known_hash is None and bool(self.store.has([digest])[0]):
            meta = self.catalog.photos_by_hash(digest)
            first = meta[0] if meta else None
            return _Reuse(
                PhotoEntry(
                    f.path,
                    f.size,
                    f.mtime_ns,
                    digest,
                    width=first.width if first else None,
                    height=first.height if first else None,
                    taken_at=first.taken_at if first else None,
                    orientation=first.orientation if first else None,
                )
            )
        if self._encoder_factory is not None:
            return _ToEncode(PhotoEntry(f.path, f.size, f.mtime_ns, digest))
        decoded: DecodedImage = open_image(f.path, self.embedder.image_size)
        pixels = self.embedder.preprocess(decoded.image)
        entry = PhotoEntry(
            f.path,
            f.size,
            f.mtime_ns,
            digest,
            width=decoded.width,
            height=decoded.height,
            taken_at=decoded.taken_at,
            orientation=decoded.orientation,
        )
        return _Decoded(entry, pixels)

    def _process(
        self, work: list[_Work], report: IndexReport, started: float
    ) -> Generator[IndexProgress, None, None]:
        total = len(work)
        if not total:
            return
        self._start_encoder()
        pending = _Pending()
        embed_started = time.monotonic()
        done = 0
        results: Iterator[tuple[_Work, _Reuse | _Decoded | _ToEncode | Exception]] = decode_parallel(
            work, self._prepare, workers=self.workers, lookahead=max(2 * self.batch_size, 4 * self.workers)
        )
        try:
            for item, outcome in results:
                done += 1
                self._route(item, outcome, pending, report)
                if self._send_full_batch(pending, report):
                    yield self._progress(done, total, embed_started, item.file.path, report)
                if len(pending.batch) >= self.batch_size or len(pending.reuse) >= 4 * self.batch_size:
                    self._commit(pending.batch, pending.reuse, report)
                    pending.batch, pending.reuse = [], []
                    yield self._progress(done, total, embed_started, item.file.path, report)
            self._finish(pending, report)
            yield self._progress(done, total, embed_started, None, report)
        finally:
            results.close()  # cancels decodes not started yet

    def _start_encoder(self) -> None:
        """Start the encoder process, if there is to be one; it loads the model while files are hashed."""
        if self._encoder_factory is None or self._encoder is not None:
            return
        try:
            self._encoder = self._encoder_factory()
        except ModelError as exc:  # no process could be started: this one does the work
            logger.warning("%s Indexing in this process instead.", exc)
            self._encoder_factory = None

    def _route(
        self,
        item: _Work,
        outcome: _Reuse | _Decoded | _ToEncode | Exception,
        pending: _Pending,
        report: IndexReport,
    ) -> None:
        """Put a prepared file where it waits: to reuse, to embed here, to encode, or a failure."""
        if isinstance(outcome, _Reuse):
            pending.reuse.append((item.folder_id, outcome.entry))
        elif isinstance(outcome, _Decoded):
            pending.batch.append((item.folder_id, outcome))
        elif isinstance(outcome, _ToEncode):
            pending.to_encode.append((item, outcome.entry))
        else:
            self._record_failure(item, outcome)
            report.failed += 1

    def _send_full_batch(self, pending: _Pending, report: IndexReport) -> bool:
        """Send a full batch to the encoder process; True when that stored an earlier batch's results."""
        if len(pending.to_encode) < self.batch_size:
            return False
        pending.in_flight.append(self._submit(pending.to_encode))
        pending.to_encode = []
        if len(pending.in_flight) < _IN_FLIGHT:
            return False
        self._store_encoded(*pending.in_flight.popleft(), report)
        return True

    def _finish(self, pending: _Pending, report: IndexReport) -> None:
        """Send the last files to encode, store every batch still out and commit the rest."""
        if pending.to_encode:
            pending.in_flight.append(self._submit(pending.to_encode))
            pending.to_encode = []
        while pending.in_flight:
            self._store_encoded(*pending.in_flight.popleft(), report)
        self._commit(pending.batch, pending.reuse, report)
        pending.batch, pending.reuse = [], []

    def _submit(self, items: list[tuple[_Work, PhotoEntry]]) -> tuple[int, list[tuple[_Work, PhotoEntry]]]:
        assert self._encoder is not None
        return self._encoder.submit([entry.path for _, entry in items]), items

    def _store_encoded(self, seq: int, items: list[tuple[_Work, PhotoEntry]], report: IndexReport) -> None:
        """Store what the encoder process made of a batch: vectors, catalog rows, failures."""
        assert self._encoder is not None
        outcomes, vectors = self._encoder.receive(seq, timeout_s=ENCODE_TIMEOUT_S)
        if len(outcomes) != len(items):
            raise RuntimeError(f"the indexing process answered for {len(outcomes)} of {len(items)} photos")
        entries: list[tuple[int, PhotoEntry]] = []
        for (item, entry), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, str):
                self._record_failure(item, DecodeError(entry.path, outcome))
                report.failed += 1
            else:
                width, height, taken_at, orientation = outcome
                entries.append(
                    (
                        item.folder_id,
                        dataclasses.replace(
                            entry, width=width, height=height, taken_at=taken_at, orientation=orientation
                        ),
                    )
                )
        if entries:
            self._store_new(entries, vectors, report)

    def _record_failure(self, item: _Work, error: Exception) -> None:
        reason = failure_reason(error)
        if not isinstance(error, DecodeError | OSError):
            logger.error("unexpected error on %s", item.file.path, exc_info=error)
        self.catalog.record_failure(
            item.file.path,
            reason,
            folder_id=item.folder_id,
            size=item.file.size,
            mtime_ns=item.file.mtime_ns,
        )

    def _commit(
        self,
        batch: list[tuple[int, _Decoded]],
        reuse: list[tuple[int, PhotoEntry]],
        report: IndexReport,
    ) -> None:
        """Embed a batch, then store vectors (durable) before the catalog rows that use them."""
        if batch:
            import torch

            pixels = torch.stack([d.pixels for _, d in batch])
            vectors = self.embedder.encode_image_batch(pixels)
            self._store_new([(fid, d.entry) for fid, d in batch], vectors, report)
        if reuse:
            vectors = self.store.get([e.content_hash for _, e in reuse])
            self._upsert(reuse, vectors)
            report.reused += len(reuse)

    def _store_new(
        self, entries: list[tuple[int, PhotoEntry]], vectors: np.ndarray, report: IndexReport
    ) -> None:
        self.store.put([entry.content_hash for _, entry in entries], vectors)
        self._upsert(entries, vectors)
        report.embedded += len(entries)

    def _upsert(self, entries: list[tuple[int, PhotoEntry]], vectors: np.ndarray) -> None:
        by_folder: dict[int, list[int]] = {}
        for i, (fid, _) in enumerate(entries):
            by_folder.setdefault(fid, []).append(i)
        for fid, rows in by_folder.items():
            ids = self.catalog.upsert_photos(fid, [entries[i][1] for i in rows])
            self.index.add(np.asarray(ids, dtype=np.int64), vectors[rows])

    @staticmethod
    def _progress(
        done: int, total: int, embed_started: float, path: str | None, report: IndexReport
    ) -> IndexProgress:
        elapsed = max(time.monotonic() - embed_started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
        return IndexProgress(
            "embed",
            done,
            total,
            rate=rate,
            eta_s=eta,
            path=path,
            new=report.embedded,
            reused=report.reused,
            failed=report.failed,
        )
