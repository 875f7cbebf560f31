"""Procgen: 16 procedurally generated games (procgen-mirror, installed without its stale pins).

Mapping (gamepad -> Procgen's 15 actions; one action per step, so a pressed action button wins over moving):

| gamepad                                       | Procgen action                        |
| --------------------------------------------- | ------------------------------------- |
| south / east / north / west                   | D / A / W / S (fire, special actions) |
| left / right shoulder                         | Q / E                                 |
| d-pad, or left stick past the dead zone (0.3) | the 8 directions (up = jump)          |
| nothing                                       | no-op                                 |

One step is one game frame; Procgen has no wall-clock rate, so 15 actions per second is used for videos.
`reset(seed=s)` plays level `s` (the level seed) unless `options={"level": L}` is given; the level is the whole
start state, so tasks name levels never used for training. `info`: level, level_complete (set on the step that
ends an episode by finishing the level). `render_size="hires"` observes the 512x512 human render instead of
the 64x64 agent view.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from typing import Any

import msgpack
import numpy as np

from azote.envs.base import GameInfo, GamepadEnv
from azote.envs.family import Family, Planning, SearchMoves, distinct, joystick_candidates
from azote.envs.registry import register_family, register_game
from azote.gamepad import BUTTON_INDEX, Gamepad, direction

FAMILY = "procgen"
FPS = 15.0
GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot", "heist",
    "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)
_TOP_DOWN = {"bigfish", "bossfight", "caveflyer", "chaser", "dodgeball", "fruitbot", "heist", "leaper", "maze",
             "miner", "plunder", "starpilot"}
# Procgen's action index for [dy + 1][dx + 1] and for its special keys.
_MOVES = np.array([[2, 5, 8], [1, 4, 7], [0, 3, 6]], dtype=np.int64)
_KEYS = tuple((BUTTON_INDEX[b], a) for b, a in (
    ("south", 9), ("east", 10), ("north", 11), ("west", 12), ("left_shoulder", 13), ("right_shoulder", 14)))


class ProcgenEnv(GamepadEnv):
    MAPPING = (
        ("south, east, north, west", "D, A, W, S"),
        ("left/right shoulder", "Q, E"),
        ("d-pad / left stick (dead zone 0.3)", "8 directions (up = jump)"),
    )

    def __init__(self, game_id: str, env_name: str, distribution_mode: str = "easy", render_size: str = "native",
                 render_mode: str | None = "rgb_array") -> None:
        if env_name not in GAMES:
            raise ValueError(f"unknown procgen game {env_name!r}; games are {', '.join(GAMES)}")
        if render_size not in ("native", "hires"):
            raise ValueError(f"render_size must be 'native' or 'hires', got {render_size!r}")
        res = (64, 64) if render_size == "native" else (512, 512)
        view = "2d-top" if env_name in _TOP_DOWN else "2d-side"
        super().__init__(GameInfo(game_id, FAMILY, res, FPS, 1, view), render_mode)
        self._name, self._mode, self._hires = env_name, distribution_mode, render_size == "hires"
        self._level = 0
        self._env: Any = None
        self._at_start = False  # the engine sits on the first frame of an episode (it restarts by itself)

    def _build(self, level: int) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # procgen imports the retired gym package, which prints a notice
            from procgen import ProcgenGym3Env

        kwargs = {"render_mode": "rgb_array"} if self._hires else {}
        self._env = ProcgenGym3Env(num=1, env_name=self._name, start_level=int(level), num_levels=1,
                                   distribution_mode=self._mode, rand_seed=int(level) % (2**31), **kwargs)
        self._level = int(level)

    def map_action(self, action: Gamepad) -> int:
        for button, native in _KEYS:
            if action.buttons[button]:
                return native
        dx, dy = direction(action)
        return int(_MOVES[dy + 1, dx + 1])

    def _observe(self) -> tuple[np.ndarray, float, bool, dict]:
        reward, obs, first = self._env.observe()
        first = bool(first[0])
        # get_info costs as much as a game step; it is only needed for the hires frame or at an episode's end.
        info = self._env.get_info()[0] if (first or self._hires) else None
        frame = info["rgb"] if self._hires else obs["rgb"][0]
        extra = {"level": self._level, "level_complete": bool(info["prev_level_complete"]) if first else False}
        return np.array(frame, copy=True), float(reward[0]), first, extra

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        level = int(options.get("level", seed if seed is not None else self._level))
        if not (self._at_start and level == self._level):
            self._build(level)
        self._at_start = False
        frame, _, _, info = self._observe()
        info["level_complete"] = False  # a fresh env reports itself as just started
        return frame, info

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._env.act(np.array([self.map_action(action)]))
        # Procgen restarts by itself: `first` marks the frame after an episode ended.
        frame, reward, first, info = self._observe()
        self._at_start = first
        return frame, reward, first, False, info

    def get_state(self) -> bytes:
        return self._pack_state(msgpack.packb([self._level, self._env.callmethod("get_state")[0]]))

    def set_state(self, state: bytes) -> np.ndarray:
        engine, _ = self._unpack_state(state)
        level, raw = msgpack.unpackb(engine)
        if self._env is None or level != self._level:
            self._build(level)
        self._env.callmethod("set_state", [raw])
        self._at_start = False
        return self._frame

    def close(self) -> None:
        self._env = None


register_family(Family(
    FAMILY,
    variables={"level", "level_complete"},
    planning=Planning(lambda env: distinct(env, joystick_candidates(fire=())), horizon=40, decide_every=4,
                      name="procgen-moves"),
    # Procgen moves whole cells per step, so the novelty search holds each move 2 steps (mazes need fine turns).
    search_moves=SearchMoves(tuple(Gamepad.make(j_left=m) for m in ((0, -1), (0, 1), (-1, 0), (1, 0))), hold=2),
))


def _register() -> None:
    if importlib.util.find_spec("procgen") is None:
        raise ImportError("procgen-mirror is not installed (pip install --no-deps procgen-mirror gym3)")
    for name in GAMES:
        view = "2d-top" if name in _TOP_DOWN else "2d-side"
        register_game(
            GameInfo(f"{FAMILY}/{name}", FAMILY, (64, 64), FPS, 1, view, f"Procgen {name} (easy)",
                     {"env_name": name}),
            "azote.envs.procgen:ProcgenEnv",
        )


_register()
