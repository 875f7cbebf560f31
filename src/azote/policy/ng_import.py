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

from azote.policy.checkpoint import (
    CheckpointError,
    check_dtypes,
    check_state_dict,
    expected_shapes,
    save_checkpoint,
    write_games,
)
from azote.policy.config import (
    KNOWN_VISION_TOWERS,
    MAX_FRAMES,
    MAX_GAMES,
    MAX_WIDTH,
    ConfigError,
    PolicyConfig,
    VisionConfig,
    read_json,
)
from azote.safeload import DATA_MODULES, ForeignObject, UnsafeCheckpointError, safe_load

__all__ = [
    "DATA_MODULES", "ForeignObject", "NGCheckpoint", "UnsafeCheckpointError", "config_from_ng", "convert_ng_checkpoint",
    "load_vision_config", "read_game_mapping", "read_ng_checkpoint", "safe_load", "to_plain",
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


_REQUIRED = object()

# Defaults of the released configuration classes (what a field left out of a `ckpt_config` dict means there).
RELEASED_DEFAULTS: dict[str, Any] = {
    "model_cfg.model_type": "nitrogen", "model_cfg.add_pos_embed": False, "model_cfg.hidden_size": 1024,
    "model_cfg.max_seq_len": 1024, "model_cfg.noise_beta_alpha": 1.5, "model_cfg.noise_beta_beta": 1.0,
    "model_cfg.noise_s": 0.999, "model_cfg.num_timestep_buckets": 1000, "model_cfg.max_num_embodiments": 1,
    "model_cfg.vision_encoder_name": "google/siglip-large-patch16-256", "model_cfg.vision_hidden_size": 768,
    "num_attention_heads": 8, "attention_head_dim": 64, "output_dim": 26, "num_layers": 12, "dropout": 0.1,
    "attention_bias": True, "activation_fn": "gelu-approximate", "norm_type": "ada_norm",
    "norm_elementwise_affine": False, "norm_eps": 1e-5, "max_num_positional_embeddings": 512,
    "positional_embeddings": "sinusoidal", "interleave_self_attention": False, "cross_attention_dim": None,
    "tokenizer_cfg.tokenizer_id": "nitrogen", "tokenizer_cfg.num_visual_tokens_per_frame": 256,
    "tokenizer_cfg.max_action_dim": 25, "tokenizer_cfg.max_sequence_length": 300, "tokenizer_cfg.action_horizon": 16,
    "tokenizer_cfg.game_mapping_cfg": None, "tokenizer_cfg.old_layout": False,
    "modality_cfg.frame_per_sample": 1, "modality_cfg.action_shift": 1, "modality_cfg.action_interleaving": False,
}

# Fields of the released configuration that change nothing Azote computes, with the reason (a record of what was
# checked): they are read by nothing at inference, or only by the released training loop's parameter freezing.
IGNORED_FIELDS: dict[str, str] = {
    "model_cfg.model_dtype": "read by nothing in the released code",
    "model_cfg.add_view_embed": "its embedding is commented out in the released code",
    "model_cfg.tune_*": "which parameters the released trainer freezes",
    "*.num_embeds_ada_norm": "read by nothing",
    "*.upcast_attention": "the attention processor the released blocks get (scaled_dot_product_attention) ignores it",
    "*.compute_dtype": "stored by the DiT, used by nothing",
    "*.final_dropout": "a dropout (off at inference)",
    "vl_self_attention_cfg.output_dim / interleave_self_attention": "read by nothing in the VL stack",
    "tokenizer_cfg.training": "set to false by the released loader",
    "modality_cfg.frame_spacing / action_per_chunk / token_set": "how training samples were cut",
    "modality_cfg.action_interleaving": "the released flow-matching inference never passes actions to the model",
}

ACTIVATIONS = ("gelu-approximate", "gelu")


def _get(cfg: Mapping[str, Any], dotted: str, source: str, default: Any = _REQUIRED) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            raise ConfigError(f"{source}: ckpt_config {dotted.rsplit('.', 1)[0]} is not a record")
        if part not in node:
            if default is _REQUIRED:
                raise ConfigError(f"{source}: ckpt_config lacks {dotted}")
            return default
        node = node[part]
    return node


def config_from_ng(
    ckpt_config: Mapping[str, Any], vision: VisionConfig | None = None, source: str = "ng.pt", use_head: bool = True,
    num_games: int | None = None,
) -> PolicyConfig:
    """Our `PolicyConfig` for a released `ckpt_config` (plain data). `vision` overrides the named tower;
    `num_games` is the size of the game vocabulary the weights hold (rows of `game_embedding.weight` less the
    "no game" row), needed when the configuration has a game mapping.

    Every field the released code reads is either carried over so that Azote computes what the released code
    computes, or refused with the field and its value named (`IGNORED_FIELDS` lists those that change nothing);
    a field left out means the released class's default (`RELEASED_DEFAULTS`)."""

    def get(key: str, default: Any = _REQUIRED) -> Any:
        if default is _REQUIRED:
            default = RELEASED_DEFAULTS.get(key, RELEASED_DEFAULTS.get(key.rsplit(".", 1)[-1], _REQUIRED))
        return _get(ckpt_config, key, source, default)

    refused: list[str] = []

    def refuse(key: str, value: Any, why: str) -> None:
        refused.append(f"{key} = {value!r:.80} ({why})")

    def count(key: str) -> int:
        # checked before any arithmetic: `[0] * 2**40` or `"x" * 2**31` from a hostile file would fill memory
        value = get(key)
        if type(value) is not int or not 0 < value <= MAX_WIDTH:
            raise ConfigError(f"{source}: ckpt_config {key} must be an integer in [1, {MAX_WIDTH}], got {value!r:.60}")
        return value

    def flag(key: str) -> bool:
        value = get(key)
        if type(value) is not bool:
            raise ConfigError(f"{source}: ckpt_config {key} must be true or false, got {value!r:.60}")
        return value

    named_tower = vision is None
    tower_name = get("model_cfg.vision_encoder_name")
    if not isinstance(tower_name, str) or "siglip" not in tower_name:
        raise ConfigError(
            f"{source}: ckpt_config model_cfg.vision_encoder_name = {tower_name!r:.100}: not a SigLIP tower (the "
            "released code loads only names containing 'siglip' as SigLIP)"
        )
    if vision is None:
        if tower_name not in KNOWN_VISION_TOWERS:
            raise ConfigError(
                f"{source}: ckpt_config names vision tower {tower_name!r:.100}, whose configuration Azote does not "
                "know; give it with --vision-config"
            )
        vision = KNOWN_VISION_TOWERS[tower_name]
    vision = vision.model_copy(update={"use_head": use_head})

    model_type = get("model_cfg.model_type")
    if model_type != "nitrogen":
        refuse("model_cfg.model_type", model_type, "Azote computes the flow-matching 'nitrogen' model only")
    hidden = count("model_cfg.hidden_size")
    dit, vl, tok, mod = ("model_cfg.diffusion_model_cfg", "model_cfg.vl_self_attention_cfg", "tokenizer_cfg",
                         "modality_cfg")
    dit_heads, vl_heads = count(f"{dit}.num_attention_heads"), count(f"{vl}.num_attention_heads")
    for key, heads, width, what in ((dit, dit_heads, hidden, "model_cfg.hidden_size"),
                                    (vl, vl_heads, vision.hidden_size, "the vision width")):
        head_dim = count(f"{key}.attention_head_dim")
        if heads * head_dim != width:
            refused.append(f"{key}.num_attention_heads = {heads} x attention_head_dim = {head_dim} "
                           f"({heads * head_dim}: must equal {what} {width})")
    if get(f"{dit}.output_dim") != hidden:
        refuse(f"{dit}.output_dim", get(f"{dit}.output_dim"), f"must equal model_cfg.hidden_size {hidden}")
    if get("model_cfg.max_num_embodiments") != 1:
        refuse("model_cfg.max_num_embodiments", get("model_cfg.max_num_embodiments"), "Azote has one embodiment")
    vision_hidden = get("model_cfg.vision_hidden_size", None)
    if vision_hidden is not None and vision_hidden != vision.hidden_size:
        refuse("model_cfg.vision_hidden_size", vision_hidden, f"the vision tower is {vision.hidden_size} wide")
    if get(f"{dit}.norm_type") != "ada_norm":
        refuse(f"{dit}.norm_type", get(f"{dit}.norm_type"), "Azote computes 'ada_norm' only")
    if flag(f"{dit}.norm_elementwise_affine"):
        refuse(f"{dit}.norm_elementwise_affine", True, "Azote computes the released non-affine DiT norms only")
    cross = get(f"{dit}.cross_attention_dim")
    if cross is None and vision.hidden_size != hidden:
        refuse(f"{dit}.cross_attention_dim", None, f"keys of width {hidden} cannot read VL tokens of width "
               f"{vision.hidden_size}: the released model cannot run")
    elif cross is not None and cross != vision.hidden_size:
        refuse(f"{dit}.cross_attention_dim", cross, f"the VL tokens are {vision.hidden_size} wide: the released "
               "model cannot run")
    activations: dict[str, str] = {}
    positions: dict[str, int] = {}
    for stack, key in (("dit", dit), ("vl", vl)):
        if not flag(f"{key}.attention_bias"):
            refuse(f"{key}.attention_bias", False, "Azote computes biased attention projections only")
        act = get(f"{key}.activation_fn")
        if act not in ACTIVATIONS:
            refuse(f"{key}.activation_fn", act, f"Azote computes {' and '.join(map(repr, ACTIVATIONS))}")
        activations[stack] = act
        # the released block adds a table for 'sinusoidal' and none for any other value
        positions[stack] = count(f"{key}.max_num_positional_embeddings") \
            if get(f"{key}.positional_embeddings") == "sinusoidal" else 0

    if get(tok) is None or get(mod) is None:
        raise ConfigError(f"{source}: ckpt_config lacks {tok if get(tok) is None else mod}")
    if get(f"{tok}.tokenizer_id") != "nitrogen":
        refuse(f"{tok}.tokenizer_id", get(f"{tok}.tokenizer_id"), "Azote knows the 'nitrogen' tokenizer only")
    frames = get(f"{mod}.frame_per_sample")
    if type(frames) is not int or not 0 < frames <= MAX_FRAMES:
        raise ConfigError(f"{source}: ckpt_config {mod}.frame_per_sample must be an integer in [1, {MAX_FRAMES}], "
                          f"got {frames!r:.60}")
    per_frame = get(f"{tok}.num_visual_tokens_per_frame")
    if per_frame != vision.num_patches:
        refuse(f"{tok}.num_visual_tokens_per_frame", per_frame, f"the vision tower gives {vision.num_patches} tokens "
               "per frame: the released model cannot run")
    if get(f"{tok}.max_action_dim") != get("model_cfg.action_dim"):
        refuse(f"{tok}.max_action_dim", get(f"{tok}.max_action_dim"),
               f"must equal model_cfg.action_dim {get('model_cfg.action_dim')!r:.20}")
    if get(f"{tok}.action_horizon") != get("model_cfg.action_horizon"):
        refuse(f"{tok}.action_horizon", get(f"{tok}.action_horizon"),
               f"must equal model_cfg.action_horizon {get('model_cfg.action_horizon')!r:.20}")
    game_mapping = get(f"{tok}.game_mapping_cfg")
    games = 0
    if game_mapping is None and num_games is not None:
        refuse(f"{tok}.game_mapping_cfg", None, "but the weights have a game embedding (game_embedding.weight)")
    if game_mapping is not None:
        if num_games is None:
            raise ConfigError(f"{source}: ckpt_config {tok}.game_mapping_cfg is set (a game-ID token) but the "
                              "weights have no game_embedding.weight")
        games = num_games
    max_len = get(f"{tok}.max_sequence_length")
    content = frames * vision.num_patches + (1 if games else 0)
    if type(max_len) is not int or max_len < content:
        refuse(f"{tok}.max_sequence_length", max_len, f"shorter than the {content} VL tokens of an observation: the "
               "released tokenizer refuses it")
        max_len = content
    if refused:
        hint = ""
        if named_tower and any("vision width" in r or "vision tower" in r for r in refused):
            hint = (f" (the vision tower the checkpoint names, {tower_name!r}, may not be the one it has: "
                    "give the tower's configuration with --vision-config)")
        raise ConfigError(f"{source}: unsupported released configuration: {'; '.join(refused)}{hint}")

    name = ckpt_config.get("experiment_name")
    dit_dropout, vl_dropout = get(f"{dit}.dropout"), get(f"{vl}.dropout")
    values = {
        "name": name if isinstance(name, str) and name else "nitrogen",
        "vision": vision.model_dump(),
        "hidden_size": hidden,
        "dit_layers": get(f"{dit}.num_layers"),
        "dit_heads": dit_heads,
        "vl_layers": get(f"{vl}.num_layers"),
        "vl_heads": vl_heads,
        "dropout": dit_dropout,
        "vl_dropout": None if vl_dropout == dit_dropout else vl_dropout,
        "norm_eps": get(f"{dit}.norm_eps"),
        "dit_activation": activations["dit"],
        "vl_activation": activations["vl"],
        "dit_sinusoidal_positions": positions["dit"],
        "vl_sinusoidal_positions": positions["vl"],
        "vl_sequence_length": max_len if max_len != content else None,
        "action_layout": "sticks_first" if flag(f"{tok}.old_layout") else "buttons_first",
        "interleave_self_attention": get(f"{dit}.interleave_self_attention"),
        "add_pos_embed": get("model_cfg.add_pos_embed"),
        "max_seq_len": get("model_cfg.max_seq_len"),
        "action_horizon": get("model_cfg.action_horizon"),
        "action_dim": get("model_cfg.action_dim"),
        "num_frames": frames,
        "action_shift": get(f"{mod}.action_shift"),
        "noise_beta_alpha": get("model_cfg.noise_beta_alpha"),
        "noise_beta_beta": get("model_cfg.noise_beta_beta"),
        "noise_s": get("model_cfg.noise_s"),
        "num_timestep_buckets": get("model_cfg.num_timestep_buckets"),
        "num_inference_timesteps": get("model_cfg.num_inference_timesteps"),
        "num_games": games,
    }
    return PolicyConfig.from_dict(values, f"{source} (ckpt_config)")


def read_game_mapping(path: str | Path, num_games: int) -> list[str]:
    """Game names for tokens 1..num_games from the `game_mapping.json` the released tokenizer writes (an object
    game -> token, `null` -> 0) or a JSON list of names (token i + 1 for entry i)."""
    data = read_json(path, str(path))
    if isinstance(data, dict):
        by_token: dict[int, str] = {}
        for name, token in data.items():
            if type(token) is not int:
                raise ConfigError(f"{path}: token of {name!r:.60} is not an integer")
            if token == 0:
                if name not in ("null", "None", ""):
                    raise ConfigError(f"{path}: token 0 is the unconditional game (null), not {name!r:.60}")
                continue
            by_token[token] = name
        if sorted(by_token) != list(range(1, len(by_token) + 1)):
            raise ConfigError(f"{path}: game tokens must be 1..N with 0 for null")
        names = [by_token[i] for i in range(1, len(by_token) + 1)]
    elif isinstance(data, list) and all(isinstance(g, str) for g in data):
        names = list(data)
    else:
        raise ConfigError(f"{path}: expected the released game_mapping.json (game -> token) or a list of names")
    if len(names) != num_games:
        raise ConfigError(f"{path}: {len(names)} games, but the checkpoint's game embedding holds {num_games}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: a game is named twice")
    return names


def _json_number(value: Any) -> str:
    """`step` / `epoch` for the weights' metadata: a number or a short string as JSON; anything else as null."""
    plain = isinstance(value, (int, float, bool)) or isinstance(value, str) and len(value) <= 200
    return json.dumps(value if plain else None)


def convert_ng_checkpoint(
    ng_path: str | Path, out_dir: str | Path, vision: VisionConfig | str | Path | None = None,
    game_mapping: str | Path | None = None,
) -> Path:
    """`ng.pt` -> our checkpoint directory (`config.json`, `model.safetensors`), checked strictly on the way.

    A checkpoint with a game-ID token keeps it: the vocabulary's size comes from its `game_embedding.weight`;
    the names are not in `ng.pt` (the released tokenizer reads them from its training parquet files and writes
    `game_mapping.json`), so they are taken from `game_mapping` when given and written as `games.json`."""
    if vision is not None and not isinstance(vision, VisionConfig):
        vision = load_vision_config(vision)
    ckpt = read_ng_checkpoint(ng_path)
    check_dtypes({k: v.dtype for k, v in ckpt.model.items()}, str(ng_path))
    has_head = any(k.startswith("vision_encoder.head.") for k in ckpt.model)
    games_weight = ckpt.model.get("game_embedding.weight")
    num_games = None
    if games_weight is not None:
        if games_weight.ndim != 2 or not 2 <= games_weight.shape[0] <= MAX_GAMES + 1:
            raise CheckpointError(f"{ng_path}: game_embedding.weight has shape {list(games_weight.shape)}: expected "
                                  f"[games + 1, width] with 1 to {MAX_GAMES:,} games")
        num_games = games_weight.shape[0] - 1
    config = config_from_ng(ckpt.ckpt_config, vision, str(ng_path), use_head=has_head, num_games=num_games)
    names = read_game_mapping(game_mapping, config.num_games) if game_mapping is not None else None
    if names is not None and not config.num_games:
        raise ConfigError(f"{game_mapping}: a game mapping was given but {ng_path} has no game-ID token")
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
    out = save_checkpoint(config, ckpt.model, out_dir, metadata)
    if names is not None:
        write_games(out, names)
    return out
