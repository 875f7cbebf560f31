"""Frames of games played by a random player: the backgrounds that overlays are drawn over when the labeller is
trained or evaluated (what a streamer's video shows under the overlay)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from azote.agents import RandomAgent
from azote.envs import make
from azote.play.loop import play_episode

SKIPPED = 30  # the first steps of an episode (title screens, fade-ins) are not kept


def game_frames(games: list[str], frames: int = 500, stride: int = 2, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """`frames` frames per game ([N, H, W, 3] uint8), every `stride`-th step of random play; a game whose engine
    is not installed here is skipped (said through `log`)."""
    out: dict[str, np.ndarray] = {}
    for game in games:
        try:
            env = make(game)
        except Exception as exc:  # noqa: BLE001 - an engine that is not installed here: use the other games
            log(f"backgrounds: skipping {game} ({exc})")
            continue
        got: list[np.ndarray] = []
        episode = 0
        try:
            while len(got) < frames and episode < 20:
                for step in play_episode(env, RandomAgent(seed=seed + episode, press_p=0.3),
                                         (frames - len(got)) * stride + SKIPPED, seed=seed + episode):
                    if step.index >= SKIPPED and step.index % stride == 0:
                        got.append(step.frame)
                episode += 1
        finally:
            env.close()
        if got:
            out[game] = np.stack(got[:frames])
            log(f"backgrounds: {game} {len(got[:frames])} frames")
    return out
