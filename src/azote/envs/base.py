"""`GamepadEnv`: one Gymnasium API for every game. The action is the unified gamepad; the observation is the
RGB frame (uint8, H x W x 3) at the game's native resolution."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import msgpack
import numpy as np

from azote.errors import AzoteError
from azote.gamepad import Gamepad, as_gamepad, gym_space

VIEWS = ("2d-side", "2d-top", "3d")
# The version of every Gymnasium id (`azote/atari.Pong-v0`): raised when an adapter changes what an episode is.
ENV_VERSION = 0


@dataclass(frozen=True)
class GameInfo:
    """What `azote games` lists about a registered game."""

    id: str  # "atari/Breakout": Azote's id; the Gymnasium id is `gym_id`, "azote/atari.Breakout-v0"
    family: str  # atari, doom, nes, procgen, retro, native
    resolution: tuple[int, int]  # (height, width) of the observation
    fps: float  # actions per second (game frames per second / frames_per_step)
    frames_per_step: int  # emulator/engine frames advanced by one step
    view: str = "2d-side"  # one of VIEWS
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the adapter

    @property
    def gym_id(self) -> str:
        """The versioned Gymnasium id, "azote/<family>.<name>-v<version>" (Gymnasium allows one namespace, so the
        family joins the name with a dot); the unversioned id resolves to it, as Gymnasium does for every
        versioned environment (`gym.make("azote/atari.Pong")` makes `azote/atari.Pong-v0` with a notice)."""
        return f"azote/{self.id.replace('/', '.', 1)}-v{ENV_VERSION}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gym_id"] = self.gym_id
        d["resolution"] = list(self.resolution)
        return d


class StateNotSupported(AzoteError, NotImplementedError):
    """The game's engine cannot save and restore its state."""


class GameUnavailable(AzoteError, RuntimeError):
    """A registered game that cannot run on this machine (its program or display server is not installed): says
    what to install. The benchmark counts its tasks as unavailable rather than failed."""


class GamepadEnv(gym.Env):
    """Base class of every Azote game adapter.

    Subclasses implement `_reset_game` and `_step_game`; `map_action` documents (and computes) how the
    gamepad becomes the engine's native input. `info` always carries `frame` (engine frames since reset),
    `return` (sum of rewards) and `score` (the game's own score where the adapter reads one, else the return);
    adapters add the game's own variables (lives, x position, health, kills, ...).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    # Most no-op steps a seeded reset takes before the first observation (0: the family's seed does the varying,
    # e.g. Procgen's level or ViZDoom's own seed); adapters of deterministic engines override it.
    NOOP_MAX: ClassVar[int] = 0
    # Table shown by `azote games --mapping` and in the README: gamepad input -> native input.
    MAPPING: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, game: GameInfo, render_mode: str | None = "rgb_array", noop_max: int | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.noop_max = type(self).NOOP_MAX if noop_max is None else _count("noop_max", noop_max)
        self.game = game
        self.render_mode = render_mode
        h, w = game.resolution
        self.observation_space = gym.spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        self.action_space = gym_space()
        self.metadata = {**type(self).metadata, "render_fps": game.fps}
        self._frame: np.ndarray | None = None
        self._score = 0.0
        self._steps = 0
        self.last_info: dict[str, Any] = {}  # what the last reset/step returned (planners read it)

    # --- the Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Starts an episode. A deterministic engine starts the same way every time, so the seed picks the start:
        `reset(seed=s)` takes 0..`noop_max` neutral steps, the count drawn from `s` (the random no-op starts of
        the Atari evaluation protocol), before the first observation; a reset without a seed continues the last
        seed's stream, or, if no seed was ever given, starts with no no-op (the game's own start, reproducible).
        `options={"noops": k}` takes exactly k. `info["noops"]` says how many were taken."""
        seeded = seed is not None or self._np_random is not None
        super().reset(seed=seed)
        options = dict(options or {})
        noops = options.pop("noops", None)
        if noops is not None:
            noops = _count("options['noops']", noops)
        elif seeded and self.noop_max:
            noops = int(self.np_random.integers(0, self.noop_max + 1))
        frame, info = self._reset_game(seed, options)
        idle = Gamepad.make()
        for _ in range(noops or 0):
            frame, _, terminated, truncated, info = self._step_game(idle)
            if terminated or truncated:  # a game cannot end by waiting this little; if one does, start it again
                frame, info = self._reset_game(seed, options)
                break
        self._frame, self._score, self._steps = frame, 0.0, 0
        info.setdefault("frame", 0)
        info["noops"] = noops or 0
        info["return"] = 0.0
        info.setdefault("score", 0.0)
        self.last_info = info
        return frame, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        pad = action if type(action) is Gamepad else as_gamepad(action)
        frame, reward, terminated, truncated, info = self._step_game(pad)
        self._steps += 1
        self._score += reward
        self._frame = frame
        info.setdefault("frame", self._steps * self.game.frames_per_step)
        info["return"] = self._score
        info.setdefault("score", self._score)
        self.last_info = info
        return frame, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The last frame, as a copy: a wrapper that draws on it (RecordVideo, a caption) leaves the observation
        the agent saw as it was."""
        return None if self.render_mode is None or self._frame is None else self._frame.copy()

    # --- emulator snapshots -------------------------------------------------------------------------
    @property
    def supports_state(self) -> bool:
        return type(self).get_state is not GamepadEnv.get_state

    def get_state(self) -> bytes:
        """An opaque snapshot of the whole game (bytes, so it can be stored); see `set_state`."""
        raise StateNotSupported(f"{self.game.id}: the {self.game.family} engine cannot save its state")

    def set_state(self, state: bytes) -> np.ndarray:
        """Restores a snapshot from `get_state`; returns the frame at that point."""
        raise StateNotSupported(f"{self.game.id}: the {self.game.family} engine cannot restore a state")

    # --- for subclasses -----------------------------------------------------------------------------
    def map_action(self, action: Gamepad) -> Any:
        """The engine's native input for one gamepad state."""
        raise NotImplementedError

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        raise NotImplementedError

    def _pack_state(self, engine: bytes, **extra: Any) -> bytes:
        """A snapshot: the engine's bytes plus the bookkeeping the wrapper keeps (score, steps, frame)."""
        meta = {"game": self.game.id, "score": self._score, "steps": self._steps, "frame": self._frame, **extra}
        if isinstance(self._frame, np.ndarray):
            meta["frame"] = [self._frame.tobytes(), list(self._frame.shape)]
        return msgpack.packb({"engine": engine, "meta": meta}, use_bin_type=True)

    def _unpack_state(self, state: bytes) -> tuple[bytes, dict[str, Any]]:
        """Checks a snapshot belongs to this game, restores the bookkeeping; returns (engine bytes, meta)."""
        try:
            blob = msgpack.unpackb(state, raw=False)
            engine, meta = blob["engine"], blob["meta"]
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise ValueError(f"{self.game.id}: not an Azote game snapshot ({exc})") from None
        if meta.get("game") != self.game.id:
            raise ValueError(f"snapshot is of game {meta.get('game')!r}, this environment is {self.game.id!r}")
        self._score, self._steps = float(meta["score"]), int(meta["steps"])
        data, shape = meta["frame"]
        self._frame = np.frombuffer(data, np.uint8).reshape(shape).copy()
        return engine, meta


def _count(name: str, value: Any) -> int:
    """A small non-negative whole number (no-op counts): anything else is refused, naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 100_000:
        raise ValueError(f"{name} must be a whole number from 0 to 100000, got {value!r}")
    return int(value)
