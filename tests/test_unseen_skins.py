"""Unseen skins read by their elements: discovery finds each shown button's two pictures in a video's own crops, the
namer names them (its weights load, a hostile or foreign file is refused), and a held-out style's video is labelled
zero-shot with its buttons read, not guessed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from azote.gamepad import BUTTONS
from azote.labeling.skingen import HELDOUT_STYLES, heldout_presets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _bank():
    from azote.labeling.synth import BackgroundBank
    from test_labeling import backgrounds

    return BackgroundBank({"test/blocks": backgrounds(200, seed=3)})


def _clip(preset, frames: int, seed: int = 0) -> dict:
    from azote.labeling.synth import ClipSpec, make_clip

    return make_clip(np.random.default_rng(seed), _bank(), preset, ClipSpec(frames=frames, ref_frames=12))


def test_discovery_finds_each_shown_buttons_two_pictures():
    from azote.labeling.elements import discover

    preset = heldout_presets()[2]
    clip = _clip(preset, 360)
    truth = clip["buttons"].astype(bool)
    elements = discover(clip["crops"])
    shown = [BUTTONS.index(b) for b in preset.button_regions()]
    varying = [j for j in shown if 0.03 < truth[:, j].mean() < 0.97]
    assert len(varying) >= 6
    best = {j: max((max(np.mean(e.labels == truth[:, j]), np.mean(e.labels != truth[:, j])) for e in elements),
                   default=0.0) for j in varying}
    # each button's pictures are found as one element that switches with it, frame by frame
    assert np.mean([v >= 0.97 for v in best.values()]) >= 0.8, best
    # and an element's classifier gives back the labels discovery found
    for e in elements[:5]:
        assert np.mean(e.classify(clip["crops"]) == e.labels) > 0.98


def test_the_shipped_namer_loads_and_a_foreign_or_damaged_file_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    from azote.labeling.namer import PAIR_FEATURES, NamerError, load_namer, save_namer

    namer = load_namer()
    x = np.random.default_rng(0).normal(size=(5, len(PAIR_FEATURES))).astype(np.float32)
    again = load_namer(save_namer(namer, tmp_path / "copy.safetensors"))
    assert np.array_equal(namer.scores(x), again.scores(x))
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + b"0" * 64)
    save_file({"pair.0.weight": torch.zeros(3, 3)}, str(tmp_path / "foreign.safetensors"))
    for name, says in (("junk", "cannot read"), ("foreign", "other features"), ("missing", "no namer weights")):
        with pytest.raises(NamerError, match=says):
            load_namer(tmp_path / f"{name}.safetensors")


def test_label_refuses_a_weights_directory_with_a_damaged_namer(tmp_path):
    import shutil
    import subprocess
    import sys

    from azote.labeling.parser import WEIGHTS_DIR

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("parser.json", "parser.safetensors"):
        shutil.copyfile(WEIGHTS_DIR / name, weights / name)
    (weights / "namer.safetensors").write_bytes(b"garbage")
    (tmp_path / "v.mp4").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "azote.cli.main", "label", str(tmp_path / "v.mp4"), "--out",
                        str(tmp_path / "out"), "--weights", str(weights)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "namer" in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]


def test_a_held_out_style_is_labelled_zero_shot_by_its_elements(tmp_path):
    from azote.labeling.evaluate import f1, shown
    from azote.labeling.label import LabelConfig, label_videos, load_labels
    from test_labeling import _make_video

    preset = next(p for p in heldout_presets() if p.family == "xbox")
    assert any(s in preset.name for s in HELDOUT_STYLES)
    truth = _make_video(tmp_path / "clip.mp4", preset, frames=360, seed=1)
    cfg = LabelConfig(chunk_seconds=4.0)
    cfg.post.min_density = 0.0
    summary = label_videos([tmp_path / "clip.mp4"], tmp_path / "out", config=cfg)
    assert summary["labelled"] == 1, summary
    report = json.loads((tmp_path / "out" / "labeling" / "clip.json").read_text())
    assert report["layout"]["elements_found"] >= 6
    buttons, _ = shown(preset)
    cols = [BUTTONS.index(b) for b in buttons]
    got = load_labels(tmp_path / "out", "clip").buttons[:, cols] > 0.5
    want = truth.buttons[: len(got), cols] > 0.5
    accuracy, nothing = float(np.mean(got == want)), float(np.mean(~want))
    assert accuracy > nothing + 0.1 and f1(got, want) > 0.6, (accuracy, nothing, f1(got, want))

    # a longer video: elements discovered in every other frame, read in every frame from the crops kept in memory,
    # or (longer than keep_frames) in a second decoding pass - the same reading either way
    from dataclasses import replace

    labels = {}
    for name, keep in (("kept", 10_000), ("second-pass", 0)):
        out = tmp_path / name
        label_videos([tmp_path / "clip.mp4"], out, config=replace(cfg, discovery_frames=180, keep_frames=keep))
        labels[name] = load_labels(out, "clip").buttons[:, cols] > 0.5
    assert (labels["kept"] == labels["second-pass"]).all()
    assert float(np.mean(labels["kept"] == want)) > nothing + 0.1

    # stick patches checked early (after 128 frames): the sticks read as well as when checked at the end only
    from azote.labeling.evaluate import r2

    def stick_r2(out):
        got = load_labels(out, "clip")
        return [r2(getattr(got, s)[:, a], getattr(truth, s)[: len(got), a]) for s in ("j_left", "j_right") for a in (0, 1)]

    label_videos([tmp_path / "clip.mp4"], tmp_path / "early", config=replace(cfg, stick_check_frames=128))
    late, early = stick_r2(tmp_path / "out"), stick_r2(tmp_path / "early")
    assert min(late) > 0.7 and all(e > lt - 0.1 for e, lt in zip(early, late)), (late, early)

    # a stick patch corrected at the end (here: the layout's travel misjudged by 1.6x) is read again from the pixels
    # kept around it, as from the video decoded a second time
    import azote.labeling.label as L
    from azote.labeling.frames import warp
    from azote.labeling.parser import PATCH
    from azote.labeling.synth import stick_patch

    def misjudged(located, frames, model, preset=None):
        reader = real(located, frames, model, preset)
        for s, sr in enumerate(reader.sticks):
            if sr is not None:
                m = stick_patch(sr.centre, 1.6 * sr.travel)
                reader.sticks[s] = L.StickReader(m, L._median([warp(f, m, (PATCH, PATCH)) for f in frames]),
                                                 sr.centre, 1.6 * sr.travel)
        return reader

    real, runs = L.make_reader, {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(L, "make_reader", misjudged)
        for name, size in (("windows", L.StickWindows.BYTES), ("decoded", 0)):
            mp.setattr(L.StickWindows, "BYTES", size)
            report = L.label_video(tmp_path / "clip.mp4", tmp_path / name, config=cfg)
            assert report["layout"]["sticks_reread"] == [0, 1]
            runs[name] = np.load(tmp_path / name / "labeling" / "clip.npz")
    # alike to 0.005 of the travel: downscaling averages blocks counted from the window's corner, not the frame's
    assert np.allclose(runs["windows"]["raw_sticks"], runs["decoded"]["raw_sticks"], atol=5e-3)


def test_an_element_the_knob_switches_is_told_from_a_button():
    """On shaded skins the knob leaving its rest uncovers a shadow: an element that the stick's position tells is
    the knob's drawing, never a button (such elements had been named the stick's click, read pressed in most
    frames); a button pressed at any stick position is not."""
    from azote.labeling.namer import KNOB_EXPLAINED, stick_explained

    rng = np.random.default_rng(0)
    sticks = np.zeros((1200, 2, 2), np.float32)
    sticks[:, 0] = np.where(rng.random((1200, 1)) < 0.3, 0.0, rng.uniform(-1, 1, (1200, 2)))
    shadow = np.hypot(*sticks[:, 0].T) > 0.4  # the rest's shadow shows once the knob has moved far enough
    click = rng.random(1200) < 0.2
    assert stick_explained(shadow, sticks) >= KNOB_EXPLAINED > 0.6
    assert stick_explained(click, sticks) < 0.3
    assert stick_explained(shadow, np.zeros_like(sticks)) == 0.0  # no stick read: nothing told


def test_a_known_presets_button_takes_the_element_in_its_region_that_its_readings_follow():
    from azote.labeling.elements import Element
    from azote.labeling.namer import name_by_readings

    rng = np.random.default_rng(0)
    t, (h, w) = 400, (104, 160)
    pressed = rng.random(t) < 0.3

    def element(x0: int, labels: np.ndarray) -> Element:
        core = np.zeros((h, w), bool)
        core[40:50, x0:x0 + 10] = True
        return Element(labels, core, (x0 + 5.0, 45.0), 0.95, 5.0, np.zeros(300, np.float32), 0.0)

    regions = np.zeros((17, 26, 40), np.float32)
    regions[0, 10:13, 10:13] = 1  # button 0 drawn over crop pixels 40-52 (map pixel j is crop pixel 4 j)
    regions[1, 10:13, 30:33] = 1  # button 1 drawn over crop pixels 120-132
    present = np.zeros(17, bool)
    present[[0, 1]] = True
    probs = np.zeros((t, 17), np.float32)
    noisy = pressed ^ (rng.random(t) < 0.08)  # the parser misreads 8% of frames
    probs[:, 0] = np.where(noisy, 0.9, 0.1)
    probs[:, 1] = np.where(rng.random(t) < 0.5, 0.9, 0.1)  # readings no element follows
    far = element(120, noisy)  # follows button 0's readings exactly, but sits in button 1's region
    inside = element(40, ~pressed)  # button 0's own element, labelled the other way round
    found = name_by_readings([far, inside], regions, present, probs)
    # button 0 reads element 1, pressed where its label is False; button 1 keeps the parser's readings
    assert found == {0: (1, False)}



def test_the_pressed_picture_is_decided_alike_across_the_skin():
    from azote.labeling.namer import agree_with_skin

    # four elements whose less common picture turns green, one whose less common picture loses green: the skin
    # fills a press with green, so the odd one shows its pressed picture most of the time
    changes = np.array([[0, 0.4, 0], [0.05, 0.3, 0], [0, 0.5, 0.1], [0, 0.35, 0], [0, -0.4, 0]], np.float32)
    unsure = np.array([2.0, 1.5, 3.0, 2.5, 0.5], np.float32)  # the namer leans "less common = pressed" for all
    assert agree_with_skin(unsure, changes).tolist() == [True, True, True, True, False]
    sure = unsure.copy()
    sure[4] = 8.0  # a reading strong enough outweighs the skin
    assert agree_with_skin(sure, changes).tolist() == [True] * 5
    assert agree_with_skin(unsure[:2], changes[:2]).tolist() == [True, True]  # too few elements to speak for a skin

    # a blue tint darkens the light parts and lightens the dark one, but shifts each towards blue: one skin, one
    # side (compared in plain RGB, the dark part's press was read inverted)
    light = np.array([[-45, -39, -15], [-51, -45, -23], [-54, -46, -23], [-64, -57, -33]] * 3, np.float32)
    tint = np.concatenate([light, [[10, 17, 38]]]) / 255
    logits = np.array([4.3, 3.6, 0.8, 4.1] * 3 + [4.5], np.float32)
    assert agree_with_skin(logits, tint).tolist() == [True] * 13
