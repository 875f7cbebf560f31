"""The configuration of a training run: one validated tree, saved with the run as `run.json`, loadable again
(`azote train --config run.json`), overridable from the command line.

    format    "azote-run/1"
    out       the run directory
    seed      data order, initial weights, noise, augmentation draws
    model     preset (or a policy config.json), init_from (fine-tuning), overrides (PolicyConfig fields), freeze,
              game_ids
    data      roots, video_dir
    sampling  shift (None: the model's action_shift), min_action_density, game_weights, chunks/batches per window
    optim     steps, batch_size, grad_accum, lr, betas, weight_decay, warmup_steps, decay_fraction, final_lr_ratio,
              ema_decay, grad_clip
    augment   enabled and the draw ranges of the colour/rotation/crop augmentation
    runtime   device, precision, fsdp, threads, num_workers, ckpt_every, keep_checkpoints, log_every

Every leaf also has a flat name, unique in the tree (its field name, or the `flag` its field declares: `data`
for data.roots, `model` for model.preset, `augment` for augment.enabled): the `azote train` option of the same
name, and the key of the flat `config.json` that runs wrote before `run.json` (still read).

This module imports neither torch nor the model (the command line builds its options from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from azote.errors import AzoteError, describe_validation_error

RUN_FORMAT = "azote-run/1"
RUN_FILE = "run.json"  # a name no checkpoint loader takes for a checkpoint (those read config.json)
LEGACY_RUN_FILE = "config.json"  # the flat TrainConfig that runs wrote before run.json
FREEZE_GROUPS = "vision_tower, vl_stack, dit, action_encoder, action_decoder"  # azote.policy.PARAMETER_GROUPS


class TrainConfigError(AzoteError, ValueError):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSection(_Section):
    preset: str = Field(default="tiny", description="preset (tiny, small, nitrogen-500m) or a policy config.json, "
                        "for a new model", json_schema_extra={"flag": "model"})
    init_from: str | None = Field(default=None, description="checkpoint directory to start from (fine-tuning)")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="PolicyConfig fields changed on the preset or the checkpoint (vision: a "
                                          "dict of its fields); a checkpoint keeps its architecture")
    freeze: list[str] = Field(default_factory=list, description=f"parameter groups to freeze: {FREEZE_GROUPS}")
    game_ids: bool = Field(default=False, description="give the model a game-ID token (vocabulary = games in data)")

    @field_validator("freeze", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """`vision_tower,vl_stack` (the command line's form) is two groups."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [g.strip() for v in value for g in v.split(",") if g.strip()]
        return value


class DataSection(_Section):
    roots: list[str] = Field(min_length=1, description="dataset roots (ours, or released labels with video_dir)",
                             json_schema_extra={"flag": "data"})
    video_dir: str | None = Field(default=None, description="source videos of released label shards")


class SamplingSection(_Section):
    shift: int | None = Field(
        default=None, ge=0, description="first target action relative to the frame; None: the model's action_shift "
                                        "(the preset's, or the checkpoint's when fine-tuning)")
    min_action_density: float = Field(default=0.5, ge=0, le=1,
                                      description="skip chunks with a smaller share of rows with input")
    game_weights: dict[str, float] = Field(default_factory=dict, description="relative weight per game (default 1)")
    chunks_per_window: int = Field(default=8, gt=0, description="chunks decoded together per window")
    batches_per_window: int = Field(default=32, gt=0, description="micro-batches served from each window")


class OptimSection(_Section):
    steps: int = Field(default=2000, gt=0, description="optimiser steps")
    batch_size: int = Field(default=32, gt=0, description="samples per micro-batch per process")
    grad_accum: int = Field(default=1, gt=0, description="micro-batches per optimiser step")
    lr: float = Field(default=3e-4, gt=0, description="peak learning rate")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas")
    weight_decay: float = Field(default=0.001, ge=0, description="AdamW weight decay (not on biases, norms, embeddings)")
    warmup_steps: int = Field(default=100, ge=0, description="linear warmup steps")
    decay_fraction: float = Field(default=0.2, ge=0, le=1, description="share of steps in the final cosine decay")
    final_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="learning rate at the end, relative to the peak")
    ema_decay: float = Field(default=0.9999, ge=0, lt=1, description="EMA decay (ramped up from 0)")
    grad_clip: float = Field(default=1.0, ge=0, description="max gradient norm (0 = off)")

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in value):
            raise ValueError(f"each beta must be in [0, 1), got {list(value)}")
        return value


class AugmentConfig(_Section):
    """Image augmentation of training batches (`azote.training.augment.augment`); each draw is per sample."""

    enabled: bool = Field(default=True, description="colour jitter, rotation, crop", json_schema_extra={"flag": "augment"})
    brightness: float = Field(default=0.2, ge=0, le=1, description="multiply by U(1 - b, 1 + b)")
    contrast: float = Field(default=0.2, ge=0, le=1, description="contrast factor U(1 - c, 1 + c)")
    saturation: float = Field(default=0.2, ge=0, le=1, description="saturation factor U(1 - s, 1 + s)")
    hue: float = Field(default=0.02, ge=0, le=0.5, description="hue turn U(-h, h), in fractions of a full turn")
    max_rotation_deg: float = Field(default=5.0, ge=0, le=180, description="rotation U(-r, r) degrees")
    min_crop_area: float = Field(default=0.8, gt=0, le=1, description="the random resized crop keeps at least this "
                                                                       "share of the frame")
    max_aspect_change: float = Field(default=1.1, ge=1, description="the crop's aspect ratio changes at most this much")


class RuntimeSection(_Section):
    device: str = Field(default="auto", description="where to train: auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto",
                                                       description="number format: auto (bf16 on GPU), fp32, bf16")
    fsdp: bool = Field(default=False, description="shard the model with FSDP (several GPUs) instead of DDP")
    threads: int | None = Field(default=None, gt=0, description="torch CPU threads per process")
    num_workers: int = Field(default=1, ge=0, description="data-loader processes per training process")
    ckpt_every: int = Field(default=500, gt=0, description="checkpoint every N steps")
    keep_checkpoints: int = Field(default=2, gt=0, description="checkpoints kept")
    log_every: int = Field(default=10, gt=0, description="log every N steps")


class TrainConfig(BaseModel):
    """The whole run. Defaults are pre-training's; `azote finetune` starts from `FINETUNE_DEFAULTS`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["azote-run/1"] = RUN_FORMAT
    out: str = Field(description="run directory: run.json, checkpoints, logs, plots, final model")
    seed: int = Field(default=0, description="seed of data order, initial weights, noise and augmentation")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        from azote.policy.model import PARAMETER_GROUPS  # the model's own list (torch: only once a run is built)

        bad = set(self.model.freeze) - set(PARAMETER_GROUPS)
        if bad:
            raise ValueError(f"model.freeze: unknown groups {sorted(bad)}; groups are {list(PARAMETER_GROUPS)}")
        asked, override = self.sampling.shift, self.model.overrides.get("action_shift")
        if asked is not None and override is not None and asked != override:
            raise ValueError(f"sampling.shift {asked} and model.overrides.action_shift {override} disagree "
                             "(the shift is the model's: give one)")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    @staticmethod
    def build(source: str, values: Mapping[str, Any] | None = None, **flat: Any) -> "TrainConfig":
        """A config from nested `values` and flat names (`steps=`, `data=`, ...; None = not given) on top."""
        data = merge(nested(values or {}, source), nested(flat, source))
        try:
            return TrainConfig.model_validate(data)
        except ValidationError as exc:
            raise TrainConfigError(describe_validation_error(exc, source)) from None

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The nested values of a config file: a `run.json`, or a flat `config.json` of an older run."""
        from azote.policy.config import ConfigError, read_json

        p = Path(path)
        if not p.is_file():
            raise TrainConfigError(f"{p}: no such config file")
        try:
            data = read_json(p, str(p))  # bounded in size and nesting, like every config file
        except ConfigError as exc:
            raise TrainConfigError(str(exc)) from None
        if not isinstance(data, dict):
            raise TrainConfigError(f"{p}: expected a JSON object")
        return nested(data, str(p))

    @staticmethod
    def load(path: str | Path, values: Mapping[str, Any] | None = None, **flat: Any) -> "TrainConfig":
        """A config file, with nested `values` and flat names (not None) on top."""
        base = TrainConfig.read(path)
        return TrainConfig.build(str(path), merge(base, nested(values or {}, str(path))), **flat)


FINETUNE_DEFAULTS: dict[str, Any] = {"optim": {"steps": 1000, "lr": 1e-4, "warmup_steps": 50}}


# --- flat names ---------------------------------------------------------------------------------------------------
def _sections() -> dict[str, type[BaseModel]]:
    return {name: f.annotation for name, f in TrainConfig.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


def leaves() -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """(flat name, path, pydantic field) of every setting, in the tree's order (`format` is no setting)."""
    sections = _sections()
    for name, f in TrainConfig.model_fields.items():
        if name == "format":
            continue
        if name not in sections:
            yield name, (name,), f
            continue
        for leaf, g in sections[name].model_fields.items():
            extra = g.json_schema_extra if isinstance(g.json_schema_extra, dict) else {}
            yield str(extra.get("flag", leaf)), (name, leaf), g


def flat_paths() -> dict[str, tuple[str, ...]]:
    """Flat name -> path in the tree; refuses a tree where two settings share a flat name."""
    paths: dict[str, tuple[str, ...]] = {}
    for flat, path, _ in leaves():
        if flat in paths:
            raise AssertionError(f"{'.'.join(path)} and {'.'.join(paths[flat])} share the flat name {flat!r}")
        paths[flat] = path
    return paths


def nested(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Nested values from any mix of nested sections and flat names (None = not given); what is neither stays as it
    is, for validation to name."""
    sections, paths = _sections(), flat_paths()
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None and key in paths:
            continue
        if key in sections and isinstance(value, Mapping):
            out = merge(out, {key: dict(value)})
        elif key in paths:
            out = merge(out, _at(paths[key], value))
        else:
            out[key] = value
    return out


def set_path(values: dict[str, Any], assignment: str) -> dict[str, Any]:
    """`values` with `key.path=value` applied (`--set`): the value is JSON when it parses (numbers, true, null,
    lists), else a string; a flat name may stand for its path (`--set lr=1e-4`)."""
    import json

    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise TrainConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE (for example optim.lr=1e-4)")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    parts = tuple(p for p in key.strip().split("."))
    if len(parts) == 1 and parts[0] in flat_paths():
        parts = flat_paths()[parts[0]]
    if not all(parts):
        raise TrainConfigError(f"--set {assignment!r}: empty name in {key!r}")
    return merge(values, _at(parts, value))


def _at(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` on it, section by section (a value that is not a section replaces the one below)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# --- run directories ----------------------------------------------------------------------------------------------
def is_run_directory(path: str | Path) -> bool:
    """A training run's directory (run.json, or the checkpoints/ and final/ of an older run), not a checkpoint."""
    p = Path(path)
    if not p.is_dir() or (p / "model.safetensors").exists():
        return False
    return (p / RUN_FILE).is_file() or (p / "checkpoints").is_dir() or (p / "final" / "config.json").is_file()


def run_directory_message(spec: str) -> str | None:
    """The one line that says which checkpoint a run directory given as a policy holds, or None for anything else."""
    if not is_run_directory(spec):
        return None
    final = Path(spec) / "final"
    if (final / "config.json").is_file():
        return f"{spec} is a training run directory; its checkpoint is {final}"
    done = sorted(p / "model" for p in (Path(spec) / "checkpoints").glob("step_*") if (p / "model").is_dir())
    latest = f"; its latest checkpoint is {done[-1]}" if done else " and it has no checkpoint yet"
    return f"{spec} is a training run directory; its final checkpoint will be {final}{latest}"
