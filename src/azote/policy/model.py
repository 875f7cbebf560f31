"""The NitroGen policy network: SigLIP tower -> VL self-attention -> flow-matching DiT over an action chunk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from azote.errors import AzoteError
from azote.policy.config import ConfigError, PolicyConfig, VisionConfig, estimate_parameters, get_preset, read_json
from azote.policy.modules import KV, ActionDecoder, ActionEncoder, DiT, VLSelfAttention

# Parameter groups by name prefix, for freezing parts of the model during training.
PARAMETER_GROUPS: dict[str, tuple[str, ...]] = {
    "vision_tower": ("vision_encoder.",),
    "vl_stack": ("vl_self_attention_model.",),
    "dit": ("model.",),
    "action_encoder": ("action_encoder.", "position_embedding."),
    "action_decoder": ("action_decoder.",),
    "game_embedding": ("game_embedding.",),
}


class ShapeError(AzoteError, ValueError):
    """An input tensor with the wrong shape or dtype for this model's configuration."""


@dataclass
class ObservationCache:
    """What the denoising steps reuse for a batch of observations: VL tokens and every cross-attention's K/V."""

    vl_tokens: Tensor  # [B, N, vision width]
    cross_kv: list[KV | None]  # per DiT block: ([B, heads, N, head_dim] keys, values), None for self-attention


def _build_vision_tower(vision: VisionConfig) -> nn.Module:
    from transformers import SiglipVisionModel

    return SiglipVisionModel(vision.to_transformers())


class NitroGenModel(nn.Module):
    """The policy network. Submodule names (and so `state_dict()` names) are those of the released checkpoint.

    Inputs: `pixel_values [B, F, 3, S, S]` (or `[B, 3, S, S]` for one frame) normalised to [-1, 1]; noisy actions
    `[B, H, action_dim]`; integer timestep buckets `[B]` in `[0, num_timestep_buckets)`.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        c = config
        width = c.vision.hidden_size
        # Registration order follows the released state dict.
        self.vision_encoder = _build_vision_tower(c.vision)
        self.model = DiT(c.hidden_size, c.dit_heads, c.dit_layers, width, c.interleave_self_attention, c.dropout,
                         c.norm_eps, c.dit_activation, c.dit_sinusoidal_positions)
        vl_dropout = c.dropout if c.vl_dropout is None else c.vl_dropout
        self.vl_self_attention_model = VLSelfAttention(width, c.vl_heads, c.vl_layers, vl_dropout, c.vl_activation,
                                                       c.vl_sinusoidal_positions)
        self.action_encoder = ActionEncoder(c.action_dim, c.hidden_size)
        self.action_decoder = ActionDecoder(c.hidden_size, c.action_dim)
        self.position_embedding = nn.Embedding(c.max_seq_len, c.hidden_size) if c.add_pos_embed else None
        # Row 0 is "no game": used for unknown games and for the unconditional half of classifier-free guidance.
        self.game_embedding = nn.Embedding(c.num_games + 1, width) if c.num_games else None
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        if self.game_embedding is not None:
            nn.init.normal_(self.game_embedding.weight, std=0.02)

    # ---------------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.action_encoder.W1.W.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_encoder.W1.W.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters by group (`PARAMETER_GROUPS`); every parameter is in exactly one group."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in PARAMETER_GROUPS}
        for name, p in self.named_parameters():
            group = next(g for g, prefixes in PARAMETER_GROUPS.items() if name.startswith(prefixes))
            groups[group].append((name, p))
        return groups

    def set_trainable(self, **groups: bool) -> None:
        """`set_trainable(vision_tower=False)` freezes the tower; groups not named keep their state."""
        unknown = set(groups) - set(PARAMETER_GROUPS)
        if unknown:
            raise ValueError(f"unknown parameter groups {sorted(unknown)}; groups are {', '.join(PARAMETER_GROUPS)}")
        named = self.parameter_groups()
        for group, trainable in groups.items():
            for _, p in named[group]:
                p.requires_grad_(trainable)

    def load_vision_tower(self, pretrained_dir: str | Path) -> None:
        """Loads SigLIP weights from a local transformers directory (SiglipModel or SiglipVisionModel)."""
        from transformers import SiglipVisionModel

        path = Path(pretrained_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such vision tower directory")
        ours = self.config.vision
        # sizes the directory's config.json gives must be ours before transformers builds anything from it
        raw = read_json(path / "config.json", str(path / "config.json"))
        raw = raw.get("vision_config", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{path / 'config.json'}: expected a JSON object")
        sizes = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                 "patch_size", "num_channels")
        differ = [f"{k} {raw[k]!r:.20} (the policy's: {getattr(ours, k)})"
                  for k in sizes if k in raw and raw[k] != getattr(ours, k)]
        if differ:
            raise ValueError(f"{path}: vision tower does not match the policy's vision config: {', '.join(differ)}")
        # safetensors only: a pytorch_model.bin would be unpickled by torch.load
        loaded = SiglipVisionModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        found = VisionConfig.from_transformers_dict(loaded.config.to_dict(), str(path / "config.json"))
        if found.model_copy(update={"use_head": ours.use_head}) != ours:
            raise ValueError(f"{path}: vision tower {found} does not match the policy's vision config {ours}")
        state = {k: v for k, v in loaded.state_dict().items() if ours.use_head or not k.startswith("head.")}
        self.vision_encoder.load_state_dict(state, strict=True)

    # ---------------------------------------------------------------------------------------------------------
    def _pixels(self, pixel_values: Tensor) -> Tensor:
        """Validates and flattens pixels to [B * F, 3, S, S]."""
        c = self.config
        if pixel_values.ndim == 4 and c.num_frames == 1:
            pixel_values = pixel_values[:, None]
        s = c.vision.image_size
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[1:]) != (c.num_frames, c.vision.num_channels, s, s):
            raise ShapeError(
                f"pixel_values: expected [B, {c.num_frames}, {c.vision.num_channels}, {s}, {s}] (normalised to [-1, 1]), "
                f"got {tuple(pixel_values.shape)}; use azote.policy.preprocess_frames for raw frames"
            )
        if not pixel_values.is_floating_point():
            raise ShapeError(f"pixel_values: expected floating point values in [-1, 1], got {pixel_values.dtype}")
        return pixel_values.flatten(0, 1)

    def _game_ids(self, game_ids: Tensor | None, batch: int) -> Tensor | None:
        if self.game_embedding is None and game_ids is None:
            return None
        if game_ids is None:
            # A game-conditioned model always sees a game token; "no game" is id 0.
            return torch.zeros(batch, dtype=torch.long, device=self.device)
        if self.game_embedding is None:
            raise ValueError("game_ids given but this policy has no game token (config.num_games is 0)")
        game_ids = torch.as_tensor(game_ids, device=self.device).long().reshape(-1)
        if game_ids.shape[0] != batch:
            raise ShapeError(f"game_ids: expected {batch} ids, got {game_ids.shape[0]}")
        if game_ids.min() < 0 or game_ids.max() > self.config.num_games:
            raise ValueError(f"game_ids must lie in [0, {self.config.num_games}] (0 = no game), got {game_ids.tolist()}")
        return game_ids

    def image_tokens(self, pixel_values: Tensor) -> Tensor:
        """The tower's `last_hidden_state` (post-LayerNorm), frames concatenated: [B, F * patches, width]."""
        batch = pixel_values.shape[0]
        flat = self._pixels(pixel_values)
        tower = self.vision_encoder
        # The tower's own forward also runs the pooling head, which the policy never uses.
        hidden = tower.embeddings(flat.to(tower.embeddings.patch_embedding.weight.dtype))
        hidden = tower.encoder(inputs_embeds=hidden).last_hidden_state
        hidden = tower.post_layernorm(hidden)
        return hidden.reshape(batch, -1, hidden.shape[-1])

    def _frames_present(self, frames_present: Tensor | None, batch: int) -> Tensor | None:
        if frames_present is None:
            return None
        f = self.config.num_frames
        present = torch.as_tensor(frames_present, device=self.device).bool()
        if present.ndim == 1:
            present = present[None].expand(batch, -1)
        if tuple(present.shape) != (batch, f):
            raise ShapeError(f"frames_present: expected [{batch}, {f}] (or [{f}]) booleans, got {tuple(present.shape)}")
        return None if bool(present.all()) else present

    def vl_sequence(
        self, image_tokens: Tensor, game_ids: Tensor | None = None, frames_present: Tensor | None = None,
        empty_game_token: bool = False,
    ) -> Tensor:
        """The VL stack's input [B, vl_length, width], laid out as the released tokenizer does: zero vectors (left
        padding up to `vl_sequence_length`, not masked), then the game token (a model with a game vocabulary
        only), then the image tokens of the frames present, frame after frame. A frame that is not present
        (`frames_present[b, f]` False: a context frame not seen yet, or left out for frame-history guidance)
        gives no tokens, so the padding grows. `empty_game_token`: the game token is a zero vector, as the
        released guided sampler leaves it."""
        c = self.config
        batch, _, width = image_tokens.shape
        parts: list[Tensor] = []
        if self.game_embedding is not None:
            if empty_game_token:
                parts.append(image_tokens.new_zeros(batch, 1, width))
            else:
                ids = self._game_ids(game_ids, batch)
                assert ids is not None
                parts.append(self.game_embedding(ids)[:, None].to(image_tokens.dtype))
        elif game_ids is not None:
            self._game_ids(game_ids, batch)  # raises: this model has no game token
        present = self._frames_present(frames_present, batch)
        length = c.vl_length
        if present is None:
            content = torch.cat([*parts, image_tokens], dim=1) if parts else image_tokens
            pad = length - content.shape[1]
            if pad < 0:
                raise ShapeError(f"{content.shape[1]} VL tokens do not fit vl_sequence_length {length}")
            return torch.cat([content.new_zeros(batch, pad, width), content], dim=1) if pad else content
        frames = image_tokens.reshape(batch, c.num_frames, -1, width)
        out = image_tokens.new_zeros(batch, length, width)
        for b in range(batch):
            row = torch.cat([*(p[b] for p in parts), frames[b][present[b]].reshape(-1, width)])
            out[b, length - row.shape[0]:] = row
        return out

    def vl_tokens(
        self, image_tokens: Tensor, game_ids: Tensor | None = None, frames_present: Tensor | None = None,
        empty_game_token: bool = False,
    ) -> Tensor:
        """VL self-attention over the VL sequence (`vl_sequence`): the DiT's context."""
        return self.vl_self_attention_model(self.vl_sequence(image_tokens, game_ids, frames_present, empty_game_token))

    # ---------------------------------------------------------------------------------------------------------
    def to_model_layout(self, actions: Tensor) -> Tensor:
        """Action vectors [..., A] in the standard layout (buttons, left stick, right stick) -> this model's."""
        if self.config.action_layout == "sticks_first":
            return torch.cat([actions[..., -4:], actions[..., :-4]], dim=-1)
        return actions

    def to_standard_layout(self, actions: Tensor) -> Tensor:
        """This model's action vectors [..., A] -> the standard layout (buttons, left stick, right stick)."""
        if self.config.action_layout == "sticks_first":
            return torch.cat([actions[..., 4:], actions[..., :4]], dim=-1)
        return actions

    def observation_cache(self, vl_tokens: Tensor) -> ObservationCache:
        """VL tokens with every cross-attention block's keys and values, computed once."""
        return ObservationCache(vl_tokens, self.model.context_kv(vl_tokens))

    def encode_observation(
        self, pixel_values: Tensor, game_ids: Tensor | None = None, frames_present: Tensor | None = None
    ) -> ObservationCache:
        """Everything the denoising steps need from an observation, computed once."""
        return self.observation_cache(self.vl_tokens(self.image_tokens(pixel_values), game_ids, frames_present))

    def _check_actions(self, x: Tensor, buckets: Tensor) -> None:
        c = self.config
        if x.ndim != 3 or tuple(x.shape[1:]) != (c.action_horizon, c.action_dim):
            raise ShapeError(f"actions: expected [B, {c.action_horizon}, {c.action_dim}], got {tuple(x.shape)}")
        if buckets.shape != (x.shape[0],):
            raise ShapeError(f"timestep buckets: expected [{x.shape[0]}], got {tuple(buckets.shape)}")

    def velocity(
        self, x_t: Tensor, buckets: Tensor, vl_tokens: Tensor | None = None, cache: ObservationCache | None = None,
        modulation: list[Tensor] | None = None,
    ) -> Tensor:
        """The predicted velocity [B, H, A] for noisy actions given VL tokens, or a cache of their K/V;
        `modulation` is the DiT's `timestep_modulation(buckets)` when the caller has it already."""
        self._check_actions(x_t, buckets)
        h = self.action_encoder(x_t, buckets)
        if self.position_embedding is not None:
            h = h + self.position_embedding.weight[: h.shape[1]][None]
        if cache is not None:
            h = self.model(h, buckets, kv=cache.cross_kv, modulation=modulation)
        else:
            h = self.model(h, buckets, context=vl_tokens, modulation=modulation)
        return self.action_decoder(h)

    def forward(
        self, pixel_values: Tensor, x_t: Tensor, buckets: Tensor, game_ids: Tensor | None = None,
        frames_present: Tensor | None = None,
    ) -> Tensor:
        """The straightforward velocity (in the model's action layout): vision tower, VL stack and DiT, nothing
        reused."""
        vl = self.vl_tokens(self.image_tokens(pixel_values), game_ids, frames_present)
        return self.velocity(x_t, buckets, vl_tokens=vl)

    # ---------------------------------------------------------------------------------------------------------
    def sample_time(self, batch: int) -> Tensor:
        """Training times `t = (1 - Beta(alpha, beta)) * s` (the default torch RNG: seed with torch.manual_seed)."""
        c = self.config
        beta = torch.distributions.Beta(torch.tensor(c.noise_beta_alpha), torch.tensor(c.noise_beta_beta))
        return ((1.0 - beta.sample((batch,))) * c.noise_s).to(device=self.device, dtype=torch.float32)

    def compute_loss(self, batch: Mapping[str, Any]) -> Tensor:
        """Flow-matching loss of a training batch (a scalar).

        Keys: `pixel_values` [B, F, 3, S, S] (float in [-1, 1], or uint8 0..255 which is normalised here);
        `actions` [B, H, A] in the model's action space, standard layout (buttons first; reordered here for a
        `sticks_first` model, with `noise` and `action_mask`); optional `action_mask` [B, H, A] or [B, H]
        (1 = valid); optional `game_ids` [B] (0 = no game; dropped to 0 with probability `game_dropout` while
        training); optional `frames_present` [B, F]; optional `noise` [B, H, A] and `t` [B] to fix the draws.
        Noisy actions `x_t = (1 - t) * noise + t * actions`, target `actions - noise`, bucket `floor(t * buckets)`
        in float32, loss = masked mean squared error.
        """
        c = self.config
        pixels = torch.as_tensor(batch["pixel_values"], device=self.device)
        if pixels.dtype == torch.uint8:
            pixels = (pixels.float() / 255.0 - 0.5) / 0.5
        actions = torch.as_tensor(batch["actions"], device=self.device, dtype=torch.float32)
        b = actions.shape[0]
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (c.action_horizon, c.action_dim):
            raise ShapeError(f"actions: expected [B, {c.action_horizon}, {c.action_dim}], got {tuple(actions.shape)}")
        noise = batch.get("noise")
        noise = torch.randn_like(actions) if noise is None else torch.as_tensor(noise, device=self.device).float()
        t = batch.get("t")
        t = self.sample_time(b) if t is None else torch.as_tensor(t, device=self.device, dtype=torch.float32)
        if noise.shape != actions.shape or t.shape != (b,):
            raise ShapeError(f"noise must be {tuple(actions.shape)} and t [{b}], got {tuple(noise.shape)}, {tuple(t.shape)}")
        game_ids = batch.get("game_ids")
        if game_ids is not None and self.training and c.game_dropout > 0:
            game_ids = torch.as_tensor(game_ids, device=self.device).long()
            keep = torch.rand(b, device=self.device) >= c.game_dropout
            game_ids = torch.where(keep, game_ids, torch.zeros_like(game_ids))

        actions, noise = self.to_model_layout(actions), self.to_model_layout(noise)
        tt = t[:, None, None]
        x_t = (1 - tt) * noise + tt * actions
        buckets = torch.floor(t * c.num_timestep_buckets).long()
        pred = self(pixels, x_t.to(self.dtype), buckets, game_ids, batch.get("frames_present")).float()
        err = (pred - (actions - noise)) ** 2

        mask = batch.get("action_mask")
        if mask is None:
            return err.mean()
        mask = torch.as_tensor(mask, device=self.device).float()
        if mask.shape == actions.shape[:2]:
            mask = mask[..., None].expand_as(err)
        elif mask.shape == err.shape:
            mask = self.to_model_layout(mask)
        if mask.shape != err.shape:
            raise ShapeError(f"action_mask: expected {tuple(actions.shape)} or {tuple(actions.shape[:2])}, got {tuple(mask.shape)}")
        return (err * mask).sum() / mask.sum().clamp_min(1.0)


def check_device(device: torch.device | str) -> torch.device:
    """The device, or a `ConfigError` saying why it cannot be used (no CUDA in this PyTorch, no such GPU), raised
    before anything is read or allocated: PyTorch's own errors come later and name something else (pinned memory)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"device {device!r}: CUDA is not available here ({why}); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    elif dev.type not in ("cpu", "meta"):
        raise ConfigError(f"device {device!r}: Azote runs on cpu or cuda")
    return dev


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that can still be allocated on a device (CPU: the kernel's MemAvailable), or None when unknown."""
    dev = torch.device(device)
    if dev.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None
    if dev.type == "cuda" and torch.cuda.is_available():
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except (RuntimeError, ValueError, AssertionError):
            return None
    return None


def check_memory(nbytes: int, device: torch.device | str, source: str) -> None:
    """Raises `ConfigError` before weights of `nbytes` are allocated on a device that cannot hold them."""
    free = available_memory(device)
    if free is not None and nbytes > free:
        raise ConfigError(
            f"{source}: the weights need {nbytes / 1e9:,.2f} GB and {torch.device(device)} has {free / 1e9:,.2f} GB "
            "available"
        )


def build_model(config: PolicyConfig | str, device: torch.device | str = "cpu") -> NitroGenModel:
    """A freshly initialised model from a config or a preset name. `device="meta"` builds it without memory.
    (Every `PolicyConfig` has bounded sizes and parameter count; on a real device the float32 weights must also
    fit in the memory available, checked before anything is allocated.)"""
    cfg = get_preset(config) if isinstance(config, str) else config
    if torch.device(device).type != "meta":
        check_memory(4 * estimate_parameters(cfg), device, f"policy config {cfg.name!r}")
    with torch.device(device):
        return NitroGenModel(cfg)
