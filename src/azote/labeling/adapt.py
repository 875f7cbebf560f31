"""Adapting the parser to a known preset, the way the paper's template pipeline does: render the preset in random
states exactly where and how large the template fit found it, over the video's own frames (the real overlay's area
filled with game pixels from beside it), compress, fine-tune the shipped parser for a few minutes, and cache the
weights per preset and size, so every further video of that preset reuses them.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from azote.labeling import parser as P
from azote.labeling.locate import Located
from azote.labeling.presets import Preset

ADAPT_VERSION = 2  # 2: released-look references, rocker d-pads
CLIPS = 160  # clips rendered for the fine-tuning (6 frames each)


def _cache_dir() -> Path:
    return Path(os.environ.get("AZOTE_CACHE", Path.home() / ".cache" / "azote")) / "adapted"


def weights_fingerprint(model: P.OverlayParser) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes()[:4096])
    return h.hexdigest()[:12]


def cache_key(preset: Preset, scale: float, base: P.OverlayParser, budget: tuple) -> str:
    bucket = round(math.log2(max(scale, 1e-6)) * 4)  # a quarter octave: sizes within ~9% share weights
    spent = hashlib.sha256(repr(budget).encode()).hexdigest()[:6]  # another budget is another adaptation
    return f"{preset.digest}-s{bucket}-{weights_fingerprint(base)}-a{P.ARCH}.{ADAPT_VERSION}-b{spent}"


def backgrounds_without_overlay(frames: Sequence[np.ndarray], box: Sequence[float]) -> np.ndarray:
    """The sampled frames with the overlay's area (grown by a fifth) replaced by the pixels beside it, towards the
    frame's centre: game content to draw the preset over, without the real overlay under it."""
    x, y, w, h = box
    out = []
    for f in frames:
        H, W = f.shape[:2]
        g = f.copy()
        x0, y0 = int(max(0, np.floor(x - 0.2 * w))), int(max(0, np.floor(y - 0.2 * h)))
        x1, y1 = int(min(W, np.ceil(x + 1.2 * w))), int(min(H, np.ceil(y + 1.2 * h)))
        bw, bh = x1 - x0, y1 - y0
        if bw <= 0 or bh <= 0:
            out.append(g)
            continue
        dx = bw if x0 + bw / 2 < W / 2 else -bw
        sx0 = int(np.clip(x0 + dx, 0, max(0, W - bw)))
        dy = 0
        if abs(sx0 - x0) < bw // 2:  # no room beside it: take the rows above or below
            dy = bh if y0 + bh / 2 < H / 2 else -bh
            sx0 = x0
        sy0 = int(np.clip(y0 + dy, 0, max(0, H - bh)))
        patch = f[sy0:sy0 + bh, sx0:sx0 + bw]
        g[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
        out.append(g)
    return np.stack(out)


def adapted_parser(preset: Preset, located: Located, frames: Sequence[np.ndarray], base: P.OverlayParser,
                   minutes: float = 3.0, clips: int = CLIPS, log: Callable[[str], None] | None = None,
                   seed: int = 0, steps: int = 600) -> tuple[P.OverlayParser, str]:
    """The parser fine-tuned on `preset` at the located place and size (cached) for `steps` batches or `minutes`
    in all, whichever ends first; returns it and its cache key."""
    from filelock import FileLock

    from azote.labeling.synth import BackgroundBank, ClipSpec, make_clip
    from azote.labeling.train import ShardData, TrainConfig, train

    if located.affine is None:
        raise ValueError("adaptation needs a template fit")
    scale = float(located.affine[0, 0])
    key = cache_key(preset, scale, base, (minutes, clips, steps, seed))
    final = _cache_dir() / key
    if (final / "parser.json").is_file():
        try:
            return P.load_parser(final), key
        except P.WeightsError:
            shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "parser.json").is_file():  # another process adapted it meanwhile
            return P.load_parser(final), key
        t0 = time.time()
        H, W = frames[0].shape[:2]
        bank = BackgroundBank({"video": backgrounds_without_overlay(frames, located.box)})
        place = (float(located.affine[0, 2]) + 0.5, float(located.affine[1, 2]) + 0.5)
        spec = ClipSpec.known(scale, place, (H, W))
        rng = np.random.default_rng(seed)
        made = [make_clip(rng, bank, preset, spec) for _ in range(clips)]
        if log:
            log(f"adapting the parser to {preset.name}: {clips} clips in {time.time() - t0:.0f} s")
        model = P.load_parser_copy(base)
        left = max(0.25 * minutes, minutes - (time.time() - t0) / 60)  # making the clips took the rest
        with tempfile.TemporaryDirectory(prefix="azote-adapt-") as tmp:
            train(ShardData(clips=made), tmp, TrainConfig(steps=steps, batch_size=32, lr=6e-4, warmup=20,
                                                          minutes=left, checkpoint_every=10**9,
                                                          eval_every=10**9, seed=seed),
                  model=model, log=log or (lambda m: None))
            staging = final.with_name(f".{final.name}.staging")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(Path(tmp) / "final", staging)
            os.replace(staging, final)
        return P.load_parser(final), key
