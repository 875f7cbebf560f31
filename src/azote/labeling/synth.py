"""Synthetic training data for the overlay parser, with exact labels.

A clip is a few consecutive frames of a real game (from a `BackgroundBank`) enlarged the way capture software
shows them, with a skin's overlay showing random gamepad states at a random place, scale and opacity. Only the
region around the overlay is kept (what the parser ever sees), encoded with H.264 at a random quality and decoded
again, so the compression artefacts are real; then each frame's overlay is cropped onto the template grid with
a small random error in the overlay's position and scale (as the locator leaves one).

Shards: `shard_NNNN.npz` with `crops` uint8 [N, T, CROP_H, CROP_W, 3], `buttons` uint8 [N, T, 17],
`sticks` float32 [N, T, 2, 2], `family` int64 [N], `skin` str [N]. Written atomically; a rerun skips shards
that exist, so generation resumes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

from azote.gamepad import NUM_BUTTONS, ActionChunk
from azote.labeling.frames import region_rgb

# Games that give the parser's training backgrounds, and games kept for evaluation only.
TRAIN_GAMES = ("atari/Breakout", "atari/Pong", "atari/SpaceInvaders", "atari/Boxing", "atari/MsPacman",
               "atari/Seaquest", "atari/Enduro", "atari/Riverraid", "atari/Asterix", "atari/Freeway",
               "doom/basic", "doom/defend_the_center", "procgen/coinrun", "procgen/bigfish", "procgen/maze",
               "nes/SuperMarioBros-1-1")
HELDOUT_GAMES = ("atari/Frostbite", "atari/Qbert", "atari/BattleZone", "doom/deadly_corridor", "procgen/starpilot",
                 "procgen/ninja", "nes/SuperMarioBros-3-1")


# --- backgrounds -------------------------------------------------------------------------------------------
class BackgroundBank:
    """Runs of consecutive game frames per game (`frames[game]`: uint8 [N, h, w, 3])."""

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        if not frames:
            raise ValueError("a background bank needs frames of at least one game")
        self.frames = frames

    @property
    def games(self) -> list[str]:
        return sorted(self.frames)

    def run(self, rng: np.random.Generator, length: int, game: str | None = None) -> tuple[str, np.ndarray]:
        game = game or self.games[int(rng.integers(len(self.games)))]
        f = self.frames[game]
        start = int(rng.integers(0, max(1, len(f) - length + 1)))
        run = f[start:start + length]
        if len(run) < length:  # a short bank: loop it
            run = np.concatenate([run] * (length // max(1, len(run)) + 1))[:length]
        return game, run

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, **{g.replace("/", "__"): f for g, f in self.frames.items()})
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> "BackgroundBank":
        with np.load(path) as z:
            return BackgroundBank({k.replace("__", "/"): z[k] for k in z.files})

    @staticmethod
    def from_videos(paths: Sequence[str | os.PathLike], frames_per_video: int = 400) -> "BackgroundBank":
        """Backgrounds from recorded gameplay videos (the first frames of each)."""
        from azote.dataset.video import read_frames

        out = {}
        for p in paths:
            frames = list(read_frames(p, 0, frames_per_video))
            if frames:
                out[Path(p).stem] = np.stack(frames)
        return BackgroundBank(out)


# --- random gamepad states that look like play --------------------------------------------------------------
def random_actions(rng: np.random.Generator, n: int) -> ActionChunk:
    """`n` frames of gamepad input: buttons held for random durations at a per-clip rate; each stick rests, snaps
    to one of 8 directions, or moves through continuous positions (with short glides between targets)."""
    buttons = np.zeros((n, NUM_BUTTONS), np.uint8)
    rate = rng.uniform(0.02, 0.45)
    for j in range(NUM_BUTTONS):
        p = rate * rng.uniform(0.2, 1.8)
        t = 0
        on = rng.random() < p
        while t < n:
            hold = int(rng.geometric(1 / rng.uniform(2, 20)))
            buttons[t:t + hold, j] = on
            t += hold
            on = rng.random() < p
    sticks = np.zeros((2, n, 2), np.float32)
    for s in range(2):
        mode = rng.choice(["rest", "digital", "analog"], p=[0.2, 0.3, 0.5])
        if mode == "rest":
            continue
        t, cur = 0, np.zeros(2, np.float32)
        while t < n:
            hold = int(rng.geometric(1 / rng.uniform(3, 20)))
            if rng.random() < 0.2:
                target = np.zeros(2, np.float32)
            elif mode == "digital":
                a = rng.integers(8) * np.pi / 4
                target = np.round(np.array([np.cos(a), np.sin(a)], np.float32) * 1e4) / 1e4
                if rng.random() < 0.5:  # a square gate: diagonals reach the corner
                    target = (np.sign(target) * (np.abs(target) > 0.3)).astype(np.float32)
            else:
                a, r = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1))
                target = np.array([np.cos(a) * r, np.sin(a) * r], np.float32)
                if rng.random() < 0.3:  # anywhere in the square travel area
                    target = rng.uniform(-1, 1, 2).astype(np.float32)
            glide = int(rng.integers(0, 4)) if mode == "analog" else 0
            for k in range(hold):
                if t >= n:
                    break
                w = min(1.0, (k + 1) / (glide + 1))
                sticks[s, t] = cur + (target - cur) * w
                t += 1
            cur = sticks[s, t - 1].copy()
    return ActionChunk.from_arrays(buttons, np.clip(sticks[0], -1, 1), np.clip(sticks[1], -1, 1))


# --- H.264 in memory ---------------------------------------------------------------------------------------
def h264_roundtrip(frames: np.ndarray, crf: int, fps: int = 60, preset: str = "veryfast") -> np.ndarray:
    """Encodes RGB frames [T, h, w, 3] (even h, w) with libx264 and decodes them again."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        st = c.add_stream("libx264", rate=fps)
        st.height, st.width = frames.shape[1:3]
        st.pix_fmt = "yuv420p"
        st.options = {"crf": str(int(crf)), "preset": preset}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    buf.seek(0)
    with av.open(buf, mode="r") as c:
        # the same conversion as labelling uses, so colours match exactly
        out = [region_rgb(fr, (0, 0, fr.width, fr.height)) for fr in c.decode(video=0)]
    return np.stack(out)


