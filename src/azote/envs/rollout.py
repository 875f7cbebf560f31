"""Running an agent in a game: each chunk the agent returns is executed (all of it, or its first k actions
before asking again), one gamepad action per environment step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from azote.agents import Agent
from azote.envs.base import GamepadEnv
from azote.gamepad import Gamepad


@dataclass
class Step:
    index: int
    frame: np.ndarray  # the frame the action was chosen for (what a dataset row pairs with the action)
    action: Gamepad
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


def play_episode(
    env: GamepadEnv,
    agent: Agent,
    max_steps: int,
    seed: int | None = None,
    execute: int | None = None,
    options: dict[str, Any] | None = None,
) -> Iterator[Step]:
    """Yields every step of one episode; stops at termination, truncation or `max_steps`.

    `execute` is how many actions of each chunk run before the agent sees a new frame (None: the whole chunk).
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if execute is not None and execute < 1:
        raise ValueError(f"execute must be >= 1 (or None for whole chunks), got {execute}")
    frame, info = env.reset(seed=seed, options=options)
    agent.reset(seed)
    step = 0
    while step < max_steps:
        chunk = agent.act(frame)
        if len(chunk) == 0:
            raise RuntimeError(f"agent {agent.name} returned an empty action chunk")
        for action in chunk[: execute or len(chunk)]:
            obs, reward, terminated, truncated, info = env.step(action)
            yield Step(step, frame, action, float(reward), terminated, truncated, info)
            frame = obs
            step += 1
            if terminated or truncated:
                return
            if step >= max_steps:
                return
