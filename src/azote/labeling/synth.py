"""Synthetic training data for the overlay parser, with exact labels.

A clip is a run of consecutive frames of a real game (from a `BackgroundBank`) shown the way a stream shows it,
with a preset's overlay showing random gamepad states at a random place, size and opacity, plus frames from other
moments of the same game for the video's reference look. Only the region around the overlay is made (what the
parser ever reads), encoded with H.264 at a random quality and decoded again, so compression artefacts are real.
Then the parser's inputs are cut exactly as labelling cuts them, from a box and stick geometry that carry the
errors locating leaves (zero-shot: a detected box; known preset: a template fit): the overlay crops, the stick
patches, and their targets (button regions and states, stick rest positions, travel and knob positions).

Shards: `shard_NNNN.npz` (see `CLIP_FIELDS`), written atomically; a rerun skips shards that exist.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import numpy as np

from azote.dataset.video import ENCODER_THREADS
from azote.gamepad import BUTTONS, NUM_BUTTONS, ActionChunk, Gamepad
from azote.labeling import parser as P
from azote.labeling.frames import box_to_crop, compose, region_rgb, similarity, warp
from azote.labeling.presets import FAMILIES, Preset
from azote.lifetime import run_jobs

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
_OPPOSITE = [(BUTTONS.index(f"dpad_{a}"), BUTTONS.index(f"dpad_{b}")) for a, b in (("up", "down"), ("left", "right"))]


def _rocker(buttons: np.ndarray) -> None:
    """A d-pad is a rocker: it never holds two opposite directions (and a nine-picture d-pad could not show them).
    The direction pressed first stays until it is released (on the same frame: alternately one or the other)."""
    for a, b in _OPPOSITE:
        for t in np.flatnonzero(buttons[:, a] & buttons[:, b]):
            if t > 0 and buttons[t - 1, a] != buttons[t - 1, b]:
                drop = b if buttons[t - 1, a] else a
            else:
                drop = b if t % 2 == 0 else a
            buttons[t, drop] = 0


def random_actions(rng: np.random.Generator, n: int) -> ActionChunk:
    """`n` frames of gamepad input: buttons held for random durations at a per-clip rate (never two opposite d-pad
    directions); each stick rests, snaps to one of 8 directions, or moves through continuous positions (with short
    glides between targets)."""
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
    _rocker(buttons)
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
        st.options = {"crf": str(int(crf)), "preset": preset, "threads": str(ENCODER_THREADS)}  # same pixels anywhere
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
    frames: int = 6  # consecutive frames
    ref_frames: int = 12  # frames from other moments, for the reference look
    width_share: tuple[float, float] = (0.14, 0.42)  # overlay width / frame width
    opacity: tuple[float, float] = (0.5, 1.0)
    crf: tuple[int, int] = (18, 34)
    box_jitter: float = 0.05  # locate error of the box: share of its size (position and size)
    centre_jitter: float = 0.3  # stick rest position error: travel units
    travel_jitter: float = 0.18  # travel estimate error: sigma of its log
    scale: float | None = None  # overlay scale fixed (known preset at a known size), else from width_share
    place: tuple[float, float] | None = None  # canvas top-left fixed (stream pixels), else anywhere
    fit: str | None = None  # how game frames become stream frames (fit | stretch), else either
    reference: str = "median"  # the reference look: median of the reference frames | released (a known preset's)
    frame_sizes: tuple[tuple[int, int], ...] = ((720, 1280), (720, 1280), (720, 1280), (480, 854))

    @staticmethod
    def known(scale: float, place: tuple[float, float], frame_size: tuple[int, int]) -> "ClipSpec":
        """A known preset where the template fit found it, over the video's own frames (already stream frames):
        only a template fit's small errors."""
        return ClipSpec(box_jitter=0.004, centre_jitter=0.03, travel_jitter=0.01, scale=scale, place=place,
                        fit="stretch", frame_sizes=(frame_size,), reference="released")


CLIP_FIELDS = ("crops", "ref", "patches", "ref_patches", "masks", "buttons", "knob", "values", "centres", "travel",
               "has_stick", "patch_ok", "family")


def _stream_region(frames: np.ndarray, size: tuple[int, int], fit: str, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Pixels [y0:y1, x0:x1] of each game frame as `compose.stream_frame` shows it (black outside the picture)."""
    H, W = size
    h, w = frames.shape[1:3]
    if fit == "stretch":
        sy, sx, oy, ox = H / h, W / w, 0, 0
    else:
        s = min(H / h, W / w)
        sy = sx = s
        oy, ox = (H - int(round(h * s))) // 2, (W - int(round(w * s))) // 2
    ys = np.floor((np.arange(y0, y1) - oy + 0.5) / sy).astype(int)
    xs = np.floor((np.arange(x0, x1) - ox + 0.5) / sx).astype(int)
    out = frames[:, np.clip(ys, 0, h - 1)][:, :, np.clip(xs, 0, w - 1)]
    out[:, (ys < 0) | (ys >= h)] = 0
    out[:, :, (xs < 0) | (xs >= w)] = 0
    return out


def stick_patch(centre: tuple[float, float], travel: float) -> np.ndarray:
    """Video pixels -> patch pixels for a stick resting at `centre` (pixel centres) with `travel` pixels of travel:
    one unit of travel is `PATCH_TRAVEL` patch pixels and the rest position is the patch's middle."""
    s = P.PATCH_TRAVEL / max(travel, 1e-3)
    c = (P.PATCH - 1) / 2
    return similarity(s, c - s * centre[0], c - s * centre[1])


def crop_geometry(preset: Preset, canvas_to_video: np.ndarray, box: list[float]) -> dict:
    """Where the preset's buttons and sticks are in the crop cut from `box`: region masks on the map grid, rest
    positions and travel in crop pixels."""
    to_crop = box_to_crop(box, P.CROP, P.MARGIN)
    a = compose(to_crop, canvas_to_video)
    s = float(a[0, 0])
    boxes = {b: [(x0 * s + a[0, 2], y0 * s + a[1, 2], x1 * s + a[0, 2], y1 * s + a[1, 2]) for x0, y0, x1, y1 in bs]
             for b, bs in preset.button_regions().items()}
    sticks = preset.sticks()
    centres = np.zeros((2, 2), np.float32)
    travel = np.zeros(2, np.float32)
    has = np.zeros(2, np.uint8)
    for i, name in enumerate(("j_left", "j_right")):
        if name in sticks:
            g = sticks[name]
            # canvas centre of the knob picture (pixel edges) -> crop pixel centres
            centres[i] = (g.centre[0] * s + a[0, 2], g.centre[1] * s + a[1, 2])
            travel[i] = g.radius * s
            has[i] = g.radius * s > 0.3
    return {"to_crop": to_crop, "masks": P.boxes_to_masks(boxes), "centres": centres, "travel": travel, "has": has}


def _crop_render(preset: Preset, pad: Gamepad, canvas_to_crop: np.ndarray) -> np.ndarray:
    """The preset showing `pad` as the crop sees it: premultiplied RGBA float32 [CROP_H, CROP_W, 4]."""
    # drawn at about twice the crop's scale (a quarter octave's steps, so pictures are reused), then averaged down
    r = min(2.0 ** (np.ceil(np.log2(2.0 * float(canvas_to_crop[0, 0])) * 4) / 4), 16.0)
    cache = preset._cache.setdefault("crop_renders", {})
    key = (pad.buttons.tobytes(), pad.j_left.tobytes(), pad.j_right.tobytes(), r)
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        cache[key] = preset.render_premultiplied(pad, r)
    pic = cache[key]
    # picture pixel i's centre is at canvas coordinate (i + 0.5) / r (canvas coordinates are pixel edges)
    return warp(pic, compose(canvas_to_crop, similarity(1 / r, 0.5 / r, 0.5 / r)), P.CROP)


def _splits(v: np.ndarray, directions: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Ways the frames' pixels of one region [N, K] fall in two groups: for each direction (and the principal
    one) the largest gap along it, refined by 2-means; each as the second group's mask, only where the groups'
    means are further apart than a few times the spread inside them."""
    c = v - v.mean(0)
    for d in directions + [np.linalg.svd(c, full_matrices=False)[2][0]]:
        proj = c @ d
        order = np.sort(proj)
        k = int(np.argmax(np.diff(order)))
        second = proj > (order[k] + order[k + 1]) / 2
        for _ in range(6):
            if second.all() or not second.any():
                break
            a, b = v[~second].mean(0), v[second].mean(0)
            nearer_b = ((v - b) ** 2).sum(1) < ((v - a) ** 2).sum(1)
            if (nearer_b == second).all():
                break
            second = nearer_b
        if second.all() or not second.any():
            continue
        a, b = v[~second].mean(0), v[second].mean(0)
        within = np.sqrt(np.mean(np.concatenate([(v[~second] - a) ** 2, (v[second] - b) ** 2])))
        if np.sqrt(np.mean((a - b) ** 2)) > max(2.5 * within, 0.04):
            yield second


def _misfit(released: np.ndarray, pressed: np.ndarray, rest: np.ndarray, look: np.ndarray) -> float:
    """How badly two mean looks [K, 3] fit the preset drawn released (`rest`) and pressed (`look`, premultiplied
    RGBA [K, 4]) over one background at one opacity (the best of a few opacities, the background solved from
    either look)."""
    best = np.inf
    for a in np.linspace(0.3, 1.0, 15):
        bg = np.clip((released - a * rest[:, :3]) / np.maximum(1 - a * rest[:, 3:], 0.05), 0, 1)
        e = np.mean((a * look[:, :3] + (1 - a * look[:, 3:]) * bg - pressed) ** 2)
        bg = np.clip((pressed - a * look[:, :3]) / np.maximum(1 - a * look[:, 3:], 0.05), 0, 1)
        e += np.mean((a * rest[:, :3] + (1 - a * rest[:, 3:]) * bg - released) ** 2)
        best = min(best, float(e))
    return best


def _knob_pads() -> list[Gamepad]:
    """Both knobs pushed to the edge of their travel, in eight directions (an eighth of a turn apart)."""
    return [Gamepad.make(j_left=at, j_right=at)
            for at in ((float(np.cos(k * np.pi / 4)), float(np.sin(k * np.pi / 4))) for k in range(8))]


def neutral_reference(crops: np.ndarray, preset: Preset, canvas_to_crop: np.ndarray) -> np.ndarray:
    """The reference look [CROP_H, CROP_W, 3] of a known preset from crops of frames sampled across a video: their
    median, except where a button the player holds in most of them is drawn, which is taken from the frames that
    show it released (a held button in the reference would read as released whenever it is pressed).

    For each button, the frames' pixels where its press changes the drawing fall into two groups when it was
    pressed in some and released in others; the released group is the one that, with the other as the pressed
    one, fits the preset's two drawings composited over one background (whatever the opacity)."""
    x = crops.astype(np.float32) / 255.0
    ref = np.median(x, axis=0)
    if len(x) < 3:
        return (ref * 255 + 0.5).astype(np.uint8)
    rest = _crop_render(preset, Gamepad.neutral(), canvas_to_crop)
    looks = {b: _crop_render(preset, Gamepad.make([b]), canvas_to_crop) for b in preset.button_regions()}
    changes = {b: np.abs(look - rest).max(-1) > 0.04 for b, look in looks.items()}
    knobs = np.zeros(ref.shape[:2], bool)  # where a moving stick knob is drawn
    for pad in _knob_pads():
        knobs |= np.abs(_crop_render(preset, pad, canvas_to_crop) - rest).max(-1) > 0.04
    alone = (np.sum(list(changes.values()), axis=0) == 1) & ~knobs  # one button's press alone decides the look
    released = np.ones((len(x),) + ref.shape[:2], bool)  # frame f shows every button drawn at a pixel released
    for button, look in looks.items():
        region = changes[button] & alone
        if region.sum() < 2:
            continue
        v = x[:, region].reshape(len(x), -1)
        r, p = rest[region], look[region]
        # the press's change over the median, and over a grey background (the median may show it pressed)
        directions = [((p[:, :3] - r[:, :3]) - (p[:, 3:] - r[:, 3:]) * bg).ravel()
                      for bg in (ref[region], np.float32(0.5))]
        best = None
        for second in _splits(v, [d / max(float(np.linalg.norm(d)), 1e-6) for d in directions]):
            a, b = v[~second].mean(0).reshape(-1, 3), v[second].mean(0).reshape(-1, 3)
            fit_a, fit_b = _misfit(a, b, r, p), _misfit(b, a, r, p)
            if min(fit_a, fit_b) < 0.03 and max(fit_a, fit_b) > 3 * min(fit_a, fit_b):
                if best is None or min(fit_a, fit_b) < best[0]:  # the groups are this button released and pressed
                    best = (min(fit_a, fit_b), ~second if fit_a < fit_b else second)
        if best is not None:
            released[:, changes[button]] &= best[1][:, None]
    # pixels sharing one set of released frames, told apart by that set's bits
    packed = np.ascontiguousarray(np.packbits(released, axis=0).reshape(-1, released[0].size).T)
    sets, group = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(), return_inverse=True)
    group = group.reshape(released.shape[1:])
    for g in range(len(sets)):
        where = group == g
        f_mask = released[:, where][:, 0]
        if f_mask.all() or not f_mask.any():
            continue
        ref[where] = np.median(x[f_mask][:, where], axis=0)
    return (np.clip(ref, 0, 1) * 255 + 0.5).astype(np.uint8)


DPAD_STATES = (("dpad_up",), ("dpad_down",), ("dpad_left",), ("dpad_right",), ("dpad_up", "dpad_left"),
               ("dpad_up", "dpad_right"), ("dpad_down", "dpad_left"), ("dpad_down", "dpad_right"))


KNOB = "knob"  # drawn_changes' key of a stick knob pushed away from its rest: (KNOB, angle in eighths of a turn)


def drawn_changes(preset: Preset, canvas_to_crop: np.ndarray, background: np.ndarray
                  ) -> dict[tuple[str, ...], np.ndarray]:
    """How the known preset's drawing changes in the crop from its neutral look: for each button pressed alone,
    for a d-pad drawn as one element each of its eight direction pictures (keyed by the buttons held, as in
    `DPAD_STATES`), and for the knobs pushed to the edge of their travel in eight directions (`KNOB`, k):
    [CROP_H, CROP_W, 3] float32 each, composited over `background` (float 0..1, the crops' median) so that the
    change is the one a video shows, whatever the overlay's opacity."""
    rest = _crop_render(preset, Gamepad.neutral(), canvas_to_crop)
    pads = {(b,): Gamepad.make([b]) for b in preset.button_regions()}
    if any(e.kind == "dpad" for e in preset.elements):
        pads.update({st: Gamepad.make(list(st)) for st in DPAD_STATES})
    if preset.sticks():
        pads.update({(KNOB, str(k)): pad for k, pad in enumerate(_knob_pads())})
    out = {}
    for state, pad in pads.items():
        d = _crop_render(preset, pad, canvas_to_crop) - rest
        out[state] = d[..., :3] - d[..., 3:] * background
    return out


def make_clip(rng: np.random.Generator, bank: BackgroundBank, preset: Preset, spec: ClipSpec = ClipSpec(),
              game: str | None = None) -> dict:
    """One clip: the parser's inputs for `spec.frames` consecutive frames (plus the reference), and the truth."""
    from azote.labeling.compose import Placement, overlay_frame
    from azote.labeling.locate import neutral_bbox

    H, W = spec.frame_sizes[int(rng.integers(len(spec.frame_sizes)))]
    fit = spec.fit or ("fit" if rng.random() < 0.75 else "stretch")
    bx0, by0, bx1, by1 = neutral_bbox(preset)
    if spec.scale is not None:
        s = spec.scale
    else:
        s = float(np.exp(rng.uniform(*np.log(spec.width_share)))) * W / max(bx1 - bx0, 1.0)
        s = min(s, 0.85 * H / max(by1 - by0, 1.0))
    ow, oh = (bx1 - bx0) * s, (by1 - by0) * s
    if spec.place is not None:
        px, py = spec.place
    else:  # anywhere, now and then partly off-screen (streamers push overlays against an edge)
        px = float(rng.uniform(-0.08 * ow, W - 0.92 * ow)) - bx0 * s
        py = float(rng.uniform(-0.08 * oh, H - 0.92 * oh)) - by0 * s
    opacity = float(rng.uniform(*spec.opacity))
    # the region to make: the overlay and room for the crop's margin, the box error and the stick patches
    grow = max(ow, oh) * (P.MARGIN + spec.box_jitter * 3 + 0.1)
    x0 = max(0, int(np.floor(px + bx0 * s - grow))) & ~1
    y0 = max(0, int(np.floor(py + by0 * s - grow))) & ~1
    x1 = min(W, int(np.ceil(px + bx1 * s + grow)))
    y1 = min(H, int(np.ceil(py + by1 * s + grow)))
    x1 -= (x1 - x0) % 2
    y1 -= (y1 - y0) % 2
    n_clip, n_ref = spec.frames, spec.ref_frames
    game, run = bank.run(rng, n_clip, game)
    refs = np.stack([bank.run(rng, 1, game)[1][0] for _ in range(n_ref)])
    backgrounds = _stream_region(np.concatenate([refs, run]), (H, W), fit, x0, y0, x1, y1)
    actions = random_actions(rng, n_ref + n_clip + 8)
    ref_states = [actions[int(i)] for i in rng.integers(0, len(actions), n_ref)]
    clip_states = [actions[len(actions) - n_clip + t] for t in range(n_clip)]
    local = Placement(px - x0, py - y0, s, opacity)
    frames = np.stack([overlay_frame(bg, preset, pad, local) for bg, pad in zip(backgrounds, ref_states + clip_states)])
    crf = int(rng.integers(spec.crf[0], spec.crf[1] + 1))
    decoded = h264_roundtrip(frames, crf)
    canvas_to_region = local.affine()
    # the box as a locator reports it: the visible extent, with its error
    true_box = [local.x + bx0 * s, local.y + by0 * s, ow, oh]
    j = spec.box_jitter
    box = [true_box[0] + rng.normal(0, j) * ow, true_box[1] + rng.normal(0, j) * oh,
           ow * float(np.exp(rng.normal(0, j))), oh * float(np.exp(rng.normal(0, j)))]
    geo = crop_geometry(preset, canvas_to_region, box)
    crops = np.stack([warp(f, geo["to_crop"], P.CROP) for f in decoded])
    if spec.reference == "released":  # as the labeller makes it for a known preset (`neutral_reference`)
        ref = neutral_reference(crops[:n_ref], preset, compose(geo["to_crop"], canvas_to_region))
    else:
        ref = np.median(crops[:n_ref], axis=0).astype(np.uint8)
    # sticks: patches around an estimated rest position at an estimated travel; the knob target is where the knob
    # is in those units
    sticks = preset.sticks()
    patches = np.zeros((n_clip, 2, P.PATCH, P.PATCH, 3), np.uint8)
    ref_patches = np.zeros((2, P.PATCH, P.PATCH, 3), np.uint8)
    knob = np.zeros((n_clip, 2, 2), np.float32)
    ok = np.zeros(2, np.uint8)
    values = np.zeros((n_clip, 2, 2), np.float32)
    for i, name in enumerate(("j_left", "j_right")):
        vals = np.stack([st.j_left if i == 0 else st.j_right for st in clip_states])
        values[:, i] = vals
        if name not in sticks or not geo["has"][i]:
            continue
        g = sticks[name]
        cv = canvas_to_region @ np.array([g.centre[0], g.centre[1], 1.0])
        tv = g.radius * s
        est_t = tv * float(np.exp(rng.normal(0, spec.travel_jitter)))
        est_c = cv + rng.normal(0, spec.centre_jitter, 2) * tv
        m = stick_patch((float(est_c[0]), float(est_c[1])), est_t)
        ps = np.stack([warp(f, m, (P.PATCH, P.PATCH)) for f in decoded])
        ref_patches[i] = np.median(ps[:n_ref], axis=0).astype(np.uint8)
        patches[:, i] = ps[n_ref:]
        knob[:, i] = (cv[None] + vals * tv - est_c[None]) / est_t
        ok[i] = 1
    return {"crops": crops[n_ref:], "ref": ref, "patches": patches, "ref_patches": ref_patches,
            "masks": geo["masks"], "buttons": np.stack([st.buttons for st in clip_states]).astype(np.uint8),
            "knob": knob, "values": values, "centres": geo["centres"], "travel": geo["travel"],
            "has_stick": geo["has"], "patch_ok": ok, "family": np.int64(FAMILIES.index(preset.family)),
            "preset": preset.name, "game": game, "crf": crf}


def write_shard(path: str | os.PathLike, clips: list[dict]) -> Path:
    """Clips saved together (atomically) as arrays with a leading clip axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **{k: np.stack([np.asarray(c[k]) for c in clips]) for k in CLIP_FIELDS},
             preset=np.array([c["preset"] for c in clips]))
    os.replace(tmp, path)
    return path


def generated_shard(path: str | os.PathLike, bank: BackgroundBank, clips: int, seed: int, styles: Sequence[str],
                    spec: ClipSpec = ClipSpec()) -> Path:
    """A shard of clips, each with a new random preset (`skingen.random_preset`) of one of `styles`."""
    from azote.labeling.skingen import random_preset

    rng = np.random.default_rng(seed)
    made = []
    for _ in range(clips):
        style = styles[int(rng.integers(len(styles)))]
        made.append(make_clip(rng, bank, random_preset(rng, style=style), spec))
    return write_shard(path, made)


def _shard_job(args: tuple) -> str:
    path, bank_path, clips, seed, styles = args
    import cv2

    cv2.setNumThreads(1)
    return str(generated_shard(path, BackgroundBank.load(bank_path), clips, seed, styles))


def write_shards(out: str | os.PathLike, bank_path: str | os.PathLike, shards: int, clips_per_shard: int,
                 styles: Sequence[str], seed: int = 0, workers: int = 1,
                 progress: Callable[[str], None] | None = None) -> list[Path]:
    """Writes `shards` shards of generated presets under `out` (resumable: existing shards are kept); returns them
    in order."""
    out = Path(out)
    paths = [out / f"shard_{i:04d}.npz" for i in range(shards)]
    run_jobs(_shard_job, [(p, str(bank_path), clips_per_shard, seed * 100003 + i, list(styles))
                          for i, p in enumerate(paths) if not p.is_file()], workers, progress)
    return paths
