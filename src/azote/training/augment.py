"""Image augmentations written with torch tensor ops, applied to a whole batch on the training device:
colour jitter, a small rotation (+-5 degrees) and a random resized crop, each drawn per sample. Off at evaluation.
The ranges are `AugmentConfig`, saved with the run (`run.json`, its `augment` section)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from azote.training.config import AugmentConfig  # the run configuration's `augment` section

__all__ = ["AugmentConfig", "augment"]


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """Rotates colours about the grey axis (a YIQ-plane rotation), by `turn` of a full circle per sample."""
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    i = 0.596 * x[:, 0] - 0.274 * x[:, 1] - 0.322 * x[:, 2]
    q = 0.211 * x[:, 0] - 0.523 * x[:, 1] + 0.312 * x[:, 2]
    a = (turn * 2 * math.pi)[:, None, None]
    i, q = i * torch.cos(a) - q * torch.sin(a), i * torch.sin(a) + q * torch.cos(a)
    r = y + 0.956 * i + 0.621 * q
    g = y - 0.272 * i - 0.647 * q
    b = y - 1.106 * i + 1.703 * q
    return torch.stack([r, g, b], dim=1)


def augment(pixels: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """`pixels` float [B, F, 3, S, S] in [-1, 1] (all F context frames of a sample get the same draw)."""
    b, f, c, h, w = pixels.shape
    dev = pixels.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=generator).to(dev) * (hi - lo) + lo

    x = (pixels.reshape(b, f * c, h, w) + 1) / 2  # [0, 1]
    # geometry: rotation + scale + translation in one affine grid per sample
    angle = u(-cfg.max_rotation_deg, cfg.max_rotation_deg) * math.pi / 180
    area = u(cfg.min_crop_area, 1.0)
    log_r = math.log(cfg.max_aspect_change)
    aspect = torch.exp(u(-log_r, log_r))
    sx, sy = torch.sqrt(area * aspect).clamp(max=1.0), torch.sqrt(area / aspect).clamp(max=1.0)
    tx, ty = u(-1, 1) * (1 - sx), u(-1, 1) * (1 - sy)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sx * cos, -sy * sin, tx], dim=1),
        torch.stack([sx * sin, sy * cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, (b, f * c, h, w), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour, per frame of the sample
    x = x.reshape(b * f, c, h, w)
    rep = lambda t: t.repeat_interleave(f)[:, None, None, None]  # noqa: E731
    x = x * rep(u(1 - cfg.brightness, 1 + cfg.brightness))
    mean = _gray(x).mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * rep(u(1 - cfg.contrast, 1 + cfg.contrast)) + mean
    gray = _gray(x)
    x = (x - gray) * rep(u(1 - cfg.saturation, 1 + cfg.saturation)) + gray
    if cfg.hue > 0:
        x = _rotate_hue(x, u(-cfg.hue, cfg.hue).repeat_interleave(f))
    x = x.clamp(0, 1).reshape(b, f, c, h, w)
    return x * 2 - 1
