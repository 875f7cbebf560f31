"""What the agent pressed, drawn beside the frame: a gamepad panel with lit buttons and stick positions."""

from __future__ import annotations

import cv2
import numpy as np

from azote.gamepad import BUTTON_INDEX, Gamepad

PANEL_W = 200
_BG, _OFF, _ON, _TEXT = (24, 24, 28), (70, 70, 80), (60, 220, 120), (220, 220, 220)
# (button, label, centre x, centre y) in a 200 x 150 layout
_ROUND = (
    ("north", "Y", 160, 50), ("west", "X", 140, 70), ("east", "B", 180, 70), ("south", "A", 160, 90),
    ("back", "<", 80, 62), ("guide", "G", 100, 62), ("start", ">", 120, 62),
)
_DPAD = (("dpad_up", 40, 50), ("dpad_down", 40, 90), ("dpad_left", 20, 70), ("dpad_right", 60, 70))
_BARS = (("left_trigger", "LT", 10, 4), ("left_shoulder", "LB", 10, 22), ("right_trigger", "RT", 140, 4),
         ("right_shoulder", "RB", 140, 22))


def _color(on: bool) -> tuple[int, int, int]:
    return _ON if on else _OFF


def draw_panel(action: Gamepad, height: int = 150) -> np.ndarray:
    """A PANEL_W-wide RGB panel (scaled to `height`) showing one gamepad state."""
    img = np.full((150, PANEL_W, 3), _BG, np.uint8)
    b = action.buttons
    font = cv2.FONT_HERSHEY_SIMPLEX
    for name, label, x, y in _BARS:
        on = bool(b[BUTTON_INDEX[name]])
        cv2.rectangle(img, (x, y), (x + 50, y + 14), _color(on), -1)
        cv2.putText(img, label, (x + 17, y + 11), font, 0.35, _BG if on else _TEXT, 1, cv2.LINE_AA)
    for name, label, x, y in _ROUND:
        on = bool(b[BUTTON_INDEX[name]])
        cv2.circle(img, (x, y), 9, _color(on), -1, cv2.LINE_AA)
        cv2.putText(img, label, (x - 4, y + 4), font, 0.35, _BG if on else _TEXT, 1, cv2.LINE_AA)
    for name, x, y in _DPAD:
        on = bool(b[BUTTON_INDEX[name]])
        cv2.rectangle(img, (x - 7, y - 7), (x + 7, y + 7), _color(on), -1)
    for stick, thumb, cx in (("j_left", "left_thumb", 60), ("j_right", "right_thumb", 140)):
        v = getattr(action, stick)
        cy, r = 122, 22
        ring = _ON if b[BUTTON_INDEX[thumb]] else _OFF
        cv2.circle(img, (cx, cy), r, ring, 2, cv2.LINE_AA)
        px, py = int(round(cx + v[0] * r)), int(round(cy + v[1] * r))
        cv2.line(img, (cx, cy), (px, py), _TEXT, 1, cv2.LINE_AA)
        cv2.circle(img, (px, py), 5, _ON if abs(v).max() > 0.05 else _TEXT, -1, cv2.LINE_AA)
    if height != 150:
        img = cv2.resize(img, (int(round(PANEL_W * height / 150)), height), interpolation=cv2.INTER_AREA)
    return img


def debug_frame(frame: np.ndarray, action: Gamepad, min_height: int = 240) -> np.ndarray:
    """The frame (scaled up with nearest-neighbour to at least `min_height`) with the gamepad panel on its right."""
    h, w = frame.shape[:2]
    scale = max(1, int(np.ceil(min_height / h)))
    if scale > 1:
        frame = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    panel = draw_panel(action, height=min(frame.shape[0], 300))
    canvas = np.full((frame.shape[0], frame.shape[1] + panel.shape[1], 3), _BG, np.uint8)
    canvas[:, : frame.shape[1]] = frame
    top = (frame.shape[0] - panel.shape[0]) // 2
    canvas[top : top + panel.shape[0], frame.shape[1] :] = panel
    return canvas


CAPTION_H = 28  # fixed, so every captioned frame of a video has the same size (the encoder needs one size)
_GOOD, _BAD = (60, 220, 120), (235, 80, 80)


def caption(frame: np.ndarray, text: str, ok: bool | None = None) -> np.ndarray:
    """The frame with a CAPTION_H-high strip above it carrying `text` (in green when `ok`, red when `ok` is False,
    else grey). The text is shrunk, then cut, to fit the width: the strip never changes the frame's size."""
    h, w = frame.shape[:2]
    canvas = np.full((h + CAPTION_H, w, 3), _BG, np.uint8)
    canvas[CAPTION_H:] = frame
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.55
    while cv2.getTextSize(text, font, scale, 1)[0][0] > w - 12 and scale > 0.35:
        scale -= 0.05
    while len(text) > 1 and cv2.getTextSize(text, font, scale, 1)[0][0] > w - 12:
        text = text[:-2] + "~"
    color = _TEXT if ok is None else (_GOOD if ok else _BAD)
    baseline = (CAPTION_H + cv2.getTextSize("Ag", font, scale, 1)[0][1]) // 2
    cv2.putText(canvas, text, (6, baseline), font, scale, color, 1, cv2.LINE_AA)
    return canvas
