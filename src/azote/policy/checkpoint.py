"""Checkpoint directories: `config.json` (a `PolicyConfig`) + `model.safetensors`, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from azote.policy.config import CONFIG_NAME, PRESETS, WEIGHTS_NAME, PolicyConfig
from azote.policy.model import NitroGenModel, build_model


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: a missing file, unreadable weights, or names/shapes that do not fit."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Writes through `write(tmp)` to a temporary name next to `path`, syncs it, then renames it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; a checkpoint is an ordinary file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(
    config: PolicyConfig, state_dict: Mapping[str, Tensor], out_dir: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Writes a checkpoint directory. A new directory appears whole (built under a temporary name, then renamed);
    in an existing one each file is replaced atomically, weights first."""
    out = Path(out_dir)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": "pt", "azote": config.format, **(metadata or {})}

    def write_files(target: Path) -> None:
        _write_atomic(target / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata=meta))
        _write_atomic(target / CONFIG_NAME, lambda p: p.write_text(config.to_json()))

    if out.is_dir():
        write_files(out)
        return out
    if out.exists():
        raise CheckpointError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_files(staging)
        os.chmod(staging, 0o777 & ~_umask())
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


def weight_shapes(path: str | Path) -> dict[str, list[int]]:
    """Tensor names and shapes of a safetensors file, read from its header only."""
    try:
        with safe_open(str(path), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def from_pretrained(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> NitroGenModel:
    """Loads a checkpoint directory strictly (every tensor present, nothing extra, every shape right); eval mode."""
    ckpt = Path(path)
    config = read_config(ckpt)
    weights = ckpt / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (a checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    model = build_model(config, device="meta")
    check_state_dict({k: list(v.shape) for k, v in model.state_dict().items()}, weight_shapes(weights), str(weights))
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
        weights = Path(key) / WEIGHTS_NAME
        shapes = weight_shapes(weights) if weights.is_file() else expected_shapes(config)
    params = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        params += n
    return {"parameters": params, "tensors": shapes, "config": json.loads(config.to_json())}

