"""Raw RGB frames -> the model's pixel tensors, as the released preprocessing does it.

The whole frame is resized to `image_size x image_size` (aspect ratio not kept) with PIL's bilinear filter (the
SigLIP 2 image processor's resampling, antialiased when shrinking), then `x / 255` and `(x - 0.5) / 0.5`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from azote.dataset.frames import resize_frame


def _as_frame(frame: Any, index: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"frame {index}: expected an RGB image [H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frame {index}: expected uint8 pixels 0..255, got {arr.dtype}")
    return arr


def preprocess_frames(frames: np.ndarray | Sequence[Any], image_size: int, resample: str = "bilinear") -> torch.Tensor:
    """uint8 RGB frames (`[H, W, 3]`, `[..., H, W, 3]`, or a list of frames of any sizes) -> float32
    `[..., 3, S, S]` in [-1, 1]. A single frame gives `[3, S, S]`; a list gives `[N, 3, S, S]`."""
    if isinstance(frames, np.ndarray) and frames.ndim >= 3:
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
    else:
        flat = frames if isinstance(frames, (list, tuple)) else [frames]
        lead = (len(flat),) if isinstance(frames, (list, tuple)) else ()
    resized = np.stack([resize_frame(_as_frame(f, i), image_size, resample) for i, f in enumerate(flat)])
    pixels = torch.from_numpy(resized).permute(0, 3, 1, 2).float()
    pixels = (pixels / 255.0 - 0.5) / 0.5
    return pixels.reshape(*lead, 3, image_size, image_size)
