"""Putting an overlay on game frames the way streamers do, and writing such videos.

A stream frame is the game frame enlarged by an integer factor (nearest neighbour, as capture software shows
retro games) to at least `STREAM_HEIGHT` rows, with the overlay alpha-blended at a place, scale and opacity. The
video is encoded with H.264 at a chosen quality, so compression artefacts are real.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from azote.gamepad import ActionChunk, Gamepad
from azote.labeling.skins import TEMPLATE_H, TEMPLATE_W, Skin, get_skin, render

STREAM_HEIGHT = 480


def stream_factor(frame_shape: tuple[int, ...]) -> int:
    return max(1, math.ceil(STREAM_HEIGHT / frame_shape[0]))


def enlarge(frame: np.ndarray, factor: int) -> np.ndarray:
    return frame if factor == 1 else np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


@dataclass(frozen=True)
class Placement:
    """Where the overlay goes: top-left corner in stream pixels, scale of the template, opacity."""

    x: int
    y: int
    scale: float
    opacity: float

    def bbox(self) -> list[float]:
        """[x, y, w, h] in stream pixels (the dataset's `bbox_controller_overlay`)."""
        return [float(self.x), float(self.y), round(TEMPLATE_W * self.scale), round(TEMPLATE_H * self.scale)]

    def as_dict(self) -> dict:
        return asdict(self)


def random_placement(rng: np.random.Generator, frame_hw: tuple[int, int], scale: tuple[float, float] = (0.5, 2.0),
                     opacity: tuple[float, float] = (0.5, 1.0)) -> Placement:
    """A random placement that fits the frame (the scale is reduced when the frame is too small for it)."""
    h, w = frame_hw
    s = float(rng.uniform(*scale))
    s = min(s, 0.6 * w / TEMPLATE_W, 0.6 * h / TEMPLATE_H)
    ow, oh = round(TEMPLATE_W * s), round(TEMPLATE_H * s)
    return Placement(int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1)), s,
                     float(rng.uniform(*opacity)))


def composite(frame: np.ndarray, overlay_rgba: np.ndarray, placement: Placement) -> np.ndarray:
    """Alpha-blends an RGBA overlay (already at the placement's scale) onto an RGB frame."""
    out = frame.copy()
    oh, ow = overlay_rgba.shape[:2]
    x, y = placement.x, placement.y
    region = out[y:y + oh, x:x + ow].astype(np.float32)
    ov = overlay_rgba[: region.shape[0], : region.shape[1]].astype(np.float32)
    a = ov[..., 3:4] / 255.0 * placement.opacity
    out[y:y + oh, x:x + ow] = (ov[..., :3] * a + region * (1 - a) + 0.5).astype(np.uint8)
    return out


def overlay_frame(frame: np.ndarray, skin: Skin, pad: Gamepad, placement: Placement, factor: int) -> np.ndarray:
    return composite(enlarge(frame, factor), render(skin, pad, placement.scale), placement)


def render_stream(frames: Iterable[np.ndarray], actions: ActionChunk, out: str | Path, skin: str | Skin,
                  fps: float, *, placement: Placement | None = None, crf: int = 23, seed: int = 0) -> dict:
    """Writes a streamer-style video: each game frame enlarged, with the overlay showing the action taken on it.

    Returns what the truth is: skin, placement, bbox and the stream's frame size (for scoring a labeller).
    """
    from azote.dataset.video import VideoWriter

    skin = get_skin(skin) if isinstance(skin, str) else skin
    rng = np.random.default_rng(seed)
    n = 0
    info: dict = {}
    with VideoWriter(out, fps, crf=crf) as writer:
        for frame, pad in zip(frames, actions):
            factor = stream_factor(frame.shape)
            if placement is None:
                placement = random_placement(rng, (frame.shape[0] * factor, frame.shape[1] * factor))
            writer.write(overlay_frame(frame, skin, pad, placement, factor))
            n += 1
            info = {"frame_size": [frame.shape[0] * factor, frame.shape[1] * factor]}
    if n == 0:
        raise ValueError(f"{out}: no frames to render")
    return {"skin": skin.name, "controller_type": skin.controller_type, "placement": placement.as_dict(),
            "bbox": placement.bbox(), "frames": n, "crf": crf, **info}


def draw_bbox(frame: np.ndarray, bbox: list[float], colour: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in bbox)
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
    return out
