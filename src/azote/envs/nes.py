"""NES Super Mario Bros (2D side-scroller) from the ROM that gym-super-mario-bros ships.

The ROM is run on stable-retro's FCEUmm core, driven directly (nes-py's Python layer breaks under numpy 2, and
its emulator keeps a single backup slot and runs ~5x slower here; FCEUmm gives full save states).

Mapping (gamepad -> NES pad):

| gamepad                                       | NES             |
| --------------------------------------------- | --------------- |
| d-pad, or left stick past the dead zone (0.3) | d-pad           |
| south, east                                   | A (jump)        |
| west, north                                   | B (run / fire)  |
| start / back                                  | START / SELECT  |

One step is one NES frame (60 per second). A stage game (`nes/SuperMarioBros-W-S`) starts at that stage with
the title screen skipped and ends on a lost life or the flag; `nes/SuperMarioBros` is the whole game and ends
at game over. Reward: x progress (clipped to [-5, 5] per step), -25 for a lost life, +50 for the flag.
`info`: x, y, world, stage, area, lives, coins, score, time, status (small/tall/fireball), player_state,
flag_get, life_lost, enemies (type, state, active of the 5 enemy slots), stomped (an enemy lies flattened).
The seed sets how many frames the title screen idles before start (0-63), which changes the game's RNG, and
how many no-op steps (0-30, `noop_max`) pass in the stage before the first observation.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from azote.envs._libretro import ButtonMapper, close_machine, open_machine
from azote.envs.base import GameInfo, GamepadEnv
from azote.envs.family import Family, Planning
from azote.envs.registry import register_family, register_game
from azote.gamepad import Gamepad

FAMILY = "nes"
RESOLUTION = (224, 240)  # FCEUmm crops the NES's 8-pixel overscan borders
FPS = 60.0
STAGES = [(w, s) for w in range(1, 9) for s in range(1, 5)]
# Stages that begin with a walk into a pipe use one more area index than their stage number.
_PIPE_INTRO_WORLDS = {1, 2, 4, 7}
_STATUS = ("small", "tall", "fireball")

# RAM addresses (NES work RAM)
GAME_MODE, LIVES, WORLD, STAGE, AREA = 0x0770, 0x075A, 0x075F, 0x075C, 0x0760
X_PAGE, X_SCREEN, Y_SCREEN, Y_VIEWPORT = 0x006D, 0x0086, 0x03B8, 0x00B5
PLAYER_STATE, FLOAT_STATE, POWERUP = 0x000E, 0x001D, 0x0756
TIME_DIGITS, COIN_DIGITS, SCORE_DIGITS = slice(0x07F8, 0x07FB), slice(0x07ED, 0x07EF), slice(0x07DD, 0x07E3)
ENEMY_TYPE, ENEMY_STATE, ENEMY_ACTIVE = slice(0x0016, 0x001B), slice(0x001E, 0x0023), slice(0x000F, 0x0014)
_DYING, _DEAD, _NORMAL, _FLAGPOLE = 0x0B, 0x06, 0x08, 0x03
_STOMPED = 0x04  # enemy state of a flattened goomba


def rom_path() -> str:
    # find_spec does not import the package (its __init__ imports nes-py, which we do not need).
    spec = importlib.util.find_spec("gym_super_mario_bros")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("gym-super-mario-bros is not installed (pip install --no-deps gym-super-mario-bros)")
    return os.path.join(list(spec.submodule_search_locations)[0], "_roms", "super-mario-bros.nes")


def _digits(ram: np.ndarray, where: slice) -> int:
    """A number the game keeps as one decimal digit per byte, most significant first."""
    value = 0
    for d in ram[where].tolist():
        value = value * 10 + d % 10
    return value


class MarioEnv(GamepadEnv):
    NOOP_MAX = 30
    MAPPING = (
        ("d-pad / left stick (dead zone 0.3)", "d-pad"),
        ("south, east", "A (jump)"),
        ("west, north", "B (run, fireball)"),
        ("start, back", "START, SELECT"),
    )
    # Level-start snapshots and their screens, per (world, stage, idle frames): booting takes ~200 frames, and
    # a restored core shows its previous screen until it renders the next frame.
    _boot_cache: dict[tuple[int, int, int], tuple[bytes, np.ndarray]] = {}

    def __init__(self, game_id: str, world: int | None = None, stage: int | None = None,
                 render_mode: str | None = "rgb_array", noop_max: int | None = None) -> None:
        if (world is None) != (stage is None) or (world is not None and (world, stage) not in STAGES):
            raise ValueError(f"world/stage must both be given, 1-8 and 1-4; got {world}-{stage}")
        super().__init__(GameInfo(game_id, FAMILY, RESOLUTION, FPS, 1, "2d-side"), render_mode, noop_max)
        self._machine = open_machine(rom_path())
        self._mapper = ButtonMapper("Nes", self._machine.core_buttons)
        self._target = (world or 1, stage or 1)
        self._single_stage = world is not None
        self._idle = 0
        self._power_on = self._machine.get_state()
        self._x = 0

    def map_action(self, action: Gamepad) -> np.ndarray:
        return self._mapper(action)

    def _boot(self) -> np.ndarray:
        """From power-on: idle on the title, press start, select the stage, wait until the timer runs.
        Returns the screen at that point."""
        key = (*self._target, self._idle)
        if key not in self._boot_cache:
            self._boot_cache[key] = self._run_boot()
        state, screen = self._boot_cache[key]
        self._machine.set_state(state)
        return screen.copy()

    def _run_boot(self) -> tuple[bytes, np.ndarray]:
        m = self._machine
        m.set_state(self._power_on)
        none = np.zeros(self._mapper.size, np.uint8)
        start = none.copy()
        start[self._machine.core_buttons.index("START")] = 1
        world, stage = self._target
        area = stage if (stage >= 2 and world in _PIPE_INTRO_WORLDS) else stage - 1

        def select() -> None:
            m.write(WORLD, world - 1)
            m.write(STAGE, stage - 1)
            m.write(AREA, area)

        frames = 0
        while m.ram()[GAME_MODE] != 0 or frames < 3:
            m.step(none)
            frames += 1
        for _ in range(self._idle):
            m.step(none)
        while m.ram()[GAME_MODE] != 1:
            select()
            m.step(start if frames % 2 == 0 else none)
            frames += 1
        while m.ram()[PLAYER_STATE] != _NORMAL:
            select()
            m.step(none)
        clock = m.ram()[TIME_DIGITS].tolist()
        while m.ram()[TIME_DIGITS].tolist() == clock:
            m.step(none)
        return m.get_state(), m.screen().copy()

    def _info(self) -> dict[str, Any]:
        r = self._machine.ram()
        status = int(r[POWERUP])
        return {
            "x": int(r[X_PAGE]) * 256 + int(r[X_SCREEN]),
            "y": 255 - int(r[Y_SCREEN]) if r[Y_VIEWPORT] < 2 else 0,
            "world": int(r[WORLD]) + 1,
            "stage": int(r[STAGE]) + 1,
            "area": int(r[AREA]),
            "lives": int(r[LIVES]),
            "coins": _digits(r, COIN_DIGITS),
            "score": _digits(r, SCORE_DIGITS) * 10,
            "time": _digits(r, TIME_DIGITS),
            "status": _STATUS[status] if status < 3 else str(status),
            "player_state": int(r[PLAYER_STATE]),
            "flag_get": bool(r[FLOAT_STATE] == _FLAGPOLE or r[GAME_MODE] == 2),
            "life_lost": bool(r[PLAYER_STATE] in (_DYING, _DEAD) or r[Y_VIEWPORT] > 1),
            "game_over": bool(r[GAME_MODE] == 3 or (r[LIVES] == 0xFF)),
            "enemies": np.stack([r[ENEMY_TYPE], r[ENEMY_STATE], r[ENEMY_ACTIVE]], axis=1),  # [slot, (type, state, on)]
            "stomped": bool((r[ENEMY_STATE] == _STOMPED).any()),
        }

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._idle = int(seed) % 64
        screen = self._boot()
        info = self._info()
        self._x = info["x"]
        return screen, info

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._machine.step(self._mapper(action))
        info = self._info()
        reward = float(np.clip(info["x"] - self._x, -5, 5))
        self._x = info["x"]
        if info["life_lost"]:
            reward -= 25.0
        if info["flag_get"]:
            reward += 50.0
        if self._single_stage:
            terminated = info["life_lost"] or info["flag_get"]
        else:
            terminated = info["game_over"]
        return self._machine.screen(), reward, bool(terminated), False, info

    def get_state(self) -> bytes:
        return self._pack_state(self._machine.get_state(), x=self._x)

    def set_state(self, state: bytes) -> np.ndarray:
        engine, meta = self._unpack_state(state)
        self._machine.set_state(engine)
        self._x = int(meta["x"])
        return self._frame

    def close(self) -> None:
        close_machine(getattr(self, "_machine", None))
        self._machine = None  # type: ignore[assignment]


_RUN, _JUMP = "west", "south"  # B (run) and A (jump)
# Mario's moves: mostly rightwards (walk, run, jump, running jump), a little back, a standing jump and waiting.
_MOVES = (
    Gamepad.make(j_left=(1, 0)), Gamepad.make([_RUN], j_left=(1, 0)), Gamepad.make([_JUMP], j_left=(1, 0)),
    Gamepad.make([_JUMP, _RUN], j_left=(1, 0)), Gamepad.make(j_left=(-1, 0)), Gamepad.make([_JUMP], j_left=(-1, 0)),
    Gamepad.make([_JUMP]), Gamepad.neutral(),
)

register_family(Family(
    FAMILY,
    variables={"x", "y", "world", "stage", "area", "lives", "coins", "time", "status", "player_state", "flag_get",
               "life_lost", "game_over", "enemies", "stomped"},
    planning=Planning(_MOVES, horizon=36, decide_every=6, progress=lambda i: float(i.get("x", 0)),
                      progress_weight=1.0, lost_life=lambda b, a: bool(a.get("life_lost")), name="mario-runner"),
))


def _register() -> None:
    if importlib.util.find_spec("stable_retro") is None:
        raise ImportError("stable-retro is not installed (it provides the NES core)")
    rom_path()
    register_game(
        GameInfo(f"{FAMILY}/SuperMarioBros", FAMILY, RESOLUTION, FPS, 1, "2d-side",
                 "Super Mario Bros, the whole game from 1-1 until game over", {}),
        "azote.envs.nes:MarioEnv",
    )
    for world, stage in STAGES:
        register_game(
            GameInfo(f"{FAMILY}/SuperMarioBros-{world}-{stage}", FAMILY, RESOLUTION, FPS, 1, "2d-side",
                     f"Super Mario Bros stage {world}-{stage}, one life", {"world": world, "stage": stage}),
            "azote.envs.nes:MarioEnv",
        )


_register()
