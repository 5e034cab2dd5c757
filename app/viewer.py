"""The full-size photo viewer: one photo at a time over the results, with zoom.

Keys: Left/Right (or Page Up/Page Down) the previous and next photo, Home/End the first and last,
+ and - zoom (Ctrl+wheel too), 0 fits the photo to the window, 1 shows it at full size, Esc or
Space closes. Photos are decoded in the worker pool (never on the GUI thread), upright and at full
resolution up to :data:`MAX_SIDE` pixels on the longer side; the last few stay decoded, and the
next one is decoded ahead, so stepping through the results does not wait.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent, QPixmap, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QDialog, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from app.workers import Worker, WorkerPool

MAX_SIDE = 8192  # longer side shown at most (a 100 MP panorama is scaled to this)
CACHE_SIZE = 4  # decoded photos kept
ZOOM_STEPS = (0.1, 0.125, 0.25, 0.33, 0.5, 0.67, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class ViewerPhoto:
    photo_id: int
    path: str


def decode_for_viewing(path: str) -> QImage:
    """The photo upright, as a QImage no larger than :data:`MAX_SIDE` on its longer side.

    Raises:
        DecodeError: the file cannot be shown (with a short reason).
    """
    from core.decode import open_image

    decoded = open_image(path, None)
    image = decoded.image
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    data = image.convert("RGB").tobytes()
    qimage = QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: ``data`` goes away with this frame


class PhotoViewer(QDialog):
    """Shows photos full size. :meth:`show_photos` opens it on a list of photos at one of them."""

    current_changed = Signal(int)  # photo id now shown
    closed = Signal()  # the viewer was closed (Esc, Space, the window's close button)

    def __init__(self, parent: QWidget | None = None, pool: WorkerPool | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Photo")
        self.setObjectName("photoViewer")
        self.pool = pool or WorkerPool(parent=self)
        self._photos: list[ViewerPhoto] = []
        self._index = -1
        self._zoom: float | None = None  # None: fit to the window
        self._images: OrderedDict[str, QImage] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._loading: set[str] = set()
        self._build()

    def _build(self) -> None:
        self.caption = QLabel()
        self.caption.setObjectName("viewerCaption")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.scroll = QScrollArea()
        self.scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll.setWidget(self.picture)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        hint = QLabel("← → previous / next · + − zoom · 0 fit · 1 full size · Esc close")
        hint.setObjectName("viewerHint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.caption)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(hint)
        self.resize(QSize(900, 640))

    # ------------------------------------------------------------------ public

    def show_photos(self, photos: Sequence[ViewerPhoto | tuple[int, str]], index: int) -> None:
        """Open the viewer on ``photos`` at ``index`` (clamped to the list)."""
        self._photos = [
            p if isinstance(p, ViewerPhoto) else ViewerPhoto(int(p[0]), str(p[1])) for p in photos
        ]
        if not self._photos:
            return
        self._zoom = None
        self._go(index)
        self.show()
        self.raise_()
        self.activateWindow()
        self.setFocus()

    @property
    def current(self) -> ViewerPhoto | None:
        return self._photos[self._index] if 0 <= self._index < len(self._photos) else None

    @property
    def index(self) -> int:
        return self._index

    @property
    def zoom(self) -> float | None:
        """The zoom factor (1.0 = one photo pixel per screen pixel), or None when fitted."""
        return self._zoom

    def is_loaded(self) -> bool:
        """Whether the photo shown is decoded (or failed): nothing is pending for it."""
        current = self.current
        return current is not None and (current.path in self._images or current.path in self._errors)

    def error(self) -> str | None:
        current = self.current
        return self._errors.get(current.path) if current is not None else None

    def set_zoom(self, factor: float | None) -> None:
        """Zoom to ``factor`` (None fits the photo to the window)."""
        self._zoom = None if factor is None else min(max(float(factor), ZOOM_STEPS[0]), ZOOM_STEPS[-1])
        self._render()

    def zoom_in(self) -> None:
        now = self._effective_zoom()
        self.set_zoom(next((z for z in ZOOM_STEPS if z > now + 1e-6), ZOOM_STEPS[-1]))

    def zoom_out(self) -> None:
        now = self._effective_zoom()
        self.set_zoom(next((z for z in reversed(ZOOM_STEPS) if z < now - 1e-6), ZOOM_STEPS[0]))

    def step(self, delta: int) -> None:
        """Show the photo ``delta`` places on (the ends stop; the zoom is kept)."""
        target = min(max(self._index + delta, 0), len(self._photos) - 1)
        if self._photos and target != self._index:
            self._go(target)

    # ------------------------------------------------------------------ events

    def keyPressEvent(self, event: QKeyEvent) -> None:
        actions = {
            Qt.Key.Key_Left: lambda: self.step(-1),
            Qt.Key.Key_PageUp: lambda: self.step(-1),
            Qt.Key.Key_Right: lambda: self.step(1),
            Qt.Key.Key_PageDown: lambda: self.step(1),
            Qt.Key.Key_Home: lambda: self.step(-len(self._photos)),
            Qt.Key.Key_End: lambda: self.step(len(self._photos)),
            Qt.Key.Key_Plus: self.zoom_in,
            Qt.Key.Key_Equal: self.zoom_in,
            Qt.Key.Key_Minus: self.zoom_out,
            Qt.Key.Key_0: lambda: self.set_zoom(None),
            Qt.Key.Key_1: lambda: self.set_zoom(1.0),
            Qt.Key.Key_Space: self.close,
            Qt.Key.Key_Escape: self.close,
        }
        action = actions.get(Qt.Key(event.key()))
        if action is None:
            super().keyPressEvent(event)
            return
        action()
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            (self.zoom_in if event.angleDelta().y() > 0 else self.zoom_out)()
            event.accept()
            return
        super().wheelEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._zoom is None:
            self._render()

    def closeEvent(self, event) -> None:
        self.pool.quit_all()
        super().closeEvent(event)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.closed.emit()

    # ------------------------------------------------------------------ internals

    def _go(self, index: int) -> None:
        self._index = min(max(index, 0), len(self._photos) - 1)
        photo = self._photos[self._index]
        self._request(photo.path)
        if self._index + 1 < len(self._photos):
            self._request(self._photos[self._index + 1].path)  # decoded ahead
        self._render()
        self.current_changed.emit(photo.photo_id)

    def _request(self, path: str) -> None:
        if path in self._images or path in self._errors or path in self._loading:
            return
        self._loading.add(path)
        worker = Worker(decode_for_viewing, path)
        worker.returned.connect(lambda image, p=path: self._arrived(p, image, None))
        worker.errored.connect(lambda exc, p=path: self._arrived(p, None, _reason(exc)))
        self.pool.start(worker)

    def _arrived(self, path: str, image: QImage | None, error: str | None) -> None:
        self._loading.discard(path)
        if image is not None:
            self._images[path] = image
            while len(self._images) > CACHE_SIZE:
                self._images.popitem(last=False)
        else:
            self._errors[path] = error or "cannot be shown"
        current = self.current
        if current is not None and current.path == path:
            self._render()

    def _effective_zoom(self) -> float:
        if self._zoom is not None:
            return self._zoom
        image = self._current_image()
        if image is None:
            return 1.0
        return self._fit_factor(image)

    def _fit_factor(self, image: QImage) -> float:
        room = self.scroll.viewport().size()
        return min(room.width() / max(image.width(), 1), room.height() / max(image.height(), 1), 1.0)

    def _current_image(self) -> QImage | None:
        current = self.current
        if current is None:
            return None
        image = self._images.get(current.path)
        if image is not None:
            self._images.move_to_end(current.path)
        return image

    def _render(self) -> None:
        current = self.current
        if current is None:
            return
        image = self._current_image()
        name = os.path.basename(current.path)
        where = f"{self._index + 1} of {len(self._photos)}"
        if image is None:
            error = self._errors.get(current.path)
            self.picture.setPixmap(QPixmap())
            self.picture.setText(f"Cannot show this photo: {error}." if error else "Loading…")
            self.picture.resize(self.scroll.viewport().size())
            self.caption.setText(f"{name} — {where} — {current.path}")
            return
        factor = self._zoom if self._zoom is not None else self._fit_factor(image)
        size = QSize(max(1, round(image.width() * factor)), max(1, round(image.height() * factor)))
        pixmap = QPixmap.fromImage(image)
        if size != image.size():
            pixmap = pixmap.scaled(
                size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self.picture.setText("")
        self.picture.setPixmap(pixmap)
        self.picture.resize(pixmap.size())
        how = "fitted" if self._zoom is None else "zoom"
        pixels = f"{image.width()}×{image.height()}"
        self.caption.setText(f"{name} — {where} — {pixels} shown at {factor:.0%} ({how}) — {current.path}")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)
