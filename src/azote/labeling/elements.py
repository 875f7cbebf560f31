"""An unseen overlay read from the video itself: its elements and which of their two pictures each frame shows.

A button, a d-pad arm or a trigger of an overlay shows one of two pictures, and switches between them in one frame,
wherever it sits and however it is drawn; the game behind it changes without such structure. So over many frames
of the overlay's crop, the pixels of one element fall into two tight groups that switch together, while the
background only adds spread. Discovery finds those elements without knowing the skin:

1. Candidates. The crop is scanned with overlapping windows; in each, the frames' pixels are projected on their
   first principal directions and split in two (Otsu's threshold). A split that explains nearly all of the
   variance along its direction (`MIN_SEPARATION`) is a candidate: some two-picture thing switches there.
2. Each candidate is made exact: its footprint (how much the two groups' mean looks differ, per pixel) gives the
   element's core (the strongly changing pixels connected to the window), and a linear discriminant over the core
   pixels (within-group spread shrunk towards its mean) splits the frames again. Candidates that split the frames
   alike are one element; a footprint spread over a large part of the crop (a game's scene change) or no sharper
   inside the core than around it (the game moving behind a translucent skin) is not an element.

Which button an element is and which of its pictures means "pressed" is decided by `azote.labeling.namer`
(from the parser's layout and its per-frame readings): discovery only says what switches, where and when.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_SEPARATION = 0.85  # between-group share of the variance along a split direction
MIN_FRAMES = 3  # frames a look must be seen in
MAX_CORE = 0.12  # share of the crop an element's core may cover
MIN_CONTRAST = 2.0  # median footprint in the core / upper quartile around it
SAME = 0.02  # two splits that disagree on fewer frames are one element


@dataclass
class Element:
    """One discovered element. `labels` marks the frames of the discovery sample that show its less common
    picture; `weights` and `threshold` tell the pictures apart in any frame from its core pixels."""

    labels: np.ndarray  # [T] bool
    core: np.ndarray  # [H, W] bool
    centre: tuple[float, float]  # crop pixels (x, y), footprint-weighted
    separation: float
    contrast: float
    weights: np.ndarray  # [core pixels * 3] float32
    threshold: float
    flipped: bool = False  # True: the less common picture is the lower side of the discriminant

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 crops -> [N] bool: which show the element's less common picture."""
        v = crops[:, self.core].reshape(len(crops), -1).astype(np.float32) * np.float32(1 / 255)
        return (v @ self.weights > self.threshold) != self.flipped


def _otsu(y: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold of a 1-D sample and the between-group share of its variance."""
    o = np.sort(y.astype(np.float64))
    n = len(o)
    if n < 2 or o[-1] - o[0] <= 1e-12:
        return float(o[0]) if n else 0.0, 0.0
    cs = np.cumsum(o)
    k = np.arange(1, n)
    between = (k / n) * (1 - k / n) * (cs[:-1] / k - (cs[-1] - cs[:-1]) / (n - k)) ** 2
    i = int(np.argmax(between))
    return float((o[i] + o[i + 1]) / 2), float(between[i] / o.var())


def _directions(c: np.ndarray, k: int, iters: int = 8) -> np.ndarray:
    """The first `k` principal directions of centred rows `c` (a few rounds of subspace iteration)."""
    q = np.random.default_rng(0).standard_normal((c.shape[1], k)).astype(np.float32)
    for _ in range(iters):
        q, _ = np.linalg.qr(c.T @ (c @ q))
    return q


def _minority(labels: np.ndarray) -> np.ndarray:
    return ~labels if labels.sum() * 2 > len(labels) else labels


def _discriminant(v: np.ndarray, labels: np.ndarray, shrink: float = 0.2) -> np.ndarray:
    """Fisher's direction between the two groups of rows of `v` (plain mean difference when there are too few
    rows for a covariance)."""
    m1, m0 = v[labels].mean(0), v[~labels].mean(0)
    d = v.shape[1]
    if d * 2 > len(v):
        return m1 - m0
    r = np.concatenate([v[labels] - m1, v[~labels] - m0])
    s = r.T @ r / len(r)
    s = (1 - shrink) * s + (shrink * float(np.trace(s)) / d + 1e-6) * np.eye(d, dtype=s.dtype)
    return np.linalg.solve(s, m1 - m0)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    d = float(np.mean(a != b))
    return min(d, 1 - d) < SAME


class _Sample:
    """The discovery sample as float pixels, with the sums that make a split's mean looks cheap."""

    def __init__(self, crops: np.ndarray) -> None:
        self.x = np.multiply(crops, np.float32(1 / 255), dtype=np.float32)  # one float copy of the frames
        self.flat = self.x.reshape(len(crops), -1)
        self.total = self.x.sum(0)

    def footprint(self, labels: np.ndarray) -> np.ndarray:
        """[H, W]: the largest channel difference between the two groups' mean looks."""
        n1 = int(labels.sum())
        on = (labels.astype(np.float32) @ self.flat).reshape(self.total.shape)  # one pass, no copy of the frames
        return np.abs(on / n1 - (self.total - on) / (len(labels) - n1)).max(-1)


def _candidates(s: _Sample, win: int, stride: int, k: int, where: np.ndarray | None
                ) -> list[tuple[float, np.ndarray, tuple[int, int]]]:
    t, h, w, _ = s.x.shape
    found: list[tuple[float, np.ndarray, tuple[int, int]]] = []
    ys = sorted(set(list(range(0, max(1, h - win), stride)) + [max(0, h - win)]))
    xs = sorted(set(list(range(0, max(1, w - win), stride)) + [max(0, w - win)]))
    for y0 in ys:
        for x0 in xs:
            if where is not None and not where[y0:y0 + win, x0:x0 + win].any():
                continue
            v = s.x[:, y0:y0 + win, x0:x0 + win].reshape(t, -1)
            c = v - v.mean(0)
            if float(np.einsum("ij,ij->", c, c)) < 1e-6 * c.size:
                continue
            for d in _directions(c, k).T:
                y = c @ d
                thr, sep = _otsu(y)
                labels = y > thr
                n1 = int(labels.sum())
                if sep >= MIN_SEPARATION and MIN_FRAMES <= n1 <= t - MIN_FRAMES:
                    found.append((sep, _minority(labels), (x0, y0)))
    found.sort(key=lambda f: -f[0])
    unique: list[tuple[float, np.ndarray, tuple[int, int]]] = []
    for f in found:
        if not any(_same(f[1], u[1]) for u in unique):
            unique.append(f)
    return unique


def _element(s: _Sample, labels: np.ndarray, window: tuple[int, int, int]) -> Element | None:
    """The candidate split made exact over its element's core, or None when it is not an element."""
    t, h, w, _ = s.x.shape
    x0, y0, win = window
    fp = s.footprint(labels)
    inside = np.zeros((h, w), bool)
    inside[y0:y0 + win, x0:x0 + win] = True
    strong = (fp > 0.5 * float(fp[inside].max())).astype(np.uint8)
    _, parts = cv2.connectedComponents(strong, connectivity=8)
    ids = np.unique(parts[inside & (strong > 0)])
    core = np.isin(parts, ids[ids > 0])
    if not core.any() or core.mean() > MAX_CORE:
        return None
    v = s.x[:, core].reshape(t, -1)
    sep, wts, thr = 0.0, np.zeros(v.shape[1], np.float32), 0.0
    for _ in range(3):
        if not MIN_FRAMES <= labels.sum() <= t - MIN_FRAMES:
            return None
        wts = _discriminant(v, labels).astype(np.float32)
        y = v @ wts
        thr, sep = _otsu(y)
        new = _minority(y > thr)
        if (new == labels).all():
            break
        labels = new
    if sep < MIN_SEPARATION or not MIN_FRAMES <= labels.sum() <= t - MIN_FRAMES:
        return None
    fp = s.footprint(labels)
    near = cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    around = (cv2.dilate(core.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0) & ~near
    contrast = float(np.median(fp[core]) / max(float(np.percentile(fp[around], 75)), 1e-6)) if around.any() else 99.0
    if contrast < MIN_CONTRAST:
        return None
    yy, xx = np.nonzero(core)
    g = fp[core].astype(np.float64)
    centre = (float((xx * g).sum() / g.sum()), float((yy * g).sum() / g.sum()))
    flipped = bool(((v @ wts) > thr).sum() * 2 > t)
    return Element(labels, core, centre, sep, contrast, wts, thr, flipped)


def discover(crops: np.ndarray, window: int | None = None, directions: int = 4, where: np.ndarray | None = None
             ) -> list[Element]:
    """The two-picture elements of an overlay from its crops in many frames ([T, H, W, 3] uint8; every frame of
    a short video, or frames spread over a long one), strongest separation first; with `where` ([H, W] bool),
    only those that switch somewhere in it."""
    t, h, w, _ = crops.shape
    if t < 2 * MIN_FRAMES + 1:
        return []
    s = _Sample(crops)
    win = window or max(8, int(round(w / 10)))
    out: list[Element] = []
    for _, labels, (x0, y0) in _candidates(s, win, max(4, win // 2), directions, where):
        if any(_same(labels, e.labels) for e in out):
            continue
        e = _element(s, labels, (x0, y0, win))
        if e is not None and not any(_same(e.labels, o.labels) for o in out):
            out.append(e)
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two series (0 when either is constant)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-12 else 0.0
