"""The one small interface every actor implements, and the one way to make one from its name.

An `Agent` has a `name`, `reset(seed)` at the start of every episode and `act(frame) -> ActionChunk`: a chunk of
one or more future gamepad actions for the frame it was given. Implemented by `RandomAgent` and `ScriptedAgent`
here, the planning expert (`azote.experts`), a trained `azote.policy.Policy` and a served one
(`azote.serving.RemotePolicy`). `make_agent(spec, env)` makes one from `random`, `expert`, a checkpoint directory
or `tcp://HOST:PORT`; `check_spec(spec)` refuses a spec that names nothing usable before anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from azote.envs.base import GamepadEnv
from azote.errors import AzoteError
from azote.gamepad import NUM_BUTTONS, ActionChunk


@runtime_checkable
class Agent(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None:
        """Called at the start of every episode."""

    def act(self, frame: np.ndarray) -> ActionChunk:
        """A chunk of gamepad actions to execute from this frame on (at least one)."""


class RandomAgent:
    """Random gamepad input that looks like a person mashing a pad: each button is held with probability
    `press_p`, each stick points in a random direction half of the time, and the whole state is held for a
    random number of frames (geometric, mean `mean_hold`)."""

    name = "random"

    def __init__(self, seed: int | None = None, press_p: float = 0.15, mean_hold: float = 8.0, chunk: int = 16) -> None:
        self.press_p, self.mean_hold, self.chunk = press_p, mean_hold, chunk
        self._rng = np.random.default_rng(seed)
        self._state = self._draw()
        self._left = 0

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._left = 0

    def _draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self._rng
        buttons = (rng.random(NUM_BUTTONS) < self.press_p).astype(np.uint8)
        sticks = []
        for _ in range(2):
            if rng.random() < 0.5:
                sticks.append(np.zeros(2, np.float32))
            else:
                angle, r = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0)
                sticks.append(np.array([np.cos(angle) * r, np.sin(angle) * r], np.float32))
        return buttons, sticks[0], sticks[1]

    def act(self, frame: np.ndarray) -> ActionChunk:
        rows = []
        for _ in range(self.chunk):
            if self._left <= 0:
                self._state = self._draw()
                self._left = int(self._rng.geometric(1.0 / self.mean_hold))
            self._left -= 1
            rows.append(self._state)
        return ActionChunk(
            np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])
        )


class ScriptedAgent:
    """Plays a fixed action sequence (a task's recorded solution), then holds nothing."""

    name = "scripted"

    def __init__(self, actions: ActionChunk, chunk: int = 16) -> None:
        self.actions, self.chunk, self._at = actions, chunk, 0

    def reset(self, seed: int | None = None) -> None:
        self._at = 0

    def act(self, frame: np.ndarray) -> ActionChunk:
        part = self.actions[self._at : self._at + self.chunk]
        self._at += len(part)
        return part if len(part) else ActionChunk.neutral(self.chunk)


class AgentSpecError(AzoteError, ValueError):
    """A policy spec that names nothing usable."""


_SPECS = "use random, expert, a checkpoint directory (with config.json) or tcp://HOST:PORT"


def check_spec(spec: str) -> None:
    """Refuses, in one line, a spec that cannot name an agent: before any game, worker or socket starts. A
    checkpoint's config must validate and its weights' header fit it (no weights are read)."""
    if spec in ("random", "expert") or spec.startswith("tcp://"):
        return
    from azote.training.config import run_directory_message

    run = run_directory_message(spec)  # a training run's directory is not its checkpoint
    if run is not None:
        raise AgentSpecError(run)
    path = Path(spec)
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise AgentSpecError(f"unknown policy {spec!r}: {_SPECS}")
    from azote.policy.checkpoint import check_checkpoint

    try:
        check_checkpoint(path)  # CheckpointError, ConfigError name the file and field
    except FileNotFoundError as exc:
        raise AgentSpecError(str(exc)) from None


def make_agent(spec: str, env: GamepadEnv, seed: int | None = None, **options: Any) -> Agent:
    """`random` | `expert` | a checkpoint directory | `tcp://HOST:PORT` (a running `azote serve`)."""
    if spec == "random":
        return RandomAgent(seed=seed)
    if spec == "expert":
        from azote.experts import expert_for

        return expert_for(env, seed=seed)
    check_spec(spec)
    if spec.startswith("tcp://"):
        from azote.serving.client import RemotePolicy

        return RemotePolicy(spec, **options)
    from azote.policy import Policy

    path = Path(spec)
    policy = Policy.from_pretrained(path, **options)
    if str(options.get("device", "cpu")).startswith("cpu"):
        _acting_threads()
    policy.game_id = _game_id(path, env.game.id, policy)
    policy.reset(seed)
    return policy


def _acting_threads() -> None:
    """Torch threads for a policy acting on the CPU: AZOTE_TORCH_THREADS, else 1. One frame at a time gains
    nothing from more threads (tiny: 58 ms per chunk with 1 thread, 111 ms with 2, on 2 cores), and spinning
    OpenMP threads next to the video encoder and the emulator made a recorded episode 8x slower."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("AZOTE_TORCH_THREADS", "1"))))


def _game_id(checkpoint: Path, game: str, policy: Any) -> int | None:
    """The game token a checkpoint trained with game ids knows this game by (its games.json), else none."""
    from azote.policy.checkpoint import GAMES_NAME, game_token, read_games

    if not policy.config.num_games or not (checkpoint / GAMES_NAME).is_file():
        return None
    return game_token(read_games(checkpoint), game)  # 0: the "no game" token learned by game dropout
