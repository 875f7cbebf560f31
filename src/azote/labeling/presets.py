"""Controller overlay skins as data: input-overlay presets and Azote's own template format, and their renderer.

An overlay is a `Preset`: a canvas size and an ordered list of elements, each a picture (or several) placed at a
position. Element kinds follow the OBS input-overlay plugin, whose presets are the skins streamers use:

- ``picture``: always drawn (the controller's body);
- ``button``: its normal picture, or its pressed picture while the button is held;
- ``stick``: the knob picture moved by ``value * radius`` pixels from its rest position (its pressed picture
  while the stick is clicked, L3/R3);
- ``trigger``: normal picture; when pressed, the pressed picture, whole (button mode) or revealed from one edge
  (fill mode: a trigger held fully reveals all of it);
- ``dpad``: one element with nine pictures (neutral and eight directions);
- ``guide``: input-overlay's gamepad-id element (the guide button's picture drawn under the player picture).

Two file formats load into it:

input-overlay (``*.json`` + one atlas PNG): ``elements`` is a list of ``{type, pos: [x, y], mapping: [u, v, w, h],
code, side, stick_radius, direction, trigger_mode}``; types 0 texture, 1 keyboard key, 2 gamepad button, 3 mouse
button, 4 wheel, 5 analog stick, 6 trigger, 7 gamepad id, 8 d-pad, 9 mouse movement; a pressed picture sits
3 pixels below its normal one in the atlas (the d-pad's and the gamepad id's further pictures 3 pixels to the
right, one after the other); gamepad button codes are SDL's (0 south, 1 east, 2 west, 3 north, 4 back, 5 guide,
6 start, 7/8 stick clicks, 9/10 shoulders, 11-14 d-pad up/down/left/right). The canvas is ``overlay_width`` x
``overlay_height`` (else the elements' extent).

Azote template (``template.json`` + PNG files, ``"azote_template": 1``): ``name``, ``family``, ``size: [W, H]``
and ``elements``, each ``{type: picture|button|stick|trigger|dpad, pos, image, pressed, button | stick, radius,
fill, directions}``; an image is a file name, or ``{"file": NAME, "rect": [x, y, w, h]}`` for part of a sheet.

Files are untrusted: sizes, counts and every field are checked, and a bad file fails with `PresetError` naming the
file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

from azote.errors import AzoteError
from azote.files import write_atomic
from azote.gamepad import BUTTON_INDEX, BUTTONS, Gamepad

FAMILIES = ("xbox", "playstation", "switch", "retro")
CONTROLLER_TYPE = {"xbox": "xboxone", "playstation": "ps4", "switch": "switch", "retro": "generic"}
KINDS = ("picture", "button", "stick", "trigger", "dpad", "guide")
# SDL game controller button codes (input-overlay's gamepad codes) -> our buttons
SDL_BUTTONS = {0: "south", 1: "east", 2: "west", 3: "north", 4: "back", 5: "guide", 6: "start", 7: "left_thumb",
               8: "right_thumb", 9: "left_shoulder", 10: "right_shoulder", 11: "dpad_up", 12: "dpad_down",
               13: "dpad_left", 14: "dpad_right"}
DPAD_PICTURES = ("left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right")
INNER_BORDER = 3  # input-overlay: pixels between a picture and its pressed/next picture in the atlas

MAX_JSON_BYTES = 4 << 20
MAX_ELEMENTS = 512
MAX_IMAGE_PIXELS = 48_000_000  # an 8k x 6k atlas; more is a decompression bomb, not a skin
MAX_CANVAS = 8192
MAX_RADIUS = 4096


class PresetError(AzoteError, ValueError):
    """A preset that cannot be read or does not make sense; the message names the file and the field."""


@dataclass(frozen=True)
class Element:
    kind: str
    pos: tuple[float, float]
    pictures: dict[str, np.ndarray]  # RGBA uint8, straight alpha: "normal", "pressed", d-pad directions
    button: str | None = None  # buttons, triggers, guide
    stick: str | None = None  # "j_left" | "j_right"
    radius: float = 0.0  # stick travel in canvas pixels
    fill: str | None = None  # trigger fill direction: up | down | left | right; None: button mode
    name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.pictures["normal"].shape[:2]
        return w, h

    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the picture at rest, canvas pixels."""
        w, h = self.size
        return self.pos[0], self.pos[1], self.pos[0] + w, self.pos[1] + h


@dataclass(frozen=True)
class StickGeometry:
    centre: tuple[float, float]  # knob centre at rest, canvas pixels
    radius: float  # travel at full deflection
    knob: tuple[int, int]  # knob picture (w, h)


@dataclass
class Preset:
    name: str
    family: str
    size: tuple[int, int]  # canvas (W, H)
    elements: list[Element]
    source: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def controller_type(self) -> str:
        return CONTROLLER_TYPE[self.family]

    @cached_property
    def digest(self) -> str:
        """A hash of everything that is drawn (the key of per-preset caches)."""
        h = hashlib.sha256(json.dumps([self.size, self.family]).encode())
        for e in self.elements:
            h.update(json.dumps([e.kind, e.pos, e.button, e.stick, e.radius, e.fill, sorted(e.pictures)]).encode())
            for k in sorted(e.pictures):
                h.update(np.ascontiguousarray(e.pictures[k]).tobytes())
        return h.hexdigest()[:16]

    # --- geometry the labeller needs ---------------------------------------------------------------------------
    def button_regions(self) -> dict[str, list[tuple[float, float, float, float]]]:
        """Every button's boxes (x0, y0, x1, y1 in canvas pixels), one per element that shows it: where pressing
        it alone changes the drawing (four d-pad buttons drawn as four pictures of the whole d-pad give four arms;
        a d-pad element's direction gives that direction's arm), a stick click the knob's whole travel."""
        if "regions" in self._cache:
            return self._cache["regions"]
        k = min(1.0, 512 / max(self.size))
        rest = self.render(Gamepad.neutral(), k).astype(np.int16)
        H, W = rest.shape[:2]
        out: dict[str, list[tuple[float, float, float, float]]] = {}
        changed: dict[str, np.ndarray] = {}

        def changes(button: str, window: tuple[float, float, float, float]) -> tuple[float, ...] | None:
            """The box inside `window` (grown by 2 px) where pressing `button` alone changes the drawing."""
            if button not in changed:
                changed[button] = np.abs(self.render(Gamepad.make([button]), k).astype(np.int16) - rest).max(-1) > 2
            x0, y0, x1, y1 = window
            ix0, iy0 = max(0, int(np.floor(x0 * k)) - 2), max(0, int(np.floor(y0 * k)) - 2)
            ix1, iy1 = min(W, int(np.ceil(x1 * k)) + 2), min(H, int(np.ceil(y1 * k)) + 2)
            ys, xs = np.nonzero(changed[button][iy0:iy1, ix0:ix1])
            if not len(xs):
                return None
            return ((ix0 + xs.min()) / k, (iy0 + ys.min()) / k, (ix0 + xs.max() + 1) / k, (iy0 + ys.max() + 1) / k)

        for e in self.elements:
            x0, y0, x1, y1 = e.box()
            if e.kind in ("button", "trigger", "guide") and e.button:
                out.setdefault(e.button, []).append(changes(e.button, (x0, y0, x1, y1)) or (x0, y0, x1, y1))
            elif e.kind == "dpad":  # where a direction's picture differs, else the band of the element on that side
                w, h = x1 - x0, y1 - y0
                arms = {"dpad_up": (x0 + 0.3 * w, y0, x1 - 0.3 * w, y0 + 0.42 * h),
                        "dpad_down": (x0 + 0.3 * w, y1 - 0.42 * h, x1 - 0.3 * w, y1),
                        "dpad_left": (x0, y0 + 0.3 * h, x0 + 0.42 * w, y1 - 0.3 * h),
                        "dpad_right": (x1 - 0.42 * w, y0 + 0.3 * h, x1, y1 - 0.3 * h)}
                for b, band in arms.items():
                    out.setdefault(b, []).append(changes(b, (x0, y0, x1, y1)) or band)
            elif e.kind == "stick" and e.stick and "pressed" in e.pictures:
                r = e.radius
                out.setdefault("left_thumb" if e.stick == "j_left" else "right_thumb", []).append(
                    (x0 - r, y0 - r, x1 + r, y1 + r))
        self._cache["regions"] = out
        return out

    def sticks(self) -> dict[str, StickGeometry]:
        out = {}
        for e in self.elements:
            if e.kind == "stick" and e.stick and e.stick not in out:
                w, h = e.size
                out[e.stick] = StickGeometry((e.pos[0] + w / 2, e.pos[1] + h / 2), e.radius, (w, h))
        return out

    def visible_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in canvas pixels of what the preset draws at rest (the box a locator reports)."""
        if "visible" not in self._cache:
            img = self.neutral(min(1.0, 512 / max(self.size)))
            s = img.shape[1] / self.size[0]
            ys, xs = np.nonzero(img[..., 3] > 24)
            self._cache["visible"] = ((0.0, 0.0, float(self.size[0]), float(self.size[1])) if not len(xs) else
                                      (xs.min() / s, ys.min() / s, (xs.max() + 1) / s, (ys.max() + 1) / s))
        return self._cache["visible"]

    def extent(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): where anything can be drawn (the canvas, grown by any element outside it)."""
        x0, y0, x1, y1 = 0.0, 0.0, float(self.size[0]), float(self.size[1])
        for e in self.elements:
            bx0, by0, bx1, by1 = e.box()
            r = e.radius
            x0, y0, x1, y1 = min(x0, bx0 - r), min(y0, by0 - r), max(x1, bx1 + r), max(y1, by1 + r)
        return x0, y0, x1, y1

    # --- drawing ---------------------------------------------------------------------------------------------------
    def _scaled(self, scale: float) -> list[dict[str, np.ndarray]]:
        """Every picture premultiplied, float32, resized to `scale` (cached: a video draws thousands of frames)."""
        key = round(float(scale), 5)
        if key not in self._cache:
            if "full" not in self._cache:
                self._cache["full"] = [{k: _premultiplied(p) for k, p in e.pictures.items()} for e in self.elements]
            if len(self._cache) > 10:
                self._cache = {k: v for k, v in self._cache.items() if isinstance(k, str)}
            self._cache[key] = [{k: _resized(p, scale) for k, p in e.items()} for e in self._cache["full"]]
        return self._cache[key]

    def render(self, pad: Gamepad, scale: float = 1.0, analog: Mapping[str, float] | None = None) -> np.ndarray:
        """The overlay showing `pad`, RGBA uint8 [round(H * scale), round(W * scale), 4] (straight alpha;
        transparent where nothing is drawn). `analog` may give trigger travel in [0, 1] (default: the button)."""
        return _straight(self.render_premultiplied(pad, scale, analog))

    def render_premultiplied(self, pad: Gamepad, scale: float = 1.0,
                             analog: Mapping[str, float] | None = None) -> np.ndarray:
        """`render`'s picture as float32 RGBA in [0, 1] with premultiplied colour (what compositing needs)."""
        # bounded by the size drawn, not the factor: a pixel-art skin 17 px wide is shown 20x or more
        if not (math.isfinite(scale) and scale >= 0.005 and max(self.size) * scale <= MAX_CANVAS):
            raise ValueError(f"scale {scale}: draws {self.size[0] * scale:.0f} x {self.size[1] * scale:.0f} px, "
                             f"at most {MAX_CANVAS} a side")
        W, H = max(1, int(round(self.size[0] * scale))), max(1, int(round(self.size[1] * scale)))
        canvas = np.zeros((H, W, 4), np.float32)
        pressed = {b for b, v in zip(BUTTONS, pad.buttons) if v}
        sticks = {"j_left": pad.j_left, "j_right": pad.j_right}
        for e, pics in zip(self.elements, self._scaled(scale)):
            x, y = e.pos
            if e.kind == "picture":
                _over(canvas, pics["normal"], x * scale, y * scale)
            elif e.kind == "button":
                _over(canvas, pics["pressed" if e.button in pressed and "pressed" in pics else "normal"],
                      x * scale, y * scale)
            elif e.kind == "guide":
                if "guide" in pressed and "pressed" in pics:
                    _over(canvas, pics["pressed"], x * scale, y * scale)
                _over(canvas, pics["normal"], x * scale, y * scale)
            elif e.kind == "stick":
                v = sticks[e.stick or "j_left"]
                thumb = "left_thumb" if e.stick == "j_left" else "right_thumb"
                pic = pics["pressed"] if thumb in pressed and "pressed" in pics else pics["normal"]
                _over(canvas, pic, (x + float(v[0]) * e.radius) * scale, (y + float(v[1]) * e.radius) * scale)
            elif e.kind == "trigger":
                travel = float((analog or {}).get(e.button or "", 1.0 if e.button in pressed else 0.0))
                if e.fill is None or "pressed" not in pics:
                    key = "pressed" if travel >= 0.1 and "pressed" in pics else "normal"
                    _over(canvas, pics[key], x * scale, y * scale)
                else:
                    _over(canvas, pics["normal"], x * scale, y * scale)
                    if travel > 0:
                        _over_part(canvas, pics["pressed"], x * scale, y * scale, e.fill, travel)
            elif e.kind == "dpad":
                d = _dpad_picture(pressed)
                _over(canvas, pics[d] if d and d in pics else pics["normal"], x * scale, y * scale)
        return canvas

    def neutral(self, scale: float = 1.0) -> np.ndarray:
        return self.render(Gamepad.neutral(), scale)

    # --- writing ---------------------------------------------------------------------------------------------------
    def save_template(self, directory: str | os.PathLike) -> Path:
        """Writes the preset in Azote's template format: `template.json` + one PNG per picture. Returns the JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        elements = []
        for i, e in enumerate(self.elements):
            files = {}
            for key, pic in e.pictures.items():
                files[key] = f"e{i:03d}-{key}.png"
                write_atomic(directory / files[key], _png_bytes(pic))
            kind = "picture" if e.kind == "button" and not e.button else e.kind  # a key never pressed by a pad
            d: dict[str, Any] = {"type": kind, "id": e.name, "pos": [round(e.pos[0], 3), round(e.pos[1], 3)],
                                 "image": files["normal"]}
            if "pressed" in files and kind != "picture":
                d["pressed"] = files["pressed"]
            if e.kind in ("button", "trigger", "guide") and e.button:
                d["button"] = e.button
            if e.kind == "trigger":
                d["fill"] = e.fill
            if e.kind == "stick":
                d["stick"], d["radius"] = "left" if e.stick == "j_left" else "right", e.radius
            if e.kind == "dpad":
                d["directions"] = {k: files[k] for k in DPAD_PICTURES if k in files}
            elements.append(d)
        doc = {"azote_template": 1, "name": self.name, "family": self.family, "size": list(self.size),
               "elements": elements}
        write_atomic(directory / "template.json", json.dumps(doc, indent=1).encode())
        return directory / "template.json"

    def save_input_overlay(self, directory: str | os.PathLike, stem: str | None = None) -> Path:
        """Writes the preset in input-overlay's format: `<stem>.json` + `<stem>.png` (one atlas, pressed pictures
        below normal ones). Returns the JSON path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or _safe_stem(self.name)
        cells, elements = [], []
        for e in self.elements:
            cells.append(_atlas_cell(e))
        atlas, origins = _pack(cells)
        for e, (ox, oy) in zip(self.elements, origins):
            w, h = e.size
            d: dict[str, Any] = {"id": e.name or e.kind, "pos": [round(e.pos[0], 3), round(e.pos[1], 3)],
                                 "mapping": [ox, oy, w, h], "z_level": 1}
            if e.kind == "picture":
                d["type"] = 0
            elif e.kind == "button":
                d["type"], d["code"] = 2, _SDL_CODE[e.button or "south"]
            elif e.kind == "stick":
                d["type"], d["side"], d["stick_radius"] = 5, 0 if e.stick == "j_left" else 1, e.radius
            elif e.kind == "trigger":
                d["type"], d["side"] = 6, 0 if e.button == "left_trigger" else 1
                d["trigger_mode"] = e.fill is None
                d["direction"] = {"up": 1, "down": 2, "left": 3, "right": 4}[e.fill or "up"]
            elif e.kind == "dpad":
                d["type"] = 8
            elif e.kind == "guide":
                d["type"] = 7
            elements.append(d)
        doc = {"azote_family": self.family, "default_width": 0, "default_height": 0, "space_h": 0, "space_v": 0,
               "flags": 6, "overlay_width": self.size[0], "overlay_height": self.size[1], "elements": elements}
        write_atomic(directory / f"{stem}.png", _png_bytes(atlas))
        write_atomic(directory / f"{stem}.json", json.dumps(doc, indent=1).encode())
        return directory / f"{stem}.json"


_SDL_CODE = {b: c for c, b in SDL_BUTTONS.items()}


def _safe_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "preset"


# --- compositing ---------------------------------------------------------------------------------------------------
def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    f = rgba.astype(np.float32) * (1 / 255.0)
    f[..., :3] *= f[..., 3:4]
    return f


def _resized(f: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) <= 1e-6:
        return f
    h, w = f.shape[:2]
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    out = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[..., None]


def _over(canvas: np.ndarray, pic: np.ndarray, x: float, y: float) -> None:
    """Premultiplied `pic` over `canvas` with its top-left corner at (x, y), sub-pixel accurate."""
    ix, iy = math.floor(x), math.floor(y)
    fx, fy = x - ix, y - iy
    h, w = pic.shape[:2]
    if fx > 1e-3 or fy > 1e-3:
        m = np.array([[1, 0, fx], [0, 1, fy]], np.float32)
        pic = cv2.warpAffine(pic, m, (w + 1, h + 1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if pic.ndim == 2:
            pic = pic[..., None]
        h, w = h + 1, w + 1
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + w, W), min(iy + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    src = pic[y0 - iy:y1 - iy, x0 - ix:x1 - ix]
    dst = canvas[y0:y1, x0:x1]
    dst *= 1.0 - src[..., 3:4]
    dst += src


def _over_part(canvas: np.ndarray, pic: np.ndarray, x: float, y: float, fill: str, travel: float) -> None:
    """The part of `pic` that a trigger held by `travel` reveals, growing from the edge opposite to `fill`."""
    h, w = pic.shape[:2]
    travel = min(1.0, max(0.0, travel))
    if fill in ("up", "down"):
        n = int(h * travel)
        if n <= 0:
            return
        part, oy = (pic[h - n:], h - n) if fill == "up" else (pic[:n], 0)
        _over(canvas, part, x, y + oy)
    else:
        n = int(w * travel)
        if n <= 0:
            return
        part, ox = (pic[:, w - n:], w - n) if fill == "left" else (pic[:, :n], 0)
        _over(canvas, part, x + ox, y)


def _straight(canvas: np.ndarray) -> np.ndarray:
    a = canvas[..., 3:4]
    rgb = np.where(a > 1e-6, canvas[..., :3] / np.maximum(a, 1e-6), 0.0)
    return (np.concatenate([rgb, a], axis=-1).clip(0, 1) * 255 + 0.5).astype(np.uint8)


def _dpad_picture(pressed: set[str]) -> str | None:
    up, down, left, right = ("dpad_up" in pressed, "dpad_down" in pressed, "dpad_left" in pressed,
                             "dpad_right" in pressed)
    if up:
        return "up_left" if left else "up_right" if right else "up"
    if down:
        return "down_left" if left else "down_right" if right else "down"
    if right:
        return "right"
    if left:
        return "left"
    return None


# --- reading -------------------------------------------------------------------------------------------------------
def _read_png(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise PresetError(f"{what}: image {path.name} not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS or w > 4 * MAX_CANVAS or h > 4 * MAX_CANVAS:
                raise PresetError(f"{what}: image {path.name} is {w}x{h} pixels, more than a skin needs "
                                  f"(at most {MAX_IMAGE_PIXELS})")
            return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    except PresetError:
        raise
    except Image.DecompressionBombError:
        raise PresetError(f"{what}: image {path.name} claims more pixels than a skin needs "
                          f"(at most {MAX_IMAGE_PIXELS})") from None
    except Exception as exc:  # PIL raises many kinds for broken files
        raise PresetError(f"{what}: image {path.name} cannot be read ({type(exc).__name__}: {exc})") from None


def _num(v: Any, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise PresetError(f"{what}: expected a number, got {json.dumps(v)[:40]}")
    if not lo <= float(v) <= hi:
        raise PresetError(f"{what}: {v} is outside [{lo}, {hi}]")
    return float(v)


def _pair(v: Any, what: str, lo: float, hi: float) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) < 2:
        raise PresetError(f"{what}: expected [x, y], got {json.dumps(v)[:40]}")
    return _num(v[0], f"{what}[0]", lo, hi), _num(v[1], f"{what}[1]", lo, hi)


def _rect(v: Any, what: str) -> tuple[int, int, int, int]:
    if not isinstance(v, list) or len(v) < 4:
        raise PresetError(f"{what}: expected [x, y, w, h], got {json.dumps(v)[:40]}")
    x, y = (int(_num(v[i], f"{what}[{i}]", -4 * MAX_CANVAS, 4 * MAX_CANVAS)) for i in (0, 1))
    w, h = (int(_num(v[i], f"{what}[{i}]", 0, 4 * MAX_CANVAS)) for i in (2, 3))
    return x, y, w, h


def _cut(atlas: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray | None:
    """The atlas' pixels of `rect` (transparent where it lies outside); None when empty."""
    x, y, w, h = rect
    if w <= 0 or h <= 0:
        return None
    out = np.zeros((h, w, 4), np.uint8)
    H, W = atlas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 < x1 and y0 < y1:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = atlas[y0:y1, x0:x1]
    return out


def _load_json(path: Path) -> dict:
    from azote.safeload import JsonFileError, read_json

    try:
        doc = read_json(path, MAX_JSON_BYTES)
    except JsonFileError as exc:
        raise PresetError(str(exc)) from None
    if not isinstance(doc, dict):
        raise PresetError(f"{path}: a preset is a JSON object")
    return doc


def _atlas_for(json_path: Path, doc: dict) -> Path:
    """input-overlay keeps the atlas path in OBS's settings, not in the preset: take the PNG beside the JSON with the
    same stem, else the only PNG there, else the largest one."""
    if isinstance(doc.get("azote_atlas"), str):
        return json_path.parent / Path(doc["azote_atlas"]).name
    same = json_path.with_suffix(".png")
    if same.is_file():
        return same
    pngs = sorted(json_path.parent.glob("*.png"))
    pngs = [p for p in pngs if "preview" not in p.name.lower()] or pngs
    if not pngs:
        raise PresetError(f"{json_path}: no atlas PNG beside the preset")
    return max(pngs, key=lambda p: p.stat().st_size) if len(pngs) > 1 else pngs[0]


def infer_family(name: str, elements: Iterable[Element]) -> str:
    """The controller family of a preset without one: from its name, else from its layout (no sticks: a retro
    pad; sticks level with each other: PlayStation; else Xbox)."""
    n = name.lower().replace("-", " ").replace("_", " ")
    words = {"playstation": ("dualsense", "dualshock", "ds3", "ds4", "ps3", "ps4", "ps5", "playstation", "psx"),
             "switch": ("switch", "joycon", "joy con", "nintendo pro", "pro controller", "procon"),
             "xbox": ("xbox", "xb1", "xb360", "x360"),
             "retro": ("snes", "nes", "famicom", "genesis", "mega drive", "megadrive", "gameboy", "game boy", "n64",
                       "gamecube", "saturn", "retro", "arcade", "hitbox", "8bitdo")}
    for fam, keys in words.items():
        if any(k in n for k in keys):
            return fam
    sticks = {e.stick: e for e in elements if e.kind == "stick"}
    if len(sticks) < 2:
        return "retro"
    ly, ry = sticks["j_left"].pos[1], sticks["j_right"].pos[1]
    return "playstation" if abs(ly - ry) < 0.25 * sticks["j_left"].size[1] + 1 else "xbox"


def load_preset(path: str | os.PathLike, family: str | None = None) -> Preset:
    """A preset from a directory (its one JSON file, or `template.json`) or a JSON file, in either format."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "template.json"] if (path / "template.json").is_file() else sorted(path.glob("*.json"))
        if not candidates:
            raise PresetError(f"{path}: no preset JSON in this directory")
        if len(candidates) > 1:
            raise PresetError(f"{path}: {len(candidates)} preset JSON files here ({', '.join(c.name for c in candidates[:4])}); "
                              "name one")
        path = candidates[0]
    if not path.is_file():
        raise PresetError(f"{path}: no such preset")
    doc = _load_json(path)
    if family is not None and family not in FAMILIES:
        raise PresetError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if "azote_template" in doc:
        return _load_template(path, doc, family)
    return _load_input_overlay(path, doc, family)


def _elements_list(path: Path, doc: dict) -> list:
    els = doc.get("elements")
    if not isinstance(els, list) or not els:
        raise PresetError(f"{path}: elements: expected a non-empty list")
    if len(els) > MAX_ELEMENTS:
        raise PresetError(f"{path}: elements: {len(els)} elements, at most {MAX_ELEMENTS}")
    return els


def _finish(path: Path, name: str, family: str | None, family_field: Any, size: tuple[int, int],
            elements: list[Element]) -> Preset:
    if not any(e.kind != "picture" for e in elements):
        raise PresetError(f"{path}: no gamepad element (button, stick, trigger or d-pad): not a controller overlay")
    if family is None and isinstance(family_field, str):
        if family_field not in FAMILIES:
            raise PresetError(f"{path}: family: must be one of {', '.join(FAMILIES)}, got {family_field!r}")
        family = family_field
    return Preset(name=name, family=family or infer_family(f"{name} {path.parent.name}", elements), size=size,
                  elements=elements, source=str(path))


def _load_input_overlay(path: Path, doc: dict, family: str | None) -> Preset:
    els = _elements_list(path, doc)
    atlas = _read_png(_atlas_for(path, doc), str(path))
    elements: list[Element] = []
    for i, raw in enumerate(els):
        what = f"{path}: elements[{i}]"
        if not isinstance(raw, dict):
            raise PresetError(f"{what}: expected an object")
        t = raw.get("type")
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 9:
            raise PresetError(f"{what}.type: expected an element type 0-9, got {json.dumps(t)[:20]}")
        pos = _pair(raw.get("pos"), f"{what}.pos", -MAX_CANVAS, MAX_CANVAS)
        x, y, w, h = _rect(raw.get("mapping"), f"{what}.mapping")
        normal = _cut(atlas, (x, y, w, h))
        if normal is None:
            continue  # an empty picture draws nothing
        below = _cut(atlas, (x, y + h + INNER_BORDER, w, h))
        name = str(raw.get("id", ""))[:80]
        side = raw.get("side", 0)
        if t in (5, 6) and side not in (0, 1):
            raise PresetError(f"{what}.side: expected 0 (left) or 1 (right), got {json.dumps(side)[:20]}")
        if t in (0, 4, 9):  # texture; wheel and mouse movement are shown at rest
            elements.append(Element("picture", pos, {"normal": normal}, name=name))
        elif t in (1, 3):  # keyboard and mouse keys: never a gamepad button
            elements.append(Element("button", pos, {"normal": normal}, name=name))
        elif t == 2:
            code = raw.get("code", -1)
            if isinstance(code, bool) or not isinstance(code, int):
                raise PresetError(f"{what}.code: expected an SDL button code, got {json.dumps(code)[:20]}")
            pics = {"normal": normal} | ({"pressed": below} if below is not None else {})
            elements.append(Element("button", pos, pics, button=SDL_BUTTONS.get(code), name=name))
        elif t == 5:
            radius = _num(raw.get("stick_radius", 0), f"{what}.stick_radius", 0, MAX_RADIUS)
            pics = {"normal": normal} | ({"pressed": below} if below is not None else {})
            elements.append(Element("stick", pos, pics, stick="j_left" if side == 0 else "j_right", radius=radius,
                                    name=name))
        elif t == 6:
            button_mode = bool(raw.get("trigger_mode", False))
            direction = raw.get("direction", 1)
            fill = None if button_mode else {1: "up", 2: "down", 3: "left", 4: "right"}.get(direction)
            if not button_mode and fill is None:
                raise PresetError(f"{what}.direction: expected 1-4 (up, down, left, right), got "
                                  f"{json.dumps(direction)[:20]}")
            pics = {"normal": normal} | ({"pressed": below} if below is not None else {})
            elements.append(Element("trigger", pos, pics, button="left_trigger" if side == 0 else "right_trigger",
                                    fill=fill, name=name))
        elif t == 7:
            player = _cut(atlas, (x + (w + INNER_BORDER), y, w, h))
            guide = _cut(atlas, (x + 4 * (w + INNER_BORDER), y, w, h))
            pics = {"normal": player if player is not None else normal}
            if guide is not None:
                pics["pressed"] = guide
            elements.append(Element("guide", pos, pics, button="guide", name=name))
        elif t == 8:
            pics = {"normal": normal}
            for k, d in enumerate(DPAD_PICTURES, start=1):
                p = _cut(atlas, (x + k * (w + INNER_BORDER), y, w, h))
                if p is not None:
                    pics[d] = p
            elements.append(Element("dpad", pos, pics, name=name))
    W, H = doc.get("overlay_width", 0), doc.get("overlay_height", 0)
    if not (isinstance(W, int) and isinstance(H, int) and 0 < W <= MAX_CANVAS and 0 < H <= MAX_CANVAS):
        x1 = max((e.box()[2] for e in elements), default=1)
        y1 = max((e.box()[3] for e in elements), default=1)
        W, H = int(math.ceil(min(x1, MAX_CANVAS))), int(math.ceil(min(y1, MAX_CANVAS)))
    return _finish(path, path.stem, family, doc.get("azote_family"), (W, H), elements)


def _template_image(path: Path, spec: Any, what: str, sheets: dict[str, np.ndarray]) -> np.ndarray | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        file, rect = spec, None
    elif isinstance(spec, dict) and isinstance(spec.get("file"), str):
        file, rect = spec["file"], _rect(spec.get("rect"), f"{what}.rect")
    else:
        raise PresetError(f"{what}: expected a file name or {{\"file\", \"rect\"}}, got {json.dumps(spec)[:40]}")
    name = Path(file).name  # never outside the preset's directory
    if name not in sheets:
        if len(sheets) >= 64:
            raise PresetError(f"{what}: more than 64 image files")
        sheets[name] = _read_png(path.parent / name, what)
    img = sheets[name]
    return img if rect is None else _cut(img, rect)


def _load_template(path: Path, doc: dict, family: str | None) -> Preset:
    if doc.get("azote_template") != 1:
        raise PresetError(f"{path}: azote_template: version {json.dumps(doc.get('azote_template'))[:20]} is not 1")
    els = _elements_list(path, doc)
    sheets: dict[str, np.ndarray] = {}
    W, H = _pair(doc.get("size"), f"{path}: size", 1, MAX_CANVAS)
    elements: list[Element] = []
    for i, raw in enumerate(els):
        what = f"{path}: elements[{i}]"
        if not isinstance(raw, dict):
            raise PresetError(f"{what}: expected an object")
        kind = raw.get("type")
        if kind not in KINDS:
            raise PresetError(f"{what}.type: expected one of {', '.join(KINDS)}, got {json.dumps(kind)[:20]}")
        pos = _pair(raw.get("pos", [0, 0]), f"{what}.pos", -MAX_CANVAS, MAX_CANVAS)
        normal = _template_image(path, raw.get("image"), f"{what}.image", sheets)
        if normal is None:
            raise PresetError(f"{what}.image: missing")
        pics = {"normal": normal}
        pressed = _template_image(path, raw.get("pressed"), f"{what}.pressed", sheets)
        if pressed is not None:
            if pressed.shape != normal.shape:
                raise PresetError(f"{what}.pressed: {pressed.shape[1]}x{pressed.shape[0]}, but the image is "
                                  f"{normal.shape[1]}x{normal.shape[0]}")
            pics["pressed"] = pressed
        button = stick = fill = None
        radius = 0.0
        if kind in ("button", "trigger", "guide"):
            button = raw.get("button", "guide" if kind == "guide" else None)
            if button not in BUTTON_INDEX:
                raise PresetError(f"{what}.button: expected one of {', '.join(BUTTONS)}, got {json.dumps(button)[:30]}")
            if kind == "trigger":
                fill = raw.get("fill")
                if fill not in (None, "up", "down", "left", "right"):
                    raise PresetError(f"{what}.fill: expected up, down, left, right or null, got {json.dumps(fill)[:20]}")
        elif kind == "stick":
            stick = {"left": "j_left", "right": "j_right", "j_left": "j_left", "j_right": "j_right"}.get(raw.get("stick"))
            if stick is None:
                raise PresetError(f"{what}.stick: expected left or right, got {json.dumps(raw.get('stick'))[:20]}")
            radius = _num(raw.get("radius"), f"{what}.radius", 0, MAX_RADIUS)
        elif kind == "dpad":
            dirs = raw.get("directions", {})
            if not isinstance(dirs, dict) or set(dirs) - set(DPAD_PICTURES):
                raise PresetError(f"{what}.directions: expected pictures named {', '.join(DPAD_PICTURES)}")
            for d, spec in dirs.items():
                p = _template_image(path, spec, f"{what}.directions.{d}", sheets)
                if p is not None:
                    pics[d] = p
        elements.append(Element(kind, pos, pics, button=button, stick=stick, radius=radius, fill=fill,
                                name=str(raw.get("id", ""))[:80]))
    name = doc.get("name") if isinstance(doc.get("name"), str) else path.parent.name
    return _finish(path, name[:80], family, doc.get("family"), (int(W), int(H)), elements)


# --- writing helpers -----------------------------------------------------------------------------------------------
def _atlas_cell(e: Element) -> list[list[np.ndarray]]:
    """The pictures of one element as input-overlay lays them out: rows of pictures (a pressed picture in the row
    below its normal one; d-pad and gamepad-id pictures side by side)."""
    n = e.pictures["normal"]
    blank = np.zeros_like(n)
    if e.kind == "dpad":
        return [[n] + [e.pictures.get(d, n) for d in DPAD_PICTURES]]
    if e.kind == "guide":
        return [[blank, n, blank, blank, e.pictures.get("pressed", blank)]]
    if "pressed" in e.pictures:
        return [[n], [e.pictures["pressed"]]]
    return [[n]]


def _pack(cells: list[list[list[np.ndarray]]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Shelf-packs every element's block of pictures into one atlas; returns it and each block's origin."""
    blocks = []
    for rows in cells:
        h, w = rows[0][0].shape[:2]
        bw = len(rows[0]) * (w + INNER_BORDER)
        bh = len(rows) * (h + INNER_BORDER)
        blocks.append((bw, bh))
    width = max(max(b[0] for b in blocks), 1024)
    origins, x, y, shelf = [], 1, 1, 0
    for bw, bh in blocks:
        if x + bw > width:
            x, y, shelf = 1, y + shelf, 0
        origins.append((x, y))
        x += bw
        shelf = max(shelf, bh)
    atlas = np.zeros((y + shelf + 1, width + 2, 4), np.uint8)
    for rows, (ox, oy) in zip(cells, origins):
        h, w = rows[0][0].shape[:2]
        for r, row in enumerate(rows):
            for c, pic in enumerate(row):
                px, py = ox + c * (w + INNER_BORDER), oy + r * (h + INNER_BORDER)
                atlas[py:py + h, px:px + w] = pic
    return atlas, origins


def _png_bytes(rgba: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()
