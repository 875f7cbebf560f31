"""Putting an overlay on game frames the way streamers do, and writing such videos.

A stream frame is the game frame shown at the stream's size (by default 1280 x 720): scaled to fit with nearest
neighbour and black bars, as capture software shows retro games (`fit`), or stretched (`stretch`). The overlay is
a preset drawn at a scale and alpha-blended at a place and opacity; the video is encoded with H.264 at a chosen
quality, so compression artefacts are real.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from azote.gamepad import ActionChunk
from azote.labeling.presets import Preset

STREAM_SIZE = (720, 1280)  # (H, W)
WIDTH_SHARE = (0.22, 0.34)  # overlay width as a share of the frame width


def stream_frame(game: np.ndarray, size: tuple[int, int] = STREAM_SIZE, fit: str = "fit") -> np.ndarray:
    """The game frame as a stream shows it: `fit` (aspect kept, black bars) or `stretch`."""
    H, W = size
    h, w = game.shape[:2]
    if fit == "stretch":
        return cv2.resize(game, (W, H), interpolation=cv2.INTER_NEAREST)
    if fit != "fit":
        raise ValueError(f"fit must be fit or stretch, got {fit!r}")
    s = min(H / h, W / w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    out = np.zeros((H, W, 3), np.uint8)
    y0, x0 = (H - nh) // 2, (W - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(game, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return out


@dataclass(frozen=True)
class Placement:
    """Where the overlay goes: top-left corner of the preset's canvas in stream pixels, its scale, opacity."""

    x: float
    y: float
    scale: float
    opacity: float

    def affine(self) -> np.ndarray:
        """Canvas coordinates (pixel edges: canvas pixel k spans [k, k + 1)) -> stream pixel coordinates (pixel
        centres: frame pixel i is at i, the convention of OpenCV's warps and keypoints)."""
        return np.array([[self.scale, 0, self.x - 0.5], [0, self.scale, self.y - 0.5]], np.float64)

    def as_dict(self) -> dict:
        return asdict(self)


def random_placement(rng: np.random.Generator, preset: Preset, frame_hw: tuple[int, int] = STREAM_SIZE,
                     width_share: tuple[float, float] = WIDTH_SHARE, opacity: tuple[float, float] = (0.6, 1.0),
                     off_screen: float = 0.1) -> Placement:
    """A placement as streamers choose one: width a share of the frame's, in a corner (or along an edge), now and
    then partly off-screen (with probability `off_screen`, by up to 12% of the overlay's size)."""
    h, w = frame_hw
    ow = float(rng.uniform(*width_share)) * w
    s = ow / preset.size[0]
    oh = preset.size[1] * s
    if oh > 0.8 * h:
        s *= 0.8 * h / oh
        ow, oh = preset.size[0] * s, preset.size[1] * s
    margin = float(rng.uniform(0, 0.04)) * w
    xs = (margin, w - ow - margin, (w - ow) / 2)
    ys = (margin, h - oh - margin)
    x = xs[int(rng.choice(3, p=[0.45, 0.45, 0.1]))] + float(rng.uniform(-0.02, 0.02)) * w
    y = ys[int(rng.integers(2))] + float(rng.uniform(-0.02, 0.02)) * h
    x, y = float(np.clip(x, 0, w - ow)), float(np.clip(y, 0, h - oh))
    if rng.random() < off_screen:  # pushed over an edge
        side = int(rng.integers(4))
        d = float(rng.uniform(0.03, 0.12))
        if side == 0:
            x = -d * ow
        elif side == 1:
            x = w - (1 - d) * ow
        elif side == 2:
            y = -d * oh
        else:
            y = h - (1 - d) * oh
    return Placement(round(x, 2), round(y, 2), s, float(rng.uniform(*opacity)))


def composite(frame: np.ndarray, overlay_rgba: np.ndarray, x: float, y: float, opacity: float = 1.0) -> np.ndarray:
    """Alpha-blends an RGBA overlay (already at its scale) onto an RGB frame with its top-left at (x, y) (rounded
    to whole pixels; parts outside the frame are cut)."""
    out = frame.copy()
    ix, iy = int(round(x)), int(round(y))
    oh, ow = overlay_rgba.shape[:2]
    H, W = out.shape[:2]
    x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + ow, W), min(iy + oh, H)
    if x0 >= x1 or y0 >= y1:
        return out
    ov = overlay_rgba[y0 - iy:y1 - iy, x0 - ix:x1 - ix].astype(np.float32)
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = ov[..., 3:4] / 255.0 * opacity
    out[y0:y1, x0:x1] = (ov[..., :3] * a + region * (1 - a) + 0.5).astype(np.uint8)
    return out


def overlay_frame(frame: np.ndarray, preset: Preset, pad, placement: Placement) -> np.ndarray:
    """`frame` (already at stream size) with the preset showing `pad`, blended in place and returned. The
    overlay is drawn at the sub-pixel offset of the placement (premultiplied colour, so its edges stay right)."""
    ix, iy = int(np.floor(placement.x)), int(np.floor(placement.y))
    fx, fy = placement.x - ix, placement.y - iy
    img = preset.render_premultiplied(pad, placement.scale)
    if fx > 1e-3 or fy > 1e-3:
        h, w = img.shape[:2]
        img = cv2.warpAffine(img, np.float32([[1, 0, fx], [0, 1, fy]]), (w + 1, h + 1), flags=cv2.INTER_LINEAR)
    oh, ow = img.shape[:2]
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + ow, W), min(iy + oh, H)
    if x0 < x1 and y0 < y1:
        ov = img[y0 - iy:y1 - iy, x0 - ix:x1 - ix]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        a = ov[..., 3:4] * placement.opacity
        frame[y0:y1, x0:x1] = (ov[..., :3] * (255.0 * placement.opacity) + region * (1 - a) + 0.5).astype(np.uint8)
    return frame


def render_stream(frames: Iterable[np.ndarray], actions: ActionChunk, out: str | Path, preset: Preset, fps: float,
                  *, placement: Placement | None = None, crf: int = 23, seed: int = 0,
                  size: tuple[int, int] = STREAM_SIZE, fit: str = "fit") -> dict:
    """Writes a streamer-style video: each game frame at the stream's size with the overlay showing the action
    taken on it. Returns the truth (preset, placement, bbox, frame size) for scoring a labeller."""
    from azote.dataset.video import VideoWriter
    from azote.labeling.locate import neutral_bbox

    rng = np.random.default_rng(seed)
    placement = placement or random_placement(rng, preset, size)
    n = 0
    with VideoWriter(out, fps, crf=crf) as writer:
        for frame, pad in zip(frames, actions):
            writer.write(overlay_frame(stream_frame(frame, size, fit), preset, pad, placement))
            n += 1
    if n == 0:
        raise ValueError(f"{out}: no frames to render")
    x0, y0, x1, y1 = neutral_bbox(preset)
    s = placement.scale
    bbox = [placement.x + x0 * s, placement.y + y0 * s, (x1 - x0) * s, (y1 - y0) * s]
    return {"preset": preset.name, "family": preset.family, "controller_type": preset.controller_type,
            "placement": placement.as_dict(), "bbox": [round(v, 2) for v in bbox], "frames": n, "crf": crf,
            "frame_size": list(size)}


def draw_bbox(frame: np.ndarray, bbox: list[float], colour: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in bbox)
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
    return out
