"""From per-frame parser outputs to clean labels: per-video stick centring and scaling, button thresholds,
and the action-density filter of 20-second chunks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from azote.gamepad import ActionChunk


@dataclass
class PostConfig:
    rest_radius: float = 0.2  # frames whose stick reads within this of the rest define the rest centre
    rest_search: float = 0.2  # how far from the origin the rest may sit (the densest reading within it)
    dead_zone: float = 0.06  # after centring, smaller deflections are exactly 0 (what "no action" means)
    percentile: float = 99.0
    min_moving: int = 20  # frames with a deflected stick needed before its scale is estimated
    scale_range: tuple[float, float] = (0.8, 1.25)  # a 99th percentile outside this is real play, not miscalibration
    button_threshold: float = 0.5
    min_density: float = 0.5  # chunks with fewer non-zero action rows are dropped
    rest_rule: str = "origin"  # which pile of readings is the rest: nearest the origin | nearest the middle

    def zero_shot(self) -> "PostConfig":
        """The same with room for a rest and travel the parser estimated from the drawing (a known preset gives
        them): the rest is the pile of readings nearest the middle of their extent."""
        return replace(self, scale_range=(min(self.scale_range[0], 0.2), max(self.scale_range[1], 3.0)),
                       rest_search=max(self.rest_search, 1.5), rest_rule="middle")


def rest_reading(v: np.ndarray, bandwidth: float = 0.15, limit: int = 1500, rule: str = "origin"
                 ) -> tuple[np.ndarray, float]:
    """Where the knob rests, from stick readings [N, 2], and the share of readings there: the clusters the
    readings pile up in (mean shift from the best-supported readings), and of those nearly as full as the fullest
    (rule "origin") the one nearest the origin: a stick rests more often than it holds most directions, and the
    rest reads near the origin unless the drawing misled the parser. When it may have (rule "middle"), of those
    at least half as full as the fullest, the one nearest the middle of the readings' extent: the knob travels
    as far each way from its rest, while a direction held often piles up at the edge."""
    v = np.asarray(v, np.float32)
    if not len(v):
        return np.zeros(2, np.float32), 0.0
    probe = v[:: max(1, len(v) // limit)]
    support = (np.linalg.norm(probe[:, None] - probe[None], axis=-1) < bandwidth).sum(1).astype(float)
    modes: list[tuple[np.ndarray, float]] = []
    for _ in range(4):
        if support.max() <= 0:
            break
        x = probe[int(np.argmax(support))]
        near = np.ones(len(v), bool)
        for _ in range(5):
            near = np.linalg.norm(v - x, axis=1) < bandwidth
            if not near.any():
                break
            x = v[near].mean(axis=0)
        modes.append((x, float(near.mean())))
        support[np.linalg.norm(probe - x, axis=1) < 2 * bandwidth] = 0
    best = max(share for _, share in modes)
    if rule == "middle":
        lo, hi = np.percentile(v, 1, axis=0), np.percentile(v, 99, axis=0)
        mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, bandwidth)
        return min(((x, sh) for x, sh in modes if sh >= 0.5 * best),
                   key=lambda m: float(np.abs((m[0] - mid) / half).max()))
    return min(((x, sh) for x, sh in modes if sh >= 0.8 * best), key=lambda m: float(np.hypot(*m[0])))


def normalise_stick(raw: np.ndarray, cfg: PostConfig = PostConfig()) -> tuple[np.ndarray, dict]:
    """raw [T, 2] stick readings of one video -> values in [-1, 1]: the rest centre (a pile of readings within
    `rest_search` of the origin, see `rest_reading`) is subtracted; the deflection is divided by its 99th
    percentile when that is within `scale_range` (the overlay's travel differs from what the parser assumed);
    small deflections become 0."""
    raw = np.asarray(raw, np.float32)
    d, share = rest_reading(raw, rule=cfg.rest_rule)
    rest = d if share >= 0.1 and np.hypot(*d) <= cfg.rest_search else np.zeros(2, np.float32)
    near = np.linalg.norm(raw - rest, axis=1) < cfg.rest_radius
    centre = raw[near].mean(axis=0) if near.sum() >= 5 else np.zeros(2, np.float32)
    v = raw - centre
    scale = np.ones(2, np.float32)
    # a deflection is a reading well away from the rest: 0.3 of full travel, or of the readings' extent when the
    # travel may be misjudged
    extent = np.abs(v).max(axis=0) if cfg.rest_rule == "middle" and len(v) else np.ones(2, np.float32)
    for a in range(2):
        signed = v[:, a][np.abs(v[:, a]) > 0.3 * min(1.0, float(extent[a]))]
        moving = np.abs(signed)
        if len(moving) >= cfg.min_moving:
            p = float(np.percentile(moving, cfg.percentile))
            # small deflections one way only are no travel: a resting stick whose pressed-in knob (L3 / R3) is drawn
            # otherwise reads a little off to one side while clicked (0.22 of the travel on a held-out shaded skin)
            one_way = min(int((signed > 0).sum()), int((signed < 0).sum())) < cfg.min_moving // 4
            if cfg.scale_range[0] <= p <= cfg.scale_range[1] and not (one_way and p < 0.4):
                scale[a] = p
    v = v / scale
    v[np.abs(v) < cfg.dead_zone] = 0.0
    return np.clip(v, -1.0, 1.0).astype(np.float32), {"centre": centre.round(4).tolist(), "scale": scale.round(4).tolist()}


def to_actions(sticks: np.ndarray, button_probs: np.ndarray, cfg: PostConfig = PostConfig()) -> tuple[ActionChunk, dict]:
    """Parser outputs of a whole video (sticks [T, 2, 2], button probabilities [T, 17]) -> its actions."""
    left, info_l = normalise_stick(sticks[:, 0], cfg)
    right, info_r = normalise_stick(sticks[:, 1], cfg)
    buttons = (np.asarray(button_probs) > cfg.button_threshold).astype(np.uint8)
    return ActionChunk.from_arrays(buttons, left, right), {"j_left": info_l, "j_right": info_r}


def chunk_density(actions: ActionChunk) -> float:
    """Share of rows with any action (a pressed button or a deflected stick)."""
    return float(actions.nonzero_mask().mean()) if len(actions) else 0.0
