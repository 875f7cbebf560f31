"""Draws docs/overlay-skins.png: every shipped skin and every held-out one, in one state, over a checkerboard.

    python scripts/overlay_sheet.py [--out docs/overlay-skins.png]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from azote.gamepad import Gamepad
from azote.labeling.skingen import heldout_presets, shipped_presets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/overlay-skins.png")
    args = ap.parse_args()
    presets = list(shipped_presets().values()) + list(heldout_presets())
    pad = Gamepad.make(["south", "dpad_left", "right_shoulder", "north"], j_left=(0.8, -0.5))
    cw, ch, label, cols = 240, 170, 18, 5
    rows = -(-len(presets) // cols)
    yy, xx = np.mgrid[0:rows * (ch + label), 0:cols * cw]
    sheet = np.where(((yy // 12 + xx // 12) % 2)[..., None] == 0, 70.0, 95.0).repeat(3, -1)
    for i, p in enumerate(presets):
        k = min((cw - 12) / p.size[0], (ch - 12) / p.size[1])
        rgba = p.render(pad, k).astype(np.float32)
        h, w = rgba.shape[:2]
        y0, x0 = (i // cols) * (ch + label) + (ch - h) // 2, (i % cols) * cw + (cw - w) // 2
        a = rgba[..., 3:] / 255
        sheet[y0:y0 + h, x0:x0 + w] = sheet[y0:y0 + h, x0:x0 + w] * (1 - a) + rgba[..., :3] * a
    sheet = np.ascontiguousarray(sheet.clip(0, 255).astype(np.uint8))
    for i, p in enumerate(presets):
        cv2.putText(sheet, p.name[:36], ((i % cols) * cw + 4, (i // cols) * (ch + label) + ch + 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.36, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{len(presets)} skins -> {args.out}")


if __name__ == "__main__":
    main()
