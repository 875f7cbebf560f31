"""Frame resizing shared by training samples and the acting policy, so both see exactly the same pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST}


def resize_frame(frame: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """uint8 [H, W, 3] -> [size, size, 3], the whole frame (aspect ratio not kept), with PIL's filter
    (bilinear, antialiased when shrinking: the released preprocessing's resampling)."""
    if frame.shape[:2] == (size, size):
        return frame
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, got {resample!r}")
    return np.asarray(Image.fromarray(frame).resize((size, size), RESAMPLE[resample]))
