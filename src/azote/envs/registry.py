"""The game registry: every adapter's family (`register_family`: what the family declares about itself) and
games, registered with Gymnasium as `azote/<family>.<name>-v0` (the unversioned id resolves to it); Azote's own
functions take its id, `<family>/<name>`, or the Gymnasium id.

Adding a family: write its adapter module (it calls `register_family`, then `register_game` for each game) and
add the module's name to `FAMILIES`."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import gymnasium as gym

from azote.envs.base import ENV_VERSION, GameInfo, GamepadEnv
from azote.envs.family import Family

_FAMILIES: dict[str, Family] = {}
_GAMES: dict[str, GameInfo] = {}
_ENTRY_POINTS: dict[str, str] = {}
# Modules of the families (azote.envs.<name>), which register their family and games when imported; a family
# whose engine is not installed has no games.
FAMILIES = ("atari", "doom", "nes", "procgen", "retro", "native")


def register_family(family: Family) -> Family:
    """Declares a game family (its adapter module calls this when imported, before registering its games); a
    family registered again under the same name replaces the earlier declaration."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family takes a Family, got {type(family).__name__}")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """A registered family's declaration (its variables, planning, search moves)."""
    _load_families()
    if name not in _FAMILIES:
        raise KeyError(f"unknown game family {name!r}; families: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def list_families() -> list[Family]:
    _load_families()
    return list(_FAMILIES.values())


def unregister_family(name: str) -> None:
    """Removes a family and its games from Azote's and Gymnasium's registries (for tests that register one)."""
    _FAMILIES.pop(name, None)
    for game_id in [g for g, info in _GAMES.items() if info.family == name]:
        gym.registry.pop(_GAMES.pop(game_id).gym_id, None)
        _ENTRY_POINTS.pop(game_id, None)


def register_game(info: GameInfo, entry_point: str, max_episode_steps: int | None = None) -> None:
    """Adds a game of a registered family to Azote's registry and to Gymnasium's (`gym.make(info.gym_id)`)."""
    if info.family not in _FAMILIES:
        raise ValueError(f"{info.id}: its family {info.family!r} is not registered (register_family first)")
    _GAMES[info.id] = info
    _ENTRY_POINTS[info.id] = entry_point
    if info.gym_id not in gym.registry:
        gym.register(
            info.gym_id,
            entry_point=entry_point,
            kwargs={"game_id": info.id, **info.kwargs},
            max_episode_steps=max_episode_steps,
            disable_env_checker=True,
            order_enforce=False,
        )


_loaded = False


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for family in FAMILIES:
        try:
            importlib.import_module(f"azote.envs.{family}")
        except ImportError as exc:  # engine not installed: its games are simply not listed
            _MISSING[family] = str(exc)


_MISSING: dict[str, str] = {}


def list_games(family: str | None = None) -> list[GameInfo]:
    _load_families()
    return [g for g in _GAMES.values() if family is None or g.family == family]


def missing_families() -> dict[str, str]:
    """Families whose engine could not be imported, with the reason."""
    _load_families()
    return dict(_MISSING)


def _azote_id(game_id: str) -> str:
    """"atari/Breakout" from itself or from the Gymnasium id "azote/atari.Breakout(-v0)" (also the older
    "azote/atari/Breakout-v0")."""
    key = game_id.removeprefix("azote/")
    for candidate in (key, key.removesuffix(f"-v{ENV_VERSION}")):
        if candidate in _GAMES:
            return candidate
        family, dot, name = candidate.partition(".")
        if dot and "/" not in family and f"{family}/{name}" in _GAMES:
            return f"{family}/{name}"
    return key


def game_info(game_id: str) -> GameInfo:
    _load_families()
    key = _azote_id(game_id)
    if key not in _GAMES:
        close = [g for g in _GAMES if key.lower() in g.lower()][:8]
        hint = f"; did you mean {', '.join(close)}?" if close else "; `azote games` lists them"
        raise KeyError(f"unknown game {game_id!r}{hint}")
    return _GAMES[key]


def make(game_id: str, **kwargs: Any) -> GamepadEnv:
    """Builds the adapter of a game directly (no Gymnasium wrappers): `make("atari/Breakout")`."""
    info = game_info(game_id)
    module, _, attr = _ENTRY_POINTS[info.id].partition(":")
    cls: Callable[..., GamepadEnv] = getattr(importlib.import_module(module), attr)
    return cls(game_id=info.id, **{**info.kwargs, **kwargs})
