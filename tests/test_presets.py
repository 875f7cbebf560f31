"""Presets as data: input-overlay presets and Azote templates load, render any state, round-trip, and refuse
hostile files with one clear error."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from azote.gamepad import Gamepad
from azote.labeling.presets import PresetError, load_preset


def _disc(d: int, colour: tuple[int, int, int], ring: bool = False) -> np.ndarray:
    img = np.zeros((d, d, 4), np.uint8)
    cv2.circle(img, (d // 2, d // 2), d // 2 - 2, (*colour, 255), 2 if ring else -1, cv2.LINE_AA)
    return img


def write_input_overlay(directory: Path) -> Path:
    """A small input-overlay preset written by hand: body, one button (A = SDL 0), a stick, a d-pad element with
    nine pictures, a fill-mode trigger. Atlas layout as the plugin expects (pressed 3 px below normal)."""
    atlas = np.zeros((200, 400, 4), np.uint8)
    atlas[0:100, 0:160] = (40, 40, 40, 255)  # body 160 x 100 at (0, 0)
    atlas[0:20, 170:190] = _disc(20, (200, 200, 200))  # button normal at (170, 0), pressed at (170, 23)
    atlas[23:43, 170:190] = _disc(20, (0, 255, 0))
    atlas[50:80, 170:200] = _disc(30, (220, 220, 220), ring=True)  # stick 30 x 30 at (170, 50), pressed at (170, 83)
    atlas[83:113, 170:200] = _disc(30, (255, 0, 0))
    for k in range(9):  # d-pad 16 x 16 at (0, 120): centre then L R U D UL UR DL DR, 3 px apart
        x = k * 19
        atlas[120:136, x:x + 16] = (60 + 20 * k, 0, 0, 255)
    atlas[150:160, 200:240] = (90, 90, 90, 255)  # trigger 40 x 10 at (200, 150), pressed at (200, 163)
    atlas[163:173, 200:240] = (250, 250, 0, 255)
    cv2.imwrite(str(directory / "pad.png"), cv2.cvtColor(atlas, cv2.COLOR_RGBA2BGRA))
    doc = {"overlay_width": 160, "overlay_height": 100, "elements": [
        {"type": 0, "id": "body", "pos": [0, 0], "mapping": [0, 0, 160, 100]},
        {"type": 2, "id": "a", "code": 0, "pos": [120, 40], "mapping": [170, 0, 20, 20]},
        {"type": 5, "id": "ls", "side": 0, "stick_radius": 8, "pos": [20, 20], "mapping": [170, 50, 30, 30]},
        {"type": 8, "id": "dpad", "pos": [40, 65], "mapping": [0, 120, 16, 16]},
        {"type": 6, "id": "lt", "side": 0, "direction": 1, "trigger_mode": False, "pos": [10, 2],
         "mapping": [200, 150, 40, 10]}]}
    (directory / "pad.json").write_text(json.dumps(doc))
    return directory


def test_input_overlay_preset_draws_each_element_as_the_plugin_does(tmp_path):
    p = load_preset(write_input_overlay(tmp_path))
    assert p.size == (160, 100) and p.family == "retro" and len(p.elements) == 5  # one stick: not a modern pad
    rest = p.render(Gamepad.neutral())
    assert rest.shape == (100, 160, 4)
    pressed = p.render(Gamepad.make(["south"]))
    assert tuple(pressed[50, 130, :3]) == (0, 255, 0) and tuple(rest[50, 130, :3]) == (200, 200, 200)
    # the stick moves by value * radius: full right puts the knob's centre 8 px further right
    right = p.render(Gamepad.make([], j_left=(1, 0))).astype(int)
    col = lambda img: np.nonzero(img[35, :, 0] > 150)[0]  # noqa: E731
    assert abs(col(right).mean() - col(rest.astype(int)).mean() - 8) < 1.0
    assert tuple(p.render(Gamepad.make(["left_thumb"]))[35, 35, :3]) == (255, 0, 0)
    # the d-pad shows the picture of the direction: up-left is the sixth picture after the centre
    assert p.render(Gamepad.make(["dpad_up", "dpad_left"]))[72, 48, 0] == 60 + 20 * 5
    assert p.render(Gamepad.make(["dpad_down"]))[72, 48, 0] == 60 + 20 * 4
    # a held trigger in fill mode reveals its pressed picture from the bottom up: all of it when fully held
    assert tuple(p.render(Gamepad.make(["left_trigger"]))[5, 30, :3]) == (250, 250, 0)
    half = p.render(Gamepad.make([]), analog={"left_trigger": 0.5})
    assert tuple(half[3, 30, :3]) == (90, 90, 90) and tuple(half[10, 30, :3]) == (250, 250, 0)
    regions = p.button_regions()
    assert set(regions) >= {"south", "dpad_up", "dpad_down", "left_trigger", "left_thumb"}
    g = p.sticks()["j_left"]
    assert g.centre == (35.0, 35.0) and g.radius == 8


def test_saved_input_overlay_preset_renders_the_same(tmp_path):
    p = load_preset(write_input_overlay(tmp_path / "a") if (tmp_path / "a").mkdir() is None else None)
    path = p.save_input_overlay(tmp_path / "b", "copy")
    q = load_preset(path)
    for pad in (Gamepad.neutral(), Gamepad.make(["south", "dpad_right", "left_trigger", "left_thumb"], j_left=(0.5, -1))):
        for scale in (1.0, 0.43):
            assert np.abs(p.render(pad, scale).astype(int) - q.render(pad, scale).astype(int)).max() <= 1


def test_saved_azote_template_renders_the_same(tmp_path):
    from azote.labeling.skingen import shipped_presets

    for p in (load_preset(write_input_overlay(tmp_path)), shipped_presets()["retro-snes-filled-dark"]):
        q = load_preset(p.save_template(tmp_path / f"t-{p.name}"))
        assert q.family == p.family and q.size == p.size
        for pad in (Gamepad.neutral(), Gamepad.make(["south", "east", "dpad_up", "dpad_left", "left_trigger",
                                                     "left_shoulder", "left_thumb"], j_left=(-0.4, 1))):
            assert np.abs(p.render(pad, 0.5).astype(int) - q.render(pad, 0.5).astype(int)).max() <= 1


def test_azote_template_format(tmp_path):
    body = np.full((60, 100, 4), 80, np.uint8)
    body[..., 3] = 255
    cv2.imwrite(str(tmp_path / "body.png"), body)
    sheet = np.zeros((20, 40, 4), np.uint8)
    sheet[:, :20] = _disc(20, (255, 255, 255))
    sheet[:, 20:] = _disc(20, (0, 0, 255))
    cv2.imwrite(str(tmp_path / "sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGBA2BGRA))
    doc = {"azote_template": 1, "name": "tiny", "family": "playstation", "size": [100, 60], "elements": [
        {"type": "picture", "image": "body.png"},
        {"type": "button", "button": "east", "pos": [70, 20], "image": {"file": "sheet.png", "rect": [0, 0, 20, 20]},
         "pressed": {"file": "sheet.png", "rect": [20, 0, 20, 20]}},
        {"type": "stick", "stick": "right", "radius": 5, "pos": [20, 20], "image": {"file": "sheet.png",
                                                                                    "rect": [0, 0, 20, 20]}}]}
    (tmp_path / "template.json").write_text(json.dumps(doc))
    p = load_preset(tmp_path)
    assert p.name == "tiny" and p.family == "playstation" and p.controller_type == "ps4"
    assert tuple(p.render(Gamepad.make(["east"]))[30, 80, :3]) == (0, 0, 255)
    moved = p.render(Gamepad.make([], j_right=(0, 1)))
    assert tuple(moved[43, 30, :3]) == (255, 255, 255) and tuple(p.render(Gamepad.neutral())[43, 30, :3]) == (80, 80, 80)


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims to be w x h (a decompression bomb needs no more than that to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, needle", [
    ("not-json", "not valid JSON"),
    ("list", "a preset is a JSON object"),
    ("no-elements", "elements: expected a non-empty list"),
    ("bad-type", "elements[0].type"),
    ("nan-pos", "elements[0].pos[0]"),
    ("huge-atlas", "than a skin needs"),
    ("broken-atlas", "cannot be read"),
    ("only-body", "no gamepad element"),
    ("bad-code", "elements[0].code"),
    ("deep", "nested too deeply"),
    ("template-escape", "not found"),
    ("too-many", "at most 512"),
])
def test_hostile_presets_fail_with_one_clear_error(tmp_path, case, needle):
    d = tmp_path / case
    d.mkdir()
    cv2.imwrite(str(d / "p.png"), np.zeros((10, 10, 4), np.uint8))
    el = {"type": 2, "code": 0, "pos": [0, 0], "mapping": [0, 0, 5, 5]}
    docs = {"list": [1, 2], "no-elements": {"elements": []}, "bad-type": {"elements": [{**el, "type": "x"}]},
            "huge-atlas": {"elements": [el]}, "broken-atlas": {"elements": [el]},
            "only-body": {"elements": [{**el, "type": 0}]}, "bad-code": {"elements": [{**el, "code": "A"}]},
            "template-escape": {"azote_template": 1, "size": [10, 10],
                                "elements": [{"type": "button", "button": "south", "image": "../../etc/passwd"}]},
            "too-many": {"elements": [el] * 600}}
    if case == "not-json":
        (d / "p.json").write_text("{nope")
    elif case == "nan-pos":
        (d / "p.json").write_text('{"elements": [{"type": 2, "code": 0, "pos": [NaN, 0], "mapping": [0, 0, 5, 5]}]}')
    elif case == "deep":
        (d / "p.json").write_text("[" * 100000 + "]" * 100000)
    else:
        (d / "p.json").write_text(json.dumps(docs[case]))
    if case == "huge-atlas":
        (d / "p.png").write_bytes(_png_header(100000, 100000))
    if case == "broken-atlas":
        (d / "p.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(PresetError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_preset(d / "p.json")


def test_overlay_render_cli_draws_a_preset_and_fails_cleanly(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from azote.cli.main import app

    write_input_overlay(tmp_path)
    out = tmp_path / "pad.png"
    r = CliRunner().invoke(app, ["overlay", "render", "--preset", str(tmp_path / "pad.json"), "--state",
                                 json.dumps({"pressed": ["south"], "j_left": [0.5, -1]}), "--out", str(out)])
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(out))
    assert img.shape == (100, 160, 4) and tuple(img[50, 130, :3]) == (0, 255, 0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("[]")
    bad = CliRunner().invoke(app, ["overlay", "render", "--preset", str(tmp_path / "bad"), "--out", str(out)])
    assert bad.exit_code != 0 and "a preset is a JSON object" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(app, ["overlay", "render", "--skin", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown skin" in bad.output


def test_overlay_skins_cli_writes_the_held_out_skins_as_presets(tmp_path):
    from typer.testing import CliRunner

    from azote.cli.main import app
    from azote.labeling.skingen import heldout_presets

    r = CliRunner().invoke(app, ["overlay", "skins", "--heldout", "--save", str(tmp_path)])
    assert r.exit_code == 0, r.output
    first = heldout_presets()[0]
    assert first.name in r.output
    saved = load_preset(tmp_path / first.name)
    pad = Gamepad.make(["south", "dpad_up"], j_left=(1, 0))
    assert np.abs(saved.render(pad, 0.25).astype(int) - first.render(pad, 0.25).astype(int)).max() <= 2
