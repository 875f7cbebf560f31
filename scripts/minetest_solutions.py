"""Records the recorded solutions of the Minetest tasks of the standard suite (`minetest-*`).

    python scripts/minetest_solutions.py [TASK_ID ...]

Each task has a short script of held gamepad states (Minetest's Xbox layout: left stick walks, right stick looks,
A jumps, left trigger digs). The script is played through the bench's episode loop from the task's first episode;
a run that succeeds keeps the steps it took, and is saved as `src/azote/bench/solutions/<task id>.npz` only if
that recorded gamepad (float16 sticks, as stored) succeeds again when replayed from reset.
"""

from __future__ import annotations

import sys

from azote.agents import ScriptedAgent
from azote.bench.solutions import record_game_solutions, record_solution
from azote.bench.tasks import Hold, Task
from azote.gamepad import ActionChunk

# (what is held, for how many frames)
SCRIPTS: dict[str, list[Hold]] = {
    # turn around (the way north is blocked by a step and a bush), then walk south, jumping over the steps
    "minetest-walk-ten": [Hold(j_right=(1.0, 0.0), frames=66), Hold(frames=4),
                          Hold(press=["south"], j_left=(0.0, -1.0), frames=500)],
    # look at the ground at the player's feet, hold dig
    "minetest-dig-a-block": [Hold(j_right=(0.0, 1.0), frames=30), Hold(press=["left_trigger"], frames=200)],
    # the same, held on: each node dug drops the player into the shaft
    "minetest-dig-down": [Hold(j_right=(0.0, 1.0), frames=30), Hold(press=["left_trigger"], frames=560)],
}


def record(task: Task) -> str | None:
    """Plays the task's script until it succeeds and replays the recorded steps; saves them. How, or None."""
    script = SCRIPTS[task.id]
    actions = ActionChunk.stack([hold.gamepad() for hold in script for _ in range(hold.frames)])
    how = "script: " + ", ".join(f"{'+'.join(h.press) or '-'} L{h.j_left} R{h.j_right} x{h.frames}" for h in script)
    return record_solution(task, [(how, lambda env: ScriptedAgent(actions))])


if __name__ == "__main__":
    record_game_solutions("native/minetest", record, sys.argv[1:])
