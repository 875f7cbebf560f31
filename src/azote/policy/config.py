"""Validated configuration of the policy (saved as `config.json` next to the weights) and the named presets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ConfigError(ValueError):
    """A policy configuration that does not validate (the message names the field and, when known, the file)."""


class VisionConfig(BaseModel):
    """The SigLIP vision tower (the fields of transformers' `SiglipVisionConfig` that change the architecture)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    image_size: int = Field(gt=0)
    patch_size: int = Field(gt=0)
    num_channels: int = Field(default=3, gt=0)
    layer_norm_eps: float = Field(default=1e-6, gt=0)
    hidden_act: str = "gelu_pytorch_tanh"
    attention_dropout: float = Field(default=0.0, ge=0, lt=1)
    # The attention-pooling head is never used by the policy; the released checkpoint has it, small presets do not.
    use_head: bool = True

    @model_validator(mode="after")
    def _check(self) -> "VisionConfig":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"vision.hidden_size {self.hidden_size} is not divisible by vision.num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size {self.image_size} is not a multiple of vision.patch_size {self.patch_size}")
        return self

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_transformers(self) -> Any:
        """The equivalent `transformers.SiglipVisionConfig` (sdpa attention)."""
        from transformers import SiglipVisionConfig

        cfg = SiglipVisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            layer_norm_eps=self.layer_norm_eps,
            hidden_act=self.hidden_act,
            attention_dropout=self.attention_dropout,
            vision_use_head=self.use_head,
        )
        cfg._attn_implementation = "sdpa"
        return cfg

    @staticmethod
    def from_transformers_dict(data: Mapping[str, Any], source: str = "vision config") -> "VisionConfig":
        """Reads a transformers config dict: a `siglip_vision_model` one, or a full SigLIP one (`vision_config`)."""
        if "vision_config" in data:
            data = data["vision_config"]
        model_type = data.get("model_type", "siglip_vision_model")
        if model_type not in ("siglip_vision_model", "siglip"):
            raise ConfigError(f"{source}: model_type {model_type!r} is not a SigLIP vision tower")
        fields = {k: data[k] for k in VisionConfig.model_fields if k in data}
        if "vision_use_head" in data:
            fields["use_head"] = data["vision_use_head"]
        return _validate(VisionConfig, fields, source)


class PolicyConfig(BaseModel):
    """The whole policy: vision tower, VL self-attention stack, DiT, action encoder/decoder, flow matching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["azote-policy/1"] = "azote-policy/1"
    name: str = "custom"
    vision: VisionConfig
    hidden_size: int = Field(gt=0, description="width of the DiT and the action encoder/decoder")
    dit_layers: int = Field(gt=0)
    dit_heads: int = Field(gt=0)
    vl_layers: int = Field(ge=0, description="VL self-attention blocks over the image tokens")
    vl_heads: int = Field(gt=0)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    norm_eps: float = Field(default=1e-5, gt=0)
    interleave_self_attention: bool = Field(default=True, description="odd DiT blocks attend to the action tokens")
    add_pos_embed: bool = True
    max_seq_len: int = Field(default=1024, gt=0)
    action_horizon: int = Field(default=18, gt=0)
    action_dim: int = Field(default=25, gt=0)
    num_frames: int = Field(default=1, gt=0, description="context frames per observation")
    action_shift: int = Field(default=3, ge=0, description="frames between the context frame and the first action")
    noise_beta_alpha: float = Field(default=1.6, gt=0)
    noise_beta_beta: float = Field(default=0.8, gt=0)
    noise_s: float = Field(default=0.999, gt=0, le=1)
    num_timestep_buckets: int = Field(default=1000, gt=0)
    num_inference_timesteps: int = Field(default=16, gt=0)
    num_games: int = Field(default=0, ge=0, description="game-ID vocabulary; 0 = no game token")
    game_dropout: float = Field(default=0.1, ge=0, le=1, description="chance of training without the game ID (CFG)")

    @model_validator(mode="after")
    def _check(self) -> "PolicyConfig":
        if self.hidden_size % self.dit_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by dit_heads {self.dit_heads}")
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size {self.hidden_size} must be even (sinusoidal timestep encoding)")
        if self.vision.hidden_size % self.vl_heads:
            raise ValueError(f"vision.hidden_size {self.vision.hidden_size} is not divisible by vl_heads {self.vl_heads}")
        if self.add_pos_embed and self.action_horizon > self.max_seq_len:
            raise ValueError(f"action_horizon {self.action_horizon} exceeds max_seq_len {self.max_seq_len}")
        return self

    @property
    def num_image_tokens(self) -> int:
        return self.num_frames * self.vision.num_patches

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    def replace(self, **changes: Any) -> "PolicyConfig":
        """A copy with some fields changed (validated; `vision` may be a dict of vision fields to change)."""
        data = self.model_dump()
        if isinstance(changes.get("vision"), Mapping):
            changes["vision"] = {**data["vision"], **changes["vision"]}
        return _validate(PolicyConfig, {**data, **changes}, f"config {self.name!r}")

    @staticmethod
    def from_dict(data: Mapping[str, Any], source: str = "config") -> "PolicyConfig":
        return _validate(PolicyConfig, dict(data), source)

    @staticmethod
    def load(path: str | Path) -> "PolicyConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return _validate(PolicyConfig, data, str(path))


def _validate(cls: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: invalid policy configuration: {problems}") from None


# The released tower, google/siglip2-large-patch16-256 (the name the released checkpoint gives).
SIGLIP2_LARGE_256 = VisionConfig(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=256, patch_size=16
)
KNOWN_VISION_TOWERS: dict[str, VisionConfig] = {"google/siglip2-large-patch16-256": SIGLIP2_LARGE_256}

# `tiny` and `small` keep the released layout of every module, narrower and shallower. Sized by measuring one
# AdamW training step (forward + backward, batch 32, float32) on 2 CPU cores: tiny (5.0M parameters, 128 px, 64
# image tokens) ~470 ms = ~68 samples/s; small (28.6M, 128 px) ~2.7 s = ~12 samples/s. For tiny, 96 px (36 tokens)
# was ~87 samples/s and width 256 ~38 samples/s; 128 px was kept for the detail of game frames.
PRESETS: dict[str, PolicyConfig] = {
    "nitrogen-500m": PolicyConfig(
        name="nitrogen-500m",
        vision=SIGLIP2_LARGE_256,
        hidden_size=1024,
        dit_layers=8,
        dit_heads=16,
        vl_layers=4,
        vl_heads=16,
    ),
    "small": PolicyConfig(
        name="small",
        vision=VisionConfig(
            hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6,
            image_size=128, patch_size=16, use_head=False,
        ),
        hidden_size=384,
        dit_layers=6,
        dit_heads=6,
        vl_layers=2,
        vl_heads=6,
        dropout=0.1,
    ),
    "tiny": PolicyConfig(
        name="tiny",
        vision=VisionConfig(
            hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
            image_size=128, patch_size=16, use_head=False,
        ),
        hidden_size=192,
        dit_layers=4,
        dit_heads=3,
        vl_layers=1,
        vl_heads=3,
        dropout=0.1,
    ),
}


def get_preset(name: str) -> PolicyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown policy preset {name!r}; presets are {', '.join(PRESETS)}") from None
