"""The native games Azote ships descriptions for (Debian packages; `scripts/native-deps.sh` installs them)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from azote.envs.native.game import InputProfile, NativeGame, PadProfile, StickKeys

ARROWS = StickKeys("Up", "Down", "Left", "Right")
DPAD = {"dpad_up": "Up", "dpad_down": "Down", "dpad_left": "Left", "dpad_right": "Right"}

# Neverball: `-l <level>` plays one level directly (no menus). Its rc file sets the window and turns off
# vsync, audio and joystick, and the effects that are slow in software GL (anisotropic filtering: one
# frame of the start fly-over took 19 s with it; reflection, shadow). Arrows tilt the floor; S/D turn the camera.
_NEVERBALL_RC = """fullscreen 0
width {width}
height {height}
vsync 0
multisample 0
highdpi 0
nice 0
fps 0
stats 0
aniso 0
reflection 0
shadow 0
joystick 0
sound_volume 0
music_volume 0
mouse_camera_toggle none
mouse_camera_l none
mouse_camera_r none
"""
# With the gamepad (SDL virtual game controller, shim/clockshim.c): joystick on, device 0 (the virtual pad, on a
# machine with no gamepad plugged in), its axes and buttons in SDL's game-controller order: left stick tilts the
# floor (in proportion to the deflection), right stick x turns the camera, A/B select/back, X changes the camera,
# shoulders turn the camera. Start stays unmapped (no pause, as with the keyboard profile): pausing stops the
# level clock.
_NEVERBALL_RC_PAD = _NEVERBALL_RC.replace("joystick 0\n", """joystick 1
joystick_device 0
joystick_axis_x0 0
joystick_axis_y0 1
joystick_axis_x1 2
joystick_axis_y1 3
joystick_button_a 0
joystick_button_b 1
joystick_button_x 2
joystick_button_y 3
joystick_button_l1 9
joystick_button_r1 10
joystick_button_l2 -1
joystick_button_r2 -1
joystick_button_start -1
""")


def neverball_clock_glyphs(frame: np.ndarray) -> list[np.ndarray]:
    """The glyphs of Neverball's HUD clock ("M:SS" then small hundredths), left to right, as boolean masks of
    its orange text in the bottom-centre box. Comparing glyphs between two frames tells, without OCR, which
    digits of the game's own timer changed: over exactly 10.00 s only the tens of seconds differ."""
    h, w, _ = frame.shape
    box = frame[int(h * 0.85):, int(w * 0.3):int(w * 0.7)].astype(np.int16)
    text = (box[..., 0] > 170) & (box[..., 2] < 110) & (box[..., 0] - box[..., 2] > 90)
    cols = np.flatnonzero(np.diff(np.concatenate([[0], text.any(0).astype(np.int8), [0]])))
    return [text[:, a:b] for a, b in zip(cols[::2], cols[1::2])]


# Neverball records every level it plays to ~/.neverball/Replays/Last.nbr. The replay starts with little-endian
# int32s: magic, version, timer, coins, status; the game rewrites timer (centiseconds), coins and status the moment
# the level ends (status 1 time up, 2 goal reached, 3 fell off; 0 while playing).
_NEVERBALL_REPLAY = ".neverball/Replays/Last.nbr"
_NEVERBALL_MAGIC = 0xAF | ord("N") << 8 | ord("B") << 16 | ord("R") << 24
NEVERBALL_OUTCOMES = {0: "playing", 1: "time", 2: "goal", 3: "fall"}


def neverball_outcome(frame: np.ndarray, home: Path) -> dict[str, Any]:
    """The level's outcome from the game's own replay file: `goal` (1 once the ball is in the goal, else 0),
    `fell`, `time_up`, and at the end `level_coins` and `level_seconds` (the clock when it ended); `terminated`
    once the level is over."""
    try:
        with open(home / _NEVERBALL_REPLAY, "rb") as f:
            head = f.read(20)
    except OSError:
        head = b""
    magic, version, timer, coins, status = struct.unpack("<5i", head) if len(head) == 20 else (0, 0, 0, 0, 0)
    if magic != _NEVERBALL_MAGIC or status not in NEVERBALL_OUTCOMES:
        status = 0
    out: dict[str, Any] = {"goal": int(status == 2), "fell": int(status == 3), "time_up": int(status == 1),
                           "outcome": NEVERBALL_OUTCOMES[status]}
    if status:
        out.update(level_coins=coins, level_seconds=timer / 100.0, terminated=True)
    return out


NEVERBALL = NativeGame(
    name="neverball",
    command=("neverball", "-l", "map-easy/easy.sol"),
    window_class="neverball",
    files={".neverball/neverballrc": _NEVERBALL_RC},
    profile=InputProfile(
        buttons={**DPAD, "left_shoulder": "s", "right_shoulder": "d", "south": "Return", "start": "Return",
                 "back": "r", "west": "Shift_L", "north": "e"},
        left_stick=ARROWS,
        right_stick=StickKeys(None, None, "s", "d"),
    ),
    fps=60.0,
    warmup_frames=10,
    start_inputs=((("mouse1",), 2), ((), 1)),  # "click to begin"
    view="3d",
    description="Neverball level 'easy' (tilt the floor to roll the ball to the goal)",
    packages=("neverball",),
    reader=neverball_outcome,
    # Neverball reads the d-pad only from tilt sensors, not from SDL joysticks: it stays on the arrow keys.
    pad=PadProfile("sdl", keys=InputProfile(buttons={**DPAD, "back": "r"}),
                   files={".neverball/neverballrc": _NEVERBALL_RC_PAD}),
)

# SuperTux: a level file on the command line starts it directly (`--renderer opengl`: the shim needs GL).
# Space (jump) gets past the level's title card.
SUPERTUX = NativeGame(
    name="supertux",
    command=("supertux2", "--renderer", "opengl", "--window", "--geometry", "{width}x{height}", "--disable-sound",
             "--disable-music", "--userdir", "{home}/supertux", "/usr/share/games/supertux2/levels/world1/welcome_antarctica.stl"),
    window_class="supertux",
    profile=InputProfile(
        buttons={**DPAD, "south": "space", "east": "space", "west": "Control_L", "north": "Control_L",
                 "right_trigger": "Control_L", "start": "Escape"},
        left_stick=ARROWS,
    ),
    fps=60.0,
    warmup_frames=10,
    start_inputs=((("space",), 2), ((), 30)),
    view="2d-side",
    description="SuperTux level 'Welcome to Antarctica' (2D platformer: run right to the end of the level)",
    packages=("supertux",),
    # SuperTux opens every SDL game controller (its default `use_game_controller`): A jumps, X acts, B and start
    # are menu back and menu; the left stick walks past a dead zone of 8000/32767 (digital, no analog speed).
    pad=PadProfile("sdl"),
)

# Extreme Tux Racer has no command-line options and a fixed list of window sizes (the smallest is 800x600):
# it renders at 800x600 and frames are resized. It reads ~/.etr/options.txt through the password database,
# which the shim points at the private home. Return through the menus: player, "Enter an event",
# event/cup, "Race!", then the course intro.
_ETR_OPTIONS = """[fullscreen] 0
[res_type] 1
[framerate] 0
[sound_volume] 0
[music_volume] 0
"""
ETR = NativeGame(
    name="extremetuxracer",
    command=("etr",),
    window_class="etr",
    files={".etr/options.txt": _ETR_OPTIONS},
    render_size=(600, 800),
    profile=InputProfile(
        buttons={**DPAD, "south": "e", "west": "d", "start": "Return"},
        left_stick=ARROWS,
    ),
    fps=60.0,
    warmup_frames=30,
    start_inputs=(((("Return",), 2), ((), 40)) * 4) + (((), 120),),
    view="3d",
    description="Extreme Tux Racer, Canadian Cup race 'Bunny Hill' (3D: slide down, steer, collect herring)",
    packages=("extremetuxracer",),
    # SFML reads Linux joystick devices (js API): the left stick's x steers in proportion to it (past 0.2), its y
    # paddles (up) or brakes (down); buttons 0-3 (A B X Y): paddle, trick, brake, jump. The game takes every axis
    # but x for that paddle/brake axis, so the right stick stays centred. Menus and the course intro (which any
    # key ends, the pad does not): keys.
    pad=PadProfile("js", keys=InputProfile(buttons={**DPAD, "start": "Return"}), right_stick=False),
)

GAMES = [NEVERBALL, SUPERTUX, ETR]
