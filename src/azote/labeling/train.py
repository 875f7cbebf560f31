"""Training the overlay parser from scratch on synthetic shards (CPU is enough: the model is tiny).

    azote label-train --out runs/labeling/parser --minutes 35 --export

collects game frames for backgrounds, writes synthetic shards (`azote.labeling.synth`), then runs this loop:
AdamW with warm-up and a cosine decay that follows the run's progress: the larger of steps done / `steps` and
wall time spent / `minutes` (so a busy machine still gets a complete schedule within the time budget, with fewer
steps); checkpoints every `checkpoint_every` steps (model, optimiser, step, time spent and the sampler's random
state, written atomically), so a killed run resumes where it stopped. It evaluates on shards made from held-out
skins and held-out games.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from azote.labeling.parser import OverlayParser, ParserConfig, layout_fingerprint, parser_loss, save_parser


@dataclass
class TrainConfig:
    steps: int = 6000  # at most; the time budget usually ends the run first
    batch_size: int = 48
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 200
    minutes: float = 38.0  # wall-time budget of the whole run (resumes included); the schedule follows it
    checkpoint_every: int = 250
    eval_every: int = 1000
    threads: int = 1
    seed: int = 0


class ShardData:
    """Every shard in memory; samples (previous crop, crop) pairs with their labels."""

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise FileNotFoundError("no synthetic shards (shard_*.npz) to train on")
        parts: dict[str, list[np.ndarray]] = {"crops": [], "buttons": [], "sticks": [], "family": []}
        for p in paths:
            with np.load(p) as z:
                for k in parts:
                    parts[k].append(z[k])
        self.crops = np.concatenate(parts["crops"])  # [N, T, h, w, 3]
        self.buttons = np.concatenate(parts["buttons"])
        self.sticks = np.concatenate(parts["sticks"])
        self.family = np.concatenate(parts["family"])

    def __len__(self) -> int:
        return self.crops.shape[0] * self.crops.shape[1]

    def batch(self, rng: np.random.Generator, size: int, augment: bool = True) -> dict[str, torch.Tensor]:
        n, t = self.crops.shape[:2]
        ci = rng.integers(0, n, size)
        ti = rng.integers(0, t, size)
        prev = np.where((ti > 0) & (rng.random(size) > 0.05), ti - 1, ti)  # a video's first frame has no previous
        pairs = np.concatenate([self.crops[ci, prev], self.crops[ci, ti]], axis=2).astype(np.float32)
        if augment:
            # colour channels swapped now and then: a pressed button is a change of colour, whichever colours
            pairs = pairs.copy()
            for i in np.flatnonzero(rng.random(size) < 0.3):
                pairs[i] = pairs[i][..., rng.permutation(3)]
            # small global colour changes (streams differ in levels and saturation)
            gain = rng.uniform(0.85, 1.15, (size, 1, 1, 3)).astype(np.float32)
            bias = rng.uniform(-12, 12, (size, 1, 1, 1)).astype(np.float32)
            pairs = np.clip(pairs * gain + bias, 0, 255)
        return {"pairs": torch.from_numpy(pairs), "family": torch.from_numpy(self.family[ci]),
                "sticks": torch.from_numpy(self.sticks[ci, ti]), "buttons": torch.from_numpy(self.buttons[ci, ti])}

    def all_pairs(self, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
        """Every (previous, current) pair in order, in batches of 64 (for evaluation)."""
        n, t = self.crops.shape[:2]
        idx = [(c, i) for c in range(n) for i in range(t)][:limit]
        out = []
        for s in range(0, len(idx), 64):
            ci = np.array([c for c, _ in idx[s:s + 64]])
            ti = np.array([i for _, i in idx[s:s + 64]])
            prev = np.maximum(ti - 1, 0)
            pairs = np.concatenate([self.crops[ci, prev], self.crops[ci, ti]], axis=2)
            out.append({"pairs": torch.from_numpy(pairs), "family": torch.from_numpy(self.family[ci]),
                        "sticks": torch.from_numpy(self.sticks[ci, ti]),
                        "buttons": torch.from_numpy(self.buttons[ci, ti])})
        return out


@torch.inference_mode()
def evaluate(model: OverlayParser, data: ShardData, limit: int | None = 3000) -> dict[str, float]:
    model.eval()
    sticks, truth_s, buttons, truth_b = [], [], [], []
    for b in data.all_pairs(limit):
        dec = model.decode(*model(b["pairs"], b["family"]))
        sticks.append(dec["sticks"].numpy())
        truth_s.append(b["sticks"].numpy())
        buttons.append(dec["buttons"].numpy() > 0.5)
        truth_b.append(b["buttons"].numpy() > 0)
    s, ts = np.concatenate(sticks), np.concatenate(truth_s)
    bb, tb = np.concatenate(buttons), np.concatenate(truth_b)
    r2 = [1 - ((s[..., a] - ts[..., a]) ** 2).sum() / max(((ts[..., a] - ts[..., a].mean()) ** 2).sum(), 1e-9)
          for a in (0, 1)]
    model.train()
    return {"stick_r2_x": float(r2[0]), "stick_r2_y": float(r2[1]), "stick_mae": float(np.abs(s - ts).mean()),
            "button_acc": float((bb == tb).mean()), "pairs": int(len(s))}


def _save_checkpoint(path: Path, model: OverlayParser, opt: torch.optim.Optimizer, step: int,
                     rng: np.random.Generator, history: list, elapsed: float) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                "rng": rng.bit_generator.state, "history": history, "config": asdict(model.config)}, tmp)
    os.replace(tmp, path)


def train(shards: list[Path], out: str | os.PathLike, cfg: TrainConfig = TrainConfig(),
          eval_shards: list[Path] | None = None, model_config: ParserConfig | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Trains (or resumes) under `out`: `ckpt.pt` while training, `final/parser.{json,safetensors}` at the end.
    Returns a summary with the held-out evaluation."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = ShardData(shards)
    held = ShardData(eval_shards) if eval_shards else None
    mcfg = model_config or ParserConfig()
    mcfg.layout = layout_fingerprint()
    model = OverlayParser(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step, history, before = 0, [], 0.0
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history, before = state["step"], state["history"], state.get("elapsed", 0.0)
        rng.bit_generator.state = state["rng"]
        log(f"resumed from {ckpt} at step {step}")
    log(f"parser: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; {len(data)} training frames "
        f"from {len(shards)} shards; {cfg.steps} steps of {cfg.batch_size}")
    model.train()
    start, last_log = time.time(), time.time()
    running: dict[str, float] = {}

    def progress() -> float:
        """Share of the run done: by steps or by the time budget, whichever is further (so a slow machine still
        gets a complete schedule within the budget)."""
        return max(step / cfg.steps, (before + time.time() - start) / (60 * cfg.minutes))

    def lr_at(s: int, p: float) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        return cfg.lr * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    while progress() < 1.0:
        lr = lr_at(step, progress())
        for g in opt.param_groups:
            g["lr"] = lr
        b = data.batch(rng, cfg.batch_size)
        loss, parts = parser_loss(model, b["pairs"], b["family"], b["sticks"], b["buttons"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if step % 50 == 0 or step == cfg.steps:
            rate = 50 * cfg.batch_size / max(1e-9, time.time() - last_log)
            last_log = time.time()
            log(f"step {step}/{cfg.steps} ({progress():.0%}) lr {lr:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f" ({rate:.0f} pairs/s)")
            history.append({"step": step, **{k: round(v, 5) for k, v in running.items()}})
        if held is not None and (step % cfg.eval_every == 0):
            ev = evaluate(model, held)
            log(f"held-out at step {step}: " + json.dumps({k: round(v, 4) for k, v in ev.items()}))
            history.append({"step": step, "heldout": ev})
        if step % cfg.checkpoint_every == 0:
            _save_checkpoint(ckpt, model, opt, step, rng, history, before + time.time() - start)
    elapsed = before + time.time() - start
    _save_checkpoint(ckpt, model, opt, step, rng, history, elapsed)
    summary: dict = {"step": step, "done": True, "minutes": round(elapsed / 60, 1), "train_frames": len(data),
                     "config": asdict(cfg)}
    save_parser(model, out / "final")
    if held is not None:
        summary["heldout"] = evaluate(model, held, limit=None)
        log("held-out (final): " + json.dumps(summary["heldout"]))
    (out / "summary.json").write_text(json.dumps({**summary, "history": history}, indent=1))
    return summary
