"""Training the overlay parser on synthetic shards (CPU is enough: the model is small), and adapting it to a
known preset.

    azote label-train --out runs/labeling/parser --minutes 90 --export

generates presets and clips (`azote.labeling.synth`), then runs this loop: AdamW with warm-up and a cosine decay
that follows the run's progress (the larger of steps done / `steps` and wall time spent / `minutes`, so a busy
machine still gets a complete schedule within its budget); checkpoints every `checkpoint_every` steps (model,
optimiser, step, time spent and the sampler's random state; written atomically, read back with torch's
weights-only loader), so a killed run resumes where it stopped. It evaluates on shards made from held-out styles
and held-out games.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from azote.labeling import parser as P
from azote.labeling.parser import OverlayParser, ParserConfig, parser_loss, save_parser, stick_loss


@dataclass
class TrainConfig:
    steps: int = 20000  # at most; the time budget usually ends the run first
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 300
    minutes: float = 90.0  # wall-time budget of the whole run (resumes included); the schedule follows it
    checkpoint_every: int = 250
    eval_every: int = 1000
    threads: int = 1
    seed: int = 0
    heads: str = "all"  # "sticks": train the stick reader alone (the rest of the parser stays as it is)


class ShardData:
    """Clips of every shard in memory; samples (reference, previous, current) inputs with their targets."""

    def __init__(self, paths: Sequence[Path] | None = None, clips: Sequence[dict] | None = None) -> None:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in P_FIELDS}
        for p in paths or []:
            with np.load(p, allow_pickle=False) as z:
                for k in parts:
                    parts[k].append(z[k])
        for c in clips or []:
            for k in parts:
                parts[k].append(np.asarray(c[k])[None])
        if not parts["crops"]:
            raise FileNotFoundError("no synthetic clips to train on")
        for k, v in parts.items():
            setattr(self, k, np.concatenate(v))

    def __len__(self) -> int:
        return int(self.crops.shape[0] * self.crops.shape[1])

    def _batch(self, ci: np.ndarray, ti: np.ndarray, prev: np.ndarray, rng: np.random.Generator | None
               ) -> dict[str, torch.Tensor]:
        crops = np.concatenate([self.ref[ci], self.crops[ci, prev], self.crops[ci, ti]], axis=-1)
        patches = np.concatenate([self.ref_patches[ci], self.patches[ci, prev], self.patches[ci, ti]], axis=-1)
        knob = self.knob[ci, ti]
        if rng is not None:  # colour changes (streams differ in levels; a pressed look is a change, whatever colour)
            crops, patches = crops.astype(np.float32), patches.astype(np.float32)
            for i in range(len(ci)):
                perm = rng.permutation(3) if rng.random() < 0.3 else np.arange(3)
                gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
                bias = np.float32(rng.uniform(-12, 12))
                order = np.concatenate([perm, perm + 3, perm + 6])
                g9 = np.tile(gain, 3)
                crops[i] = np.clip(crops[i][..., order] * g9 + bias, 0, 255)
                patches[i] = np.clip(patches[i][..., order] * g9 + bias, 0, 255)
            patches, knob = knob_symmetries(patches, knob, rng)
        b = len(ci)
        return {"crops": torch.from_numpy(np.ascontiguousarray(crops)),
                "masks": torch.from_numpy(self.masks[ci]), "buttons": torch.from_numpy(self.buttons[ci, ti]),
                "centres": torch.from_numpy(self.centres[ci]), "travel": torch.from_numpy(self.travel[ci]),
                "has_stick": torch.from_numpy(self.has_stick[ci]), "family": torch.from_numpy(self.family[ci]),
                "patches": torch.from_numpy(np.ascontiguousarray(patches.reshape(b * 2, *patches.shape[2:]))),
                "knob": torch.from_numpy(np.ascontiguousarray(knob.reshape(b * 2, 2))),
                "patch_ok": torch.from_numpy(self.patch_ok[ci].reshape(b * 2))}

    def batch(self, rng: np.random.Generator, size: int, augment: bool = True) -> dict[str, torch.Tensor]:
        n, t = self.crops.shape[:2]
        ci = rng.integers(0, n, size)
        ti = rng.integers(0, t, size)
        prev = np.where((ti > 0) & (rng.random(size) > 0.05), ti - 1, ti)  # a video's first frame has no previous
        return self._batch(ci, ti, prev, rng if augment else None)

    def all_batches(self, limit: int | None = None, size: int = 64) -> list[dict[str, torch.Tensor]]:
        n, t = self.crops.shape[:2]
        idx = [(c, i) for c in range(n) for i in range(t)][:limit]
        out = []
        for s in range(0, len(idx), size):
            ci = np.array([c for c, _ in idx[s:s + size]])
            ti = np.array([i for _, i in idx[s:s + size]])
            out.append(self._batch(ci, ti, np.maximum(ti - 1, 0), None))
        return out


def knob_symmetries(patches: np.ndarray, knob: np.ndarray, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stick patches [B, 2, PATCH, PATCH, C] and knob positions [B, 2, 2] under a random symmetry of the square each
    (flips and a transpose, the position moved with the pixels) and, for a quarter, inverted levels: a knob reads the
    same whichever way its skin is lit or shaded, and dark in a light well as light in a dark one. Without this
    the reader learnt the training skins' lighting and read a shaded knob pushed up as pushed down."""
    patches, knob = patches.copy(), knob.copy()
    for i in range(patches.shape[0]):
        for s in range(patches.shape[1]):
            p, k = patches[i, s], knob[i, s]
            if rng.random() < 0.5:
                p, k = p[::-1], k * (1, -1)
            if rng.random() < 0.5:
                p, k = p[:, ::-1], k * (-1, 1)
            if rng.random() < 0.5:
                p, k = p.transpose(1, 0, 2), k[::-1]
            if rng.random() < 0.25:
                p = 255 - p  # uint8 or float levels alike
            patches[i, s], knob[i, s] = p, k
    return patches, knob


P_FIELDS = ("crops", "ref", "patches", "ref_patches", "masks", "buttons", "knob", "centres", "travel", "has_stick",
            "patch_ok", "family")


@torch.inference_mode()
def evaluate(model: OverlayParser, data: ShardData, limit: int | None = 3000) -> dict[str, float]:
    """Button accuracy with the true regions (the known-layout readout), stick R^2 of the knob readings, and how
    far the predicted stick rest positions are from the truth."""
    was = model.training
    model.eval()
    pb, tb, keep, ps, ts, cerr = [], [], [], [], [], []
    for b in data.all_batches(limit):
        maps, glob = model.forward_maps(b["crops"])
        masks = b["masks"].float()
        w = masks / masks.flatten(2).sum(-1).clamp_min(1.0)[..., None, None]
        prob = (torch.sigmoid(maps[:, P.N_REGION:P.N_REGION + 1]) * w).sum(dim=(2, 3))
        pb.append(prob.numpy() > 0.5)
        tb.append(b["buttons"].numpy() > 0)
        keep.append(masks.flatten(2).amax(-1).numpy() > 0)
        ok = b["patch_ok"].bool()
        if ok.any():
            ps.append(model.read_sticks(b["patches"][ok]).numpy())
            ts.append(b["knob"][ok].numpy())
        for i in range(len(maps)):
            lay = P.layout_from_maps(maps[i:i + 1], glob[i:i + 1])
            for s in range(2):
                if b["has_stick"][i, s] and lay.sticks[s] is not None:
                    cerr.append(np.hypot(*(np.array(lay.sticks[s][:2]) - b["centres"][i, s].numpy())) /
                                max(float(b["travel"][i, s]), 0.5))
    model.train(was)
    pbv, tbv, kv = np.concatenate(pb), np.concatenate(tb), np.concatenate(keep)
    out = {"button_acc": float((pbv == tbv)[kv].mean()), "press_nothing": float((~tbv)[kv].mean()),
           "frames": int(len(pbv))}
    if ps:
        s, t = np.concatenate(ps), np.concatenate(ts)
        for a, name in ((0, "x"), (1, "y")):
            out[f"knob_r2_{name}"] = float(1 - ((s[:, a] - t[:, a]) ** 2).sum() / max(((t[:, a] - t[:, a].mean()) ** 2).sum(), 1e-9))
    if cerr:
        out["centre_err_travel"] = float(np.median(cerr))
    return out


def _save_checkpoint(path: Path, model: OverlayParser, opt: torch.optim.Optimizer, step: int,
                     rng: np.random.Generator, history: list, elapsed: float) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                "rng": json.dumps(rng.bit_generator.state), "history": json.dumps(history),
                "config": json.dumps(asdict(model.config))}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint a training loop of this package wrote, read with the project's one safe loader (tensors and
    plain data only, bounded: a planted file can neither run code nor fill memory)."""
    from azote.safeload import safe_load

    try:
        state = safe_load(path)
        return {**state, **{k: json.loads(state[k]) for k in ("rng", "history", "config") if k in state}}
    except Exception as exc:  # a damaged or foreign file: say which, never execute it
        raise RuntimeError(f"{path}: not a checkpoint of this training loop ({type(exc).__name__}: {exc}); "
                           "delete it to start over") from None


def train(data: ShardData, out: str | os.PathLike, cfg: TrainConfig = TrainConfig(),
          held: ShardData | None = None, model: OverlayParser | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Trains (or resumes) under `out`: `ckpt.pt` while training, `final/parser.{json,safetensors}` at the end.
    `model` starts from given weights (adaptation); returns a summary with the held-out evaluation."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = model or OverlayParser(ParserConfig())
    model.train()
    if cfg.heads not in ("all", "sticks"):
        raise ValueError(f"heads must be 'all' or 'sticks', not {cfg.heads!r}")
    params = list((model.stick if cfg.heads == "sticks" else model).parameters())
    loss_of = stick_loss if cfg.heads == "sticks" else parser_loss
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step, history, before = 0, [], 0.0
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history, before = int(state["step"]), state["history"], float(state.get("elapsed", 0.0))
        rng.bit_generator.state = state["rng"]
        log(f"resumed from {ckpt} at step {step}")
    log(f"parser: {sum(p.numel() for p in params) / 1e6:.2f} M parameters trained ({cfg.heads}); "
        f"{len(data)} training frames; at most {cfg.steps} steps of {cfg.batch_size} or {cfg.minutes} minutes")
    start, last_log = time.time(), time.time()
    running: dict[str, float] = {}

    def progress() -> float:
        return max(step / cfg.steps, (before + time.time() - start) / (60 * cfg.minutes))

    def lr_at(s: int, p: float) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        return cfg.lr * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    while progress() < 1.0:
        lr = lr_at(step, progress())
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts = loss_of(model, data.batch(rng, cfg.batch_size))
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # the stick reader alone has nothing to learn from a batch of stickless skins
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        step += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if step % 50 == 0:
            rate = 50 * cfg.batch_size / max(1e-9, time.time() - last_log)
            last_log = time.time()
            log(f"step {step} ({progress():.0%}) lr {lr:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f" ({rate:.0f} samples/s)")
            history.append({"step": step, **{k: round(v, 5) for k, v in running.items()}})
        if held is not None and step % cfg.eval_every == 0:
            ev = evaluate(model, held)
            log(f"held-out at step {step}: " + json.dumps({k: round(v, 4) for k, v in ev.items()}))
            history.append({"step": step, "heldout": ev})
        if step % cfg.checkpoint_every == 0:
            _save_checkpoint(ckpt, model, opt, step, rng, history, before + time.time() - start)
    elapsed = before + time.time() - start
    _save_checkpoint(ckpt, model, opt, step, rng, history, elapsed)
    summary: dict = {"step": step, "done": True, "minutes": round(elapsed / 60, 1), "train_frames": len(data),
                     "config": asdict(cfg)}
    if held is not None:
        summary["heldout"] = evaluate(model, held, limit=None)
        log("held-out (final): " + json.dumps(summary["heldout"]))
    save_parser(model.eval(), out / "final", extra={"step": step, "heldout": summary.get("heldout")})
    (out / "summary.json").write_text(json.dumps({**summary, "history": history}, indent=1))
    return summary
