"""Recorded solutions: for every task, an action sequence that succeeds from the start of one of its episodes.

A solution keeps the start it was found from (the episode, whose seed picks the start, and the no-op count taken
there; solutions recorded before no-op starts existed start with none). The engines are deterministic, so
replaying a solution from that start reproduces the success: the tests do exactly that, which
verifies every task is solvable and its condition fires. Solutions are found by `azote bench solve` with the
planning expert (several seeds) or, for games it cannot plan in, a novelty search over snapshots that follows
the task's own condition.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

import numpy as np

from azote.agents import Agent, ScriptedAgent
from azote.bench.recorded import (  # noqa: F401 - how solutions are stored is part of this module's API
    SOLUTIONS_DIR,
    Solution,
    load_solution,
    save_solution,
    solution_path,
)
from azote.bench.runner import run_episode, start
from azote.bench.tasks import Hold, Task, load_suite
from azote.envs import GamepadEnv, game_info, get_family, make
from azote.gamepad import ActionChunk, Gamepad


def replay(task: Task, solution: Solution) -> dict[str, Any]:
    env = make(task.game, **task.game_kwargs)
    try:
        return run_episode(task, env, ScriptedAgent(solution.actions), solution.episode, noops=solution.noops)
    finally:
        env.close()


def _found(task: Task, played: list[Gamepad], result: dict[str, Any]) -> Solution | None:
    """The solution a successful run gives, if its replay succeeds too."""
    if not result["success"]:
        return None
    solution = Solution(_quantised(played[: result["steps"]]), result["episode"], result["noops"])
    return solution if replay(task, solution)["success"] else None


def play_for_solution(task: Task, player: Callable[[GamepadEnv], Agent]) -> tuple[dict[str, Any], Solution | None]:
    """Plays the task's first episode with `player(env)`; returns the run's result and, if it succeeded and its
    stored actions succeed again when replayed from the same start, the solution."""
    env = make(task.game, **task.game_kwargs)
    try:
        played: list[Gamepad] = []
        result = run_episode(task, env, player(env), 0, actions=played)
    finally:
        env.close()
    return result, _found(task, played, result)


def record_solution(task: Task, players: Iterable[tuple[str, Callable[[GamepadEnv], Agent]]]) -> str | None:
    """Tries the (how, player) pairs in turn (`play_for_solution`), saying how each run ended, and saves the first
    solution found. How it was found, or None."""
    for how, player in players:
        result, solution = play_for_solution(task, player)
        print(f"{task.id}: {how}: {result['reason']} after {result['steps']} steps ({result['wall_seconds']} s)",
              flush=True)
        if solution is not None:
            save_solution(task, solution, how=how)
            return how
    return None


def record_game_solutions(game: str, record: Callable[[Task], str | None], wanted: Iterable[str] = ()) -> None:
    """Records the standard suite's tasks on `game` (only `wanted` ones if any are named) with `record(task)`;
    exits with the tasks left unsolved (what the recording scripts in scripts/ run)."""
    wanted = set(wanted)
    failed = [t.id for t in load_suite("standard").tasks
              if t.game == game and (not wanted or t.id in wanted) and record(t) is None]
    if failed:
        raise SystemExit(f"no solution for {', '.join(failed)}")


def _quantised(actions: list[Gamepad]) -> ActionChunk:
    """The stored precision (float16 sticks), so what is verified is exactly what is saved."""
    chunk = ActionChunk.stack(actions)
    return ActionChunk(chunk.buttons, chunk.j_left.astype(np.float16).astype(np.float32),
                       chunk.j_right.astype(np.float16).astype(np.float32))


def solve_with_expert(task: Task, attempts: int = 3, horizon: int | None = None) -> Solution | None:
    """The planning expert on the first few episodes (seeding it with the episode; optionally with a longer
    search horizon than its family's default); the first run whose replay succeeds is the solution."""
    from azote.experts import expert_for

    for seed in range(attempts):
        env = make(task.game, **task.game_kwargs)
        try:
            try:
                expert = expert_for(env, seed=seed)
            except ValueError:
                return None
            if horizon is not None:
                expert.profile.horizon = horizon
            played: list[Gamepad] = []
            result = run_episode(task, env, expert, seed, actions=played)
        finally:
            env.close()
        solution = _found(task, played, result)
        if solution is not None:
            return solution
    return None


class PatternAgent:
    """Repeats a fixed cycle of held inputs: the simplest scripted player (spin and shoot, walk and turn)."""

    name = "pattern"

    def __init__(self, cycle: list[Hold]) -> None:
        self.cycle = ActionChunk.stack([h.gamepad() for h in cycle for _ in range(h.frames)])

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, frame: np.ndarray) -> ActionChunk:
        return self.cycle


def scripted_patterns() -> dict[str, list[Hold]]:
    """Generic scripted players for 3D shooters: spin while shooting, walk while turning now and then."""
    out: dict[str, list[Hold]] = {}
    for rate in (0.2, 0.35, 0.5, 0.8):
        out[f"spin-shoot-{rate}"] = [Hold(press=["right_trigger"], j_right=(rate, 0), frames=1),
                                     Hold(j_right=(rate, 0), frames=1)]
    for rate in (0.3, 0.6, 0.8, 1.0):
        for period in (3, 4, 6, 10):
            out[f"walk-turn-{rate}-{period}"] = [Hold(j_left=(0, -1), j_right=(0.05, 0), frames=8 * (period - 1)),
                                                 Hold(j_left=(0, -1), j_right=(rate, 0), frames=8)]
    return out


def solve_with_patterns(task: Task) -> tuple[str, Solution] | None:
    """The first scripted pattern whose run succeeds (and whose replay does)."""
    for name, cycle in scripted_patterns().items():
        _, solution = play_for_solution(task, lambda env, cycle=cycle: PatternAgent(cycle))
        if solution is not None:
            return name, solution
    return None


def solve_with_search(task: Task, candidates: list[Gamepad], hold: int = 8, budget: int = 200_000,
                      seed: int = 0, beam: int | None = None) -> Solution | None:
    """Novelty search: a frontier of snapshots, each expanded by every candidate held for `hold` steps; states
    whose downsampled frame (or, in 3D, coarse position) was seen before are dropped, the rest are kept, fewest
    steps first; `beam` caps how many states of each depth are expanded (random ones), for long tasks. Follows
    the task's failure condition and stops at its success. Works for sparse goals (mazes) where the planner
    sees no reward within its horizon."""
    success_if, failure_if = task.conditions()
    env = make(task.game, **task.game_kwargs)
    rng = np.random.default_rng(seed)
    try:
        frame, info = start(task, env)
        first, noops = dict(info), int(info.get("noops", 0))
        root = env.get_state()
        frontier: list[tuple[bytes, list[int], int]] = [(root, [], 0)]
        seen = {_signature(frame, info)}
        used = 0
        while frontier and used < budget:
            # breadth-first with a random order inside each depth: the shortest solutions first
            depth = min(len(p) for _, p, _ in frontier)
            layer = [f for f in frontier if len(f[1]) == depth]
            frontier = [f for f in frontier if len(f[1]) != depth]
            rng.shuffle(layer)
            layer = layer[:beam] if beam else layer
            for state, plan, steps in layer:
                for ci, pad in enumerate(candidates):
                    env.set_state(state)
                    ok, failed = False, False
                    for k in range(hold):
                        frame, _, terminated, truncated, info = env.step(pad)
                        used += 1
                        n = steps + k + 1
                        info = {**info, "step": n, "seconds": n / task.fps}
                        if failure_if is not None and failure_if.evaluate(info, first):
                            failed = True
                            break
                        if (task.mode == "survive" and n >= task.max_steps) or (
                                success_if is not None and task.mode == "reach" and success_if.evaluate(info, first)):
                            ok = True
                            break
                        if terminated or truncated or n >= task.max_steps:
                            failed = True
                            break
                    if ok:
                        actions = [candidates[c] for c in plan for _ in range(hold)] + [pad] * (k + 1)
                        solution = Solution(_quantised(actions), 0, noops)
                        if replay(task, solution)["success"]:
                            return solution
                        continue
                    if failed:
                        continue
                    sig = _signature(frame, info)
                    if sig not in seen:
                        seen.add(sig)
                        frontier.append((env.get_state(), plan + [ci], steps + hold))
        return None
    finally:
        env.close()


def solve(task: Task, attempts: int = 3, horizon: int | None = None, budget: int = 300_000,
          hold: int | None = None, beam: int | None = None) -> tuple[str, Solution] | None:
    """A solution and how it was found, trying in order: the planning expert (`attempts` seeds), for 3D games
    the scripted patterns, then the novelty search over snapshots (`budget` game steps, moves held `hold` steps,
    default per family)."""
    solution = solve_with_expert(task, attempts, horizon)
    if solution is not None:
        return "expert", solution
    if game_info(task.game).view == "3d":
        found = solve_with_patterns(task)
        if found is not None:
            return f"script {found[0]}", found[1]
    moves, default_hold = search_moves(game_info(task.game).family)
    solution = solve_with_search(task, moves, hold=hold or default_hold, budget=budget, beam=beam)
    return None if solution is None else ("search", solution)


def _signature(frame: np.ndarray, info: dict[str, Any]) -> bytes:
    """What counts as a new state: the coarse position and heading where the game reports them (3D games, whose
    frames change with every turn), else a coarse version of the frame."""
    if "angle" in info and "x" in info:
        cell = (int(info["x"] // 48), int(info["y"] // 48), int(info["angle"] // 45), int(info.get("kills", 0)))
        return repr(cell).encode()
    if min(frame.shape[:2]) <= 96:  # small agent views (Procgen): every pixel counts, positions are few
        return hashlib.blake2b(frame.tobytes(), digest_size=16).digest()
    small = frame[::4, ::4] // 32  # coarse: nearby positions of the same scene count as seen
    return hashlib.blake2b(small.tobytes(), digest_size=16).digest()


def search_moves(env_family: str) -> tuple[list[Gamepad], int]:
    """The novelty search's moves and how many steps each is held: what the family declares
    (`azote.envs.Family.search_moves`, in its adapter module)."""
    declared = get_family(env_family).search_moves
    return list(declared.moves), declared.hold
