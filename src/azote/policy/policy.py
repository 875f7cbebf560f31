"""`Policy`: raw RGB frames in, chunks of unified gamepad actions out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from azote.gamepad import ActionChunk
from azote.policy.model import NitroGenModel
from azote.policy.preprocess import preprocess_frames
from azote.policy.sampling import check_num_steps, sample_actions


class Policy:
    """Acts with a `NitroGenModel`: frames of any size -> `ActionChunk`s of `action_horizon` gamepad states.

    An observation is one RGB frame `[H, W, 3]` uint8 (or `num_frames` of them, `[F, H, W, 3]`, for a model with
    several context frames). Sampling is seeded: `seed=` per call, else a generator seeded once at construction,
    so a given sequence of calls always gives the same actions, on CPU or GPU. `dtype=torch.bfloat16` runs the
    network in bf16 (the default on CUDA); the Euler integration stays in float32.
    """

    def __init__(
        self,
        model: NitroGenModel,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        num_steps: int | None = None,
        guidance_scale: float = 1.0,
        seed: int = 0,
        cached: bool = True,
    ):
        self.device = torch.device(device) if device is not None else model.device
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.num_steps = None if num_steps is None else check_num_steps(num_steps)
        self.guidance_scale = guidance_scale
        self.cached = cached
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: Any) -> "Policy":
        if kwargs.get("num_steps") is not None:
            check_num_steps(kwargs["num_steps"])  # before the weights are read
        return cls(NitroGenModel.from_pretrained(path, device=device), device=device, **kwargs)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def horizon(self) -> int:
        return self.model.config.action_horizon

    def pixels(self, observations: Any) -> torch.Tensor:
        """Observations (one, an array of them, or a list) -> `[B, F, 3, S, S]` model input."""
        c = self.model.config
        one_ndim = 3 if c.num_frames == 1 else 4
        if isinstance(observations, (list, tuple)):
            obs = [np.asarray(o) for o in observations]
        else:
            arr = np.asarray(observations)
            if arr.ndim == one_ndim:
                arr = arr[None]
            obs = list(arr)
        pixels = []
        for i, o in enumerate(obs):
            if o.ndim != one_ndim:
                shape = "[H, W, 3]" if c.num_frames == 1 else f"[{c.num_frames}, H, W, 3]"
                raise ValueError(f"observation {i}: expected {shape} uint8, got shape {o.shape}")
            frames = o[None] if c.num_frames == 1 else o
            if len(frames) != c.num_frames:
                raise ValueError(f"observation {i}: expected {c.num_frames} frames, got {len(frames)}")
            pixels.append(preprocess_frames(list(frames), c.vision.image_size))
        return torch.stack(pixels)

    @torch.no_grad()
    def predict(self, observations: Any, *, seed: int | None = None, game_ids: Sequence[int] | None = None) -> np.ndarray:
        """Raw model outputs `[B, H, action_dim]` float32 (the released 25-dim layout, before decoding)."""
        pixels = self.pixels(observations)
        generator = torch.Generator().manual_seed(seed) if seed is not None else self._generator
        ids = None if game_ids is None else torch.as_tensor(list(game_ids), dtype=torch.long)
        out = sample_actions(
            self.model, pixels.to(self.device), generator=generator, num_steps=self.num_steps, game_ids=ids,
            guidance_scale=self.guidance_scale, cached=self.cached,
        )
        return out.cpu().numpy()

    def act(self, observation: Any, *, seed: int | None = None, game_id: int | None = None) -> ActionChunk:
        """One observation -> one chunk of gamepad actions."""
        ids = None if game_id is None else [game_id]
        return ActionChunk.from_model_vectors(self.predict([np.asarray(observation)], seed=seed, game_ids=ids)[0])

    def act_batch(
        self, observations: Any, *, seed: int | None = None, game_ids: Sequence[int] | None = None
    ) -> list[ActionChunk]:
        """Several observations (an array `[B, ...]` or a list, frames of any sizes) -> one chunk each."""
        return [ActionChunk.from_model_vectors(v) for v in self.predict(observations, seed=seed, game_ids=game_ids)]
