"""The native games Azote ships descriptions for (Debian packages; `scripts/native-deps.sh` installs them)."""

from __future__ import annotations

from azote.envs.native.game import InputProfile, NativeGame, StickKeys

ARROWS = StickKeys("Up", "Down", "Left", "Right")
DPAD = {"dpad_up": "Up", "dpad_down": "Down", "dpad_left": "Left", "dpad_right": "Right"}

# Neverball: `-l <level>` plays one level directly (no menus). Its rc file sets the window and turns off
# vsync, audio and joystick. Arrows tilt the floor; S/D turn the camera.
_NEVERBALL_RC = """fullscreen 0
width {width}
height {height}
vsync 0
multisample 0
highdpi 0
nice 0
fps 0
stats 0
joystick 0
sound_volume 0
music_volume 0
mouse_camera_toggle none
mouse_camera_l none
mouse_camera_r none
"""

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
)

GAMES = [NEVERBALL]
