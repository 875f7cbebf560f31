"""Records the recorded solutions of the SuperTuxKart tasks of the standard suite (`stk-*`).

    python scripts/supertuxkart_solutions.py [TASK_ID ...]

A scripted driver (`DrivelineDriver`) holds the throttle and steers towards a point a few quads ahead on the
track's driveline (the centres of the quads of its main loop, read from the installed track's `quads.xml` and
`graph.xml`), from the kart's position and direction of motion in `info`. A run that succeeds is kept only if its
recorded gamepad succeeds again when replayed from reset; it is then saved as
`src/azote/bench/solutions/<task id>.npz`.
"""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from azote.bench.solutions import record_game_solutions, record_solution
from azote.bench.tasks import Task
from azote.envs.native.supertuxkart import DATA, TRACK
from azote.gamepad import ActionChunk, Gamepad


def driveline(track: str = TRACK) -> np.ndarray:
    """(n, 2) x, z of the centres of the quads of the track's main loop, in driving order."""
    root = Path(DATA) / "tracks" / track
    points: list[np.ndarray] = []
    for quad in ET.parse(root / "quads.xml").getroot().iter("quad"):
        corners = []
        for key in ("p0", "p1", "p2", "p3"):
            value = quad.get(key, "")
            if ":" in value:  # "i:j": corner j of quad i
                i, j = (int(v) for v in value.split(":"))
                corners.append(points[i][j])
            else:
                corners.append(np.array([float(v) for v in value.split()]))
        points.append(np.array(corners))
    loop = ET.parse(root / "graph.xml").getroot().find("edge-loop")
    first, last = (int(loop.get("from", 0)), int(loop.get("to", len(points) - 1))) if loop is not None else (0, len(points) - 1)
    return np.array([points[i].mean(axis=0)[[0, 2]] for i in range(first, last + 1)])


class DrivelineDriver:
    """Full throttle, steering left or right (the keyboard's digital steering) towards the driveline point
    `lookahead` quads past the nearest one, when the direction of motion is more than `tolerance` degrees off."""

    name = "stk-driveline"

    def __init__(self, env: Any, lookahead: int = 3, tolerance: float = 6.0) -> None:
        self.env, self.lookahead, self.tolerance = env.unwrapped, lookahead, tolerance
        self.points = driveline()

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, frame: np.ndarray) -> ActionChunk:
        info = self.env.native_game.reader(frame, self.env._session.home)
        steer = 0.0
        if info.get("speed", 0.0) > 5.0:
            here = np.array([info["x"], info["z"]])
            nearest = int(np.argmin(np.linalg.norm(self.points - here, axis=1)))
            target = self.points[(nearest + self.lookahead) % len(self.points)]
            want = math.degrees(math.atan2(target[0] - here[0], target[1] - here[1]))
            error = (want - info["heading"] + 180.0) % 360.0 - 180.0
            if abs(error) > self.tolerance:
                steer = 1.0 if error > 0 else -1.0  # heading is atan2(vx, vz): steering right raises it
        return ActionChunk.stack([Gamepad.make(["right_trigger"], j_left=(steer, 0.0))])


def record(task: Task) -> str | None:
    return record_solution(task, [(f"stk-driveline driver, lookahead {k}",
                                   lambda env, k=k: DrivelineDriver(env, lookahead=k)) for k in (3, 4, 2, 5)])


if __name__ == "__main__":
    record_game_solutions("native/supertuxkart", record, sys.argv[1:])
