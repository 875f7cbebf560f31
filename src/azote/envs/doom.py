"""Doom (3D) through ViZDoom, with the Freedoom WADs and scenarios that the vizdoom wheel ships.

Mapping (gamepad -> ViZDoom buttons); sticks have a radial dead zone of 0.1, rescaled beyond it:

| gamepad                      | Doom                                                          |
| ---------------------------- | ------------------------------------------------------------- |
| left stick y (up = forward)  | MOVE_FORWARD_BACKWARD_DELTA, full deflection = walking speed  |
| left stick x                 | MOVE_LEFT_RIGHT_DELTA (strafe), full deflection = walking     |
| right stick x                | TURN_LEFT_RIGHT_DELTA, full deflection = 6 degrees per tic    |
| right stick y                | LOOK_UP_DOWN_DELTA, full deflection = 3 degrees per tic       |
| d-pad up / down              | forward / backward at walking speed                           |
| d-pad left / right           | turn left / right, 3 degrees per tic (the keyboard rate)      |
| right trigger, west          | ATTACK                                                        |
| south                        | USE (doors, switches)                                         |
| east                         | JUMP                                                          |
| north                        | CROUCH                                                        |
| left trigger, left thumb     | SPEED (run: doubles movement)                                 |
| right / left shoulder        | next / previous weapon                                        |

One step is one Doom tic (35 per second). `info`: health, armor, kills, items, secrets, ammo, weapon,
x, y, z, angle, dead, hits_taken, damage_taken, frags, deaths, exited (left the map through an exit).
Snapshots replay the episode's actions from its seed (ViZDoom's save/load shifts the game by a few tics,
so it is not used): exact, at a cost that grows with the episode's length (about 1 ms per tic).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import weakref
from typing import Any

import msgpack
import numpy as np

from azote.envs.base import GameInfo, GamepadEnv
from azote.envs.family import Family, SearchMoves
from azote.envs.registry import register_family, register_game
from azote.gamepad import BUTTON_INDEX, Gamepad

FAMILY = "doom"
TICRATE = 35.0
WALK = 25.0  # MOVE_*_DELTA units per tic at walking speed (MOVE_FORWARD's speed)
TURN = 6.0  # degrees per tic at full right-stick deflection
KEY_TURN = 3.0
LOOK = 3.0
DEAD_ZONE = 0.1

SCENARIOS = {
    "basic": "shoot the monster in front of you",
    "simpler_basic": "shoot the monster in front of you (simpler textures)",
    "rocket_basic": "shoot the monster with a rocket launcher",
    "deadly_corridor": "reach the vest at the end of a corridor full of monsters",
    "defend_the_center": "turn and shoot monsters coming from every side",
    "defend_the_line": "shoot monsters coming towards a line",
    "health_gathering": "survive on an acid floor by picking up medikits",
    "health_gathering_supreme": "health gathering in a maze with poison vials",
    "my_way_home": "find the vest in a maze",
    "predict_position": "hit a moving monster with a rocket",
    "take_cover": "dodge fireballs",
    "deathmatch": "deathmatch against monsters with weapons to pick up",
}
# Freedoom maps: Phase 1 (Doom 1 layout, E1M1..E4M9) and Phase 2 (Doom 2 layout, MAP01..MAP32).
FREEDOOM_MAPS = {
    "freedoom1": [f"E{e}M{m}" for e in range(1, 5) for m in range(1, 10)],
    "freedoom2": [f"MAP{m:02d}" for m in range(1, 33)],
}
RESOLUTIONS = {(240, 320): "RES_320X240", (480, 640): "RES_640X480", (120, 160): "RES_160X120", (600, 800): "RES_800X600"}

_B = BUTTON_INDEX
_VARIABLES = (
    ("health", "HEALTH"), ("armor", "ARMOR"), ("kills", "KILLCOUNT"), ("items", "ITEMCOUNT"),
    ("secrets", "SECRETCOUNT"), ("ammo", "SELECTED_WEAPON_AMMO"), ("weapon", "SELECTED_WEAPON"),
    ("x", "POSITION_X"), ("y", "POSITION_Y"), ("z", "POSITION_Z"), ("angle", "ANGLE"), ("dead", "DEAD"),
    ("hits_taken", "HITS_TAKEN"), ("damage_taken", "DAMAGE_TAKEN"), ("frags", "FRAGCOUNT"),
    ("deaths", "DEATHCOUNT"),
)
_BUTTONS = (
    "MOVE_FORWARD_BACKWARD_DELTA", "MOVE_LEFT_RIGHT_DELTA", "TURN_LEFT_RIGHT_DELTA", "LOOK_UP_DOWN_DELTA",
    "ATTACK", "USE", "JUMP", "CROUCH", "SPEED", "SELECT_NEXT_WEAPON", "SELECT_PREV_WEAPON",
)


def _radial(stick: np.ndarray) -> tuple[float, float]:
    """Radial dead zone: zero inside DEAD_ZONE, rescaled to reach 1 at the rim."""
    x, y = float(stick[0]), float(stick[1])
    r = (x * x + y * y) ** 0.5
    if r <= DEAD_ZONE:
        return 0.0, 0.0
    k = min(1.0, (r - DEAD_ZONE) / (1.0 - DEAD_ZONE)) / r
    return x * k, y * k


class DoomEnv(GamepadEnv):
    MAPPING = (
        ("left stick y / d-pad up-down", "move forward/backward (walking speed at full deflection)"),
        ("left stick x", "strafe"),
        ("right stick x / d-pad left-right", "turn (6 deg/tic full stick, 3 deg/tic d-pad)"),
        ("right stick y", "look up/down"),
        ("right trigger, west", "attack"),
        ("south", "use"),
        ("east", "jump"),
        ("north", "crouch"),
        ("left trigger, left thumb", "run"),
        ("right/left shoulder", "next/previous weapon"),
    )

    def __init__(
        self,
        game_id: str,
        scenario: str | None = None,
        wad: str | None = None,
        map: str | None = None,  # noqa: A002 (the Doom term)
        resolution: tuple[int, int] = (240, 320),
        skill: int | None = None,
        episode_timeout: int | None = None,
        render_hud: bool | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        import vizdoom as vzd

        res = tuple(resolution)
        if res not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)} (height, width), got {resolution}")
        view = "3d"
        super().__init__(GameInfo(game_id, FAMILY, res, TICRATE, 1, view), render_mode)  # type: ignore[arg-type]
        g = vzd.DoomGame()
        # ViZDoom writes its ini next to the working directory unless told otherwise.
        self._tmp = tempfile.mkdtemp(prefix="azote-doom-")
        if scenario is not None:
            g.load_config(os.path.join(vzd.scenarios_path, f"{scenario}.cfg"))
        else:
            if wad not in FREEDOOM_MAPS or map not in FREEDOOM_MAPS[wad]:
                raise ValueError(f"unknown Freedoom map {wad}/{map}")
            g.load_config(os.path.join(vzd.scenarios_path, f"{wad}.cfg"))
            g.set_doom_game_path(os.path.join(os.path.dirname(vzd.__file__), f"{wad}.wad"))
            g.set_doom_map(map)
            g.set_audio_buffer_enabled(False)
            g.set_automap_buffer_enabled(False)
            g.set_episode_timeout(int(episode_timeout or TICRATE * 60 * 5))
        if episode_timeout is not None:
            g.set_episode_timeout(int(episode_timeout))
        if skill is not None:
            g.set_doom_skill(int(skill))
        if render_hud is not None:
            g.set_render_hud(bool(render_hud))
        g.set_doom_config_path(os.path.join(self._tmp, "vizdoom.ini"))
        g.set_screen_resolution(getattr(vzd.ScreenResolution, RESOLUTIONS[res]))
        g.set_screen_format(vzd.ScreenFormat.RGB24)
        g.set_window_visible(False)
        g.set_sound_enabled(False)
        g.set_mode(vzd.Mode.PLAYER)
        g.set_available_buttons([getattr(vzd.Button, b) for b in _BUTTONS])
        g.set_available_game_variables([getattr(vzd.GameVariable, v) for _, v in _VARIABLES])
        g.init()
        self._game = g
        # The engine writes its ini when it shuts down: stop it before removing the directory, also when the env
        # is garbage-collected without close().
        self._finalizer = weakref.finalize(self, _shutdown, g, self._tmp)
        self._seed = 0
        self._history: list[list[float]] = []
        self._last_frame = np.zeros((*res, 3), np.uint8)
        self._last_vars: dict[str, Any] = {}

    def map_action(self, action: Gamepad) -> list[float]:
        b = action.buttons
        lx, ly = _radial(action.j_left)
        rx, ry = _radial(action.j_right)
        run = 2.0 if (b[_B["left_trigger"]] or b[_B["left_thumb"]]) else 1.0
        forward = max(-1.0, min(1.0, -ly + int(b[_B["dpad_up"]]) - int(b[_B["dpad_down"]])))
        turn = rx * TURN + (int(b[_B["dpad_right"]]) - int(b[_B["dpad_left"]])) * KEY_TURN
        return [
            forward * WALK * run,
            lx * WALK * run,
            turn,
            ry * LOOK,
            float(b[_B["right_trigger"]] | b[_B["west"]]),
            float(b[_B["south"]]),
            float(b[_B["east"]]),
            float(b[_B["north"]]),
            0.0,  # SPEED is applied through the deltas above (delta moves ignore the run key)
            float(b[_B["right_shoulder"]]),
            float(b[_B["left_shoulder"]]),
        ]

    def _observe(self) -> tuple[np.ndarray, dict]:
        state = self._game.get_state()
        if state is not None:
            self._last_frame = state.screen_buffer
            self._last_vars = {name: float(v) for (name, _), v in zip(_VARIABLES, state.game_variables)}
        info = dict(self._last_vars)
        info["dead"] = bool(self._game.is_player_dead())
        return self._last_frame, info

    def _reset_game(self, seed: int | None, options: dict[str, Any]) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._seed = int(seed)
        self._game.set_seed(self._seed % (2**31))
        self._game.new_episode()
        self._history = []
        frame, info = self._observe()
        info["exited"] = False
        return frame, info

    def _step_game(self, action: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        native = self.map_action(action)
        self._history.append(native)
        reward = float(self._game.make_action(native, 1))
        frame, info = self._observe()
        finished = self._game.is_episode_finished()
        timeout = finished and self._game.is_episode_timeout_reached()
        info["exited"] = finished and not timeout and not info["dead"]
        return frame, reward, finished and not timeout, timeout, info

    def get_state(self) -> bytes:
        history = np.asarray(self._history, np.float32).reshape(-1, len(_BUTTONS))
        return self._pack_state(msgpack.packb([self._seed, history.tobytes()]))

    def set_state(self, state: bytes) -> np.ndarray:
        engine, _ = self._unpack_state(state)
        seed, raw = msgpack.unpackb(engine)
        self._seed = int(seed)
        self._game.set_seed(self._seed % (2**31))
        self._game.new_episode()
        self._history = np.frombuffer(raw, np.float32).reshape(-1, len(_BUTTONS)).tolist()
        for native in self._history:
            self._game.make_action(native, 1)
        self._observe()
        return self._frame

    def close(self) -> None:
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer()
            self._game = None  # type: ignore[assignment]


def _shutdown(game: Any, directory: str) -> None:
    game.close()
    shutil.rmtree(directory, ignore_errors=True)


register_family(Family(
    FAMILY,
    variables={"health", "armor", "kills", "items", "secrets", "ammo", "weapon", "x", "y", "z", "angle", "dead",
               "hits_taken", "damage_taken", "frags", "deaths", "exited"},
    planning=None,  # the planning expert has no profile for Doom; its tasks are solved by scripts and the search
    # The novelty search needs walking and turning (and walking while turning, and shooting).
    search_moves=SearchMoves((
        Gamepad.make(j_left=(0, -1)), Gamepad.make(j_right=(1, 0)), Gamepad.make(j_right=(-1, 0)),
        Gamepad.make(j_left=(0, -1), j_right=(0.5, 0)), Gamepad.make(j_left=(0, -1), j_right=(-0.5, 0)),
        Gamepad.make(["right_trigger"]),
    ), hold=8),
))


def _register() -> None:
    if importlib.util.find_spec("vizdoom") is None:
        raise ImportError("vizdoom is not installed")
    for name, what in SCENARIOS.items():
        register_game(
            GameInfo(f"{FAMILY}/{name}", FAMILY, (240, 320), TICRATE, 1, "3d", f"ViZDoom scenario: {what}",
                     {"scenario": name}),
            "azote.envs.doom:DoomEnv",
        )
    for wad, maps in FREEDOOM_MAPS.items():
        for m in maps:
            register_game(
                GameInfo(f"{FAMILY}/{wad}-{m}", FAMILY, (240, 320), TICRATE, 1, "3d", f"Freedoom {wad[-1]} map {m}",
                         {"wad": wad, "map": m}),
                "azote.envs.doom:DoomEnv",
            )


_register()
