"""Hostile files for every command that reads a policy file (issue 16 items 1, 2 and 8): tiny files written here
byte by byte that once made a loader hang, fill memory or fail with a traceback. Each must be refused within 5 s
and 500 MB, in one line naming the file and the reason, with a non-zero exit and nothing executed.

Each hostile load runs in a forked child under an address-space cap, watched by the test: a regression that hangs
or allocates is killed and reported, it never takes the test run down with it.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from azote.cli.main import app
from azote.policy import (
    CheckpointError,
    ConfigError,
    PolicyConfig,
    VisionConfig,
    build_model,
    from_pretrained,
    save_pretrained,
)
from azote.policy.config import MAX_PARAMETERS, estimate_parameters
from azote.safeload import safe_load
from hostile import assert_raises_in_bounds, assert_refused, cli, contained

MARKER_ENV = "AZOTE_HOSTILE_MARKER"


@pytest.fixture(scope="module", autouse=True)
def _loaded_once():
    """What the commands import lazily, imported once here, so the children measure the refusal alone."""
    from transformers import SiglipVisionModel  # noqa: F401

    import azote.play.player  # noqa: F401
    import azote.serving.server  # noqa: F401
    import azote.training  # noqa: F401


# --- torch zip files, written byte by byte ---------------------------------------------------------------------
def _zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip archive from (name, bytes as stored, compression method, crc32, uncompressed size) entries, written
    by hand so that a member can declare what it likes."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        raw = name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc, len(data), size,
                               len(raw), 0, 0, 0, 0, 0, len(out)) + raw
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, len(data), size, len(raw), 0) + raw + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))
    return path


def torch_zip(path: Path, pkl: bytes, storages: dict[str, bytes] | None = None,
              extra: list[tuple[str, bytes, int, int, int]] | None = None) -> Path:
    members = [("archive/data.pkl", pkl, 0, zlib.crc32(pkl), len(pkl))]
    members += [(f"archive/{k}", v, 0, zlib.crc32(v), len(v)) for k, v in (("byteorder", b"little"), ("version", b"3\n"))]
    members += [(f"archive/data/{k}", v, 0, zlib.crc32(v), len(v)) for k, v in (storages or {}).items()]
    return _zip(path, members + (extra or []))


# pickle opcodes (protocol 2), enough to write any of the files below
def u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def i32(n: int) -> bytes:
    return b"J" + n.to_bytes(4, "little", signed=True)


def put(n: int) -> bytes:
    return b"r" + n.to_bytes(4, "little")


def get(n: int) -> bytes:
    return b"j" + n.to_bytes(4, "little")


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ng_pickle(config: bytes, model: bytes = b"}") -> bytes:
    """`{"model": <model>, "ckpt_config": <config>}`, the released layout."""
    return b"\x80\x02}" + u("model") + model + b"s" + u("ckpt_config") + config + b"s."


def tensor_record(size: tuple[int, ...], stride: tuple[int, ...], numel: int, key: str = "0", offset: int = 0) -> bytes:
    """`_rebuild_tensor_v2(storage(key, numel floats), offset, size, stride, False, OrderedDict())` as torch writes it."""
    storage = b"(" + u("storage") + glob("torch", "FloatStorage") + u(key) + u("cpu") + i32(numel) + b"tQ"
    shape = b"(" + b"".join(i32(s) for s in size) + b"t"
    strides = b"(" + b"".join(i32(s) for s in stride) + b"t"
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + i32(offset) + shape + strides + b"\x89"
            + glob("collections", "OrderedDict") + b")R" + b"tR")


def billion_laughs(levels: int = 40) -> bytes:
    """l0 = []; l(i) = [l(i-1), l(i-1)]: a few hundred bytes that expand to 2^levels lists."""
    body = b"]" + put(0) + b"0"
    for i in range(1, levels + 1):
        body += b"(" + get(i - 1) + get(i - 1) + b"l" + put(i) + b"0"
    return body + get(levels)


def laughing_key(levels: int = 40) -> bytes:
    """A dict keyed by t(levels), t(i) = (t(i-1), t(i-1)): hashing it walks 2^levels tuples."""
    body = b")" + put(0) + b"0"
    for i in range(1, levels + 1):
        body += get(i - 1) + get(i - 1) + b"\x86" + put(i) + b"0"
    return body + b"}" + get(levels) + b"Ns"


HOSTILE_NG = {
    # name: (data.pkl, storages, extra members, words the refusal must contain)
    "billion-laughs-lists": (ng_pickle(billion_laughs()), {}, [], ["expands to more than"]),
    "billion-laughs-tuple-key": (ng_pickle(laughing_key()), {}, [], ["hashes a key"]),
    "self-referencing-list": (ng_pickle(b"]" + put(0) + get(0) + b"a"), {}, [], ["contains itself"]),
    "nested-100k-deep": (ng_pickle(b"]" * 100_000 + b"a" * 99_999), {}, [], ["deeper than"]),
    "stride-0-view": (ng_pickle(b"}" + u("w") + tensor_record((1 << 28,), (0,), 1) + b"s"),
                      {"0": bytes(4)}, [], ["stride-0 or overlapping"]),
    "overlapping-view": (ng_pickle(b"}" + u("w") + tensor_record((1 << 14, 1 << 14), (1, 1), 1 << 15) + b"s"),
                         {"0": bytes(4 << 15)}, [], ["stride-0 or overlapping"]),
    "storage-larger-than-member": (ng_pickle(b"}" + u("w") + tensor_record((1 << 28,), (1,), 1 << 28) + b"s"),
                                   {"0": bytes(16)}, [], ["storage 0 declares 16 bytes"]),
    "config-multiplies-a-string": (ng_pickle(
        b"}" + u("model_cfg") + b"}" + u("hidden_size") + i32(64) + b"s" + u("vision_encoder_name")
        + u("google/siglip2-large-patch16-256") + b"s" + u("diffusion_model_cfg") + b"}" + u("num_attention_heads")
        + u("x") + b"s" + u("attention_head_dim") + i32(2**31 - 1) + b"sss"), {}, [], ["num_attention_heads", "integer"]),
    "forbidden-global": (b"\x80\x02" + glob("posix", "system") + u("touch $" + MARKER_ENV) + b"\x85R.", {}, [],
                         ["refusing to load posix.system", "nothing was executed"]),
}


def _zip_bomb_member(gib: int = 1) -> tuple[str, bytes, int, int, int]:
    """`archive/data/0`: 1 MB of deflate that inflates to `gib` GiB of zeros (blocks repeated after a full flush,
    so no gigabyte is ever compressed here)."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    n = gib << 10
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    return "archive/data/0", block * n + c.flush(), zipfile.ZIP_DEFLATED, crc, n << 20


@pytest.mark.parametrize("case", sorted(HOSTILE_NG) + ["zip-bomb"])
def test_convert_checkpoint_refuses_hostile_ng_pt(tmp_path, monkeypatch, case):
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    if case == "zip-bomb":
        numel = (1 << 30) // 4
        pkl, storages, extra, words = (ng_pickle(b"}" + u("w") + tensor_record((numel,), (1,), numel) + b"s"), {},
                                       [_zip_bomb_member()], ["zip bomb"])
    else:
        pkl, storages, extra, words = HOSTILE_NG[case]
    ng = torch_zip(tmp_path / "ng.pt", pkl, storages, extra)
    assert ng.stat().st_size < 1_100_000
    line = assert_refused(contained(cli(["convert-checkpoint", str(ng), str(tmp_path / "out")])), str(ng), *words)
    assert not (tmp_path / "out").exists() and not marker.exists(), line


def test_int64_weights_in_ng_pt_are_refused_naming_the_tensor(reference, tmp_path):
    weights = load_file(str(reference("tiny_weights.safetensors")))
    name = "action_decoder.layer2.b"
    weights[name] = weights[name].long()
    ng = tmp_path / "ng.pt"
    ckpt_config = json.loads(reference("tiny_ckpt_config.json").read_text())
    torch.save({"model": weights, "step": 1, "epoch": 0, "ckpt_config": ckpt_config}, ng)
    args = ["convert-checkpoint", str(ng), str(tmp_path / "out"), "--vision-config", str(reference("tiny_config.json"))]
    assert_refused(contained(cli(args)), str(ng), f"{name} is int64")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("vision, words", [
    ('{"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "image_size": 64, "patch_size": 16, '
     '"num_hidden_layers": 10000000}', ["num_hidden_layers", "less than or equal to"]),
    ("{" + '"a": [' * 100_000, ["--vision-config", "JSON"]),
])
def test_convert_checkpoint_refuses_a_hostile_vision_config(reference, tmp_path, vision, words):
    args = ["convert-checkpoint", str(reference("tiny_ng_dictconfig.pt")), str(tmp_path / "out"), "--vision-config", vision]
    assert_refused(contained(cli(args)), *words)
    assert not (tmp_path / "out").exists()


def test_a_shared_tensor_and_state_dict_metadata_still_load(tmp_path):
    """Shared references are data, not laughs: the same tensor twice, and a module state dict's `_metadata`."""
    layer = torch.nn.LayerNorm(4)
    shared = torch.arange(6.0)
    path = tmp_path / "x.pt"
    torch.save({"a": shared, "b": shared, "view": shared[2:5], "state": layer.state_dict()}, path)
    obj = safe_load(path)
    assert torch.equal(obj["a"], shared) and obj["a"] is obj["b"] and torch.equal(obj["view"], shared[2:5])
    assert obj["state"]._metadata == layer.state_dict()._metadata


def test_the_trainers_resume_state_reads_as_torch_reads_it(tmp_path):
    """`train --resume` reads its trainer.pt with `safe_load`: the optimizer, schedule, EMA and RNG states come
    back equal to what torch's own loader gives."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {"step": 7, "model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
             "ema": {"decay": 0.999, "shadow": {"0.weight": torch.randn(4, 3)}}, "rng": [torch.get_rng_state()]}
    path = tmp_path / "trainer.pt"
    torch.save(state, path)
    ours, theirs = safe_load(path), torch.load(path, weights_only=True)

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return type(a) is type(b) and a == b

    assert same(ours, theirs)
    opt.load_state_dict(ours["optimizer"])
    torch.set_rng_state(ours["rng"][0])


def test_safe_load_limits_are_checked_before_allocation(tmp_path):
    """The library call, not only the CLI: a 593-byte stride-0 record is refused inside the memory bound."""
    path = torch_zip(tmp_path / "s.pt", ng_pickle(b"}" + u("w") + tensor_record((1 << 28,), (0,), 1) + b"s"),
                     {"0": bytes(4)})
    assert path.stat().st_size < 1000
    assert_raises_in_bounds(contained(lambda: safe_load(path)), "CheckpointError", str(path), "stride-0")


def test_a_pickle_that_is_not_a_zip_executes_nothing(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint"):
        safe_load(path)


# --- checkpoint directories: config.json and weights ------------------------------------------------------------
MICRO = PolicyConfig(
    name="micro",
    vision=VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        image_size=32, patch_size=16, use_head=False),
    hidden_size=32, dit_layers=2, dit_heads=2, vl_layers=1, vl_heads=2, max_seq_len=32,
)


@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_pretrained(build_model(MICRO), tmp_path_factory.mktemp("micro") / "ckpt")


def _with_config(src: Path, dst: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "config.json").read_text())
    text = change(data)
    (dst / "config.json").write_text(text if isinstance(text, str) else json.dumps(data))
    return dst


HOSTILE_CONFIGS: dict[str, tuple[Callable[[dict[str, Any]], Any], list[str]]] = {
    "dit-layers-1e7": (lambda d: d.update(dit_layers=10**7), ["dit_layers", "less than or equal to 128"]),
    "vision-layers-1e7": (lambda d: d["vision"].update(num_hidden_layers=10**7), ["vision.num_hidden_layers"]),
    "inference-steps-1e9": (lambda d: d.update(num_inference_timesteps=10**9), ["num_inference_timesteps"]),
    "parameters-past-the-limit": (lambda d: d.update(hidden_size=16384, dit_heads=128, dit_layers=128),
                                  ["parameters", "more than"]),
    "image-tokens-past-the-limit": (lambda d: d["vision"].update(image_size=2048, patch_size=8),
                                    ["image tokens"]),
    "json-nested-100k-deep": (lambda d: "[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    "config-of-2-mb": (lambda d: json.dumps(d) + " " * (2 << 20), ["bytes"]),
}

COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "model-info": lambda ckpt, tmp: ["model-info", str(ckpt)],
    "predict": lambda ckpt, tmp: ["predict", "--checkpoint", str(ckpt), "--image", str(tmp / "frame.png")],
    "serve": lambda ckpt, tmp: ["serve", str(ckpt), "--port", "0"],
    "play": lambda ckpt, tmp: ["play", "--game", "nes/SuperMarioBros-1-1", "--policy", str(ckpt), "--steps", "1",
                               "--out", str(tmp / "play")],
    "finetune": lambda ckpt, tmp: ["finetune", "--from", str(ckpt), "--data", str(tmp / "data"), "--out",
                                   str(tmp / "run"), "--steps", "1"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_every_loader_refuses_a_hostile_config(micro_checkpoint, tmp_path, case, command):
    change, words = HOSTILE_CONFIGS[case]
    ckpt = _with_config(micro_checkpoint, tmp_path / "ckpt", change)
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(tmp_path / "frame.png")
    (tmp_path / "data").mkdir()
    assert_refused(contained(cli(COMMANDS[command](ckpt, tmp_path))), str(ckpt / "config.json"), *words)


def test_from_pretrained_refuses_a_config_of_1e7_layers(micro_checkpoint, tmp_path):

    ckpt = _with_config(micro_checkpoint, tmp_path / "ckpt", lambda d: d.update(dit_layers=10**7))
    outcome = contained(lambda: from_pretrained(ckpt))
    assert_raises_in_bounds(outcome, "ConfigError", str(ckpt / "config.json"), "dit_layers")


def test_load_vision_tower_checks_the_towers_config_before_building_it(tmp_path):
    tower = tmp_path / "siglip"
    tower.mkdir()
    (tower / "config.json").write_text(json.dumps({"model_type": "siglip_vision_model", "num_hidden_layers": 10**7}))
    model = build_model(MICRO)
    outcome = contained(lambda: model.load_vision_tower(tower))
    assert_raises_in_bounds(outcome, "ValueError", str(tower), "num_hidden_layers 10000000")


def _int64_weights(src: Path, dst: Path, name: str) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    weights[name] = weights[name].long()
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_int64_weights_are_named_in_one_line(micro_checkpoint, tmp_path, command):
    name = "action_decoder.layer1.W"
    ckpt = _int64_weights(micro_checkpoint, tmp_path / "ckpt", name)
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(tmp_path / "frame.png")
    (tmp_path / "data").mkdir()
    assert_refused(contained(cli(COMMANDS[command](ckpt, tmp_path))), str(ckpt / "model.safetensors"),
                   f"{name} is int64")


def test_model_info_fails_on_weights_that_do_not_fit_the_config(micro_checkpoint, tmp_path):
    ckpt = _with_config(micro_checkpoint, tmp_path / "ckpt", lambda d: d.update(hidden_size=64, dit_heads=4))
    line = assert_refused(contained(cli(["model-info", str(ckpt), "--json"])), "weights do not fit")
    assert "model.safetensors" in line
    ok = CliRunner().invoke(app, ["model-info", str(micro_checkpoint), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["parameters"] == estimate_parameters(MICRO)


def test_predict_refuses_a_billion_steps(micro_checkpoint, tmp_path):
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(tmp_path / "frame.png")
    args = ["predict", "--checkpoint", str(micro_checkpoint), "--image", str(tmp_path / "frame.png"),
            "--steps", str(10**9)]
    assert_refused(contained(cli(args)), "num_steps", "1000")


def test_serve_refuses_a_hostile_games_json(micro_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(micro_checkpoint, ckpt)
    (ckpt / "games.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(contained(cli(["serve", str(ckpt), "--port", "0"])), str(ckpt / "games.json"), "nested too deeply")


def test_the_parameter_estimate_is_the_built_count():
    """The bound is checked by arithmetic before anything is built, so the arithmetic must be the model."""
    from azote.policy import PRESETS

    variants = [*PRESETS.values(), MICRO.replace(dit_layers=3, interleave_self_attention=False, num_games=5),
                MICRO.replace(add_pos_embed=False, vl_layers=0, num_frames=2, vision={"use_head": True})]
    for config in variants:
        assert estimate_parameters(config) == build_model(config, device="meta").num_parameters(), config.name
    assert estimate_parameters(PRESETS["nitrogen-500m"]) == 493_631_513 < MAX_PARAMETERS
    with pytest.raises(ConfigError, match="parameters"):
        MICRO.replace(hidden_size=16384, dit_heads=128, dit_layers=128)


if sys.platform != "linux":  # the containment reads /proc and forks
    pytestmark = pytest.mark.skip("Linux only")


# --- the trainer's resume state ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coinrun_data(tmp_path_factory) -> Path:
    """One procgen episode of 60 steps in 2-second chunks: enough for `train` to open its data."""
    import azote.envs as envs
    from azote.agents import RandomAgent
    from azote.dataset import EpisodeWriter
    from azote.play.loop import play_episode

    root = tmp_path_factory.mktemp("coinrun")
    env = envs.make("procgen/coinrun")
    with EpisodeWriter(root, "procgen-coinrun", "procgen/coinrun", env.game.fps, chunk_seconds=2.0) as w:
        for step in play_episode(env, RandomAgent(seed=1, press_p=0.3), 60, seed=1):
            w.add(step.frame, step.action)
    env.close()
    return root


@pytest.mark.parametrize("planted", ["forbidden-global", "billion-laughs-lists"])
def test_train_resume_refuses_a_planted_trainer_state(coinrun_data, tmp_path, monkeypatch, planted):
    """`train --resume` reads OUT/checkpoints/step_*/trainer.pt with the same safe reader as ng.pt."""
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    state = tmp_path / "run" / "checkpoints" / "step_0000001" / "trainer.pt"
    state.parent.mkdir(parents=True)
    torch_zip(state, HOSTILE_NG[planted][0])
    model = tmp_path / "micro.json"
    model.write_text(MICRO.replace(action_horizon=6).to_json())
    args = ["train", "--data", str(coinrun_data), "--out", str(tmp_path / "run"), "--model", str(model), "--steps", "2",
            "--batch-size", "2", "--num-workers", "0", "--min-action-density", "0", "--device", "cpu", "--resume"]
    assert_refused(contained(cli(args)), str(state), *HOSTILE_NG[planted][3])
    assert not marker.exists()
