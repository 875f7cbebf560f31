"""Native Linux games (Debian packages) under a private Xvfb display, stepped frame-exactly through a clock
shim preloaded into the game (`shim/clockshim.c`): `gym.make("azote/native.neverball")`.

Wrap another OpenGL game with one `NativeGame` and `register_native_game(...)`; see the README section
"Native Linux games". A Windows game you own runs under Wine: `windows_game(name, exe, ...)` (azote.envs.native.wine,
README "Windows games under Wine"). System packages: `sudo bash scripts/native-deps.sh`.
"""

from __future__ import annotations

from azote.envs.base import GameInfo
from azote.envs.family import Family
from azote.envs.native.env import FAMILY, GAMES, NativeEnv, NativeGameError
from azote.envs.native.game import InputProfile, NativeGame, PadProfile, StickKeys, StickMouse
from azote.envs.native.games import GAMES as _SHIPPED
from azote.envs.native.wine import WindowsGame, windows_game
from azote.envs.registry import register_family, register_game

__all__ = [
    "FAMILY", "GAMES", "InputProfile", "NativeEnv", "NativeGame", "NativeGameError", "PadProfile", "StickKeys",
    "StickMouse", "WindowsGame", "register_native_game", "windows_game",
]


def register_native_game(game: NativeGame, max_episode_steps: int | None = None) -> GameInfo:
    """Makes `game` available as `azote/native/<name>` (gym.make, azote.envs.make, `azote games`)."""
    GAMES[game.name] = game
    h, w = game.resolution
    info = GameInfo(f"{FAMILY}/{game.name}", FAMILY, (h, w), game.fps, 1, game.view, game.description,
                    {"game": game.name})
    register_game(info, "azote.envs.native.env:NativeEnv", max_episode_steps)
    return info


# Each game's own variables (not known before it is opened); no snapshots, so no planning.
register_family(Family(FAMILY, variables=set(), planning=None))


def _register() -> None:
    # Every shipped game is registered, installed or not, so a suite naming it loads anywhere; making one that
    # cannot run here raises `GameUnavailable` saying what to install.
    for game in _SHIPPED:
        register_native_game(game)


_register()
