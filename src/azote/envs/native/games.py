"""The native games Azote ships descriptions for (Debian packages; `scripts/native-deps.sh` installs them)."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from azote.envs.native.game import InputProfile, NativeGame, PadProfile, StickKeys
from azote.envs.native.reading import ProcessMemory, Runs, game_process

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
# Space (jump) gets past the level's title card. The level is a copy of Debian's in the private home whose main
# sector has an init script added: every frame it prints Tux's position and coins with SuperTux's own scripting
# API (`sector.Tux.get_x()`, `get_y()`, `get_coins()`), and once when the sector (re)starts, which it does when
# Tux dies. The game writes script output to stderr, which the session keeps in its log next to the private
# home; `supertux_state` reads it from there.
_SUPERTUX_LEVEL = "/usr/share/games/supertux2/levels/world1/welcome_antarctica.stl"
_SUPERTUX_SCRIPT = ('print("AZOTE start"); while (true) { print("AZOTE " + sector.Tux.get_x() + " " + '
                    'sector.Tux.get_y() + " " + sector.Tux.get_coins()); wait(0.01); }')
_SUPERTUX_LOG = "game.log"  # the session's log of the game's stdout and stderr, next to its private home


class _SuperTuxFiles(Mapping[str, str]):
    """The level with the reporting script, built from the installed one when the game starts (not at import)."""

    def __iter__(self) -> Iterator[str]:
        return iter(("supertux/azote/level.stl",))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: str) -> str:
        if key != "supertux/azote/level.stl":
            raise KeyError(key)
        level = Path(_SUPERTUX_LEVEL).read_text()
        sector = '(sector\n    (name "main")\n'
        if sector not in level or "init-script" in level:
            raise ValueError(f"{_SUPERTUX_LEVEL}: not the level Azote knows (a main sector without init script)")
        script = _SUPERTUX_SCRIPT.replace("\\", "\\\\").replace('"', '\\"')
        level = level.replace(sector, f'{sector}    (init-script "{script}")\n', 1)
        return level.replace("{", "{{").replace("}", "}}")  # files are formatted with {home} etc.


_SUPERTUX_LOGS: dict[str, list[Any]] = {}  # by private home: [log size read, last values, sector starts]


def supertux_state(frame: np.ndarray, home: Path) -> dict[str, Any]:
    """Tux as SuperTux's scripting API reports it, from the game's log: `x`, `y` (pixels in the level, y down),
    `coins` (the player's coins, 100 at the start of a new game) and `deaths` (times the
    level restarted because Tux died)."""
    path = home.parent / _SUPERTUX_LOG
    if str(home) not in _SUPERTUX_LOGS:
        for gone in [k for k in _SUPERTUX_LOGS if not Path(k).exists()]:  # sessions that were closed
            del _SUPERTUX_LOGS[gone]
    state = _SUPERTUX_LOGS.setdefault(str(home), [0, {}, 0])
    try:
        size = path.stat().st_size
        if size < state[0]:  # a new game process rewrote the log
            state[:] = [0, {}, 0]
        with open(path, "rb") as f:
            f.seek(state[0])
            chunk = f.read(size - state[0])
    except OSError:
        return {}
    end = chunk.rfind(b"\n") + 1  # only whole lines; the rest is read next time
    state[0] += end
    for line in chunk[:end].splitlines():
        if not line.startswith(b"[SCRIPTING] AZOTE "):
            continue
        fields = line.split()[2:]
        if fields == [b"start"]:
            state[2] += 1
        elif len(fields) == 3:
            try:
                x, y, coins = float(fields[0]), float(fields[1]), int(float(fields[2]))
            except ValueError:
                continue
            state[1] = {"x": x, "y": y, "coins": coins}
    if not state[1]:
        return {}
    return {**state[1], "deaths": max(0, state[2] - 1)}


SUPERTUX = NativeGame(
    name="supertux",
    command=("supertux2", "--renderer", "opengl", "--window", "--geometry", "{width}x{height}", "--disable-sound",
             "--disable-music", "--userdir", "{home}/supertux", "{home}/supertux/azote/level.stl"),
    window_class="supertux",
    files=_SuperTuxFiles(),
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
    reader=supertux_state,
    # SuperTux opens every SDL game controller (its default `use_game_controller`): A jumps, X acts, B and start
    # are menu back and menu; the left stick walks past a dead zone of 8000/32767 (digital, no analog speed).
    pad=PadProfile("sdl"),
)

# Extreme Tux Racer has no command-line options and a fixed list of window sizes (the smallest is 800x600):
# it renders at 800x600 and frames are resized. It reads ~/.etr/options.txt through the password database,
# which the shim points at the private home. Return through the menus (player, "Enter an event", event/cup,
# "Race!") and once more to end the course intro: reset() lands in the race, at its first frame. The game takes
# a key at its next frame and changes screens at the frame after, so one idle frame between presses is enough:
# 14 frames after start-up (were 288: 40 idle frames after each key, then 120 of intro), a reset of 4.7 s
# instead of 10.3 s (medians, on two cores shared with other work). (Restarting the race inside the game, from its menus, is not
# deterministic: track marks stay on the course, particles draw from libc's rand(); so reset() restarts it.)
_ETR_OPTIONS = """[fullscreen] 0
[res_type] 1
[framerate] 0
[sound_volume] 0
[music_volume] 0
"""
_ETR_START = ((("Return",), 2), ((), 1)) * 4 + ((("Return",), 1), ((), 1))

# The race as the game holds it, read from its memory (/proc/<pid>/mem of the game that runs with this private
# home). ETR 0.8's global `TGameData g_game` (src/etr_types.h; Debian's 0.8.2 has no `active` field) lies in the
# executable's writable data; it is found once per process by its shape (`_etr_game_at`): toolmode 0, the last
# frame's time step (a float in (0, 0.5] s), game type 0 or 1, four bools, pointers to the player, character and
# course, race_result -1..3, then checked by following player -> CControl to a finite position. Offsets in
# TGameData: time_step 4, finish 36, player 40, course 80, time 120 (float, the race clock), herring 128 (int),
# race_result 132; TPlayer.ctrl 32 (after its std::string name); CControl (src/physics.h): cpos 400, cvel 424
# (3 doubles each; z runs negative down the course).
_ETR_GAME_SIZE = 140
_ETR_CTRL_POS, _ETR_CTRL_END = 400, 448


def _etr_game_at(data: bytes, offset: int) -> bool:
    """Whether `data[offset:]` has the shape of ETR's TGameData during a race."""
    toolmode, step, game_type = struct.unpack_from("<IfI", data, offset)
    (brake,) = struct.unpack_from("<d", data, offset + 16)
    flags = data[offset + 36:offset + 40]
    player, character, _, _, _, course = struct.unpack_from("<6Q", data, offset + 40)
    race_result, aborted = struct.unpack_from("<iB", data, offset + 132)
    return (toolmode == 0 and 0 < step <= 0.5 and game_type in (0, 1) and 0 <= brake < 1000
            and all(b in (0, 1) for b in flags) and aborted in (0, 1) and -1 <= race_result <= 3
            and all(p and p % 8 == 0 for p in (player, character, course)))


class _EtrRace:
    """One ETR process's race state: where g_game is, and the last values (for the reward)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid  # 0: the game is not running (yet)
        self.mem: ProcessMemory | None = None
        self.unreadable = False  # its memory cannot be read here (ptrace restrictions)
        self.game: int | None = None
        self.last: tuple[float, int] | None = None

    def _read(self, address: int, size: int) -> bytes:
        assert self.mem is not None
        return self.mem.read(address, size)

    def locate(self) -> None:
        """Finds g_game in the executable's writable data (sets `game`; stays None if it is not there)."""
        exe = os.readlink(f"/proc/{self.pid}/exe")
        regions: list[tuple[int, int]] = []
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                parts = line.split()
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                if parts[1].startswith("rw") and (parts[-1] == exe or (len(parts) == 5 and regions
                                                                        and regions[-1][1] == lo)):
                    regions.append((lo, hi))  # the executable's data, and its bss right after it
        for lo, hi in regions:
            data = self._read(lo, hi - lo)
            for off in range(0, len(data) - _ETR_GAME_SIZE, 8):
                if not _etr_game_at(data, off):
                    continue
                try:  # player -> ctrl -> a finite position: the anchor holds
                    x, y, z = self._position(lo + off)
                except OSError:
                    continue
                if all(np.isfinite((x, y, z))) and max(abs(x), abs(y), abs(z)) < 1e5:
                    self.game = lo + off
                    return

    def _position(self, game: int) -> tuple[float, ...]:
        (player,) = struct.unpack_from("<Q", self._read(game, _ETR_GAME_SIZE), 40)
        (ctrl,) = struct.unpack("<Q", self._read(player + 32, 8))
        return struct.unpack("<3d", self._read(ctrl + _ETR_CTRL_POS, 24))

    def read(self) -> dict[str, Any]:
        assert self.game is not None
        g = self._read(self.game, _ETR_GAME_SIZE)
        (player,) = struct.unpack_from("<Q", g, 40)
        (ctrl,) = struct.unpack("<Q", self._read(player + 32, 8))
        c = self._read(ctrl + _ETR_CTRL_POS, _ETR_CTRL_END - _ETR_CTRL_POS)
        x, _, z, vx, vy, vz = struct.unpack("<6d", c)
        (race_time,) = struct.unpack_from("<f", g, 120)
        (herring,) = struct.unpack_from("<i", g, 128)
        distance = -z
        reward = 0.0 if self.last is None else (distance - self.last[0]) / 10 + (herring - self.last[1])
        self.last = (distance, herring)
        out: dict[str, Any] = {
            "distance": distance, "x": x, "speed": 3.6 * float(np.sqrt(vx * vx + vy * vy + vz * vz)),
            "race_time": float(race_time), "herring": herring, "finished": int(g[36]), "reward": reward,
        }
        if g[36]:
            out["terminated"] = True
        return out

    def close(self) -> None:
        if self.mem is not None:
            self.mem.close()


_ETR_RACES: Runs[_EtrRace] = Runs(lambda home: game_process(home, "etr"), _EtrRace, lambda race: race.close())
_ETR_WARNED: set[str] = set()


def etr_race(frame: np.ndarray, home: Path) -> dict[str, Any]:
    """Extreme Tux Racer's race from the game's own memory: `distance` (metres down the course from its top,
    -z; Bunny Hill starts at 3.5 and ends at 470), `x` (metres across), `speed` (km/h, the HUD's gauge),
    `race_time` (the race clock, s), `herring` (collected), `finished` (Tux crossed the finish line: the episode
    terminates), and `reward` (per step: metres gained down the course / 10 + herring collected)."""
    key, race = str(home), _ETR_RACES.get(home)
    if not race.pid or race.unreadable:
        return {}
    if race.mem is None:
        try:
            race.mem = ProcessMemory(race.pid)
        except OSError as exc:  # not allowed to read its memory (ptrace restrictions)
            race.unreadable = True
            _etr_warn_once(key, f"Extreme Tux Racer: cannot read the game's memory ({exc}), so info has no race")
            return {}
    try:
        if race.game is None:
            race.locate()
        if race.game is not None:
            return race.read()
    except OSError:  # it died meanwhile: the next call finds its successor
        return {}
    _etr_warn_once(key, "Extreme Tux Racer: its race state (g_game) was not found in its memory, so info has no "
                    "distance or herring (not ETR 0.8?)")
    return {}


def _etr_warn_once(key: str, message: str) -> None:
    if key not in _ETR_WARNED:
        _ETR_WARNED.add(key)
        warnings.warn(message, stacklevel=3)


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
    start_inputs=_ETR_START,
    view="3d",
    description="Extreme Tux Racer, Canadian Cup race 'Bunny Hill' (3D: slide down, steer, collect herring)",
    packages=("extremetuxracer",),
    reader=etr_race,
    # SFML reads Linux joystick devices (js API): the left stick's x steers in proportion to it (past 0.2), its y
    # paddles (up) or brakes (down); buttons 0-3 (A B X Y): paddle, trick, brake, jump. The game takes every axis
    # but x for that paddle/brake axis, so the right stick stays centred. Menus (the game's, after the race
    # ends): keys.
    pad=PadProfile("js", keys=InputProfile(buttons={**DPAD, "start": "Return"}), right_stick=False),
)

GAMES = [NEVERBALL, SUPERTUX, ETR]

from azote.envs.native.openarena import OPENARENA  # noqa: E402 - its own module

GAMES.append(OPENARENA)

from azote.envs.native.minetest import MINETEST  # noqa: E402 - its own module

GAMES.append(MINETEST)

from azote.envs.native.supertuxkart import SUPERTUXKART  # noqa: E402 - its own module

GAMES.append(SUPERTUXKART)
