"""A planning expert: plays well without learning by searching over emulator snapshots.

At each decision (every `decide_every` steps) it snapshots the game, tries every candidate gamepad action held
for `horizon` steps, scores each by reward, game progress and lost lives, restores the snapshot and returns the
winner for the next `decide_every` steps. Because the engines are deterministic, executing the returned chunk
reproduces exactly what the search saw. It acts at the game's own action rate (one action per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from azote.envs.base import GamepadEnv
from azote.gamepad import ActionChunk, Gamepad

Progress = Callable[[dict[str, Any]], float]
_RELEASE = Gamepad.neutral()


@dataclass
class SearchProfile:
    """What the expert tries and values in one family of games."""

    candidates: list[Gamepad]
    horizon: int = 24  # steps each candidate is simulated for
    decide_every: int = 4  # steps executed between two searches
    # After its first `decide_every` steps a candidate continues by repeating itself and, if set, by releasing
    # everything; its value is the better of the two (move a little, then wait: what Breakout needs).
    try_release: bool = True
    progress: Progress | None = None  # a game variable that grows as the player advances (Mario: x)
    progress_weight: float = 1.0
    life_penalty: float = 1000.0
    stickiness: float = 0.8  # chance that a tie keeps the previous action
    name: str = "planner"
    lost_life: Callable[[dict[str, Any], dict[str, Any]], bool] = field(default=lambda before, after: False)


class PlanningExpert:
    """An `Agent` that needs the environment it plays (it searches over that environment's snapshots)."""

    def __init__(self, env: GamepadEnv, profile: SearchProfile, seed: int | None = None) -> None:
        if not env.supports_state:
            raise ValueError(f"{env.game.id}: the planning expert needs snapshots, which this engine does not provide")
        self.env, self.profile = env, profile
        self.name = "expert"
        self._rng = np.random.default_rng(seed)
        self._previous = 0
        self._info: dict[str, Any] = {}
        self.searched_steps = 0

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._previous = 0
        self._info = {}

    def _rollout(self, action: Gamepad, then: Gamepad, start_info: dict[str, Any]) -> float:
        p = self.profile
        value, info = 0.0, start_info
        for t in range(p.horizon):
            _, reward, terminated, truncated, after = self.env.step(action if t < p.decide_every else then)
            self.searched_steps += 1
            value += reward
            if p.lost_life(info, after) or (terminated and not after.get("flag_get") and not after.get("level_complete")):
                # an early death is worse than a late one: the search prefers to postpone what it cannot avoid
                return value - p.life_penalty * (1.0 + (p.horizon - t) / p.horizon)
            info = after
            if terminated or truncated:
                break
        if p.progress is not None and start_info:
            value += p.progress_weight * (p.progress(info) - p.progress(start_info))
        return value

    def act(self, frame: np.ndarray) -> ActionChunk:
        p = self.profile
        snapshot = self.env.get_state()
        start_info = self.env.last_info
        values = np.full(len(p.candidates), -np.inf)
        for i, action in enumerate(p.candidates):
            for then in (action, _RELEASE) if p.try_release and not action.is_neutral() else (action,):
                values[i] = max(values[i], self._rollout(action, then, start_info))
                self.env.set_state(snapshot)
        best = np.flatnonzero(values >= values.max() - 1e-9)
        # Ties mostly keep the previous action (steadier, more human-like input); sometimes, and whenever the
        # previous one is not among the best, a random best one, so that a game where nothing matters within
        # the horizon (serving in Breakout) still gets played.
        keep = self._previous in best and self._rng.random() < p.stickiness
        choice = self._previous if keep else int(self._rng.choice(best))
        self._previous = choice
        return ActionChunk.stack([p.candidates[choice]] * p.decide_every)
