"""Naming an unseen overlay's elements: which discovered element (`azote.labeling.elements`) shows which button,
and which of its two pictures means "pressed".

Every (button, element) pair is described by a few numbers (`PAIR_FEATURES`): how much of the parser's region for
the button lies on the element, how the parser's per-frame reading of the button follows the element's switching,
how far the region's centre is from the element, the element's place, size and how often and how cleanly it
switches, whether its switching follows a stick's deflection (a moving knob is not a button), and which button it
is. A small network scores the pair; pairs are taken best first, each button and each element once, while the
score says more likely than not. A second one says, from the parser's reading and from how the element's two
pictures differ (lighter, more colourful, steadier), whether its less common picture is the pressed one; those
decisions are then made to agree across the skin, which draws every press alike (`agree_with_skin`).

A known preset needs no network: its drawn regions and the adapted parser's readings name its elements
(`name_by_readings`).

Both networks are trained by `azote label-train` on videos made from the project's generated skins in the
training styles over the training games (`namer_rows`), run through the same discovery and parser as labelling;
the shipped weights are `weights/namer.safetensors`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from azote.errors import AzoteError
from azote.gamepad import BUTTONS, NUM_BUTTONS
from azote.labeling.elements import Element, correlation
from azote.labeling.parser import GRID_SPAN

NAMER_FILE = "namer.safetensors"
WEIGHTS = Path(__file__).parent / "weights" / NAMER_FILE
PAIR_FEATURES = ("cover", "follow", "follow_signed", "distance", "cover_rank", "follow_rank", "best_cover",
                 "best_follow", "distance_rank", "x", "y", "width", "height", "size", "share", "separation",
                 "contrast", "stick", *(f"button_{j}" for j in range(NUM_BUTTONS)))
SIDE_FEATURES = ("said", "said_abs", "share", "lighter", "colour", "steadier", "separation", "contrast")
HIDDEN = 32
HUE_WEIGHT = 2.0  # `agree_with_skin`: 2-5 alike on the held-out styles (button accuracy +0.007), 2 best of 2 and 4
# on the third-party skins (+0.0005)
SKIN_WEIGHT = 1.0  # `agree_with_skin`: 0.3-3 tried on both test sets; 1 gains on both, 0.5 more on one only
MIN_COVER = 0.3  # a known preset's element lies in a button's drawn region at least this much
KNOB_EXPLAINED = 0.75  # held-out styles: knob drawings 0.82-0.99, buttons at most 0.48 (8 x 8 cells overfit a little)
SAME_ELEMENT = 0.95  # an element is a button's when they agree on this share of frames (either way round)


class NamerError(AzoteError, RuntimeError):
    """Namer weights that are missing or made for other features."""


def _mlp(n_in: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(n_in, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))


@dataclass
class Namer:
    pair: torch.nn.Sequential
    side: torch.nn.Sequential

    @torch.inference_mode()
    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.pair(torch.from_numpy(x.astype(np.float32)))[:, 0].numpy() if len(x) else np.zeros(0)

    @torch.inference_mode()
    def side_logits(self, x: np.ndarray) -> np.ndarray:
        """> 0: the element's less common picture is the pressed one."""
        return self.side(torch.from_numpy(x.astype(np.float32)))[:, 0].numpy() if len(x) else np.zeros(0, np.float32)


def save_namer(namer: Namer, path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"pair.{k}": v.contiguous() for k, v in namer.pair.state_dict().items()}
    state.update({f"side.{k}": v.contiguous() for k, v in namer.side.state_dict().items()})
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(dict(sorted(state.items())), str(tmp),
              metadata={"pair_features": json.dumps(PAIR_FEATURES), "side_features": json.dumps(SIDE_FEATURES)})
    os.replace(tmp, path)
    return path


def load_namer(path: str | os.PathLike | None = None) -> Namer:
    from safetensors import safe_open

    path = Path(path) if path else WEIGHTS
    if not path.is_file():
        raise NamerError(f"{path}: no namer weights (train them with `azote label-train`)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise NamerError(f"{path}: cannot read the namer weights ({exc})") from None
    if meta.get("pair_features") != json.dumps(PAIR_FEATURES) or meta.get("side_features") != json.dumps(SIDE_FEATURES):
        raise NamerError(f"{path}: namer weights made for other features; retrain with `azote label-train`")
    namer = Namer(_mlp(len(PAIR_FEATURES)), _mlp(len(SIDE_FEATURES)))
    for name, net in (("pair", namer.pair), ("side", namer.side)):
        own = {k: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            net.load_state_dict({k[len(name) + 1:]: v for k, v in own.items()})
        except RuntimeError as exc:
            raise NamerError(f"{path}: {name}: {str(exc).splitlines()[0]}") from None
        net.eval()
    return namer


# --- features ------------------------------------------------------------------------------------------------------
def _region_centre(weights: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """Crop pixels (x, y) of a region's weighted centre; map pixel j is centred on crop pixel 4 j."""
    from azote.labeling.parser import map_pixel_centres

    xs, ys = map_pixel_centres()
    w = weights / max(float(weights.sum()), 1e-9)
    return float((w.sum(0) * xs).sum()), float((w.sum(1) * ys).sum())


def pair_features(elements: Sequence[Element], regions: np.ndarray, present: np.ndarray, probs: np.ndarray,
                  rows: np.ndarray, sticks: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(button, element) pairs worth scoring and their `PAIR_FEATURES`. `regions` [17, h, w] and `present` [17]
    are the parser's layout, `probs` [n, 17] its readings of the sample's frames `rows`, `sticks` [T, 2, 2] the
    stick readings of the sample's frames."""
    if not elements:
        return [], np.zeros((0, len(PAIR_FEATURES)), np.float32)
    h, w = elements[0].core.shape
    moving = np.abs(sticks.reshape(len(sticks), -1))
    info = []
    for e in elements:
        yy, xx = np.nonzero(e.core)
        stick = max((abs(correlation(moving[:, k], e.labels)) for k in range(moving.shape[1])), default=0.0)
        info.append([e.centre[0] / w, e.centre[1] / h, (xx.max() - xx.min() + 1) / w, (yy.max() - yy.min() + 1) / h,
                     np.sqrt(e.core.sum()) / w, e.labels.mean(), e.separation, np.log(e.contrast), stick])
    per_element = np.asarray(info, np.float32)
    pairs, feats = [], []
    for j in np.flatnonzero(present):
        region = regions[j].astype(np.float32)
        if region.max() <= 0:
            continue
        cover_map = _cover(region, (w, h))
        cx, cy = _region_centre(region, (w, h))
        cover = np.array([float(cover_map[e.core].mean()) for e in elements])
        follow = np.array([correlation(probs[:, j], e.labels[rows]) for e in elements])
        dist = np.hypot(per_element[:, 0] - cx / w, per_element[:, 1] - cy / h)
        second = np.sort(dist)[min(1, len(dist) - 1)]
        onehot = np.eye(NUM_BUTTONS, dtype=np.float32)[j]
        for i in range(len(elements)):
            if cover[i] < 0.02 and abs(follow[i]) < 0.1 and dist[i] > 0.25:
                continue  # nowhere near and not following: not worth a score
            pairs.append((int(j), i))
            feats.append(np.concatenate([[cover[i], abs(follow[i]), follow[i], dist[i],
                                          cover[i] / max(cover.max(), 1e-6), abs(follow[i]) / max(np.abs(follow).max(), 1e-6),
                                          float(cover[i] >= cover.max()), float(abs(follow[i]) >= np.abs(follow).max()),
                                          dist[i] / max(float(second), 1e-6)], per_element[i], onehot]))
    return pairs, np.asarray(feats, np.float32).reshape(-1, len(PAIR_FEATURES))


def _cover(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A button's region (map grid) on the crop's grid, scaled to 1 at its peak, grown by a pixel."""
    region = region.astype(np.float32)
    return cv2.dilate(cv2.resize(region / max(float(region.max()), 1e-9), size, interpolation=cv2.INTER_LINEAR),
                      np.ones((3, 3), np.uint8))


def drawn_area(regions: np.ndarray, present: np.ndarray, size: tuple[int, int], min_cover: float = MIN_COVER
               ) -> np.ndarray:
    """[H, W] bool of a crop of `size` (W, H): where a known preset draws its buttons, as `name_by_readings` covers
    them (an element elsewhere is never named there, so discovery need not look)."""
    out = np.zeros(size[::-1], bool)
    for j in np.flatnonzero(present):
        if regions[j].max() > 0:
            out |= _cover(regions[j], size) >= min_cover
    return out


def name_by_readings(elements: Sequence[Element], regions: np.ndarray, present: np.ndarray, probs: np.ndarray,
                     min_cover: float = MIN_COVER, min_follow: float = 0.5, min_agree: float = 0.8
                     ) -> dict[int, tuple[int, bool]]:
    """A known preset's elements named by its drawn regions and the adapted parser's readings `probs` [T, 17] of
    the elements' frames: a button takes the element its region covers whose pictures its readings follow best,
    when they follow it closely (correlation, and agreement frame by frame) - else the parser's own readings stay.
    Returns what `name_elements` returns."""
    if not elements:
        return {}
    h, w = elements[0].core.shape
    pairs = []
    for j in np.flatnonzero(present):
        if regions[j].max() <= 0:
            continue
        cover = _cover(regions[j], (w, h))
        said = probs[:, j] > 0.5
        for i, e in enumerate(elements):
            c = correlation(probs[:, j], e.labels)
            if float(cover[e.core].mean()) < min_cover or abs(c) < min_follow:
                continue
            if float(np.mean(said == (e.labels == (c > 0)))) >= min_agree:
                pairs.append((abs(c), int(j), i, c > 0))
    out: dict[int, tuple[int, bool]] = {}
    used: set[int] = set()
    for _, j, i, pressed in sorted(pairs, reverse=True):
        if j not in out and i not in used:
            out[j] = (i, bool(pressed))
            used.add(i)
    return out


DPAD = ("dpad_up", "dpad_down", "dpad_left", "dpad_right")


def _distances(seen: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Mean absolute distance [n, m] of n frames' pixels [n, p, 3] to m looks of them [m, p, 3] (0..255)."""
    seen = seen.astype(np.float32, copy=False)
    return np.stack([np.abs(seen - look).mean((1, 2)) for look in looks], axis=1)


@dataclass(frozen=True)
class PictureReading:
    """A d-pad drawn as one element with nine pictures, read from the discovered elements it is made of (on such a
    d-pad one direction often fills a half, so no element switches with that direction alone): a frame shows the
    picture whose pattern of switched elements is nearest the elements' states; where those elements do not tell
    some pictures apart (up from up-right when none switches with right alone there), the one of them whose look
    is nearest where their looks differ."""

    elements: tuple[int, ...]
    pressed: tuple[bool, ...]  # per element: is its less common picture the switched one
    patterns: np.ndarray  # [m, k] bool: the distinct patterns of switched elements the nine pictures draw
    group: np.ndarray  # [9] int: each picture's pattern (the neutral picture first, then the eight directions)
    looks: np.ndarray  # [9, H, W, 3] float32: each picture as the crop shows it (0..255)
    held: np.ndarray  # [9, 4] bool: the `DPAD` buttons each picture shows held

    def read(self, states: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """[T, k] bool (each element showing its less common picture) and the frames' crops [T, H, W, 3] uint8 ->
        [T, 4] bool, the `DPAD` buttons held."""
        on = states == np.asarray(self.pressed)
        g = (on[:, None, :] != self.patterns[None]).sum(-1).argmin(1)
        picture = np.array([int(np.flatnonzero(self.group == v)[0]) for v in g], dtype=int)
        for v in np.unique(g):
            options = np.flatnonzero(self.group == v)
            rows = np.flatnonzero(g == v)
            if len(options) < 2:
                continue
            looks = self.looks[options]
            where = np.abs(looks - looks[:1]).max(-1).max(0) > 10  # where the pictures differ
            if not where.any():
                continue
            picture[rows] = options[_distances(crops[rows][:, where], looks[:, where]).argmin(1)]
        return self.held[picture]


def _released_dpad(ref: np.ndarray, crops: np.ndarray, changes: list[np.ndarray], frames: int = 256,
                   margin: float = 0.9) -> np.ndarray:
    """The neutral look `ref` [H, W, 3] float (0..255) with a nine-picture d-pad shown released: a direction held
    in most frames shows in the reference (the crops' median there), and looks built on it would be wrong. Of the
    eight direction pictures the reference may show, the one whose removal best explains the d-pad in the `crops`
    (each frame nearest one of the nine looks) is taken out, when it explains them clearly better (mean distance
    below `margin` times that of the reference as it is). `changes`: the eight direction pictures' changes."""
    if not changes:
        return ref
    where = np.abs(np.stack(changes)).max(-1).max(0) > 0.04
    if not where.any():
        return ref
    seen = crops[np.unique(np.linspace(0, len(crops) - 1, min(len(crops), frames)).round().astype(int))]
    seen = seen[:, where]  # [n, p, 3]
    drawn = [np.zeros_like(changes[0][where])] + [c[where] * 255 for c in changes]
    best, out = None, ref
    for k, shown in enumerate(drawn):
        rest = np.clip(ref[where] - shown, 0, 255)
        cost = float(_distances(seen, np.clip(rest + np.stack(drawn), 0, 255)).min(1).mean()) / (1.0 if k == 0 else margin)
        if best is None or cost < best:
            best, out = cost, ref.copy()
            out[where] = rest
    return out


def name_by_drawing(elements: Sequence[Element], crops: np.ndarray, ref: np.ndarray,
                    changes: dict[tuple[str, ...], np.ndarray], min_match: float = 0.5
                    ) -> tuple[dict[int, tuple[int, bool]], PictureReading | None]:
    """A known preset's elements named by its own drawing. Each element's own test (`Element.classify`) applied to
    the neutral look `ref` [H, W, 3] uint8 and to it changed as each press changes the drawing (`changes`, from
    `synth.drawn_changes`; or with the press taken off, when the reference shows a button held in most frames)
    says which presses switch it; how its pictures differ in the elements' frames `crops` [T, H, W, 3] must then
    match the drawn change (|cosine| >= `min_match`: game pixels that switch under a button's drawing do not), and
    its sign says which picture is the pressed one. A button takes the element that its press alone switches and
    no knob's move does (of several, one that the press drawn onto the reference switches before one that the
    press taken off it does, then the best match); a d-pad drawn as one element is read from the elements its
    pictures switch (`PictureReading`). Returns what `name_elements` returns, and the d-pad's reading or None."""
    if not elements:
        return {}, None
    states = list(changes)
    pictures = [st for st in states if st[0] in DPAD] if any(len(st) > 1 and st[0] in DPAD for st in states) else []
    base = _released_dpad(ref.astype(np.float32), crops, [changes[st] for st in pictures])
    # each press drawn onto the reference, and taken off it (a button held in most frames shows in the reference)
    looks = np.stack([base] + [np.clip(base + sign * changes[st] * 255, 0, 255) for sign in (1, -1) for st in states])
    # button -> ((switched by the press drawn onto the reference, match), element, polarity)
    best: dict[int, tuple[tuple[bool, float], int, bool]] = {}
    pad: list[tuple[int, bool, list[bool]]] = []
    for i, e in enumerate(elements):
        if e.labels.all() or not e.labels.any():
            continue
        shown = e.classify(looks.round().astype(np.uint8))
        on, off = shown[1:1 + len(states)] != shown[0], shown[1 + len(states):] != shown[0]
        if on.any() and off.any():  # the reference shows some press that switches it, and lacks another
            continue
        switched = [st for st, a, b in zip(states, on, off) if a or b]
        if not switched or any(st[0] not in BUTTONS for st in switched):  # nothing, or a knob, switches it
            continue
        # the pressed picture: the one the drawn change leads to (the reference may show either)
        seen = crops[:, e.core].astype(np.float32) * np.float32(1 / 255)
        change = seen[e.labels].mean(0) - seen[~e.labels].mean(0)
        drawn = np.mean([changes[st][e.core] for st in switched], axis=0)
        match = float((change * drawn).sum() / max(float(np.linalg.norm(change) * np.linalg.norm(drawn)), 1e-9))
        minority_pressed, match = match > 0, abs(match)
        if match < min_match:
            continue
        if all(st in pictures for st in switched):
            pad.append((i, minority_pressed, [st in switched for st in pictures]))
        elif len(switched) == 1 and switched[0] not in pictures:
            j = BUTTONS.index(switched[0][0])
            if j not in best or (bool(on.any()), match) > best[j][0]:
                best[j] = ((bool(on.any()), match), i, minority_pressed)
    reading = None
    if pad:
        drawn = np.array([[False] * len(pad)] + [[p[2][k] for p in pad] for k in range(len(pictures))])
        patterns, group = np.unique(drawn, axis=0, return_inverse=True)
        held = np.array([[False] * 4] + [[d in st for d in DPAD] for st in pictures])
        picture_looks = looks[[0] + [1 + states.index(st) for st in pictures]]
        reading = PictureReading(tuple(p[0] for p in pad), tuple(p[1] for p in pad), patterns, group.ravel(),
                                 picture_looks, held)
    return {j: (i, pressed) for j, (_, i, pressed) in best.items()}, reading


def _pictures(element: Element, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The element's core pixels in every frame [T, k, 3] (0..1), and their mean in its less common and its other
    picture [k, 3]."""
    core = crops[:, element.core].astype(np.float32) * np.float32(1 / 255)
    return core, core[element.labels].mean(0), core[~element.labels].mean(0)


def side_features(element: Element, pictures: tuple[np.ndarray, np.ndarray, np.ndarray], probs: np.ndarray,
                  rows: np.ndarray, button: int) -> np.ndarray:
    """`SIDE_FEATURES` of an element named `button` (its `_pictures`): how its less common picture differs from the
    other."""
    lab = element.labels
    said = float(probs[lab[rows], button].mean() - probs[~lab[rows], button].mean()) if lab[rows].any() and \
        (~lab[rows]).any() else 0.0
    core, on, off = pictures
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    lighter = float((on @ luma).mean() - (off @ luma).mean())
    colour = float((on.max(-1) - on.min(-1)).mean() - (off.max(-1) - off.min(-1)).mean())
    steadier = float(core[~lab].std(0).mean() - core[lab].std(0).mean())
    return np.array([said, abs(said), lab.mean(), lighter, colour, steadier, element.separation,
                     np.log(element.contrast)], np.float32)


def agree_with_skin(logits: np.ndarray, changes: np.ndarray, weight: float = SKIN_WEIGHT) -> np.ndarray:
    """Which picture is pressed, per named element, decided together: a skin draws every press alike (one fill
    colour, lighter, or a tint), so an element whose change of colour from its common to its less common picture
    (`changes` [n, 3]) runs against the others' is more likely read the wrong way round than the namer's own
    `logits` (> 0: the less common picture is pressed) say alone. Each element takes the side its logit plus
    `weight` x the others' sides weighted by the cosine of their changes favour, until none changes."""
    side = np.where(logits > 0, 1.0, -1.0)
    if len(side) < 3:
        return side > 0
    # compared as hue (the change less its grey part, weighted up) and brightness: one tint darkens a light part
    # and lightens a dark one, but shifts both towards its hue (a shaded Switch Pro's blue press read the d-pad
    # inverted when compared in plain RGB)
    grey = changes.mean(1, keepdims=True)
    changes = np.concatenate([(changes - grey) * HUE_WEIGHT, grey], 1)
    unit = changes / np.maximum(np.linalg.norm(changes, axis=1, keepdims=True), 1e-9)
    cos = unit @ unit.T
    np.fill_diagonal(cos, 0.0)
    for _ in range(10):
        before = side.copy()
        for a in range(len(side)):
            side[a] = 1.0 if logits[a] + weight * float(cos[a] @ side) > 0 else -1.0
        if (side == before).all():
            break
    return side > 0


def stick_explained(labels: np.ndarray, sticks: np.ndarray, cells: int = 8, min_count: int = 5) -> float:
    """How much of an element's pictures [T] a stick's position [T, 2, 2] tells (0: nothing beyond the element's
    own rate, 1: all): each picture guessed as the more common one among frames with the knob in the same cell of
    a `cells` x `cells` grid over its travel (a cell of fewer than `min_count` frames guesses the overall one)."""
    on = np.asarray(labels, bool)
    p = float(on.mean()) if len(on) else 0.0
    base = max(p, 1 - p)
    if 1 - base < 0.005:
        return 0.0
    best = 0.0
    for s in range(sticks.shape[1]):
        r = sticks[:len(on), s]
        if not np.abs(r).any():
            continue
        ij = np.clip(((r + GRID_SPAN) / (2 * GRID_SPAN) * cells).astype(int), 0, cells - 1)
        cell = ij[:, 0] * cells + ij[:, 1]
        n, k = np.bincount(cell, minlength=cells * cells), np.bincount(cell, on, minlength=cells * cells)
        right = np.where(n >= min_count, np.maximum(k, n - k), k if p >= 0.5 else n - k).sum() / len(on)
        best = max(best, (right - base) / (1 - base))
    return float(best)


def name_elements(namer: Namer, elements: Sequence[Element], crops: np.ndarray, regions: np.ndarray,
                  present: np.ndarray, probs: np.ndarray, rows: np.ndarray, sticks: np.ndarray
                  ) -> dict[int, tuple[int, bool]]:
    """button -> (element, whether the element's less common picture is the pressed one). An element whose
    pictures a stick's position tells (`stick_explained` >= `KNOB_EXPLAINED`) is the knob's own drawing (on a
    shaded skin, what the knob uncovers as it leaves its rest), never a button: on the held-out shaded DualSense
    and neon Joy-Con such an element had been named the stick's click and read pressed in 70% of the frames. A
    true click can score as high when the reader sees its pressed knob a little off (the shaded Switch Pro):
    such a click is then read as never pressed."""
    pairs, x = pair_features(elements, regions, present, probs, rows, sticks)
    scores = namer.scores(x)
    knob = {i for i, e in enumerate(elements) if stick_explained(e.labels, sticks) >= KNOB_EXPLAINED}
    scores[[k for k, (_, i) in enumerate(pairs) if i in knob]] = -1.0
    out: dict[int, tuple[int, bool]] = {}
    used: set[int] = set()
    for k in np.argsort(-scores):
        j, i = pairs[k]
        if scores[k] <= 0:
            break
        if j in out or i in used:
            continue
        out[j] = (i, True)
        used.add(i)
    if out:
        pics = [_pictures(elements[i], crops) for i, _ in out.values()]
        logits = namer.side_logits(np.stack([side_features(elements[i], p, probs, rows, j)
                                             for (j, (i, _)), p in zip(out.items(), pics)]))
        changes = np.stack([(on - off).mean(0) for _, on, off in pics])
        out = {j: (i, bool(s)) for (j, (i, _)), s in zip(out.items(), agree_with_skin(logits, changes))}
    return out


# --- training ------------------------------------------------------------------------------------------------------
def namer_rows(rng: np.random.Generator, bank, styles: Sequence[str], parser, frames: int = 600,
               probe: int = 160) -> dict[str, np.ndarray]:
    """One generated video's training rows: pair features with whether the element is the button's, and side
    features (of the true pairs) with whether the less common picture is the pressed one."""
    from azote.labeling import parser as P
    from azote.labeling.elements import discover
    from azote.labeling.skingen import random_preset
    from azote.labeling.synth import ClipSpec, make_clip

    preset = random_preset(rng, style=styles[int(rng.integers(len(styles)))])
    clip = make_clip(rng, bank, preset, ClipSpec(frames=frames, ref_frames=24, box_jitter=0.06))
    crops, truth = clip["crops"], clip["buttons"].astype(bool)
    elements = discover(crops)
    sampled = np.linspace(0, len(crops) - 1, 24).round().astype(int)
    ref = np.median(crops[sampled], axis=0).astype(np.uint8)
    rows = np.unique(np.linspace(0, len(crops) - 1, min(len(crops), probe)).round().astype(int))
    with torch.inference_mode():  # read as labelling reads an unseen skin (`label.make_reader`, `label.read_video`)
        layout = P.layout_from_maps(*parser.forward_maps(P.still_inputs(ref, crops[sampled])))
        probs = P.still_button_probs(parser, ref, crops[rows], layout)
        sticks = np.zeros((len(crops), 2, 2), np.float32)
        for s in range(2):
            if clip["patch_ok"][s]:
                x = P.still_inputs(clip["ref_patches"][s], clip["patches"][:, s])
                sticks[:, s] = parser.read_sticks(x).numpy()
    shown = set(preset.button_regions())
    pairs, x = pair_features(elements, layout.weights, layout.present, probs, rows, sticks)

    def agree(i: int, j: int) -> float:
        a = float(np.mean(elements[i].labels == truth[:, j]))
        return max(a, 1 - a)

    is_pair = np.array([BUTTONS[j] in shown and 0.003 < truth[:, j].mean() < 0.997 and agree(i, j) >= SAME_ELEMENT
                        for j, i in pairs], bool)
    side_x, side_y = [], []
    for (j, i), ok in zip(pairs, is_pair):
        if ok:
            side_x.append(side_features(elements[i], _pictures(elements[i], crops), probs, rows, j))
            side_y.append(float(np.mean(elements[i].labels == truth[:, j])) > 0.5)
    return {"pair_x": x, "pair_y": is_pair, "side_x": np.asarray(side_x, np.float32).reshape(-1, len(SIDE_FEATURES)),
            "side_y": np.asarray(side_y, bool)}


def _flipped_sides(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The side rows with the element's two pictures swapped (the features that compare them change sign, its
    share becomes one minus its share): generated skins mostly press the less common picture, real held buttons
    do not, so the head sees both."""
    sign = np.array([-1 if f in ("said", "lighter", "colour", "steadier") else 1 for f in SIDE_FEATURES], np.float32)
    f = x * sign
    f[:, SIDE_FEATURES.index("share")] = 1 - x[:, SIDE_FEATURES.index("share")]
    return np.concatenate([x, f]), np.concatenate([y, ~y])


def train_namer(rows: Sequence[dict[str, np.ndarray]], epochs: int = 400, seed: int = 0,
                log: Callable[[str], None] = print) -> Namer:
    """Both networks fitted on the rows of many generated videos (full batch, Adam, a little weight decay)."""
    torch.manual_seed(seed)
    namer = Namer(_mlp(len(PAIR_FEATURES)), _mlp(len(SIDE_FEATURES)))
    sides = _flipped_sides(np.concatenate([r["side_x"] for r in rows]), np.concatenate([r["side_y"] for r in rows]))
    for name, net, data, pos in (
            ("pair", namer.pair, (np.concatenate([r["pair_x"] for r in rows]),
                                  np.concatenate([r["pair_y"] for r in rows])), 3.0),
            ("side", namer.side, sides, 1.0)):
        xt = torch.from_numpy(data[0].astype(np.float32))
        yt = torch.from_numpy(data[1].astype(np.float32))
        if not len(xt):
            raise NamerError("no training rows for the namer")
        opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-4)
        for _ in range(epochs):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt, pos_weight=torch.tensor(pos))
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float(((net(xt)[:, 0] > 0).float() == yt).float().mean())
        log(f"namer {name}: {len(xt)} rows, loss {float(loss.detach()):.4f}, accuracy {acc:.4f}")
        net.eval()
    return namer


def _rows_job(args: tuple) -> str:
    path, bank_path, seed, styles, parser_dir = args
    from azote.labeling.parser import load_parser
    from azote.labeling.synth import BackgroundBank

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows = namer_rows(np.random.default_rng(seed), BackgroundBank.load(bank_path), styles, load_parser(parser_dir))
    tmp = Path(path).with_name(f".{Path(path).stem}.tmp.npz")
    np.savez(tmp, **rows)
    os.replace(tmp, path)
    return str(path)


def write_namer_rows(out: str | os.PathLike, bank_path: str | os.PathLike, videos: int, styles: Sequence[str],
                     parser_dir: str | os.PathLike | None = None, seed: int = 0, workers: int = 1,
                     progress: Callable[[str], None] | None = None) -> list[Path]:
    """The rows of `videos` generated videos under `out`, one file each (resumable: files made are kept)."""
    from azote.lifetime import run_jobs

    paths = [Path(out) / f"video_{i:05d}.npz" for i in range(videos)]
    Path(out).mkdir(parents=True, exist_ok=True)
    run_jobs(_rows_job, [(p, str(bank_path), [seed, i], list(styles), str(parser_dir) if parser_dir else None)
                         for i, p in enumerate(paths) if not p.is_file()], workers, progress)
    return paths


def load_rows(paths: Sequence[Path]) -> list[dict[str, np.ndarray]]:
    out = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            out.append({k: z[k] for k in ("pair_x", "pair_y", "side_x", "side_y")})
    return out
