"""Keyboard and mouse games: a profile that turns each gamepad action of a chunk into keys to hold and a mouse move.

The default profile `wasd` is the usual PC layout: left stick -> W/A/S/D past a dead zone (each axis on its own, so
diagonals hold two keys), right stick -> mouse motion (pixels per step, proportional to the deflection beyond a
radial dead zone), triggers -> mouse buttons, face buttons -> space / c / r / e. Keys use X keysym names ("w",
"space", "Shift_L", "Escape"); "mouse1".."mouse3" are the left, middle and right mouse buttons.

A profile is data: `load_profile("wasd")`, or a JSON/YAML file:

    name: my-shooter
    buttons: {south: space, right_trigger: mouse1, left_thumb: Shift_L}
    left_stick: {keys: [w, s, a, d], dead_zone: 0.3}     # up, down, left, right
    right_stick: {mouse: 12, dead_zone: 0.1}              # pixels per step at full deflection

`KeyMouseMapper` keeps what is held between steps and reports presses and releases, as a keyboard would see them.
Native games (`azote.envs.native`) take their input through such a mapping: `to_native()` / `from_native()`
convert to and from their `InputProfile`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from azote.envs.native.game import InputProfile, StickKeys, StickMouse
from azote.errors import AzoteError
from azote.gamepad import BUTTON_INDEX, ActionChunk, Gamepad

MOUSE_BUTTONS = ("mouse1", "mouse2", "mouse3")


class ProfileError(AzoteError, ValueError):
    """A keyboard/mouse profile that cannot be used (unknown button, bad stick mapping, unreadable file)."""


@dataclass(frozen=True)
class StickToKeys(StickKeys):
    """A stick that holds direction keys past a dead zone on each axis (y negative = up); W/A/S/D by default."""

    up: str | None = "w"
    down: str | None = "s"
    left: str | None = "a"
    right: str | None = "d"


# A stick that moves the mouse: `pixels` per step at full deflection, nothing inside a radial dead zone, linear in
# between (so small corrections stay small).
StickToMouse = StickMouse

StickMapping = StickToKeys | StickToMouse | None

DEFAULT_BUTTONS: dict[str, str] = {
    "south": "space", "east": "c", "west": "r", "north": "e",
    "right_trigger": "mouse1", "left_trigger": "mouse3",
    "left_shoulder": "q", "right_shoulder": "f", "left_thumb": "Shift_L", "right_thumb": "v",
    "start": "Escape", "back": "Tab",
    "dpad_up": "1", "dpad_right": "2", "dpad_down": "3", "dpad_left": "4",
}


@dataclass(frozen=True)
class KeyMouseProfile:
    """Gamepad -> keyboard and mouse. `buttons` maps gamepad button names to keys (or mouse buttons)."""

    name: str = "wasd"
    buttons: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_BUTTONS))
    left_stick: StickMapping = field(default_factory=StickToKeys)
    right_stick: StickMapping = field(default_factory=StickToMouse)

    def __post_init__(self) -> None:
        bad = sorted(b for b in self.buttons if b not in BUTTON_INDEX)
        if bad:
            raise ProfileError(f"profile {self.name!r}: unknown gamepad buttons {bad}; buttons are {sorted(BUTTON_INDEX)}")
        empty = sorted(b for b, k in self.buttons.items() if not isinstance(k, str) or not k)
        if empty:
            raise ProfileError(f"profile {self.name!r}: buttons {empty} need a key name")

    def native(self, pad: Gamepad) -> tuple[set[str], tuple[int, int]]:
        """The keys and mouse buttons held, and the mouse motion (dx, dy), for one gamepad state."""
        return self.to_native().native(pad)

    def describe(self) -> list[tuple[str, str]]:
        rows = []
        for label, stick in (("left stick", self.left_stick), ("right stick", self.right_stick)):
            if isinstance(stick, StickKeys):
                keys = "/".join(k or "-" for k in (stick.up, stick.down, stick.left, stick.right))
                rows.append((label, f"keys {keys} (up/down/left/right), dead zone {stick.dead_zone:g}"))
            elif isinstance(stick, StickToMouse):
                rows.append((label, f"mouse, {stick.pixels:g} px/step at full deflection, dead zone {stick.dead_zone:g}"))
        return rows + sorted(self.buttons.items())

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "buttons": dict(self.buttons), "left_stick": _stick_dict(self.left_stick),
                "right_stick": _stick_dict(self.right_stick)}

    # --- native games -----------------------------------------------------------------------------------
    @cached_property
    def _input_profile(self) -> InputProfile:
        return InputProfile(dict(self.buttons), self.left_stick, self.right_stick)

    def to_native(self) -> InputProfile:
        """The same mapping as an `azote.envs.native.InputProfile` (to play a native game with this profile)."""
        return self._input_profile

    @staticmethod
    def from_native(profile: Any, name: str = "native") -> "KeyMouseProfile":
        """A native game's `InputProfile` (anything with `buttons`, `left_stick`, `right_stick`) as a profile."""

        def convert(stick: Any) -> StickMapping:
            if stick is None:
                return None
            if hasattr(stick, "pixels"):
                return StickToMouse(float(stick.pixels), float(stick.dead_zone))
            if hasattr(stick, "up"):
                return StickToKeys(stick.up, stick.down, stick.left, stick.right, float(stick.dead_zone))
            raise ProfileError(f"profile {name!r}: unknown stick mapping {type(stick).__name__}")

        return KeyMouseProfile(name, dict(profile.buttons), convert(profile.left_stick), convert(profile.right_stick))


def _stick_dict(stick: StickMapping) -> dict[str, Any] | None:
    if isinstance(stick, StickKeys):
        return {"keys": [stick.up, stick.down, stick.left, stick.right], "dead_zone": stick.dead_zone}
    if isinstance(stick, StickToMouse):
        return {"mouse": stick.pixels, "dead_zone": stick.dead_zone}
    return None


PROFILES: dict[str, KeyMouseProfile] = {
    "wasd": KeyMouseProfile(),
    "arrows": KeyMouseProfile("arrows", {**DEFAULT_BUTTONS, "south": "space", "east": "Control_L"},
                              StickToKeys("Up", "Down", "Left", "Right"), StickToMouse()),
}


def _stick_from(data: Any, where: str) -> StickMapping:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a map with 'keys' or 'mouse', or null")
    unknown = set(data) - {"keys", "mouse", "dead_zone"}
    if unknown or ("keys" in data) == ("mouse" in data):
        raise ProfileError(f"{where}: give exactly one of keys: [up, down, left, right] or mouse: PIXELS (and dead_zone)")
    try:
        if "keys" in data:
            keys = data["keys"]
            if not isinstance(keys, list) or len(keys) != 4 or not all(k is None or isinstance(k, str) for k in keys):
                raise ProfileError(f"{where}.keys: expected four key names (up, down, left, right; null for none)")
            return StickToKeys(*keys, dead_zone=float(data.get("dead_zone", 0.3)))
        return StickToMouse(float(data["mouse"]), float(data.get("dead_zone", 0.1)))
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: {exc}") from None


def profile_from_dict(data: Any, source: str = "profile") -> KeyMouseProfile:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: expected a map with name, buttons, left_stick, right_stick")
    unknown = set(data) - {"name", "buttons", "left_stick", "right_stick"}
    if unknown:
        raise ProfileError(f"{source}: unknown fields {sorted(map(str, unknown))}")
    buttons = data.get("buttons", {})
    if not isinstance(buttons, Mapping):
        raise ProfileError(f"{source}: buttons must map gamepad button names to keys")
    try:
        return KeyMouseProfile(
            str(data.get("name", Path(source).stem)), {str(k): v for k, v in buttons.items()},
            _stick_from(data.get("left_stick"), f"{source}: left_stick"),
            _stick_from(data.get("right_stick"), f"{source}: right_stick"),
        )
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from None


def load_profile(spec: str) -> KeyMouseProfile:
    """A profile by name (`PROFILES`) or from a JSON or YAML file."""
    if spec in PROFILES:
        return PROFILES[spec]
    path = Path(spec)
    if not path.is_file():
        raise ProfileError(f"unknown keyboard/mouse profile {spec!r}: use {', '.join(PROFILES)} or a JSON/YAML file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # both parsers raise their own error types
        raise ProfileError(f"{path}: cannot parse ({exc})") from None
    return profile_from_dict(data, str(path))


@dataclass(frozen=True)
class KeyMouseAction:
    """What the keyboard and mouse do in one step."""

    held: tuple[str, ...]
    pressed: tuple[str, ...]  # newly held this step
    released: tuple[str, ...]  # held last step, not this one
    mouse: tuple[int, int]  # (dx, dy) pixels, y down

    def as_dict(self) -> dict[str, Any]:
        return {"keys": list(self.held), "pressed": list(self.pressed), "released": list(self.released),
                "mouse": list(self.mouse)}


class KeyMouseMapper:
    """Applies a profile step by step, remembering what is held."""

    def __init__(self, profile: KeyMouseProfile) -> None:
        self.profile = profile
        self._held: set[str] = set()

    def reset(self) -> None:
        self._held = set()

    def step(self, pad: Gamepad) -> KeyMouseAction:
        held, motion = self.profile.native(pad)
        out = KeyMouseAction(tuple(sorted(held)), tuple(sorted(held - self._held)), tuple(sorted(self._held - held)),
                             motion)
        self._held = held
        return out

    def map_chunk(self, chunk: ActionChunk) -> list[KeyMouseAction]:
        return [self.step(pad) for pad in chunk]


def keymouse_strip(action: KeyMouseAction, width: int, height: int = 28) -> np.ndarray:
    """A strip showing the held keys and the mouse move, to put under a debug frame."""
    import cv2

    img = np.full((height, width, 3), (24, 24, 28), np.uint8)
    dx, dy = action.mouse
    text = f"keys: {' '.join(action.held) or '-'}   mouse: {dx:+d},{dy:+d}"
    cv2.putText(img, text, (6, height - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (220, 220, 220), 1, cv2.LINE_AA)
    return img


def native_profile_of(env: Any) -> KeyMouseProfile | None:
    """The keyboard/mouse profile a native game's environment plays with, or None for gamepad games."""
    if getattr(getattr(env, "game", None), "family", None) != "native":
        return None
    for attr in ("native_game", "spec"):
        spec = getattr(env, attr, None)
        if spec is not None and hasattr(spec, "profile"):
            return KeyMouseProfile.from_native(spec.profile, name=f"{env.game.id} (its own)")
    return None
