"""The one small interface every actor implements (random, planning expert, trained policy, remote server):
`act(frame) -> ActionChunk`, a chunk of one or more future gamepad actions for the frame it was given."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

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
