"""Generated overlay skins: every family and style draws, presses show where they should and nowhere else, sticks
move their knob, generation is deterministic, and presets survive input-overlay's file format."""

from __future__ import annotations

import numpy as np
import pytest

from azote.gamepad import BUTTONS, Gamepad
from azote.labeling import skingen as sg
from azote.labeling.presets import DPAD_PICTURES, FAMILIES, Preset, load_preset

SCALE = 0.5  # render at half size: the checks only need where pixels change
BUSY = Gamepad.make(["south", "east", "west", "north", "dpad_up", "dpad_left", "left_shoulder", "right_trigger",
                     "start", "guide", "left_thumb"], j_left=(0.8, -0.6), j_right=(-1.0, 0.4))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1)


def _mask(shape: tuple[int, ...], boxes: list[tuple[float, float, float, float]], grow: float) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        m[max(0, int(np.floor(y0 * SCALE - grow))):max(0, int(np.ceil(y1 * SCALE + grow))),
          max(0, int(np.floor(x0 * SCALE - grow))):max(0, int(np.ceil(x1 * SCALE + grow)))] = True
    return m


def _check_preset(p: Preset) -> None:
    assert p.family in FAMILIES and p.name.startswith(f"gen-{p.family}-")
    for e in p.elements:
        shapes = {k: v.shape for k, v in e.pictures.items()}
        assert len(set(shapes.values())) == 1, (e.name, shapes)
        assert all(v.dtype == np.uint8 and v.shape[2] == 4 for v in e.pictures.values())
        if e.kind == "stick":
            assert set(e.pictures) == {"normal", "pressed"}
            assert 0.04 * e.size[0] <= e.radius <= 0.32 * e.size[0], (e.name, e.radius, e.size)
        elif e.kind in ("button", "trigger"):
            assert "pressed" in e.pictures and e.button in BUTTONS
        elif e.kind == "dpad":
            assert set(e.pictures) == {"normal", *DPAD_PICTURES}
    kinds = [e.kind for e in p.elements]
    assert "picture" not in kinds[1:], "the body is drawn first"
    neutral = p.neutral(SCALE)
    assert neutral[..., 3].max() == 255
    busy = p.render(BUSY, SCALE)
    assert _diff(neutral, busy).max() > 40
    regions = p.button_regions()
    assert {"south", "east"} <= set(regions)
    dpads = [e.box() for e in p.elements if e.kind == "dpad"]
    for button, boxes in regions.items():
        d = _diff(neutral, p.render(Gamepad.make([button]), SCALE))
        inside = _mask(d.shape, boxes, 2)
        assert d[inside].max() >= 20, f"{p.name}: pressing {button} barely shows"
        # a d-pad element's direction is read on its arm, but its picture may change anywhere on the element
        allowed = _mask(d.shape, dpads, 2) | inside if button.startswith("dpad_") and dpads else inside
        assert d[~allowed].max() <= 1, f"{p.name}: pressing {button} changes pixels outside its region"
    for stick, g in p.sticks().items():
        d = _diff(neutral, p.render(Gamepad.make(**{stick: (0.9, -0.4)}), SCALE))
        (cx, cy), (kw, kh) = g.centre, g.knob
        r = g.radius
        box = (cx - kw / 2 - r, cy - kh / 2 - r, cx + kw / 2 + r, cy + kh / 2 + r)
        near = _mask(d.shape, [box], 2)
        centre = _mask(d.shape, [(cx - kw / 4, cy - kh / 4, cx + kw / 4, cy + kh / 4)], 0)
        assert d[centre].max() >= 20, f"{p.name}: moving {stick} moves nothing near its centre"
        assert d[~near].max() <= 1, f"{p.name}: moving {stick} changes pixels far from it"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_style_draws_and_responds_in_the_right_places(family: str) -> None:
    for k, style in enumerate(sg.STYLES):
        p = sg.random_preset(np.random.default_rng([11, k]), family, style, width=600)
        assert p.size[0] == 600 and p.name.startswith(f"gen-{family}-{style}-")
        _check_preset(p)


def test_styles_split_into_training_and_held_out() -> None:
    assert len(sg.STYLES) >= 8 and len(sg.HELDOUT_STYLES) >= 2
    assert set(sg.TRAIN_STYLES) | set(sg.HELDOUT_STYLES) == set(sg.STYLES)
    assert not set(sg.TRAIN_STYLES) & set(sg.HELDOUT_STYLES)
    rng = np.random.default_rng(3)
    for _ in range(12):
        p = sg.random_preset(rng, width=600)
        assert p.name[len(f"gen-{p.family}-"):-5] in sg.TRAIN_STYLES, p.name
    with pytest.raises(ValueError):
        sg.random_preset(rng, "gameboy")
    with pytest.raises(ValueError):
        sg.random_preset(rng, "xbox", "watercolour")


def test_width_defaults_and_every_retro_pad_draws() -> None:
    rng = np.random.default_rng(5)
    widths = [sg.random_preset(rng, "xbox").size[0] for _ in range(4)]
    assert all(600 <= w <= 1100 for w in widths) and len(set(widths)) > 1
    subs = set()
    for seed in range(40):
        p = sg.random_preset(np.random.default_rng(seed), "retro", width=600)
        subs.add(p.source)
        if len(subs) == 5:
            break
    assert len(subs) == 5, subs


def test_sticks_travel_inside_their_wells() -> None:
    for k, (sub, _) in enumerate(s for fam in sg._SUBTYPES.values() for s in fam):
        t, outline = sg._layout(np.random.default_rng(k), sub)
        for it in t.items:
            if it.role == "stick":
                d, travel, well = it.w, it.extra["travel"], it.extra["well"]
                assert 0.18 * d <= travel <= 0.32 * d, sub
                assert well >= d / 2 + travel, sub


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = sg.random_preset(np.random.default_rng(42), "playstation", "filled-dark", 700)
    b = sg.random_preset(np.random.default_rng(42), "playstation", "filled-dark", 700)
    assert a.digest == b.digest and a.name == b.name
    c = sg.random_preset(np.random.default_rng(43), "playstation", "filled-dark", 700)
    assert c.digest != a.digest
    la, lc = a.sticks()["j_left"].centre, c.sticks()["j_left"].centre
    assert la != lc, "the layout is jittered per skin"
    colours = []
    for p in (a, c):
        pic = p.elements[0].pictures["normal"]
        colours.append(pic[pic[..., 3] > 200][:, :3].mean(0))
    assert np.abs(colours[0] - colours[1]).max() > 3, "the palette changes per skin"


def _find(pred, family: str, style: str) -> Preset:
    for seed in range(200):
        p = sg.random_preset(np.random.default_rng([7, seed]), family, style, 640)
        if pred(p):
            return p
    raise AssertionError("no such preset in 200 seeds")


def test_input_overlay_round_trip_renders_identically(tmp_path) -> None:
    presets = [
        _find(lambda p: any(e.kind == "dpad" for e in p.elements), "xbox", "lineart"),
        _find(lambda p: any(e.kind == "trigger" and e.fill for e in p.elements), "playstation", "filled-light"),
        sg.random_preset(np.random.default_rng(1), "retro", "neon", 600),
        sg.random_preset(np.random.default_rng(2), "switch", "floating", 600),
    ]
    partial = Gamepad.make(["dpad_down", "dpad_right", "north", "right_shoulder", "left_trigger"],
                           j_left=(-0.3, 0.7), j_right=(0.5, 0.5))
    for i, p in enumerate(presets):
        back = load_preset(p.save_input_overlay(tmp_path / str(i)))
        assert back.family == p.family and back.size == p.size
        assert [e.kind for e in back.elements] == [e.kind for e in p.elements]
        for pad in (Gamepad.neutral(), BUSY, partial):
            assert _diff(p.render(pad), back.render(pad)).max() <= 1, p.name
        for analog in ({"left_trigger": 0.5, "right_trigger": 0.3},):
            assert _diff(p.render(BUSY, analog=analog), back.render(BUSY, analog=analog)).max() <= 1


def test_shipped_presets_are_a_fixed_library() -> None:
    lib = sg.shipped_presets()
    assert len(lib) == 12
    assert sorted(p.family for p in lib.values()) == sorted(FAMILIES * 3)
    for name, p in lib.items():
        assert p.name == name and name.startswith(p.family + "-")
        assert any(name.endswith("-" + s) for s in sg.TRAIN_STYLES), name
    assert len({p.source for p in lib.values()}) >= 9, "the library shows most pads"
    digests = {n: p.digest for n, p in lib.items()}
    sg._shipped.cache_clear()
    again = sg.shipped_presets()
    assert {n: p.digest for n, p in again.items()} == digests


def test_heldout_presets_use_only_held_out_styles() -> None:
    held = sg.heldout_presets()
    assert len(held) == 8 and len({p.name for p in held}) == 8
    assert sorted(p.family for p in held) == sorted(FAMILIES * 2)
    assert all(any(p.name.endswith("-" + s) for s in sg.HELDOUT_STYLES) for p in held)
    assert not {p.name for p in held} & set(sg.shipped_presets())
    assert [p.digest for p in held] == [p.digest for p in sg.heldout_presets()]
