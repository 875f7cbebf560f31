"""The NitroGen policy: SigLIP vision tower + VL self-attention + flow-matching DiT -> a chunk of gamepad actions.

Public API
----------
Configuration
    `PolicyConfig`, `VisionConfig` (validated; saved as `config.json`), `PRESETS` / `get_preset(name)` with
    `nitrogen-500m` (the released architecture), `small` and `tiny` (CPU-sized), `ConfigError`.
Model
    `build_model(config_or_preset, device="cpu")` -> `NitroGenModel`; `device="meta"` costs no memory.
    `NitroGenModel.compute_loss(batch)`: the flow-matching training loss (see its docstring for the batch keys).
    `sample_actions(model, pixel_values, ...)`: Euler-sampled chunks [B, H, 25]; `cached=False` is the
    straightforward path (VL stack and cross-attention K/V recomputed at every step, as the released code does).
    `NitroGenModel.encode_observation(pixel_values)` -> `ObservationCache` and `velocity(x, buckets, cache=...)`
    for custom samplers. `parameter_groups()` / `set_trainable(vision_tower=False, ...)` over `PARAMETER_GROUPS`
    (vision_tower, vl_stack, dit, action_encoder, action_decoder, game_embedding). `load_vision_tower(dir)` loads local SigLIP
    weights.
Checkpoints
    `save_pretrained(model, dir)` / `from_pretrained(dir)` (`config.json` +
    `model.safetensors`, atomic writes, strict loading), `CheckpointError`.
    `convert_ng_checkpoint(ng_pt, out_dir, vision=None)`: the released `ng.pt` -> our directory, read without
    executing anything from the file (`UnsafeCheckpointError` when the pickle asks for more than data).
    `azote.safeload.safe_load(path)` is the one reader of torch files (ng.pt, the trainer's resume state):
    bounded in time and memory before anything is allocated, every refusal one line naming the file.
    Every configuration is bounded (`azote.policy.config.MAX_*`, parameters by arithmetic before building), and
    `azote.policy.checkpoint.check_checkpoint(dir)` checks a directory's config and weights' header (names,
    shapes, dtypes) without reading weights.
    Every field of the released configuration is either computed as the released code computes it (VL padding
    to `max_sequence_length`, exact or tanh GELU per stack, `norm_eps` on the DiT feed-forward norm, sinusoidal
    position tables, `old_layout`, a game-ID token, several context frames) or refused naming field and value
    (`azote.policy.ng_import.config_from_ng`); `convert_ng_checkpoint(..., game_mapping=json)` names the games.
Acting
    `Policy(model)` / `Policy.from_pretrained(dir)`: `act(frame) -> ActionChunk`, `act_batch(frames)`,
    `predict(frames) -> np.ndarray [B, H, 25]`; `preprocess_frames(frames, image_size)` is its image pipeline.
    Guidance in the released convention `v_cond + s (v_cond - v_uncond)`: `history_guidance` (the released
    `cfg_scale`: all context frames vs the last one only; 1.0 = off) and `game_guidance` (the game id vs "no
    game"; 0.0 = off). `azote.policy.fast`: the default dtype per device, pre-packed CPU weights for the
    denoising steps, `GraphedSteps` (the Euler steps as one CUDA graph).
"""

from azote.policy.checkpoint import CheckpointError, from_pretrained, save_pretrained
from azote.policy.config import PRESETS, ConfigError, PolicyConfig, VisionConfig, get_preset
from azote.policy.model import PARAMETER_GROUPS, NitroGenModel, ObservationCache, ShapeError, build_model
from azote.policy.ng_import import UnsafeCheckpointError, convert_ng_checkpoint
from azote.policy.policy import Policy
from azote.policy.preprocess import preprocess_frames
from azote.policy.sampling import sample_actions

__all__ = [
    "PARAMETER_GROUPS",
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "NitroGenModel",
    "ObservationCache",
    "Policy",
    "PolicyConfig",
    "ShapeError",
    "UnsafeCheckpointError",
    "VisionConfig",
    "build_model",
    "convert_ng_checkpoint",
    "from_pretrained",
    "get_preset",
    "preprocess_frames",
    "sample_actions",
    "save_pretrained",
]
