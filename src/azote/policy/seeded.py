"""Weights that are a function of each tensor's name and shape only, for comparing two implementations.

Two models whose parameters have the same names (Azote's and the released model definition, by design) get the
same weights from `fill_seeded_(model, seed)`, whatever order or library builds them, so test vectors need ship
only inputs and outputs, not weights. The scales keep activations of order one: matrices ~ N(0, 1/fan_in),
1-D weights (norm gains) ~ 1 + N(0, 0.1^2), biases and other vectors ~ N(0, 0.1^2). Buffers are left alone.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import torch
from torch import Tensor, nn


def seeded_tensor(name: str, shape: Sequence[int], seed: int = 0) -> Tensor:
    """A float32 tensor determined by `name`, `shape` and `seed` alone."""
    generator = torch.Generator().manual_seed((zlib.crc32(name.encode()) + 7919 * seed) % (2**63))
    values = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "W" and len(shape) == 3:  # per-embodiment linear stored [embodiments, in, out]
        return values / math.sqrt(shape[1])
    if len(shape) >= 2:
        return values / math.sqrt(math.prod(shape[1:]))
    if leaf == "weight":
        return 1.0 + 0.1 * values
    return 0.1 * values


@torch.no_grad()
def fill_seeded_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrites every parameter of `model` with `seeded_tensor(name, shape, seed)`; returns the model."""
    for name, param in model.named_parameters():
        param.copy_(seeded_tensor(name, param.shape, seed).to(param.dtype))
    return model
