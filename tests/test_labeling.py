"""Labelling: known presets (input-overlay files the project wrote) round-trip through locate + parse, the known
preset path adapts and labels, an unseen skin in a held-out style is found, failures say why, video -> chunks,
resume, corrupt videos."""

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
from azote.labeling.compose import Placement, overlay_frame, stream_frame
from azote.labeling.presets import load_preset
from azote.labeling.skingen import heldout_presets, shipped_presets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def backgrounds(n: int, h: int = 210, w: int = 160, seed: int = 0) -> np.ndarray:
    """Moving coloured blocks over a gradient: a game-like picture at an Atari-like size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], -1).astype(np.uint8)
    blocks = [(rng.integers(0, w), rng.integers(0, h), rng.integers(4, 16), rng.integers(0, 255, 3),
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
            Gamepad.make(["north", "start", "left_shoulder"], j_left=(-0.5, 0.5), j_right=(0.7, 0.7)),
            Gamepad.make(["east", "west", "dpad_up", "back", "right_shoulder"], j_left=(0, -1), j_right=(-1, 0.3))]


def _frames(preset, placement: Placement, pads: list[Gamepad], seed: int = 0) -> list[np.ndarray]:
    return [overlay_frame(stream_frame(bg), preset, pad, placement)
            for bg, pad in zip(backgrounds(len(pads), seed=seed), pads)]


def _make_video(path: Path, preset, frames: int = 96, seed: int = 0, placement: Placement | None = None) -> ActionChunk:
    from azote.labeling.roundtrip import render_overlay_video
    from azote.labeling.synth import random_actions

    actions = random_actions(np.random.default_rng(seed), frames)
    placement = placement or Placement(24, 400 - 6 * seed, 330 / preset.size[0], 0.9)
    render_overlay_video(backgrounds(frames, seed=seed), actions, path, preset, fps=30, placement=placement, crf=20)
    return actions


def test_a_project_preset_round_trips_through_locate_and_parse(tmp_path, monkeypatch):
    """An input-overlay preset written to disk by the project is found by its template and read back by the
    parser adapted to it (the known-preset path; a few dozen steps here, minutes in use)."""
    import torch

    from azote.labeling import parser as P
    from azote.labeling.adapt import adapted_parser
    from azote.labeling.label import make_reader
    from azote.labeling.locate import TemplateBank

    monkeypatch.setenv("AZOTE_CACHE", str(tmp_path / "cache"))

    preset = load_preset(shipped_presets()["xbox-one-lineart"].save_input_overlay(tmp_path / "pad"))
    place = Placement(812.3, 40.6, 360 / preset.size[0], 0.9)
    pads = states() * 3
    frames = _frames(preset, place, pads)
    loc = TemplateBank([preset]).locate(iter(frames))
    x0, y0, x1, y1 = preset.visible_box()
    truth = [place.x + x0 * place.scale, place.y + y0 * place.scale, (x1 - x0) * place.scale, (y1 - y0) * place.scale]
    assert loc.method == "template" and loc.preset == preset.name
    assert np.abs(np.array(loc.box) - np.array(truth)).max() < 1.5, (loc.box, truth)
    model, _ = adapted_parser(preset, loc, frames, P.load_parser(), minutes=3.0, clips=12, steps=60)
    reader = make_reader(loc, frames, model, preset)
    wrong, errs = 0, []
    with torch.inference_mode():
        for i, (f, pad) in enumerate(zip(frames, pads)):
            crop, patches = reader.cut(f, (0, 0))
            prev = reader.cut(frames[i - 1], (0, 0))[0] if i else crop
            maps, _ = reader.model.forward_maps(torch.from_numpy(np.concatenate([reader.ref, prev, crop], -1)[None]))
            pressed = P.button_probs(maps, reader.layout)[0].numpy() > 0.5
            shown = reader.layout.present
            wrong += int(((pressed != pad.buttons.astype(bool)) & shown).sum())
            for s, sr in enumerate(reader.sticks):
                x = np.concatenate([sr.ref, patches[s], patches[s]], -1)[None]
                v = reader.model.decode_sticks(reader.model.forward_sticks(torch.from_numpy(x)))[0].numpy()
                errs.append(np.abs(v - (pad.j_left if s == 0 else pad.j_right)).max())
    assert wrong <= 8, f"{wrong} button readings wrong of {len(pads) * int(reader.layout.present.sum())}"
    assert np.median(errs) < 0.15, errs


def test_known_preset_path_adapts_caches_and_labels(tmp_path, monkeypatch):
    from azote.labeling.evaluate import score_actions, shown
    from azote.labeling.label import LabelConfig, label_videos, load_labels

    monkeypatch.setenv("AZOTE_CACHE", str(tmp_path / "cache"))
    preset = shipped_presets()["playstation-dualsense-filled-light"]
    path = preset.save_input_overlay(tmp_path / "pad")
    truths = [_make_video(tmp_path / f"v{i}.mp4", preset, frames=90, seed=i) for i in range(2)]
    cfg = LabelConfig(chunk_seconds=1.0, adapt_minutes=3.0, adapt_clips=12, adapt_steps=100)
    cfg.post.min_density = 0.0
    summary = label_videos([tmp_path / "v0.mp4", tmp_path / "v1.mp4"], tmp_path / "out", templates=[path], config=cfg)
    assert summary["labelled"] == 2 and not summary["failed"], summary
    reps = [json.loads((tmp_path / "out" / "labeling" / f"v{i}.json").read_text()) for i in range(2)]
    assert all(r["locate"]["method"] == "template" and r["locate"]["preset"] == preset.name for r in reps)
    key = reps[0]["layout"]["adapted"]
    assert key and (tmp_path / "cache" / "adapted" / key / "parser.safetensors").is_file()
    assert reps[1]["layout"]["adapted"] == key and reps[1]["seconds_adapt"] < reps[0]["seconds_adapt"]
    buttons, sticks = shown(preset)
    s = score_actions(load_labels(tmp_path / "out", "v0"), truths[0], buttons, sticks)
    # sticks only: buttons are measured by label-eval with the full adaptation (a dozen clips and 100 steps here)
    assert s["stick_r2_x"] > 0.95 and s["stick_r2_y"] > 0.95, s


def test_an_unseen_skin_in_a_held_out_style_is_located():
    from azote.labeling.detect import detect
    from azote.labeling.frames import bbox_iou
    from azote.labeling.skingen import HELDOUT_STYLES

    found = []
    for k, preset in enumerate(heldout_presets()[:4]):
        assert any(s in preset.name for s in HELDOUT_STYLES)
        s = (0.3 * 1280) / preset.size[0]
        place = Placement(1280 - preset.size[0] * s - 20, 720 - preset.size[1] * s - 16, s, 0.85) if k % 2 else \
            Placement(18, 22, s, 0.85)
        frames = _frames(preset, place, (states() * 3)[:12], seed=k)
        det = detect(frames)
        x0, y0, x1, y1 = preset.visible_box()
        truth = [place.x + x0 * s, place.y + y0 * s, (x1 - x0) * s, (y1 - y0) * s]
        found.append(bbox_iou(det.box, truth))
    assert min(found) > 0.6, found


def test_video_to_chunks_with_the_dataset_schema(tmp_path):
    from azote.dataset import Dataset
    from azote.labeling.evaluate import score_actions, shown
    from azote.labeling.label import LabelConfig, label_videos, load_labels

    preset = shipped_presets()["playstation-ds4-lineart-tint"]
    truth = _make_video(tmp_path / "clip.mp4", preset, frames=300)
    cfg = LabelConfig(chunk_seconds=1.0)
    cfg.post.min_density = 0.0
    summary = label_videos([tmp_path / "clip.mp4"], tmp_path / "out", game="test/blocks", config=cfg)
    assert summary["labelled"] == 1 and not summary["failed"] and summary["chunks_written"] == 10
    ds = Dataset.open(tmp_path / "out", check_video=True)
    assert not ds.problems and len(ds.chunks) == 10
    meta = ds.chunks[0].metadata
    assert meta.controller_type == "ps4" and meta.game == "test/blocks" and meta.chunk_size == 30
    assert meta.original_video.resolution == [720, 1280] and meta.fps == pytest.approx(30)
    assert list(ds.chunks[0].actions.to_columns()) == [*BUTTONS, "j_left", "j_right"]
    rep = json.loads((tmp_path / "out" / "labeling" / "clip.json").read_text())
    assert rep["locate"]["method"] == "detector"
    # the report says how the video was labelled: the whole LabelConfig and the post-processing applied
    assert {"config", "post_applied", "version"} <= set(rep) and "batch_size" in rep["config"]
    buttons, sticks = shown(preset)
    s = score_actions(load_labels(tmp_path / "out", "clip"), truth, buttons, sticks)
    # zero-shot: the layout is read off the video (no preset given); on skins like this one it reads well
    assert s["stick_r2_x"] > 0.9 and s["stick_r2_y"] > 0.9 and s["button_accuracy"] > s["press_nothing"] + 0.1, s


def test_label_cli_says_why_a_video_failed(tmp_path):
    from typer.testing import CliRunner

    from azote.cli.main import app
    from azote.dataset.video import VideoWriter

    with VideoWriter(tmp_path / "plain.mp4", 30) as w:  # a game with no overlay at all
        for f in backgrounds(40):
            w.write(stream_frame(f))
    r = CliRunner().invoke(app, ["label", str(tmp_path / "plain.mp4"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert r.exit_code == 1, r.output
    assert "no controller overlay found" in r.output and "plain.mp4" in r.output and "Traceback" not in r.output


def test_density_filter_drops_idle_chunks():
    from azote.labeling.postprocess import PostConfig, chunk_density, to_actions

    sticks = np.zeros((100, 2, 2), np.float32)
    sticks[:30, 0, 0] = 0.9
    probs = np.zeros((100, 17), np.float32)
    actions, _ = to_actions(sticks + 0.02, probs, PostConfig())  # a small rest offset is centred away
    assert chunk_density(actions[:30]) == 1.0 and chunk_density(actions[30:]) == 0.0


def test_stick_rest_is_the_densest_reading_when_the_drawing_misled_the_parser():
    from azote.labeling.postprocess import PostConfig, normalise_stick

    rng = np.random.default_rng(0)
    truth = np.zeros((400, 2), np.float32)
    truth[100:200] = rng.uniform(-1, 1, (100, 2))
    truth[250:320] = [1.0, 0.0]
    raw = 0.8 * truth + np.float32([-0.7, 0.5]) + rng.normal(0, 0.01, truth.shape).astype(np.float32)
    zero_shot, info = normalise_stick(raw, PostConfig().zero_shot())  # the rest reads far from the origin
    assert info["centre"] == pytest.approx([-0.7, 0.5], abs=0.02)
    assert np.corrcoef(zero_shot[:, 0], truth[:, 0])[0, 1] > 0.99
    assert np.abs(zero_shot[250:320] - truth[250:320]).max() < 0.1
    held = np.zeros((400, 2), np.float32)
    held[:300] = [0.9, 0.0]  # a known preset: a direction held most of the time is not taken for the rest
    _, info = normalise_stick(held, PostConfig())
    assert info["centre"] == [0.0, 0.0]


def test_a_resting_sticks_clicks_are_no_travel():
    """A skin whose pressed-in knob is another picture reads a little off to one side while clicked: a stick that
    never moves must keep its travel (such offsets alone once scaled it to a quarter, and its noise then read as
    play), while a stick really pushed one way only still has its travel measured."""
    from azote.labeling.label import _stick_geometry_off
    from azote.labeling.postprocess import PostConfig, normalise_stick

    rng = np.random.default_rng(1)
    raw = rng.normal(0, 0.005, (1800, 2)).astype(np.float32)
    clicked = rng.random(1800) < 0.07
    raw[clicked] += [0.0, 0.22]
    post = PostConfig().zero_shot()
    _, info = normalise_stick(raw, post)
    assert info["scale"] == [1.0, 1.0] and _stick_geometry_off(raw, post) is None
    runner = raw.copy()
    runner[rng.random(1800) < 0.4, 0] += 0.6  # pushed right only, the travel misjudged by 1.7x
    _, info = normalise_stick(runner, post)
    assert info["scale"][0] == pytest.approx(0.6, abs=0.03)


def test_corrupt_video_is_reported_and_the_others_are_labelled(tmp_path):
    from azote.labeling.label import label_videos

    _make_video(tmp_path / "good.mp4", shipped_presets()["switch-pro-translucent"], frames=40)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    (tmp_path / "blank.mp4").write_bytes(b"")
    summary = label_videos([tmp_path / "bad.mp4", tmp_path / "good.mp4", tmp_path / "blank.mp4"], tmp_path / "out")
    assert summary["labelled"] == 1
    assert sorted(Path(f["video"]).name for f in summary["failed"]) == ["bad.mp4", "blank.mp4"]
    assert all("bad.mp4" in f["error"] or "blank.mp4" in f["error"] for f in summary["failed"])


def test_resume_after_kill_leaves_no_half_written_chunk(tmp_path):
    from azote.labeling.label import REPORT_DIR, LabelConfig, label_videos

    videos = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for i, v in enumerate(videos):
        _make_video(v, shipped_presets()["retro-snes-filled-dark"], frames=60, seed=i)
    out = tmp_path / "out"
    code = ("import sys; from azote.labeling.label import label_videos, LabelConfig; c = LabelConfig(chunk_seconds=0.5);"
            "c.post.min_density = 0.0; label_videos(sys.argv[2:], sys.argv[1], config=c)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), *map(str, videos)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and not list((out / REPORT_DIR).glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in (out / REPORT_DIR).glob("v*.json")}
    assert done_before, "the first video should have finished before the kill"
    for d in (out / "actions").rglob("*_chunk_*"):  # whatever the kill interrupted: visible chunks are complete
        if not any(part.startswith(".") for part in d.relative_to(out).parts):
            assert (d / "actions_raw.parquet").is_file() and (d / "metadata.json").is_file()
    cfg = LabelConfig(chunk_seconds=0.5)
    cfg.post.min_density = 0.0
    summary = label_videos(videos, out, config=cfg)
    assert summary["labelled"] == 3 and summary["skipped"] == len(done_before) and not summary["failed"]
    from azote.dataset import Dataset

    ds = Dataset.open(out, check_video=True)
    assert not ds.problems and {c.video_id for c in ds.chunks} == {"v0", "v1", "v2"}
    assert len(ds.chunks) == 3 * 4


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_training_checkpoint_is_refused_and_never_run(tmp_path):
    import torch

    from azote.labeling.train import TrainConfig, train

    marker = tmp_path / "ran"
    (tmp_path / "run").mkdir()
    torch.save({"model": _Planted(marker), "step": 1}, tmp_path / "run" / "ckpt.pt")
    with pytest.raises(RuntimeError, match="ckpt.pt"):  # read before any data is touched
        train(None, tmp_path / "run", TrainConfig(steps=1))
    assert not marker.exists()


def test_the_stick_readers_symmetries_move_the_knob_target_with_the_pixels():
    """Every flip, transpose and inversion the stick reader is trained under keeps the knob's target on the
    knob: a disc drawn at a known deflection is found, after the transform, where the transformed target says."""
    from azote.labeling import parser as P
    from azote.labeling.train import knob_symmetries

    rng = np.random.default_rng(0)
    n = 64
    knob = rng.uniform(-1, 1, (n, 2, 2)).astype(np.float32)
    yy, xx = np.mgrid[:P.PATCH, :P.PATCH]
    mid = (P.PATCH - 1) / 2
    patches = np.full((n, 2, P.PATCH, P.PATCH, 9), 40.0, np.float32)
    for i in range(n):
        for s in range(2):
            cx, cy = mid + knob[i, s] * P.PATCH_TRAVEL
            patches[i, s][(xx - cx) ** 2 + (yy - cy) ** 2 <= 9] = 230.0
    out, moved = knob_symmetries(patches, knob, rng)
    inverted = 0
    for i in range(n):
        for s in range(2):
            p = out[i, s, ..., 0]
            bright = p > 128 if p.mean() < 128 else p < 128  # an inverted patch shows its disc dark
            inverted += p.mean() >= 128
            cy, cx = np.argwhere(bright).mean(0)
            assert np.allclose([(cx - mid) / P.PATCH_TRAVEL, (cy - mid) / P.PATCH_TRAVEL], moved[i, s], atol=0.05)
    assert not np.allclose(moved, knob) and 0 < inverted < n * 2  # the transforms happened, some of each


@pytest.mark.parametrize("name", ["xbox-one-lineart", "playstation-dualsense-filled-light"])
def test_a_known_presets_reference_shows_buttons_released_even_when_held_most_of_the_video(name):
    """The reference a known preset is read against shows every button released, also one the player holds in
    most sampled frames (in their median it would look held, and every press would read as released)."""
    from azote.labeling import parser as P
    from azote.labeling.frames import box_to_crop, compose, warp
    from azote.labeling.synth import neutral_reference

    preset = shipped_presets()[name]
    place = Placement(60.0, 380.0, 330 / preset.size[0], 0.85)
    rng = np.random.default_rng(3)
    held = [["south", "dpad_left"] if rng.random() < 0.75 else [] for _ in range(24)]
    pads = [Gamepad.make(h + (["north"] if rng.random() < 0.3 else [])) for h in held]
    x0, y0, x1, y1 = preset.visible_box()
    s = place.scale
    to_crop = box_to_crop([place.x + x0 * s, place.y + y0 * s, (x1 - x0) * s, (y1 - y0) * s], P.CROP, P.MARGIN)
    crops = np.stack([warp(f, to_crop, P.CROP) for f in _frames(preset, place, pads)])
    released = np.stack([warp(f, to_crop, P.CROP) for f in _frames(preset, place, [Gamepad.neutral()] * 24)])
    ref = neutral_reference(crops, preset, compose(to_crop, place.affine())).astype(np.float32)
    up = np.array([not h for h in held])
    assert up.sum() < 8, up  # held in most frames
    want = np.median(released[up], axis=0)  # the same frames, drawn released
    med = np.median(crops, axis=0)
    for button in ("south", "dpad_left"):
        bx0, by0, bx1, by1 = (int(round(v)) for v in _crop_box(preset, button, compose(to_crop, place.affine())))
        region = (slice(by0, by1), slice(bx0, bx1))
        err_ref = np.abs(ref[region] - want[region]).mean()
        err_med = np.abs(med[region] - want[region]).mean()
        assert err_ref < 0.25 * err_med and err_ref < 6, (button, err_ref, err_med)


@pytest.mark.parametrize("held", [False, True])
def test_a_known_presets_nine_picture_dpad_is_read_from_its_drawing(held):
    """A d-pad drawn as one element with nine pictures fills a half of itself per direction, so no element of the
    overlay switches with one direction alone (naming by the parser's readings read a held left as right): the
    known preset's drawing says which presses switch which element, each frame's picture gives the directions,
    diagonals too, and the other buttons take the element their press alone switches. Also when down and south
    are held in most frames and the reference shows them held (the crops' median; down was then never read)."""
    from azote.labeling import parser as P
    from azote.labeling.elements import discover
    from azote.labeling.frames import box_to_crop, compose, warp
    from azote.labeling.namer import DPAD, name_by_drawing
    from azote.labeling.synth import DPAD_STATES, drawn_changes, neutral_reference

    preset = next(p for p in heldout_presets() if p.name == "heldout-xbox-360-neon")
    assert any(e.kind == "dpad" for e in preset.elements)
    place = Placement(40.0, 360.0, 330 / preset.size[0], 0.8)
    rng = np.random.default_rng(5)
    pictures = [list(st) for st in DPAD_STATES]
    pads = [Gamepad.make((pictures[[1, 6, 7][rng.integers(3)]] if held and rng.random() < 0.75 else
                          [] if rng.random() < 0.3 else pictures[rng.integers(8)])
                         + (["south"] if rng.random() < (0.8 if held else 0.3) else [])) for _ in range(160)]
    x0, y0, x1, y1 = preset.visible_box()
    s = place.scale
    to_crop = box_to_crop([place.x + x0 * s, place.y + y0 * s, (x1 - x0) * s, (y1 - y0) * s], P.CROP, P.MARGIN)
    canvas_to_crop = compose(to_crop, place.affine())
    crops = np.stack([warp(f, to_crop, P.CROP) for f in _frames(preset, place, pads)])
    elements = discover(crops)
    changes = drawn_changes(preset, canvas_to_crop, np.median(crops, axis=0).astype(np.float32) / 255)
    ref = np.median(crops, axis=0).astype(np.uint8) if held else neutral_reference(crops, preset, canvas_to_crop)
    found, dpad = name_by_drawing(elements, crops, ref, changes)
    truth = np.stack([p.buttons for p in pads]).astype(bool)
    assert dpad is not None
    states = np.stack([elements[i].labels for i in dpad.elements], axis=1)
    read = dpad.read(states, crops)
    cols = [BUTTONS.index(b) for b in DPAD]
    assert (read == truth[:, cols]).all(axis=1).mean() >= 0.97, (read != truth[:, cols]).mean(0)
    i, pressed = found[BUTTONS.index("south")]
    assert ((elements[i].labels == pressed) == truth[:, BUTTONS.index("south")]).mean() >= 0.98
    assert not set(found) & set(cols), "a d-pad direction named by one element"


def _crop_box(preset, button: str, canvas_to_crop: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = preset.button_regions()[button][0]
    a = canvas_to_crop
    return x0 * a[0, 0] + a[0, 2], y0 * a[1, 1] + a[1, 2], x1 * a[0, 0] + a[0, 2], y1 * a[1, 1] + a[1, 2]


def test_random_play_never_holds_opposite_dpad_directions():
    from azote.labeling.synth import random_actions

    b = random_actions(np.random.default_rng(0), 20000).buttons.astype(bool)
    col = {k: b[:, BUTTONS.index(f"dpad_{k}")] for k in ("up", "down", "left", "right")}
    assert not (col["up"] & col["down"]).any() and not (col["left"] & col["right"]).any()
    assert all(0.02 < v.mean() < 0.6 for v in col.values()), {k: v.mean() for k, v in col.items()}
