"""Checkpoint directories: `config.json` (a `PolicyConfig`, its `action_shift` included) + `model.safetensors`, written
atomically, and `games.json`, the game vocabulary (`read_games` / `write_games` / `game_token`: its one reader and
writer)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from azote.files import umask, write_atomic
from azote.policy.config import CONFIG_NAME, MAX_GAMES, PRESETS, WEIGHTS_NAME, ConfigError, PolicyConfig, read_json
from azote.policy.model import NitroGenModel, build_model, check_device, check_memory
from azote.safeload import CheckpointError

# Weights are floating point; the names are safetensors' header names and torch's.
_FLOAT_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_HEADER_DTYPE_NAMES = {**_FLOAT_DTYPES, "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                       "BOOL": "bool"}
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_MAX_HEADER_BYTES = 16 << 20  # the released model's header is ~60 kB


def _save_weights(tensors: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """`save_file`, then its JSON header rewritten with sorted keys (same length, in place): safetensors writes
    the metadata map in hash order, which changes from process to process, so the same weights saved twice gave
    different bytes (and another checkpoint hash)."""
    save_file(dict(tensors), str(path), metadata=dict(metadata))
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        canonical = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(canonical) <= n:
            f.seek(8)
            f.write(canonical.ljust(n, b" "))


def save_checkpoint(
    config: PolicyConfig, state_dict: Mapping[str, Tensor], out_dir: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Writes a checkpoint directory. A new directory appears whole (built under a temporary name, then renamed);
    in an existing one each file is replaced atomically, weights first."""
    out = Path(out_dir)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": "pt", "azote": config.format, **(metadata or {})}

    def write_files(target: Path) -> None:
        write_atomic(target / WEIGHTS_NAME, lambda p: _save_weights(tensors, p, meta), sync=True)
        write_atomic(target / CONFIG_NAME, config.to_json(), sync=True)

    if out.is_dir():
        write_files(out)
        return out
    if out.exists():
        raise CheckpointError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_files(staging)
        os.chmod(staging, 0o777 & ~umask())
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def save_pretrained(model: NitroGenModel, out_dir: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    return save_checkpoint(model.config, model.state_dict(), out_dir, metadata)


def check_state_dict(
    expected: Mapping[str, Sequence[int]], found: Mapping[str, Sequence[int]], source: str
) -> None:
    """Raises `CheckpointError` listing missing, unexpected and mis-shaped tensors (strict loading)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f"{k}: checkpoint {list(found[k])}, model {list(expected[k])}"
        for k in expected
        if k in found and list(found[k]) != list(expected[k])
    ]
    problems = []
    for label, items in (("missing tensors", missing), ("unexpected tensors", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (and {len(items) - 8} more)" if len(items) > 8 else ""
            problems.append(f"{label}: {', '.join(items[:8])}{more}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the configuration: " + "; ".join(problems))


def check_dtypes(dtypes: Mapping[str, torch.dtype | str], source: str) -> None:
    """Raises `CheckpointError` naming the first tensors that are not floating point (weights never are)."""
    bad = []
    for name, dtype in dtypes.items():
        if isinstance(dtype, torch.dtype):
            if not dtype.is_floating_point:
                bad.append(f"{name} is {str(dtype).removeprefix('torch.')}")
        elif dtype not in _FLOAT_DTYPES:
            bad.append(f"{name} is {_HEADER_DTYPE_NAMES.get(dtype, dtype)}")
    if bad:
        more = f" (and {len(bad) - 4} more)" if len(bad) > 4 else ""
        raise CheckpointError(
            f"{source}: weights must be floating point (float32, float16, bfloat16): {', '.join(bad[:4])}{more}"
        )


def expected_shapes(config: PolicyConfig) -> dict[str, list[int]]:
    """Names and shapes of the state dict of a model with this config (built on the meta device: no memory)."""
    return {k: list(v.shape) for k, v in build_model(config, device="meta").state_dict().items()}


def _materialize_buffers(model: NitroGenModel, device: torch.device | str) -> None:
    """Non-persistent buffers are not in the weights file: rebuild them after loading onto a meta-built model."""
    for module_name, module in model.named_modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if name != "position_ids":
                raise CheckpointError(f"cannot rebuild buffer {module_name}.{name} after loading")
            module.register_buffer(
                name, torch.arange(buf.shape[-1], device=device).expand(buf.shape), persistent=False
            )


def read_config(path: str | Path) -> PolicyConfig:
    ckpt = Path(path)
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no such checkpoint directory")
    if not (ckpt / CONFIG_NAME).is_file():
        raise CheckpointError(f"{ckpt / CONFIG_NAME}: missing (a checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    return PolicyConfig.load(ckpt / CONFIG_NAME)


def weight_header(path: str | Path) -> dict[str, tuple[list[int], str]]:
    """Tensor names -> (shape, safetensors dtype such as "F32") of a safetensors file, from its header only."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        declared = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < declared <= min(_MAX_HEADER_BYTES, Path(path).stat().st_size - 8):
            raise CheckpointError(f"{path}: not a readable safetensors file (its header would be {declared} bytes)")
        with safe_open(str(path), "pt") as f:
            return {k: (list(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())})") from None


def weight_shapes(path: str | Path) -> dict[str, list[int]]:
    """Tensor names and shapes of a safetensors file, read from its header only."""
    return {k: shape for k, (shape, _) in weight_header(path).items()}


def check_checkpoint(path: str | Path) -> PolicyConfig:
    """The configuration of a checkpoint directory, validated (bounds included), with its weights' header checked
    against it (every name, shape and dtype) without reading any weights: what every loader checks first."""
    config = read_config(path)
    _check_weights(Path(path) / WEIGHTS_NAME, expected_shapes(config))
    return config


def _check_weights(weights: Path, expected: Mapping[str, Sequence[int]]) -> int:
    """Checks a weights file's header against the expected names and shapes, and its dtypes; returns its bytes."""
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (a checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    header = weight_header(weights)
    check_state_dict(expected, {k: shape for k, (shape, _) in header.items()}, str(weights))
    check_dtypes({k: dtype for k, (_, dtype) in header.items()}, str(weights))
    return sum(_DTYPE_BYTES[dtype] * _numel(shape) for shape, dtype in header.values())


def from_pretrained(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> NitroGenModel:
    """Loads a checkpoint directory strictly (every tensor present, nothing extra, every shape right); eval mode."""
    ckpt = Path(path)
    check_device(device)
    config = read_config(ckpt)
    weights = ckpt / WEIGHTS_NAME
    model = build_model(config, device="meta")
    nbytes = _check_weights(weights, {k: list(v.shape) for k, v in model.state_dict().items()})
    check_memory(nbytes, device, str(weights))  # before a byte of the weights is read
    state = load_file(str(weights), device=str(device))
    model.load_state_dict(state, strict=True, assign=True)
    _materialize_buffers(model, device)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def config_summary(path_or_preset: str | Path) -> dict[str, object]:
    """`parameters`, `tensors` (name -> shape) and `config` of a preset name or a checkpoint directory."""
    key = str(path_or_preset)
    if not Path(key).is_dir():
        if key not in PRESETS:
            raise CheckpointError(f"{key}: neither a preset ({', '.join(PRESETS)}) nor a checkpoint directory")
        config = PRESETS[key]
        shapes = expected_shapes(config)
    else:
        config = read_config(key)
        # weights present must fit the config; without weights, the config alone is described
        if (Path(key) / WEIGHTS_NAME).is_file():
            check_checkpoint(key)
        shapes = expected_shapes(config)
    params = sum(_numel(shape) for shape in shapes.values())
    return {"parameters": params, "tensors": shapes, "config": json.loads(config.to_json())}


GAMES_NAME = "games.json"


def read_games(path: str | Path) -> list[str]:
    """The game vocabulary of a checkpoint directory (`games.json`: game ids, token i + 1 for entry i), or []."""
    games_file = Path(path) / GAMES_NAME
    if not games_file.is_file():
        return []
    games = read_json(games_file, str(games_file))
    if not isinstance(games, list) or len(games) > MAX_GAMES or not all(isinstance(g, str) for g in games):
        raise ConfigError(f"{games_file}: expected a JSON list of at most {MAX_GAMES:,} game ids")
    return games


def game_token(games: Sequence[str], game: str) -> int:
    """The token a vocabulary gives a game: i + 1 for entry i, 0 ("no game", learned by game dropout) for a game
    it does not hold. What an agent and the server both ask for a game by name."""
    return list(games).index(game) + 1 if game in games else 0


def write_games(path: str | Path, games: Sequence[str]) -> Path:
    """Writes a checkpoint directory's game vocabulary (`games.json`, token i + 1 for entry i) atomically."""
    target = Path(path) / GAMES_NAME
    text = json.dumps(list(games))
    write_atomic(target, text, sync=True)
    return target


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n

