"""Finding a known overlay preset in a video: which preset, and where (canvas coordinates -> video pixels).

Templates: each preset's neutral picture drawn at three sizes over three backdrops (dark, grey, bright: outline and
see-through skins show edges of both polarities) and described with SIFT inside the drawing; features are cached
on disk by the preset's digest. Each preset is its own coordinate frame.

Per sampled frame: SIFT keypoints; in one FLANN index over every template, the near-best neighbours of each
keypoint (within 1/`RATIO` of the best distance: similar presets share features, so Lowe's ratio test against the
second neighbour would reject the right matches) whose orientation agrees (overlays are upright) and whose size
ratio gives a plausible scale. Per preset, candidates vote for a pose (Lowe's Hough step: scale bin, translation
bin); the fullest bins are fitted by RANSAC on scale + translation, then on every candidate they explain; a preset
fits when at least `MIN_INLIERS` distinct frame keypoints agree. Across frames: frames are read lazily until
`ENOUGH_FRAMES` agree on a preset and a place (a place once found is checked first, which is cheap); the preset with
most inliers wins, and its placement is re-fitted by least squares on every inlier of the agreeing frames.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from azote.errors import AzoteError
from azote.labeling.presets import CONTROLLER_TYPE, Preset

MIN_INLIERS = 14
RATIO = 0.8  # neighbours within 1/RATIO of the best distance are candidates
ANGLE_TOL = 20.0  # degrees between a frame keypoint's and its template keypoint's orientation
LOG_SCALE_BIN = 0.5  # pose bins: log2 scale (keypoint sizes give the scale only roughly)
POSITION_BIN = 0.16  # pose bins: translation, as a share of the preset's width
ENOUGH_FRAMES = 3  # stop sampling once this many frames agree
CONFIDENT = 40  # inliers of a fit whose place later frames check first
TEMPLATE_WIDTHS = (220, 340, 520)  # pixels: overlays are shown 200-500 px wide
KNN = 6
FLANN_CHECKS = 48
TEMPLATE_FEATURES = 1500
CONTRAST = 0.03
FRAME_FEATURES = int(os.environ.get("AZOTE_LOCATE_FEATURES", 3000))
FRAME_CONTRAST = float(os.environ.get("AZOTE_LOCATE_CONTRAST", 0.03))  # faint (half-transparent) overlays
BACKDROPS = (24, 128, 232)
OVERLAY_WIDTHS = (24.0, 3200.0)  # video pixels an overlay may span (keypoint sizes give scale only roughly)
CACHE_VERSION = 3


class LocateError(AzoteError, RuntimeError):
    """No overlay was found in the video."""


def neutral_bbox(preset: Preset) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in canvas pixels of what the preset draws at rest (its visible extent)."""
    return preset.visible_box()


@dataclass
class Located:
    """Where the overlay is. `affine` maps the preset's canvas to video pixels (known presets only); `box` is the
    overlay's visible extent in video pixels [x, y, w, h]."""

    method: str  # "template" | "detector"
    family: str
    box: list[float]
    preset: str | None = None
    affine: np.ndarray | None = None
    score: float = 0.0  # template: inliers of the final fit; detector: confidence
    frames_matched: int = 0
    frames_sampled: int = 0
    votes: dict[str, float] = field(default_factory=dict)

    @property
    def controller_type(self) -> str:
        return CONTROLLER_TYPE[self.family]

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.affine[:, :2])))) if self.affine is not None else 0.0

    def bbox(self) -> list[float]:
        return [round(float(v), 2) for v in self.box]

    def as_dict(self) -> dict:
        d = {"method": self.method, "family": self.family, "controller_type": self.controller_type,
             "bbox": self.bbox(), "preset": self.preset, "score": round(float(self.score), 4),
             "frames_matched": self.frames_matched, "frames_sampled": self.frames_sampled, "votes": self.votes}
        if self.affine is not None:
            d["affine"] = np.round(self.affine, 5).tolist()
            d["scale"] = round(self.scale, 5)
        return d


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=1)
def _sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=TEMPLATE_FEATURES, contrastThreshold=CONTRAST)


@lru_cache(maxsize=1)
def _frame_sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=FRAME_FEATURES, contrastThreshold=FRAME_CONTRAST)


def _keypoints(gray: np.ndarray, mask: np.ndarray | None = None, frame: bool = False):
    kps, desc = (_frame_sift() if frame else _sift()).detectAndCompute(gray, mask)
    pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
    return pts, np.array([k.size for k in kps], np.float32), np.array([k.angle for k in kps], np.float32), desc


def _cache_dir() -> Path:
    return Path(os.environ.get("AZOTE_CACHE", Path.home() / ".cache" / "azote"))


def template_features(preset: Preset) -> dict[str, np.ndarray]:
    """SIFT features of a preset at rest (three sizes, three backdrops), cached on disk by its digest."""
    key = f"{preset.digest}-{CACHE_VERSION}-{cv2.__version__}"
    path = _cache_dir() / "templates" / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):  # a damaged cache is rebuilt
            pass
    parts = []
    for width, backdrop in itertools.product(TEMPLATE_WIDTHS, BACKDROPS):
        s = width / preset.size[0]
        img = preset.neutral(s)
        a = img[..., 3:4].astype(np.float32) / 255
        rgb = (img[..., :3] * a + backdrop * (1 - a)).astype(np.uint8)
        mask = (cv2.dilate(img[..., 3], np.ones((5, 5), np.uint8)) > 0).astype(np.uint8) * 255
        pts, sizes, angles, desc = _keypoints(_gray(rgb), mask)
        if desc is not None and len(pts):
            parts.append(((pts + 0.5) / s, sizes / s, angles, desc))  # canvas units (pixel edges)
    if not parts:
        feats = {"points": np.zeros((0, 2), np.float32), "sizes": np.zeros(0, np.float32),
                 "angles": np.zeros(0, np.float32), "desc": np.zeros((0, 128), np.uint8)}
    else:
        feats = {"points": np.concatenate([p[0] for p in parts]).astype(np.float32),
                 "sizes": np.concatenate([p[1] for p in parts]).astype(np.float32),
                 "angles": np.concatenate([p[2] for p in parts]).astype(np.float32),
                 "desc": np.clip(np.concatenate([p[3] for p in parts]), 0, 255).astype(np.uint8)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **feats)
        os.replace(tmp, path)
    except OSError:  # a read-only home: recompute next time
        pass
    return feats


@dataclass
class _Fit:
    preset: int
    inliers: int
    affine: np.ndarray
    src: np.ndarray  # inlier template points
    dst: np.ndarray  # inlier frame points


class TemplateBank:
    """The presets a video may show, indexed for matching. Presets that differ only in their colours (one layout
    drawn black, white, clear) share one coordinate frame and are matched together as a group (their features
    would otherwise split the votes); the member whose colours fit the video best is chosen afterwards."""

    def __init__(self, presets: Sequence[Preset]) -> None:
        if not presets:
            raise LocateError("no overlay templates to match against")
        self.presets = list(presets)
        keys: dict[str, int] = {}
        self.group_of = [keys.setdefault(_layout_key(p), len(keys)) for p in self.presets]
        self.members = [[i for i, g in enumerate(self.group_of) if g == k] for k in range(len(keys))]
        feats = [template_features(p) for p in self.presets]
        self.points = np.concatenate([f["points"] for f in feats])
        self.sizes = np.concatenate([f["sizes"] for f in feats])
        self.angles = np.concatenate([f["angles"] for f in feats])
        self.ids = np.concatenate([np.full(len(f["points"]), self.group_of[i], np.int64) for i, f in enumerate(feats)])
        desc = np.concatenate([f["desc"] for f in feats]).astype(np.float32)
        if not len(desc):
            raise LocateError("the overlay templates have no features to match (blank pictures?)")
        self.matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": FLANN_CHECKS})
        self.matcher.add([desc])
        self.matcher.train()
        self.boxes = [neutral_bbox(p) for p in self.presets]  # per preset (members differ in extent)
        self.widths = np.array([float(self.presets[m[0]].size[0]) for m in self.members])

    def match_frame(self, frame: np.ndarray, near: tuple[int, np.ndarray] | None = None) -> list[_Fit]:
        """Every preset that fits this frame with enough inliers, best first. `near` = (preset, affine) of an
        earlier fit: only that preset, only around that place (a quick check)."""
        offset = np.zeros(2, np.float32)
        if near is not None:
            x0, y0, x1, y1 = self.boxes[self.members[near[0]][0]]
            corners = np.array([[x0, y0, 1], [x1, y1, 1]], np.float64) @ near[1].T
            pad = 0.15 * (corners[1] - corners[0])
            ax0, ay0 = np.maximum(0, np.floor(corners[0] - pad)).astype(int)
            ax1, ay1 = np.ceil(corners[1] + pad).astype(int)
            frame = frame[ay0:ay1, ax0:ax1]
            offset[:] = (ax0, ay0)
            if frame.shape[0] < 16 or frame.shape[1] < 16:
                return []
        f_pts, f_sizes, f_angles, desc = _keypoints(_gray(frame), frame=True)
        if desc is None or len(f_pts) < MIN_INLIERS:
            return []
        f_pts = f_pts + offset
        knn = self.matcher.knnMatch(desc, k=min(KNN, len(self.points)))
        q = np.fromiter((m.queryIdx for ms in knn for m in ms), np.int64)
        t = np.fromiter((m.trainIdx for ms in knn for m in ms), np.int64)
        d = np.fromiter((m.distance for ms in knn for m in ms), np.float32)
        if len(q) < MIN_INLIERS:
            return []
        best = np.full(len(f_pts), np.inf, np.float32)
        np.minimum.at(best, q, d)
        dang = np.abs((f_angles[q] - self.angles[t] + 180) % 360 - 180)
        s = f_sizes[q] / np.maximum(self.sizes[t], 1e-6)
        width = self.widths[self.ids[t]]
        keep = (d <= best[q] / RATIO) & (dang < ANGLE_TOL) & (s * width > OVERLAY_WIDTHS[0]) & (s * width < OVERLAY_WIDTHS[1])
        q, t, s = q[keep], t[keep], s[keep]
        fits = []
        for k in np.unique(self.ids[t]):
            if near is not None and k != near[0]:
                continue
            sel = self.ids[t] == k
            fit = self._fit(int(k), q[sel], t[sel], s[sel], f_pts)
            if fit is not None:
                fits.append(fit)
        return sorted(fits, key=lambda f: -f.inliers)

    def _fit(self, k: int, q: np.ndarray, t: np.ndarray, s: np.ndarray, f_pts: np.ndarray) -> _Fit | None:
        """Pose voting over one preset's candidates, then RANSAC on the fullest bins, then a refit on everything
        the best pose explains."""
        if len(q) < MIN_INLIERS:
            return None
        src, dst = self.points[t].astype(np.float64), f_pts[q].astype(np.float64)
        bs = np.floor(np.log2(s) / LOG_SCALE_BIN).astype(np.int64)
        rep = 2.0 ** ((bs + 0.5) * LOG_SCALE_BIN)
        tr = dst - src * s[:, None]
        cell = POSITION_BIN * self.presets[self.members[k][0]].size[0] * rep
        keys = np.stack([bs, np.floor(tr[:, 0] / cell).astype(np.int64), np.floor(tr[:, 1] / cell).astype(np.int64)], 1)
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        best: _Fit | None = None
        rng = np.random.default_rng(0)
        tried = np.zeros(len(q), bool)
        tol = 3.0
        for b in np.argsort(-counts)[:4]:
            if counts[b] < 3:
                break
            near = np.all(np.abs(keys - uniq[b]) <= 1, axis=1)
            if (near & ~tried).sum() < 3:
                continue
            tried |= near
            affine = _ransac_scale_translation(src[near], dst[near], rng, tol=tol)
            if affine is None:
                continue
            inl = np.zeros(len(q), bool)
            for _ in range(2):
                resid = np.linalg.norm(src * affine[0, 0] + affine[:, 2] - dst, axis=1)
                inl = resid < tol
                if inl.sum() < 3:
                    break
                affine = _scale_translation(src[inl], dst[inl])
            n = len(np.unique(q[inl]))  # a frame keypoint counts once
            if n >= MIN_INLIERS and (best is None or n > best.inliers):
                first = np.unique(q[inl], return_index=True)[1]
                idx = np.flatnonzero(inl)[first]
                best = _Fit(k, n, affine, src[idx].astype(np.float32), dst[idx].astype(np.float32))
        return best

    def box_of(self, k: int, affine: np.ndarray) -> list[float]:
        """The preset's visible extent in video pixels [x, y, w, h] (pixel edges)."""
        x0, y0, x1, y1 = self.boxes[k]
        pts = np.array([[x0, y0, 1], [x1, y1, 1]], np.float64) @ affine.T + 0.5
        return [float(pts[0, 0]), float(pts[0, 1]), float(pts[1, 0] - pts[0, 0]), float(pts[1, 1] - pts[0, 1])]

    def locate(self, frames: Iterable[np.ndarray], enough: int = ENOUGH_FRAMES) -> Located:
        """The preset shown in these frames (sampled across a video; read lazily, so a generator stops being
        consumed once `enough` frames agree). Raises `LocateError` when none fits."""
        fits: list[_Fit] = []
        seen: list[np.ndarray] = []
        sampled = matched = 0
        for frame in frames:
            sampled += 1
            if len(seen) < 8:
                seen.append(frame)
            frame_fits: list[_Fit] = []
            strong = [f for f in fits if f.inliers >= CONFIDENT]
            if strong:  # the overlay does not move: check the place found before first
                frame_fits = [f for f in self.match_frame(frame, near=(strong[-1].preset, strong[-1].affine))
                              if self._agrees(f, strong[-1])]
            if not frame_fits:
                frame_fits = self.match_frame(frame)
            if not frame_fits:
                continue
            matched += 1
            fits.append(frame_fits[0])
            best = fits[-1]
            if sum(self._agrees(f, best) for f in fits) >= enough:
                break
        if not fits:
            raise LocateError(f"no known overlay template found in {sampled} sampled frames "
                              f"(no template fit with {MIN_INLIERS}+ matching features)")
        votes: dict[int, int] = {}
        for f in fits:
            votes[f.preset] = votes.get(f.preset, 0) + f.inliers
        k = max(votes, key=lambda i: votes[i])
        own = [f for f in fits if f.preset == k]
        anchor = max(own, key=lambda f: sum(self._agrees(g, f) for g in own))
        group = [f for f in own if self._agrees(f, anchor)]
        src, dst = np.concatenate([f.src for f in group]), np.concatenate([f.dst for f in group])
        affine = _scale_translation(src, dst)
        resid = np.linalg.norm(src @ affine[:, :2].T + affine[:, 2] - dst, axis=1)
        keep = resid < 2.0
        if keep.sum() >= MIN_INLIERS:
            affine = _scale_translation(src[keep], dst[keep])
        fits_ = _colour_fits([self.presets[i] for i in self.members[k]], affine, seen)
        colour = dict(zip(self.members[k], fits_))
        best_i = max(colour, key=lambda i: colour[i])
        p = self.presets[best_i]
        return Located(method="template", family=p.family, box=self.box_of(best_i, affine), preset=p.name,
                       affine=affine, score=float(keep.sum()), frames_matched=matched, frames_sampled=sampled,
                       votes={self.presets[i].name: round(c, 4) for i, c in colour.items()})

    def _agrees(self, a: _Fit, b: _Fit, tol: float = 0.012) -> bool:
        """Same preset, same place: corners within `tol` of the overlay's width."""
        if a.preset != b.preset:
            return False
        W, H = self.presets[self.members[a.preset][0]].size
        corners = np.array([[0, 0, 1], [W, H, 1]], np.float64)
        pa, pb = corners @ a.affine.T, corners @ b.affine.T
        return bool(np.abs(pa - pb).max() <= max(3.0, tol * (pa[1, 0] - pa[0, 0])))


def _layout_key(p: Preset) -> str:
    """What two presets share when they differ only in colour: canvas, and every element's kind, place and size."""
    return repr((p.size, [(e.kind, e.pos, e.size, e.button, e.stick, e.radius, e.fill) for e in p.elements]))


def _colour_fits(presets: Sequence[Preset], affine: np.ndarray, frames: Sequence[np.ndarray]) -> list[float]:
    """How well each preset (members of one layout group) explains the overlay in these frames: minus the mean
    absolute error of predicting the observed pixels as the preset at rest, blended at the best of a few opacities
    over the game's mean colour around the overlay, on every pixel that any of them draws. A see-through preset
    predicts the game there, an opaque one its own colour: what the video shows decides."""
    from azote.labeling.frames import warp

    s = float(affine[0, 0])
    W = presets[0].size[0]
    k = min(256.0, W * s) / W
    imgs = [p.neutral(k).astype(np.float32) / 255 for p in presets]
    h, w = imgs[0].shape[:2]
    union = np.max([im[..., 3] for im in imgs], axis=0)
    if union.sum() < 20 or not frames:
        return [0.0] * len(presets)
    to_canvas = np.array([[k / s, 0, -affine[0, 2] * k / s], [0, k / s, -affine[1, 2] * k / s]])
    around = np.array([[k / s / 2, 0, w / 4 - affine[0, 2] * k / s / 2], [0, k / s / 2, h / 4 - affine[1, 2] * k / s / 2]])
    obs = np.stack([warp(f, to_canvas, (w, h)) for f in frames]).astype(np.float32) / 255  # [T, h, w, 3]
    game = np.stack([warp(f, around, (w, h)) for f in frames]).astype(np.float32).mean(axis=(1, 2)) / 255
    out = []
    for im in imgs:
        a, c = im[..., 3:4], im[..., :3]
        best = np.inf
        for op in (0.6, 0.75, 0.9, 1.0):
            pred = op * a * c + (1 - op * a) * game[:, None, None, :]
            err = (np.abs(obs - pred).mean(axis=-1) * union).sum() / (union.sum() * len(frames))
            best = min(best, float(err))
        out.append(-best)
    return out


def _scale_translation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares dst = s * src + t (overlays are drawn upright, so no rotation)."""
    sc, dc = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - sc, dst - dc
    s = float((s0 * d0).sum() / max((s0 * s0).sum(), 1e-9))
    t = dc - s * sc
    return np.array([[s, 0, t[0]], [0, s, t[1]]], np.float64)


def _ransac_scale_translation(src: np.ndarray, dst: np.ndarray, rng: np.random.Generator, iters: int = 300,
                              tol: float = 3.0) -> np.ndarray | None:
    """dst = s * src + t from two-point samples; the sample explaining most points wins."""
    n = len(src)
    i, j = rng.integers(0, n, iters), rng.integers(0, n, iters)
    ds = np.linalg.norm(dst[i] - dst[j], axis=1)
    ss = np.linalg.norm(src[i] - src[j], axis=1)
    ok = ss > 4.0
    if not ok.any():
        return None
    sc = ds[ok] / ss[ok]
    tr = dst[i[ok]] - sc[:, None] * src[i[ok]]
    pred = sc[:, None, None] * src[None] + tr[:, None, :]
    counts = (np.linalg.norm(pred - dst[None], axis=2) < tol).sum(axis=1)
    k = int(np.argmax(counts))
    if counts[k] < 3:
        return None
    inl = np.linalg.norm(src * sc[k] + tr[k] - dst, axis=1) < tol
    return _scale_translation(src[inl], dst[inl])
