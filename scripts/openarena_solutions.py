"""Records the recorded solutions of the OpenArena tasks of the standard suite (`openarena-*`).

    python scripts/openarena_solutions.py [TASK_ID ...]

Combat tasks are played by `OpenArenaAimer` (it reads the bots' positions from the game's memory and aims the
right stick at the nearest one), navigation tasks by the bench's scripted walk-and-turn patterns. A run that
succeeds is kept only if its recorded gamepad (float16 sticks, as stored) succeeds again when replayed from
reset; it is then saved as `src/azote/bench/solutions/<task id>.npz`.
"""

from __future__ import annotations

import sys

import numpy as np

from azote.bench import load_suite
from azote.bench.runner import run_episode
from azote.bench.solutions import PatternAgent, Solution, replay, save_solution, scripted_patterns
from azote.bench.tasks import Task
from azote.envs import make
from azote.envs.native.openarena import OpenArenaAimer
from azote.gamepad import ActionChunk, Gamepad


def _solution(task: Task, played: list[Gamepad], result: dict) -> Solution | None:
    if not result["success"]:
        return None
    chunk = ActionChunk.stack(played[: result["steps"]])
    stored = ActionChunk(chunk.buttons, chunk.j_left.astype(np.float16).astype(np.float32),
                         chunk.j_right.astype(np.float16).astype(np.float32))
    solution = Solution(stored, result["episode"], result["noops"])
    return solution if replay(task, solution)["success"] else None


def record(task: Task) -> str | None:
    """Plays the task until a run succeeds and replays; saves it. How it was found, or None."""
    if task.category == "combat":
        players = [("openarena-aimer", lambda env: OpenArenaAimer(env))]
    else:
        players = [(f"script {name}", lambda env, cycle=cycle: PatternAgent(cycle))
                   for name, cycle in scripted_patterns().items() if name.startswith("walk-turn")]
    for how, player in players:
        env = make(task.game, **task.game_kwargs)
        try:
            played: list[Gamepad] = []
            result = run_episode(task, env, player(env), 0, actions=played)
        finally:
            env.close()
        print(f"{task.id}: {how}: {result['reason']} after {result['steps']} steps", flush=True)
        solution = _solution(task, played, result)
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
