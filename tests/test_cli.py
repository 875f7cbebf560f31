"""The command-line interface: games, record, data validate, play, and one-line user errors."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from azote.cli.main import app
from azote.dataset import Dataset, probe

runner = CliRunner()


def test_games_lists_every_family_as_json():
    result = runner.invoke(app, ["games", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_id = {r["id"]: r for r in rows}
    assert by_id["atari/Breakout"]["resolution"] == [210, 160] and by_id["atari/Breakout"]["fps"] == 60.0
    assert by_id["doom/basic"]["fps"] == 35.0 and by_id["doom/basic"]["view"] == "3d"
    assert {"family", "resolution", "fps", "gym_id"} <= set(by_id["nes/SuperMarioBros-1-1"])
    assert {r["family"] for r in rows} >= {"atari", "doom", "nes", "procgen", "retro"}


def test_record_then_validate(tmp_path):
    out = tmp_path / "ds"
    result = runner.invoke(app, ["record", "--game", "procgen/coinrun", "--policy", "random", "--episodes", "2",
                                 "--max-steps", "40", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ds = Dataset.open(out, check_video=True)
    assert len({c.video_id for c in ds.chunks}) == 2 and not ds.problems
    first = json.loads((out / "record-procgen-coinrun-random.json").read_text())["episodes"]
    assert 0 < first[0]["steps"] <= 40
    # a rerun skips the recorded episodes but still reports what they scored
    again = runner.invoke(app, ["record", "--game", "procgen/coinrun", "--policy", "random", "--episodes", "2",
                                "--max-steps", "40", "--out", str(out)])
    assert "wrote 0 episodes (2 already there)" in again.output
    second = json.loads((out / "record-procgen-coinrun-random.json").read_text())["episodes"]
    assert [(r["steps"], r["return"]) for r in second] == [(r["steps"], r["return"]) for r in first]
    assert all(r["skipped"] for r in second)
    ok = runner.invoke(app, ["data", "validate", str(out)])
    assert ok.exit_code == 0 and "good chunks" in ok.output
    bad_meta = next(out.rglob("metadata.json"))
    bad_meta.write_text("{}")
    bad = runner.invoke(app, ["data", "validate", str(out)])
    assert bad.exit_code == 1 and str(bad_meta) in bad.output


def test_unknown_game_and_policy_fail_clearly(tmp_path):
    result = runner.invoke(app, ["record", "--game", "atari/Nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown game" in result.output
    result = runner.invoke(app, ["play", "--game", "atari/Pong", "--policy", "no/such/dir", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "policy" in result.output
    # the planning expert needs emulator snapshots: said in one line before anything is played
    result = runner.invoke(app, ["demos", "--game", "doom/basic", "--out", str(tmp_path / "demos")])
    assert result.exit_code == 2 and "no planning profile for the doom family" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "demos").exists()


def test_play_writes_clean_and_debug_videos(tmp_path):
    result = runner.invoke(app, ["play", "--game", "atari/Pong", "--steps", "50", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    clean, debug = probe(tmp_path / "clean.mp4"), probe(tmp_path / "debug.mp4")
    assert clean["frames"] == debug["frames"] == 50
    assert (clean["height"], clean["width"]) == (210, 160) and debug["width"] > clean["width"]
    lines = (tmp_path / "actions.jsonl").read_text().splitlines()
    assert len(lines) == 50 and "j_left" in json.loads(lines[0])


def test_preset_list_options_take_several_values(tmp_path):
    from azote.cli.main import spread_preset_lists

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b, video = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "v.mp4")
    assert spread_preset_lists(["label-eval", "--templates", a, b, "--json"]) == \
        ["label-eval", "--templates", a, "--templates", b, "--json"]
    assert spread_preset_lists(["label", "--templates", a, "x.json", video, "--out", "o"]) == \
        ["label", "--templates", a, "--templates", "x.json", video, "--out", "o"]


def test_user_errors_are_one_line_and_a_nonzero_exit(tmp_path):
    """A sample of what a newcomer gets wrong, run as the real command: one line on stderr, a non-zero exit,
    never a traceback, nothing written."""
    from azote.policy import build_model, get_preset, save_pretrained

    checkpoint = save_pretrained(build_model(get_preset("tiny").replace(vision={"num_hidden_layers": 1}, dit_layers=1)),
                                 tmp_path / "ckpt")
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "out"
    cases = [
        (["overlay", "video", "--game", "atari/Pong", "--skin", "xbox-03", "--out", str(out / "v.mp4")], "unknown skin"),
        (["predict", "--checkpoint", str(checkpoint), "--image", str(frame), "--device", "cuda"], "CUDA is not available"),
        (["bench", "--games", "atari/Pongg", "--out", str(out)], "did you mean atari/Pong"),
        (["label", str(tmp_path / "missing.mp4"), "--out", str(out)], "no such video"),
        (["serve", str(tmp_path / "missing")], "not a checkpoint directory"),
        (["data", "export", "--format", "parquet", str(tmp_path), str(out)], "unknown --format"),
        (["overlay", "render", "--preset", str(tmp_path / "missing"), "--state", "{}", "--out", str(out / "p.png")],
         "no such preset"),
    ]
    azote = str(Path(sys.executable).with_name("azote"))
    for argv, message in cases:
        done = subprocess.run([azote, *argv], capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and len(lines) == 1 and message in lines[0], (argv, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
    assert not out.exists()


def test_an_azote_error_out_of_any_command_is_one_line_and_exit_2(monkeypatch, tmp_path):
    """The root command is the one place that turns an AzoteError into `error: <message>` (line breaks collapsed),
    exit 2, no traceback; other exceptions are not its business."""
    import azote.envs
    from azote.errors import AzoteError

    def broken(family=None):
        raise AzoteError("a message\nover two lines")

    monkeypatch.setattr(azote.envs, "list_games", broken)
    result = runner.invoke(app, ["games"])
    assert result.exit_code == 2 and result.output.strip() == "error: a message over two lines", result.output
    assert isinstance(result.exception, SystemExit)

    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks: [{id: x, game: atari/Pong}]\n")  # a TaskError, which `bench` no longer catches itself
    result = runner.invoke(app, ["bench", "--suite", str(suite), "--list"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {suite}: task x: "), result.output

    def bug(family=None):
        raise KeyError("not an AzoteError")

    monkeypatch.setattr(azote.envs, "list_games", bug)
    assert isinstance(runner.invoke(app, ["games"]).exception, KeyError)
