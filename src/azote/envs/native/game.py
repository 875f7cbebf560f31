"""What it takes to wrap a native Linux game: a `NativeGame` (command line, private config files, window class,
frame rate, input profile), an `InputProfile` (gamepad -> keys and mouse) and, for games that read a gamepad, a
`PadProfile` (the gamepad reaches the game as a gamepad: analog sticks, buttons)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from azote.envs.base import VIEWS
from azote.gamepad import BUTTON_INDEX, BUTTONS, Gamepad

# A mouse button in a profile: "mouse1" (left), "mouse2" (middle), "mouse3" (right).
MOUSE_BUTTONS = {"mouse1": 1, "mouse2": 2, "mouse3": 3}


@dataclass(frozen=True)
class StickKeys:
    """A stick that presses direction keys (X keysym names) past a dead zone, like a d-pad."""

    up: str | None = "Up"
    down: str | None = "Down"
    left: str | None = "Left"
    right: str | None = "Right"
    dead_zone: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.dead_zone < 1:
            raise ValueError(f"stick dead_zone must lie in [0, 1), got {self.dead_zone}")

    def keys(self, stick: np.ndarray) -> set[str]:
        x, y = float(stick[0]), float(stick[1])
        out = set()
        for active, key in ((y < -self.dead_zone, self.up), (y > self.dead_zone, self.down),
                            (x < -self.dead_zone, self.left), (x > self.dead_zone, self.right)):
            if active and key:
                out.add(key)
        return out


@dataclass(frozen=True)
class StickMouse:
    """A stick that moves the mouse: `pixels` per step at full deflection, zero inside the dead zone."""

    pixels: float = 16.0
    dead_zone: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.dead_zone < 1:
            raise ValueError(f"stick dead_zone must lie in [0, 1), got {self.dead_zone}")
        if not 0 < self.pixels <= 10_000:
            raise ValueError(f"mouse pixels per step must lie in (0, 10000], got {self.pixels}")

    def delta(self, stick: np.ndarray) -> tuple[int, int]:
        x, y = float(stick[0]), float(stick[1])
        r = (x * x + y * y) ** 0.5
        if r <= self.dead_zone:
            return 0, 0
        k = min(1.0, (r - self.dead_zone) / (1.0 - self.dead_zone)) / r * self.pixels
        return int(round(x * k)), int(round(y * k))


@dataclass(frozen=True)
class InputProfile:
    """Gamepad -> keyboard and mouse. `buttons` maps gamepad button names to X keysym names (see
    /usr/include/X11/keysymdef.h without the XK_ prefix: "Left", "space", "Return", "a", "Control_L") or to
    "mouse1".."mouse3". Keys stay pressed while the gamepad holds them, across steps, as on a real pad."""

    buttons: Mapping[str, str] = field(default_factory=dict)
    left_stick: StickKeys | StickMouse | None = None
    right_stick: StickKeys | StickMouse | None = None

    def __post_init__(self) -> None:
        bad = [b for b in self.buttons if b not in BUTTON_INDEX]
        if bad:
            raise ValueError(f"InputProfile.buttons: unknown gamepad buttons {bad}; buttons are {sorted(BUTTON_INDEX)}")

    def native(self, pad: Gamepad) -> tuple[set[str], tuple[int, int]]:
        """The keys/mouse buttons to hold and the mouse motion for one gamepad state."""
        held = {self.buttons[b] for b in pad.pressed if b in self.buttons}
        dx = dy = 0
        for stick, values in ((self.left_stick, pad.j_left), (self.right_stick, pad.j_right)):
            if isinstance(stick, StickKeys):
                held |= stick.keys(values)
            elif isinstance(stick, StickMouse):
                mx, my = stick.delta(values)
                dx, dy = dx + mx, dy + my
        return held, (dx, dy)

    def mapping(self) -> tuple[tuple[str, str], ...]:
        rows = []
        for name, stick in (("left stick", self.left_stick), ("right stick", self.right_stick)):
            if isinstance(stick, StickKeys):
                keys = "/".join(k or "-" for k in (stick.up, stick.down, stick.left, stick.right))
                rows.append((f"{name} (dead zone {stick.dead_zone})", f"keys {keys} (up/down/left/right)"))
            elif isinstance(stick, StickMouse):
                rows.append((name, f"mouse motion, {stick.pixels:g} px per step at full deflection"))
        rows += [(b, k) for b, k in self.buttons.items()]
        return tuple(rows)


# How the clock shim hands the game a gamepad (no /dev/uinput needed): "sdl", an SDL2 virtual game controller
# attached when the game brings up SDL's joystick subsystem; "js", a Linux joystick device (/dev/input/js*, the
# js API) that udev enumeration lists, for games that read one (SFML); "xinput", an Xbox controller for Windows
# games under Wine (Azote's xinput DLLs in the private prefix, azote.envs.native.wine). Values: the shim's
# pad_enabled bits.
PAD_APIS = {"sdl": 1, "js": 2, "xinput": 8}
AXIS_MAX = 32767
# What each gamepad button is on the game's side, per API (the shim's layouts, shim/clockshim.c).
_SDL_NAMES = {
    "south": "A", "east": "B", "west": "X", "north": "Y", "back": "back", "guide": "guide", "start": "start",
    "left_thumb": "left stick button", "right_thumb": "right stick button", "left_shoulder": "left shoulder",
    "right_shoulder": "right shoulder", "dpad_up": "d-pad up", "dpad_down": "d-pad down", "dpad_left": "d-pad left",
    "dpad_right": "d-pad right", "left_trigger": "left trigger (axis, full)", "right_trigger": "right trigger (axis, full)",
}
_XINPUT_NAMES = {
    "south": "A", "east": "B", "west": "X", "north": "Y", "back": "BACK", "guide": "guide (XInputGetStateEx)",
    "start": "START", "left_thumb": "LEFT_THUMB", "right_thumb": "RIGHT_THUMB", "left_shoulder": "LEFT_SHOULDER",
    "right_shoulder": "RIGHT_SHOULDER", "dpad_up": "DPAD_UP", "dpad_down": "DPAD_DOWN", "dpad_left": "DPAD_LEFT",
    "dpad_right": "DPAD_RIGHT", "left_trigger": "left trigger (full)", "right_trigger": "right trigger (full)",
}
_JS_BUTTONS = ("south", "east", "west", "north", "left_shoulder", "right_shoulder", "left_trigger", "right_trigger",
               "back", "start", "guide", "left_thumb", "right_thumb", "dpad_up", "dpad_down", "dpad_left", "dpad_right")


def _axis(value: float) -> int:
    return int(round(max(-1.0, min(1.0, float(value))) * AXIS_MAX))


@dataclass(frozen=True)
class PadProfile:
    """The game reads a gamepad: the unified gamepad reaches it as one, through the clock shim (see `PAD_APIS`):
    sticks analog (a stick at 0.5 is half a deflection to the game), buttons as buttons, triggers full or rest.
    The pad's state is written to the shared clock file each step and copied into the game at the frame
    boundary, so step t's pad is what the game reads in frame t+1. `keys` (an `InputProfile`) holds keys besides
    the pad for what the game does not read from its pad (menus, restart); `files` are written into the private
    home instead of the game's own `files` of the same name when the pad is in use (config that turns the
    game's joystick support on). `left_stick` / `right_stick` False keep that stick centred (for a game that
    gives it an unwanted meaning)."""

    api: str = "sdl"
    keys: InputProfile = field(default_factory=InputProfile)
    files: Mapping[str, str] = field(default_factory=dict)
    left_stick: bool = True
    right_stick: bool = True

    def __post_init__(self) -> None:
        if self.api not in PAD_APIS:
            raise ValueError(f"PadProfile.api must be one of {sorted(PAD_APIS)}, got {self.api!r}")

    @property
    def bits(self) -> int:
        """The shim's pad_enabled value for this profile."""
        return PAD_APIS[self.api]

    def state(self, pad: Gamepad) -> tuple[int, tuple[int, ...]]:
        """(buttons bitmask, six axes) as the shim reads them: bit i is `BUTTONS[i]`; axes left x, left y,
        right x, right y (-32767..32767, y down positive, as the gamepad's), left and right trigger (0 or 32767)."""
        bits = 0
        for i in np.flatnonzero(pad.buttons):
            bits |= 1 << int(i)
        lx, ly = (_axis(v) for v in pad.j_left) if self.left_stick else (0, 0)
        rx, ry = (_axis(v) for v in pad.j_right) if self.right_stick else (0, 0)
        lt = AXIS_MAX if pad.buttons[BUTTON_INDEX["left_trigger"]] else 0
        rt = AXIS_MAX if pad.buttons[BUTTON_INDEX["right_trigger"]] else 0
        return bits, (lx, ly, rx, ry, lt, rt)

    def mapping(self) -> tuple[tuple[str, str], ...]:
        if self.api in ("sdl", "xinput"):
            where = "SDL game controller" if self.api == "sdl" else "XInput controller 0"
            sticks = {"left stick": "left stick (analog)", "right stick": "right stick (analog)"}
            names = _SDL_NAMES if self.api == "sdl" else _XINPUT_NAMES
        else:
            where = "Linux joystick"
            sticks = {"left stick": "axes 0/1 (analog)", "right stick": "axes 2/3 (analog)"}
            names = {b: f"button {i}" for i, b in enumerate(_JS_BUTTONS)}
        rows = [(name, f"{where} {target}") for name, target in sticks.items()
                if (self.left_stick if name == "left stick" else self.right_stick)]
        rows += [(b, f"{where} {names[b]}") for b in BUTTONS]
        rows += [(b, f"and key {k}") if b in BUTTON_INDEX else (b, k) for b, k in self.keys.mapping()]
        return tuple(rows)


@dataclass(frozen=True)
class NativeGame:
    """One native Linux game.

    `command` and `files` may use the placeholders {home} (the private home directory made for each run),
    {width} and {height} (the window size). `files` are written under {home} before each start (config that
    skips menus, sets the window size, turns audio off). `reader`, if given, reads success-relevant state into
    `info` from the frame and from files the game writes in its private home (`reader(frame, home)`); a
    `terminated` key in what it returns ends the episode. Start-up runs in `warmup` time until `warmup_frames` frames are shown (see
    shim/clockshim.c); then each step presents exactly one frame and advances the game's clock by 1/`fps` s.
    `pad`, for a game that reads a gamepad, hands it the gamepad as one (`PadProfile`); `profile` (keys and
    mouse) is then used only when the environment is made with `gamepad=False`.
    """

    name: str
    command: tuple[str, ...]
    profile: InputProfile
    window_class: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    resolution: tuple[int, int] = (240, 320)  # (height, width) of observations
    # (height, width) the game itself renders at, for games with a fixed set of window sizes; frames are then
    # resized to `resolution`. None: the game renders at `resolution`.
    render_size: tuple[int, int] | None = None
    fps: float = 60.0
    warmup_frames: int = 30
    # Start-up clock until lockstep (see shim/clockshim.c): "virtual" (default; deterministic: time passes only
    # by frames, sleeps and 10 us per clock read), "frames" (real time until the first frame, then frame time),
    # "real" (real time until lockstep).
    warmup: str = "virtual"
    view: str = "3d"
    description: str = ""
    packages: tuple[str, ...] = ()  # Debian packages that provide the game
    start_timeout: float = 60.0  # seconds of real time to reach lockstep
    step_timeout: float = 20.0  # seconds of real time for one frame before the game counts as hung
    reader: Callable[[np.ndarray, Path], dict[str, Any]] | None = None
    # Inputs played in lockstep by reset() before the first observation, to get past a "click to begin"
    # screen: (keys or mouse buttons held, frames) pairs.
    start_inputs: tuple[tuple[tuple[str, ...], int], ...] = ()
    pad: PadProfile | None = None

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError(f"NativeGame {self.name!r}: command is empty")
        if self.view not in VIEWS:
            raise ValueError(f"NativeGame {self.name!r}: view must be one of {VIEWS}, got {self.view!r}")
        if self.fps <= 0 or self.warmup_frames < 1:
            raise ValueError(f"NativeGame {self.name!r}: fps must be > 0 and warmup_frames >= 1")

    def available(self) -> bool:
        return self.missing() is None

    def missing(self) -> str | None:
        """What this machine lacks to run the game (None: nothing)."""
        if shutil.which("Xvfb") is None:
            return "Xvfb is not installed (sudo bash scripts/native-deps.sh)"
        if shutil.which(self.command[0], path=os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/games") is None:
            pkgs = " ".join(self.packages) or "its package"
            return f"{self.name}: {self.command[0]!r} is not installed (apt-get install {pkgs}, or sudo bash scripts/native-deps.sh)"
        return None

    def argv(self, **values: Any) -> list[str]:
        return [part.format(**values) for part in self.command]
