"""Labelling: skins, round trip through the shipped parser, locate, video -> chunks, resume, corrupt videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from azote.gamepad import BUTTONS, ActionChunk, Gamepad
from azote.labeling import skins as sk
from azote.labeling.compose import Placement, composite
from azote.labeling.parser import crop_overlay, load_parser, parse_pairs, placement_affine

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def backgrounds(n: int, h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """Moving coloured blocks over a gradient: enough texture to be a game-like background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], -1).astype(np.uint8)
    blocks = [(rng.integers(0, w), rng.integers(0, h), rng.integers(10, 40), rng.integers(0, 255, 3),
               rng.integers(-3, 4)) for _ in range(12)]
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        f = base.copy()
        for x, y, s, c, v in blocks:
            x0 = int(x + v * t) % w
            f[y:y + s, x0:x0 + s] = c
        out[t] = f
    return out


def states() -> list[Gamepad]:
    return [Gamepad.neutral(), Gamepad.make(["south", "dpad_left", "right_trigger"], j_left=(1, 0), j_right=(0, -1)),
            Gamepad.make(["north", "start", "left_shoulder", "left_thumb"], j_left=(-0.5, 0.5), j_right=(0.7, 0.7)),
            Gamepad.make(["east", "west", "dpad_up", "back", "right_shoulder"], j_left=(0, -1), j_right=(-1, 0.3))]


def test_skin_library_has_sixty_variants_and_held_out_skins_of_every_family():
    from dataclasses import astuple

    assert len({astuple(s)[1:] for s in sk.SKINS.values()}) >= 60
    assert {sk.SKINS[n].family for n in sk.HELDOUT_SKINS} == set(sk.FAMILIES)
    assert not set(sk.HELDOUT_SKINS) & set(sk.TRAIN_SKINS)
    img = sk.render(sk.get_skin("xbox-00"), Gamepad.make(["south"]), 1.5)
    assert img.shape == (180, 288, 4) and img[..., 3].max() == 255 and img[..., 3].min() == 0


def test_overlay_render_cli_draws_a_png(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from azote.cli.main import app

    out = tmp_path / "pad.png"
    r = CliRunner().invoke(app, ["overlay", "render", "--skin", "switch-02", "--state",
                                 json.dumps({"pressed": ["south"], "j_left": [0.5, -1]}), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert Image.open(out).mode == "RGBA"
    bad = CliRunner().invoke(app, ["overlay", "render", "--skin", "nope", "--state", "{}", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown skin" in bad.output


# Skins of the parser's training set, one per family, covering the pressed styles (offset, glow, fill), the stick
# styles (knob, dot, line) and an outline body; accuracy on held-out skins and games is what `azote label-eval`
# measures over thousands of frames.
@pytest.mark.parametrize("skin", ["xbox-04", "playstation-09", "switch-42", "retro-51"])
def test_rendered_states_parse_back_with_the_shipped_weights(skin):
    assert skin in sk.TRAIN_SKINS
    model = load_parser()
    bg = backgrounds(1, 480, 640, seed=3)[0]
    s = sk.get_skin(skin)
    crops = []
    for pad in states():
        place = Placement(101, 77, 1.3, 0.9)
        frame = composite(bg, sk.render(s, pad, place.scale), place)
        crops.append(crop_overlay(frame, placement_affine(place.x, place.y, place.scale)))
    crops = np.stack(crops)
    out = parse_pairs(model, crops, crops, s.family)
    for i, pad in enumerate(states()):
        pressed = out["buttons"][i] > 0.5
        wrong = [BUTTONS[j] for j in np.flatnonzero(pressed != pad.buttons.astype(bool))]
        assert len(wrong) <= 1, f"{skin} state {i}: wrong buttons {wrong}"
        err = np.abs(out["sticks"][i] - np.stack([pad.j_left, pad.j_right])).max()
        assert err < 0.3, f"{skin} state {i}: stick error {err:.2f} ({out['sticks'][i].tolist()})"


def test_locate_finds_a_composited_overlay():
    from azote.labeling.locate import locate

    skin = sk.get_skin("playstation-45")  # held out: found through its family's templates
    place = Placement(230, 150, 1.1, 0.85)
    frames = [composite(bg, sk.render(skin, states()[k % 4], place.scale), place)
              for k, bg in enumerate(backgrounds(4, 480, 640, seed=5))]
    loc = locate(frames, skins=sk.TRAIN_SKINS)
    assert loc.family == "playstation" and loc.controller_type == "ps4"
    assert np.abs(np.array(loc.bbox()) - np.array(place.bbox())).max() < 2.0, (loc.bbox(), place.bbox())


def _make_video(path: Path, frames: int = 96, seed: int = 0, skin: str = "xbox-20") -> ActionChunk:
    from azote.labeling.pipeline_hooks import render_overlay_video
    from azote.labeling.synth import random_actions

    actions = random_actions(np.random.default_rng(seed), frames)
    render_overlay_video(backgrounds(frames, seed=seed), actions, path, skin, fps=30,
                         placement=Placement(20, 24 + seed, 1.4, 0.9), crf=20)
    return actions


def test_video_to_chunks_with_the_dataset_schema(tmp_path):
    from azote.dataset import Dataset
    from azote.labeling.evaluate import score_actions
    from azote.labeling.label import LabelConfig, label_videos, load_labels

    truth = _make_video(tmp_path / "clip.mp4")
    cfg = LabelConfig(chunk_seconds=1.0)
    cfg.post.min_density = 0.0
    summary = label_videos([tmp_path / "clip.mp4"], tmp_path / "out", game="test/blocks", config=cfg)
    assert summary["labelled"] == 1 and not summary["failed"] and summary["chunks_written"] == 4
    ds = Dataset.open(tmp_path / "out", check_video=True)
    assert not ds.problems and len(ds.chunks) == 4
    meta = ds.chunks[0].metadata
    assert meta.controller_type == "xboxone" and meta.game == "test/blocks" and meta.chunk_size == 30
    x, y, w, h = meta.bbox_controller_overlay
    assert abs(x - 20) < 2 and abs(y - 24) < 2 and abs(w - 192 * 1.4) < 3
    assert meta.original_video.resolution == [480, 640] and meta.fps == pytest.approx(30)
    assert list(ds.chunks[0].actions.to_columns()) == [*BUTTONS, "j_left", "j_right"]
    s = score_actions(load_labels(tmp_path / "out", "clip"), truth)
    assert s["button_accuracy"] > 0.9


def test_density_filter_drops_idle_chunks():
    from azote.labeling.postprocess import PostConfig, chunk_density, to_actions

    sticks = np.zeros((100, 2, 2), np.float32)
    sticks[:30, 0, 0] = 0.9
    probs = np.zeros((100, 17), np.float32)
    actions, _ = to_actions(sticks + 0.02, probs, PostConfig())  # a small rest offset is centred away
    assert chunk_density(actions[:30]) == 1.0 and chunk_density(actions[30:]) == 0.0


def test_corrupt_video_is_reported_and_the_others_are_labelled(tmp_path):
    from azote.labeling.label import label_videos

    _make_video(tmp_path / "good.mp4", frames=40)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    (tmp_path / "blank.mp4").write_bytes(b"")
    summary = label_videos([tmp_path / "bad.mp4", tmp_path / "good.mp4", tmp_path / "blank.mp4"], tmp_path / "out")
    assert summary["labelled"] == 1
    assert sorted(Path(f["video"]).name for f in summary["failed"]) == ["bad.mp4", "blank.mp4"]
    assert all("bad.mp4" in f["error"] or "blank.mp4" in f["error"] for f in summary["failed"])


def test_resume_after_kill_leaves_no_half_written_chunk(tmp_path):
    from azote.labeling.label import REPORT_DIR, label_videos

    videos = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for i, v in enumerate(videos):
        _make_video(v, frames=60, seed=i)
    out = tmp_path / "out"
    code = ("import sys; from azote.labeling.label import label_videos, LabelConfig; c = LabelConfig(chunk_seconds=0.5);"
            "c.post.min_density = 0.0; label_videos(sys.argv[2:], sys.argv[1], config=c)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), *map(str, videos)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / REPORT_DIR).glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in (out / REPORT_DIR).glob("v*.json")}
    assert done_before, "the first video should have finished before the kill"
    # whatever the kill interrupted: every visible chunk directory is complete
    for d in (out / "actions").rglob("*_chunk_*"):
        if not any(part.startswith(".") for part in d.relative_to(out).parts):
            assert (d / "actions_raw.parquet").is_file() and (d / "metadata.json").is_file()
    from azote.labeling.label import LabelConfig

    cfg = LabelConfig(chunk_seconds=0.5)
    cfg.post.min_density = 0.0
    summary = label_videos(videos, out, config=cfg)
    assert summary["labelled"] == 3 and summary["skipped"] == len(done_before) and not summary["failed"]
    from azote.dataset import Dataset

    ds = Dataset.open(out, check_video=True)
    assert not ds.problems and {c.video_id for c in ds.chunks} == {"v0", "v1", "v2"}
    assert len(ds.chunks) == 3 * 4
