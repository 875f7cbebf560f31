"""The simulator: every game behind one Gymnasium API with one gamepad action space.

    import azote.envs, gymnasium as gym
    env = gym.make("azote/atari.Breakout-v0")       # or azote.envs.make("atari/Breakout")
"""

from azote.envs.base import VIEWS, GameInfo, GamepadEnv, GameUnavailable, StateNotSupported
from azote.envs.family import Family, Planning, SearchMoves
from azote.envs.registry import (
    game_info,
    get_family,
    list_families,
    list_games,
    make,
    missing_families,
    register_family,
    register_game,
)

__all__ = [
    "VIEWS", "Family", "GameInfo", "GameUnavailable", "GamepadEnv", "Planning", "SearchMoves", "StateNotSupported",
    "game_info", "get_family", "list_families", "list_games", "make", "missing_families", "register_family",
    "register_game",
]


def _register_all() -> None:
    # Importing the families registers their games with Gymnasium, so gym.make works after `import azote.envs`.
    list_games()


_register_all()
