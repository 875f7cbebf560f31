"""Warmup-stable-decay learning rate and an exponential moving average of the weights."""

from __future__ import annotations

import math

import torch


def wsd_factor(step: int, total: int, warmup: int, decay_fraction: float, final_ratio: float = 0.0) -> float:
    """Linear warmup over `warmup` steps, constant, then a cosine decay over the last `decay_fraction` of
    `total` steps down to `final_ratio` of the peak."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = int(round(total * decay_fraction))
    start = total - decay_steps
    if decay_steps <= 0 or step < start:
        return 1.0
    progress = min(1.0, (step - start + 1) / decay_steps)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Shadow weights `s = d * s + (1 - d) * w` after each optimiser step. The decay ramps up as
    min(decay, (1 + n) / (10 + n)) so that short runs are not stuck near their initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        own = model.state_dict()
        with torch.no_grad():
            for k, v in self.shadow.items():
                own[k].copy_(v.to(own[k].dtype))
