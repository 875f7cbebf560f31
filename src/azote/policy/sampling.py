"""Euler sampling of action chunks: the straightforward path and the cached one.

The straightforward path does what the released code does: the vision tower runs once per observation, but the
VL self-attention stack and every cross-attention's key/value projections run again at each denoising step.
The cached path computes the image tokens, the VL tokens and each cross-attention block's keys and values once
per observation, and the DiT's timestep modulations (adaptive LayerNorm scale/shift) of all steps in one batch;
a denoising step then only runs the action encoder, the DiT on the H action tokens and the decoder. Both give
the same numbers (the same operations on the same inputs).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from azote.policy.config import MAX_INFERENCE_STEPS
from azote.policy.model import NitroGenModel, ShapeError


def check_num_steps(num_steps: int) -> int:
    """`num_steps` if it is a whole number of Euler steps within the bound every config has, else ValueError."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_INFERENCE_STEPS:
        raise ValueError(f"num_steps must be an integer in [1, {MAX_INFERENCE_STEPS}], got {num_steps!r:.40}")
    return num_steps


def euler_buckets(num_steps: int, num_buckets: int = 1000) -> list[int]:
    """Timestep bucket of each Euler step: `int(k / num_steps * num_buckets)` for k = 0..num_steps-1."""
    check_num_steps(num_steps)
    return [int(k / num_steps * num_buckets) for k in range(num_steps)]


def initial_noise(model: NitroGenModel, batch: int, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise [B, H, A] drawn on the CPU (so a seed gives the same chunk on every device)."""
    c = model.config
    return torch.randn((batch, c.action_horizon, c.action_dim), generator=generator, dtype=torch.float32)


def last_frame_only(batch: int, num_frames: int, device: torch.device | str = "cpu") -> Tensor:
    """[B, F] frames-present mask with only the last (current) frame: the unconditional side of frame-history
    guidance, as the released inference session builds it."""
    present = torch.zeros(batch, num_frames, dtype=torch.bool, device=device)
    present[:, -1] = True
    return present


@torch.no_grad()
def sample_actions(
    model: NitroGenModel,
    pixel_values: Tensor,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    num_steps: int | None = None,
    game_ids: Tensor | None = None,
    game_guidance: float = 0.0,
    history_guidance: float = 1.0,
    frames_present: Tensor | None = None,
    guidance_scale: float | None = None,
    cached: bool = True,
) -> Tensor:
    """Action chunks [B, H, A], float32, before clamping and thresholding, in the standard layout (buttons, left
    stick, right stick; a `sticks_first` model's output is reordered at the end).

    `noise` fixes the starting point, in the model's own layout (else drawn from `generator` on the CPU);
    `num_steps` defaults to the config's `num_inference_timesteps`. `frames_present` [B, F] (or [F]) marks the
    context frames an observation has (False: not seen yet; its tokens are left out, as released).

    Guidance, both in the released code's convention `v = v_cond + s * (v_cond - v_uncond)`:
    - `history_guidance` (the released `cfg_scale` of `get_action_with_cfg`): conditional = the frames present,
      unconditional = the last frame only. As released, 1.0 means no guidance (the released session then calls
      the plain sampler) and a guided run leaves the game token empty (a zero vector) in both passes.
    - `game_guidance`: conditional = `game_ids`, unconditional = game id 0 ("no game"); 0.0 means no guidance.
      (Classic classifier-free weight w, `v_uncond + w (v_cond - v_uncond)`, is s = w - 1; `guidance_scale` is
      that w, the older name of this option.)
    The two cannot be combined.
    """
    c = model.config
    steps = check_num_steps(num_steps or c.num_inference_timesteps)
    batch = pixel_values.shape[0]
    x = initial_noise(model, batch, generator) if noise is None else noise
    if tuple(x.shape) != (batch, c.action_horizon, c.action_dim):
        raise ShapeError(f"noise: expected {(batch, c.action_horizon, c.action_dim)}, got {tuple(x.shape)}")
    if guidance_scale is not None:
        game_guidance = float(guidance_scale) - 1.0
    game_guided = game_ids is not None and game_guidance != 0.0
    history_guided = history_guidance != 1.0
    if game_guided and history_guided:
        raise ValueError("game_guidance and history_guidance cannot be combined: choose one")
    x = x.to(device=model.device, dtype=torch.float32)
    pixel_values = pixel_values.to(model.device)

    tokens = model.image_tokens(pixel_values)
    present = model._frames_present(frames_present, batch)
    empty_game = False
    scale = 0.0
    if game_guided:
        game_ids = torch.as_tensor(game_ids, device=model.device).long().reshape(-1)
        tokens = torch.cat([tokens, tokens])
        game_ids = torch.cat([game_ids, torch.zeros_like(game_ids)])
        if present is not None:
            present = torch.cat([present, present])
        scale = float(game_guidance)
    elif history_guided:
        cond = present if present is not None else torch.ones(batch, c.num_frames, dtype=torch.bool,
                                                               device=model.device)
        uncond = last_frame_only(batch, c.num_frames, model.device)
        empty_game = True
        game_ids = None
        if torch.equal(cond, uncond):  # one context frame: both passes see the same tokens, v = v_cond exactly
            history_guided = False
            present = cond
        else:
            tokens = torch.cat([tokens, tokens])
            present = torch.cat([cond, uncond])
            scale = float(history_guidance)
    guided = game_guided or history_guided

    def context() -> Tensor:
        return model.vl_tokens(tokens, game_ids, present, empty_game_token=empty_game)

    schedule = euler_buckets(steps, c.num_timestep_buckets)
    velocity: Callable[[Tensor, Tensor, int], Tensor]
    if cached:
        cache = model.observation_cache(context())
        # the timestep conditioning of every step at once: one pass over those weights instead of one per step
        step_mods = model.model.timestep_modulation(torch.tensor(schedule, dtype=torch.long, device=model.device))

        def velocity(xt: Tensor, buckets: Tensor, k: int) -> Tensor:
            mods = [m[k:k + 1].expand(xt.shape[0], -1) for m in step_mods]
            return model.velocity(xt, buckets, cache=cache, modulation=mods)

    else:

        def velocity(xt: Tensor, buckets: Tensor, k: int) -> Tensor:
            return model.velocity(xt, buckets, vl_tokens=context())

    dt = 1.0 / steps
    for k, bucket in enumerate(schedule):
        xin = torch.cat([x, x]) if guided else x
        buckets = torch.full((xin.shape[0],), bucket, dtype=torch.long, device=model.device)
        v = velocity(xin.to(model.dtype), buckets, k).float()
        if guided:
            v_cond, v_uncond = v.chunk(2)
            v = v_cond + scale * (v_cond - v_uncond)
        x = x + dt * v
    return model.to_standard_layout(x)
