"""Drawing of scene-world photos: a planner that makes every random choice, and a painter.

The planner turns a scene into a display list in normalised units, independent of the output
size; the painter maps it onto pixels. Units: the central square of the frame spans x in
[-0.5, 0.5] (left to right) and y in [0, 1] (top to bottom), one unit being the short side of
the image. Wider (or taller) frames show more of the same world around that square, so a
64 x 64 render is the centre crop of a 1600 x 1200 render of the same scene, which is what a
CLIP preprocessor (resize the short side, centre crop) makes of the big one.

Objects stay inside the central square; backgrounds reach 1.6 units to each side. Small
renders are drawn at twice their size and averaged down 2 x 2 (supersampling), so edges are
antialiased the way a big photo's are once the app's decoder shrinks it. Colours stay
recognisable at night: objects are lit (lamp pools, lit windows, burner glow, lights on the kite
frame) and their colours darken less than the background.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

if TYPE_CHECKING:
    from trainer.scenes import Scene

logger = logging.getLogger(__name__)

__all__ = ["OBJECT_COLOURS", "render_scene"]

Colour = np.ndarray  # float RGB, 0..255

#: Base RGB of each object colour (the attribute); renders jitter it slightly.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (206, 32, 38),
    "orange": (246, 128, 22),
    "yellow": (250, 212, 38),
    "green": (46, 158, 66),
    "blue": (34, 88, 212),
    "purple": (128, 52, 178),
    "white": (242, 242, 238),
    "black": (30, 30, 34),
}

_SKY_STOPS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    # (fraction from the top of the sky (0) to the horizon (1), colour)
    "day": [(0.0, (58, 112, 198)), (0.55, (108, 163, 226)), (1.0, (200, 224, 242))],
    "sunset": [(0.0, (38, 44, 102)), (0.42, (122, 82, 148)), (0.78, (232, 122, 104)), (1.0, (255, 184, 112))],
    "night": [(0.0, (3, 6, 20)), (0.6, (11, 20, 50)), (1.0, (30, 42, 80))],
}
# Multiplier and offset applied to the ground and background by the time of day...
_SCENE_LIGHT: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "day": ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "sunset": ((0.92, 0.74, 0.66), (22.0, 8.0, 6.0)),
    "night": ((0.4, 0.45, 0.62), (5.0, 7.0, 16.0)),
}
# ...and the gentler light on the objects, which keeps their colour readable.
_OBJECT_LIGHT: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "day": ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "sunset": ((1.0, 0.88, 0.8), (14.0, 4.0, 0.0)),
    "night": ((0.78, 0.78, 0.86), (6.0, 6.0, 12.0)),
}
_SKY_TOP = -0.12  # the sky gradient starts a little above the central square
_WORLD_X = 1.6  # backgrounds are planned over x in [-1.6, 1.6]
_NOISE_TILE = 128


def _c(rgb: Sequence[float]) -> Colour:
    return np.asarray(rgb, dtype=np.float64)


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    return _c(a) * (1.0 - t) + _c(b) * t


def _apply(light: tuple, rgb: Sequence[float]) -> Colour:
    mul, add = light
    return np.clip(_c(rgb) * _c(mul) + _c(add), 0, 255)


def _byte(v: float) -> int:
    return 0 if v <= 0 else (255 if v >= 255 else int(v + 0.5))


def _rgba(rgb: Sequence[float], alpha: float = 255) -> tuple[int, int, int, int]:
    r, g, b = rgb.tolist() if isinstance(rgb, np.ndarray) else rgb
    return (_byte(r), _byte(g), _byte(b), _byte(alpha))


@dataclass
class _Plan:
    """Everything needed to paint a scene, in normalised units; no randomness left."""

    stops_y: list[float] = field(default_factory=list)
    stops_c: list[Colour] = field(default_factory=list)
    horizon: float = 0.5
    glows: list[tuple[float, float, float, Colour, float]] = field(default_factory=list)
    lights: list[tuple[float, float, float, float, Colour, float]] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)
    blur: float = 0.0
    vignette: float = 0.0
    gain: Colour = field(default_factory=lambda: _c((1.0, 1.0, 1.0)))
    noise: np.ndarray | None = None

    def poly(self, pts: np.ndarray, fill: tuple, outline: tuple | None = None, width: float = 0.0) -> None:
        self.ops.append(("poly", np.asarray(pts, dtype=np.float64), fill, outline, width))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: tuple | None) -> None:
        self.ops.append(("ellipse", cx, cy, rx, ry, fill))

    def soft_ellipse(
        self, cx: float, cy: float, rx: float, ry: float, rgb: Sequence[float], alpha: float, steps: int = 4
    ) -> None:
        """Concentric translucent ellipses: a glow or shadow with a soft edge."""
        for i in range(steps):
            k = 1.0 - i / steps
            self.ellipse(cx, cy, rx * k, ry * k, _rgba(rgb, alpha / steps * 1.6))

    def points(self, pts: np.ndarray, size: float, fill: tuple) -> None:
        """Many small square dots (stars, sparkles) in one call."""
        self.ops.append(("points", np.asarray(pts, dtype=np.float64), size, fill))

    def light(
        self, cx: float, cy: float, rx: float, ry: float, rgb: Sequence[float], strength: float
    ) -> None:
        """Additive light with a Gaussian falloff, applied over the ground before the objects."""
        self.lights.append((cx, cy, rx, ry, _c(rgb), strength))

    def line(self, pts: np.ndarray, width: float, fill: tuple) -> None:
        self.ops.append(("line", np.asarray(pts, dtype=np.float64), width, fill))

    def rects(self, boxes: np.ndarray, fill: tuple) -> None:
        """Many axis-aligned rectangles (x0, y0, x1, y1) of one colour (windows)."""
        if len(boxes):
            self.ops.append(("rects", np.asarray(boxes, dtype=np.float64).reshape(-1, 4), fill))

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: tuple) -> None:
        self.ops.append(("rect", x0, y0, x1, y1, fill))


class _Frame:
    """Local object coordinates (x right, y down, unit = object size) to scene units."""

    def __init__(self, x: float, y: float, s: float, flip: bool = False, angle: float = 0.0):
        self.x, self.y, self.s = x, y, s
        self.fx = -1.0 if flip else 1.0
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def __call__(self, local: Sequence[Sequence[float]]) -> np.ndarray:
        p = np.array(local, dtype=np.float64)
        lx = p[:, 0] * self.fx
        ly = p[:, 1]
        rx = lx * self.cos - ly * self.sin
        ry = lx * self.sin + ly * self.cos
        return np.stack([self.x + rx * self.s, self.y + ry * self.s], axis=1)

    def pt(self, lx: float, ly: float) -> tuple[float, float]:
        x, y = self(((lx, ly),))[0]
        return float(x), float(y)


def _circle_pts(
    cx: float, cy: float, rx: float, ry: float, n: int = 20, a0: float = 0.0, a1: float = 2 * math.pi
):
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


# ----------------------------------------------------------------------------------------------
# Sky


def _plan_sky(plan: _Plan, time: str, rng: np.random.Generator, horizon: float) -> tuple[Colour, tuple]:
    """The sky's gradient, its sun or moon (and stars) and clouds; returns the colour at the
    horizon and where the light comes from."""
    stops = _SKY_STOPS[time]
    warm = rng.uniform(-8, 8)
    bright = rng.uniform(0.93, 1.06)
    for t, rgb in stops:
        plan.stops_y.append(_SKY_TOP + t * (horizon - _SKY_TOP))
        plan.stops_c.append(np.clip(_c(rgb) * bright + _c((warm, 0, -warm)), 0, 255))
    horizon_rgb = plan.stops_c[-1]
    if time == "day":
        light_src = _plan_sun(plan, rng)
    elif time == "sunset":
        light_src = _plan_setting_sun(plan, rng, horizon)
    else:
        light_src = _plan_night_sky(plan, rng, horizon)
    _plan_clouds(plan, time, rng, horizon)
    return horizon_rgb, light_src


def _plan_sun(plan: _Plan, rng: np.random.Generator) -> tuple[float, float]:
    sx, sy = rng.uniform(-0.48, 0.48), rng.uniform(0.02, 0.18)
    plan.glows.append((sx, sy, 0.2, _c((255, 246, 220)), 0.3))
    plan.ellipse(sx, sy, 0.032, 0.032, _rgba((255, 252, 238)))
    return sx, sy


def _plan_setting_sun(plan: _Plan, rng: np.random.Generator, horizon: float) -> tuple[float, float]:
    sx, sy = rng.uniform(-0.35, 0.35), horizon - rng.uniform(0.0, 0.08)
    plan.glows.append((sx, sy, 0.55, _c((255, 150, 80)), 0.5))
    plan.glows.append((sx, sy, 0.14, _c((255, 210, 150)), 0.35))
    plan.ellipse(sx, sy, 0.05, 0.05, _rgba((255, 246, 222)))
    return sx, sy


def _plan_night_sky(plan: _Plan, rng: np.random.Generator, horizon: float) -> tuple[float, float]:
    """Stars in three brightnesses, and the moon with a few craters."""
    n = 260
    xs = rng.uniform(-_WORLD_X, _WORLD_X, n)
    ys = _SKY_TOP - 0.5 + rng.uniform(0, 1, n) ** 1.3 * (horizon - 0.06 - _SKY_TOP + 0.5)
    for k, alpha in enumerate((110, 170, 255)):
        plan.points(np.stack([xs[k::3], ys[k::3]], 1), 0.0016 * (1 + k * 0.6), _rgba((255, 250, 235), alpha))
    mx, my = rng.uniform(-0.45, 0.45), rng.uniform(0.04, 0.2)
    plan.glows.append((mx, my, 0.22, _c((150, 170, 230)), 0.28))
    plan.ellipse(mx, my, 0.03, 0.03, _rgba((242, 240, 222)))
    for _ in range(3):
        ox, oy = rng.uniform(-0.015, 0.015, 2)
        r = rng.uniform(0.004, 0.009)
        plan.ellipse(mx + ox, my + oy, r, r, _rgba((200, 200, 190), 120))
    return mx, my


def _cloud_tones(time: str, behind: Colour) -> tuple[Colour, Colour, float, float]:
    """A cloud's lit top and shaded underside (tinted by the sky behind it), its flatness, and
    how much wider than drawn it is."""
    if time == "day":
        return _mix(behind, (255, 255, 255), 0.88), _mix(behind, (214, 222, 236), 0.8), 0.5, 1.0
    if time == "sunset":
        return _mix(behind, (255, 206, 170), 0.75), _mix(behind, (132, 84, 130), 0.7), 0.3, 1.5
    return _mix(behind, (64, 74, 106), 0.35), _mix(behind, (40, 48, 76), 0.25), 0.3, 1.0


def _plan_clouds(plan: _Plan, time: str, rng: np.random.Generator, horizon: float) -> None:
    """Opaque puffs, tinted by the sky behind them."""
    # every count is drawn, whatever the time, so the draws that follow do not depend on it
    n_clouds = {"day": rng.integers(1, 5), "sunset": rng.integers(1, 4), "night": rng.integers(0, 2)}[time]
    sy = np.asarray(plan.stops_y)
    sc = np.asarray(plan.stops_c)
    for _ in range(int(n_clouds)):
        cx = rng.uniform(-1.2, 1.2)
        cy = rng.uniform(0.03, max(0.05, horizon - 0.2))
        w = rng.uniform(0.1, 0.24)
        behind = np.array([np.interp(cy, sy, sc[:, k]) for k in range(3)])
        top, under, flat, widen = _cloud_tones(time, behind)
        w *= widen
        puffs = sorted(
            ((rng.uniform(-0.5, 0.5) * w, rng.uniform(0.16, 0.3) * w) for _ in range(7)), key=lambda p: -p[1]
        )
        plan.ellipse(cx, cy + 0.06 * w, w * 0.62, w * flat * 0.32, _rgba(under))
        lifts = [-r * flat * (0.9 if abs(ox) < 0.25 * w else 0.4) for ox, r in puffs]
        for (ox, r), oy in zip(puffs, lifts, strict=True):  # shaded undersides first...
            plan.ellipse(cx + ox, cy + oy + 0.03 * w, r, r * flat * 1.6, _rgba(under))
        for (ox, r), oy in zip(puffs, lifts, strict=True):  # ...then the lit tops over them
            plan.ellipse(cx + ox - 0.01 * w, cy + oy, r * 0.95, r * flat * 1.5, _rgba(top))


# ----------------------------------------------------------------------------------------------
# Settings. Each adds ground stops and background/ground ops, and returns where objects go.


@dataclass
class _Ground:
    horizon: float
    floor: tuple[float, float]  # y range where ground objects stand
    water: tuple[float, float] | None = None  # y range of open water (boats)


def _add_stops(plan: _Plan, light: tuple, stops: Sequence[tuple[float, Sequence[float]]], raw: bool = False):
    for y, rgb in stops:
        plan.stops_y.append(y)
        plan.stops_c.append(_c(rgb) if raw else _apply(light, rgb))


def _dy(dy: float) -> np.ndarray:
    """A vertical offset to add to an (N, 2) array of points."""
    return np.array([0.0, dy])


def _wavy(x0: float, x1: float, y: float, amp: float, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    xs = np.linspace(x0, x1, n)
    ph, f1, f2 = rng.uniform(0, 6.28), rng.uniform(2.0, 4.0), rng.uniform(6.0, 11.0)
    ys = y + amp * (np.sin(xs * f1 + ph) + 0.4 * np.sin(xs * f2 + 2 * ph))
    return np.stack([xs, ys], axis=1)


def _band(top: np.ndarray, bottom_y: float) -> np.ndarray:
    """Polygon from a top edge down to a flat bottom."""
    return np.concatenate([top, [[top[-1, 0], bottom_y], [top[0, 0], bottom_y]]])


def _water_colours(time: str, sky_horizon: Colour) -> tuple[Colour, Colour]:
    deep = {"day": (36, 100, 150), "sunset": (72, 62, 104), "night": (8, 15, 36)}[time]
    return _mix(sky_horizon, deep, 0.45), _c(deep)


def _glitter(plan: _Plan, x: float, y0: float, y1: float, rgb: Sequence[float], rng: np.random.Generator):
    """Sun or moon reflected on water: short horizontal strokes in a column."""
    for _ in range(14):
        y = rng.uniform(y0, y1)
        d = (y - y0) / max(1e-6, y1 - y0)
        half = 0.006 + 0.03 * d * rng.uniform(0.3, 1.0)
        xx = x + rng.normal(0, 0.015 + 0.03 * d)
        plan.line(
            np.array([[xx - half, y], [xx + half, y]]), 0.002 + 0.002 * d, _rgba(rgb, rng.uniform(80, 180))
        )


def _plan_beach(plan, time, light, rng, sky_h, light_src, boats: bool, h: float) -> _Ground:
    shore = h + (rng.uniform(0.26, 0.32) if boats else rng.uniform(0.13, 0.22))
    far, deep = _water_colours(time, sky_h)
    sand = _c((234, 212, 168)) * rng.uniform(0.96, 1.03)
    _add_stops(plan, light, [(h + 1e-4, far), (shore, deep)], raw=True)
    _add_stops(plan, light, [(shore + 0.001, sand * 0.82), (shore + 0.05, sand), (1.05, sand * 0.95)])
    # a headland on one side of the bay
    side = rng.choice([-1.0, 1.0])
    xs = np.linspace(0.25, 1.6, 24) * side
    top = h - 0.05 * rng.uniform(0.6, 1.2) * np.sin(np.clip((np.abs(xs) - 0.25) / 0.9, 0, 1) * math.pi / 2)
    land = _mix(sky_h, _apply(light, (70, 110, 90)), 0.45)
    plan.poly(_band(np.stack([xs, top], 1), h + 0.002), _rgba(land))
    # waves on the sea
    crest = _rgba(_mix(far, (255, 255, 255), 0.5 if time == "day" else 0.25), 110)
    ys = rng.uniform(h + 0.01, shore - 0.01, 16)
    xs = rng.uniform(-1.2, 1.2, 16)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        d = (y - h) / (shore - h)
        half = 0.03 + 0.12 * d
        plan.line(np.array([[x - half, y], [x + half, y]]), 0.002 + 0.003 * d, crest)
    if time != "day":
        _glitter(
            plan,
            light_src[0],
            h + 0.004,
            shore - 0.01,
            (255, 200, 130) if time == "sunset" else (220, 225, 240),
            rng,
        )
    # foam where the waves reach the sand
    foam = _wavy(-_WORLD_X, _WORLD_X, shore, 0.004, rng)
    plan.poly(
        np.concatenate([foam - _dy(0.006), (foam + _dy(0.01))[::-1]]),
        _rgba(_apply(light, (250, 250, 245)), 200),
    )
    wet = _wavy(-_WORLD_X, _WORLD_X, shore + 0.02, 0.005, rng)
    plan.line(wet, 0.004, _rgba(_apply(light, (250, 250, 245)), 90))
    # sand texture
    tones = [_rgba(_apply(light, sand * t), 120) for t in (0.86, 1.08)]
    ys = rng.uniform(shore + 0.03, 1.0, 40)
    xs = rng.uniform(-1.0, 1.0, 40)
    rs = rng.uniform(0.002, 0.006, 40) * (1 + 2 * (ys - shore))
    which = rng.integers(0, 2, 40)
    for x, y, r, k in zip(xs.tolist(), ys.tolist(), rs.tolist(), which.tolist(), strict=True):
        plan.ellipse(x, y, r * 2.2, r * 0.8, tones[k])
    return _Ground(h, (shore + 0.07, 0.93), (h + 0.04, shore - 0.02))


def _plan_snow(plan, time, light, rng, sky_h, light_src, boats: bool, h: float) -> _Ground:
    # two mountain ranges with snow caps, their feet hidden by the snowfield
    for base, haze, hmax in (((150, 160, 192), 0.55, 0.24), ((112, 124, 160), 0.3, 0.17)):
        n = int(rng.integers(10, 15))
        xs = np.sort(rng.uniform(-_WORLD_X, _WORLD_X, n))
        peaks = h - rng.uniform(0.35, 1.0, n) * hmax
        valleys_x = np.concatenate([[-_WORLD_X - 0.3], (xs[:-1] + xs[1:]) / 2, [_WORLD_X + 0.3]])
        valleys_y = h - rng.uniform(-0.1, 0.3, n + 1) * hmax  # some valleys sink below the snowfield
        outline = [[valleys_x[0], valleys_y[0]]]
        for i in range(n):
            outline += [[xs[i], peaks[i]], [valleys_x[i + 1], valleys_y[i + 1]]]
        rock = _mix(sky_h, _apply(light, base), 1 - haze)
        plan.poly(np.array([*outline, [valleys_x[-1], h + 0.02], [valleys_x[0], h + 0.02]]), _rgba(rock))
        lit_side = _mix(sky_h, _apply(light, _c(base) * 1.12), 1 - haze)
        capc = _mix(sky_h, _apply(light, (248, 250, 255)), 1 - haze * 0.6)
        for i in range(n):
            px, py = xs[i], peaks[i]
            lx, ly = valleys_x[i], valleys_y[i]
            rx, ry = valleys_x[i + 1], valleys_y[i + 1]
            plan.poly(np.array([[px, py], [rx, ry], [px + (rx - px) * 0.2, h + 0.02]]), _rgba(lit_side, 120))
            k = rng.uniform(0.25, 0.45)
            cap = [[px, py], [px + (rx - px) * k, py + (ry - py) * k]]
            for j in (0.7, 0.4, 0.1):  # a ragged snow line
                x = px + (rx - px) * k * j + (lx - px) * k * (1 - j)
                dip = rng.uniform(0.6, 1.1) * k * (h - py) * 0.9
                cap.append([x, py + dip * (1.0 if j != 0.4 else 0.75)])
            cap.append([px + (lx - px) * k, py + (ly - py) * k])
            plan.poly(np.array(cap), _rgba(capc))
    edge = _wavy(-_WORLD_X, _WORLD_X, h - 0.012, 0.006, rng)
    plan.poly(_band(edge, h + 0.03), _rgba(_apply(light, (208, 220, 241))))
    _add_stops(
        plan, light, [(h + 1e-4, (208, 220, 241)), (h + 0.2, (236, 242, 250)), (1.05, (250, 251, 254))]
    )
    shadow = _apply(light, (146, 170, 224))
    bright = _apply(light, (252, 253, 255))
    for _ in range(7):  # drifts: a lit crest with a blue shadow below it, tapering at both ends
        d = rng.uniform(0.05, 1.0)
        y = h + 0.02 + d * (0.98 - h)
        x0 = rng.uniform(-1.4, 0.9)
        crest = _wavy(x0, x0 + rng.uniform(0.4, 1.0) * (0.6 + d), y, 0.004 + 0.012 * d, rng, n=24)
        taper = np.sin(np.linspace(0.0, math.pi, len(crest)))[:, None] * np.array([0.0, 1.0])
        deep = crest + taper * (0.01 + 0.035 * d)
        plan.poly(np.concatenate([crest, deep[::-1]]), _rgba(shadow, 75))
        plan.poly(np.concatenate([crest, (crest + taper * (0.004 + 0.012 * d))[::-1]]), _rgba(shadow, 60))
        plan.line(crest - _dy(0.002), 0.002 + 0.003 * d, _rgba(bright, 150))
    sparkle = np.stack([rng.uniform(-1.0, 1.0, 40), rng.uniform(h + 0.02, 1.0, 40)], 1)
    plan.points(sparkle, 0.002, _rgba((255, 255, 255), 200))
    water = None
    if boats:
        water = _plan_lake(plan, time, rng, sky_h, h, shore_rgb=_apply(light, (252, 253, 255)))
    return _Ground(h, (h + 0.1, 0.93), water)


def _plan_lake(plan, time, rng, sky_h, h, shore_rgb, straight: bool = False) -> tuple[float, float]:
    """Open water across the frame for boats away from the sea (a lake, a pond, a canal)."""
    y0 = h + rng.uniform(0.06, 0.1)
    y1 = y0 + rng.uniform(0.26, 0.32)
    far, deep = _water_colours(time, sky_h)
    amp = 0.0 if straight else 0.008
    top = _wavy(-_WORLD_X, _WORLD_X, y0, amp, rng)
    bottom = _wavy(-_WORLD_X, _WORLD_X, y1, amp * 1.5, rng)
    rim = 0.012 if straight else 0.008
    plan.poly(np.concatenate([top - _dy(rim), bottom[::-1] + _dy(rim * 2)]), _rgba(shore_rgb))
    plan.poly(np.concatenate([top, bottom[::-1]]), _rgba(deep))
    for i in range(5):  # fake vertical gradient: lighter bands towards the far shore
        t = i / 5
        yb = y0 + (y1 - y0) * (0.5 - 0.1 * i)
        plan.poly(
            np.concatenate([top, _wavy(-_WORLD_X, _WORLD_X, yb, amp, rng)[::-1]]),
            _rgba(_mix(deep, far, 0.35 + t * 0.3), 150),
        )
    for _ in range(10):
        y = rng.uniform(y0 + 0.01, y1 - 0.01)
        x = rng.uniform(-1.0, 1.0)
        half = 0.02 + 0.06 * (y - y0) / (y1 - y0)
        plan.line([[x - half, y], [x + half, y]], 0.0025, _rgba(_mix(far, (255, 255, 255), 0.4), 100))
    return (y0 + 0.03, y1 - 0.015)


def _plan_meadow(plan, time, light, rng, sky_h, light_src, boats: bool, h: float) -> _Ground:
    for base, haze, amp in (((96, 138, 128), 0.55, 0.07), ((88, 140, 70), 0.28, 0.035)):
        top = _wavy(-_WORLD_X, _WORLD_X, h - amp, amp * 0.6, rng)
        plan.poly(_band(top, h + 0.01), _rgba(_mix(sky_h, _apply(light, base), 1 - haze)))
    _add_stops(plan, light, [(h + 1e-4, (128, 168, 84)), (h + 0.15, (100, 154, 62)), (1.05, (66, 132, 44))])
    for _ in range(7):
        y = rng.uniform(h + 0.03, 1.0)
        d = (y - h) / (1 - h)
        tone = rng.choice([(58, 112, 38), (138, 180, 86)])
        plan.soft_ellipse(
            rng.uniform(-1.2, 1.2), y, 0.1 + 0.3 * d, 0.01 + 0.03 * d, _apply(light, tone), 70, steps=3
        )
    blades = [
        _rgba(_apply(light, c), 220) for c in ((40, 98, 32), (60, 120, 40), (128, 176, 76), (150, 190, 90))
    ]
    n = 150
    d = np.sqrt(rng.uniform(0.0, 1.0, n))
    ys = h + 0.01 + d * (1.02 - h)
    xs = rng.uniform(-1.0, 1.0, n)
    length = 0.006 + 0.03 * d
    lean = rng.normal(0, 0.35, n) * length
    tone = rng.integers(0, len(blades), n)
    for i in np.argsort(ys):
        plan.line(
            np.array([[xs[i], ys[i]], [xs[i] + lean[i], ys[i] - length[i]]]),
            0.0015 + 0.0035 * d[i],
            blades[tone[i]],
        )
    water = None
    if boats:
        water = _plan_lake(plan, time, rng, sky_h, h, shore_rgb=_apply(light, (70, 110, 50)))
    return _Ground(h, (h + 0.1, 0.93), water)


_BUILDING_TONES = (
    (118, 124, 140),
    (152, 142, 130),
    (98, 108, 126),
    (170, 166, 160),
    (86, 92, 108),
    (136, 120, 112),
)


def _plan_city(plan, time, light, rng, sky_h, light_src, boats: bool, h: float) -> _Ground:
    _plan_far_skyline(plan, light, rng, sky_h, h)
    _plan_near_skyline(plan, time, light, rng, sky_h, h)
    road0, road1 = _plan_street(plan, light, rng, h)
    _plan_street_lamps(plan, time == "night", light, rng, h, road0)
    water = None
    if boats:
        water = _plan_lake(
            plan, time, rng, sky_h, h - 0.02, shore_rgb=_apply(light, (140, 136, 128)), straight=True
        )
    return _Ground(h, (road0 + 0.1, road1 + 0.06), water)


def _plan_far_skyline(plan: _Plan, light: tuple, rng: np.random.Generator, sky_h: Colour, h: float) -> None:
    """Hazy silhouettes of distant buildings."""
    x = -_WORLD_X
    far = _mix(sky_h, _apply(light, (110, 118, 140)), 0.5)
    while x < _WORLD_X:
        w = rng.uniform(0.05, 0.12)
        top = h - rng.uniform(0.12, 0.34)
        plan.rect(x, top, x + w, h + 0.01, _rgba(far))
        x += w * rng.uniform(0.7, 1.0)


def _plan_near_skyline(
    plan: _Plan, time: str, light: tuple, rng: np.random.Generator, sky_h: Colour, h: float
) -> None:
    """Buildings with a shaded side, some with an antenna, and their windows: lit at random at
    night, ribbons of glass by day."""
    x = -_WORLD_X
    windows: list[np.ndarray] = []
    while x < _WORLD_X:
        w = rng.uniform(0.07, 0.16)
        top = h - rng.uniform(0.08, 0.26)
        tone = _mix(sky_h, _apply(light, _BUILDING_TONES[int(rng.integers(0, len(_BUILDING_TONES)))]), 0.8)
        plan.rect(x, top, x + w, h + 0.01, _rgba(tone))
        plan.rect(x + w * 0.82, top, x + w, h + 0.01, _rgba(tone * 0.82))  # shaded side
        if rng.uniform() < 0.3:
            plan.line([[x + w * 0.5, top], [x + w * 0.5, top - 0.03]], 0.002, _rgba(tone * 0.7))
        wy = top + 0.022 * np.arange(1, int((h - top) / 0.022))
        cols = max(2, int(w / 0.022))
        if time == "night":  # a random share of lit windows
            lit = rng.uniform(size=(len(wy), cols)) < 0.45
            fy, fx = np.nonzero(lit)
            wx = x + w * 0.08 + fx * (w * 0.74 / cols)
            windows.append(np.stack([wx, wy[fy], wx + w * 0.45 / cols, wy[fy] + 0.011], 1))
        else:  # ribbon windows, one band a floor
            glass = _rgba(_mix(tone, (205, 222, 240) if time == "day" else (255, 190, 140), 0.45), 200)
            bands = np.stack(
                [np.full_like(wy, x + w * 0.08), wy, np.full_like(wy, x + w * 0.8), wy + 0.009], 1
            )
            plan.rects(bands, glass)
        x += w * rng.uniform(0.85, 1.05)
    if windows:
        plan.rects(np.concatenate(windows), _rgba((255, 214, 130), 230))


def _plan_street(plan: _Plan, light: tuple, rng: np.random.Generator, h: float) -> tuple[float, float]:
    """A side-on street: far pavement, road with a dashed centre line, near pavement. Returns
    the road's far and near edges."""
    pave = (158, 154, 148)
    road0 = h + 0.045
    road1 = rng.uniform(0.86, 0.9)
    _add_stops(
        plan,
        light,
        [
            (h + 1e-4, pave),
            (road0, pave),
            (road0 + 0.001, (92, 92, 98)),
            (road1, (74, 74, 80)),
            (road1 + 0.001, pave),
            (1.05, (170, 166, 160)),
        ],
    )
    plan.rect(-_WORLD_X, road0 - 0.004, _WORLD_X, road0 + 0.002, _rgba(_apply(light, (120, 118, 114))))
    plan.rect(-_WORLD_X, road1 - 0.002, _WORLD_X, road1 + 0.006, _rgba(_apply(light, (120, 118, 114))))
    mid = (road0 + road1) / 2 + 0.03
    x = -_WORLD_X + rng.uniform(0, 0.1)
    while x < _WORLD_X:
        plan.rect(x, mid, x + 0.07, mid + 0.006, _rgba(_apply(light, (235, 235, 225)), 200))
        x += 0.14
    return road0, road1


def _plan_street_lamps(
    plan: _Plan, night: bool, light: tuple, rng: np.random.Generator, h: float, road0: float
) -> None:
    """Street lamps on the far pavement; at night they light a pool around them."""
    x = -_WORLD_X + rng.uniform(0, 0.4)
    while x < _WORLD_X:
        top = h - 0.11
        plan.line([[x, road0], [x, top], [x + 0.03, top]], 0.004, _rgba(_apply(light, (60, 62, 68))))
        lamp = (255, 226, 150) if night else _apply(light, (200, 200, 190))
        if night:
            plan.light(x + 0.03, top + 0.006, 0.035, 0.035, (255, 200, 130), 0.5)
            plan.light(x + 0.03, road0 + 0.015, 0.09, 0.02, (255, 190, 120), 0.4)
        plan.ellipse(x + 0.03, top + 0.005, 0.008, 0.005, _rgba(lamp))
        x += rng.uniform(0.45, 0.6)


def _plan_desert(plan, time, light, rng, sky_h, light_src, boats: bool, h: float) -> _Ground:
    for _ in range(int(rng.integers(1, 4))):  # distant mesas
        cx, w, ht = rng.uniform(-1.4, 1.4), rng.uniform(0.15, 0.45), rng.uniform(0.03, 0.09)
        pts = [
            [cx - w / 2 - 0.04, h + 0.005],
            [cx - w / 2, h - ht],
            [cx + w / 2, h - ht],
            [cx + w / 2 + 0.05, h + 0.005],
        ]
        plan.poly(np.array(pts), _rgba(_mix(sky_h, _apply(light, (178, 110, 84)), 0.5)))
    sand = _c((236, 186, 122)) * rng.uniform(0.96, 1.03)
    _add_stops(plan, light, [(h + 1e-4, sand * 0.97), (1.05, sand * 0.9)])
    shade = _apply(light, sand * _c((0.74, 0.6, 0.56)))
    crest_c = _rgba(_apply(light, np.minimum(255, sand * 1.08 + 6)), 210)
    lee = 1.0 if light_src[0] < 0 else -1.0  # slip faces turn away from the sun
    for layer in range(4):
        y0 = h + 0.03 + layer * (0.05 + 0.05 * layer) + rng.uniform(0.0, 0.04)
        amp = 0.035 + 0.035 * layer
        cx = rng.uniform(-0.8, 0.8)
        width = rng.uniform(0.6, 1.0) + 0.35 * layer
        t = np.linspace(-1.0, 1.0, 30)
        # asymmetric hump: gentle windward slope, steep lee side
        u = np.where(t * lee > 0, np.abs(t) ** 0.8, np.abs(t) ** 1.5)
        crest = np.stack([cx + t * width, y0 - amp * (1 - u)], 1)
        body = np.concatenate([crest, [[cx + width, 1.1], [cx - width, 1.1]]])
        plan.poly(body, _rgba(_apply(light, sand * (0.94 + 0.03 * layer))))
        peak = 15
        side = crest[peak:] if lee > 0 else crest[: peak + 1][::-1]
        k = np.linspace(0.0, 1.0, len(side))
        inner = np.stack(
            [
                crest[peak, 0] + (side[-1, 0] - crest[peak, 0]) * k**1.5,
                crest[peak, 1] + amp * 1.3 * np.sin(k * math.pi / 2),
            ],
            1,
        )
        plan.poly(np.concatenate([side, inner[::-1]]), _rgba(shade, 190))
        plan.line(side, 0.0025, crest_c)
        for _ in range(3):
            yy = y0 + rng.uniform(0.015, 0.07)
            x0 = cx + rng.uniform(-0.8, 0.3) * width
            plan.line(_wavy(x0, x0 + rng.uniform(0.08, 0.2), yy, 0.003, rng, n=8), 0.002, _rgba(shade, 90))
    water = None
    if boats:
        water = _plan_lake(plan, time, rng, sky_h, h, shore_rgb=_apply(light, sand * 0.75))
    return _Ground(h, (h + 0.12, 0.93), water)


_SETTING_PLANNERS = {
    "beach": _plan_beach,
    "snow": _plan_snow,
    "meadow": _plan_meadow,
    "city": _plan_city,
    "desert": _plan_desert,
}

# ----------------------------------------------------------------------------------------------
# Objects. Each draws in local units around an anchor: ground objects stand on it, boats float
# with their waterline on it, balloons and kites are centred on it.


@dataclass
class _Look:
    colour: Colour  # object colour, lit for the time of day
    light: tuple  # object light
    time: str
    outline: tuple  # RGBA outline
    rim: tuple  # RGBA highlight


def _look(colour_name: str, time: str, rng: np.random.Generator) -> _Look:
    base = _c(OBJECT_COLOURS[colour_name])
    jitter = rng.uniform(0.92, 1.06) + rng.normal(0, 4, 3) / 255.0
    base = np.clip(base * jitter, 0, 255)
    light = _OBJECT_LIGHT[time]
    col = _apply(light, base)
    dark = colour_name == "black"
    outline = _rgba(col * 0.45 if not dark else _apply(light, (96, 96, 104)), 230)
    rim = _rgba((255, 255, 255) if time != "sunset" else (255, 214, 170), 110 if not dark else 80)
    return _Look(col, light, time, outline, rim)


def _shadow(plan: _Plan, x: float, y: float, half_width: float, time: str) -> None:
    if time == "night":
        plan.light(x, y, half_width * 1.5, half_width * 0.3, (255, 200, 140), 0.55)
        plan.light(x, y - half_width * 0.6, half_width * 1.2, half_width * 1.0, (255, 210, 160), 0.12)
    plan.soft_ellipse(x, y, half_width * 1.15, half_width * 0.12, (0, 0, 0), 110, steps=3)


def _draw_car(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    _shadow(plan, fr.x, fr.y - 0.005 * fr.s, 0.5 * fr.s, lk.time)
    body = [(-0.5, -0.13), (0.5, -0.13), (0.53, -0.22), (0.5, -0.3), (0.24, -0.34), (0.1, -0.5),
            (-0.24, -0.52), (-0.4, -0.35), (-0.51, -0.32), (-0.53, -0.2)]  # fmt: skip
    plan.poly(fr(body), _rgba(col), lk.outline, 0.012 * fr.s)
    plan.poly(fr([(-0.5, -0.13), (0.5, -0.13), (0.52, -0.19), (-0.52, -0.19)]), _rgba(col * 0.72))
    plan.line(fr([(-0.47, -0.31), (0.0, -0.325), (0.46, -0.29)]), 0.012 * fr.s, lk.rim)
    glass = (
        (160, 196, 222) if lk.time == "day" else ((222, 170, 140) if lk.time == "sunset" else (40, 50, 74))
    )
    glass = _apply(lk.light, glass)
    plan.poly(fr([(-0.35, -0.35), (-0.24, -0.48), (-0.09, -0.48), (-0.09, -0.35)]), _rgba(glass))
    plan.poly(fr([(-0.05, -0.35), (-0.05, -0.48), (0.08, -0.48), (0.2, -0.35)]), _rgba(glass))
    plan.line(fr([(-0.3, -0.37), (-0.22, -0.46)]), 0.01 * fr.s, _rgba((255, 255, 255), 90))
    plan.line(fr([(-0.07, -0.15), (-0.07, -0.34)]), 0.008 * fr.s, _rgba(col * 0.55))
    for wx in (-0.3, 0.3):
        c = fr.pt(wx, -0.12)
        plan.ellipse(c[0], c[1], 0.13 * fr.s, 0.13 * fr.s, _rgba(col * 0.3))
        plan.ellipse(c[0], c[1], 0.11 * fr.s, 0.11 * fr.s, _rgba((24, 24, 26)))
        plan.ellipse(c[0], c[1], 0.05 * fr.s, 0.05 * fr.s, _rgba(_apply(lk.light, (170, 172, 178))))
    hl = fr.pt(0.5, -0.25)
    if lk.time == "night":
        beam = fr([(0.5, -0.25), (1.4, -0.36), (1.4, -0.05)])
        plan.poly(beam, _rgba((255, 240, 190), 60))
        plan.soft_ellipse(hl[0], hl[1], 0.07 * fr.s, 0.07 * fr.s, (255, 240, 200), 160)
    plan.ellipse(hl[0], hl[1], 0.03 * fr.s, 0.025 * fr.s, _rgba((255, 246, 210)))
    tl = fr.pt(-0.51, -0.26)
    plan.ellipse(tl[0], tl[1], 0.018 * fr.s, 0.03 * fr.s, _rgba((150, 20, 20)))


_ROOFS = ((74, 62, 62), (92, 62, 48), (62, 70, 86), (54, 54, 58))


def _draw_house(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    roof = _apply(lk.light, _ROOFS[int(rng.integers(0, len(_ROOFS)))])
    _shadow(plan, fr.x, fr.y, 0.5 * fr.s, lk.time)
    front = [(-0.46, 0.0), (-0.06, 0.0), (-0.06, -0.5), (-0.26, -0.76), (-0.46, -0.5)]
    side = [(-0.06, 0.0), (0.46, 0.0), (0.46, -0.5), (-0.06, -0.5)]
    plan.poly(fr(side), _rgba(col * 0.8), lk.outline, 0.01 * fr.s)
    plan.poly(fr(front), _rgba(col), lk.outline, 0.01 * fr.s)
    plan.poly(fr([(0.12, -0.72), (0.2, -0.72), (0.2, -0.9), (0.12, -0.9)]), _rgba(roof * 0.9))
    plan.poly(
        fr([(-0.26, -0.8), (0.3, -0.8), (0.52, -0.47), (-0.04, -0.47)]),
        _rgba(roof),
        _rgba(roof * 0.6),
        0.01 * fr.s,
    )
    plan.line(fr([(-0.5, -0.46), (-0.26, -0.81), (-0.03, -0.46)]), 0.035 * fr.s, _rgba(roof * 0.85))
    night = lk.time == "night"
    pane = (255, 212, 120) if night else _apply(lk.light, (176, 204, 226))
    frame_c = _rgba(_apply(lk.light, (240, 240, 236)))
    for x0 in (0.03, 0.28):
        win = fr([(x0, -0.38), (x0 + 0.13, -0.38), (x0 + 0.13, -0.22), (x0, -0.22)])
        plan.poly(win, _rgba(pane), frame_c, 0.012 * fr.s)
        if night:
            c = fr.pt(x0 + 0.065, -0.3)
            plan.soft_ellipse(c[0], c[1], 0.14 * fr.s, 0.12 * fr.s, (255, 200, 110), 60)
    plan.poly(
        fr([(-0.33, 0.0), (-0.2, 0.0), (-0.2, -0.25), (-0.33, -0.25)]), _rgba(_apply(lk.light, (92, 60, 40)))
    )
    attic = fr.pt(-0.26, -0.58)
    plan.ellipse(attic[0], attic[1], 0.045 * fr.s, 0.045 * fr.s, _rgba(pane))


def _draw_tree(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    bark = _apply(lk.light, (96, 68, 46))
    _shadow(plan, fr.x, fr.y, 0.38 * fr.s, lk.time)
    plan.poly(fr([(-0.07, 0.0), (0.07, 0.0), (0.04, -0.5), (-0.04, -0.5)]), _rgba(bark))
    plan.line(fr([(0.0, -0.32), (0.16, -0.5)]), 0.03 * fr.s, _rgba(bark))
    plan.line(fr([(0.0, -0.38), (-0.14, -0.55)]), 0.03 * fr.s, _rgba(bark))
    blobs = [
        (rng.uniform(-0.24, 0.24), -0.72 + rng.uniform(-0.16, 0.12), rng.uniform(0.17, 0.25))
        for _ in range(7)
    ]
    for bx, by, r in blobs:  # shaded underside
        c = fr.pt(bx + 0.03, by + 0.04)
        plan.ellipse(c[0], c[1], r * fr.s, r * fr.s, _rgba(col * 0.62))
    plan.ellipse(*fr.pt(0, -0.72), 0.3 * fr.s, 0.26 * fr.s, _rgba(col * 0.8))
    for bx, by, r in blobs:
        c = fr.pt(bx, by)
        plan.ellipse(c[0], c[1], r * 0.9 * fr.s, r * 0.9 * fr.s, _rgba(col))
    for bx, by, r in blobs[:4]:  # light from above
        c = fr.pt(bx - 0.04, by - 0.05)
        plan.ellipse(
            c[0], c[1], r * 0.45 * fr.s, r * 0.4 * fr.s, _rgba(np.minimum(255, col * 1.18 + 14), 200)
        )


def _draw_boat(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    hull = [(-0.5, -0.16), (0.54, -0.18), (0.4, 0.0), (-0.42, 0.0)]
    refl = [(x, -y * 0.8) for x, y in hull]
    plan.poly(fr(refl), _rgba(col * 0.7, 90))
    plan.line(fr([(0.0, 0.0), (0.0, 0.55)]), 0.012 * fr.s, _rgba((40, 40, 40), 50))
    plan.line(fr([(-0.55, 0.01), (0.6, 0.01)]), 0.012 * fr.s, _rgba((255, 255, 255), 110))
    plan.line(fr([(0.0, -0.16), (0.0, -1.02)]), 0.018 * fr.s, _rgba(_apply(lk.light, (70, 60, 50))))
    sail = np.minimum(255, col * 1.05 + 12)
    plan.poly(fr([(0.03, -0.98), (0.03, -0.24), (0.44, -0.24)]), _rgba(sail), lk.outline, 0.01 * fr.s)
    plan.poly(
        fr([(-0.03, -0.88), (-0.03, -0.26), (-0.34, -0.26)]), _rgba(col * 0.86), lk.outline, 0.01 * fr.s
    )
    plan.line(fr([(0.06, -0.9), (0.34, -0.3)]), 0.012 * fr.s, lk.rim)
    plan.poly(fr(hull), _rgba(col), lk.outline, 0.012 * fr.s)
    plan.line(fr([(-0.49, -0.12), (0.52, -0.135)]), 0.025 * fr.s, _rgba(_apply(lk.light, (245, 245, 240))))
    if lk.time == "night":
        top = fr.pt(0.0, -1.02)
        plan.ellipse(top[0], top[1], 0.025 * fr.s, 0.025 * fr.s, _rgba((255, 244, 210)))
        plan.light(fr.x, fr.y, 0.6 * fr.s, 0.12 * fr.s, (255, 200, 140), 0.35)
        plan.light(fr.x, fr.y - 0.5 * fr.s, 0.5 * fr.s, 0.5 * fr.s, (255, 210, 160), 0.12)


def _draw_balloon(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    if lk.time == "night":
        plan.light(fr.x, fr.y + 0.1 * fr.s, 0.7 * fr.s, 0.7 * fr.s, (255, 160, 80), 0.3)
        col = np.minimum(255, col * 1.12 + 10)
    env = np.concatenate(
        [_circle_pts(0.0, -0.08, 0.5, 0.5, 28, math.pi * 0.78, math.pi * 2.22), [[0.15, 0.52], [-0.15, 0.52]]]
    )
    plan.poly(fr(env), _rgba(col), lk.outline, 0.012 * fr.s)
    # gores: darker and lighter lens-shaped panels
    for rx, k in ((0.36, 0.78), (0.2, 1.0), (0.07, 1.15)):
        lens = np.concatenate(
            [_circle_pts(0.0, -0.08, rx, 0.5, 14, -math.pi / 2, math.pi / 2)[:, :], [[0.11 * rx / 0.36, 0.5]]]
        )
        left = lens.copy()
        left[:, 0] *= -1
        plan.poly(
            fr(np.concatenate([lens, left[::-1]])), _rgba(np.minimum(255, col * k + (0 if k <= 1 else 12)))
        )
    plan.ellipse(*fr.pt(-0.22, -0.3), 0.08 * fr.s, 0.14 * fr.s, lk.rim)
    band = [(-0.3, 0.3), (0.3, 0.3), (0.22, 0.4), (-0.22, 0.4)]
    plan.poly(fr(band), _rgba(col * 0.7))
    rope = _rgba(_apply(lk.light, (70, 60, 50)))
    plan.line(fr([(-0.14, 0.5), (-0.08, 0.7)]), 0.01 * fr.s, rope)
    plan.line(fr([(0.14, 0.5), (0.08, 0.7)]), 0.01 * fr.s, rope)
    plan.poly(
        fr([(-0.09, 0.68), (0.09, 0.68), (0.08, 0.82), (-0.08, 0.82)]), _rgba(_apply(lk.light, (140, 96, 54)))
    )
    if lk.time == "night":
        f = fr.pt(0.0, 0.55)
        plan.soft_ellipse(f[0], f[1], 0.1 * fr.s, 0.1 * fr.s, (255, 200, 90), 230)


def _draw_kite(plan: _Plan, fr: _Frame, lk: _Look, rng: np.random.Generator) -> None:
    col = lk.colour
    anchor = fr.pt(0.0, 0.0)
    end_x = fr.x + rng.uniform(-0.5, 0.5)
    sag = rng.uniform(0.02, 0.08)
    t = np.linspace(0, 1, 12)
    string = np.stack(
        [anchor[0] + (end_x - anchor[0]) * t, anchor[1] + (1.25 - anchor[1]) * t + sag * np.sin(t * math.pi)],
        1,
    )
    plan.line(string, 0.003, _rgba(_apply(lk.light, (235, 235, 235)), 170))
    tail = [(0.0, 0.5)]
    for i in range(1, 9):
        tail.append((0.1 * math.sin(i * 1.1 + rng.uniform(0, 0.5)), 0.5 + 0.13 * i))
    plan.line(fr(tail), 0.012 * fr.s, _rgba(_apply(lk.light, (240, 240, 240)), 220))
    for i in (2, 4, 6, 8):
        bx, by = tail[i]
        bow = [
            (bx, by),
            (bx - 0.07, by - 0.04),
            (bx - 0.07, by + 0.04),
            (bx, by),
            (bx + 0.07, by - 0.04),
            (bx + 0.07, by + 0.04),
        ]
        plan.poly(fr(bow), _rgba(col))
    left = [(0.0, -0.5), (0.0, 0.5), (-0.32, -0.1)]
    right = [(0.0, -0.5), (0.32, -0.1), (0.0, 0.5)]
    plan.poly(fr(left), _rgba(col), lk.outline, 0.012 * fr.s)
    plan.poly(fr(right), _rgba(col * 0.78), lk.outline, 0.012 * fr.s)
    plan.poly(fr([(0.0, -0.5), (-0.32, -0.1), (-0.16, -0.1)]), _rgba(np.minimum(255, col * 1.15 + 18)))
    spar = _rgba(_apply(lk.light, (60, 48, 40)), 200)
    plan.line(fr([(0.0, -0.5), (0.0, 0.5)]), 0.012 * fr.s, spar)
    plan.line(fr([(-0.32, -0.1), (0.32, -0.1)]), 0.012 * fr.s, spar)
    if lk.time == "night":  # lights along the frame
        led = _rgba(np.minimum(255, col * 0.6 + 110), 230)
        plan.line(fr([(0.0, -0.5), (0.32, -0.1), (0.0, 0.5), (-0.32, -0.1), (0.0, -0.5)]), 0.02 * fr.s, led)


_DRAWERS = {
    "car": _draw_car,
    "house": _draw_house,
    "tree": _draw_tree,
    "boat": _draw_boat,
    "balloon": _draw_balloon,
    "kite": _draw_kite,
}
# width of one object in local units x its base size in scene units, and its height/width
_BASE_SIZE = {"car": 0.3, "house": 0.36, "tree": 0.32, "boat": 0.22, "balloon": 0.17, "kite": 0.17}
_HALF_WIDTH = {"car": 0.53, "house": 0.52, "tree": 0.46, "boat": 0.55, "balloon": 0.5, "kite": 0.34}


def _plan_objects(plan: _Plan, scene: Scene, ground: _Ground, rng: np.random.Generator) -> None:
    n = scene.n_objects
    kind = scene.kind
    slot = 0.9 / n
    xs = -0.45 + slot * (np.arange(n) + 0.5) + rng.uniform(-0.22, 0.22, n) * slot
    rng.shuffle(xs)
    placed = []
    for i in range(n):
        size = _BASE_SIZE[kind] * rng.uniform(0.85, 1.15) * (1.25 if n == 1 else 1.0)
        if kind in ("balloon", "kite"):
            y = rng.uniform(0.1, ground.horizon - 0.16)
            depth = rng.uniform(0.6, 1.1)
        else:
            lo, hi = ground.water if kind == "boat" and ground.water else ground.floor
            y = lo + (hi - lo) * rng.uniform(0, 1) ** 0.8
            depth = 0.55 + 0.6 * (y - ground.horizon) / max(1e-6, 1.0 - ground.horizon)
        s = size * depth
        s = min(s, 1.05 * slot / (2 * _HALF_WIDTH[kind]) if n > 1 else s)
        half = _HALF_WIDTH[kind] * s
        x = float(np.clip(xs[i], -0.48 + half, 0.48 - half)) if half < 0.48 else 0.0
        flip = bool(rng.uniform() < 0.5)
        angle = (
            rng.uniform(-0.35, 0.35)
            if kind == "kite"
            else (rng.uniform(-0.04, 0.04) if kind == "boat" else 0.0)
        )
        placed.append((y if kind not in ("balloon", "kite") else s, x, y, s, flip, angle))
    placed.sort(key=lambda p: p[0])
    lk = _look(scene.colour, scene.time, rng)
    for _, x, y, s, flip, angle in placed:
        _DRAWERS[kind](plan, _Frame(x, y, s, flip, angle), lk, rng)


_HORIZON = {
    "beach": (0.42, 0.5),
    "snow": (0.47, 0.56),
    "meadow": (0.47, 0.56),
    "city": (0.5, 0.58),
    "desert": (0.46, 0.55),
}


def plan_scene(scene: Scene) -> _Plan:
    """Every random choice for a scene, in normalised units: independent of the output size."""
    rng = np.random.default_rng([0x5CE7E, scene.seed])
    plan = _Plan()
    horizon = float(rng.uniform(*_HORIZON[scene.setting]))
    plan.horizon = horizon
    sky_h, light_src = _plan_sky(plan, scene.time, rng, horizon)
    plan.ops.append(("ground",))
    ground = _SETTING_PLANNERS[scene.setting](
        plan, scene.time, _SCENE_LIGHT[scene.time], rng, sky_h, light_src, scene.kind == "boat", horizon
    )
    plan.ops.append(("light",))
    _plan_objects(plan, scene, ground, rng)
    plan.blur = rng.uniform(0.0, 0.0012)
    plan.vignette = rng.uniform(0.1, 0.3)
    plan.gain = _c((1.0, 1.0, 1.0)) - np.abs(rng.normal(0, 0.02, 3))
    sigma = rng.uniform(2.0, 5.0)
    grain = rng.standard_normal((_NOISE_TILE, _NOISE_TILE), dtype=np.float32) * np.float32(sigma)
    plan.noise = np.clip(grain, -20, 20).astype(np.int16)
    return plan


# ----------------------------------------------------------------------------------------------
# Painting


class _Painter:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.u = float(min(width, height))
        self.ox = width / 2.0
        self.oy = height / 2.0 - 0.5 * self.u

    def xy(self, pts: np.ndarray) -> list[float]:
        return (pts * self.u + (self.ox, self.oy)).ravel().tolist()

    def px(self, v: float) -> float:
        return v * self.u

    def row(self, y: float) -> int:
        return int(min(self.h, max(0, round(self.oy + y * self.u))))

    def background(self, plan: _Plan) -> np.ndarray:
        ys = (np.arange(self.h) + 0.5 - self.oy) / self.u
        sy = np.asarray(plan.stops_y)
        sc = np.asarray(plan.stops_c)
        col = np.stack([np.interp(ys, sy, sc[:, k]) for k in range(3)], axis=1)
        bg = np.repeat(np.clip(col + 0.5, 0, 255).astype(np.uint8)[:, None, :], self.w, axis=1)
        hrow = self.row(plan.horizon)
        if plan.glows and hrow > 0:
            gx, gy = self.grid(self.w, hrow, 0, hrow)
            glow = np.zeros((len(gy), len(gx), 3), dtype=np.float32)
            for cx, cy, r, rgb, strength in plan.glows:
                ex = np.exp(-(((gx - cx) / r) ** 2))
                ey = np.exp(-(((gy - cy) / r) ** 2))
                glow += (np.outer(ey, ex) * strength)[:, :, None] * rgb.astype(np.float32)
            bg[:hrow] = np.asarray(
                ImageChops.add(Image.fromarray(bg[:hrow]), self.smooth(glow, self.w, hrow))
            )
        return bg

    def grid(self, w: int, h: int, y0: float, y1: float, coarse: int = 96) -> tuple[np.ndarray, np.ndarray]:
        """Scene coordinates of a grid over pixels [0, w) x [y0, y1): full resolution when small."""
        gw = w if w <= 2 * coarse else coarse
        gh = h if w <= 2 * coarse else max(1, round(h * gw / w))
        gx = (np.linspace(0, w, gw) - self.ox) / self.u
        gy = (np.linspace(y0, y1, gh) - self.oy) / self.u
        return gx, gy

    @staticmethod
    def smooth(field: np.ndarray, w: int, h: int) -> Image.Image:
        """A smooth field as an image of w x h pixels, scaled up from its grid if need be."""
        img = Image.fromarray(np.clip(field + 0.5, 0, 255).astype(np.uint8))
        return img if img.size == (w, h) else img.resize((w, h), Image.Resampling.BILINEAR)

    def light_map(self, lights: list) -> Image.Image:
        """Additive light, smooth, computed on a coarse grid and scaled up."""
        gx, gy = self.grid(self.w, self.h, 0, self.h, coarse=128)
        acc = np.zeros((len(gy), len(gx), 3), dtype=np.float32)
        for cx, cy, rx, ry, rgb, strength in lights:
            ex = np.exp(-(((gx - cx) / rx) ** 2))
            ey = np.exp(-(((gy - cy) / ry) ** 2))
            acc += (np.outer(ey, ex) * strength)[:, :, None] * rgb.astype(np.float32)
        return self.smooth(acc, self.w, self.h)

    def paint(self, plan: _Plan) -> Image.Image:
        """The plan's background, then its ops in order, on one image."""
        bg = self.background(plan)
        img = Image.fromarray(bg)
        draw = ImageDraw.Draw(img, "RGBA")
        for op in plan.ops:
            kind = op[0]
            if kind == "light":
                if plan.lights:
                    img.paste(ImageChops.add(img, self.light_map(plan.lights)))
            elif kind == "ground":
                # the sky's ops (sun, clouds) end at the horizon: restore the ground below it
                hrow = self.row(plan.horizon)
                if hrow < self.h:
                    img.paste(Image.fromarray(bg[hrow:]), (0, hrow))
            elif kind in self._SHAPES:
                self._SHAPES[kind](self, draw, *op[1:])
        return img

    def _poly(self, draw: ImageDraw.ImageDraw, pts: np.ndarray, fill, outline, width: float) -> None:
        flat = self.xy(pts)
        draw.polygon(flat, fill=fill)
        if outline is not None and width > 0:
            lw = max(1, round(width * self.u))
            draw.line(flat + flat[:2], fill=outline, width=lw, joint="curve")

    def _ellipse(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
        x0 = self.ox + (cx - rx) * self.u
        x1 = self.ox + (cx + rx) * self.u
        y0 = self.oy + (cy - ry) * self.u
        y1 = self.oy + (cy + ry) * self.u
        if x1 < 0 or x0 > self.w or y1 < 0 or y0 > self.h or x1 - x0 < 0.35 or y1 - y0 < 0.35:
            return  # off the frame, or too small to show
        draw.ellipse((x0, y0, x1, y1), fill=fill)

    def _line(self, draw: ImageDraw.ImageDraw, pts: np.ndarray, width: float, fill) -> None:
        draw.line(
            self.xy(pts),
            fill=fill,
            width=max(1, round(width * self.u)),
            joint="curve" if len(pts) > 2 else None,
        )

    def _points(self, draw: ImageDraw.ImageDraw, pts: np.ndarray, size: float, fill) -> None:
        xy = pts * self.u + (self.ox, self.oy)
        r = size * self.u / 2
        if r < 0.75:
            draw.point(xy.ravel().tolist(), fill=fill)
            return
        for x, y in xy.tolist():
            if 0 <= x < self.w and 0 <= y < self.h:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def _rect(self, draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, fill) -> None:
        a = self.ox + x0 * self.u
        b = self.ox + x1 * self.u
        if b < 0 or a > self.w:
            return
        top = self.oy + y0 * self.u
        draw.rectangle((a, top, max(a, b - 1), max(top, self.oy + y1 * self.u - 1)), fill=fill)

    def _rects(self, draw: ImageDraw.ImageDraw, boxes: np.ndarray, fill) -> None:
        px = boxes * self.u + (self.ox, self.oy, self.ox, self.oy)
        visible = (px[:, 2] >= 0) & (px[:, 0] <= self.w) & (px[:, 3] >= 0) & (px[:, 1] <= self.h)
        for a, top, b, bottom in px[visible].tolist():
            draw.rectangle((a, top, max(a, b - 1), max(top, bottom - 1)), fill=fill)

    # how each shape op of a plan is drawn (its fields after the kind are the arguments)
    _SHAPES: ClassVar[dict[str, Callable[..., None]]] = {
        "poly": _poly,
        "ellipse": _ellipse,
        "line": _line,
        "points": _points,
        "rect": _rect,
        "rects": _rects,
    }


def _finish(img: Image.Image, plan: _Plan) -> Image.Image:
    """Lens and sensor: slight blur, vignette and colour balance, luminance grain."""
    w, h = img.size
    u = min(w, h)
    radius = plan.blur * u
    if radius >= 0.3:
        # a box blur is close enough to a lens's softness and several times faster on big frames
        img = img.filter(ImageFilter.GaussianBlur(radius) if u < 512 else ImageFilter.BoxBlur(radius * 0.8))
    small = w * h <= 512 * 512
    vw, vh = (w, h) if small else (48, max(2, round(48 * h / w)))
    gx = np.linspace(-w / u, w / u, vw)[None, :] / 2
    gy = np.linspace(-h / u, h / u, vh)[:, None] / 2
    fall = 1.0 - plan.vignette * np.clip((gx**2 + gy**2) / 0.5, 0, 1.5) ** 1.5 * 0.6
    mult = fall[:, :, None] * plan.gain[None, None, :]
    assert plan.noise is not None
    reps = (-(-h // _NOISE_TILE), -(-w // _NOISE_TILE))
    grain = np.tile(plan.noise, reps)[:h, :w, None]
    if small:  # one pass in numpy
        arr = np.asarray(img, dtype=np.float32) * mult.astype(np.float32) + grain + 0.5
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    scale = Image.fromarray(np.clip(mult * 255 + 0.5, 0, 255).astype(np.uint8))
    img = ImageChops.multiply(img, scale.resize((w, h), Image.Resampling.BILINEAR))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def render_scene(scene: Scene, size: tuple[int, int] = (128, 128)) -> Image.Image:
    """Render a scene as an RGB photo of ``size`` = (width, height) pixels.

    Deterministic: the same scene gives the same pixels. Any size renders the same scene; the
    central square of a wide render is what a square render of the same scene shows.
    """
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), not {size!r}") from None
    if w < 8 or h < 8 or w * h > 64_000_000:
        raise ValueError(f"size must be at least 8 x 8 and at most 64 megapixels, not {w} x {h}")
    plan = plan_scene(scene)
    ss = 2 if min(w, h) < 512 else 1
    img = _Painter(w * ss, h * ss).paint(plan)
    if ss > 1:
        img = img.reduce(ss)  # 2 x 2 supersampling: each pixel averages four drawn ones
    return _finish(img, plan)
