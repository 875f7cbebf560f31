"""The one episode loop: an agent in a game, one gamepad action per environment step. Lockstep (each chunk the
agent returns runs whole, or its first k actions before it sees a new frame) or real time (a `RealtimeRunner`: the
game on a wall clock, the agent planning in the background). Recording, playing and the benchmark all run it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import gymnasium as gym

from azote.agents import Agent
from azote.play.step import Step

if TYPE_CHECKING:  # the runner is given, never made here: realtime builds on this module's Step
    from azote.play.realtime import RealtimeRunner


def play_episode(
    env: gym.Env,
    agent: Agent,
    max_steps: int,
    seed: int | None = None,
    execute: int | None = None,
    options: dict[str, Any] | None = None,
    realtime: "RealtimeRunner | None" = None,
) -> Iterator[Step]:
    """Yields every step of one episode; stops at termination, truncation or `max_steps`.

    `execute` is how many actions of each chunk run before the agent sees a new frame (None: the whole chunk).
    `realtime`: a runner bound to this game and agent, which plays the episode on its wall clock instead.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if realtime is not None:
        yield from realtime.run_episode(max_steps, seed=seed)
        return
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
