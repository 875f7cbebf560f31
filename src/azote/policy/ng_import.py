"""Import of the released NitroGen checkpoint (`ng.pt`) without executing anything from the file.

`ng.pt` is a torch zip checkpoint, read by `azote.safeload.safe_load` (the one reader of torch files in
Azote: a bounded pickle interpreter that resolves only tensor rebuilding, `OrderedDict` and `set`, and turns the
released code's configuration classes, modules under `nitrogen.`, into inert records of their data). Its
configuration becomes our `PolicyConfig` (validated with the same bounds as every `config.json`) and its weights
are checked by name, shape and dtype before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from azote.policy.checkpoint import CheckpointError, check_dtypes, check_state_dict, expected_shapes, save_checkpoint
from azote.policy.config import KNOWN_VISION_TOWERS, MAX_WIDTH, ConfigError, PolicyConfig, VisionConfig, read_json
from azote.safeload import DATA_MODULES, ForeignObject, UnsafeCheckpointError, safe_load

__all__ = [
    "DATA_MODULES", "ForeignObject", "NGCheckpoint", "UnsafeCheckpointError", "config_from_ng", "convert_ng_checkpoint",
    "load_vision_config", "read_ng_checkpoint", "safe_load", "to_plain",
]

_MAX_CONFIG_TENSOR = 4096  # a configuration value that is a tensor is a few numbers, never weights


def to_plain(obj: Any, source: str = "checkpoint") -> Any:
    """Configuration data as JSON-like values: foreign records become dicts of their fields, sets sorted lists.
    (`safe_load` has bounded the object's size and depth and refused cycles, so this recursion ends.)"""
    if isinstance(obj, ForeignObject):
        if obj.state is None and not obj.kwargs and len(obj.args) == 1:
            return to_plain(obj.args[0], source)  # an enum member, pickled as Class(value)
        try:
            fields = obj.fields()
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        return {k: to_plain(v, source) for k, v in fields.items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v, source) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, source) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [to_plain(v, source) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, Tensor):
        if obj.numel() > _MAX_CONFIG_TENSOR:  # as a list of Python floats it would take 8x its bytes
            raise CheckpointError(f"{source}: a configuration value is a tensor of {obj.numel()} elements")
        return obj.tolist()
    return obj


@dataclass
class NGCheckpoint:
    model: dict[str, Tensor]
    ckpt_config: dict[str, Any]
    step: Any
    epoch: Any


def read_ng_checkpoint(path: str | Path) -> NGCheckpoint:
    """Reads `ng.pt`: `model` (state dict), `ckpt_config` (as plain data), `step`, `epoch`."""
    obj = safe_load(path)
    if not isinstance(obj, Mapping) or "model" not in obj:
        raise CheckpointError(f"{path}: expected a dict with 'model' (and 'ckpt_config'), got {type(obj).__name__}")
    state = obj["model"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: 'model' is not a state dict of tensors")
    if "ckpt_config" not in obj:
        raise CheckpointError(f"{path}: no 'ckpt_config' (the model's configuration) in the checkpoint")
    cfg = to_plain(obj["ckpt_config"], str(path))
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: 'ckpt_config' is not a configuration record")
    return NGCheckpoint(dict(state), cfg, to_plain(obj.get("step"), str(path)), to_plain(obj.get("epoch"), str(path)))


def load_vision_config(spec: str | Path) -> VisionConfig:
    """A vision tower configuration from a JSON file or inline JSON: a transformers SigLIP (vision) config, or
    any object with a `vision` entry (an Azote `config.json`, the reference `tiny_config.json`)."""
    text = str(spec)
    if text.lstrip().startswith("{"):
        source, data = "--vision-config", read_json(text, "--vision-config", inline=True)
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: no such vision config file")
        source, data = str(path), read_json(path, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if isinstance(data.get("vision"), dict):
        data = data["vision"]
    return VisionConfig.from_transformers_dict(data, source)


def _get(cfg: Mapping[str, Any], dotted: str, source: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{source}: ckpt_config lacks {dotted}")
        node = node[part]
    return node


def config_from_ng(
    ckpt_config: Mapping[str, Any], vision: VisionConfig | None = None, source: str = "ng.pt", use_head: bool = True
) -> PolicyConfig:
    """Our `PolicyConfig` for a released `ckpt_config` (plain data). `vision` overrides the named tower."""

    def get(key: str) -> Any:
        return _get(ckpt_config, key, source)

    def count(key: str) -> int:
        # checked before any arithmetic: `[0] * 2**40` or `"x" * 2**31` from a hostile file would fill memory
        value = get(key)
        if type(value) is not int or not 0 < value <= MAX_WIDTH:
            raise ConfigError(f"{source}: ckpt_config {key} must be an integer in [1, {MAX_WIDTH}], got {value!r:.60}")
        return value

    named_tower = vision is None
    if vision is None:
        name = get("model_cfg.vision_encoder_name")
        if not isinstance(name, str) or name not in KNOWN_VISION_TOWERS:
            raise ConfigError(
                f"{source}: ckpt_config names vision tower {name!r:.100}, whose configuration Azote does not know; "
                "give it with --vision-config"
            )
        vision = KNOWN_VISION_TOWERS[name]
    vision = vision.model_copy(update={"use_head": use_head})

    hidden = count("model_cfg.hidden_size")
    dit, vl = "model_cfg.diffusion_model_cfg", "model_cfg.vl_self_attention_cfg"
    checks = {
        f"{dit}.num_attention_heads * attention_head_dim == hidden_size":
            count(f"{dit}.num_attention_heads") * count(f"{dit}.attention_head_dim") == hidden,
        f"{dit}.output_dim == hidden_size": get(f"{dit}.output_dim") == hidden,
        f"{vl}.num_attention_heads * attention_head_dim == vision width":
            count(f"{vl}.num_attention_heads") * count(f"{vl}.attention_head_dim") == vision.hidden_size,
        "model_cfg.max_num_embodiments == 1": get("model_cfg.max_num_embodiments") == 1,
        f"{dit}.norm_type == 'ada_norm'": get(f"{dit}.norm_type") == "ada_norm",
    }
    model_cfg = get("model_cfg")
    vision_hidden = model_cfg.get("vision_hidden_size") if isinstance(model_cfg, Mapping) else None
    if vision_hidden is not None:
        checks["model_cfg.vision_hidden_size == vision width"] = vision_hidden == vision.hidden_size
    if isinstance(ckpt_config.get("tokenizer_cfg"), Mapping):
        checks["tokenizer_cfg.game_mapping_cfg is null (no game-ID token)"] = (
            ckpt_config["tokenizer_cfg"].get("game_mapping_cfg") is None
        )
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        hint = ""
        if named_tower and any("vision width" in f for f in failed):
            hint = (f" (the vision tower the checkpoint names, {get('model_cfg.vision_encoder_name')!r}, does not fit it: "
                    "give the tower's configuration with --vision-config)")
        raise ConfigError(f"{source}: unsupported released configuration: {'; '.join(failed)}{hint}")

    modality = ckpt_config.get("modality_cfg") or {}
    if not isinstance(modality, Mapping):
        raise ConfigError(f"{source}: ckpt_config modality_cfg is not a record")
    name = ckpt_config.get("experiment_name")
    values = {
        "name": name if isinstance(name, str) and name else "nitrogen",
        "vision": vision.model_dump(),
        "hidden_size": hidden,
        "dit_layers": get("model_cfg.diffusion_model_cfg.num_layers"),
        "dit_heads": get("model_cfg.diffusion_model_cfg.num_attention_heads"),
        "vl_layers": get("model_cfg.vl_self_attention_cfg.num_layers"),
        "vl_heads": get("model_cfg.vl_self_attention_cfg.num_attention_heads"),
        "dropout": get("model_cfg.diffusion_model_cfg.dropout"),
        "norm_eps": get("model_cfg.diffusion_model_cfg.norm_eps"),
        "interleave_self_attention": get("model_cfg.diffusion_model_cfg.interleave_self_attention"),
        "add_pos_embed": get("model_cfg.add_pos_embed"),
        "max_seq_len": get("model_cfg.max_seq_len"),
        "action_horizon": get("model_cfg.action_horizon"),
        "action_dim": get("model_cfg.action_dim"),
        "num_frames": modality.get("frame_per_sample", 1),
        "action_shift": modality.get("action_shift", 3),
        "noise_beta_alpha": get("model_cfg.noise_beta_alpha"),
        "noise_beta_beta": get("model_cfg.noise_beta_beta"),
        "noise_s": get("model_cfg.noise_s"),
        "num_timestep_buckets": get("model_cfg.num_timestep_buckets"),
        "num_inference_timesteps": get("model_cfg.num_inference_timesteps"),
    }
    return PolicyConfig.from_dict(values, f"{source} (ckpt_config)")


def _json_number(value: Any) -> str:
    """`step` / `epoch` for the weights' metadata: a number or a short string as JSON; anything else as null."""
    plain = isinstance(value, (int, float, bool)) or isinstance(value, str) and len(value) <= 200
    return json.dumps(value if plain else None)


def convert_ng_checkpoint(
    ng_path: str | Path, out_dir: str | Path, vision: VisionConfig | str | Path | None = None
) -> Path:
    """`ng.pt` -> our checkpoint directory (`config.json`, `model.safetensors`), checked strictly on the way."""
    if vision is not None and not isinstance(vision, VisionConfig):
        vision = load_vision_config(vision)
    ckpt = read_ng_checkpoint(ng_path)
    check_dtypes({k: v.dtype for k, v in ckpt.model.items()}, str(ng_path))
    has_head = any(k.startswith("vision_encoder.head.") for k in ckpt.model)
    config = config_from_ng(ckpt.ckpt_config, vision, str(ng_path), use_head=has_head)
    found = {k: list(v.shape) for k, v in ckpt.model.items()}
    expected = expected_shapes(config)
    try:
        check_state_dict(expected, found, str(ng_path))
    except CheckpointError as exc:
        tower_fits = all(found.get(k) == shape for k, shape in expected.items() if k.startswith("vision_encoder."))
        if not tower_fits:
            raise CheckpointError(
                f"{exc}. The vision tower's configuration does not fit these weights: give the right one with "
                "--vision-config"
            ) from None
        raise
    metadata = {"source": Path(ng_path).name, "step": _json_number(ckpt.step), "epoch": _json_number(ckpt.epoch)}
    return save_checkpoint(config, ckpt.model, out_dir, metadata)
