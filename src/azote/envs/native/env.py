"""`NativeEnv`: a native Linux game as a `GamepadEnv`, stepped one presented frame at a time on the shim's clock."""

from __future__ import annotations

import atexit
import weakref
from typing import Any

import numpy as np

from azote.envs.base import GameInfo, GamepadEnv, GameUnavailable
from azote.envs.native.game import NativeGame
from azote.envs.native.session import GameExited, NativeGameError, Session
from azote.gamepad import Gamepad

FAMILY = "native"
# Every native game known by name (`azote/native/<name>`); `register_native_game` adds to it.
GAMES: dict[str, NativeGame] = {}
_LIVE: "weakref.WeakSet[NativeEnv]" = weakref.WeakSet()


class NativeEnv(GamepadEnv):
    """One native game under a private Xvfb display.

    `reset()` (re)starts the game and returns the first lockstep frame; each `step()` holds the gamepad's keys,
    lets the game present exactly one frame and advances its clock by one frame period (1/fps s).
    `info`: `frame` (frames since reset), `game_time` (seconds of the game's clock since lockstep began),
    `observed_time` (the last monotonic clock value the game's main thread read, s), plus the game's reader.
    A crashed or hung game raises `NativeGameError`; `reset()` then starts it again. A seeded reset lets 0-30
    frames (`noop_max`, drawn from the seed) pass with nothing pressed before the first observation.
    A game with a `PadProfile` (`NativeGame.pad`) gets the gamepad as a gamepad (analog sticks, buttons) unless
    `gamepad=False`, which plays it through its keyboard/mouse `profile` instead.
    """

    NOOP_MAX = 30

    def __init__(
        self,
        game_id: str | None = None,
        game: str | NativeGame | None = None,
        resolution: tuple[int, int] | None = None,
        fps: float | None = None,
        warmup_frames: int | None = None,
        warmup: str | None = None,
        render_mode: str | None = "rgb_array",
        noop_max: int | None = None,
        gamepad: bool | None = None,
    ) -> None:
        spec = _game_spec(game if game is not None else (game_id or "").rpartition("/")[2])
        missing = spec.missing()
        if missing is not None:
            raise GameUnavailable(missing)
        self.native_game = spec
        if gamepad and spec.pad is None:
            raise ValueError(f"native game {spec.name!r} has no gamepad profile (NativeGame.pad); gamepad=True needs one")
        self.pad = spec.pad if gamepad is not False else None
        res = tuple(int(v) for v in (resolution or spec.resolution))
        if len(res) != 2 or min(res) < 16:
            raise ValueError(f"resolution must be (height, width), got {resolution}")
        rate = float(fps or spec.fps)
        info = GameInfo(game_id or f"{FAMILY}/{spec.name}", FAMILY, res, rate, 1, spec.view, spec.description)  # type: ignore[arg-type]
        super().__init__(info, render_mode, noop_max)
        self.MAPPING = self.pad.mapping() if self.pad else spec.profile.mapping()
        self._session = Session(spec, res, rate, int(warmup_frames or spec.warmup_frames), warmup or spec.warmup,
                                pad=self.pad is not None)
        self._info: dict[str, Any] = {}  # the last observation's info
        self._finalizer = weakref.finalize(self, self._session.close)
        _LIVE.add(self)

    def map_action(self, action: Gamepad) -> tuple[set[str], tuple[int, int], tuple[int, tuple[int, ...]] | None]:
        """(keys held, mouse motion, pad state or None): the pad (`PadProfile.state`) for a game played with one,
        and then only its profile's extra keys."""
        if self.pad is not None:
            return (*self.pad.keys.native(action), self.pad.state(action))
        return (*self.native_game.profile.native(action), None)

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        s = self._session
        assert s.shm is not None
        frame = s.frame()
        period = 1e9 / self.game.fps
        info: dict[str, Any] = {
            "frame": s.shm["frames"] - s.origin[0],
            "game_time": (s.shm["vtime_ns"] - s.origin[1]) / 1e9,
            "observed_time": (s.shm["observed_ns"] - s.shm["mono_ns"]) / 1e9,
            "frame_period": period / 1e9,
        }
        if self.native_game.reader is not None:
            info.update(self.native_game.reader(frame, s.home))
        self._info = info
        return frame, info

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        self._session.start()
        return self._observe()

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        held, motion, pad = self.map_action(action)
        try:
            self._session.step(held, motion, pad)
        except GameExited as exc:
            if exc.code != 0 or self._frame is None:
                raise
            # The game quit by itself (its menu's quit or abort, pressed by the player): the episode is over,
            # as when the game ends it; the last frame stays the observation.
            return self._frame, 0.0, True, False, {**self._info, "game_exited": True}
        frame, info = self._observe()
        reward = float(info.get("reward", 0.0))
        return frame, reward, bool(info.get("terminated", False)), False, info

    @property
    def pids(self) -> list[int]:
        """Processes (game, Xvfb) this environment is running."""
        return self._session.pids()

    @property
    def display(self) -> str | None:
        return self._session.xvfb.display if self._session.xvfb else None

    def close(self) -> None:
        self._finalizer()
        self._frame = None


def _game_spec(game: str | NativeGame) -> NativeGame:
    if isinstance(game, NativeGame):
        return game
    if game not in GAMES:
        raise KeyError(f"unknown native game {game!r}; known: {', '.join(sorted(GAMES))}")
    return GAMES[game]


@atexit.register
def _close_all() -> None:
    for env in list(_LIVE):
        env.close()


__all__ = ["FAMILY", "GAMES", "NativeEnv", "NativeGameError"]
