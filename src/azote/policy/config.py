"""Validated configuration of the policy (saved as `config.json` next to the weights) and the named presets."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from azote.errors import AzoteError, describe_validation_error
from azote.safeload import JsonFileError
from azote.safeload import read_json as read_bounded

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Upper bounds of every configuration, checked before anything is built: a config.json of a few bytes must not
# make a loader build 10^7 layers or a sampler take 10^9 steps. Each is far above any model this project trains
# (the released one: width 1024, 24 + 4 + 8 layers, 256 image tokens, 16 steps, 0.49e9 parameters).
MAX_WIDTH = 16_384
MAX_LAYERS = 128
MAX_HEADS = 1_024
MAX_IMAGE_SIZE = 2_048
MAX_IMAGE_TOKENS = 16_384  # attention over the image tokens is quadratic in them
MAX_SEQ_LEN = 65_536
MAX_ACTION_DIM = 4_096
MAX_FRAMES = 64
MAX_TIMESTEP_BUCKETS = 1_000_000
MAX_INFERENCE_STEPS = 1_000
MAX_GAMES = 100_000
MAX_PARAMETERS = 8_000_000_000  # 32 GB of float32 weights
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB


Activation = Literal["gelu-approximate", "gelu"]  # tanh-approximated or exact GELU (diffusers' names)


class ConfigError(AzoteError, ValueError):
    """A policy configuration that does not validate (the message names the field and, when known, the file)."""


class VisionConfig(BaseModel):
    """The SigLIP vision tower (the fields of transformers' `SiglipVisionConfig` that change the architecture)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden_size: int = Field(gt=0, le=MAX_WIDTH)
    intermediate_size: int = Field(gt=0, le=4 * MAX_WIDTH)
    num_hidden_layers: int = Field(gt=0, le=MAX_LAYERS)
    num_attention_heads: int = Field(gt=0, le=MAX_HEADS)
    image_size: int = Field(gt=0, le=MAX_IMAGE_SIZE)
    patch_size: int = Field(gt=0, le=MAX_IMAGE_SIZE)
    num_channels: int = Field(default=3, gt=0, le=16)
    layer_norm_eps: float = Field(default=1e-6, gt=0)
    hidden_act: str = Field(default="gelu_pytorch_tanh", max_length=64)
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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    format: Literal["azote-policy/1"] = "azote-policy/1"
    name: str = Field(default="custom", max_length=200)
    vision: VisionConfig
    hidden_size: int = Field(gt=0, le=MAX_WIDTH, description="width of the DiT and the action encoder/decoder")
    dit_layers: int = Field(gt=0, le=MAX_LAYERS)
    dit_heads: int = Field(gt=0, le=MAX_HEADS)
    vl_layers: int = Field(ge=0, le=MAX_LAYERS, description="VL self-attention blocks over the image tokens")
    vl_heads: int = Field(gt=0, le=MAX_HEADS)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    vl_dropout: float | None = Field(default=None, ge=0, lt=1, description="the VL stack's dropout; None = dropout")
    norm_eps: float = Field(
        default=1e-5, gt=0, lt=1,
        description="epsilon of the DiT blocks' feed-forward LayerNorm, the one norm the released code gives its "
                    "norm_eps to (the adaptive norms and the VL stack's norms use 1e-5, the output norm 1e-6)",
    )
    dit_activation: Activation = Field(default="gelu-approximate", description="the DiT feed-forward's GELU")
    vl_activation: Activation = Field(default="gelu-approximate", description="the VL stack feed-forward's GELU")
    dit_sinusoidal_positions: int = Field(
        default=0, ge=0, le=MAX_SEQ_LEN,
        description="rows of the fixed sinusoidal table added to every DiT block's normalised input (the released "
                    "positional_embeddings='sinusoidal' with max_num_positional_embeddings rows); 0 = none",
    )
    vl_sinusoidal_positions: int = Field(default=0, ge=0, le=MAX_SEQ_LEN,
                                         description="the same for the VL self-attention blocks; 0 = none")
    vl_sequence_length: int | None = Field(
        default=None, gt=0, le=MAX_IMAGE_TOKENS + 1,
        description="VL tokens per observation: the game token and the image tokens are left-padded with zero "
                    "vectors to this length, unmasked, as the released tokenizer pads to its max_sequence_length; "
                    "None = no padding",
    )
    action_layout: Literal["buttons_first", "sticks_first"] = Field(
        default="buttons_first",
        description="the model's action vector: buttons then left and right stick (the released default), or "
                    "sticks first (the released old_layout=True); sampled chunks are always returned buttons first",
    )
    interleave_self_attention: bool = Field(default=True, description="odd DiT blocks attend to the action tokens")
    add_pos_embed: bool = True
    max_seq_len: int = Field(default=1024, gt=0, le=MAX_SEQ_LEN)
    action_horizon: int = Field(default=18, gt=0, le=MAX_SEQ_LEN)
    action_dim: int = Field(default=25, gt=0, le=MAX_ACTION_DIM)
    num_frames: int = Field(default=1, gt=0, le=MAX_FRAMES, description="context frames per observation")
    action_shift: int = Field(default=3, ge=0, le=MAX_SEQ_LEN,
                              description="frames between the context frame and the first action")
    noise_beta_alpha: float = Field(default=1.6, gt=0)
    noise_beta_beta: float = Field(default=0.8, gt=0)
    noise_s: float = Field(default=0.999, gt=0, le=1)
    num_timestep_buckets: int = Field(default=1000, gt=0, le=MAX_TIMESTEP_BUCKETS)
    num_inference_timesteps: int = Field(default=16, gt=0, le=MAX_INFERENCE_STEPS)
    num_games: int = Field(default=0, ge=0, le=MAX_GAMES, description="game-ID vocabulary; 0 = no game token")
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
        if self.vl_sequence_length is not None and self.vl_sequence_length < self.vl_content_length:
            raise ValueError(
                f"vl_sequence_length {self.vl_sequence_length} is shorter than the {self.vl_content_length} VL tokens "
                f"of an observation ({self.num_image_tokens} image tokens"
                f"{' and the game token' if self.num_games else ''})"
            )
        if self.vl_sinusoidal_positions and self.vl_sinusoidal_positions < self.vl_length:
            raise ValueError(f"vl_sinusoidal_positions {self.vl_sinusoidal_positions} is fewer than the {self.vl_length} "
                             "VL tokens it would be added to")
        if self.dit_sinusoidal_positions and self.dit_sinusoidal_positions < self.action_horizon:
            raise ValueError(f"dit_sinusoidal_positions {self.dit_sinusoidal_positions} is fewer than action_horizon "
                             f"{self.action_horizon}")
        if self.action_layout == "sticks_first" and self.action_dim < 4:
            raise ValueError(f"action_layout 'sticks_first' needs action_dim >= 4 (two sticks), got {self.action_dim}")
        if self.num_image_tokens > MAX_IMAGE_TOKENS:
            raise ValueError(
                f"num_frames {self.num_frames} x {self.vision.num_patches} patches = {self.num_image_tokens} image "
                f"tokens, more than {MAX_IMAGE_TOKENS}"
            )
        params = estimate_parameters(self)
        if params > MAX_PARAMETERS:
            raise ValueError(
                f"the model would have {params:,} parameters ({params * 4 / 1e9:,.0f} GB in float32), more than "
                f"{MAX_PARAMETERS:,}"
            )
        buffers = estimate_buffers(self)
        if params + buffers > MAX_PARAMETERS:
            raise ValueError(
                f"the sinusoidal tables would hold {buffers:,} numbers (with {params:,} parameters, more than "
                f"{MAX_PARAMETERS:,})"
            )
        return self

    @property
    def num_image_tokens(self) -> int:
        return self.num_frames * self.vision.num_patches

    @property
    def vl_content_length(self) -> int:
        """The game token (when the model has one) and the image tokens of every context frame."""
        return self.num_image_tokens + (1 if self.num_games else 0)

    @property
    def vl_length(self) -> int:
        """Tokens of the VL sequence the DiT attends to: `vl_sequence_length`, or the content when not padded."""
        return self.vl_sequence_length if self.vl_sequence_length is not None else self.vl_content_length

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
        data = read_json(path, str(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return _validate(PolicyConfig, data, str(path))


def estimate_parameters(config: PolicyConfig) -> int:
    """The parameter count of a model with this config, by arithmetic (no module is built); equal to
    `build_model(config).num_parameters()`."""

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    v, c = config.vision, config
    d, i = v.hidden_size, v.intermediate_size
    siglip_layer = 2 * 2 * d + 4 * linear(d, d) + linear(d, i) + linear(i, d)
    vision = v.num_channels * d * v.patch_size**2 + d + v.num_patches * d + v.num_hidden_layers * siglip_layer + 2 * d
    if v.use_head:  # probe, nn.MultiheadAttention (in_proj 3d x d, out_proj), LayerNorm, MLP
        vision += d + 3 * d * d + 3 * d + linear(d, d) + 2 * d + linear(d, i) + linear(i, d)
    vl = c.vl_layers * (2 * 2 * d + 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d))
    h = c.hidden_size
    dit = linear(256, h) + linear(h, h) + linear(h, 2 * h) + linear(h, h)
    for layer in range(c.dit_layers):
        context = d if (layer % 2 == 0 or not c.interleave_self_attention) else h
        dit += linear(h, 2 * h) + 2 * linear(h, h) + 2 * linear(context, h) + linear(h, 4 * h) + linear(4 * h, h)
    actions = linear(c.action_dim, h) + linear(2 * h, h) + linear(h, h) + linear(h, h) + linear(h, c.action_dim)
    positions = c.max_seq_len * h if c.add_pos_embed else 0
    games = (c.num_games + 1) * d if c.num_games else 0
    return vision + vl + dit + actions + positions + games


def estimate_buffers(config: PolicyConfig) -> int:
    """Numbers in the persistent sinusoidal position tables (`pos_embed.pe` of each block that has one)."""
    return (config.dit_layers * config.dit_sinusoidal_positions * config.hidden_size
            + config.vl_layers * config.vl_sinusoidal_positions * config.vision.hidden_size)


def read_json(source: str | Path, label: str, inline: bool = False, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """JSON from a file (or inline text), refused with one line naming `label` when it is too big, not UTF-8,
    not JSON, or nested too deep for the parser (`azote.safeload.read_json`, the project's one JSON reader)."""
    try:
        if inline:
            return read_bounded(io.BytesIO(str(source).encode()), max_bytes, label)
        return read_bounded(source, max_bytes, label)
    except JsonFileError as exc:
        raise ConfigError(str(exc)) from None


def _validate(cls: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        where = f"{source}: invalid policy configuration"
        raise ConfigError(describe_validation_error(exc, where, "(config)")) from None


# The released tower, google/siglip2-large-patch16-256 (the name the released checkpoint gives).
SIGLIP2_LARGE_256 = VisionConfig(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=256, patch_size=16
)
KNOWN_VISION_TOWERS: dict[str, VisionConfig] = {"google/siglip2-large-patch16-256": SIGLIP2_LARGE_256}

# `tiny` and `small` keep the released layout of every module, narrower and shallower. Sized by measuring one
# AdamW training step (forward + backward, batch 32, float32) on 2 CPU cores: tiny (5.0M parameters, 128 px, 64
# image tokens) ~470 ms = ~68 samples/s; small (28.6M, 128 px) ~2.7 s = ~12 samples/s. For tiny, 96 px (36 tokens)
# was ~87 samples/s and width 256 ~38 samples/s; 128 px was kept for the detail of game frames.
# The action shift is the model's (the trainer's targets start there): `nitrogen-500m` has the released model's 3;
# `tiny` and `small`, trained on our recordings (the action of row t is the one taken on frame t), have 0.
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
        action_shift=0,
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
        action_shift=0,
    ),
}


def get_preset(name: str) -> PolicyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown policy preset {name!r}; presets are {', '.join(PRESETS)}") from None
