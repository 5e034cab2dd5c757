"""The results grid's model: tier header rows followed by their photos, best tier first.

One flat ``QAbstractListModel`` holds both kinds of row, so a single ``QListView`` shows the whole
ladder and the keyboard moves through it naturally. Header rows are neither enabled nor selectable:
the view's cursor movement skips them. :meth:`ResultsModel.set_results` replaces everything
inside ``beginResetModel()``; :meth:`ResultsModel.set_tier_filter` shows one tier only.

A search retrieves a first page of candidates, and only those are graded. When the view scrolls to
the end, Qt asks :meth:`ResultsModel.canFetchMore` / :meth:`ResultsModel.fetchMore`; the model then
emits :attr:`ResultsModel.more_requested` (it runs no search itself), and the window answers with
:meth:`ResultsModel.append_more`. Further results go into one "More results" section below the
graded tiers, inserted with ``beginInsertRows()``: the tiers already seen keep their photos, counts
and labels (re-grading a larger candidate set would move photos between tiers), rows already shown
keep their places, so the selection and the scroll position stay, and the order stays best first
(further candidates score below the page before them).

Rows carry plain values (ids, paths, scores) under named roles; the delegate paints them and
asks the :class:`~app.thumbnails.ThumbnailLoader` for thumbnails.
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Protocol

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QUrl,
    Signal,
)

from app.thumbnails import ThumbnailLoader
from app.tier_colors import level_of

logger = logging.getLogger(__name__)

THUMB_SIDE = 160
MORE_RANK = 0  # the "tier" of results below the graded tiers (not a tier: never filtered to)
MORE_LABEL = "More results"


class TierLike(Protocol):
    rank: int
    label: str
    count: int
    min_score: float
    max_score: float


class HitLike(Protocol):
    photo_id: int
    path: str
    score: float
    z: float
    tier: int


class Role(IntEnum):
    """Named data roles (after ``Qt.UserRole``)."""

    IS_HEADER = Qt.ItemDataRole.UserRole + 1
    PHOTO_ID = Qt.ItemDataRole.UserRole + 2
    PATH = Qt.ItemDataRole.UserRole + 3
    SCORE = Qt.ItemDataRole.UserRole + 4
    Z = Qt.ItemDataRole.UserRole + 5
    TIER = Qt.ItemDataRole.UserRole + 6
    TIER_LABEL = Qt.ItemDataRole.UserRole + 7
    TIER_COUNT = Qt.ItemDataRole.UserRole + 8
    SCORE_RANGE = Qt.ItemDataRole.UserRole + 9
    THUMBNAIL = Qt.ItemDataRole.UserRole + 10
    THUMBNAIL_ERROR = Qt.ItemDataRole.UserRole + 11
    LONG_TAIL = Qt.ItemDataRole.UserRole + 12


@dataclass(frozen=True, slots=True)
class HeaderRow:
    rank: int
    label: str
    count: int
    min_score: float
    max_score: float
    level: int = 3  # relevance level (0 = match): what its colour says


@dataclass(frozen=True, slots=True)
class PhotoRow:
    photo_id: int
    path: str
    score: float
    z: float
    tier: int
    note: str = ""  # shown instead of the score (browsing: the day it was taken)
    # The query's details this photo gets wrong; () none found; None when they were not checked
    # (a query graded on scores alone, browsing, results below the tiers).
    differs: tuple[str, ...] | None = None


Row = HeaderRow | PhotoRow


def rows_from_hits(hits: Sequence[HitLike], details_checked: bool = False) -> list[PhotoRow]:
    """Photo rows for a search result's hits (``hit.tier`` is its tier's rank, 1 = best).

    ``details_checked``: the query's details were checked photo by photo, so each hit's
    ``differs`` (what it gets wrong; empty: nothing found) is kept with its row.
    """
    return [_photo_row(h, tuple(getattr(h, "differs", ())) if details_checked else None) for h in hits]


def _photo_row(hit: HitLike, differs: tuple[str, ...] | None) -> PhotoRow:
    return PhotoRow(
        int(hit.photo_id), str(hit.path), float(hit.score), float(hit.z), int(hit.tier), differs=differs
    )


def differs_text(differs: tuple[str, ...] | None) -> str:
    """A photo's checked details in words: "colour and place differ", "no difference found";
    "" when they were not checked."""
    if differs is None:
        return ""
    if not differs:
        return "no difference found"
    named = differs[0] if len(differs) == 1 else ", ".join(differs[:-1]) + " and " + differs[-1]
    return f"{named} {'differs' if len(differs) == 1 else 'differ'}"


def paths_mime(paths: Sequence[str]) -> QMimeData:
    """Paths as files (a file manager pastes or drops copies) and as text (one per line)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
    mime.setText("\n".join(paths))
    return mime


def format_score(score: float) -> str:
    return f"{score:.3f}" if math.isfinite(score) else "–"


def format_z(z: float) -> str:
    return f"{z:+.1f}" if math.isfinite(z) else "–"


class ResultsModel(QAbstractListModel):
    """Tier headers and photo hits of one search, in display order."""

    filter_changed = Signal(object)  # the tier rank shown alone, or None
    more_requested = Signal()  # the view reached the end and more results can be had

    def __init__(self, thumbnails: ThumbnailLoader | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thumbnails = thumbnails
        self._tiers: list[HeaderRow] = []
        self._tier_levels: dict[int, int] = {}
        self._hits: list[PhotoRow] = []
        self._rows: list[Row] = []
        self._row_of_path: dict[str, list[int]] = {}
        self._long_tail = False
        self._tier_filter: int | None = None
        self._tier_labels: dict[int, str] = {}
        self._more: list[PhotoRow] = []  # results below the graded tiers, best first
        self._more_available = False
        self._fetching = False
        self.thumb_pixels = THUMB_SIDE  # thumbnail size in device pixels (the view sets it for HiDPI)
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_thumbnail)
            thumbnails.failed.connect(self._on_thumbnail)

    # ------------------------------------------------------------------ content

    def set_results(
        self,
        tiers: Sequence[TierLike],
        hits: Sequence[HitLike],
        long_tail: bool = False,
        *,
        more_available: bool = False,
    ) -> None:
        """Show a new search's tiers and hits (hits in any order; shown best tier first, by score).

        Args:
            more_available: The search may have more results than ``hits`` (it returned as many as
                it was asked for): the view's reaching the end asks for them.
        """
        self.beginResetModel()
        self._tiers = [
            HeaderRow(t.rank, t.label, t.count, t.min_score, t.max_score, level_of(t)) for t in tiers
        ]
        self._tiers.sort(key=lambda t: t.rank)
        self._tier_labels = {t.rank: t.label for t in self._tiers}
        self._tier_levels = {t.rank: t.level for t in self._tiers}
        # a row knows whether its details were checked; a bare hit does not say
        self._hits = [_photo_row(h, h.differs if isinstance(h, PhotoRow) else None) for h in hits]
        self._hits.sort(key=lambda h: (h.tier if h.tier > 0 else 1 << 30, -h.score))
        self._more = []
        self._more_available = bool(more_available) and bool(self._hits)
        self._fetching = False
        self._long_tail = bool(long_tail)
        self._tier_filter = None
        self._rebuild_rows()
        self.endResetModel()
        self.filter_changed.emit(None)

    def clear(self) -> None:
        self.set_results([], [], False)

    def set_browse(self, groups: Sequence[tuple[str, Sequence[PhotoRow]]]) -> None:
        """Show photos without a query: each group (a month, a folder) under a header, in the order
        given (rows keep their order; their ``tier`` is set to their group's)."""
        self.beginResetModel()
        self._tiers = [
            HeaderRow(rank, label, len(rows), math.nan, math.nan, 3)
            for rank, (label, rows) in enumerate(groups, 1)
        ]
        self._tier_labels = {t.rank: t.label for t in self._tiers}
        self._tier_levels = {t.rank: t.level for t in self._tiers}
        self._hits = [replace(r, tier=rank) for rank, (_, rows) in enumerate(groups, 1) for r in rows]
        self._more = []
        self._more_available = False
        self._fetching = False
        self._long_tail = False
        self._tier_filter = None
        self._rebuild_rows()
        self.endResetModel()
        self.filter_changed.emit(None)

    # ------------------------------------------------------------------ more results

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        """Whether the end of the grid can ask for more: more may exist, none is being fetched, and
        every tier is shown (further results join no tier, so a tier shown alone is complete)."""
        return (
            not parent.isValid() and self._more_available and not self._fetching and self._tier_filter is None
        )

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:  # noqa: B008
        """Ask for more results (:attr:`more_requested`); rows come later with :meth:`append_more`."""
        if self.canFetchMore(parent):
            self._fetching = True
            self.more_requested.emit()

    @property
    def is_fetching_more(self) -> bool:
        return self._fetching

    @property
    def more_available(self) -> bool:
        return self._more_available

    @property
    def more_count(self) -> int:
        """Results shown below the graded tiers."""
        return len(self._more)

    def more_failed(self) -> None:
        """The request for more failed: stop asking (a new search starts afresh)."""
        self._fetching = False
        self._more_available = False

    def append_more(self, hits: Sequence[HitLike], *, more_available: bool) -> int:
        """Add further results below the graded tiers; returns how many were new.

        ``hits`` may repeat photos already shown (a larger search returns them again): they are
        skipped. New ones are added best first, after every row shown. ``more_available`` says
        whether the search can go further still; nothing new also ends it.
        """
        shown = {h.photo_id for h in self._hits}
        shown.update(h.photo_id for h in self._more)
        new: list[PhotoRow] = []
        for h in hits:
            pid = int(h.photo_id)
            if pid not in shown:
                shown.add(pid)
                new.append(PhotoRow(pid, str(h.path), float(h.score), float(h.z), MORE_RANK))
        new.sort(key=lambda r: -r.score)
        self._fetching = False
        self._more_available = bool(more_available) and bool(new)
        if not new:
            return 0
        if self._tier_filter is not None:  # not on screen: shown when the filter is cleared
            self._more.extend(new)
            self._rebuild_rows()
            return len(new)
        had_header = bool(self._more)
        first = len(self._rows)
        added = len(new) if had_header else len(new) + 1  # the section's header comes first
        self.beginInsertRows(QModelIndex(), first, first + added - 1)
        self._more.extend(new)
        self._rebuild_rows()
        self.endInsertRows()
        if had_header:  # its count and score range grew
            header = self.index(self._more_header_row())
            self.dataChanged.emit(header, header)
        return len(new)

    def more_rows(self) -> list[PhotoRow]:
        """The results below the graded tiers, best first."""
        return list(self._more)

    def more_header(self) -> HeaderRow | None:
        """The header of the results below the tiers, or None while there are none."""
        if not self._more:
            return None
        scores = [r.score for r in self._more]
        return HeaderRow(MORE_RANK, MORE_LABEL, len(self._more), min(scores), max(scores))

    def _more_header_row(self) -> int:
        return len(self._rows) - len(self._more) - 1

    def set_tier_filter(self, rank: int | None) -> None:
        """Show only the tier ``rank`` (None shows every tier)."""
        if rank is not None and rank not in self._tier_labels:
            rank = None
        if rank == self._tier_filter:
            return
        self.beginResetModel()
        self._tier_filter = rank
        self._rebuild_rows()
        self.endResetModel()
        self.filter_changed.emit(rank)

    @property
    def tier_filter(self) -> int | None:
        return self._tier_filter

    @property
    def long_tail(self) -> bool:
        return self._long_tail

    def level_of(self, rank: int) -> int:
        """The relevance level of tier ``rank`` (loosely related when unknown)."""
        return self._tier_levels.get(rank, 3)

    @property
    def tiers(self) -> list[HeaderRow]:
        return list(self._tiers)

    def tier_label(self, rank: int) -> str:
        """The label of tier ``rank`` (:data:`MORE_LABEL` for results below the tiers)."""
        return MORE_LABEL if rank == MORE_RANK and self._more else self._tier_labels.get(rank, "")

    def row(self, index: QModelIndex | int) -> Row | None:
        r = index if isinstance(index, int) else index.row()
        return self._rows[r] if 0 <= r < len(self._rows) else None

    def is_header(self, row: int) -> bool:
        return 0 <= row < len(self._rows) and isinstance(self._rows[row], HeaderRow)

    def thumbnail(self, row: PhotoRow) -> tuple[Any, str | None]:
        """(pixmap or None, why there is none) for a photo row; requests the thumbnail if needed."""
        if self._thumbnails is None:
            return None, None
        pix = self._thumbnails.pixmap(row.path, self.thumb_pixels)
        return pix, None if pix is not None else self._thumbnails.error(row.path, self.thumb_pixels)

    def photo_rows(self) -> list[int]:
        """Row numbers of the photos (not headers) currently shown."""
        return [i for i, r in enumerate(self._rows) if isinstance(r, PhotoRow)]

    def header_rows(self) -> list[int]:
        return [i for i, r in enumerate(self._rows) if isinstance(r, HeaderRow)]

    def index_of_photo(self, photo_id: int) -> QModelIndex:
        for i, r in enumerate(self._rows):
            if isinstance(r, PhotoRow) and r.photo_id == photo_id:
                return self.index(i)
        return QModelIndex()

    def _rebuild_rows(self) -> None:
        rows: list[Row] = []
        by_tier: dict[int, list[PhotoRow]] = {}
        for hit in self._hits:
            by_tier.setdefault(hit.tier, []).append(hit)
        for header in self._tiers:
            if self._tier_filter is not None and header.rank != self._tier_filter:
                continue
            members = by_tier.get(header.rank, [])
            rows.append(header)
            rows.extend(members)
        if self._tier_filter is None:  # hits of no known tier (should not happen) still show, last
            known = {t.rank for t in self._tiers}
            rows.extend(h for h in self._hits if h.tier not in known)
            more = self.more_header()
            if more is not None:
                rows.append(more)
                rows.extend(self._more)
        self._rows = rows
        self._row_of_path = {}
        for i, r in enumerate(rows):
            if isinstance(r, PhotoRow):
                self._row_of_path.setdefault(r.path, []).append(i)

    # ------------------------------------------------------------------ Qt model API

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        row = self.row(index.row()) if index.isValid() else None
        if isinstance(row, PhotoRow):
            return (
                Qt.ItemFlag.ItemIsEnabled
                | Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsDragEnabled
                | Qt.ItemFlag.ItemNeverHasChildren
            )
        return Qt.ItemFlag.ItemNeverHasChildren

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list", "text/plain"]

    def mimeData(self, indexes) -> QMimeData:
        """The photos dragged out of the grid, as files (a file manager copies them)."""
        rows = {i.row() for i in indexes if i.isValid()}
        paths = [r.path for n, r in enumerate(self._rows) if n in rows and isinstance(r, PhotoRow)]
        return paths_mime(paths)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid():
            return None
        row = self.row(index.row())
        if row is None:
            return None
        if role == Role.IS_HEADER:
            return isinstance(row, HeaderRow)
        if role == Role.LONG_TAIL:
            return self._long_tail
        if isinstance(row, HeaderRow):
            return self._header_data(row, role)
        return self._photo_data(row, role)

    def _header_data(self, row: HeaderRow, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return row.label
        if role == Role.TIER:
            return row.rank
        if role == Role.TIER_LABEL:
            return row.label
        if role == Role.TIER_COUNT:
            return row.count
        if role == Role.SCORE_RANGE:
            return (row.min_score, row.max_score)
        if role == Qt.ItemDataRole.ToolTipRole:
            where = " below the graded tiers" if row.rank == MORE_RANK else ""
            return (
                f"{row.label}: {row.count} photo{'s' if row.count != 1 else ''}{where}, "
                f"scores {format_score(row.min_score)} to {format_score(row.max_score)}"
            )
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{row.label}, {row.count} photos"
        return None

    def _photo_data(self, row: PhotoRow, role: int) -> Any:
        read = _PHOTO_DATA.get(role)
        return read(self, row) if read is not None else None

    def _photo_tooltip(self, row: PhotoRow) -> str:
        tier = (
            "below the graded tiers"
            if row.tier == MORE_RANK
            else f"tier {row.tier}: {html.escape(self._tier_labels.get(row.tier, ''))}"
        )
        differs = differs_text(row.differs)
        return (
            f"<b>{html.escape(os.path.basename(row.path))}</b><br>"
            f"score {format_score(row.score)} &nbsp; z {format_z(row.z)}<br>{tier}"
            + (f"<br>{html.escape(differs)}" if differs else "")
        )

    def _photo_thumbnail(self, row: PhotoRow) -> Any:
        return self._thumbnails.pixmap(row.path, self.thumb_pixels) if self._thumbnails else None

    def _photo_thumbnail_error(self, row: PhotoRow) -> str | None:
        return self._thumbnails.error(row.path, self.thumb_pixels) if self._thumbnails else None

    def _on_thumbnail(self, path: str, side: int, *_: object) -> None:
        if side != self.thumb_pixels:
            return
        for r in self._row_of_path.get(path, ()):
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [Role.THUMBNAIL, Role.THUMBNAIL_ERROR])


# What a photo row answers for each role it knows (any other role: None).
_PHOTO_DATA: dict[int, Callable[[ResultsModel, PhotoRow], Any]] = {
    Qt.ItemDataRole.DisplayRole: lambda _model, row: os.path.basename(row.path),
    Role.PHOTO_ID: lambda _model, row: row.photo_id,
    Role.PATH: lambda _model, row: row.path,
    Role.SCORE: lambda _model, row: row.score,
    Role.Z: lambda _model, row: row.z,
    Role.TIER: lambda _model, row: row.tier,
    Role.TIER_LABEL: lambda model, row: model.tier_label(row.tier),
    Qt.ItemDataRole.ToolTipRole: ResultsModel._photo_tooltip,
    Qt.ItemDataRole.AccessibleTextRole: lambda _model, row: (
        f"{os.path.basename(row.path)}, score {format_score(row.score)}"
    ),
    Role.THUMBNAIL: ResultsModel._photo_thumbnail,
    Role.THUMBNAIL_ERROR: ResultsModel._photo_thumbnail_error,
}
