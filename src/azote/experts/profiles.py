"""Search profiles per game family: the candidate actions, what counts as progress, what counts as dying."""

from __future__ import annotations

from typing import Any

from azote.envs.base import GamepadEnv
from azote.experts.planner import SearchProfile
from azote.gamepad import Gamepad

_DIRS = {
    "": (0.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0),
    "up-left": (-1.0, -1.0), "up-right": (1.0, -1.0), "down-left": (-1.0, 1.0), "down-right": (1.0, 1.0),
}


def joystick_candidates(fire: tuple[str, ...] = ("south",)) -> list[Gamepad]:
    """Every stick direction (and centre), with and without each fire button."""
    out = []
    for stick in _DIRS.values():
        out.append(Gamepad.make(j_left=stick))
        for button in fire:
            out.append(Gamepad.make([button], j_left=stick))
    return out


def distinct(env: GamepadEnv, candidates: list[Gamepad], allowed: set | None = None) -> list[Gamepad]:
    """One candidate per distinct native input (and only inputs the game reacts to, when `allowed` says so)."""
    seen, out = set(), []
    for c in candidates:
        native = env.map_action(c)
        key = native.tobytes() if hasattr(native, "tobytes") else native
        if key not in seen and (allowed is None or native in allowed):
            seen.add(key)
            out.append(c)
    return out


def _lives_dropped(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return "lives" in before and after.get("lives", 0) < before["lives"]


# Atari games whose reward is too sparse for the search horizon, with a RAM variable that grows with progress.
# The weight keeps one point of reward worth more than the progress lost when the variable resets on scoring.
_ATARI_PROGRESS = {
    "atari/Freeway": (lambda info: float(info["ram"][14]), 0.004),  # the chicken's height on the road
}


def profile_for(env: GamepadEnv) -> SearchProfile:
    family = env.game.family
    if family == "atari":
        progress, weight = _ATARI_PROGRESS.get(env.game.id, (None, 0.0))
        candidates = distinct(env, joystick_candidates(), allowed=set(env.minimal_actions()))
        # About 240 simulated frames per played frame: long horizons for games with few actions (Breakout
        # needs 80 frames to see a missed ball coming), shorter ones for games with all 18.
        horizon = max(24, min(80, 480 // len(candidates)))
        return SearchProfile(candidates, horizon=horizon, decide_every=4, lost_life=_lives_dropped,
                             progress=progress, progress_weight=weight, name="atari-joystick")
    if family == "nes":
        run, jump = "west", "south"
        moves = [
            Gamepad.make(j_left=(1, 0)), Gamepad.make([run], j_left=(1, 0)), Gamepad.make([jump], j_left=(1, 0)),
            Gamepad.make([jump, run], j_left=(1, 0)), Gamepad.make(j_left=(-1, 0)), Gamepad.make([jump], j_left=(-1, 0)),
            Gamepad.make([jump]), Gamepad.neutral(),
        ]
        return SearchProfile(moves, horizon=36, decide_every=6, progress=lambda i: float(i.get("x", 0)),
                             progress_weight=1.0, lost_life=lambda b, a: bool(a.get("life_lost")), name="mario-runner")
    if family == "retro":
        return SearchProfile(distinct(env, joystick_candidates()), horizon=30, decide_every=4,
                             lost_life=_lives_dropped, name="retro-joystick")
    if family == "procgen":
        return SearchProfile(distinct(env, joystick_candidates(fire=())), horizon=40, decide_every=4,
                             name="procgen-moves")
    raise ValueError(f"{env.game.id}: no planning profile for the {family} family (it needs emulator snapshots)")
