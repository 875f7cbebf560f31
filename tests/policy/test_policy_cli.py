"""The policy verbs of the `azote` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from azote.cli.main import app

runner = CliRunner()


def test_model_info_preset():
    result = runner.invoke(app, ["model-info", "nitrogen-500m", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == 493_631_513 and len(info["tensors"]) == 595
    assert info["tensors"]["position_embedding.weight"] == [1024, 1024]
    assert info["config"]["name"] == "nitrogen-500m"
    text = runner.invoke(app, ["model-info", "tiny"])
    assert text.exit_code == 0 and "parameters" in text.stdout


def test_model_info_unknown():
    result = runner.invoke(app, ["model-info", "no-such-thing", "--json"])
    assert result.exit_code == 1 and "neither a preset" in result.output


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    result = runner.invoke(
        app,
        ["convert-checkpoint", str(reference("tiny_ng_objectconfig.pt")), str(out), "--vision-config", str(reference("tiny_config.json"))],
    )
    assert result.exit_code == 0, result.output
    assert "936,089 parameters" in result.stdout
    return out


def test_convert_then_model_info(converted):
    info = json.loads(runner.invoke(app, ["model-info", str(converted), "--json"]).stdout)
    assert info["parameters"] == 936_089 and len(info["tensors"]) == 315


def test_convert_without_the_tower_config_fails_clearly(reference, tmp_path):
    result = runner.invoke(app, ["convert-checkpoint", str(reference("tiny_ng_dictconfig.pt")), str(tmp_path / "o")])
    assert result.exit_code == 1 and "--vision-config" in result.output


def test_predict_json(converted, tmp_path):
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(image)
    args = ["predict", "--checkpoint", str(converted), "--image", str(image), "--seed", "3", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["actions"]) == 18 and out["seed"] == 3
    row = out["actions"][0]
    assert set(row) == {"back", "dpad_down", "dpad_left", "dpad_right", "dpad_up", "east", "guide", "left_shoulder",
                        "left_thumb", "left_trigger", "north", "right_shoulder", "right_thumb", "right_trigger", "south",
                        "start", "west", "j_left", "j_right"}
    assert all(-1 <= v <= 1 for r in out["actions"] for v in r["j_left"] + r["j_right"])
    assert json.loads(runner.invoke(app, args).stdout) == out  # seeded
    text = runner.invoke(app, args[:-1])
    assert text.exit_code == 0 and len(text.stdout.strip().splitlines()) == 18


def test_predict_errors(converted, tmp_path):
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    result = runner.invoke(app, ["predict", "--checkpoint", str(converted), "--image", str(not_image)])
    assert result.exit_code == 1 and "not an image" in result.output
    result = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "none"), "--image", str(not_image)])
    assert result.exit_code == 1
