"""The training configuration: validated, saved next to the run, overridable from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from azote.errors import AzoteError, describe_validation_error
from azote.policy import PARAMETER_GROUPS
from azote.policy.config import ConfigError, read_json


class TrainConfigError(AzoteError, ValueError):
    pass


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: list[str] = Field(min_length=1, description="dataset roots (ours, or released labels with video_dir)")
    out: str = Field(description="run directory: checkpoints, logs, plots, final model")
    video_dir: str | None = Field(default=None, description="source videos of released label shards")
    model: str = Field(default="tiny", description="preset name, or a config.json path, for a new model")
    init_from: str | None = Field(default=None, description="checkpoint directory to start from (fine-tuning)")
    freeze: list[str] = Field(default_factory=list, description=f"parameter groups to freeze: {list(PARAMETER_GROUPS)}")
    game_ids: bool = Field(default=False, description="give the model a game-ID token (vocabulary = games in data)")

    steps: int = Field(default=2000, gt=0, description="optimiser steps")
    batch_size: int = Field(default=32, gt=0, description="samples per micro-batch per process")
    grad_accum: int = Field(default=1, gt=0, description="micro-batches per optimiser step")
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.001, ge=0)
    warmup_steps: int = Field(default=100, ge=0)
    decay_fraction: float = Field(default=0.2, ge=0, le=1, description="share of steps in the final decay")
    final_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    ema_decay: float = Field(default=0.9999, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, ge=0, description="max gradient norm (0 = off)")

    shift: int = Field(default=0, ge=0, description="first target action relative to the frame")
    min_action_density: float = Field(default=0.5, ge=0, le=1)
    game_weights: dict[str, float] = Field(default_factory=dict)
    augment: bool = True
    chunks_per_window: int = Field(default=8, gt=0)
    batches_per_window: int = Field(default=32, gt=0)

    num_workers: int = Field(default=1, ge=0, description="data-loader processes per training process")
    ckpt_every: int = Field(default=500, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    log_every: int = Field(default=10, gt=0)
    seed: int = 0
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    fsdp: bool = Field(default=False, description="shard the model with FSDP (several GPUs) instead of DDP")
    threads: int | None = Field(default=None, gt=0, description="torch CPU threads per process")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        bad = set(self.freeze) - set(PARAMETER_GROUPS)
        if bad:
            raise ValueError(f"freeze: unknown groups {sorted(bad)}; groups are {list(PARAMETER_GROUPS)}")
        return self

    @staticmethod
    def build(source: str, **values: Any) -> "TrainConfig":
        try:
            return TrainConfig(**values)
        except ValidationError as exc:
            raise TrainConfigError(describe_validation_error(exc, source)) from None

    @staticmethod
    def load(path: str | Path, **overrides: Any) -> "TrainConfig":
        """A JSON config file, with command-line values (not None) on top."""
        p = Path(path)
        if not p.is_file():
            raise TrainConfigError(f"{p}: no such config file")
        try:
            data = read_json(p, str(p))  # bounded in size and nesting, like every config file
        except ConfigError as exc:
            raise TrainConfigError(str(exc)) from None
        if not isinstance(data, dict):
            raise TrainConfigError(f"{p}: expected a JSON object")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.build(str(p), **data)
