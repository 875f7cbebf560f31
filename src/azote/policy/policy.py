"""`Policy`: raw RGB frames in, chunks of unified gamepad actions out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from azote.gamepad import ActionChunk
from azote.policy.checkpoint import from_pretrained
from azote.policy.fast import default_dtype, pack_for_cpu
from azote.policy.model import NitroGenModel, check_device
from azote.policy.preprocess import preprocess_frames
from azote.policy.sampling import check_num_steps, sample_actions


class Policy:
    """Acts with a `NitroGenModel`: frames of any size -> `ActionChunk`s of `action_horizon` gamepad states.

    An observation is one RGB frame `[H, W, 3]` uint8 (or up to `num_frames` of them, `[F, H, W, 3]`, oldest
    first, for a model with several context frames: with fewer, the missing earlier frames are left out of the
    model's input as the released session does at the start of an episode). Sampling is seeded: `seed=` per call,
    else a generator seeded once at construction, so a given sequence of calls always gives the same actions, on
    CPU or GPU. `dtype=None` picks `default_dtype(device)` (bf16 on CUDA and on CPUs with native bf16; float32
    otherwise); the Euler integration stays in float32.

    Guidance (see `azote.policy.sampling.sample_actions`; both in the released convention
    `v = v_cond + s (v_cond - v_uncond)`): `history_guidance` is the released `cfg_scale` (1.0 = off;
    conditional on all context frames, unconditional on the last frame only); `game_guidance` guides on the
    game id (0.0 = off). `guidance_scale` is the older name of game guidance as a classic weight w (s = w - 1).
    `fast=True` pre-packs the denoising steps' weights for float32 CPU inference (`azote.policy.fast`).

    A `Policy` is an `azote.agents.Agent`: after `reset(seed)`, the call with index c (from 1) of `act(frame)`
    without a seed samples with seed `seed * 1_000_003 + c`, so an episode replays exactly (a served policy,
    `RemotePolicy`, seeds its calls the same way); `game_id` is the game token its acts use by default.
    """

    name = "policy"

    def __init__(
        self,
        model: NitroGenModel,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        cached: bool = True,
        game_guidance: float = 0.0,
        history_guidance: float = 1.0,
        fast: bool = True,
    ):
        self.device = check_device(device) if device is not None else model.device
        if dtype is None:
            dtype = default_dtype(self.device)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        # float32 on the CPU: the denoising steps' weights pre-packed (azote.policy.fast; same numbers)
        self.packed_layers = pack_for_cpu(self.model) if fast else 0
        self.num_steps = None if num_steps is None else check_num_steps(num_steps)
        self.game_guidance = float(guidance_scale) - 1.0 if guidance_scale is not None else float(game_guidance)
        self.history_guidance = float(history_guidance)
        if self.game_guidance != 0.0 and self.history_guidance != 1.0:
            raise ValueError("game_guidance and history_guidance cannot be combined: choose one")
        self.cached = cached
        self._generator = torch.Generator().manual_seed(seed)
        self.game_id: int | None = None
        self._episode: int | None = None  # the episode seed, once reset() has been called
        self._calls = 0

    def reset(self, seed: int | None = None) -> None:
        """Starts an episode: its acts are seeded by `seed` and their count (see the class)."""
        self._episode, self._calls = (seed if seed is not None else self._episode or 0), 0

    @property
    def guidance_scale(self) -> float:
        """Game guidance as a classic classifier-free weight (1 + game_guidance), for callers of the old name."""
        return 1.0 + self.game_guidance

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: Any) -> "Policy":
        if kwargs.get("num_steps") is not None:
            check_num_steps(kwargs["num_steps"])  # before the weights are read
        return cls(from_pretrained(path, device=device), device=device, **kwargs)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def horizon(self) -> int:
        return self.model.config.action_horizon

    def pixels(self, observations: Any) -> torch.Tensor:
        """Observations (one, an array of them, or a list) of `num_frames` frames each -> `[B, F, 3, S, S]`."""
        pixels, present = self.observations(observations)
        if present is not None:
            raise ValueError(f"each observation needs {self.model.config.num_frames} frames")
        return pixels

    def observations(self, observations: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observations -> `[B, F, 3, S, S]` model input and the `[B, F]` frames-present mask (None when every
        observation has all `num_frames` frames; missing earlier frames are zeros, marked not present)."""
        c = self.model.config
        one_ndim = 3 if c.num_frames == 1 else 4
        if isinstance(observations, (list, tuple)):
            obs = [np.asarray(o) for o in observations]
        else:
            arr = np.asarray(observations)
            if arr.ndim == one_ndim:
                arr = arr[None]
            obs = list(arr)
        pixels, present = [], []
        for i, o in enumerate(obs):
            if o.ndim != one_ndim:
                shape = "[H, W, 3]" if c.num_frames == 1 else f"[{c.num_frames}, H, W, 3]"
                raise ValueError(f"observation {i}: expected {shape} uint8, got shape {o.shape}")
            frames = o[None] if c.num_frames == 1 else o
            if not 1 <= len(frames) <= c.num_frames:
                raise ValueError(f"observation {i}: expected 1 to {c.num_frames} frames, got {len(frames)}")
            x = preprocess_frames(list(frames), c.vision.image_size)
            missing = c.num_frames - len(frames)
            if missing:
                x = torch.cat([x.new_zeros(missing, *x.shape[1:]), x])
            pixels.append(x)
            present.append([False] * missing + [True] * len(frames))
        mask = torch.tensor(present, dtype=torch.bool)
        return torch.stack(pixels), None if bool(mask.all()) else mask

    @torch.no_grad()
    def predict(self, observations: Any, *, seed: int | None = None, game_ids: Sequence[int] | None = None,
                noise: torch.Tensor | None = None) -> np.ndarray:
        """Model outputs `[B, H, action_dim]` float32 in the standard 25-dim layout, before decoding. The initial
        noise is drawn from `seed` (or the policy's own generator), or given as `noise` [B, H, action_dim]."""
        pixels, present = self.observations(observations)
        generator = torch.Generator().manual_seed(seed) if seed is not None else self._generator
        ids = None if game_ids is None else torch.as_tensor(list(game_ids), dtype=torch.long)
        out = sample_actions(
            self.model, pixels.to(self.device), noise=noise, generator=generator, num_steps=self.num_steps, game_ids=ids,
            game_guidance=self.game_guidance, history_guidance=self.history_guidance, frames_present=present,
            cached=self.cached,
        )
        return out.cpu().numpy()

    def act(self, observation: Any, *, seed: int | None = None, game_id: int | None = None) -> ActionChunk:
        """One observation -> one chunk of gamepad actions."""
        if seed is None and self._episode is not None:
            self._calls += 1
            seed = self._episode * 1_000_003 + self._calls
        game_id = self.game_id if game_id is None else game_id
        ids = None if game_id is None else [game_id]
        return ActionChunk.from_model_vectors(self.predict([np.asarray(observation)], seed=seed, game_ids=ids)[0])

    def act_batch(
        self, observations: Any, *, seed: int | None = None, game_ids: Sequence[int] | None = None
    ) -> list[ActionChunk]:
        """Several observations (an array `[B, ...]` or a list, frames of any sizes) -> one chunk each."""
        return [ActionChunk.from_model_vectors(v) for v in self.predict(observations, seed=seed, game_ids=game_ids)]
