"""Where the recorded solutions live and how one is stored: the actions (buttons packed, sticks as float16) and
the start they play from (`azote.bench.solutions` finds and replays them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from azote.bench.tasks import Task
from azote.gamepad import ActionChunk

SOLUTIONS_DIR = Path(__file__).parent / "solutions"


def solution_path(task: Task, root: Path = SOLUTIONS_DIR) -> Path:
    return root / f"{task.id}.npz"


class Solution(NamedTuple):
    actions: ActionChunk
    episode: int = 0  # the episode whose start it plays from (its seed: `runner.episode_seed`)
    noops: int = 0  # the no-op steps taken at that start


def save_solution(task: Task, solution: Solution, root: Path = SOLUTIONS_DIR, how: str = "") -> Path:
    path = solution_path(task, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    actions = solution.actions
    np.savez_compressed(tmp, buttons=np.packbits(actions.buttons, axis=1), j_left=actions.j_left.astype(np.float16),
                        j_right=actions.j_right.astype(np.float16), how=np.array(how),
                        episode=np.array(solution.episode), noops=np.array(solution.noops))
    os.replace(tmp, path)
    return path


def load_solution(task: Task, root: Path = SOLUTIONS_DIR) -> Solution:
    with np.load(solution_path(task, root)) as z:
        buttons = np.unpackbits(z["buttons"], axis=1)[:, :17]
        actions = ActionChunk(buttons, z["j_left"].astype(np.float32), z["j_right"].astype(np.float32))
        start = {k: int(z[k]) for k in ("episode", "noops") if k in z}
    return Solution(actions, **start)
