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
from azote.labeling import skins as sk
from azote.labeling.compose import Placement, composite, stream_factor
from azote.labeling.parser import CROP_SCALE, FAMILY_INDEX, crop_overlay, placement_affine, region_rgb

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


# --- one clip ----------------------------------------------------------------------------------------------
@dataclass
class ClipSpec:
    length: int = 12
    scale: tuple[float, float] = (0.5, 2.0)
    opacity: tuple[float, float] = (0.5, 1.0)
    crf: tuple[int, int] = (16, 36)
    jitter_px: float = 1.5  # locate error: template pixels
    jitter_scale: float = 0.025


def _enlarged_region(frames: np.ndarray, factor: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """frames enlarged by `factor` (nearest neighbour), only the region [y0:y1, x0:x1] of the enlarged frame."""
    ys = np.arange(y0, y1) // factor
    xs = np.arange(x0, x1) // factor
    return frames[:, ys][:, :, xs]


def make_clip(rng: np.random.Generator, bank: BackgroundBank, skin: sk.Skin, spec: ClipSpec = ClipSpec(),
              game: str | None = None) -> dict:
    """One synthetic clip: crops [T, CROP_H, CROP_W, 3] as the parser sees them, and the true actions."""
    game, run = bank.run(rng, spec.length, game)
    factor = stream_factor(run.shape[1:])
    H, W = run.shape[1] * factor, run.shape[2] * factor
    s = float(np.exp(rng.uniform(np.log(spec.scale[0]), np.log(spec.scale[1]))))
    s = min(s, 0.9 * W / sk.TEMPLATE_W, 0.9 * H / sk.TEMPLATE_H)
    ow, oh = int(round(sk.TEMPLATE_W * s)), int(round(sk.TEMPLATE_H * s))
    px, py = int(rng.integers(0, W - ow + 1)), int(rng.integers(0, H - oh + 1))
    margin = int(rng.integers(6, 24))
    x0, y0 = max(0, px - margin), max(0, py - margin)
    x1, y1 = min(W, px + ow + margin), min(H, py + oh + margin)
    x1 -= (x1 - x0) % 2  # H.264 4:2:0 wants even sizes
    y1 -= (y1 - y0) % 2
    region = _enlarged_region(run, factor, x0, y0, x1, y1)
    actions = random_actions(rng, spec.length)
    placement = Placement(px - x0, py - y0, s, float(rng.uniform(*spec.opacity)))
    frames = np.stack([composite(region[t], sk.render(skin, actions[t], s), placement) for t in range(spec.length)])
    crf = int(rng.integers(spec.crf[0], spec.crf[1] + 1))
    decoded = h264_roundtrip(frames, crf)
    # the locator's error: the crop is taken with a slightly wrong position and scale, the same for the clip
    d = 1 + rng.uniform(-spec.jitter_scale, spec.jitter_scale)
    jx, jy = rng.uniform(-spec.jitter_px, spec.jitter_px, 2)
    affine = placement_affine(placement.x + jx * s, placement.y + jy * s, s * d)
    crops = np.stack([crop_overlay(f, affine, CROP_SCALE) for f in decoded])
    return {"crops": crops, "buttons": actions.buttons, "sticks": np.stack([actions.j_left, actions.j_right], 1),
            "family": FAMILY_INDEX[skin.family], "skin": skin.name, "game": game, "crf": crf, "scale": s}


def write_shard(path: str | os.PathLike, bank: BackgroundBank, skins: Sequence[str], clips: int, seed: int,
                spec: ClipSpec = ClipSpec(), random_skins: float = 0.0) -> Path:
    """`clips` clips, saved atomically to `path`; each clip's skin is drawn from `skins`, or with probability
    `random_skins` is a random skin (`skins.random_skin`: random colours and styles)."""
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(clips):
        if rng.random() < random_skins:
            skin = sk.random_skin(rng)
        else:
            skin = sk.get_skin(skins[int(rng.integers(len(skins)))])
        made.append(make_clip(rng, bank, skin, spec))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, crops=np.stack([c["crops"] for c in made]), buttons=np.stack([c["buttons"] for c in made]),
             sticks=np.stack([c["sticks"] for c in made]).astype(np.float32),
             family=np.array([c["family"] for c in made], np.int64), skin=np.array([c["skin"] for c in made]))
    os.replace(tmp, path)
    return path


def _shard_job(args: tuple) -> str:
    path, bank_path, skins, clips, seed, random_skins = args
    import cv2

    cv2.setNumThreads(1)
    return str(write_shard(path, BackgroundBank.load(bank_path), skins, clips, seed, random_skins=random_skins))


def write_shards(out: str | os.PathLike, bank_path: str | os.PathLike, shards: int, clips_per_shard: int,
                 skins: Sequence[str] = sk.TRAIN_SKINS, seed: int = 0, workers: int = 1,
                 log: Callable[[str], None] = print, random_skins: float = 0.0) -> list[Path]:
    """Writes `shards` shards under `out` (resumable: existing shards are kept); returns them in order."""
    out = Path(out)
    paths = [out / f"shard_{i:04d}.npz" for i in range(shards)]
    todo = [(p, str(bank_path), list(skins), clips_per_shard, seed * 100003 + i, random_skins)
            for i, p in enumerate(paths) if not p.is_file()]
    if todo:
        log(f"synthetic data: writing {len(todo)} of {shards} shards to {out}")
    if workers <= 1:
        for job in todo:
            _shard_job(job)
            log(f"  {Path(job[0]).name}")
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for name in pool.map(_shard_job, todo):
                log(f"  {Path(name).name}")
    return paths
