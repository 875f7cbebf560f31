"""Controller overlay skins drawn by our code, in any gamepad state.

A skin is a parametric description: a family (layout and body shape: Xbox-, PlayStation-, Switch- or retro-style),
a palette, filled or outline-only, how a pressed button looks (fill, glow, offset) and how a stick shows its
position (a knob in a ring, a dot, a line). `SKINS` holds 72 of them; every sixth is held out of the parser's
training and used only to measure it.

Everything is drawn in *template coordinates*: a canvas of `TEMPLATE_W` x `TEMPLATE_H` pixels at scale 1. The
layout (`Layout`) gives each stick well and button region there, which is what the parser's targets and its
decoding use once a located overlay has been warped back onto the template.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from azote.gamepad import BUTTONS, Gamepad

TEMPLATE_W, TEMPLATE_H = 192, 120
FAMILIES = ("xbox", "playstation", "switch", "retro")
CONTROLLER_TYPE = {"xbox": "xboxone", "playstation": "ps4", "switch": "switch", "retro": "generic"}
PRESSED_STYLES = ("fill", "glow", "offset")
STICK_STYLES = ("knob", "dot", "line")
STICK_TRAVEL = 0.7  # knob travel as a share of the well radius

Color = tuple[int, int, int]
PALETTES: tuple[dict[str, Color], ...] = (
    {"body": (38, 38, 42), "line": (235, 235, 235), "button": (90, 90, 96), "pressed": (255, 214, 0)},
    {"body": (236, 236, 240), "line": (30, 30, 30), "button": (170, 170, 178), "pressed": (230, 40, 40)},
    {"body": (20, 40, 110), "line": (120, 220, 255), "button": (40, 70, 160), "pressed": (80, 255, 120)},
    {"body": (110, 20, 30), "line": (255, 200, 120), "button": (160, 50, 60), "pressed": (90, 200, 255)},
)
# printed on the buttons: real overlays carry these, and their corners are what the locator's features latch on to
LABELS = {
    "xbox": {"north": "Y", "east": "B", "south": "A", "west": "X", "left_shoulder": "LB", "right_shoulder": "RB",
             "left_trigger": "LT", "right_trigger": "RT", "back": "", "start": "", "guide": "X"},
    "playstation": {"north": "^", "east": "O", "south": "X", "west": "#", "left_shoulder": "L1",
                    "right_shoulder": "R1", "left_trigger": "L2", "right_trigger": "R2", "guide": "PS"},
    "switch": {"north": "X", "east": "A", "south": "B", "west": "Y", "left_shoulder": "L", "right_shoulder": "R",
               "left_trigger": "ZL", "right_trigger": "ZR", "back": "-", "start": "+", "guide": "H"},
    "retro": {"north": "X", "east": "A", "south": "B", "west": "Y", "left_shoulder": "L", "right_shoulder": "R",
              "left_trigger": "L2", "right_trigger": "R2", "back": "SEL", "start": "STA", "guide": "P1"},
}
FACE_COLORS = {"north": (240, 200, 40), "east": (220, 50, 50), "south": (60, 190, 70), "west": (60, 110, 230)}


@dataclass(frozen=True)
class Skin:
    name: str
    family: str
    palette: int
    filled: bool
    pressed_style: str
    stick_style: str
    coloured_face: bool
    body_alpha: int = 255  # < 255: a see-through body (buttons and sticks stay opaque)
    colors: tuple[Color, Color, Color, Color] | None = None  # body, line, button, pressed: overrides `palette`

    @property
    def controller_type(self) -> str:
        return CONTROLLER_TYPE[self.family]

    @property
    def palette_colors(self) -> dict[str, Color]:
        if self.colors is not None:
            return dict(zip(("body", "line", "button", "pressed"), self.colors))
        return PALETTES[self.palette]


@dataclass(frozen=True)
class Layout:
    """Where things are in template coordinates: wells as (cx, cy, radius), buttons as (x0, y0, x1, y1) boxes."""

    wells: dict[str, tuple[float, float, float]]
    buttons: dict[str, tuple[float, float, float, float]]
    round_buttons: frozenset[str]


def _box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@lru_cache(maxsize=None)
def layout(family: str) -> Layout:
    W, H = TEMPLATE_W, TEMPLATE_H
    p = {  # family -> positions as fractions of the canvas
        "xbox": dict(ls=(0.25, 0.45), rs=(0.62, 0.74), dpad=(0.37, 0.75), face=(0.76, 0.45), back=(0.41, 0.45),
                     start=(0.59, 0.45), guide=(0.5, 0.28)),
        "playstation": dict(ls=(0.36, 0.76), rs=(0.64, 0.76), dpad=(0.22, 0.46), face=(0.78, 0.46),
                            back=(0.34, 0.30), start=(0.66, 0.30), guide=(0.5, 0.60)),
        "switch": dict(ls=(0.24, 0.40), rs=(0.68, 0.72), dpad=(0.30, 0.75), face=(0.77, 0.40), back=(0.40, 0.30),
                       start=(0.60, 0.30), guide=(0.56, 0.52)),
        "retro": dict(ls=(0.40, 0.76), rs=(0.60, 0.76), dpad=(0.20, 0.50), face=(0.80, 0.50), back=(0.43, 0.46),
                      start=(0.57, 0.46), guide=(0.5, 0.28)),
    }[family]
    well_r = 0.105 * W if family != "retro" else 0.085 * W
    wells = {s: (p[k][0] * W, p[k][1] * H, well_r) for s, k in (("j_left", "ls"), ("j_right", "rs"))}
    b: dict[str, tuple[float, float, float, float]] = {}
    dx, dy = p["dpad"][0] * W, p["dpad"][1] * H
    arm, thick = 0.055 * W, 0.05 * W
    b["dpad_up"] = _box(dx, dy - arm, thick, arm)
    b["dpad_down"] = _box(dx, dy + arm, thick, arm)
    b["dpad_left"] = _box(dx - arm, dy, arm, thick)
    b["dpad_right"] = _box(dx + arm, dy, arm, thick)
    fx, fy = p["face"][0] * W, p["face"][1] * H
    off, r = 0.058 * W, 0.034 * W
    for name, (ox, oy) in {"north": (0, -off), "south": (0, off), "west": (-off, 0), "east": (off, 0)}.items():
        b[name] = _box(fx + ox, fy + oy, 2 * r, 2 * r)
    small = 0.022 * W
    for name in ("back", "start", "guide"):
        cx, cy = p[name][0] * W, p[name][1] * H
        b[name] = _box(cx, cy, 2 * small * (1.6 if name == "guide" else 1.0), 2 * small * (1.6 if name == "guide" else 1.0))
    for side, x in (("left", 0.25 * W), ("right", 0.75 * W)):
        b[f"{side}_shoulder"] = _box(x, 0.165 * H, 0.22 * W, 0.075 * H)
        b[f"{side}_trigger"] = _box(x, 0.055 * H, 0.16 * W, 0.085 * H)
    for stick, thumb in (("j_left", "left_thumb"), ("j_right", "right_thumb")):
        cx, cy, wr = wells[stick]
        b[thumb] = _box(cx, cy, 2 * wr, 2 * wr)
    rounds = frozenset({"north", "south", "east", "west", "back", "start", "guide", "left_thumb", "right_thumb"})
    assert set(b) == set(BUTTONS)
    return Layout(wells=wells, buttons=b, round_buttons=rounds)


def _make_skins() -> dict[str, Skin]:
    skins = {}
    for i in range(72):
        family = FAMILIES[i % 4]
        skin = Skin(name=f"{family}-{i:02d}", family=family, palette=(i // 4) % 4, filled=(i // 16) % 2 == 0,
                    pressed_style=PRESSED_STYLES[(i // 2) % 3], stick_style=STICK_STYLES[(i // 6) % 3],
                    coloured_face=(i // 3) % 2 == 0, body_alpha=150 if i % 3 == 1 else 255)
        skins[skin.name] = skin
    return skins


SKINS: dict[str, Skin] = _make_skins()
HELDOUT_SKINS = tuple(n for i, n in enumerate(SKINS) if (i // 4) % 6 == 5)  # 12: three of each family
TRAIN_SKINS = tuple(n for n in SKINS if n not in HELDOUT_SKINS)


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def random_skin(rng: np.random.Generator, family: str | None = None) -> Skin:
    """A skin outside the library: random colours (line contrasting with the body, a pressed colour unlike the
    button colour) and random styles. Only for the parser's training data: many more looks than the library's
    training skins, so that the held-out library skins are new to it without being strange."""
    family = family or FAMILIES[int(rng.integers(len(FAMILIES)))]
    body = rng.integers(0, 256, 3)
    line = rng.integers(0, 256, 3)
    for _ in range(20):
        if abs(_luma(line) - _luma(body)) > 90:
            break
        line = rng.integers(0, 256, 3)
    button = (body * rng.uniform(0.3, 0.7) + line * rng.uniform(0.0, 0.4)).clip(0, 255).astype(int)
    pressed = rng.integers(0, 256, 3)
    for _ in range(20):
        if np.abs(pressed - button).sum() > 200 and np.abs(pressed - body).sum() > 150:
            break
        pressed = rng.integers(0, 256, 3)
    colors = tuple(tuple(int(v) for v in c) for c in (body, line, button, pressed))
    return Skin(name=f"random-{family}", family=family, palette=int(rng.integers(len(PALETTES))),
                filled=bool(rng.random() < 0.6), pressed_style=PRESSED_STYLES[int(rng.integers(3))],
                stick_style=STICK_STYLES[int(rng.integers(3))], coloured_face=bool(rng.random() < 0.5),
                body_alpha=int(rng.choice([255, 255, 200, 150])), colors=colors)  # type: ignore[arg-type]


def get_skin(name: str) -> Skin:
    if name not in SKINS:
        raise KeyError(f"unknown skin {name!r}; skins are {', '.join(list(SKINS)[:6])}, ... ({len(SKINS)} in all; "
                       "`azote overlay skins` lists them)")
    return SKINS[name]


def knob_position(skin_or_family: Skin | str, stick: str, value: np.ndarray) -> tuple[float, float]:
    """Where the stick's knob is drawn, in template coordinates (y negative = up)."""
    family = skin_or_family.family if isinstance(skin_or_family, Skin) else skin_or_family
    cx, cy, r = layout(family).wells[stick]
    return cx + float(value[0]) * r * STICK_TRAVEL, cy + float(value[1]) * r * STICK_TRAVEL


def _pt(x: float, y: float, s: float) -> tuple[int, int]:
    return int(round(x * s * 16)), int(round(y * s * 16))  # 4 fractional bits: sub-pixel accurate drawing


def render(skin: Skin, pad: Gamepad, scale: float = 1.0) -> np.ndarray:
    """The overlay as RGBA uint8 [H, W, 4] (transparent where there is no controller)."""
    W, H = int(round(TEMPLATE_W * scale)), int(round(TEMPLATE_H * scale))
    img = np.zeros((H, W, 4), np.uint8)
    pal = skin.palette_colors
    lay = layout(skin.family)
    lw = max(1, int(round(1.6 * scale)))
    aa, sh = cv2.LINE_AA, 4

    def col(c: Color) -> tuple[int, int, int, int]:
        return (int(c[0]), int(c[1]), int(c[2]), 255)

    def rect(box, color, fill: bool, radius_frac: float = 0.25) -> None:
        x0, y0, x1, y1 = box
        if fill:
            cv2.rectangle(img, _pt(x0, y0, scale), _pt(x1, y1, scale), col(color), -1, aa, sh)
        cv2.rectangle(img, _pt(x0, y0, scale), _pt(x1, y1, scale), col(pal["line"]), lw, aa, sh)

    def circle(cx, cy, r, color, fill: bool, line: Color | None = None) -> None:
        if fill:
            cv2.circle(img, _pt(cx, cy, scale), int(r * scale * 16), col(color), -1, aa, sh)
        cv2.circle(img, _pt(cx, cy, scale), int(r * scale * 16), col(line or pal["line"]), lw, aa, sh)

    # body
    body = {"xbox": (0.06, 0.22, 0.94, 0.97), "playstation": (0.04, 0.22, 0.96, 0.95),
            "switch": (0.08, 0.22, 0.92, 0.97), "retro": (0.05, 0.24, 0.95, 0.92)}[skin.family]
    bx0, by0, bx1, by1 = body[0] * TEMPLATE_W, body[1] * TEMPLATE_H, body[2] * TEMPLATE_W, body[3] * TEMPLATE_H
    if skin.family == "retro":
        rect((bx0, by0, bx1, by1), pal["body"], skin.filled)
    else:
        rr = 0.16 * TEMPLATE_H
        grips = [(bx0 + rr, by0 + rr), (bx1 - rr, by0 + rr), (bx0 + 1.3 * rr, by1 - rr), (bx1 - 1.3 * rr, by1 - rr)]
        if skin.filled:
            cv2.rectangle(img, _pt(bx0 + rr, by0, scale), _pt(bx1 - rr, by1 - 0.4 * rr, scale), col(pal["body"]), -1, aa, sh)
            cv2.rectangle(img, _pt(bx0, by0 + rr, scale), _pt(bx1, by1 - rr, scale), col(pal["body"]), -1, aa, sh)
            for gx, gy in grips:
                cv2.circle(img, _pt(gx, gy, scale), int(rr * scale * 16), col(pal["body"]), -1, aa, sh)
        if skin.family == "switch":  # two joy-con halves in their own colours
            half = (200, 60, 60) if skin.palette % 2 else (40, 150, 220)
            cv2.rectangle(img, _pt(bx0, by0, scale), _pt(TEMPLATE_W * 0.46, by1, scale), col(half), lw + 1, aa, sh)
            cv2.rectangle(img, _pt(TEMPLATE_W * 0.54, by0, scale), _pt(bx1, by1, scale),
                          col((half[2], half[1], half[0])), lw + 1, aa, sh)
        else:
            cv2.line(img, _pt(bx0 + rr, by0, scale), _pt(bx1 - rr, by0, scale), col(pal["line"]), lw, aa, sh)
            for gx, gy in grips[2:]:
                cv2.circle(img, _pt(gx, gy + 0.2 * rr, scale), int(rr * scale * 16), col(pal["line"]), lw, aa, sh)
    if skin.body_alpha < 255:
        img[..., 3] = (img[..., 3].astype(np.uint16) * skin.body_alpha // 255).astype(np.uint8)

    pressed = pad.buttons.astype(bool)
    for name, box in lay.buttons.items():
        if name in ("left_thumb", "right_thumb"):
            continue
        on = bool(pressed[BUTTONS.index(name)])
        base = FACE_COLORS[name] if (skin.coloured_face and name in FACE_COLORS) else pal["button"]
        x0, y0, x1, y1 = box
        if on and skin.pressed_style == "offset":
            shift = 0.012 * TEMPLATE_H * 2.5
            y0, y1 = y0 + shift, y1 + shift
        colour = pal["pressed"] if on else base
        if on and skin.pressed_style == "glow":
            grow = 0.018 * TEMPLATE_W
            if name in lay.round_buttons:
                circle((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 + grow, pal["pressed"], True, pal["pressed"])
            else:
                rect((x0 - grow, y0 - grow, x1 + grow, y1 + grow), pal["pressed"], True)
        if on and skin.pressed_style == "offset":
            colour = tuple(int(c * 0.55) for c in pal["pressed"])  # pushed in: darker and lower
        if name in lay.round_buttons:
            circle((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, colour, on or skin.filled or name in FACE_COLORS)
        else:
            rect((x0, y0, x1, y1), colour, on or skin.filled)
        text = LABELS[skin.family].get(name, "")
        if text:
            size = 0.6 * (y1 - y0) * scale / 22 / max(1.0, len(text) / 2)  # Hershey glyphs are ~22 px at 1.0
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
            org = (int(((x0 + x1) / 2) * scale - tw / 2), int(((y0 + y1) / 2) * scale + th / 2))
            ink = pal["body"] if (on or skin.filled or name in FACE_COLORS) else pal["line"]
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, size, col(ink), max(1, int(scale)), aa)

    for stick, thumb in (("j_left", "left_thumb"), ("j_right", "right_thumb")):
        cx, cy, wr = lay.wells[stick]
        value = pad.j_left if stick == "j_left" else pad.j_right
        kx, ky = knob_position(skin, stick, value)
        on = bool(pressed[BUTTONS.index(thumb)])
        knob_colour = pal["pressed"] if on else pal["line"]
        circle(cx, cy, wr, pal["button"], skin.filled)
        if skin.stick_style == "knob":
            circle(kx, ky, wr * 0.5, knob_colour if on else pal["button"], True, pal["line"])
            cv2.circle(img, _pt(kx, ky, scale), int(wr * 0.18 * scale * 16), col(knob_colour), -1, aa, sh)
        elif skin.stick_style == "dot":
            if on:
                circle(cx, cy, wr * 0.85, pal["pressed"], False, pal["pressed"])
            cv2.circle(img, _pt(kx, ky, scale), int(wr * 0.26 * scale * 16), col(knob_colour), -1, aa, sh)
        else:  # line from the centre to the stick's position
            cv2.line(img, _pt(cx, cy, scale), _pt(kx, ky, scale), col(knob_colour), lw + 1, aa, sh)
            cv2.circle(img, _pt(kx, ky, scale), int(wr * 0.2 * scale * 16), col(knob_colour), -1, aa, sh)
            if on:
                cv2.circle(img, _pt(cx, cy, scale), int(wr * 0.3 * scale * 16), col(pal["pressed"]), -1, aa, sh)
    return img


def neutral_template(skin: Skin) -> np.ndarray:
    """The skin at rest, RGBA, at scale 1 (what the locator matches against)."""
    return render(skin, Gamepad.neutral())


def target_maps(skin: Skin, pad: Gamepad, scale: float) -> np.ndarray:
    """The parser's per-pixel targets at `scale` of the template: float32 [2 + 17, h, w]: a blob at each knob,
    then each button's region where that button is pressed."""
    h, w = int(round(TEMPLATE_H * scale)), int(round(TEMPLATE_W * scale))
    lay = layout(skin.family)
    out = np.zeros((2 + len(BUTTONS), h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = (xx + 0.5) / scale, (yy + 0.5) / scale  # pixel centres in template coordinates
    for i, stick in enumerate(("j_left", "j_right")):
        kx, ky = knob_position(skin, stick, pad.j_left if stick == "j_left" else pad.j_right)
        sigma = lay.wells[stick][2] * 0.16
        out[i] = np.exp(-((tx - kx) ** 2 + (ty - ky) ** 2) / (2 * sigma * sigma))
    for j, name in enumerate(BUTTONS):
        if pad.buttons[j]:
            x0, y0, x1, y1 = (v * scale for v in lay.buttons[name])
            out[2 + j, max(0, int(y0)):int(np.ceil(y1)), max(0, int(x0)):int(np.ceil(x1))] = 1.0
    return out
