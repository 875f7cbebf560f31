"""stable-retro's integrated console games whose ROM is installed (the wheel ships Airstriker-Genesis; ROMs a
user imports with `python -m stable_retro.import DIR` appear here too).

Mapping (gamepad -> console buttons), by console; directions come from the d-pad or the left stick past the
dead zone (0.3):

| console  | buttons                                                                              |
| -------- | ------------------------------------------------------------------------------------ |
| Genesis  | west A, south B, east C, left shoulder X, north Y, right shoulder Z, start, back MODE  |
| NES, GB  | south/east A, west/north B, start, back SELECT                                        |
| SNES     | south B, east A, west Y, north X, shoulders L/R, start, back SELECT                   |

One step is one console frame. Reward, episode end and `info` variables (score, lives, ...) come from the
game's integration (data.json, scenario.json). The integration's default save state is the start state; a
seeded reset then takes 0-30 no-op steps drawn from the seed (`noop_max`), so seeds start differently.
"""

from __future__ import annotations

import glob
import gzip
import importlib.util
import json
import os
from typing import Any

import numpy as np

from azote.envs._libretro import CONSOLE_BUTTONS, ButtonMapper, close_machine, open_machine
from azote.envs.base import GameInfo, GamepadEnv
from azote.envs.family import Family, Planning, distinct, joystick_candidates, lives_dropped
from azote.envs.registry import register_family, register_game
from azote.gamepad import Gamepad

FAMILY = "retro"
_VIEWS = {"Airstriker-Genesis": "2d-top"}


class RetroEnv(GamepadEnv):
    NOOP_MAX = 30
    MAPPING = tuple((console, ", ".join(f"{'/'.join(p)} -> {b}" for b, p in m.items())) for console, m in
                    CONSOLE_BUTTONS.items())

    def __init__(self, game_id: str, game: str, state: str | None = None,
                 render_mode: str | None = "rgb_array", noop_max: int | None = None) -> None:
        import stable_retro as retro

        rom = retro.data.get_romfile_path(game)
        machine = open_machine(rom, (retro.data.get_file_path(game, "data.json"),
                                     retro.data.get_file_path(game, "scenario.json")))
        try:
            h, w = machine.screen().shape[:2]
            super().__init__(GameInfo(game_id, FAMILY, (h, w), machine.fps, 1, _VIEWS.get(game, "2d-side")),
                             render_mode, noop_max)
            self._mapper = ButtonMapper(machine.console, machine.core_buttons)
        except Exception:
            close_machine(machine)
            raise
        self._machine = machine
        self._start = self._start_state(retro, game, state)

    @staticmethod
    def _start_state(retro: Any, game: str, state: str | None) -> bytes | None:
        if state is None:
            with open(retro.data.get_file_path(game, "metadata.json")) as f:
                state = json.load(f).get("default_state")
        if not state:
            return None
        path = retro.data.get_file_path(game, state.removesuffix(".state") + ".state")
        if not path:
            raise FileNotFoundError(f"{game}: no save state named {state!r}")
        with gzip.open(path, "rb") as f:
            return f.read()

    def map_action(self, action: Gamepad) -> np.ndarray:
        return self._mapper(action)

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        m = self._machine
        if self._start is not None:
            m.set_state(self._start)
        else:
            m.power_on()
        m.restart_data()
        return m.screen(), m.variables()

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        m = self._machine
        m.step(self._mapper(action))
        info = m.variables()
        return m.screen(), m.reward(), m.done(), False, info

    def get_state(self) -> bytes:
        return self._pack_state(self._machine.get_state())

    def set_state(self, state: bytes) -> np.ndarray:
        engine, _ = self._unpack_state(state)
        self._machine.set_state(engine)
        return self._frame

    def close(self) -> None:
        close_machine(getattr(self, "_machine", None))
        self._machine = None  # type: ignore[assignment]


def installed_games() -> list[str]:
    """Integrated games whose ROM is present, on consoles Azote has a mapping for (a directory scan: asking
    stable-retro for each of its ~1000 integrations takes most of a second)."""
    spec = importlib.util.find_spec("stable_retro")
    root = os.path.join(list(spec.submodule_search_locations)[0], "data", "stable")  # type: ignore[union-attr]
    games = []
    for rom in glob.glob(os.path.join(root, "*", "rom.*")):
        game, ext = os.path.basename(os.path.dirname(rom)), rom.rsplit(".", 1)[1]
        if ext not in ("sha", "delta") and game.split("-")[-2 if game.endswith("-v0") else -1] in CONSOLE_BUTTONS:
            games.append(game)
    return sorted(games)


register_family(Family(
    FAMILY,
    variables=set(),  # each integration's own variables: not known before the game is opened
    planning=Planning(lambda env: distinct(env, joystick_candidates()), horizon=30, decide_every=4,
                      lost_life=lives_dropped, name="retro-joystick"),
))


def _register() -> None:
    if importlib.util.find_spec("stable_retro") is None:
        raise ImportError("stable-retro is not installed")
    for game in installed_games():
        name = game.removesuffix("-v0")
        register_game(
            GameInfo(f"{FAMILY}/{name}", FAMILY, (224, 320) if "Genesis" in game else (224, 240), 60.0, 1,
                     _VIEWS.get(name, "2d-side"), f"stable-retro integration {game}", {"game": game}),
            "azote.envs.retro:RetroEnv",
        )


_register()
