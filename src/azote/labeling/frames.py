"""Pixels the labeller reads: a region of a decoded frame, and resampled crops of it.

A crop is a fixed-size image of part of the video frame under a similarity transform (scale + translation):
the overlay's box letterboxed into the parser's input, or a square patch around a stick. Downscaling first
averages areas (plain bilinear sampling would alias thin outlines), then samples bilinearly.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np


def region_rgb(frame: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB pixels of `box` (x0, y0, x1, y1; even numbers) of a decoded PyAV frame. For 4:2:0 video only the box
    is converted from YUV (the whole frame's conversion costs more than the rest of labelling a frame)."""
    x0, y0, x1, y1 = box
    h, w = frame.height, frame.width
    if frame.format.name != "yuv420p" or h % 2 or w % 2 or (x0 | y0 | x1 | y1) & 1:
        return frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]
    a, u, v = (_plane(frame, i, h >> (i > 0), w >> (i > 0)) for i in range(3))  # views: nothing of the frame copied
    i420 = np.concatenate([a[y0:y1, x0:x1].ravel(), u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].ravel(),
                           v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].ravel()]).reshape((y1 - y0) * 3 // 2, x1 - x0)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def _plane(frame: Any, index: int, h: int, w: int) -> np.ndarray:
    p = frame.planes[index]
    return np.frombuffer(p, np.uint8, count=p.line_size * h).reshape(h, p.line_size)[:, :w]


def similarity(scale: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]], np.float64)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies `b`, then `a`."""
    a = np.asarray(a, np.float64)
    out = a[:, :2] @ np.asarray(b, np.float64)
    out[:, 2] += a[:, 2]
    return out


def invert(a: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(a, np.float64))


def bbox_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    return inter / max(aw * ah + bw * bh - inter, 1e-9)


def box_to_crop(box: list[float] | tuple[float, ...], size: tuple[int, int], margin: float) -> np.ndarray:
    """Video pixels -> crop pixels: the box [x, y, w, h] (pixel edges, as `bbox_controller_overlay`) grown by
    `margin` of its size on every side, letterboxed (aspect kept) and centred in a crop of `size` (W, H). Like
    every transform here it maps pixel-centre coordinates (pixel i is at i)."""
    x, y, w, h = (float(v) for v in box)
    W, H = size
    s = min(W / max(w * (1 + 2 * margin), 1e-6), H / max(h * (1 + 2 * margin), 1e-6))
    cx, cy = x + w / 2 - 0.5, y + h / 2 - 0.5
    return similarity(s, (W - 1) / 2 - s * cx, (H - 1) / 2 - s * cy)


def source_box(to_crop: np.ndarray, size: tuple[int, int], hw: tuple[int, int], pad: int = 4
               ) -> tuple[int, int, int, int]:
    """The even-aligned pixel box of the frame (clipped to it) that a crop of `size` under `to_crop` reads."""
    inv = invert(to_crop)
    W, H = size
    pts = np.array([[0, 0, 1], [W, H, 1]], np.float64) @ inv.T
    h, w = hw
    x0 = max(0, int(np.floor(pts[:, 0].min())) - pad) & ~1
    y0 = max(0, int(np.floor(pts[:, 1].min())) - pad) & ~1
    x1 = min(w - w % 2, (int(np.ceil(pts[:, 0].max())) + pad + 1) & ~1)
    y1 = min(h - h % 2, (int(np.ceil(pts[:, 1].max())) + pad + 1) & ~1)
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def warp(image: np.ndarray, to_crop: np.ndarray, size: tuple[int, int], origin: tuple[int, int] = (0, 0)
         ) -> np.ndarray:
    """The crop of `size` (W, H) under `to_crop` (video pixels -> crop pixels) from `image`, whose top-left pixel is
    video pixel `origin`. Outside the image, edge pixels are repeated."""
    a = compose(np.asarray(to_crop, np.float64), similarity(1.0, origin[0], origin[1]))
    s = float(abs(a[0, 0]))
    k = max(2, int(1.25 / s)) if s < 0.66 else 1
    if k > 1 and image.shape[0] >= 2 * k and image.shape[1] >= 2 * k:
        # averaging k x k blocks (OpenCV's fast path for a whole factor: ~30x faster than a fractional one) leaves
        # a bilinear step between 0.6x and 1.3x; the cut right and bottom edge is under 1 pixel of the result
        h, w = image.shape[:2]
        small = cv2.resize(image[:h - h % k, :w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        # small pixel centres: u_small = (u + 0.5) / k - 0.5
        a = compose(a, np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]]))
        image = small
    return cv2.warpAffine(image, a, tuple(int(v) for v in size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
