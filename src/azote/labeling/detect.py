"""Finding a controller overlay the labeller has never seen: a learned detector over video cues.

An overlay stays in place while the game changes under and around it, and only its buttons and knobs change. The
detector sees frames sampled across the video at `INPUT` pixels (letterboxed): their per-pixel median (the
overlay at rest, moving game content removed), their per-pixel spread (low on an opaque overlay, high where the
game moves) and one frame. A small CenterNet-style network (convolutional encoder, upsampling decoder) gives, at an eighth of the input's resolution, a heatmap of overlay centres, the box size (log of width and height, as shares of the frame
width), the sub-cell offset of the centre, and the controller family. It is trained on the project's generated
skins (`azote.labeling.skingen`) over frames of shipped games; the box it predicts is the overlay's visible extent,
including any part pushed off-screen.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from azote.errors import AzoteError
from azote.labeling.frames import bbox_iou
from azote.labeling.presets import FAMILIES, Preset
from azote.lifetime import run_jobs

INPUT = (256, 160)  # (W, H) of the detector's input
STRIDE = 8
CHANNELS = 7  # median RGB, spread, one frame RGB
WEIGHTS_DIR = Path(__file__).parent / "weights" / "detector"
ARCH = 1
MIN_CONFIDENCE = 0.3


class DetectError(AzoteError, RuntimeError):
    """No overlay in the video (or the detector's weights are unusable)."""


# --- inputs --------------------------------------------------------------------------------------------------------
def letterbox(hw: tuple[int, int]) -> tuple[float, int, int]:
    """Scale and offsets that fit a frame of `hw` into INPUT (aspect kept, top-left aligned)."""
    h, w = hw
    s = min(INPUT[0] / w, INPUT[1] / h)
    return s, 0, 0


def cue_image(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The detector's input [H, W, 7] uint8 from frames of one video (full size, RGB): median, spread, a frame."""
    if not len(frames):
        raise DetectError("no frames to look at")
    h, w = frames[0].shape[:2]
    s, _, _ = letterbox((h, w))
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
    return cue_from_small(small)


def cue_from_small(small: np.ndarray) -> np.ndarray:
    """`cue_image` from frames already at the detector's scale ([K, h, w, 3], h <= INPUT H, w <= INPUT W)."""
    k, nh, nw = small.shape[:3]
    med = np.median(small, axis=0)
    gray = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    spread = np.clip(gray.std(axis=0) * 3, 0, 255) if k > 1 else np.zeros((nh, nw), np.float32)
    out = np.zeros((INPUT[1], INPUT[0], CHANNELS), np.uint8)
    out[:nh, :nw, :3] = med.astype(np.uint8)
    out[:nh, :nw, 3] = spread.astype(np.uint8)
    out[:nh, :nw, 4:] = small[k // 2]
    return out


# --- network -------------------------------------------------------------------------------------------------------
def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                               torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True))


@dataclass
class DetectorConfig:
    widths: list[int] = field(default_factory=lambda: [16, 24, 32, 48, 64])
    arch: int = ARCH


class OverlayDetector(torch.nn.Module):
    """[B, H, W, 7] uint8 cues -> heatmap logits [B, 1, h, w], box [B, 4, h, w] (log w, log h, dx, dy), family
    logits [B, 4, h, w], at an eighth of the input's resolution."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DetectorConfig()
        a, b, c, d, e = self.config.widths
        self.s2 = _block(CHANNELS, a, 2)
        self.s4 = torch.nn.Sequential(_block(a, b, 2), _block(b, b))
        self.s8 = torch.nn.Sequential(_block(b, c, 2), _block(c, c))
        self.s16 = torch.nn.Sequential(_block(c, d, 2), _block(d, d, dilation=2))
        self.s32 = torch.nn.Sequential(_block(d, e, 2), _block(e, e, dilation=2), _block(e, e, dilation=4))
        self.up16 = _block(d + e, d)
        self.up8 = _block(c + d, c)
        self.head = torch.nn.Sequential(_block(c, c), torch.nn.Conv2d(c, 1 + 4 + len(FAMILIES), 1))
        with torch.no_grad():
            self.head[-1].bias[0] = -4.0  # centres are rare: start with a low heatmap (focal-loss practice)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        f8 = self.s8(self.s4(self.s2(x)))
        f16 = self.s16(f8)
        f32 = self.s32(f16)

        def up(a: torch.Tensor, b: torch.Tensor, conv: torch.nn.Module) -> torch.Tensor:
            return conv(torch.cat([a, F.interpolate(b, size=a.shape[2:], mode="bilinear", align_corners=False)], 1))

        y = up(f8, up(f16, f32, self.up16), self.up8)
        out = self.head(y)
        return out[:, :1], out[:, 1:5], out[:, 5:]


@dataclass
class Detection:
    box: list[float]  # [x, y, w, h] in video pixels (pixel edges)
    confidence: float
    family: str
    family_probs: list[float]


def decode(heat: torch.Tensor, box: torch.Tensor, fam: torch.Tensor, frame_w: float, scale: float) -> Detection:
    """The strongest peak of one image's outputs ([1, h, w], [4, h, w], [F, h, w]) as a box in video pixels."""
    p = torch.sigmoid(heat[0])
    k = int(torch.argmax(p))
    h, w = p.shape
    cy, cx = divmod(k, w)
    lw, lh, dx, dy = (float(v) for v in box[:, cy, cx])
    bw, bh = math.exp(lw) * frame_w, math.exp(lh) * frame_w
    # centre in input pixels (pixel edges): the cell's centre plus the offset, in cells
    ix, iy = (cx + 0.5 + dx) * STRIDE, (cy + 0.5 + dy) * STRIDE
    vx, vy = ix / scale, iy / scale
    probs = fam[:, cy, cx].softmax(0)
    return Detection([vx - bw / 2, vy - bh / 2, bw, bh], float(p[cy, cx]), FAMILIES[int(probs.argmax())],
                     [round(float(v), 4) for v in probs])


# --- weights -------------------------------------------------------------------------------------------------------
def save_detector(model: OverlayDetector, directory: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = directory / ".detector.safetensors.tmp", directory / ".detector.json.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp_w))
    tmp_c.write_text(json.dumps({**asdict(model.config), **({"about": extra} if extra else {})}, indent=1))
    tmp_w.replace(directory / "detector.safetensors")
    tmp_c.replace(directory / "detector.json")
    return directory


def load_detector(directory: str | Path | None = None) -> OverlayDetector:
    from safetensors.torch import load_file

    directory = Path(directory) if directory else WEIGHTS_DIR
    cfg_path, w_path = directory / "detector.json", directory / "detector.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise DetectError(f"{directory}: detector.json and detector.safetensors are needed (train them with "
                          "`azote label-train`)")
    try:
        raw = json.loads(cfg_path.read_text())
        raw.pop("about", None)
        cfg = DetectorConfig(**raw)
        if cfg.arch != ARCH or len(cfg.widths) != 5 or not all(isinstance(v, int) and 0 < v <= 512 for v in cfg.widths):
            raise TypeError(f"arch {cfg.arch} / widths {cfg.widths}")
        model = OverlayDetector(cfg)
        model.load_state_dict(load_file(str(w_path)))
    except Exception as exc:  # a foreign or damaged file: say which
        raise DetectError(f"{directory}: not detector weights of this version ({type(exc).__name__}: {exc})") from None
    return model.eval()


@torch.inference_mode()
def detect(frames: Sequence[np.ndarray], model: OverlayDetector | None = None) -> Detection:
    """The overlay in frames sampled across one video (full-size RGB). Raises `DetectError` when the detector
    finds none with confidence `MIN_CONFIDENCE`."""
    model = model or load_detector()
    h, w = frames[0].shape[:2]
    s, _, _ = letterbox((h, w))
    heat, box, fam = model(torch.from_numpy(cue_image(frames))[None])
    det = decode(heat[0], box[0], fam[0], float(w), s)
    if det.confidence < MIN_CONFIDENCE:
        raise DetectError(f"no controller overlay found in {len(frames)} sampled frames (the detector's best guess "
                          f"has confidence {det.confidence:.2f} < {MIN_CONFIDENCE})")
    return det


# --- training data -------------------------------------------------------------------------------------------------
def make_sample(rng: np.random.Generator, bank, preset: Preset | None, k: int | None = None) -> dict:
    """One training image: `k` frames of one game at the detector's scale with `preset` composited at a random
    place (None: no overlay), and the targets."""
    from azote.labeling.synth import random_actions

    k = k or int(rng.integers(6, 17))
    H, W = ((720, 1280), (720, 1280), (480, 854), (480, 640), (1080, 1920))[int(rng.integers(5))]
    s, _, _ = letterbox((H, W))
    nw, nh = int(round(W * s)), int(round(H * s))
    game, _ = bank.run(rng, 1)
    idx = rng.integers(0, len(bank.frames[game]), k)
    if rng.random() < 0.5:  # half the time consecutive-ish frames (a short video)
        start = int(rng.integers(0, max(1, len(bank.frames[game]) - 4 * k)))
        idx = start + np.sort(rng.choice(np.arange(4 * k), k, replace=False))
        idx = np.clip(idx, 0, len(bank.frames[game]) - 1)
    games = bank.frames[game][idx]
    gh, gw = games.shape[1:3]
    small = np.zeros((k, nh, nw, 3), np.uint8)
    if rng.random() < 0.75:  # fit with bars
        f = min(nh / gh, nw / gw)
        fh, fw = max(1, int(round(gh * f))), max(1, int(round(gw * f)))
        oy, ox = (nh - fh) // 2, (nw - fw) // 2
        for i in range(k):
            small[i, oy:oy + fh, ox:ox + fw] = cv2.resize(games[i], (fw, fh), interpolation=cv2.INTER_AREA)
    else:
        for i in range(k):
            small[i] = cv2.resize(games[i], (nw, nh), interpolation=cv2.INTER_AREA)
    target = {"has": 0, "box": np.zeros(4, np.float32), "family": 0}
    if preset is not None:
        from azote.labeling.compose import Placement, overlay_frame

        x0, y0, x1, y1 = preset.visible_box()
        share = float(np.exp(rng.uniform(np.log(0.12), np.log(0.45))))
        sv = share * W / max(x1 - x0, 1.0)
        sv = min(sv, 0.8 * H / max(y1 - y0, 1.0))
        ow, oh = (x1 - x0) * sv, (y1 - y0) * sv
        corner = rng.random() < 0.7
        if corner:
            m = float(rng.uniform(0, 0.05)) * W
            px = (m if rng.random() < 0.5 else W - ow - m) + float(rng.normal(0, 0.01)) * W
            py = (m if rng.random() < 0.5 else H - oh - m) + float(rng.normal(0, 0.01)) * H
        else:
            px, py = float(rng.uniform(0, W - ow)), float(rng.uniform(0, H - oh))
        if rng.random() < 0.12:  # pushed over an edge
            if rng.random() < 0.5:
                px = -float(rng.uniform(0.02, 0.15)) * ow if rng.random() < 0.5 else W - ow + float(rng.uniform(0.02, 0.15)) * ow
            else:
                py = -float(rng.uniform(0.02, 0.15)) * oh if rng.random() < 0.5 else H - oh + float(rng.uniform(0.02, 0.15)) * oh
        opacity = float(rng.uniform(0.5, 1.0))
        place = Placement((px - x0 * sv) * s, (py - y0 * sv) * s, sv * s, opacity)
        acts = random_actions(rng, k)
        for i in range(k):
            overlay_frame(small[i], preset, acts[i], place)
        target = {"has": 1, "box": np.array([px, py, ow, oh], np.float32) / W, "family": FAMILIES.index(preset.family)}
    if rng.random() < 0.5:  # compression-like softening
        for i in range(k):
            small[i] = cv2.GaussianBlur(small[i], (3, 3), float(rng.uniform(0.3, 0.8)))
    return {"cues": cue_from_small(small), "has": np.uint8(target["has"]), "box": target["box"],
            "family": np.int64(target["family"]), "scale_w": np.float32(W * s), "game": game}


def detector_shard(path: str | os.PathLike, bank_path: str, count: int, seed: int, styles: Sequence[str],
                   negatives: float = 0.08) -> Path:
    from azote.labeling.skingen import random_preset
    from azote.labeling.synth import BackgroundBank

    cv2.setNumThreads(1)
    bank = BackgroundBank.load(bank_path)
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        preset = None if rng.random() < negatives else random_preset(rng, style=styles[int(rng.integers(len(styles)))])
        made.append(make_sample(rng, bank, preset))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **{k: np.stack([m[k] for m in made]) for k in ("cues", "has", "box", "family", "scale_w")})
    os.replace(tmp, path)
    return path


def _shard_job(args: tuple) -> str:
    return str(detector_shard(*args))


def write_detector_shards(out: str | os.PathLike, bank_path: str | os.PathLike, shards: int, per_shard: int,
                          styles: Sequence[str], seed: int = 0, workers: int = 1,
                          progress: Callable[[str], None] | None = None) -> list[Path]:
    out = Path(out)
    paths = [out / f"det_{i:04d}.npz" for i in range(shards)]
    run_jobs(_shard_job, [(p, str(bank_path), per_shard, seed * 7919 + i, list(styles))
                          for i, p in enumerate(paths) if not p.is_file()], workers, progress)
    return paths


# --- training ------------------------------------------------------------------------------------------------------
def targets(box: torch.Tensor, has: torch.Tensor, scale_w: torch.Tensor, hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per image: the Gaussian heatmap around the box centre's cell, the centre cell, and the regression targets."""
    h, w = hw
    cx = (box[:, 0] + box[:, 2] / 2) * scale_w / STRIDE  # centre in cells (pixel edges)
    cy = (box[:, 1] + box[:, 3] / 2) * scale_w / STRIDE
    ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    sigma = (box[:, 2] * scale_w / STRIDE / 6).clamp_min(1.0)
    g = torch.exp(-((xs[None] - ix[:, None, None]) ** 2 + (ys[None] - iy[:, None, None]) ** 2) /
                  (2 * sigma[:, None, None] ** 2)) * has[:, None, None].float()
    reg = torch.stack([box[:, 2].clamp_min(1e-4).log(), box[:, 3].clamp_min(1e-4).log(), cx - ix - 0.5, cy - iy - 0.5], 1)
    return {"heat": g[:, None], "ix": ix.long(), "iy": iy.long(), "reg": reg}


def detector_loss(model: OverlayDetector, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    heat, box, fam = model(batch["cues"])
    t = targets(batch["box"], batch["has"], batch["scale_w"], heat.shape[2:])
    p = torch.sigmoid(heat).clamp(1e-4, 1 - 1e-4)
    pos = (t["heat"] >= 0.999).float()
    # CenterNet's focal loss
    l_pos = -(((1 - p) ** 2) * p.log() * pos).sum()
    l_neg = -(((1 - t["heat"]) ** 4) * (p ** 2) * (1 - p).log() * (1 - pos)).sum()
    n = pos.sum().clamp_min(1.0)
    l_heat = (l_pos + l_neg) / n
    has = batch["has"].bool()
    bi = torch.arange(len(has))
    l_box = torch.zeros(())
    l_fam = torch.zeros(())
    if has.any():
        pr = box[bi, :, t["iy"], t["ix"]][has]
        l_box = F.smooth_l1_loss(pr, t["reg"][has], beta=0.1)
        l_fam = F.cross_entropy(fam[bi, :, t["iy"], t["ix"]][has], batch["family"][has])
    loss = l_heat + 2 * l_box + 0.3 * l_fam
    return loss, {"heat": l_heat.item(), "box": l_box.item(), "family": l_fam.item()}


class DetectorData:
    def __init__(self, paths: Sequence[Path]) -> None:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("cues", "has", "box", "family", "scale_w")}
        for p in paths:
            with np.load(p, allow_pickle=False) as z:
                for k in parts:
                    parts[k].append(z[k])
        if not parts["cues"]:
            raise FileNotFoundError("no detector shards to train on")
        self.arrays = {k: np.concatenate(v) for k, v in parts.items()}

    def __len__(self) -> int:
        return len(self.arrays["has"])

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        a = {k: v[idx] for k, v in self.arrays.items()}
        cues = a["cues"].astype(np.float32)
        if rng is not None:
            for i in range(len(idx)):
                perm = rng.permutation(3) if rng.random() < 0.3 else np.arange(3)
                order = np.concatenate([perm, [3], perm + 4])
                cues[i] = cues[i][..., order]
                g = np.float32(rng.uniform(0.85, 1.15))
                cues[i][..., [0, 1, 2, 4, 5, 6]] = np.clip(cues[i][..., [0, 1, 2, 4, 5, 6]] * g + rng.uniform(-10, 10), 0, 255)
        return {"cues": torch.from_numpy(cues), "has": torch.from_numpy(a["has"]), "box": torch.from_numpy(a["box"]),
                "family": torch.from_numpy(a["family"]), "scale_w": torch.from_numpy(a["scale_w"])}


@torch.inference_mode()
def evaluate_detector(model: OverlayDetector, data: DetectorData) -> dict[str, float]:

    was = model.training
    model.eval()
    ious, found, fams, false_pos, negs = [], 0, [], 0, 0
    for s in range(0, len(data), 64):
        idx = np.arange(s, min(len(data), s + 64))
        b = data.batch(idx)
        heat, box, fam = model(b["cues"])
        for i in range(len(idx)):
            sw = float(b["scale_w"][i])
            det = decode(heat[i], box[i], fam[i], sw, 1.0)  # boxes as shares of the frame width
            if not b["has"][i]:
                negs += 1
                false_pos += det.confidence >= MIN_CONFIDENCE
                continue
            truth = (b["box"][i] * sw).tolist()
            iou = bbox_iou([v for v in det.box], truth)
            ious.append(iou)
            found += det.confidence >= MIN_CONFIDENCE and iou >= 0.5
            fams.append(det.family == FAMILIES[int(b["family"][i])])
    model.train(was)
    return {"located": found / max(1, len(ious)), "iou_median": float(np.median(ious)) if ious else 0.0,
            "iou_p10": float(np.percentile(ious, 10)) if ious else 0.0, "family_acc": float(np.mean(fams)) if fams else 0.0,
            "false_positive": false_pos / max(1, negs), "images": len(data)}


def train_detector(data: DetectorData, out: str | os.PathLike, steps: int = 6000, minutes: float = 30.0,
                   batch_size: int = 32, lr: float = 2e-3, held: DetectorData | None = None, seed: int = 0,
                   log: Callable[[str], None] = print) -> dict:
    """Trains the detector (resumable from `out/ckpt.pt`), writes `out/final/detector.{json,safetensors}`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = OverlayDetector()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    step, before = 0, 0.0
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        from azote.labeling.train import load_checkpoint

        state = load_checkpoint(ckpt)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step, before = int(state["step"]), float(state["elapsed"])
            rng.bit_generator.state = state["rng"]
        except Exception as exc:
            raise RuntimeError(f"{ckpt}: not a checkpoint of this training loop ({exc}); delete it to start over") from None
        log(f"detector: resumed at step {step}")
    start = time.time()

    def progress() -> float:
        return max(step / steps, (before + time.time() - start) / (60 * minutes))

    running: dict[str, float] = {}
    while progress() < 1.0:
        p = progress()
        cur = lr * min(1.0, (step + 1) / 200) * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))
        for g in opt.param_groups:
            g["lr"] = cur
        loss, parts = detector_loss(model, data.batch(rng.integers(0, len(data), batch_size), rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if step % 50 == 0:
            log(f"detector step {step} ({progress():.0%}) " + " ".join(f"{k} {v:.4f}" for k, v in running.items()))
        if held is not None and step % 1000 == 0:
            log(f"detector held-out at step {step}: {json.dumps(evaluate_detector(model, held))}")
        if step % 250 == 0:
            tmp = ckpt.with_name(".ckpt.pt.tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "elapsed": before + time.time() - start, "rng": json.dumps(rng.bit_generator.state)}, tmp)
            os.replace(tmp, ckpt)
    summary: dict = {"step": step, "minutes": round((before + time.time() - start) / 60, 1)}
    if held is not None:
        summary["heldout"] = evaluate_detector(model, held)
        log(f"detector held-out (final): {json.dumps(summary['heldout'])}")
    save_detector(model.eval(), out / "final", extra=summary)
    return summary
