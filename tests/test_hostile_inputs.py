"""Hostile files for the commands that read datasets, videos, presets, parser weights, resume checkpoints,
suites and benchmark results (issue 16; the policy files are in tests/policy/test_hostile_files.py): small
files made here that could make a reader hang, fill memory, run code or fail with a traceback. Each command must
refuse within 5 s and 500 MB, naming the file and the reason on one line, with nothing executed.

Every case runs in a forked child under an address-space cap (tests/hostile.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hostile import assert_refused, assert_reported, cli, contained

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(sys.platform != "linux", reason="forks and reads /proc")]

DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module", autouse=True)
def _loaded_once():
    """What the commands import lazily, imported once here, so the children measure the refusal alone."""
    import torch.utils.tensorboard  # noqa: F401
    from transformers import SiglipVisionModel  # noqa: F401

    import azote.bench.runner  # noqa: F401
    import azote.labeling.detect  # noqa: F401
    import azote.labeling.label  # noqa: F401
    import azote.labeling.train  # noqa: F401
    import azote.training.trainer  # noqa: F401


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from test_training import synthetic_video

    root = tmp_path_factory.mktemp("good-data")
    synthetic_video(root, "good", 90, frames=20)  # one 1-second chunk
    return root


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def _rows_bomb(path: Path) -> None:
    """A parquet of the right columns with 20 million rows: a few hundred kB on disk, gigabytes once read."""
    n = 20_000_000
    zeros = pa.array(np.zeros(n, np.int32))
    from azote.dataset.format import BUTTONS, STICKS

    sticks = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(2 * n, np.float64)), 2)
    table = pa.Table.from_arrays([zeros] * len(BUTTONS) + [sticks] * len(STICKS), names=[*BUTTONS, *STICKS])
    pq.write_table(table, path, compression="zstd", row_group_size=n)


CHUNK_FAULTS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "metadata-is-a-fifo": ("metadata.json", _fifo, "not a regular file"),
    "metadata-is-dev-zero": ("metadata.json", _dev_zero, "not a regular file"),
    "metadata-of-8-mb": ("metadata.json", lambda p: p.write_text("{}" + " " * (8 << 20)), "bytes"),
    "parquet-is-a-fifo": ("actions_raw.parquet", _fifo, "not a regular file"),
    "parquet-is-dev-zero": ("actions_raw.parquet", _dev_zero, "not a regular file"),
    "parquet-of-20m-rows": ("actions_raw.parquet", _rows_bomb, "rows"),
}


def _hostile_chunk(dataset: Path, tmp: Path, case: str) -> tuple[Path, Path]:
    name, make, _ = CHUNK_FAULTS[case]
    root = tmp / "data"
    shutil.copytree(dataset, root, symlinks=True)
    chunk = sorted((root / "actions" / "SHARD_0000" / "good").iterdir())[0]
    make(chunk / name)
    return root, chunk / name


@pytest.mark.parametrize("case", sorted(CHUNK_FAULTS))
def test_data_validate_names_a_hostile_chunk_file(dataset, tmp_path, case):
    root, bad = _hostile_chunk(dataset, tmp_path, case)
    line = assert_reported(contained(cli(["data", "validate", str(root)])), "BAD", str(bad))
    assert CHUNK_FAULTS[case][2] in line, line


@pytest.mark.parametrize("case", ["metadata-is-a-fifo", "parquet-of-20m-rows"])
def test_train_refuses_a_dataset_of_hostile_chunk_files(dataset, tmp_path, case):
    from test_training import micro_config

    root, bad = _hostile_chunk(dataset, tmp_path, case)
    model = micro_config(tmp_path / "micro.json")
    args = ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--model", str(model), "--steps", "1",
            "--num-workers", "0", "--min-action-density", "0"]
    # the only chunk is skipped and named; nothing is left to train on
    outcome = contained(cli(args))
    assert_reported(outcome, "skipping", str(bad))
    assert_reported(outcome, "error:", "no usable chunks")


@pytest.mark.parametrize("case, text", [
    ("json-nested-100k-deep", DEEP_JSON),
    ("json-of-8-mb", "{}" + " " * (8 << 20)),
])
def test_train_refuses_a_hostile_model_config(dataset, tmp_path, case, text):
    model = tmp_path / "model.json"
    model.write_text(text)
    args = ["train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--model", str(model), "--steps", "1",
            "--num-workers", "0"]
    assert_refused(contained(cli(args)), str(model))


# --- label: videos, presets, parser weights ---------------------------------------------------------------------
def _truncated(path: Path) -> None:
    from azote.labeling.skingen import shipped_presets
    from test_labeling import _make_video

    _make_video(path, shipped_presets()["retro-snes-filled-dark"], frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


VIDEOS: dict[str, Callable[[Path], None]] = {
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes()),
    "mp4-box-then-garbage": lambda p: p.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(20_000)),
    "truncated": _truncated,
    "text-playlist": lambda p: p.write_text("#EXTM3U\n#EXTINF:1,\n/etc/hostname\n"),
}


@pytest.mark.parametrize("case", sorted(VIDEOS))
def test_label_names_a_hostile_video(tmp_path, case):
    video = tmp_path / f"{case}.mp4"
    VIDEOS[case](video)
    args = ["label", str(video), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert_reported(contained(cli(args)), "failed:", str(video))
    assert not list((tmp_path / "out").rglob("actions_raw.parquet"))


def _preset_dir(tmp: Path) -> Path:
    from azote.labeling.skingen import shipped_presets

    json_path = shipped_presets()["xbox-one-lineart"].save_input_overlay(tmp / "pad")
    return Path(json_path).parent if Path(json_path).is_file() else Path(json_path)


def _png_bomb(d: Path) -> None:
    from PIL import Image

    png = next(d.glob("*.png"))
    Image.new("1", (12_000, 12_000)).save(png)  # 144 M pixels: 576 MB once decoded as RGBA, ~20 kB on disk


PRESETS: dict[str, Callable[[Path], None]] = {
    "json-nested-100k-deep": lambda d: next(d.glob("*.json")).write_text(DEEP_JSON),
    "json-of-8-mb": lambda d: next(d.glob("*.json")).write_text("{}" + " " * (8 << 20)),
    "json-is-a-fifo": lambda d: _fifo(next(d.glob("*.json"))),
    "png-of-144-m-pixels": _png_bomb,
    "png-is-garbage": lambda d: next(d.glob("*.png")).write_bytes(os.urandom(5000)),
}


@pytest.mark.parametrize("case", sorted(PRESETS))
def test_label_refuses_a_hostile_template(tmp_path, case):
    preset = _preset_dir(tmp_path)
    PRESETS[case](preset)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    args = ["label", str(video), "--templates", str(preset), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert_refused(contained(cli(args)), str(preset))


def _weights(tmp: Path, change: Callable[[dict], object]) -> Path:
    from azote.labeling.parser import WEIGHTS_DIR

    d = tmp / "weights"
    d.mkdir()
    for name in ("parser.json", "parser.safetensors"):
        shutil.copyfile(WEIGHTS_DIR / name, d / name)
    cfg = json.loads((d / "parser.json").read_text())
    text = change(cfg)
    (d / "parser.json").write_text(text if isinstance(text, str) else json.dumps(cfg))
    return d


WEIGHTS: dict[str, tuple[Callable[[dict], object], str]] = {
    "json-nested-100k-deep": (lambda c: DEEP_JSON, "parser.json"),
    "json-of-8-mb": (lambda c: json.dumps(c) + " " * (8 << 20), "parser.json"),
    "1000-stages-of-1024": (lambda c: c.update(depths=[1024] * 1000, hidden_sizes=[1024] * 1000,
                                               num_attention_heads=[16] * 1000, sr_ratios=[1] * 1000),
                            "parser.json"),
    "safetensors-header-of-2-60": (lambda c: None, "parser.safetensors"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_label_refuses_hostile_parser_weights(tmp_path, case):
    change, name = WEIGHTS[case]
    d = _weights(tmp_path, change)
    if name == "parser.safetensors":
        (d / name).write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    args = ["label", str(video), "--weights", str(d), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert_refused(contained(cli(args)), str(d / name))


# --- label-train: a planted resume checkpoint ----------------------------------------------------------------------
class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["run", "sticks", "detector"])
def test_label_train_refuses_a_planted_resume_checkpoint_first(tmp_path, where):
    import torch

    marker = tmp_path / "ran"
    out = tmp_path / "work"
    (out / where).mkdir(parents=True)
    torch.save({"model": _Planted(marker), "step": 1}, out / where / "ckpt.pt")
    args = ["label-train", "--out", str(out), "--shards", "1", "--clips", "1", "--detector-shards", "1",
            "--detector-images", "1", "--minutes", "0.01", "--detector-minutes", "0.01", "--workers", "1"]
    # refused before any background is played or shard written (minutes of work otherwise)
    assert_refused(contained(cli(args)), str(out / where / "ckpt.pt"))
    assert not marker.exists() and not list(out.glob("*.npz"))


# --- bench: suites, results, policies -----------------------------------------------------------------------------
TASK = {"id": "pong-point", "game": "atari/Pong", "category": "combat", "description": "d", "time_limit": 0.2,
        "success": "ram[14] >= 1"}


def _suite(tmp: Path) -> Path:
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "tasks": [TASK]}))
    return path


def _result_line(suite: Path, **changes) -> str:
    from azote.bench import load_suite
    from azote.bench.runner import job_keys

    key = job_keys(load_suite(suite), "random", 1)[("pong-point", 0)]
    row = {"task": "pong-point", "episode": 0, "success": True, "reason": "success", "steps": 3,
           "game_seconds": 0.05, "wall_seconds": 0.01, "final": {}, "policy": "random", "key": key}
    return json.dumps({**row, **changes})


RESULTS: dict[str, Callable[[Path, Path], None]] = {
    "line-nested-100k-deep": lambda p, s: p.write_text(DEEP_JSON + "\n"),
    "success-is-a-string": lambda p, s: p.write_text(_result_line(s, success="yes") + "\n"),
    "steps-is-a-list": lambda p, s: p.write_text(_result_line(s, steps=[1, 2]) + "\n"),
    "a-fifo": lambda p, s: _fifo(p),
    "dev-zero": lambda p, s: _dev_zero(p),
    "garbage-line-before-a-result": lambda p, s: p.write_text("x" * 50 + "\n" + _result_line(s) + "\n"),
}


@pytest.mark.parametrize("case", sorted(RESULTS))
def test_bench_refuses_forged_results(tmp_path, case):
    suite = _suite(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    RESULTS[case](out / "results.jsonl", suite)
    args = ["bench", "--policy", "random", "--suite", str(suite), "--episodes", "1", "--out", str(out),
            "--workers", "1", "--no-videos"]
    assert_refused(contained(cli(args)), str(out / "results.jsonl"))
    assert not (out / "report.md").exists()


SUITES: dict[str, Callable[[Path], None]] = {
    "yaml-nested-100k-deep": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "yaml-alias-bomb": lambda p: p.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)) + "name: t\ntasks: [*j]\n"),
    "condition-of-100k-parens": lambda p: p.write_text(yaml.safe_dump(
        {"name": "t", "tasks": [{**TASK, "success": "(" * 100_000 + "x" + ")" * 100_000}]})),
    "suite-of-8-mb": lambda p: p.write_text("name: t\n" + "#" * (8 << 20) + "\ntasks: []\n"),
}


@pytest.mark.parametrize("case", sorted(SUITES))
def test_bench_refuses_a_hostile_suite(tmp_path, case):
    suite = tmp_path / "suite.yaml"
    SUITES[case](suite)
    args = ["bench", "--policy", "random", "--suite", str(suite), "--episodes", "1", "--out", str(tmp_path / "out"),
            "--workers", "1", "--no-videos"]
    assert_refused(contained(cli(args)), str(suite))


@pytest.mark.parametrize("case", ["config-nested-100k-deep", "safetensors-header-of-2-60"])
def test_bench_refuses_a_hostile_policy_checkpoint(tmp_path, case):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    if case == "config-nested-100k-deep":
        (ckpt / "config.json").write_text(DEEP_JSON)
        (ckpt / "model.safetensors").write_bytes(b"")
        bad = ckpt / "config.json"
    else:
        from azote.policy import get_preset

        (ckpt / "config.json").write_text(get_preset("tiny").to_json())
        (ckpt / "model.safetensors").write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
        bad = ckpt / "model.safetensors"
    args = ["bench", "--policy", str(ckpt), "--suite", str(_suite(tmp_path)), "--episodes", "1", "--out",
            str(tmp_path / "out"), "--workers", "1", "--no-videos"]
    assert_refused(contained(cli(args)), str(bad))
