"""Records the recorded solutions of the OpenArena tasks of the standard suite (`openarena-*`).

    python scripts/openarena_solutions.py [TASK_ID ...]

Combat tasks are played by `OpenArenaAimer` (it reads the bots' positions from the game's memory and aims the
right stick at the nearest one), navigation tasks by the bench's scripted walk-and-turn patterns. A run that
succeeds is kept only if its recorded gamepad (float16 sticks, as stored) succeeds again when replayed from
reset; it is then saved as `src/azote/bench/solutions/<task id>.npz`.
"""

from __future__ import annotations

import sys

from azote.bench import load_suite
from azote.bench.solutions import PatternAgent, play_for_solution, save_solution, scripted_patterns
from azote.bench.tasks import Task
from azote.envs.native.openarena import OpenArenaAimer


def record(task: Task) -> str | None:
    """Plays the task until a run succeeds and replays; saves it. How it was found, or None."""
    if task.category == "combat":
        players = [("openarena-aimer", lambda env: OpenArenaAimer(env))]
    else:
        players = [(f"script {name}", lambda env, cycle=cycle: PatternAgent(cycle))
                   for name, cycle in scripted_patterns().items() if name.startswith("walk-turn")]
    for how, player in players:
        result, solution = play_for_solution(task, player)
        print(f"{task.id}: {how}: {result['reason']} after {result['steps']} steps", flush=True)
        if solution is not None:
            save_solution(task, solution, how=how)
            return how
    return None


def main() -> None:
    tasks = [t for t in load_suite("standard").tasks if t.game == "native/openarena"]
    wanted = set(sys.argv[1:])
    for task in tasks:
        if wanted and task.id not in wanted:
            continue
        how = record(task)
        print(f"{task.id}: {'saved (' + how + ')' if how else 'NOT SOLVED'}", flush=True)


if __name__ == "__main__":
    main()
