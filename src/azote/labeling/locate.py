"""Finding the controller overlay in a video: SIFT features of sampled frames matched against every skin's
template (ratio test), a RANSAC similarity fit per template with at least `MIN_INLIERS` inliers, then a vote
across frames for the best skin and the median of its fits."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from azote.labeling.skins import SKINS, TEMPLATE_H, TEMPLATE_W, Skin, neutral_template

MIN_INLIERS = 20
FALLBACK_TEMPLATES = 16
ENOUGH_FRAMES = 4  # stop sampling once one skin has matched this many frames
MIN_AGREEMENT = 0.3  # edge correlation between a fit's warped template and the frame
RATIO = 0.8
TEMPLATE_SCALES = (0.5, 0.8, 1.3)  # templates are described at two sizes so small and large overlays both match


class LocateError(RuntimeError):
    """No overlay was found in the video."""


@dataclass
class Located:
    skin: str
    controller_type: str
    affine: np.ndarray  # 2x3: template coordinates -> video pixel coordinates
    inliers: int  # median over the frames where this skin matched
    frames_matched: int
    frames_sampled: int
    votes: dict[str, int] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.affine[:, :2]))))

    def bbox(self) -> list[float]:
        """[x, y, w, h] of the template's rectangle in video pixels."""
        corners = np.array([[0, 0, 1], [TEMPLATE_W, 0, 1], [0, TEMPLATE_H, 1], [TEMPLATE_W, TEMPLATE_H, 1]], float)
        pts = corners @ self.affine.T
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return [round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1)]

    def as_dict(self) -> dict:
        return {"skin": self.skin, "controller_type": self.controller_type, "affine": self.affine.tolist(),
                "bbox": self.bbox(), "scale": round(self.scale, 3), "inliers": self.inliers,
                "frames_matched": self.frames_matched, "frames_sampled": self.frames_sampled}


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=1)
def _sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=2500)


@dataclass
class _Template:
    skin: Skin
    scale: float
    points: np.ndarray  # keypoints in template coordinates (scale 1)
    descriptors: np.ndarray


@lru_cache(maxsize=1)
def templates() -> tuple[_Template, ...]:
    """Every skin at rest, over mid-grey, described with SIFT (inside the controller only)."""
    out = []
    for skin in SKINS.values():
        rgba = neutral_template(skin)
        for s in TEMPLATE_SCALES:
            img = cv2.resize(rgba, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            a = img[..., 3:4].astype(np.float32) / 255
            rgb = (img[..., :3] * a + 128 * (1 - a)).astype(np.uint8)
            mask = (cv2.dilate(img[..., 3], np.ones((5, 5), np.uint8)) > 0).astype(np.uint8) * 255
            kps, desc = _sift().detectAndCompute(_gray(rgb), mask)
            if desc is None or len(kps) < MIN_INLIERS:
                continue
            pts = np.array([k.pt for k in kps], np.float32) / s
            out.append(_Template(skin, s, pts, desc))
    return tuple(out)


def _fit(t: _Template, matches: list, frame_pts: np.ndarray) -> tuple[int, np.ndarray] | None:
    if len(matches) < MIN_INLIERS:
        return None
    src = t.points[[m.queryIdx for m in matches]]
    dst = frame_pts[[m.trainIdx for m in matches]]
    affine, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                              maxIters=3000, confidence=0.995)
    if affine is None or int(inl.sum()) < MIN_INLIERS or not 0.3 < np.sqrt(abs(np.linalg.det(affine[:, :2]))) < 3:
        return None
    return int(inl.sum()), affine


def _match_frame(frame: np.ndarray, matcher: cv2.BFMatcher) -> list[tuple[str, int, np.ndarray]]:
    """(skin, inliers, affine) for every template that fits this frame with enough inliers."""
    kps, desc = _sift().detectAndCompute(_gray(frame), None)
    if desc is None or len(kps) < MIN_INLIERS:
        return []
    frame_pts = np.array([k.pt for k in kps], np.float32)
    fits, fallback = [], []
    for t in templates():
        pairs = matcher.knnMatch(t.descriptors, desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        fit = _fit(t, good, frame_pts)
        if fit is not None:
            fits.append((t.skin.name, *fit))
        else:
            fallback.append((len(good), t, pairs))
    # a controller repeats its parts (four face buttons, twin grips), which fails the ratio test for many true
    # matches: for the templates closest to passing, give RANSAC both nearest neighbours of every feature
    for _, t, pairs in sorted(fallback, key=lambda f: -f[0])[:FALLBACK_TEMPLATES]:
        fit = _fit(t, [m for p in pairs for m in p], frame_pts)
        if fit is not None:
            fits.append((t.skin.name, *fit))
    # repeated parts (round buttons, twin grips) can give a wrong fit enough inliers: keep the fits whose
    # template, warped into the frame, also looks like the frame there
    fits = sorted(fits, key=lambda f: -f[1])[:6]
    scored = [(name, n, a, _agreement(frame, SKINS[name], a)) for name, n, a in fits]
    return [(name, n, a) for name, n, a, ncc in scored if ncc >= MIN_AGREEMENT]


def _edges(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    return np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))


def _agreement(frame: np.ndarray, skin: Skin, affine: np.ndarray) -> float:
    """Normalised correlation of edge maps, template vs the frame warped back onto it, inside the controller."""
    crop = warp_to_template(frame, affine, 0.5)
    tpl = cv2.resize(neutral_template(skin), (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
    mask = tpl[..., 3] > 128
    if mask.sum() < 50:
        return 0.0
    a = _edges(_gray(crop))[mask]
    b = _edges(_gray(np.ascontiguousarray(tpl[..., :3])))[mask]
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def locate(frames: Sequence[np.ndarray]) -> Located:
    """The overlay in these frames (about 25 sampled across a video). Raises `LocateError` when none fits."""
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    per_skin: dict[str, list[tuple[int, np.ndarray]]] = {}
    matched = 0
    for frame in frames:
        fits = _match_frame(frame, matcher)
        if not fits:
            continue
        matched += 1
        best: dict[str, tuple[int, np.ndarray]] = {}
        for name, n, affine in fits:
            if name not in best or n > best[name][0]:
                best[name] = (n, affine)
        for name, fit in best.items():
            per_skin.setdefault(name, []).append(fit)
        if max(len(v) for v in per_skin.values()) >= ENOUGH_FRAMES:
            break
    if not per_skin:
        raise LocateError(f"no controller overlay found in {len(frames)} sampled frames "
                          f"(no template fit with {MIN_INLIERS}+ inliers)")
    votes = {name: sum(n for n, _ in fits) for name, fits in per_skin.items()}
    skin = max(votes, key=votes.get)
    fits = per_skin[skin]
    affine = np.median(np.stack([a for _, a in fits]), axis=0)
    return Located(skin=skin, controller_type=SKINS[skin].controller_type, affine=affine,
                   inliers=int(np.median([n for n, _ in fits])), frames_matched=matched, frames_sampled=len(frames),
                   votes=dict(sorted(votes.items(), key=lambda kv: -kv[1])[:5]))


def warp_to_template(frame: np.ndarray, affine: np.ndarray, scale: float) -> np.ndarray:
    """The overlay region of a video frame resampled onto the template grid at `scale` (the parser's input)."""
    to_crop = np.array([[scale, 0, 0], [0, scale, 0]], np.float64) @ np.vstack([cv2.invertAffineTransform(affine),
                                                                               [0, 0, 1]])
    size = (int(round(TEMPLATE_W * scale)), int(round(TEMPLATE_H * scale)))
    return cv2.warpAffine(frame, to_crop, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
