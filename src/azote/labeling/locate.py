"""Finding the controller overlay in a video: where it is (template coordinates -> video pixels) and which
controller family it shows.

Templates: every known skin at rest (`neutral_template`), drawn at three sizes over three backdrops (a dark, a
grey and a bright one, so the edges of outline and see-through skins have both polarities) and described with
SIFT inside the controller; the features are cached on disk. All skins of a family share the template coordinate
frame, so their keypoints are pooled per family: a match to any skin of the family votes for the same placement,
which is how a skin never seen before (a held-out one) is found through its family's shapes and labels.

Per sampled frame: SIFT keypoints; in each family's FLANN index the near-best neighbours of every keypoint
(within 1/`RATIO` of the best distance: with dozens of similar skins pooled, Lowe's ratio test against the second
neighbour would reject the right matches) whose orientation agrees (overlays are upright) and whose keypoint size
ratio gives a plausible scale. These candidates vote for a pose (Lowe's Hough step: scale bin, translation bin);
the fullest bins are fitted by RANSAC on scale + translation and then on every candidate they explain; a family
fits when at least `MIN_INLIERS` distinct frame keypoints agree. Across frames: frames are read lazily until
`ENOUGH_FRAMES` agree on a family and a place (once a place is known, a frame is first checked there only, which
is cheap); the family with the most inliers wins, and its placement is re-fitted by least squares on every inlier
of every agreeing frame, accurate to a fraction of a pixel.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from azote.labeling.skins import CONTROLLER_TYPE, FAMILIES, SKINS, TEMPLATE_H, TEMPLATE_W, neutral_template

MIN_INLIERS = 20
RATIO = 0.8  # neighbours within 1/RATIO of the best distance are candidates
ANGLE_TOL = 20.0  # degrees between a frame keypoint's and its template keypoint's orientation
LOG_SCALE_BIN = 0.5  # pose bins: log2 scale (keypoint sizes give the scale only roughly)
POSITION_BIN = 32.0  # pose bins: template pixels of translation
ENOUGH_FRAMES = 3  # stop sampling once this many frames agree
CONFIDENT = 2 * 20  # inliers of a fit whose place later frames are checked at first
TEMPLATE_SCALES = (0.6, 1.0, 1.6)  # SIFT copes with scale, but small overlays keep only coarse detail
KNN = 4  # neighbours per frame keypoint in each family's templates
FLANN_CHECKS = 32
TEMPLATE_FEATURES = 2500
CONTRAST = 0.03
FRAME_FEATURES = int(os.environ.get("AZOTE_LOCATE_FEATURES", 2500))
FRAME_CONTRAST = float(os.environ.get("AZOTE_LOCATE_CONTRAST", 0.03))  # faint (half-transparent) overlays
# a see-through or outline skin shows the game through it: templates over a dark and a bright backdrop give
# both edge polarities
BACKDROPS = (24, 128, 232)
SCALE_RANGE = (0.25, 4.0)


class LocateError(RuntimeError):
    """No overlay was found in the video."""


@dataclass
class Located:
    skin: str  # the known skin that matched best (the family is what the parser needs)
    family: str
    affine: np.ndarray  # 2x3: template coordinates -> video pixel coordinates
    inliers: int  # inliers of the final fit, over all agreeing frames
    frames_matched: int
    frames_sampled: int
    votes: dict[str, int] = field(default_factory=dict)

    @property
    def controller_type(self) -> str:
        return CONTROLLER_TYPE[self.family]

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.affine[:, :2]))))

    def bbox(self) -> list[float]:
        """[x, y, w, h] of the template's rectangle in video pixels."""
        corners = np.array([[0, 0, 1], [TEMPLATE_W, 0, 1], [0, TEMPLATE_H, 1], [TEMPLATE_W, TEMPLATE_H, 1]], float)
        pts = corners @ self.affine.T
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]

    def as_dict(self) -> dict:
        return {"skin": self.skin, "family": self.family, "controller_type": self.controller_type,
                "affine": np.round(self.affine, 5).tolist(), "bbox": self.bbox(), "scale": round(self.scale, 4),
                "inliers": self.inliers, "frames_matched": self.frames_matched, "frames_sampled": self.frames_sampled,
                "votes": self.votes}


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=1)
def _sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=TEMPLATE_FEATURES, contrastThreshold=CONTRAST)


@lru_cache(maxsize=1)
def _frame_sift() -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=FRAME_FEATURES, contrastThreshold=FRAME_CONTRAST)


@dataclass
class _Index:
    points: np.ndarray  # [N, 2] keypoints in template coordinates
    sizes: np.ndarray  # [N] SIFT sizes in template pixels
    angles: np.ndarray  # [N] SIFT orientations, degrees
    skin_ids: np.ndarray  # [N] index into `skins`
    family_ids: np.ndarray  # [N] index into FAMILIES
    skins: list[str]
    matchers: list  # per family (None: no templates of that family)
    offsets: list[int]  # first row of each family (rows are grouped by family)


def _keypoints(gray: np.ndarray, mask: np.ndarray | None = None, frame: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    kps, desc = (_frame_sift() if frame else _sift()).detectAndCompute(gray, mask)
    pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
    return pts, np.array([k.size for k in kps], np.float32), np.array([k.angle for k in kps], np.float32), desc


def _describe(rgba: np.ndarray, scale: float, backdrop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray] | None:
    img = cv2.resize(rgba, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    a = img[..., 3:4].astype(np.float32) / 255
    rgb = (img[..., :3] * a + backdrop * (1 - a)).astype(np.uint8)
    mask = (cv2.dilate(img[..., 3], np.ones((5, 5), np.uint8)) > 0).astype(np.uint8) * 255
    pts, sizes, angles, desc = _keypoints(_gray(rgb), mask)
    if desc is None or len(pts) < 8:
        return None
    return pts / scale, sizes / scale, angles, desc


def _cache_key() -> str:
    from dataclasses import astuple

    import azote.labeling.skins as skins_module

    h = hashlib.sha256()
    h.update(Path(skins_module.__file__).read_bytes())
    h.update(repr([astuple(s) for s in SKINS.values()]).encode())
    h.update(repr((TEMPLATE_SCALES, BACKDROPS, TEMPLATE_FEATURES, CONTRAST, cv2.__version__, 2)).encode())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("AZOTE_CACHE", Path.home() / ".cache" / "azote"))


@lru_cache(maxsize=1)
def template_features() -> dict[str, np.ndarray]:
    """SIFT features of every skin's neutral template (three sizes, three backdrops), cached on disk: computing
    them takes seconds, loading them a fraction of one (each labelling process needs them)."""
    path = _cache_dir() / f"overlay-templates-{_cache_key()}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):  # a damaged cache is rebuilt
            pass
    parts: list[tuple] = []
    for skin_id, skin in enumerate(SKINS.values()):
        rgba = neutral_template(skin)
        for s, backdrop in itertools.product(TEMPLATE_SCALES, BACKDROPS):
            d = _describe(rgba, s, backdrop)
            if d is not None:
                parts.append((*d, np.full(len(d[0]), skin_id), np.full(len(d[0]), FAMILIES.index(skin.family))))
    feats = {"points": np.concatenate([p[0] for p in parts]).astype(np.float32),
             "sizes": np.concatenate([p[1] for p in parts]).astype(np.float32),
             "angles": np.concatenate([p[2] for p in parts]).astype(np.float32),
             "desc": np.clip(np.concatenate([p[3] for p in parts]), 0, 255).astype(np.uint8),
             "skin_ids": np.concatenate([p[4] for p in parts]).astype(np.int32),
             "family_ids": np.concatenate([p[5] for p in parts]).astype(np.int32)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **feats)
        os.replace(tmp, path)
    except OSError:  # a read-only home: recompute next time
        pass
    return feats


@lru_cache(maxsize=4)
def template_index(skin_names: tuple[str, ...] | None = None) -> _Index:
    """FLANN indexes, one per family, over the templates of `skin_names` (default: every skin). Per family, so
    that every family gets its own nearest neighbours (a pooled index lets sibling families crowd them out)."""
    feats = template_features()
    names = list(SKINS)
    keep_ids = [names.index(n) for n in (skin_names or names)]
    rows = np.flatnonzero(np.isin(feats["skin_ids"], keep_ids))
    if not len(rows):
        raise LocateError("no skin templates to match against")
    fam = feats["family_ids"][rows]
    order = rows[np.argsort(fam, kind="stable")]  # rows grouped by family
    fam_sorted = feats["family_ids"][order]
    matchers, offsets = [], []
    for k in range(len(FAMILIES)):
        sel = order[fam_sorted == k]
        offsets.append(int(np.searchsorted(fam_sorted, k)))
        if not len(sel):
            matchers.append(None)
            continue
        m = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": FLANN_CHECKS})
        m.add([feats["desc"][sel].astype(np.float32)])
        m.train()
        matchers.append(m)
    return _Index(feats["points"][order], feats["sizes"][order], feats["angles"][order], feats["skin_ids"][order],
                  fam_sorted, names, matchers, offsets)


@dataclass
class _Fit:
    family: str
    inliers: int
    affine: np.ndarray
    src: np.ndarray  # inlier template points
    dst: np.ndarray  # inlier frame points
    skin_votes: np.ndarray


def _fit_family(index: _Index, family: int, q: np.ndarray, t: np.ndarray, s: np.ndarray,
                f_pts: np.ndarray) -> _Fit | None:
    """Pose voting (Lowe's Hough step) over one family's candidates: every candidate proposes a scale (from the
    keypoint sizes) and a translation; the fullest pose bins are fitted by RANSAC, then on everything they
    explain."""
    if len(q) < MIN_INLIERS:
        return None
    src, dst = index.points[t].astype(np.float64), f_pts[q].astype(np.float64)
    bs = np.floor(np.log2(s) / LOG_SCALE_BIN).astype(np.int64)
    rep = 2.0 ** ((bs + 0.5) * LOG_SCALE_BIN)
    tr = dst - src * s[:, None]
    bx = np.floor(tr[:, 0] / (POSITION_BIN * rep)).astype(np.int64)
    by = np.floor(tr[:, 1] / (POSITION_BIN * rep)).astype(np.int64)
    keys = np.stack([bs, bx, by], axis=1)
    uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    best_fit: _Fit | None = None
    rng = np.random.default_rng(0)
    tried = np.zeros(len(q), bool)
    for b in np.argsort(-counts)[:4]:
        if counts[b] < 3:
            break
        near = np.all(np.abs(keys - uniq[b]) <= 1, axis=1)  # the bin and its neighbours
        if (near & ~tried).sum() < 3:
            continue
        tried |= near
        affine, inl = _ransac_scale_translation(src[near], dst[near], rng)
        if affine is None:
            continue
        for _ in range(2):  # then every candidate of the frame that this pose explains
            resid = np.linalg.norm(src * affine[0, 0] + affine[:, 2] - dst, axis=1)
            inl = resid < 3.0
            if inl.sum() < 3:
                break
            affine = _scale_translation(src[inl], dst[inl])
        n = len(np.unique(q[inl]))  # a frame keypoint counts once (it may match a point in several skins)
        if n >= MIN_INLIERS and (best_fit is None or n > best_fit.inliers):
            votes = np.bincount(index.skin_ids[t[inl]], minlength=len(index.skins))
            first = np.unique(q[inl], return_index=True)[1]
            idx = np.flatnonzero(inl)[first]
            best_fit = _Fit(FAMILIES[family], n, affine, src[idx].astype(np.float32), dst[idx].astype(np.float32),
                            votes)
    return best_fit


def _ransac_scale_translation(src: np.ndarray, dst: np.ndarray, rng: np.random.Generator, iters: int = 300,
                              tol: float = 3.0) -> tuple[np.ndarray | None, np.ndarray]:
    """dst = s * src + t from two-point samples; the sample explaining most points wins."""
    n = len(src)
    i = rng.integers(0, n, iters)
    j = rng.integers(0, n, iters)
    ds = np.linalg.norm(dst[i] - dst[j], axis=1)
    ss = np.linalg.norm(src[i] - src[j], axis=1)
    ok = ss > 4.0
    if not ok.any():
        return None, np.zeros(n, bool)
    sc = ds[ok] / ss[ok]
    tr = dst[i[ok]] - sc[:, None] * src[i[ok]]
    pred = sc[:, None, None] * src[None] + tr[:, None, :]  # [K, n, 2]
    counts = (np.linalg.norm(pred - dst[None], axis=2) < tol).sum(axis=1)
    k = int(np.argmax(counts))
    if counts[k] < 3:
        return None, np.zeros(n, bool)
    affine = np.array([[sc[k], 0, tr[k, 0]], [0, sc[k], tr[k, 1]]])
    inl = np.linalg.norm(src * sc[k] + tr[k] - dst, axis=1) < tol
    return _scale_translation(src[inl], dst[inl]), inl


def match_frame(frame: np.ndarray, skins: tuple[str, ...] | None = None,
                near: tuple[str, np.ndarray] | None = None) -> list[_Fit]:
    """Every family that fits this frame with enough inliers, best first. Candidates: the near-best neighbours
    of each frame keypoint whose orientation agrees (overlays are upright) and whose size ratio is plausible.
    `near` = (family, affine) of an earlier fit: only that family, only around that place (a quick check)."""
    offset = np.zeros(2, np.float32)
    if near is not None:
        corners = np.array([[0, 0, 1], [TEMPLATE_W, TEMPLATE_H, 1]], np.float64) @ near[1].T
        pad = 0.15 * (corners[1] - corners[0])
        x0, y0 = np.maximum(0, np.floor(corners[0] - pad)).astype(int)
        x1, y1 = np.ceil(corners[1] + pad).astype(int)
        frame = frame[y0:y1, x0:x1]
        offset[:] = (x0, y0)
        if frame.shape[0] < 16 or frame.shape[1] < 16:
            return []
    f_pts, f_sizes, f_angles, desc = _keypoints(_gray(frame), frame=True)
    if desc is None or len(f_pts) < MIN_INLIERS:
        return []
    f_pts = f_pts + offset
    index = template_index(skins)
    fits = []
    for k, matcher in enumerate(index.matchers):
        if matcher is None or (near is not None and FAMILIES[k] != near[0]):
            continue
        knn = matcher.knnMatch(desc, k=KNN)
        q = np.fromiter((m.queryIdx for ms in knn for m in ms), np.int64)
        t = np.fromiter((m.trainIdx for ms in knn for m in ms), np.int64) + index.offsets[k]
        d = np.fromiter((m.distance for ms in knn for m in ms), np.float32)
        if len(q) < MIN_INLIERS:
            continue
        best = np.full(len(f_pts), np.inf, np.float32)
        np.minimum.at(best, q, d)
        dang = np.abs((f_angles[q] - index.angles[t] + 180) % 360 - 180)
        s = f_sizes[q] / np.maximum(index.sizes[t], 1e-6)
        keep = (d <= best[q] / RATIO) & (dang < ANGLE_TOL) & (s > SCALE_RANGE[0]) & (s < SCALE_RANGE[1])
        fit = _fit_family(index, k, q[keep], t[keep], s[keep], f_pts)
        if fit is not None:
            fits.append(fit)
    return sorted(fits, key=lambda f: -f.inliers)


def _scale_translation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares dst = s * src + t (overlays are drawn upright, so no rotation)."""
    sc, dc = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - sc, dst - dc
    s = float((s0 * d0).sum() / max((s0 * s0).sum(), 1e-9))
    t = dc - s * sc
    return np.array([[s, 0, t[0]], [0, s, t[1]]], np.float64)


def _agrees(a: np.ndarray, b: np.ndarray, tol_px: float = 3.0) -> bool:
    corners = np.array([[0, 0, 1], [TEMPLATE_W, TEMPLATE_H, 1]], np.float64)
    return bool(np.abs(corners @ a.T - corners @ b.T).max() <= tol_px)


def locate(frames: Iterable[np.ndarray], skins: Sequence[str] | None = None,
           enough: int = ENOUGH_FRAMES) -> Located:
    """The overlay in these frames (about 25 sampled across a video; read lazily, so a generator stops being
    consumed once `enough` frames agree). `skins` limits the templates. Raises `LocateError` when none fits."""
    key = tuple(skins) if skins else None
    fits: list[_Fit] = []
    sampled = matched = 0
    for frame in frames:
        sampled += 1
        frame_fits: list[_Fit] = []
        strong = [f for f in fits if f.inliers >= CONFIDENT]
        if strong:  # the overlay does not move: check the place found before first, then search everywhere
            frame_fits = match_frame(frame, key, near=(strong[-1].family, strong[-1].affine))
            frame_fits = [f for f in frame_fits if _agrees(f.affine, strong[-1].affine)]
        if not frame_fits:
            frame_fits = match_frame(frame, key)
        if not frame_fits:
            continue
        matched += 1
        fits.append(frame_fits[0])
        best = fits[-1]
        agreeing = [f for f in fits if f.family == best.family and _agrees(f.affine, best.affine)]
        if len(agreeing) >= enough:
            break
    if not fits:
        raise LocateError(f"no controller overlay found in {sampled} sampled frames "
                          f"(no template fit with {MIN_INLIERS}+ inliers)")
    votes: dict[str, int] = {}
    for f in fits:
        votes[f.family] = votes.get(f.family, 0) + f.inliers
    family = max(votes, key=lambda k: votes[k])
    fam_fits = [f for f in fits if f.family == family]
    # the placement most frames agree on, then every inlier of those frames for the final fit
    anchor = max(fam_fits, key=lambda f: sum(_agrees(g.affine, f.affine) for g in fam_fits))
    group = [f for f in fam_fits if _agrees(f.affine, anchor.affine)]
    src, dst = np.concatenate([f.src for f in group]), np.concatenate([f.dst for f in group])
    affine = _scale_translation(src, dst)
    resid = np.linalg.norm(src @ affine[:, :2].T + affine[:, 2] - dst, axis=1)
    keep = resid < 2.0
    if keep.sum() >= MIN_INLIERS:
        affine = _scale_translation(src[keep], dst[keep])
    skin_votes = np.sum([f.skin_votes for f in group], axis=0)
    return Located(skin=template_index(key).skins[int(np.argmax(skin_votes))], family=family, affine=affine,
                   inliers=int(keep.sum()), frames_matched=matched, frames_sampled=sampled,
                   votes=dict(sorted(votes.items(), key=lambda kv: -kv[1])))
