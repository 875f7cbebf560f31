"""The planning expert's search profile for a game: built from what the game's family declares
(`azote.envs.Family.planning`, in its adapter module): the candidate actions, what counts as progress, what counts
as dying."""

from __future__ import annotations

from typing import Any

from azote.envs.base import GamepadEnv
from azote.envs.registry import get_family
from azote.experts.planner import SearchProfile


def profile_for(env: GamepadEnv) -> SearchProfile:
    family = env.game.family
    planning = get_family(family).planning_for(env)
    if planning is None:
        raise ValueError(f"{env.game.id}: no planning profile for the {family} family (it needs emulator snapshots)")
    extra: dict[str, Any] = {} if planning.lost_life is None else {"lost_life": planning.lost_life}
    return SearchProfile(list(planning.candidates), horizon=planning.horizon, decide_every=planning.decide_every,
                         progress=planning.progress, progress_weight=planning.progress_weight, name=planning.name,
                         **extra)
