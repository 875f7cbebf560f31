"""Atari 2600 through ale-py: every ROM ale-py ships, full 18-action set.

Seeds and stochasticity follow the Atari evaluation protocols: `reset(seed=s)` seeds ALE and takes 0-30 no-op
steps drawn from `s` (`noop_max`, the random no-op starts of the DQN protocol; `noop_max=0` turns them off), so
two seeds start differently and one seed always the same. Sticky actions, as ALE v5 has them, are available:
`repeat_action_probability=0.25` (off by default: Azote's experts plan on a deterministic game).

Mapping (gamepad -> Atari joystick):

| gamepad                                         | Atari                         |
| ----------------------------------------------- | ----------------------------- |
| d-pad, or left stick past the dead zone (0.3)   | joystick direction (8 ways)   |
| south (A) or east (B)                           | fire                          |
| every other button, right stick                 | nothing                       |

One step is `frameskip` emulator frames (default 1: 60 actions per second, the released model's rate).
`info`: `lives`, `ram` (the 128 bytes of RAM, for success checks), `frame`, `score`.

For Gymnasium's Atari wrappers (`AtariPreprocessing`), the adapter also has ALE's names: `ale`,
`get_action_meanings()`, and `step(i)` with an ALE action index `i` (0 is NOOP) besides the gamepad.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from azote.envs.base import GameInfo, GamepadEnv
from azote.envs.family import Family, Planning, distinct, joystick_candidates, lives_dropped
from azote.envs.registry import register_family, register_game
from azote.gamepad import BUTTON_INDEX, Gamepad, direction

FAMILY = "atari"
RESOLUTION = (210, 160)
FPS = 60.0
_FIRE_BUTTONS = (BUTTON_INDEX["south"], BUTTON_INDEX["east"])
# ALE action index for [dy + 1][dx + 1][fire]; the order of ale_py.Action.
_ACTIONS = np.array(
    [
        [[7, 15], [2, 10], [6, 14]],  # up-left, up, up-right
        [[4, 12], [0, 1], [3, 11]],  # left, none, right
        [[9, 17], [5, 13], [8, 16]],  # down-left, down, down-right
    ],
    dtype=np.int64,
)
# Games whose view is not a side view (for the benchmark's view labels); the rest are treated as 2d-side.
_TOP_DOWN = {
    "alien", "amidar", "asteroids", "atlantis", "bank_heist", "berzerk", "boxing", "centipede", "crazy_climber",
    "demon_attack", "frostbite", "gopher", "gravitar", "ms_pacman", "pacman", "space_invaders", "venture",
    "wizard_of_wor", "zaxxon", "breakout", "pong", "freeway", "galaxian", "video_checkers", "tennis",
    "ice_hockey", "fishing_derby", "assault", "carnival", "phoenix", "qbert", "tutankham", "beam_rider",
    "seaquest", "river_raid", "riverraid", "journey_escape", "road_runner", "skiing", "surround",
}
_FIRST_PERSON = {"battle_zone", "robotank", "enduro"}  # first-person or behind-the-vehicle 3D views


def camel(rom_id: str) -> str:
    return "".join(part.capitalize() for part in rom_id.split("_"))


class AtariEnv(GamepadEnv):
    NOOP_MAX = 30
    MAPPING = (
        ("d-pad / left stick (dead zone 0.3)", "joystick direction"),
        ("south, east", "fire"),
    )

    def __init__(
        self,
        game_id: str,
        rom: str,
        frameskip: int = 1,
        repeat_action_probability: float = 0.0,
        mode: int | None = None,
        difficulty: int | None = None,
        max_episode_frames: int = 108_000,
        render_mode: str | None = "rgb_array",
        noop_max: int | None = None,
    ) -> None:
        from ale_py import ALEInterface, LoggerMode, roms

        if frameskip < 1:
            raise ValueError(f"frameskip must be >= 1, got {frameskip}")
        info = GameInfo(game_id, FAMILY, RESOLUTION, FPS / frameskip, frameskip, _view(rom))
        super().__init__(info, render_mode, noop_max)
        ALEInterface.setLoggerMode(LoggerMode.Error)
        self._ale = ALEInterface()
        self._rom_path = str(roms.get_rom_path(rom))
        self._frameskip = frameskip
        self._settings = (repeat_action_probability, mode, difficulty, max_episode_frames)
        self._seed = 0
        self._load(self._seed)

    def _load(self, seed: int) -> None:
        from ale_py import ALEState  # noqa: F401  (the module must be imported for loadROM)

        ale = self._ale
        sticky, mode, difficulty, max_frames = self._settings
        ale.setInt("random_seed", int(seed) % (2**31))
        ale.setFloat("repeat_action_probability", float(sticky))
        ale.setInt("frame_skip", 1)
        ale.setInt("max_num_frames_per_episode", int(max_frames))
        ale.loadROM(self._rom_path)
        if mode is not None:
            ale.setMode(mode)
        if difficulty is not None:
            ale.setDifficulty(difficulty)
        ale.reset_game()

    @property
    def ale(self) -> Any:
        """The ALE interface (what Gymnasium's Atari wrappers read lives and screens from)."""
        return self._ale

    def get_action_meanings(self) -> list[str]:
        """ALE's names of its 18 actions, by index (what `step` accepts as an int)."""
        from ale_py import Action

        return [Action(i).name for i in range(18)]

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        # An ALE action index (Gymnasium's Atari wrappers send 0 for a no-op) stands for the gamepad state that
        # maps to it, so the mapping stays the one place that decides what the game receives.
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
            if not 0 <= action < 18:
                raise ValueError(f"an ALE action index is 0-17, got {action}")
            action = _PADS[int(action)]
        return super().step(action)

    def map_action(self, action: Gamepad) -> int:
        dx, dy = direction(action)
        fire = int(action.buttons[_FIRE_BUTTONS[0]] | action.buttons[_FIRE_BUTTONS[1]])
        return int(_ACTIONS[dy + 1, dx + 1, fire])

    def minimal_actions(self) -> list[int]:
        """The ALE actions this game reacts to (the full set of 18 is accepted; many are duplicates)."""
        return [int(a.value) for a in self._ale.getMinimalActionSet()]

    def _info(self) -> dict[str, Any]:
        return {"lives": self._ale.lives(), "ram": self._ale.getRAM()}

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        if seed is not None and seed != self._seed:
            self._seed = seed
            self._load(seed)
        else:
            self._ale.reset_game()
        return self._ale.getScreenRGB(), self._info()

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        ale = self._ale
        native = self.map_action(action)
        reward = 0.0
        for _ in range(self._frameskip):
            reward += ale.act(native)
            if ale.game_over():
                break
        truncated = ale.game_truncated()
        return ale.getScreenRGB(), reward, ale.game_over() and not truncated, truncated, self._info()

    def get_state(self) -> bytes:
        return self._pack_state(self._ale.cloneState(include_rng=True).serialize())

    def set_state(self, state: bytes) -> np.ndarray:
        from ale_py import ALEState

        engine, _ = self._unpack_state(state)
        self._ale.restoreState(ALEState(engine))
        return self._frame

    def close(self) -> None:
        self._ale = None  # type: ignore[assignment]


def _pad_for(index: int) -> Gamepad:
    """The gamepad state `map_action` turns into ALE action `index` (d-pad for the direction, south for fire)."""
    (dy, dx, fire), = np.argwhere(_ACTIONS == index)
    pressed = ["south"] if fire else []
    pressed += {0: ["dpad_up"], 2: ["dpad_down"]}.get(int(dy), [])
    pressed += {0: ["dpad_left"], 2: ["dpad_right"]}.get(int(dx), [])
    return Gamepad.make(pressed)


_PADS = [_pad_for(i) for i in range(18)]


def _view(rom: str) -> str:
    if rom in _FIRST_PERSON:
        return "3d"
    return "2d-top" if rom in _TOP_DOWN else "2d-side"


def rom_ids() -> list[str]:
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


# Games whose reward is too sparse for the search horizon, with a RAM variable that grows with progress.
# The weight keeps one point of reward worth more than the progress lost when the variable resets on scoring.
_PROGRESS = {
    "atari/Freeway": (lambda info: float(info["ram"][14]), 0.004),  # the chicken's height on the road
}


def _planning(env: AtariEnv) -> Planning:
    progress, weight = _PROGRESS.get(env.game.id, (None, 0.0))
    candidates = distinct(env, joystick_candidates(), allowed=set(env.minimal_actions()))
    # About 240 simulated frames per played frame: long horizons for games with few actions (Breakout
    # needs 80 frames to see a missed ball coming), shorter ones for games with all 18.
    horizon = max(24, min(80, 480 // len(candidates)))
    return Planning(candidates, horizon=horizon, decide_every=4, lost_life=lives_dropped, progress=progress,
                    progress_weight=weight, name="atari-joystick")


register_family(Family(FAMILY, variables={"lives", "ram"}, planning=_planning))


def _register() -> None:
    if importlib.util.find_spec("ale_py") is None:
        raise ImportError("ale-py is not installed")
    for rom in rom_ids():
        register_game(
            GameInfo(f"{FAMILY}/{camel(rom)}", FAMILY, RESOLUTION, FPS, 1, _view(rom), f"Atari 2600 {rom}", {"rom": rom}),
            "azote.envs.atari:AtariEnv",
        )


_register()
