"""Euler sampling of action chunks: the straightforward path and the cached one.

The straightforward path does what the released code does: the vision tower runs once per observation, but the
VL self-attention stack and every cross-attention's key/value projections run again at each denoising step.
The cached path computes the image tokens, the VL tokens and each cross-attention block's keys and values once
per observation, and the DiT's timestep modulations (adaptive LayerNorm scale/shift) of all steps in one batch;
a denoising step then only runs the action encoder, the DiT on the H action tokens and the decoder. Both give
the same numbers (the same operations on the same inputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from azote.policy.config import MAX_INFERENCE_STEPS
from azote.policy.model import ShapeError

if TYPE_CHECKING:
    from azote.policy.model import NitroGenModel


def check_num_steps(num_steps: int) -> int:
    """`num_steps` if it is a whole number of Euler steps within the bound every config has, else ValueError."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_INFERENCE_STEPS:
        raise ValueError(f"num_steps must be an integer in [1, {MAX_INFERENCE_STEPS}], got {num_steps!r:.40}")
    return num_steps


def euler_buckets(num_steps: int, num_buckets: int = 1000) -> list[int]:
    """Timestep bucket of each Euler step: `int(k / num_steps * num_buckets)` for k = 0..num_steps-1."""
    check_num_steps(num_steps)
    return [int(k / num_steps * num_buckets) for k in range(num_steps)]


def initial_noise(model: "NitroGenModel", batch: int, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise [B, H, A] drawn on the CPU (so a seed gives the same chunk on every device)."""
    c = model.config
    return torch.randn((batch, c.action_horizon, c.action_dim), generator=generator, dtype=torch.float32)


@torch.no_grad()
def sample_actions(
    model: "NitroGenModel",
    pixel_values: Tensor,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    num_steps: int | None = None,
    game_ids: Tensor | None = None,
    guidance_scale: float = 1.0,
    cached: bool = True,
) -> Tensor:
    """Action chunks [B, H, A] in the model's action space (before clamping and thresholding), float32.

    `noise` fixes the starting point (else drawn from `generator` on the CPU); `num_steps` defaults to the
    config's `num_inference_timesteps`; with `game_ids` and `guidance_scale != 1` the velocity is
    classifier-free guided: `v_none + guidance_scale * (v_game - v_none)`.
    """
    c = model.config
    steps = check_num_steps(num_steps or c.num_inference_timesteps)
    batch = pixel_values.shape[0]
    x = initial_noise(model, batch, generator) if noise is None else noise
    if tuple(x.shape) != (batch, c.action_horizon, c.action_dim):
        raise ShapeError(f"noise: expected {(batch, c.action_horizon, c.action_dim)}, got {tuple(x.shape)}")
    x = x.to(device=model.device, dtype=torch.float32)
    pixel_values = pixel_values.to(model.device)

    tokens = model.image_tokens(pixel_values)
    guided = game_ids is not None and guidance_scale != 1.0
    if guided:
        game_ids = torch.as_tensor(game_ids, device=model.device).long().reshape(-1)
        tokens = torch.cat([tokens, tokens])
        game_ids = torch.cat([game_ids, torch.zeros_like(game_ids)])

    schedule = euler_buckets(steps, c.num_timestep_buckets)
    velocity: Callable[[Tensor, Tensor, int], Tensor]
    if cached:
        cache = model.observation_cache(model.vl_tokens(tokens, game_ids))
        # the timestep conditioning of every step at once: one pass over those weights instead of one per step
        step_mods = model.model.timestep_modulation(torch.tensor(schedule, dtype=torch.long, device=model.device))

        def velocity(xt: Tensor, buckets: Tensor, k: int) -> Tensor:
            mods = [m[k:k + 1].expand(xt.shape[0], -1) for m in step_mods]
            return model.velocity(xt, buckets, cache=cache, modulation=mods)

    else:

        def velocity(xt: Tensor, buckets: Tensor, k: int) -> Tensor:
            return model.velocity(xt, buckets, vl_tokens=model.vl_tokens(tokens, game_ids))

    dt = 1.0 / steps
    for k, bucket in enumerate(schedule):
        xin = torch.cat([x, x]) if guided else x
        buckets = torch.full((xin.shape[0],), bucket, dtype=torch.long, device=model.device)
        v = velocity(xin.to(model.dtype), buckets, k).float()
        if guided:
            v_game, v_none = v.chunk(2)
            v = v_none + guidance_scale * (v_game - v_none)
        x = x + dt * v
    return x
