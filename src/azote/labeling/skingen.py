"""Random controller overlay skins, drawn procedurally, as `Preset`s.

The parser is trained only on skins made here and must then read real third-party skins it has never seen, so this
module aims at variety: twelve body shapes (Xbox One/Series and 360, DualShock 3/4 and DualSense, Switch Pro and
Joy-Cons in a grip, NES, SNES, Genesis, N64 and GameCube-like pads), a layout jittered per skin (positions, sizes,
proportions, which optional elements exist, how the d-pad, bumpers and triggers are built), and named style recipes
(`STYLES`) that fix how everything is drawn, each with random colours and line widths of its own.

Everything is drawn by this code with OpenCV: anti-aliased polygons sampled from splines and rounded polygons
(sub-pixel, shift bits), Hershey text for glyphs, numpy gradients. A skin is built in body units (fractions of the
body's width), then placed on a canvas 600-1100 px wide; each element's pictures are drawn in a box of their own and
an element's pressed picture always has the size of its normal one.

Two whole styles (`HELDOUT_STYLES`) are kept out of training to measure how the parser copes with a look it has
not seen; they use drawing ideas no training style uses (soft shadows, gradients and bevels; blurred neon glow).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np

from azote.labeling.presets import DPAD_PICTURES, FAMILIES, Element, Preset

__all__ = ["STYLES", "TRAIN_STYLES", "HELDOUT_STYLES", "random_preset", "shipped_presets", "heldout_presets"]

# lineart: pale outlines on a transparent body, presses filled with one solid colour (or inverted);
# lineart-tint: outlines (pale, dark or coloured), sometimes a faint body, presses as a translucent tint;
# filled-dark / filled-light / coloured: opaque flat bodies, lighter or darker buttons, presses filled, lightened,
#   lit (glyph and outline light up) or tinted; two-tone: halves, grips or a centre in other colours;
# translucent: see-through body and buttons; cartoon: thick dark outlines, sometimes a hard "thickness" edge;
# floating: no body at all, only the controls (and their wells) floating.
STYLES: tuple[str, ...] = ("lineart", "lineart-tint", "filled-dark", "filled-light", "coloured", "two-tone",
                           "translucent", "cartoon", "floating", "shaded", "neon")
# "shaded" draws soft drop shadows, gradients, bevels and specular highlights; "neon" draws blurred glowing lines
# and a bloom when pressed. No training style uses a blur or a gradient, so these test a genuinely unseen look.
HELDOUT_STYLES: tuple[str, ...] = ("shaded", "neon")
TRAIN_STYLES: tuple[str, ...] = tuple(s for s in STYLES if s not in HELDOUT_STYLES)

_SUBTYPES: dict[str, tuple[tuple[str, float], ...]] = {
    "xbox": (("xbox-one", 0.6), ("xbox-360", 0.4)),
    "playstation": (("ps-ds4", 0.4), ("ps-dualsense", 0.35), ("ps-ds3", 0.25)),
    "switch": (("switch-pro", 0.65), ("switch-joycon", 0.35)),
    "retro": (("nes", 0.24), ("snes", 0.28), ("genesis", 0.16), ("n64", 0.14), ("gamecube", 0.18)),
}

_RGB = tuple[float, float, float]
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX)
_DIRS = ("up", "down", "left", "right")
_DPAD_BUTTON = {"up": "dpad_up", "down": "dpad_down", "left": "dpad_left", "right": "dpad_right"}
_WHITE: _RGB = (1.0, 1.0, 1.0)
_BLACK: _RGB = (0.0, 0.0, 0.0)


# --- colours -------------------------------------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> _RGB:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)))  # type: ignore


def _mix(a: _RGB, b: _RGB, t: float) -> _RGB:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _luma(c: _RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shade(c: _RGB, k: float) -> _RGB:
    """Lighter (k > 0, towards white) or darker (k < 0, towards black)."""
    return _mix(c, _WHITE, k) if k >= 0 else _mix(c, _BLACK, -k)


def _vivid(rng: np.random.Generator) -> _RGB:
    """A pressed-button colour as real skins use: saturated green, cyan, yellow-green, red, magenta, ..."""
    hues = (0.33, 0.5, 0.22, 0.0, 0.85, 0.08, 0.6, 0.15, 0.75, 0.93, 0.45, 0.55)
    h = hues[rng.integers(len(hues))] + rng.uniform(-0.025, 0.025)
    return _hsv(h, rng.uniform(0.55, 1.0), rng.uniform(0.8, 1.0))


def _dark(rng: np.random.Generator) -> _RGB:
    return _hsv(rng.uniform(0, 1), rng.uniform(0, 0.3) * (rng.random() < 0.6), rng.uniform(0.06, 0.28))


def _light(rng: np.random.Generator) -> _RGB:
    return _hsv(rng.uniform(0, 1), rng.uniform(0, 0.12), rng.uniform(0.84, 1.0))


def _pale(rng: np.random.Generator) -> _RGB:
    """Line-art colours: mostly white, sometimes a pale tint."""
    if rng.random() < 0.55:
        return _WHITE
    return _hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.85, 1.0))


def _body_colour(rng: np.random.Generator) -> _RGB:
    return _hsv(rng.uniform(0, 1), rng.uniform(0.45, 0.95), rng.uniform(0.4, 0.92))


def _away(c: _RGB, ref: _RGB | None, rng: np.random.Generator) -> _RGB:
    """`c`, or another vivid colour when `c` is too close to `ref` to read as pressed."""
    for _ in range(8):
        if ref is None or sum(abs(a - b) for a, b in zip(c, ref)) > 0.6:
            return c
        c = _vivid(rng)
    return _shade(ref, -0.6) if _luma(ref) > 0.5 else _shade(ref, 0.7)


def _contrast(c: _RGB) -> _RGB:
    return (0.08, 0.08, 0.08) if _luma(c) > 0.55 else (0.97, 0.97, 0.97)


# --- geometry ------------------------------------------------------------------------------------------------------
def _catmull(ctrl: np.ndarray, step: float) -> np.ndarray:
    """A closed centripetal Catmull-Rom spline through `ctrl` (N, 2), a point about every `step` units."""
    P = np.asarray(ctrl, np.float64)
    n = len(P)
    out = []
    for i in range(n):
        p0, p1, p2, p3 = P[i - 1], P[i], P[(i + 1) % n], P[(i + 2) % n]
        d01, d12, d23 = (max(float(np.hypot(*(b - a))), 1e-6) for a, b in ((p0, p1), (p1, p2), (p2, p3)))
        t0, t1 = 0.0, d01 ** 0.5
        t2 = t1 + d12 ** 0.5
        t3 = t2 + d23 ** 0.5
        k = max(2, int(d12 / step))
        t = np.linspace(t1, t2, k, endpoint=False)[:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.concatenate(out)


def _rounded(poly: np.ndarray | list, r: float | np.ndarray, n: int = 7) -> np.ndarray:
    """The closed polygon with every corner replaced by a quadratic Bezier cutting `r` off both edges."""
    P = np.asarray(poly, np.float64)
    N = len(P)
    rr = np.broadcast_to(np.asarray(r, np.float64), (N,))
    t = np.linspace(0.0, 1.0, n)[:, None]
    out = []
    for i in range(N):
        v, a, b = P[i], P[i - 1], P[(i + 1) % N]
        la, lb = float(np.hypot(*(a - v))), float(np.hypot(*(b - v)))
        ka, kb = min(rr[i], la / 2), min(rr[i], lb / 2)
        if ka < 1e-6 or kb < 1e-6:
            out.append(v[None])
            continue
        A, B = v + (a - v) * (ka / la), v + (b - v) * (kb / lb)
        out.append((1 - t) ** 2 * A + 2 * (1 - t) * t * v + t ** 2 * B)
    return np.concatenate(out)


def _ellipse(cx: float, cy: float, rx: float, ry: float | None = None, rot: float = 0.0) -> np.ndarray:
    ry = rx if ry is None else ry
    n = int(min(160, max(20, (rx + ry) * 1.2)))
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    p = np.stack([rx * np.cos(a), ry * np.sin(a)], 1)
    return _rotate(p, rot) + (cx, cy)


def _rotate(p: np.ndarray, angle: float, about: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    q = np.asarray(p, np.float64) - about
    return np.stack([q[:, 0] * c - q[:, 1] * s, q[:, 0] * s + q[:, 1] * c], 1) + about


def _rrect(cx: float, cy: float, w: float, h: float, r: float, rot: float = 0.0) -> np.ndarray:
    r = min(r, w / 2, h / 2)
    p = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return _rotate(_rounded(p, r, 9), rot) + (cx, cy)


def _regular(cx: float, cy: float, r: float, n: int, rot: float = 0.0) -> np.ndarray:
    a = np.arange(n) * 2 * np.pi / n + rot
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _normals(pts: np.ndarray) -> np.ndarray:
    """Unit normals of a closed polyline pointing out of it."""
    d = np.roll(pts, -1, 0) - np.roll(pts, 1, 0)
    n = np.stack([d[:, 1], -d[:, 0]], 1)
    n /= np.maximum(np.hypot(n[:, 0], n[:, 1]), 1e-9)[:, None]
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return n if area > 0 else -n


def _offset(pts: np.ndarray, d: float) -> np.ndarray:
    return pts + _normals(pts) * d


# --- drawing -------------------------------------------------------------------------------------------------------
def _fill(m: np.ndarray, polys: list[np.ndarray]) -> np.ndarray:
    for p in polys:  # one call each: fillPoly with several contours would XOR their overlaps
        cv2.fillPoly(m, [np.round(np.asarray(p) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return m


def _stroke(m: np.ndarray, polys: list[np.ndarray], lw: float, closed: bool = True) -> np.ndarray:
    cv2.polylines(m, [np.round(np.asarray(p) * 16).astype(np.int32) for p in polys], closed, 255,
                  max(1, int(round(lw))), cv2.LINE_AA, 4)
    return m


def _blur(m: np.ndarray, sigma: float) -> np.ndarray:
    """Float coverage [0, 1] of `m` blurred (on a reduced grid when large: shadows and glows are soft anyway)."""
    f = m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m
    k = int(max(1, sigma // 3))
    if k > 1:
        h, w = f.shape
        s = cv2.resize(f, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
        s = cv2.GaussianBlur(s, (0, 0), sigma / k)
        return cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(f, (0, 0), max(sigma, 0.5))


class _Pic:
    """One picture being drawn: premultiplied float RGBA, painted through coverage masks."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = int(w), int(h)
        self.px = np.zeros((self.h, self.w, 4), np.float32)

    def mask(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def _crop(self, m: np.ndarray, a: float) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        if m.dtype == np.uint8:
            x, y, w, h = cv2.boundingRect(m)
            if w == 0 or h == 0:
                return None
            cov = m[y:y + h, x:x + w].astype(np.float32)
            cov *= a / 255.0
            return (x, y, w, h), cov
        x, y, w, h = cv2.boundingRect((m > 1 / 1024).view(np.uint8))
        if w == 0 or h == 0:
            return None
        return (x, y, w, h), m[y:y + h, x:x + w] * np.float32(a)

    def paint(self, m: np.ndarray, rgb: _RGB | Callable[[int, int, int, int], np.ndarray], a: float = 1.0) -> None:
        """`rgb` (a colour, or a function giving the colours of a box) over the picture with coverage `m` * `a`."""
        if a <= 0:
            return
        col = None if callable(rgb) else np.asarray(rgb, np.float32)
        if m.dtype == np.uint8 and col is not None:
            x, y, w, h = cv2.boundingRect(m)
            if w == 0 or h == 0:
                return
            sub = m[y:y + h, x:x + w]
            if w * h > 4096 and cv2.countNonZero(sub) < 0.3 * w * h:
                # a thin stroke across a large box: touch only its pixels
                iy, ix = np.nonzero(sub)
                dst = self.px[y:y + h, x:x + w]
                c = (sub[iy, ix].astype(np.float32) * np.float32(a / 255.0))[:, None]
                px = dst[iy, ix]
                px += c * (np.array([col[0], col[1], col[2], 1.0], np.float32) - px)
                dst[iy, ix] = px
                return
        got = self._crop(m, a)
        if got is None:
            return
        (x, y, w, h), cov = got
        dst = self.px[y:y + h, x:x + w]
        # dst += cov * (colour - dst), the premultiplied "over" of an opaque colour, with OpenCV: numpy is several
        # times slower on the channel broadcasts this needs
        if col is None:
            c = rgb(x, y, w, h)  # type: ignore[operator]
            src = cv2.merge([c[..., 0], c[..., 1], c[..., 2], np.ones((h, w), np.float32)])
            t = cv2.subtract(src, dst)
        else:
            t = cv2.subtract((float(col[0]), float(col[1]), float(col[2]), 1.0), dst)
        cv2.multiply(t, cv2.merge([cov, cov, cov, cov]), dst=t)
        dst += t

    def erase(self, m: np.ndarray, a: float = 1.0) -> None:
        got = self._crop(m, a)
        if got is None:
            return
        (x, y, w, h), cov = got
        np.subtract(1.0, cov, out=cov)
        dst = self.px[y:y + h, x:x + w]
        dst[:] = cv2.multiply(dst, cv2.merge([cov, cov, cov, cov]))

    def rgba(self) -> np.ndarray:
        """Straight-alpha RGBA uint8 (premultiplied colours divided by alpha, on the drawn part only)."""
        out = np.zeros((self.h, self.w, 4), np.uint8)
        x, y, w, h = cv2.boundingRect((self.px[..., 3] > 1e-6).view(np.uint8))
        if w == 0 or h == 0:
            return out
        r, g, b, al = cv2.split(self.px[y:y + h, x:x + w])
        inv = 1.0 / np.maximum(al, 1e-6)
        rgba = cv2.merge([np.minimum(r * inv, 1.0), np.minimum(g * inv, 1.0), np.minimum(b * inv, 1.0), al])
        out[y:y + h, x:x + w] = cv2.convertScaleAbs(rgba, alpha=255.0)
        return out


_Colours = Callable[[int, int, int, int], np.ndarray]  # (x, y, w, h) -> [h, w, 3] colours of that box


def _vgrad(y0: float, y1: float, c0: _RGB, c1: _RGB) -> _Colours:
    """Colours going from c0 at row y0 to c1 at row y1 (computed only where painted)."""
    c0a, c1a = np.asarray(c0, np.float32), np.asarray(c1, np.float32)

    def colours(x: int, y: int, w: int, h: int) -> np.ndarray:
        t = np.clip((np.arange(y, y + h, dtype=np.float32) - y0) / max(y1 - y0, 1.0), 0, 1)[:, None, None]
        return np.ascontiguousarray(np.broadcast_to(c0a + (c1a - c0a) * t, (h, w, 3)))
    return colours


def _rgrad(cx: float, cy: float, r: float, c0: _RGB, c1: _RGB) -> _Colours:
    """Colours going from c0 at (cx, cy) to c1 at distance r and beyond."""
    c0a, c1a = np.asarray(c0, np.float32), np.asarray(c1, np.float32)

    def colours(x: int, y: int, w: int, h: int) -> np.ndarray:
        yy, xx = np.mgrid[y:y + h, x:x + w].astype(np.float32)
        t = np.clip(np.hypot(xx - cx, yy - cy) / max(r, 1.0), 0, 1)[..., None]
        return c0a + (c1a - c0a) * t
    return colours


# --- glyphs --------------------------------------------------------------------------------------------------------
def _glyph(m: np.ndarray, kind: str, cx: float, cy: float, s: float, gw: float, font: int) -> np.ndarray:
    """Draws glyph `kind` of size `s` (about its height) centred on (cx, cy) into mask `m`; `gw` = stroke width."""
    t = max(1, int(round(gw)))
    if kind.startswith("T:"):
        text = kind[2:]
        (_, th), _ = cv2.getTextSize(text, font, 1.0, t)
        sc = s / max(th, 1)
        (tw, th), _ = cv2.getTextSize(text, font, sc, t)
        cv2.putText(m, text, (int(round(cx - tw / 2)), int(round(cy + th / 2))), font, sc, 255, t, cv2.LINE_AA)
    elif kind == "ps-cross":
        h = s * 0.42
        _stroke(m, [np.array([[cx - h, cy - h], [cx + h, cy + h]]), np.array([[cx - h, cy + h], [cx + h, cy - h]])],
                gw, closed=False)
    elif kind == "ps-circle":
        _stroke(m, [_ellipse(cx, cy, s * 0.42)], gw)
    elif kind == "ps-square":
        h = s * 0.38
        _stroke(m, [np.array([[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]])], gw)
    elif kind == "ps-triangle":
        _stroke(m, [_regular(cx, cy + s * 0.08, s * 0.5, 3, -np.pi / 2)], gw)
    elif kind.startswith("arrow-"):
        rot = {"arrow-up": -np.pi / 2, "arrow-down": np.pi / 2, "arrow-left": np.pi, "arrow-right": 0.0}[kind]
        _fill(m, [_regular(cx, cy, s * 0.45, 3, rot)])
    elif kind == "minus":
        _stroke(m, [np.array([[cx - s * 0.4, cy], [cx + s * 0.4, cy]])], gw, closed=False)
    elif kind == "plus":
        _stroke(m, [np.array([[cx - s * 0.4, cy], [cx + s * 0.4, cy]]),
                    np.array([[cx, cy - s * 0.4], [cx, cy + s * 0.4]])], gw, closed=False)
    elif kind == "menu":
        _stroke(m, [np.array([[cx - s * 0.36, cy + d], [cx + s * 0.36, cy + d]]) for d in (-s * 0.28, 0, s * 0.28)],
                max(1.0, gw * 0.8), closed=False)
    elif kind == "view":
        q = s * 0.26
        _stroke(m, [_rrect(cx - q * 0.45, cy - q * 0.45, q * 1.6, q * 1.6, q * 0.3),
                    _rrect(cx + q * 0.45, cy + q * 0.45, q * 1.6, q * 1.6, q * 0.3)], max(1.0, gw * 0.8))
    elif kind == "house":
        h = s * 0.42
        _stroke(m, [np.array([[cx, cy - h], [cx + h, cy - h * 0.05], [cx + h * 0.7, cy - h * 0.05],
                              [cx + h * 0.7, cy + h], [cx - h * 0.7, cy + h], [cx - h * 0.7, cy - h * 0.05],
                              [cx - h, cy - h * 0.05]])], gw)
    elif kind == "xlogo":
        r = s * 0.45
        _stroke(m, [_ellipse(cx, cy, r)], gw)
        k = r * 0.62
        _stroke(m, [np.array([[cx - k, cy - k], [cx + k, cy + k]]), np.array([[cx - k, cy + k], [cx + k, cy - k]])],
                gw * 1.2, closed=False)
    elif kind == "pslogo":
        _glyph(m, "T:PS", cx, cy, s * 0.6, max(1.0, gw * 0.8), font)
    elif kind == "ring":
        _stroke(m, [_ellipse(cx, cy, s * 0.4)], gw)
    elif kind == "dot":
        _fill(m, [_ellipse(cx, cy, s * 0.22)])
    return m


_FACE_GLYPHS: dict[str, dict[str, str]] = {
    "xbox": {"south": "T:A", "east": "T:B", "west": "T:X", "north": "T:Y"},
    "playstation": {"south": "ps-cross", "east": "ps-circle", "west": "ps-square", "north": "ps-triangle"},
    "nintendo": {"south": "T:B", "east": "T:A", "west": "T:Y", "north": "T:X"},
    "gamecube": {"south": "T:A", "west": "T:B", "east": "T:X", "north": "T:Y"},
    "n64": {"south": "T:A", "west": "T:B", "north": "arrow-up", "east": "arrow-right"},
    "genesis": {"west": "T:A", "south": "T:B", "east": "T:C", "left_shoulder": "T:X", "north": "T:Y",
                "right_shoulder": "T:Z"},
    "nes": {"south": "", "east": ""},
}
_FACE_COLOURS: dict[str, dict[str, _RGB]] = {
    "xbox": {"south": (0.35, 0.78, 0.22), "east": (0.93, 0.22, 0.2), "west": (0.2, 0.45, 0.95),
             "north": (0.98, 0.8, 0.1)},
    "playstation": {"north": (0.2, 0.78, 0.65), "east": (0.95, 0.3, 0.38), "south": (0.45, 0.62, 0.97),
                    "west": (0.92, 0.5, 0.82)},
    "snes": {"north": (0.25, 0.3, 0.85), "east": (0.88, 0.15, 0.15), "south": (0.98, 0.8, 0.1),
             "west": (0.15, 0.65, 0.3)},
    "gamecube": {"south": (0.1, 0.7, 0.55), "west": (0.85, 0.15, 0.2), "east": (0.82, 0.82, 0.85),
                 "north": (0.82, 0.82, 0.85)},
    "n64": {"south": (0.2, 0.35, 0.9), "west": (0.15, 0.65, 0.3), "north": (0.98, 0.82, 0.1),
            "east": (0.98, 0.82, 0.1)},
    "nes": {"south": (0.8, 0.1, 0.12), "east": (0.8, 0.1, 0.12)},
}


# --- looks: how one skin is drawn ----------------------------------------------------------------------------------
@dataclass
class _Look:
    style: str
    lw: float  # body outline width, px
    line: _RGB | None  # body outline colour (None: none)
    body: _RGB | None  # body fill (None: transparent)
    body_a: float = 1.0
    body2: _RGB | None = None  # two-tone colours and where they go
    body3: _RGB | None = None
    split: str = ""  # "halves" | "grips" | "centre" (two-tone)
    detail: _RGB | None = None  # touchpad, seams, labels
    detail_a: float = 1.0
    inner: bool = False  # an inner contour parallel to the outline
    well: str = "ring"  # "ring" | "recess" | "double" | "none"
    well_col: _RGB = _WHITE
    well_a: float = 1.0
    plate: str = "none"  # behind face buttons / d-pad: "none" | "recess" | "ring"
    fill: _RGB | None = None  # button fill
    fill_a: float = 1.0
    small_fill: _RGB | None = None  # back/start/guide fill
    pline: _RGB | None = _WHITE  # button outline colour
    plw: float = 2.0
    glyph: _RGB | None = _WHITE
    glyph_w: float = 0.12  # glyph stroke as a share of its size
    glyph_face: bool = False  # face glyphs in their family colours
    face_fill: bool = False  # face buttons filled with their family colours
    face_cols: dict[str, _RGB] = field(default_factory=dict)
    press: str = "fill"  # fill | invert | lighten | tint | lit | glow | sink
    press_col: _RGB = (0.3, 1.0, 0.4)
    press_a: float = 1.0
    press_glyph: str = "dark"  # dark | keep | cut | light
    knob: str = "ring"  # ring | disc | disc-ring | concentric | grip | dot
    knob_fill: _RGB | None = None
    knob_line: _RGB | None = _WHITE
    font: int = cv2.FONT_HERSHEY_SIMPLEX
    labels: bool = True  # printed names on bumpers and triggers
    shade: bool = False  # held-out "shaded": gradients, drop shadows, bevels
    glow: float = 0.0  # held-out "neon": glow blur sigma, px
    depth: float = 0.0  # a hard-edged darker copy below the body and buttons (sticker / cartoon thickness), px
    ring: bool = False  # face and small buttons carry an inner ring
    trig_fill: _RGB | None = None  # bumpers and triggers in their own colour (else the buttons')

    def margin(self) -> float:
        """Pixels a picture needs around its shape (outline, glow, shadow)."""
        return self.plw + 2 + 3.2 * self.glow + (0.5 * self.lw * 6 if self.shade else 0) + self.depth


def _sample_look(rng: np.random.Generator, style: str, bw: float) -> _Look:
    U = rng.uniform
    lw = bw * U(0.0035, 0.0075)
    font = _FONTS[rng.integers(len(_FONTS))]
    knobs = ("ring", "disc", "disc-ring", "concentric", "grip", "dot")
    lk = _Look(style=style, lw=lw, line=None, body=None, font=font, glyph_w=U(0.09, 0.16), labels=rng.random() < 0.6)
    lk.plw = lw * U(0.75, 1.0)
    if style in ("lineart", "lineart-tint", "neon"):
        lk.line = _pale(rng) if style == "lineart" or rng.random() < 0.6 else (
            _dark(rng) if rng.random() < 0.5 else _vivid(rng))
        if style == "neon":
            lk.line = _vivid(rng)
            lk.lw = lk.plw = bw * U(0.003, 0.006)
            lk.glow = bw * U(0.005, 0.012)
            if rng.random() < 0.6:
                lk.body, lk.body_a = _dark(rng), U(0.35, 0.8)
        elif style == "lineart-tint" and rng.random() < 0.5:
            lk.body = _dark(rng) if _luma(lk.line) > 0.5 else _light(rng)
            lk.body_a = U(0.12, 0.45)
        lk.pline = lk.glyph = lk.knob_line = lk.line
        lk.detail, lk.detail_a = lk.line, U(0.6, 1.0)
        lk.well_col = lk.line
        lk.well = str(rng.choice(["ring", "ring", "double", "none"]))
        lk.plate = str(rng.choice(["none", "none", "ring"]))
        lk.inner = rng.random() < 0.3
        lk.knob = str(rng.choice(["ring", "concentric", "grip", "disc-ring", "dot"]))
        if rng.random() < 0.25:
            lk.glyph = None
        lk.glyph_face = style != "lineart" and rng.random() < 0.3
        lk.press_col = _away(_vivid(rng) if rng.random() < 0.85 else _WHITE, lk.line, rng)
        if style == "lineart":
            lk.press = "fill" if rng.random() < 0.75 else "invert"
        elif style == "lineart-tint":
            lk.press, lk.press_a = "tint", U(0.35, 0.75)
        else:
            lk.press = "glow"
        lk.press_glyph = str(rng.choice(["dark", "cut", "keep"]))
        if lk.knob in ("disc-ring", "dot") and rng.random() < 0.5:
            lk.knob_fill = lk.line if lk.knob == "dot" else None
        lk.ring = rng.random() < 0.2
        return lk

    # filled styles
    if style in ("filled-dark", "two-tone", "translucent", "floating", "shaded") and (
            style != "two-tone" or rng.random() < 0.5):
        body = _dark(rng) if style != "translucent" or rng.random() < 0.6 else _body_colour(rng)
    elif style == "filled-light" or (style == "cartoon" and rng.random() < 0.6):
        body = _light(rng)
    else:
        body = _body_colour(rng)
    if style == "shaded" and rng.random() < 0.5:
        body = _light(rng) if rng.random() < 0.4 else _body_colour(rng)
    dark = _luma(body) < 0.45
    lk.body = body
    lk.body_a = U(0.3, 0.7) if style == "translucent" else 1.0
    lk.line = None
    r = rng.random()
    if style == "cartoon":
        lk.lw = lk.plw = bw * U(0.009, 0.016)
        lk.line = _shade(_dark(rng), -0.5) if rng.random() < 0.8 else _shade(body, -0.7)
    elif style == "translucent":
        lk.line = _shade(body, 0.6) if r < 0.6 else (_WHITE if r < 0.85 else None)
    elif r < 0.4:
        lk.line = _shade(body, -0.6) if not dark else _shade(body, 0.25)
    elif r < 0.55:
        lk.line = _contrast(body)
        lk.lw *= 0.6
    lk.plw = lk.lw * U(0.6, 1.0) if style != "cartoon" else lk.lw * U(0.6, 0.9)
    k = U(0.06, 0.2)
    btn = rng.random()
    if btn < 0.45:
        lk.fill = _shade(body, k if dark else -k)
    elif btn < 0.7:
        lk.fill = _shade(body, -k * 2) if not dark else (0.05, 0.05, 0.06)
    elif btn < 0.85:
        lk.fill = _light(rng) if dark else _dark(rng)
    else:
        lk.fill = _mix(body, _hsv(U(0, 1), 0.5, 0.7), 0.4)
    if style == "cartoon":
        lk.fill = _light(rng) if rng.random() < 0.5 else lk.fill
    lk.fill_a = U(0.55, 0.95) if style == "translucent" else 1.0
    lk.small_fill = lk.fill if rng.random() < 0.7 else _shade(lk.fill, -0.3 if _luma(lk.fill) > 0.3 else 0.3)
    lk.pline = lk.line if lk.line is not None and rng.random() < 0.7 else (
        _shade(lk.fill, -0.4) if rng.random() < 0.4 else None)
    if style == "cartoon":
        lk.pline = lk.line
    lk.glyph = _contrast(lk.fill) if rng.random() < 0.75 else _mix(_contrast(lk.fill), lk.fill, 0.35)
    fam_cols = rng.random()
    lk.glyph_face = fam_cols < 0.3
    lk.face_fill = 0.3 <= fam_cols < 0.45
    lk.detail = _shade(body, 0.18) if dark else _shade(body, -0.25)
    if lk.line is not None and rng.random() < 0.5:
        lk.detail = lk.line
    lk.detail_a = U(0.6, 1.0)
    lk.inner = rng.random() < 0.25
    lk.well = str(rng.choice(["recess", "recess", "ring", "double", "none"]))
    lk.well_col = _shade(body, -0.35) if rng.random() < 0.7 else lk.detail
    lk.plate = str(rng.choice(["none", "recess", "recess", "ring"]))
    lk.knob = str(rng.choice(knobs))
    lk.knob_fill = _shade(lk.fill, -0.25) if rng.random() < 0.5 else lk.fill
    lk.knob_line = lk.pline if lk.pline is not None else _shade(lk.knob_fill, 0.3)
    if lk.knob == "ring":
        lk.knob = "disc-ring"
    # pressed
    pr = rng.random()
    lk.press_col = _away(_vivid(rng) if rng.random() < 0.85 else (_WHITE if dark else _dark(rng)), lk.fill, rng)
    if style == "shaded":
        lk.press = "sink"
    elif pr < 0.45:
        lk.press = "fill"
    elif pr < 0.65:
        lk.press = "lighten"
    elif pr < 0.8:
        lk.press = "lit"
    elif pr < 0.9:
        lk.press = "tint"
        lk.press_a = U(0.4, 0.7)
    else:
        lk.press = "invert"
    lk.press_glyph = str(rng.choice(["dark", "keep", "cut", "light"]))
    if style == "two-tone":
        lk.split = str(rng.choice(["halves", "grips", "grips", "centre"]))
        lk.body2 = _body_colour(rng)
        lk.body3 = lk.body2 if rng.random() < 0.5 else _body_colour(rng)
        if lk.split == "halves" and rng.random() < 0.5:
            lk.body = None  # joy-con look: two coloured halves, no third colour
    if style == "cartoon" and rng.random() < 0.6 or style in ("filled-dark", "filled-light", "coloured") and \
            rng.random() < 0.15:
        lk.depth = bw * U(0.006, 0.016)
    if style == "floating":
        lk.line = None if rng.random() < 0.6 else lk.line
        lk.plate = "none"
        lk.well = str(rng.choice(["ring", "recess", "none"]))
        lk.well_col = lk.fill if rng.random() < 0.5 else _contrast(body)
        lk.well_a = U(0.4, 1.0)
        r = rng.random()  # floating controls must read on any game: often light, sometimes vivid
        lk.fill = _light(rng) if r < 0.45 else (_dark(rng) if r < 0.8 else _body_colour(rng))
        lk.small_fill = lk.fill
        lk.knob_fill = _shade(lk.fill, -0.2) if rng.random() < 0.5 else lk.fill
        lk.glyph = _contrast(lk.fill)
        lk.pline = _contrast(lk.fill) if rng.random() < 0.5 else None
        lk.knob_line = lk.pline if lk.pline is not None else _shade(lk.knob_fill, 0.3)
        lk.well_col = lk.fill if rng.random() < 0.5 else _contrast(lk.fill)
    lk.ring = rng.random() < 0.2
    if rng.random() < 0.25:
        lk.trig_fill = _shade(body, 0.3 if dark else -0.3) if rng.random() < 0.5 else (
            _dark(rng) if not dark else _light(rng))
    if style == "shaded":
        lk.shade = True
        lk.line = None if rng.random() < 0.7 else _shade(body, -0.5)
        lk.pline = None
        lk.face_fill = lk.face_fill or rng.random() < 0.2
    _legible(lk, rng)
    return lk


def _dist(a: _RGB | None, b: _RGB | None) -> float:
    return 3.0 if a is None or b is None else sum(abs(x - y) for x, y in zip(a, b))


def _apart(c: _RGB, ref: _RGB, k: float = 0.35) -> _RGB:
    """`c` moved away from `ref` in lightness (a button the eye can tell from what lies behind it)."""
    return _shade(c, -k) if _luma(ref) > 0.5 else _shade(c, k)


def _legible(lk: _Look, rng: np.random.Generator) -> None:
    """Real skins keep every control visible against what lies behind it: buttons against the body, knobs against
    their wells. Nudges the few random palettes that would hide one."""
    behind = lk.body if lk.style != "floating" else None
    if lk.fill is not None and lk.pline is None and behind is not None and _dist(lk.fill, behind) < 0.3:
        lk.fill = _apart(lk.fill, behind)
        lk.small_fill = lk.small_fill if _dist(lk.small_fill, behind) >= 0.3 else lk.fill
    if lk.small_fill is not None and lk.pline is None and behind is not None and _dist(lk.small_fill, behind) < 0.3:
        lk.small_fill = _apart(lk.small_fill, behind)
    under = lk.well_col if lk.well == "recess" else behind
    if lk.knob_fill is not None and under is not None and _dist(lk.knob_fill, under) < 0.35:
        if lk.well == "recess":
            lk.well_col = _apart(lk.well_col, lk.knob_fill, 0.4)
        else:
            lk.knob_fill = _apart(lk.knob_fill, under, 0.4)
    if lk.knob_line is not None and lk.knob_fill is not None and _dist(lk.knob_line, lk.knob_fill) < 0.3:
        lk.knob_line = _apart(lk.knob_line, lk.knob_fill, 0.5)
    for ref in (lk.fill, lk.small_fill, lk.knob_fill):  # the pressed colour must stand out from every fill
        if ref is not None and _dist(lk.press_col, ref) < 0.6:
            lk.press_col = _away(_vivid(rng), ref, rng)


# --- layouts -------------------------------------------------------------------------------------------------------
@dataclass
class _It:
    """One element (or static decoration) of a template, in body units: x in [0, 1] of the body width, y from 0
    down, the same unit; sizes in body widths."""
    role: str  # stick | face | small | guide | dpad | decor
    key: str  # button or stick name; decoration kind
    x: float
    y: float
    w: float
    h: float = 0.0
    shape: str = "circle"
    angle: float = 0.0
    glyph: str = ""
    extra: dict = field(default_factory=dict)

    def radius(self) -> float:
        """The radius of a circle around everything the element needs (a stick: its well)."""
        if self.role == "stick":
            return self.extra["well"]
        if self.role == "dpad":
            return self.w * 0.52
        return 0.5 * max(self.w, self.h or self.w)


@dataclass
class _Tmpl:
    sub: str
    glyphs: str  # key of _FACE_GLYPHS
    colours: str  # key of _FACE_COLOURS
    aspect: float  # body width / height
    outline: np.ndarray  # closed body outline control points, body units (or dense points if dense)
    items: list[_It]
    dense: bool = False  # outline already dense (no spline)
    shoulders: tuple[float, float, float] | None = None  # right bumper along the top edge: x0, x1, thickness
    shoulder_shape: str = "band"  # band | tab
    triggers: tuple[float, float, float, str] | None = None  # right trigger: x0, x1, height, profile
    single_shoulder: str = ""  # only one bumper (GameCube's Z)
    trigger_on_body: bool = False  # triggers stand on the body's edge, not on the bumpers
    units: bool = False  # outline given in body units already (else x, y as fractions of width and height)

    def __post_init__(self) -> None:
        if not self.units and not self.dense:
            self.outline = self.outline * np.array([1.0, 1.0 / self.aspect])


def _mirror_half(half: list[tuple[float, float]]) -> np.ndarray:
    """A closed outline from its right half (top centre first, clockwise, to bottom centre)."""
    right = np.asarray(half, np.float64)
    left = right[-2:0:-1].copy()
    left[:, 0] = 1.0 - left[:, 0]
    return np.concatenate([right, left])


def _face(cx: float, cy: float, s: float, d: float, glyphs: str, keys: tuple[str, ...] = ("north", "east", "south",
          "west")) -> list[_It]:
    off = {"north": (0, -s), "east": (s, 0), "south": (0, s), "west": (-s, 0)}
    g = _FACE_GLYPHS[glyphs]
    return [_It("face", k, cx + off[k][0], cy + off[k][1], d, glyph=g.get(k, "")) for k in keys]


def _stick(key: str, x: float, y: float, d: float, rng: np.random.Generator, well: str = "circle") -> _It:
    travel = d * rng.uniform(0.18, 0.32)
    gap = d * rng.uniform(0.03, 0.12)
    return _It("stick", key, x, y, d, extra={"travel": travel, "well": d / 2 + travel + gap, "well_shape": well})


def _dpad(x: float, y: float, size: float, shape: str, rng: np.random.Generator) -> _It:
    return _It("dpad", "dpad", x, y, size, shape=shape, extra={"arm": rng.uniform(0.3, 0.38),
                                                               "r": rng.uniform(0.08, 0.35)})


def _tmpl_xbox_one(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.45, 1.6)
    top, sh, side = U(0.01, 0.05), U(0.85, 0.9), U(0.975, 1.0)
    crotch, gx, gw = U(0.67, 0.75), U(0.86, 0.9), U(0.045, 0.065)
    half = [(0.5, top + 0.03), (0.62, top * 0.6 + 0.025), (0.73, 0.005), (sh, 0.02), (0.945, 0.09), (0.978, 0.21),
            (side, 0.40), (1.0, 0.62), (min(1.0, gx + gw + 0.035), 0.85), (gx + gw * 0.7, 0.965), (gx, 1.0),
            (gx - gw * 0.9, 0.975), (gx - gw * 1.5, 0.9), (0.775, 0.79), (0.7, crotch + 0.025), (0.6, crotch),
            (0.5, crotch - U(0, 0.01))]
    Y = lambda v: v / asp
    ty, by = Y(0.31 + J(0.025)), Y(0.53 + J(0.025))
    lx, dx = 0.235 + J(0.02), 0.37 + J(0.02)
    ds = U(0.095, 0.115)
    fs = U(0.05, 0.065)
    items = [_stick("j_left", lx, ty, ds, rng), _stick("j_right", 1 - dx, by, ds * U(0.92, 1.02), rng),
             _dpad(dx, by, U(0.11, 0.14), str(rng.choice(["cross", "cross", "arms"])), rng),
             *_face(1 - lx + J(0.01), ty, fs, fs * U(0.95, 1.15), "xbox")]
    sy = ty + J(0.01)
    sz = U(0.032, 0.042)
    items += [_It("small", "back", 0.42 + J(0.01), sy, sz, glyph="view"),
              _It("small", "start", 0.58, sy, sz, glyph="menu")]
    items[-1].x = 1 - items[-2].x
    if rng.random() < 0.9:
        items.append(_It("guide", "guide", 0.5, Y(0.16 + J(0.02)), U(0.055, 0.072), glyph="xlogo"))
    if rng.random() < 0.4:  # Series share button
        items.append(_It("decor", "static", 0.5, sy + U(0.04, 0.06), sz * 0.8, sz * 0.55, shape="pill"))
    return _Tmpl("xbox-one", "xbox", "xbox", asp, _mirror_half(half), items,
                 shoulders=(U(0.62, 0.66), U(0.9, 0.94), U(0.03, 0.045)),
                 triggers=(U(0.68, 0.72), U(0.86, 0.9), U(0.07, 0.11), "horn"))


def _tmpl_xbox_360(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.45, 1.58)
    crotch = U(0.69, 0.76)
    half = [(0.5, U(0.05, 0.09)), (0.64, U(0.045, 0.065)), (0.76, 0.015), (0.87, 0.03), (0.945, 0.11),
            (0.985, 0.28), (1.0, 0.5), (0.99, 0.72), (0.963, 0.9), (0.915, 0.99), (0.865, 0.975), (0.825, 0.89),
            (0.77, 0.775), (0.69, crotch + 0.02), (0.58, crotch), (0.5, crotch)]
    Y = lambda v: v / asp
    ty, by = Y(0.31 + J(0.025)), Y(0.54 + J(0.025))
    lx, dx = 0.225 + J(0.02), 0.365 + J(0.02)
    ds = U(0.1, 0.12)
    fs = U(0.052, 0.066)
    items = [_stick("j_left", lx, ty, ds, rng), _stick("j_right", 1 - dx, by, ds, rng),
             _dpad(dx, by, U(0.11, 0.14), str(rng.choice(["cross", "disc", "arms"])), rng),
             *_face(1 - lx, ty, fs, fs * U(0.95, 1.15), "xbox")]
    gy = Y(0.3 + J(0.02))
    items.append(_It("guide", "guide", 0.5, gy, U(0.075, 0.095), glyph="xlogo"))
    sz = U(0.03, 0.04)
    bx = U(0.385, 0.405)
    items += [_It("small", "back", bx, gy, sz, glyph="arrow-left"), _It("small", "start", 1 - bx, gy, sz,
                                                                         glyph="arrow-right")]
    return _Tmpl("xbox-360", "xbox", "xbox", asp, _mirror_half(half), items,
                 shoulders=(U(0.63, 0.67), U(0.9, 0.93), U(0.03, 0.042)),
                 triggers=(U(0.69, 0.72), U(0.85, 0.89), U(0.07, 0.1), "horn"))


def _tmpl_ds4(rng: np.random.Generator, J: Callable[[float], float], sub: str) -> _Tmpl:
    U = rng.uniform
    sense = sub == "ps-dualsense"
    asp = U(1.6, 1.8) if sense else U(1.72, 1.95)
    gx = U(0.88, 0.92)
    bottom = U(0.75, 0.8)
    half = [(0.5, U(0.07, 0.11)), (0.645, U(0.07, 0.1)), (0.715, 0.03), (0.8, 0.0), (0.895, 0.012), (0.958, 0.07),
            (0.988, 0.2), (1.0, 0.42), (0.996, 0.66), (0.982, 0.86), (0.955, 0.975), (gx, 1.0), (gx - 0.05, 0.965),
            (gx - 0.08, 0.86), (0.775, 0.75), (0.72, bottom - 0.03), (0.66, bottom + 0.02), (0.58, bottom + 0.01),
            (0.5, bottom)]
    if sense:  # rounder and fuller grips
        half[8], half[9] = (1.0, 0.7), (0.99, 0.88)
    Y = lambda v: v / asp
    ty = Y(0.34 + J(0.03))
    dxp = 0.2 + J(0.015)
    fs = U(0.048, 0.058)
    sy = Y(0.59 + J(0.025))
    sx = 0.345 + J(0.015)
    ds = U(0.08, 0.095)
    items = [_stick("j_left", sx, sy, ds, rng), _stick("j_right", 1 - sx, sy, ds, rng),
             _dpad(dxp, ty, U(0.115, 0.14), str(rng.choice(["arrows", "arrows", "cross"])), rng),
             *_face(1 - dxp, ty, fs, fs * U(0.9, 1.05), "playstation")]
    tp_x0 = U(0.325, 0.345)
    tp_x1 = 1 - tp_x0
    tp_y0, tp_y1 = Y(U(0.06, 0.1)), Y(U(0.34, 0.4))
    items.append(_It("decor", "touchpad", 0.5, (tp_y0 + tp_y1) / 2, tp_x1 - tp_x0, tp_y1 - tp_y0,
                     extra={"taper": U(0.02, 0.05)}))
    oy = Y(U(0.14, 0.2))
    ox = tp_x0 - U(0.03, 0.045)
    sw, sh_ = U(0.014, 0.02), U(0.03, 0.045)
    items += [_It("small", "back", ox, oy, sw, sh_, shape="pill", angle=U(-0.3, 0)),
              _It("small", "start", 1 - ox, oy, sw, sh_, shape="pill")]
    items[-1].angle = -items[-2].angle
    gy = Y(U(0.5, 0.56))
    items.append(_It("guide", "guide", 0.5, gy, U(0.04, 0.055), glyph="pslogo"))
    if sense and rng.random() < 0.7:
        items.append(_It("decor", "static", 0.5, gy + U(0.06, 0.07), 0.04, 0.012, shape="pill"))
    elif rng.random() < 0.4:
        items.append(_It("decor", "dots", 0.5, gy + 0.05, 0.08, 0.02))
    return _Tmpl(sub, "playstation", "playstation", asp, _mirror_half(half), items,
                 shoulders=(U(0.7, 0.73), U(0.88, 0.92), U(0.02, 0.03)),
                 shoulder_shape=str(rng.choice(["band", "tab"])),
                 triggers=(U(0.72, 0.75), U(0.86, 0.9), U(0.04, 0.065), "box"))


def _tmpl_ds3(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.75, 1.95)
    bottom = U(0.74, 0.79)
    half = [(0.5, U(0.09, 0.13)), (0.66, U(0.09, 0.12)), (0.72, 0.03), (0.8, 0.0), (0.89, 0.012), (0.955, 0.07),
            (0.988, 0.2), (1.0, 0.42), (0.995, 0.66), (0.98, 0.86), (0.952, 0.975), (0.905, 1.0), (0.855, 0.96),
            (0.825, 0.86), (0.78, 0.76), (0.725, 0.74), (0.66, bottom + 0.06), (0.58, bottom + 0.02), (0.5, bottom)]
    Y = lambda v: v / asp
    ty = Y(0.36 + J(0.03))
    dxp = 0.2 + J(0.015)
    fs = U(0.048, 0.058)
    sy = Y(0.59 + J(0.025))
    sx = 0.36 + J(0.015)
    ds = U(0.08, 0.095)
    items = [_stick("j_left", sx, sy, ds, rng), _stick("j_right", 1 - sx, sy, ds, rng),
             _dpad(dxp, ty, U(0.115, 0.14), str(rng.choice(["arrows", "arrows", "cross"])), rng),
             *_face(1 - dxp, ty, fs, fs * U(0.9, 1.05), "playstation")]
    by = Y(U(0.36, 0.42))
    bx = U(0.4, 0.42)
    items += [_It("small", "back", bx, by, U(0.03, 0.04), U(0.014, 0.02), shape="rect"),
              _It("small", "start", 1 - bx, by, U(0.03, 0.036), U(0.026, 0.03), shape="tri")]
    items.append(_It("guide", "guide", 0.5, Y(U(0.48, 0.55)), U(0.045, 0.06), glyph="pslogo"))
    return _Tmpl("ps-ds3", "playstation", "playstation", asp, _mirror_half(half), items,
                 shoulders=(U(0.7, 0.73), U(0.88, 0.92), U(0.02, 0.03)),
                 shoulder_shape=str(rng.choice(["band", "tab"])),
                 triggers=(U(0.72, 0.75), U(0.86, 0.9), U(0.04, 0.065), "box"))


def _tmpl_switch(rng: np.random.Generator, J: Callable[[float], float], sub: str) -> _Tmpl:
    U = rng.uniform
    joy = sub == "switch-joycon"
    asp = U(1.36, 1.48) if joy else U(1.45, 1.58)
    crotch = U(0.69, 0.76)
    half = [(0.5, U(0.04, 0.07)), (0.64, U(0.04, 0.06)), (0.76, 0.015), (0.865, 0.025), (0.935, 0.09),
            (0.972, 0.2), (0.99, 0.38), (1.0, 0.6), (0.99, 0.8), (0.965, 0.935), (0.92, 1.0), (0.87, 0.985),
            (0.83, 0.9), (0.78, 0.79), (0.7, crotch + 0.03), (0.6, crotch), (0.5, crotch)]
    Y = lambda v: v / asp
    items: list[_It]
    if not joy:
        ty, by = Y(0.31 + J(0.025)), Y(0.54 + J(0.025))
        lx, dx = 0.24 + J(0.02), 0.37 + J(0.02)
        ds = U(0.1, 0.12)
        fs = U(0.05, 0.062)
        items = [_stick("j_left", lx, ty, ds, rng), _stick("j_right", 1 - dx, by, ds, rng),
                 _dpad(dx, by, U(0.1, 0.13), "cross", rng), *_face(1 - lx, ty, fs, fs * U(0.95, 1.12), "nintendo")]
        my = Y(U(0.13, 0.18))
        mx = U(0.37, 0.4)
        sz = U(0.028, 0.036)
        items += [_It("small", "back", mx, my, sz, glyph="minus"), _It("small", "start", 1 - mx, my, sz, glyph="plus")]
        hy = Y(U(0.27, 0.33))
        hx = U(0.44, 0.46)
        items.append(_It("guide", "guide", 1 - hx, hy, sz * U(1.0, 1.2), glyph="house"))
        items.append(_It("decor", "static", hx, hy, sz * 0.9, sz * 0.9, shape="rect"))
        return _Tmpl(sub, "nintendo", "", asp, _mirror_half(half), items,
                     shoulders=(U(0.64, 0.67), U(0.89, 0.93), U(0.03, 0.04)),
                     triggers=(U(0.69, 0.72), U(0.86, 0.89), U(0.07, 0.11), str(rng.choice(["horn", "box"]))))
    # Joy-Cons in a grip: two tall rails carry the controls
    px0 = U(0.1, 0.14)
    pw = U(0.2, 0.24)
    cx = px0 + pw / 2
    ty, by = Y(0.25 + J(0.02)), Y(0.54 + J(0.02))
    ds = min(U(0.1, 0.12), pw * 0.62)
    fs = min(U(0.042, 0.05), pw * 0.24)
    items = [_stick("j_left", cx, ty, ds, rng), _stick("j_right", 1 - cx, by, ds, rng),
             _dpad(cx, by, fs * 2 + fs * U(0.9, 1.05), "buttons", rng),
             *_face(1 - cx, ty, fs, fs * U(0.9, 1.05), "nintendo")]
    items[2].extra["d"] = items[3].w
    sz = U(0.025, 0.032)
    py0, py1 = Y(U(0.03, 0.06)), Y(U(0.86, 0.9))
    items += [_It("small", "back", px0 + pw * 0.78, py0 + 0.03, sz, glyph="minus"),
              _It("small", "start", 1 - px0 - pw * 0.78, py0 + 0.03, sz, glyph="plus")]
    hy = Y(0.755 + J(0.01))
    items.append(_It("guide", "guide", 1 - px0 - pw * 0.24, hy, sz * 1.15, glyph="house"))
    items.append(_It("decor", "static", px0 + pw * 0.24, hy, sz, sz, shape="rect"))
    items.append(_It("decor", "panel", cx, (py0 + py1) / 2, pw, py1 - py0, extra={"side": "left"}))
    items.append(_It("decor", "panel", 1 - cx, (py0 + py1) / 2, pw, py1 - py0, extra={"side": "right"}))
    return _Tmpl(sub, "nintendo", "", asp, _mirror_half(half), items,
                 shoulders=(1 - px0 - pw * 0.95, 1 - px0 + 0.01, U(0.025, 0.035)),
                 triggers=(1 - px0 - pw * 0.8, 1 - px0 - pw * 0.05, U(0.05, 0.08), "box"))


def _tmpl_nes(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(2.2, 2.5)
    h = 1 / asp
    outline = _rounded(np.array([[0, 0], [1, 0], [1, h], [0, h]]), U(0.02, 0.06), 9)
    yc = h * U(0.52, 0.6)
    ds = U(0.14, 0.17)
    bx = U(0.7, 0.74)
    bd = U(0.075, 0.09)
    gap = bd * U(1.35, 1.6)
    items = [_dpad(U(0.17, 0.2), yc, ds, "cross", rng),
             _It("face", "south", bx, yc + h * 0.06, bd, glyph=""), _It("face", "east", bx + gap, yc + h * 0.06, bd)]
    sw, sh_ = U(0.06, 0.075), U(0.022, 0.03)
    sx = U(0.4, 0.43)
    sy = yc + h * 0.06
    items += [_It("small", "back", sx, sy, sw, sh_, shape="pill"), _It("small", "start", sx + sw * U(1.5, 1.8), sy, sw,
                                                                       sh_, shape="pill")]
    items += [_It("decor", "label", sx, sy + sh_ + 0.02, 0.02, glyph="T:SELECT"),
              _It("decor", "label", items[-1].x, sy + sh_ + 0.02, 0.02, glyph="T:START"),
              _It("decor", "label", bx + bd * 0.45, yc + h * 0.06 + bd * 0.8, 0.028, glyph="T:B"),
              _It("decor", "label", bx + gap + bd * 0.45, yc + h * 0.06 + bd * 0.8, 0.028, glyph="T:A")]
    items.append(_It("decor", "panel", 0.5, h * 0.56, U(0.9, 0.94), h * U(0.62, 0.72), extra={"side": "plate"}))
    items.append(_It("decor", "stripes", (sx + items[6].x) / 2, sy, sw * 3.2, h * 0.32))
    return _Tmpl("nes", "nes", "nes", asp, outline, items, dense=True)


def _tmpl_snes(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(2.2, 2.45)
    h = 1 / asp
    R = h / 2
    waist_t, waist_b = U(0.1, 0.16) * h, U(0.04, 0.1) * h
    a = np.linspace(-np.pi / 2, np.pi / 2, 7)
    arc = [(1 - R + R * math.cos(t), R + R * math.sin(t)) for t in a]
    half = [(0.5, waist_t), (0.66, waist_t * 0.9), (1 - R * 1.35, R * 0.12)] + arc + [
        (1 - R * 1.35, h - R * 0.08), (0.66, h - waist_b), (0.5, h - waist_b)]
    out = _mirror_half(half)
    cy = R + J(0.01)
    ds = U(0.14, 0.17)
    fs = U(0.055, 0.068)
    items = [_dpad(R + J(0.01), cy, ds, "cross", rng), *_face(1 - R + J(0.01), cy, fs, fs * U(0.95, 1.15), "nintendo")]
    sw, sh_ = U(0.055, 0.07), U(0.02, 0.028)
    ang = U(-0.7, -0.4)
    sx = U(0.43, 0.45)
    sy = cy + h * U(0.02, 0.1)
    items += [_It("small", "back", sx, sy, sw, sh_, shape="pill", angle=ang),
              _It("small", "start", 1 - sx + U(0.04, 0.07), sy, sw, sh_, shape="pill", angle=ang)]
    items[-1].x = sx + U(0.09, 0.11)
    if rng.random() < 0.6:
        items.append(_It("decor", "plate", 1 - R, cy, fs * 3.6, fs * 1.9, shape="pill", angle=-0.6))
    return _Tmpl("snes", "nintendo", "snes", asp, out, items, shoulders=(1 - R * 1.5, 1 - R * 0.35, U(0.025, 0.035)),
                 units=True)


def _tmpl_genesis(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.75, 2.0)
    six = rng.random() < 0.5
    dent = U(0.8, 0.88)
    half = [(0.5, U(0.0, 0.04)), (0.7, 0.0), (0.87, 0.05), (0.96, 0.18), (1.0, 0.42), (0.985, 0.68), (0.93, 0.88),
            (0.83, 0.99), (0.71, 0.97), (0.61, 0.9), (0.5, dent)]
    Y = lambda v: v / asp
    items = [_dpad(U(0.22, 0.25), Y(U(0.42, 0.5)), U(0.18, 0.22), "disc", rng)]
    d = U(0.065, 0.08)
    base_x, base_y = U(0.62, 0.66), Y(U(0.58, 0.64))
    dx, dy = d * U(1.3, 1.5), -Y(U(0.07, 0.1))
    g = _FACE_GLYPHS["genesis"]
    for i, k in enumerate(("west", "south", "east")):
        items.append(_It("face", k, base_x + i * dx, base_y + i * dy, d, glyph=g[k]))
    if six:
        up = Y(U(0.2, 0.25))
        for i, k in enumerate(("left_shoulder", "north", "right_shoulder")):
            items.append(_It("face", k, base_x + i * dx - d * 0.25, base_y + i * dy - up, d * 0.75, glyph=g[k]))
    items.append(_It("small", "start", 0.5, Y(U(0.26, 0.36)), U(0.045, 0.06), U(0.018, 0.024), shape="pill"))
    return _Tmpl("genesis", "genesis", "", asp, _mirror_half(half), items)


def _tmpl_n64(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.28, 1.42)
    pw = U(0.075, 0.095)
    half = [(0.5, U(0.1, 0.14)), (0.68, U(0.06, 0.09)), (0.83, 0.0), (0.94, 0.05), (0.995, 0.2), (0.99, 0.4),
            (0.965, 0.62), (0.925, 0.84), (0.87, 0.95), (0.82, 0.88), (0.785, 0.68), (0.72, 0.52),
            (0.5 + pw * 2.2, 0.54), (0.5 + pw * 1.1, 0.7), (0.5 + pw * 0.9, 0.92), (0.5 + pw * 0.5, 1.0), (0.5, 1.0)]
    Y = lambda v: v / asp
    items = [_stick("j_left", 0.5, Y(U(0.5, 0.56)), U(0.075, 0.09), rng, well="octagon"),
             _dpad(U(0.17, 0.2), Y(U(0.27, 0.33)), U(0.12, 0.15), "cross", rng)]
    ad = U(0.055, 0.068)
    ax, ay = U(0.76, 0.79), Y(U(0.4, 0.46))
    items += [_It("face", "south", ax, ay, ad, glyph="T:A"), _It("face", "west", ax - ad * 1.3, ay - ad * 0.9, ad,
                                                                 glyph="T:B")]
    cx, cy, cs, cd = U(0.86, 0.88), Y(U(0.22, 0.27)), U(0.04, 0.048), U(0.032, 0.04)
    items += [_It("face", "north", cx, cy - cs, cd, glyph="arrow-up"), _It("face", "east", cx + cs, cy, cd,
                                                                           glyph="arrow-right"),
              _It("decor", "static", cx - cs, cy, cd, glyph="arrow-left", extra={"cluster": True}),
              _It("decor", "static", cx, cy + cs, cd, glyph="arrow-down", extra={"cluster": True})]
    items.append(_It("small", "start", 0.5, Y(U(0.26, 0.32)), U(0.04, 0.05)))
    return _Tmpl("n64", "n64", "n64", asp, _mirror_half(half), items, shoulders=(U(0.68, 0.72), U(0.9, 0.94),
                                                                                 U(0.025, 0.035)))


def _tmpl_gamecube(rng: np.random.Generator, J: Callable[[float], float]) -> _Tmpl:
    U = rng.uniform
    asp = U(1.4, 1.55)
    crotch = U(0.7, 0.76)
    half = [(0.5, U(0.1, 0.14)), (0.64, U(0.07, 0.1)), (0.76, 0.01), (0.87, 0.02), (0.95, 0.1), (0.99, 0.28),
            (1.0, 0.5), (0.985, 0.74), (0.95, 0.92), (0.9, 1.0), (0.85, 0.97), (0.81, 0.86), (0.75, 0.74),
            (0.66, crotch + 0.03), (0.57, crotch), (0.5, crotch)]
    Y = lambda v: v / asp
    ty = Y(0.33 + J(0.03))
    lx = 0.22 + J(0.02)
    items = [_stick("j_left", lx, ty, U(0.1, 0.12), rng, well=str(rng.choice(["octagon", "circle"]))),
             _stick("j_right", 0.65 + J(0.015), Y(0.57 + J(0.02)), U(0.065, 0.08), rng,
                    well=str(rng.choice(["octagon", "circle"]))),
             _dpad(0.35 + J(0.015), Y(0.57 + J(0.02)), U(0.085, 0.1), "cross", rng)]
    ad = U(0.085, 0.1)
    ax = 1 - lx + J(0.01)
    g = _FACE_GLYPHS["gamecube"]
    items += [_It("face", "south", ax, ty, ad, glyph=g["south"]),
              _It("face", "west", ax - ad * 1.0, ty + ad * 0.6, ad * 0.6, glyph=g["west"]),
              _It("face", "east", ax + ad * 1.05, ty - ad * 0.15, ad * 0.5, ad * 0.95, shape="pill", angle=-0.2,
                  glyph=g["east"]),
              _It("face", "north", ax - ad * 0.15, ty - ad * 1.02, ad * 0.95, ad * 0.5, shape="pill", angle=-0.2,
                  glyph=g["north"])]
    items.append(_It("small", "start", 0.5, ty + U(-0.01, 0.02), U(0.032, 0.04)))
    return _Tmpl("gamecube", "gamecube", "gamecube", asp, _mirror_half(half), items,
                 triggers=(U(0.75, 0.77), U(0.9, 0.93), U(0.05, 0.08), "box"),
                 shoulders=(U(0.6, 0.63), U(0.72, 0.74), U(0.022, 0.03)), single_shoulder="right_shoulder",
                 trigger_on_body=True)


def _template(rng: np.random.Generator, sub: str) -> _Tmpl:
    amount = rng.uniform(0.7, 1.6)
    J = lambda s: float(rng.uniform(-s, s) * amount)
    if sub == "xbox-one":
        return _tmpl_xbox_one(rng, J)
    if sub == "xbox-360":
        return _tmpl_xbox_360(rng, J)
    if sub in ("ps-ds4", "ps-dualsense"):
        return _tmpl_ds4(rng, J, sub)
    if sub == "ps-ds3":
        return _tmpl_ds3(rng, J)
    if sub.startswith("switch"):
        return _tmpl_switch(rng, J, sub)
    return {"nes": _tmpl_nes, "snes": _tmpl_snes, "genesis": _tmpl_genesis, "n64": _tmpl_n64,
            "gamecube": _tmpl_gamecube}[sub](rng, J)


def _fits(t: _Tmpl, outline: np.ndarray) -> bool:
    """No two elements overlap, and every element lies inside the body."""
    els = [i for i in t.items if i.role != "decor" or i.key == "static"]
    cnt = outline.astype(np.float32).reshape(-1, 1, 2)
    for i, a in enumerate(els):
        ra = a.radius()
        if cv2.pointPolygonTest(cnt, (float(a.x), float(a.y)), True) < ra * 0.9:
            return False
        for b in els[i + 1:]:
            rb = b.radius()
            gap = 0.004 if a.role == b.role == "face" or {a.role, b.role} <= {"small", "guide", "face"} else 0.008
            if math.hypot(a.x - b.x, a.y - b.y) < ra + rb + gap:
                return False
    return True


def _layout(rng: np.random.Generator, sub: str) -> tuple[_Tmpl, np.ndarray]:
    """A jittered template and its dense outline (body units); retried until nothing overlaps."""
    t, outline = None, None
    for _ in range(12):
        t = _template(rng, sub)
        scale = rng.uniform(0.88, 1.12)  # all controls a little larger or smaller
        cluster = [it for it in t.items if it.role == "face" or it.extra.get("cluster")]
        fx, fy = (float(np.mean([it.x for it in cluster])), float(np.mean([it.y for it in cluster]))) if cluster \
            else (0.0, 0.0)
        fk = rng.uniform(0.92, 1.08)  # the face buttons' spacing follows their size, give or take
        for it in t.items:
            if it.role in ("stick", "face", "small", "guide", "dpad") or it.extra.get("cluster"):
                k = scale * rng.uniform(0.95, 1.05) if it.role in ("small", "guide") else scale
                it.w *= k
                it.h *= k
                for key in ("travel", "well", "d"):
                    if key in it.extra:
                        it.extra[key] *= k
            if it in cluster:
                it.x, it.y = fx + (it.x - fx) * scale * fk, fy + (it.y - fy) * scale * fk
        outline = t.outline if t.dense else _catmull(t.outline, 0.004)
        if _fits(t, outline):
            return t, outline
    # shrink controls until they fit: a skin with small buttons beats an overlapping one
    assert t is not None and outline is not None
    for _ in range(10):
        for it in t.items:
            if it.role != "decor":
                it.w *= 0.93
                it.h *= 0.93
                for key in ("travel", "well", "d"):
                    if key in it.extra:
                        it.extra[key] *= 0.93
        if _fits(t, outline):
            break
    return t, outline


# --- shoulders and triggers ----------------------------------------------------------------------------------------
def _top_run(outline: np.ndarray, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The stretch of the outline's top edge between x0 and x1 (points and their outward normals)."""
    n = _normals(outline)
    sel = (outline[:, 0] >= x0) & (outline[:, 0] <= x1) & (n[:, 1] < -0.3)
    idx = np.flatnonzero(sel)
    if len(idx) < 3:
        return None
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    run = max(runs, key=len)
    pts, nn = outline[run], n[run]
    if pts[0, 0] > pts[-1, 0]:
        pts, nn = pts[::-1], nn[::-1]
    return pts, nn


def _shoulder_poly(outline: np.ndarray, x0: float, x1: float, thick: float, shape: str, gap: float,
                   k: float) -> tuple[np.ndarray, np.ndarray] | None:
    """A right bumper hugging the body's top edge (band) or resting on it (tab); also its outer (top) curve."""
    got = _top_run(outline, x0, x1)
    if got is None:
        return None
    pts, nn = got
    if shape == "tab":
        ytop = float(pts[:, 1].min())
        cx, w = (x0 + x1) / 2, x1 - x0
        poly = _rrect(cx, ytop - thick * 0.35, w, thick * 1.5, thick * 0.5)
        top = np.stack([np.linspace(x0, x1, 24), np.full(24, ytop - thick * 1.1)], 1)
        return poly, top
    s = np.linspace(0.0, 1.0, len(pts))
    prof = (1.0 - np.abs(2 * s - 1) ** k) ** (1 / k)
    inner = pts + nn * gap
    outer = pts + nn * (gap + thick * prof[:, None])
    return np.concatenate([inner, outer[::-1]]), outer


def _trigger_poly(base: np.ndarray, x0: float, x1: float, height: float, profile: str, gap: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A right trigger standing on the curve `base` (x increasing) between x0 and x1."""
    order = np.argsort(base[:, 0])
    bx, by = base[order, 0], base[order, 1]
    s = np.linspace(0.0, 1.0, 40)
    xs = x0 + s * (x1 - x0)
    yb = np.interp(xs, bx, by) - gap
    if profile == "bar":
        cx = (x0 + x1) / 2
        w = (x1 - x0) * rng.uniform(0.5, 0.8)
        height *= rng.uniform(0.6, 0.9)
        return _rrect(cx, float(np.interp(cx, bx, by)) - gap - height / 2, w, height, w * rng.uniform(0.2, 0.5))
    if profile == "horn":
        k, gam, lean = rng.uniform(1.6, 2.6), rng.uniform(1.1, 1.8), rng.uniform(0.0, 0.25)
    else:
        k, gam, lean = rng.uniform(3.0, 6.0), rng.uniform(0.9, 1.15), rng.uniform(-0.05, 0.12)
    ss = s ** gam
    h = height * np.clip(1.0 - np.abs(2 * ss - 1) ** k, 0, 1) ** (1 / k)
    top = np.stack([xs + lean * h, yb - h], 1)
    bottom = np.stack([xs, yb], 1)[::-1]
    return np.concatenate([top, bottom[1:-1]])


def _mirror(p: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[:, 0] = 1.0 - q[:, 0]
    return q[::-1]


# --- painting parts ------------------------------------------------------------------------------------------------
@dataclass
class _Paint:
    fill: _RGB | None
    fill_a: float
    line: _RGB | None
    lw: float
    glyph: _RGB | None


def _role_paint(lk: _Look, role: str, face: _RGB | None = None) -> _Paint:
    fill = lk.small_fill if role == "small" else lk.fill
    if role == "knob":
        fill = lk.knob_fill
    gcol = lk.glyph
    if role == "shoulder" and lk.trig_fill is not None:
        fill = lk.trig_fill
        gcol = _contrast(fill) if gcol is not None else None
    if face is not None and lk.face_fill and fill is not None:
        fill = face
        gcol = _contrast(face)
    if face is not None and lk.glyph_face:
        gcol = face
    line = lk.knob_line if role == "knob" else lk.pline
    return _Paint(fill, lk.fill_a, line, lk.plw, gcol)


def _press_glyph(lk: _Look, fill: _RGB, normal: _RGB | None) -> _RGB:
    if lk.press_glyph == "keep" and normal is not None and sum(abs(a - b) for a, b in zip(normal, fill)) > 0.7:
        return normal
    if lk.press_glyph == "light":
        return _shade(fill, 0.8) if _luma(fill) < 0.6 else _shade(fill, -0.75)
    return _contrast(fill)


def _draw_part(pic: _Pic, polys: list[np.ndarray], lk: _Look, pressed: bool, pt: _Paint,
               glyph: tuple[str, float, float, float] | None = None,
               deco: Callable[[np.ndarray, float], None] | None = None, ring: bool = False) -> None:
    """One button-like shape in its normal or pressed look. `deco(mask, lw)` adds line details (knob rings)."""
    m = _fill(pic.mask(), polys)
    fill, fa, line, gcol = pt.fill, pt.fill_a, pt.line, pt.glyph
    mode = lk.press if pressed else ""
    xs = np.concatenate([p[:, 0] for p in polys])
    ys = np.concatenate([p[:, 1] for p in polys])
    size = float(max(xs.max() - xs.min(), ys.max() - ys.min()))
    small = float(min(xs.max() - xs.min(), ys.max() - ys.min()))
    if pt.lw > max(1.0, small * 0.14):  # a thick outline would swallow a small button
        pt = _Paint(pt.fill, pt.fill_a, pt.line, max(1.0, small * 0.14), pt.glyph)
    if lk.shade:  # soft drop shadow below and right
        off = max(1.0, size * (0.03 if pressed else 0.07))
        sh = _fill(pic.mask(), [p + (off * 0.4, off) for p in polys])
        pic.paint(_blur(sh, max(1.0, size * 0.06)), _BLACK, 0.45)
    if lk.glow > 0:
        src = _stroke(pic.mask(), polys, pt.lw) if not pressed else m
        col = lk.press_col if pressed else (line or lk.press_col)
        sig = lk.glow * (1.6 if pressed else 1.0)
        pic.paint(np.clip(_blur(src, sig) * (2.2 if pressed else 1.6), 0, 1), col, 0.9)
    if lk.depth > 0 and not pressed and fill is not None:  # pressed: the button sits down on its base
        d = max(1.0, min(lk.depth, size * 0.09))
        base = line if line is not None else _shade(fill, -0.45)
        pic.paint(_fill(pic.mask(), [p + (0, d) for p in polys]), base, fa)
        if line is not None:
            pic.paint(_stroke(pic.mask(), [p + (0, d) for p in polys], pt.lw), line)
    cut = False
    if mode == "fill":
        fill, fa = lk.press_col, 1.0
        cut = lk.press_glyph == "cut"
        gcol = _press_glyph(lk, fill, gcol)
    elif mode == "invert":
        fill, fa = line or gcol or _WHITE, 1.0
        gcol = lk.body if lk.body is not None and sum(abs(a - b) for a, b in zip(lk.body, fill)) > 0.7 else \
            _contrast(fill)
    elif mode == "lighten":
        base = fill if fill is not None else (line or _WHITE)
        fill, fa = _shade(base, 0.55) if _luma(base) < 0.75 else _shade(base, -0.35), max(fa, 0.85)
        gcol = _press_glyph(lk, fill, gcol)
    elif mode == "lit":
        base = fill if fill is not None else _BLACK
        fill = _shade(base, 0.3) if _luma(base) < 0.6 else _shade(base, -0.22)
        gcol = lk.press_col
        line = lk.press_col if line is not None else None
    elif mode == "glow":
        fill, fa = lk.press_col, 0.6
        line = _mix(lk.press_col, _WHITE, 0.6)
        gcol = _WHITE
    elif mode == "sink":
        base = fill if fill is not None else (0.4, 0.4, 0.4)
        fill = _mix(_shade(base, -0.25), lk.press_col, 0.55)
        gcol = _mix(lk.press_col, _WHITE, 0.6)
    if pressed and pt.fill is not None and fill is not None and _dist(fill, pt.fill) < 0.4 and mode != "tint":
        fill = _apart(pt.fill, pt.fill, 0.55)  # a press must show, even with an unlucky palette
    if fill is not None:
        if lk.shade:
            y0, y1 = float(ys.min()), float(ys.max())
            top, bot = (_shade(fill, 0.35), _shade(fill, -0.35)) if not pressed else (_shade(fill, -0.3),
                                                                                      _shade(fill, 0.15))
            pic.paint(m, _vgrad(y0, y1, top, bot), fa)
            if not pressed:  # specular highlight in the upper part
                cx = float(xs.mean())
                hl = _fill(pic.mask(), [_ellipse(cx, y0 + (y1 - y0) * 0.28, (xs.max() - xs.min()) * 0.32,
                                                 (y1 - y0) * 0.16)])
                pic.paint(np.minimum(_blur(hl, max(1.0, size * 0.05)), m.astype(np.float32) / 255), _WHITE, 0.45)
            rim = np.minimum(_stroke(pic.mask(), polys, max(1.0, size * 0.06)), m)
            pic.paint(rim, _vgrad(y0, y1, _shade(fill, 0.6) if not pressed else _shade(fill, -0.5),
                                  _shade(fill, -0.55) if not pressed else _shade(fill, 0.3)), 0.6)
        else:
            pic.paint(m, fill, fa)
    if deco is not None:
        dm = pic.mask()
        deco(dm, pt.lw)
        dcol = line if line is not None else (gcol or _contrast(fill or _BLACK))
        if pressed and fill is not None and mode in ("fill", "invert", "lighten", "glow"):
            dcol = _press_glyph(lk, fill, dcol) if mode != "glow" else _WHITE
        pic.paint(np.minimum(dm, _fill(pic.mask(), polys)) if lk.shade else dm, dcol)
    if ring:
        c = np.concatenate(polys).mean(0)
        rcol = line if line is not None else (gcol or _contrast(fill or _BLACK))
        pic.paint(_stroke(pic.mask(), [c + (p - c) * 0.76 for p in polys], max(1.0, pt.lw * 0.7)), rcol)
    if line is not None:
        core = _mix(line, _WHITE, 0.45) if lk.glow > 0 else line
        pic.paint(_stroke(pic.mask(), polys, pt.lw), core)
    if glyph is not None and glyph[0] and (gcol is not None or cut):
        kind, gx, gy, gs = glyph
        dy = gs * 0.04 if (pressed and lk.shade) else 0.0
        gm = _glyph(pic.mask(), kind, gx, gy + dy, gs, max(1.0, gs * lk.glyph_w), lk.font)
        if cut:
            pic.erase(gm)
        elif gcol is not None:
            pic.paint(gm, gcol)
    if mode == "tint":
        pic.paint(np.maximum(m, _stroke(pic.mask(), polys, pt.lw)), lk.press_col, lk.press_a)


# --- building the preset --------------------------------------------------------------------------------------------
@dataclass
class _Geo:
    W: int
    H: int
    bw: float
    ox: float
    oy: float
    outline: np.ndarray  # canvas px

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return self.ox + x * self.bw, self.oy + y * self.bw

    def poly(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p) * self.bw + (self.ox, self.oy)


def _box(polys: list[np.ndarray], margin: float) -> tuple[int, int, int, int]:
    allp = np.concatenate(polys)
    x0, y0 = math.floor(allp[:, 0].min() - margin), math.floor(allp[:, 1].min() - margin)
    x1, y1 = math.ceil(allp[:, 0].max() + margin), math.ceil(allp[:, 1].max() + margin)
    return x0, y0, x1 - x0, y1 - y0


def _part_element(kind: str, name: str, polys: list[np.ndarray], lk: _Look, pt: _Paint,
                  glyph: tuple[str, float, float, float] | None = None, ring: bool = False, **kw) -> Element:
    x0, y0, w, h = _box(polys, lk.margin())
    local = [p - (x0, y0) for p in polys]
    g = None if glyph is None else (glyph[0], glyph[1] - x0, glyph[2] - y0, glyph[3])
    pics = {}
    for state in ("normal", "pressed"):
        pic = _Pic(w, h)
        _draw_part(pic, local, lk, state == "pressed", pt, g, ring=ring)
        pics[state] = pic.rgba()
    return Element(kind, (float(x0), float(y0)), pics, name=name, **kw)


def _shape_poly(it: _It, geo: _Geo) -> list[np.ndarray]:
    cx, cy = geo.pt(it.x, it.y)
    w = it.w * geo.bw
    h = (it.h or it.w) * geo.bw
    if it.shape == "pill":
        return [_rrect(cx, cy, w, h, min(w, h) / 2, it.angle)]
    if it.shape == "rect":
        return [_rrect(cx, cy, w, h, min(w, h) * 0.2, it.angle)]
    if it.shape == "tri":
        return [_rounded(_regular(cx, cy, w * 0.55, 3, 0.0), w * 0.08)]
    return [_ellipse(cx, cy, w / 2, h / 2, it.angle)]


_LABELS = {"xbox": ("LB", "RB", "LT", "RT"), "playstation": ("L1", "R1", "L2", "R2"),
           "nintendo": ("L", "R", "ZL", "ZR"), "gamecube": ("L", "Z", "L", "R"), "n64": ("L", "R", "Z", "Z"),
           "genesis": ("", "", "", ""), "nes": ("", "", "", "")}


def _dpad_parts(it: _It, geo: _Geo, lk: _Look) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]],
                                                            dict[str, tuple[float, float, float]], list[np.ndarray]]:
    """The d-pad's outline polygons, each direction's own polygons (separate arms) or highlight region, each
    direction's arrow (x, y, size), and its static centre (separate arms only)."""
    cx, cy = geo.pt(it.x, it.y)
    S = it.w * geo.bw
    half = S / 2
    a = S * it.extra["arm"]
    h = a / 2
    rot = {"up": -np.pi / 2, "down": np.pi / 2, "left": np.pi, "right": 0.0}
    arrows = {d: (cx + math.cos(r) * (h + half) / 2, cy + math.sin(r) * (h + half) / 2, a * 0.45) for d, r in
              rot.items()}
    if it.shape == "cross":
        rc = a * it.extra["r"]
        pts = np.array([(-h, -half), (h, -half), (h, -h), (half, -h), (half, h), (h, h), (h, half), (-h, half),
                        (-h, h), (-half, h), (-half, -h), (-h, -h)])
        radii = np.array([rc, rc, rc * 0.4] * 4)
        full = [_rounded(pts, radii) + (cx, cy)]
        M = lk.margin() + lk.plw
        reg = {}
        for d, r in rot.items():
            box = np.array([(h * 0.2, -h - M), (half + M * 2, -h - M), (half + M * 2, h + M), (h * 0.2, h + M)])
            reg[d] = [_rotate(box, r) + (cx, cy)]
        return full, reg, arrows, []
    if it.shape == "disc":
        full = [_ellipse(cx, cy, half)]
        reg = {}
        M = lk.margin() + S
        for d, r in rot.items():
            wedge = np.array([(0, 0), (M, -M * 0.95), (M, M * 0.95)])
            reg[d] = [_rotate(wedge, r) + (cx, cy)]
        arrows = {d: (cx + math.cos(r) * half * 0.62, cy + math.sin(r) * half * 0.62, S * 0.16) for d, r in
                  rot.items()}
        return full, reg, arrows, []
    if it.shape == "buttons":
        d = it.extra["d"] * geo.bw if "d" in it.extra else S * 0.4
        arms = {dd: [_ellipse(cx + math.cos(r) * (half - d / 2), cy + math.sin(r) * (half - d / 2), d / 2)] for dd, r in
                rot.items()}
        arrows = {dd: (cx + math.cos(r) * (half - d / 2), cy + math.sin(r) * (half - d / 2), d * 0.5) for dd, r in
                  rot.items()}
        return [], arms, arrows, []
    # separate arms: flat ("arms") or pointed towards the centre ("arrows", PlayStation)
    g = S * 0.04
    rc = a * it.extra["r"]
    arms = {}
    if it.shape == "arrows":
        base = np.array([(half, -h), (half, h), (h + g, h), (g * 1.2, 0), (h + g, -h)])
        radii = np.array([rc, rc, rc * 0.5, rc * 0.3, rc * 0.5])
    else:
        base = np.array([(half, -h), (half, h), (h + g, h), (h + g, -h)])
        radii = np.array([rc, rc, rc * 0.3, rc * 0.3])
    for d, r in rot.items():
        arms[d] = [_rotate(_rounded(base, radii), r) + (cx, cy)]
    centre = [] if it.shape == "arrows" else [_rrect(cx, cy, a - g * 0.5, a - g * 0.5, rc * 0.3)]
    return [], arms, arrows, centre


def _dpad_elements(it: _It, geo: _Geo, lk: _Look, as_element: bool) -> tuple[list[Element], list[np.ndarray]]:
    full, parts, arrows, centre = _dpad_parts(it, geo, lk)
    pt = _role_paint(lk, "dpad")
    show_arrows = lk.glyph is not None and (it.shape != "cross" or it.extra["r"] > 0.2 or it.shape == "buttons")
    if full and it.shape == "disc":
        show_arrows = True
    if not as_element and not full:
        els = []
        for d in _DIRS:
            ax, ay, s = arrows[d]
            els.append(_part_element("button", _DPAD_BUTTON[d], parts[d], lk, pt,
                                     (f"arrow-{d}", ax, ay, s) if show_arrows else None, button=_DPAD_BUTTON[d]))
        return els, centre
    polys = full if full else [p for d in _DIRS for p in parts[d]]
    x0, y0, w, h = _box(polys, lk.margin())
    local = [p - (x0, y0) for p in polys]

    def draw(pressed: bool) -> _Pic:
        pic = _Pic(w, h)
        if full:
            _draw_part(pic, local, lk, pressed, pt, None,
                       (lambda m, lw: [_glyph(m, f"arrow-{d}", arrows[d][0] - x0, arrows[d][1] - y0, arrows[d][2],
                                              lw, lk.font) for d in _DIRS]) if show_arrows else None)
        else:
            for d in _DIRS:
                ax, ay, s = arrows[d]
                _draw_part(pic, [p - (x0, y0) for p in parts[d]], lk, pressed, pt,
                           (f"arrow-{d}", ax - x0, ay - y0, s) if show_arrows else None)
        return pic

    normal, pressed = draw(False), draw(True)
    pics = {"normal": normal.rgba()}
    # separate arms light up whole, glow included: the quarter of the picture each one lies in
    cx, cy = geo.pt(it.x, it.y)
    R = float(w + h)
    wedges = {d: [_rotate(np.array([(0.0, 0.0), (R, -R), (R, R)]), r) + (cx, cy)] for d, r in
              (("up", -np.pi / 2), ("down", np.pi / 2), ("left", np.pi), ("right", 0.0))}
    for key in DPAD_PICTURES:
        m = np.zeros((h, w), np.uint8)
        for d in key.split("_"):
            _fill(m, [p - (x0, y0) for p in (parts[d] if full else wedges[d])])
        f = (m.astype(np.float32) / 255.0)[..., None]
        pic = _Pic(w, h)
        pic.px = normal.px * (1 - f) + pressed.px * f
        pics[key] = pic.rgba()
    return [Element("dpad", (float(x0), float(y0)), pics, name="dpad")], centre


def _knob_element(it: _It, geo: _Geo, lk: _Look) -> Element:
    cx, cy = geo.pt(it.x, it.y)
    r = it.w * geo.bw / 2
    M = lk.margin()
    S = int(math.ceil(2 * (r + M)))
    x0, y0 = int(round(cx - S / 2)), int(round(cy - S / 2))
    c = S / 2
    disc = [_ellipse(c, c, r)]
    pt = _role_paint(lk, "knob")
    kind = lk.knob
    if kind in ("ring", "concentric", "dot") and pt.fill is None:
        pt = _Paint(None, 1.0, pt.line, pt.lw, pt.glyph)

    def deco(m: np.ndarray, lw: float) -> None:
        if kind == "concentric":
            _stroke(m, [_ellipse(c, c, r * 0.7), _ellipse(c, c, r * 0.42)], max(1.0, lw * 0.8))
        elif kind == "grip":
            n = 18 if r > 20 else 12
            a = np.arange(n) * 2 * np.pi / n
            for ai in a:
                p = np.array([[c + math.cos(ai) * r * 0.7, c + math.sin(ai) * r * 0.7],
                              [c + math.cos(ai) * r * 0.9, c + math.sin(ai) * r * 0.9]])
                _stroke(m, [p], max(1.0, lw * 0.7), closed=False)
            _stroke(m, [_ellipse(c, c, r * 0.6)], max(1.0, lw * 0.8))
        elif kind == "disc-ring":
            _stroke(m, [_ellipse(c, c, r * 0.72)], max(1.0, lw * 0.8))
        elif kind == "dot":
            _fill(m, [_ellipse(c, c, r * 0.34)])
        elif kind == "disc":
            _stroke(m, [_ellipse(c, c, r * 0.78)], max(1.0, lw * 0.5))

    pics = {}
    for state in ("normal", "pressed"):
        pic = _Pic(S, S)
        _draw_part(pic, disc, lk, state == "pressed", pt, None, deco)
        pics[state] = pic.rgba()
    return Element("stick", (float(x0), float(y0)), pics, stick=it.key, radius=float(it.extra["travel"] * geo.bw),
                   name=it.key)


def _draw_body(pic: _Pic, t: _Tmpl, geo: _Geo, lk: _Look, static: list[tuple[list[np.ndarray], tuple | None]],
               wells: list[tuple[float, float, float, str]], plates: list[np.ndarray]) -> None:
    bw = geo.bw
    out = geo.outline
    floating = lk.style == "floating"
    mb = _fill(pic.mask(), [out])
    if not floating:
        if lk.shade:
            sh = _fill(pic.mask(), [out + (bw * 0.004, bw * 0.012)])
            pic.paint(_blur(sh, bw * 0.012), _BLACK, 0.5)
        if lk.glow > 0 and lk.line is not None:
            pic.paint(np.clip(_blur(_stroke(pic.mask(), [out], lk.lw), lk.glow) * 1.6, 0, 1), lk.line, 0.9)
        if lk.depth > 0 and lk.body is not None:
            below = [out + (0, lk.depth)]
            pic.paint(_fill(pic.mask(), below), lk.line if lk.line is not None else _shade(lk.body, -0.45), lk.body_a)
            if lk.line is not None:
                pic.paint(_stroke(pic.mask(), below, lk.lw), lk.line)
        if lk.body is not None:
            if lk.shade:
                y0, y1 = float(out[:, 1].min()), float(out[:, 1].max())
                pic.paint(mb, _vgrad(y0, y1, _shade(lk.body, 0.22), _shade(lk.body, -0.3)), lk.body_a)
                cx = float(out[:, 0].mean())
                hl = _fill(pic.mask(), [_ellipse(cx, y0 + (y1 - y0) * 0.25, bw * 0.34, (y1 - y0) * 0.16)])
                pic.paint(np.minimum(_blur(hl, bw * 0.03), mb.astype(np.float32) / 255), _WHITE, 0.18)
            else:
                pic.paint(mb, lk.body, lk.body_a)
        if lk.split and lk.body2 is not None:
            W, H = pic.w, pic.h
            x0, x1 = float(out[:, 0].min()), float(out[:, 0].max())
            y0, y1 = float(out[:, 1].min()), float(out[:, 1].max())
            bh = y1 - y0
            regions: list[tuple[np.ndarray, _RGB]] = []
            if lk.split == "halves":
                regions = [(np.array([(0, 0), ((x0 + x1) / 2, 0), ((x0 + x1) / 2, H), (0, H)]), lk.body2),
                           (np.array([((x0 + x1) / 2, 0), (W, 0), (W, H), ((x0 + x1) / 2, H)]), lk.body3 or lk.body2)]
            elif lk.split == "grips":
                for side, col in ((0, lk.body2), (1, lk.body3 or lk.body2)):
                    g = np.array([(-0.1, 0.35), (0.17, 0.5), (0.3, 0.75), (0.36, 1.2), (-0.1, 1.2)])
                    if side:
                        g[:, 0] = 1 - g[:, 0]
                    g = _rounded(g, 0.08)
                    regions.append((np.stack([x0 + g[:, 0] * (x1 - x0), y0 + g[:, 1] * bh], 1), col))
            elif lk.split == "centre":
                regions = [(_ellipse((x0 + x1) / 2, y0 + bh * 0.3, (x1 - x0) * 0.24, bh * 0.42), lk.body2)]
            for poly, col in regions:
                rm = np.minimum(_fill(pic.mask(), [poly]), mb)
                pic.paint(rm, col, lk.body_a)
        for it in t.items:
            if it.role != "decor":
                continue
            if it.key == "panel":
                cx, cy = geo.pt(it.x, it.y)
                w, h = it.w * bw, it.h * bw
                if it.extra.get("side") == "plate":
                    base = lk.body if lk.body is not None else _BLACK
                    poly = _rrect(cx, cy, w, h, min(w, h) * 0.08)
                    col = _shade(base, -0.55) if _luma(base) > 0.3 else _shade(base, 0.12)
                    if lk.body is not None:
                        pic.paint(_fill(pic.mask(), [poly]), col, lk.body_a)
                    if lk.detail is not None:
                        pic.paint(_stroke(pic.mask(), [poly], max(1.0, lk.lw * 0.6)), lk.detail, lk.detail_a * 0.7)
                else:
                    left = it.extra.get("side") == "left"
                    r_out, r_in = w * 0.45, w * 0.08
                    x_a, x_b = cx - w / 2, cx + w / 2
                    pts = np.array([(x_a, cy - h / 2), (x_b, cy - h / 2), (x_b, cy + h / 2), (x_a, cy + h / 2)])
                    radii = np.array([r_out, r_in, r_in, r_out]) if left else np.array([r_in, r_out, r_out, r_in])
                    poly = _rounded(pts, radii, 9)
                    col = (lk.body2 or lk.body) if left else (lk.body3 or lk.body2 or lk.body)
                    if col is not None:
                        pic.paint(_fill(pic.mask(), [poly]), col, lk.body_a)
                    if lk.detail is not None:
                        pic.paint(_stroke(pic.mask(), [poly], max(1.0, lk.lw * 0.7)), lk.line or lk.detail,
                                  lk.detail_a)
            elif it.key == "touchpad":
                cx, cy = geo.pt(it.x, it.y)
                w, h = it.w * bw, it.h * bw
                tp = it.extra["taper"] * bw
                pts = np.array([(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2 - tp, cy + h / 2),
                                (cx - w / 2 + tp, cy + h / 2)])
                poly = _rounded(pts, np.array([h * 0.12, h * 0.12, h * 0.3, h * 0.3]), 9)
                if lk.body is not None:
                    pic.paint(_fill(pic.mask(), [poly]), _shade(lk.body, 0.07 if _luma(lk.body) < 0.5 else -0.06),
                              lk.body_a)
                if lk.detail is not None:
                    pic.paint(_stroke(pic.mask(), [poly], max(1.0, lk.lw * 0.8)), lk.detail, lk.detail_a)
            elif it.key == "plate":
                cx, cy = geo.pt(it.x, it.y)
                poly = _rrect(cx, cy, it.w * bw, it.h * bw, min(it.w, it.h) * bw / 2, it.angle)
                plates.append(poly)
            elif it.key == "dots" and lk.detail is not None:
                cx, cy = geo.pt(it.x, it.y)
                m = pic.mask()
                for i in range(-3, 4):
                    for j in range(-1, 2):
                        _fill(m, [_ellipse(cx + i * it.w * bw / 7, cy + j * it.h * bw / 2.5, max(0.8, bw * 0.0022))])
                pic.paint(m, lk.detail, lk.detail_a * 0.8)
            elif it.key == "stripes" and lk.detail is not None:
                cx, cy = geo.pt(it.x, it.y)
                w, h = it.w * bw, it.h * bw
                poly = _rrect(cx, cy, w, h, h * 0.15)
                base = lk.body if lk.body is not None else _BLACK
                pic.paint(_fill(pic.mask(), [poly]), _shade(base, 0.2) if _luma(base) < 0.4 else _shade(base, -0.1),
                          lk.body_a if lk.body is not None else 0)
                m = pic.mask()
                for k in (-0.35, 0.35):
                    _stroke(m, [np.array([(cx - w * 0.45, cy + k * h), (cx + w * 0.45, cy + k * h)])],
                            max(1.0, lk.lw * 0.6), closed=False)
                pic.paint(m, lk.detail, lk.detail_a * 0.7)
            elif it.key == "label" and lk.detail is not None:
                cx, cy = geo.pt(it.x, it.y)
                s = it.w * bw
                pic.paint(_glyph(pic.mask(), it.glyph, cx, cy, s, max(1.0, s * 0.12), lk.font), lk.detail,
                          lk.detail_a)
        if lk.inner and lk.detail is not None:
            pic.paint(_stroke(pic.mask(), [_offset(out, -bw * 0.022)], max(1.0, lk.lw * 0.6)), lk.detail,
                      lk.detail_a * 0.6)
    # plates behind the face buttons and the d-pad
    base = lk.body if lk.body is not None else (0.2, 0.2, 0.2)
    for poly in plates:
        if lk.plate == "recess" and lk.body is not None and not floating:
            pic.paint(_fill(pic.mask(), [poly]), _shade(base, -0.18) if _luma(base) > 0.15 else _shade(base, 0.1),
                      lk.body_a)
        elif lk.plate == "ring" and lk.detail is not None:
            pic.paint(_stroke(pic.mask(), [poly], max(1.0, lk.lw * 0.7)), lk.detail, lk.detail_a * 0.8)
    # stick wells
    for cx, cy, rw, shape in wells:
        poly = _rounded(_regular(cx, cy, rw / math.cos(np.pi / 8), 8, np.pi / 8), rw * 0.12) if shape == "octagon" \
            else _ellipse(cx, cy, rw)
        if lk.well == "none":
            continue
        if lk.well == "recess":
            col = lk.well_col if not floating else lk.well_col
            if lk.shade:
                pic.paint(_fill(pic.mask(), [poly]), _rgrad(cx, cy - rw * 0.3, rw * 1.3,
                                                            _shade(col, -0.4), _shade(col, 0.15)), 0.9)
            else:
                pic.paint(_fill(pic.mask(), [poly]), col, lk.well_a)
        else:
            polys = [poly] + ([_ellipse(cx, cy, rw * 0.9)] if lk.well == "double" else [])
            if lk.glow > 0:
                pic.paint(np.clip(_blur(_stroke(pic.mask(), polys, lk.plw), lk.glow) * 1.4, 0, 1), lk.well_col, 0.8)
            pic.paint(_stroke(pic.mask(), polys, max(1.0, lk.lw * 0.8)),
                      _mix(lk.well_col, _WHITE, 0.45) if lk.glow > 0 else lk.well_col, lk.well_a)
    # static parts: the d-pad's centre, capture and share buttons, unmapped C buttons
    for polys, glyph in static:
        _draw_part(pic, polys, lk, False, _role_paint(lk, "small"), glyph)
    if not floating and lk.line is not None:
        core = _mix(lk.line, _WHITE, 0.45) if lk.glow > 0 else lk.line
        pic.paint(_stroke(pic.mask(), [out], lk.lw), core)


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    p = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=p / p.sum()))][0]


def random_preset(rng: np.random.Generator, family: str | None = None, style: str | None = None,
                  width: int | None = None) -> Preset:
    """One random skin of `family` (default: any; "retro" picks a NES, SNES, Genesis, N64 or GameCube-like pad)
    drawn in `style` (default: a random training style), `width` pixels wide (default 600-1100; the height follows
    from the pad's proportions). Deterministic for a given state of `rng`."""
    return _random_preset(rng, family, style, width)


def _random_preset(rng: np.random.Generator, family: str | None, style: str | None, width: int | None,
                   sub: str | None = None) -> Preset:
    if family is None:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if style is None:
        style = TRAIN_STYLES[int(rng.integers(len(TRAIN_STYLES)))]
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    W = int(width) if width is not None else int(rng.integers(600, 1101))
    if not 64 <= W <= 4096:
        raise ValueError(f"width {W} out of range [64, 4096]")
    sub = _pick(rng, _SUBTYPES[family]) if sub is None else sub
    t, outline = _layout(rng, sub)
    lk = _sample_look(rng, style, W * 0.96)
    lk.face_cols = _FACE_COLOURS.get(t.colours, {})
    if t.sub in ("nes", "snes", "genesis") and lk.split in ("grips", "centre"):
        lk.split = "halves"  # grip regions only make sense on pads with grips
    tag = int(rng.integers(10000))

    # canvas: the body spans the width; bumpers and triggers stand above it
    margin = W * rng.uniform(0.008, 0.025) + lk.margin()
    bw = W - 2 * margin
    sh_poly = tr_poly = None
    sh_shape = t.shoulder_shape
    has_sh = t.shoulders is not None and rng.random() < 0.95
    has_tr = t.triggers is not None and rng.random() < 0.9
    if has_sh and t.shoulders is not None:
        x0, x1, th = t.shoulders
        got = _shoulder_poly(outline, x0, x1, th * rng.uniform(0.85, 1.15), sh_shape,
                             rng.uniform(0.0, 0.006) * (rng.random() < 0.5), rng.uniform(3, 8))
        if got is not None:
            sh_poly, sh_top = got
        else:
            has_sh = False
    if has_tr and t.triggers is not None:
        x0, x1, th, prof = t.triggers
        if rng.random() < 0.1:
            prof = "bar"
        base = sh_top if has_sh and sh_poly is not None and not t.trigger_on_body else \
            (_top_run(outline, x0 - 0.05, x1 + 0.05) or (None,))[0]
        if base is not None:
            tr_poly = _trigger_poly(base, x0, x1, th * rng.uniform(0.85, 1.15), prof,
                                    rng.uniform(0.0, 0.008) * (rng.random() < 0.6), rng)
    tr_fill = None
    if tr_poly is not None and rng.random() < 0.45:
        tr_fill = "up" if rng.random() < 0.8 else str(rng.choice(["down", "left", "right"]))
    tops = [outline[:, 1].min()] + [p[:, 1].min() for p in (sh_poly, tr_poly) if p is not None]
    top = float(min(tops))
    oy = margin - top * bw
    H = int(math.ceil(oy + float(outline[:, 1].max()) * bw + margin))
    geo = _Geo(W, H, bw, margin, oy, outline * bw + (margin, oy))

    labels = _LABELS[t.glyphs] if lk.labels else ("", "", "", "")
    elements: list[Element] = []
    static: list[tuple[list[np.ndarray], tuple | None]] = []
    wells: list[tuple[float, float, float, str]] = []
    plates: list[np.ndarray] = []
    later: list[Element] = []
    # shoulders and triggers
    pt_small = _role_paint(lk, "shoulder")
    for poly, keys, lab in ((tr_poly, ("left_trigger", "right_trigger"), labels[2:4]),
                            (sh_poly, ("left_shoulder", "right_shoulder"), labels[0:2])):
        if poly is None:
            continue
        for side, key in enumerate(keys):
            if t.single_shoulder and "shoulder" in key and key != t.single_shoulder:
                continue
            p = geo.poly(poly if side else _mirror(poly))
            cxy = p.mean(0)
            if "shoulder" in key and t.shoulders is not None:
                s = t.shoulders[2] * bw * (0.55 if sh_shape == "band" else 0.8)
                near = p[np.abs(p[:, 0] - cxy[0]) < bw * 0.01]  # the band across its middle: label halfway up
                if len(near):
                    cxy = (cxy[0], float(near[:, 1].min() + near[:, 1].max()) / 2)
            else:
                s = float(min(p[:, 1].max() - p[:, 1].min(), p[:, 0].max() - p[:, 0].min())) * 0.3
            lab_s = lab[side] if key != "right_shoulder" or not t.single_shoulder else "Z"
            glyph = (f"T:{lab_s}", float(cxy[0]), float(cxy[1]), s) if lab_s and s > 7 else None
            kind = "trigger" if "trigger" in key else "button"
            kw = {"fill": tr_fill} if kind == "trigger" else {}
            elements.append(_part_element(kind, key, [p], lk, pt_small, glyph, button=key, **kw))
    for it in t.items:
        cx, cy = geo.pt(it.x, it.y)
        if it.role == "stick":
            wells.append((cx, cy, it.extra["well"] * bw, it.extra["well_shape"]))
            later.append(_knob_element(it, geo, lk))
        elif it.role == "face":
            g = (it.glyph, cx, cy, it.w * bw * 0.5 * (0.8 if it.glyph.startswith("ps-") else 1.0)) if it.glyph else None
            if lk.glyph is None and not lk.glyph_face:
                g = None
            pt = _role_paint(lk, "face", lk.face_cols.get(it.key))
            elements.append(_part_element("button", it.key, _shape_poly(it, geo), lk, pt, g, ring=lk.ring,
                                          button=it.key))
        elif it.role in ("small", "guide"):
            g = (it.glyph, cx, cy, min(it.w, it.h or it.w) * bw * 0.55) if it.glyph and lk.glyph is not None else None
            elements.append(_part_element("button", it.key, _shape_poly(it, geo), lk, _role_paint(lk, "small"), g,
                                          button=it.key))
        elif it.role == "dpad":
            as_element = it.shape == "disc" or (it.shape != "buttons" and rng.random() < 0.5)
            els, centre = _dpad_elements(it, geo, lk, as_element)
            elements.extend(els)
            if centre:
                static.append((centre, None))
            if lk.plate != "none" and it.shape in ("arrows", "cross", "buttons"):
                plates.append(_ellipse(cx, cy, it.w * bw * 0.62))
        elif it.role == "decor" and it.key == "static":
            g = (it.glyph, cx, cy, it.w * bw * 0.5) if it.glyph and lk.glyph is not None else None
            static.append((_shape_poly(it, geo), g))
    faces = [it for it in t.items if it.role == "face" and it.key in ("north", "south", "east", "west")]
    if lk.plate != "none" and len(faces) == 4 and t.sub not in ("gamecube", "n64"):
        fx = float(np.mean([f.x for f in faces]))
        fy = float(np.mean([f.y for f in faces]))
        rr = max(math.hypot(f.x - fx, f.y - fy) + f.w / 2 for f in faces) + 0.012
        cx, cy = geo.pt(fx, fy)
        plates.append(_ellipse(cx, cy, rr * bw))
    body = _Pic(W, H)
    _draw_body(body, t, geo, lk, static, wells, plates)
    out: list[Element] = []
    if body.px[..., 3].max() > 0:
        out.append(Element("picture", (0.0, 0.0), {"normal": body.rgba()}, name="body"))
    out += elements + later
    return Preset(name=f"gen-{family}-{style}-{tag:04d}", family=family, size=(W, H), elements=out,
                  source=f"skingen:{t.sub}")


_SHIPPED_SEED = 20240611
# (name, family, pad, style): three per family, each family's pads and nine training styles all shown
_SHIPPED = (("xbox-one-lineart", "xbox", "xbox-one", "lineart"),
            ("xbox-360-filled-dark", "xbox", "xbox-360", "filled-dark"),
            ("xbox-one-two-tone", "xbox", "xbox-one", "two-tone"),
            ("playstation-ds4-lineart-tint", "playstation", "ps-ds4", "lineart-tint"),
            ("playstation-dualsense-filled-light", "playstation", "ps-dualsense", "filled-light"),
            ("playstation-ds3-cartoon", "playstation", "ps-ds3", "cartoon"),
            ("switch-pro-translucent", "switch", "switch-pro", "translucent"),
            ("switch-joycon-coloured", "switch", "switch-joycon", "coloured"),
            ("switch-pro-floating", "switch", "switch-pro", "floating"),
            ("retro-snes-filled-dark", "retro", "snes", "filled-dark"),
            ("retro-nes-coloured", "retro", "nes", "coloured"),
            ("retro-genesis-lineart", "retro", "genesis", "lineart"))


# the held-out looks, two per family, for measuring the labeller on skins unlike any it was trained on
_HELDOUT = (("heldout-xbox-one-shaded", "xbox", "xbox-one", "shaded"),
            ("heldout-xbox-360-neon", "xbox", "xbox-360", "neon"),
            ("heldout-playstation-ds4-neon", "playstation", "ps-ds4", "neon"),
            ("heldout-playstation-dualsense-shaded", "playstation", "ps-dualsense", "shaded"),
            ("heldout-switch-pro-shaded", "switch", "switch-pro", "shaded"),
            ("heldout-switch-joycon-neon", "switch", "switch-joycon", "neon"),
            ("heldout-retro-snes-neon", "retro", "snes", "neon"),
            ("heldout-retro-gamecube-shaded", "retro", "gamecube", "shaded"))


def _library(spec: tuple[tuple[str, str, str, str], ...], seed: int) -> tuple[Preset, ...]:
    out = []
    for k, (name, family, sub, style) in enumerate(spec):
        p = _random_preset(np.random.default_rng([seed, k]), family, style, 800, sub)
        p.name = name
        out.append(p)
    return tuple(out)


@lru_cache(maxsize=1)
def _shipped() -> tuple[Preset, ...]:
    return _library(_SHIPPED, _SHIPPED_SEED)


@lru_cache(maxsize=1)
def _heldout() -> tuple[Preset, ...]:
    return _library(_HELDOUT, _SHIPPED_SEED + 1)


def heldout_presets() -> list[Preset]:
    """A fixed list of 8 generated skins in `HELDOUT_STYLES` (two per family), never used for training: the
    labeller's evaluation skins. Built once per process (the same `Preset` objects each call: read-only)."""
    return list(_heldout())


def shipped_presets() -> dict[str, Preset]:
    """A fixed library of 12 generated skins (three per family, training styles) by stable name, for `--skin NAME`
    and tests; built once per process (the same `Preset` objects each call: treat them as read-only)."""
    return {p.name: p for p in _shipped()}
