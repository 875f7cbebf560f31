"""Import of the released NitroGen checkpoint (`ng.pt`) without executing anything from the file.

`ng.pt` is a torch zip checkpoint: `data.pkl` (a pickle) plus one raw file per tensor storage. The pickle is read
by `SafeUnpickler`, which resolves only a fixed list of globals (tensor rebuilding, `OrderedDict`, `set`) and
turns the released code's configuration classes (modules under `nitrogen.`) into inert records of their data;
it never imports a module named in the file. Any other global (`os.system`, `builtins.eval`, ...) is refused
before it can be called.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from azote.policy.checkpoint import CheckpointError, check_state_dict, expected_shapes, save_checkpoint
from azote.policy.config import KNOWN_VISION_TOWERS, ConfigError, PolicyConfig, VisionConfig


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle asks for something other than tensors, containers and configuration data."""


# Modules whose classes are read as plain data (the released code's pydantic configuration objects).
DATA_MODULES = ("nitrogen",)

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageKind:
    dtype: torch.dtype


class ForeignObject:
    """An instance of a class the file names but that is never imported: only its pickled data is kept."""

    qualified_name = "?"
    # NEWOBJ creates instances without calling __init__, so these defaults live on the class.
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by REDUCE with the pickled arguments
        self.args = args
        self.kwargs = dict(kwargs)

    def __setstate__(self, state: Any) -> None:  # called by BUILD
        self.state = state

    def fields(self) -> dict[str, Any]:
        """The object's data: a pydantic model's fields (plus extras), or a plain object's `__dict__`."""
        state = self.state
        if isinstance(state, tuple):  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if isinstance(state, dict):
            fields = dict(state["__dict__"]) if isinstance(state.get("__dict__"), dict) else {
                k: v for k, v in state.items() if not k.startswith("__")
            }
            extra = state.get("__pydantic_extra__")
            if isinstance(extra, dict):
                fields.update(extra)
            return fields
        if self.kwargs:
            return dict(self.kwargs)
        raise UnsafeCheckpointError(f"cannot read {self.qualified_name} as configuration data")

    def __repr__(self) -> str:
        return f"<{self.qualified_name} (not imported)>"


def _foreign_class(module: str, name: str) -> type[ForeignObject]:
    return type(name, (ForeignObject,), {"qualified_name": f"{module}.{name}", "__module__": __name__})


def _rebuild_tensor(
    storage: Tensor, offset: int, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None, metadata: Any = None
) -> Tensor:
    if not isinstance(storage, Tensor) or not isinstance(offset, int):
        raise UnsafeCheckpointError("malformed tensor record in the checkpoint")
    try:
        size_t, stride_t = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        view = torch.as_strided(storage, size_t, stride_t, offset)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"malformed tensor record in the checkpoint: {exc}") from None
    whole = offset == 0 and view.numel() == storage.numel() and view.is_contiguous()
    return view if whole else view.clone()  # a clone does not keep the whole storage alive nor share memory


def _rebuild_parameter(data: Tensor, requires_grad: Any = False, hooks: Any = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise UnsafeCheckpointError("malformed parameter record in the checkpoint")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    **{("torch", name): _StorageKind(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl` of a torch zip checkpoint, reading tensor storages from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, source: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._source = source
        self._storages: dict[str, Tensor] = {}
        self._foreign: dict[tuple[str, str], type[ForeignObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module.split(".")[0] in DATA_MODULES:
            return self._foreign.setdefault((module, name), _foreign_class(module, name))
        raise UnsafeCheckpointError(
            f"{self._source}: refusing to load {module}.{name}: the checkpoint's pickle asks for a global that is "
            "neither a tensor, a container nor a configuration record (nothing was executed)"
        )

    def persistent_load(self, pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageKind)):
            raise UnsafeCheckpointError(f"{self._source}: unsupported persistent record {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if not isinstance(key, str) or not re.fullmatch(r"\w+", key):
            raise UnsafeCheckpointError(f"{self._source}: bad storage key {key!r:.40}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._root}/data/{key}")
            except KeyError:
                raise CheckpointError(f"{self._source}: storage {key} is missing from the archive") from None
            itemsize = torch.empty(0, dtype=kind.dtype).element_size()
            if len(raw) != numel * itemsize:
                raise CheckpointError(f"{self._source}: storage {key} has {len(raw)} bytes, expected {numel * itemsize}")
            flat = torch.frombuffer(bytearray(raw), dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
            self._storages[key] = flat
        return self._storages[key]


def safe_load(path: str | Path) -> Any:
    """The object saved in a torch zip checkpoint, read with `SafeUnpickler` (no code from the file runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a torch zip checkpoint (expected the torch.save zip format)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one <root>/data.pkl in the archive, found {len(pickles)}")
        root = pickles[0].split("/")[0]
        if f"{root}/byteorder" in archive.namelist():
            order = archive.read(f"{root}/byteorder").decode().strip()
            if order != "little":
                raise CheckpointError(f"{path}: byte order {order!r} is not supported")
        unpickler = SafeUnpickler(archive.read(pickles[0]), archive, root, str(path))
        try:
            return unpickler.load()
        except CheckpointError:
            raise
        except Exception as exc:  # a malformed pickle fails in many ways; all of them mean "cannot read"
            raise CheckpointError(f"{path}: cannot read the checkpoint's pickle ({type(exc).__name__}: {exc})") from None


def to_plain(obj: Any) -> Any:
    """Configuration data as JSON-like values: foreign records become dicts of their fields, sets sorted lists."""
    if isinstance(obj, ForeignObject):
        if obj.state is None and not obj.kwargs and len(obj.args) == 1:
            return to_plain(obj.args[0])  # an enum member, pickled as Class(value)
        return {k: to_plain(v) for k, v in obj.fields().items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [to_plain(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, Tensor):
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
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model' is not a state dict of tensors")
    if "ckpt_config" not in obj:
        raise CheckpointError(f"{path}: no 'ckpt_config' (the model's configuration) in the checkpoint")
    cfg = to_plain(obj["ckpt_config"])
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: 'ckpt_config' is not a configuration record")
    return NGCheckpoint(dict(state), cfg, to_plain(obj.get("step")), to_plain(obj.get("epoch")))


def load_vision_config(spec: str | Path) -> VisionConfig:
    """A vision tower configuration from a JSON file or inline JSON: a transformers SigLIP (vision) config, or
    any object with a `vision` entry (an Azote `config.json`, the reference `tiny_config.json`)."""
    text = str(spec)
    source = "--vision-config"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: no such vision config file")
        text, source = path.read_text(), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
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

    named_tower = vision is None
    if vision is None:
        name = get("model_cfg.vision_encoder_name")
        if name not in KNOWN_VISION_TOWERS:
            raise ConfigError(
                f"{source}: ckpt_config names vision tower {name!r}, whose configuration Azote does not know; "
                "give it with --vision-config"
            )
        vision = KNOWN_VISION_TOWERS[name]
    vision = vision.model_copy(update={"use_head": use_head})

    hidden = get("model_cfg.hidden_size")
    checks = {
        "model_cfg.diffusion_model_cfg.num_attention_heads * attention_head_dim == hidden_size": get(
            "model_cfg.diffusion_model_cfg.num_attention_heads"
        ) * get("model_cfg.diffusion_model_cfg.attention_head_dim") == hidden,
        "model_cfg.diffusion_model_cfg.output_dim == hidden_size": get("model_cfg.diffusion_model_cfg.output_dim") == hidden,
        "model_cfg.vl_self_attention_cfg.num_attention_heads * attention_head_dim == vision width": get(
            "model_cfg.vl_self_attention_cfg.num_attention_heads"
        ) * get("model_cfg.vl_self_attention_cfg.attention_head_dim") == vision.hidden_size,
        "model_cfg.max_num_embodiments == 1": get("model_cfg.max_num_embodiments") == 1,
        "model_cfg.diffusion_model_cfg.norm_type == 'ada_norm'": get("model_cfg.diffusion_model_cfg.norm_type") == "ada_norm",
    }
    vision_hidden = ckpt_config.get("model_cfg", {}).get("vision_hidden_size")
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
    values = {
        "name": str(ckpt_config.get("experiment_name") or "nitrogen"),
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


def convert_ng_checkpoint(
    ng_path: str | Path, out_dir: str | Path, vision: VisionConfig | str | Path | None = None
) -> Path:
    """`ng.pt` -> our checkpoint directory (`config.json`, `model.safetensors`), checked strictly on the way."""
    if vision is not None and not isinstance(vision, VisionConfig):
        vision = load_vision_config(vision)
    ckpt = read_ng_checkpoint(ng_path)
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
    metadata = {"source": Path(ng_path).name, "step": json.dumps(ckpt.step), "epoch": json.dumps(ckpt.epoch)}
    return save_checkpoint(config, ckpt.model, out_dir, metadata)
