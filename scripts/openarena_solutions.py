"""Records the recorded solutions of the OpenArena tasks of the standard suite (`openarena-*`).

    python scripts/openarena_solutions.py [TASK_ID ...]

Combat tasks are played by `OpenArenaAimer` (it reads the bots' positions from the game's memory and aims the
right stick at the nearest one), navigation tasks by the bench's scripted walk-and-turn patterns. A run that
succeeds is kept only if its recorded gamepad (float16 sticks, as stored) succeeds again when replayed from
reset; it is then saved as `src/azote/bench/solutions/<task id>.npz`.
"""

from __future__ import annotations

import sys

from azote.bench.solutions import PatternAgent, record_game_solutions, record_solution, scripted_patterns
from azote.bench.tasks import Task
from azote.envs.native.openarena import OpenArenaAimer


def record(task: Task) -> str | None:
    """Plays the task until a run succeeds and replays; saves it. How it was found, or None."""
    if task.category == "combat":
        return record_solution(task, [("openarena-aimer", lambda env: OpenArenaAimer(env))])
    return record_solution(task, [(f"script {name}", lambda env, cycle=cycle: PatternAgent(cycle))
                                  for name, cycle in scripted_patterns().items() if name.startswith("walk-turn")])


if __name__ == "__main__":
    record_game_solutions("native/openarena", record, sys.argv[1:])
