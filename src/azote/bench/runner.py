"""Running benchmark episodes: one (task, episode) per job, in parallel processes, results appended to a JSON-lines
file as they finish so that a rerun skips what is done."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from azote.agents import Agent
from azote.bench.tasks import Suite, Task
from azote.envs import make
from azote.envs.base import GamepadEnv
from azote.gamepad import ActionChunk, Gamepad
from azote.lifetime import worker_pool

RESULTS = "results.jsonl"


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


def start(task: Task, env: GamepadEnv) -> tuple[np.ndarray, dict[str, Any]]:
    """The task's start state: reset with its seed and options, then its scripted opening."""
    frame, info = env.reset(seed=task.seed, options=task.options or None)
    for hold in task.prefix:
        pad = hold.gamepad()
        for _ in range(hold.frames):
            frame, _, terminated, truncated, info = env.step(pad)
            if terminated or truncated:
                raise RuntimeError(f"task {task.id}: the game ended during the scripted opening")
    return frame, info


def run_episode(task: Task, env: GamepadEnv, agent: Agent, episode: int,
                on_step: Callable[[np.ndarray, Gamepad], None] | None = None,
                actions: list[Gamepad] | None = None) -> dict[str, Any]:
    """Plays one episode of a task; success and failure are decided by the task's conditions after every step.

    `on_step(frame, action)` sees every frame with the action taken on it (for videos); `actions` collects them.
    """
    success_if, failure_if = task.conditions()
    frame, info = start(task, env)
    first = dict(info)
    agent.reset(episode)
    t0, step, reason = time.time(), 0, "timeout"
    limit = task.max_steps
    done = False
    while not done:
        chunk = agent.act(frame)
        for action in chunk:
            if on_step is not None:
                on_step(frame, action)
            if actions is not None:
                actions.append(action)
            frame, _, terminated, truncated, info = env.step(action)
            step += 1
            info = {**info, "step": step, "seconds": step / task.fps}
            if failure_if is not None and failure_if.evaluate(info, first):
                reason, done = "failure", True
            elif success_if is not None and task.mode == "reach" and success_if.evaluate(info, first):
                reason, done = "success", True
            elif terminated or truncated:
                reason, done = ("terminated" if terminated else "truncated"), True
            elif step >= limit:
                reason, done = ("success" if task.mode == "survive" else "timeout"), True
            if done:
                break
    return {
        "task": task.id, "episode": episode, "success": reason == "success", "reason": reason, "steps": step,
        "game_seconds": round(step / task.fps, 2), "wall_seconds": round(time.time() - t0, 2),
        "final": {k: (v if isinstance(v, (bool, int, float, str)) else None) for k, v in info.items()
                  if isinstance(v, (bool, int, float, str))},
    }


# --- jobs in worker processes -------------------------------------------------------------------------------
_AGENTS: dict[tuple[str, str], Agent] = {}


def _agent(spec: str, env: GamepadEnv, episode: int) -> Agent | None:
    """The agent for a job. Experts are bound to the env; models are loaded once per worker process."""
    from azote.recording import make_agent

    if spec == "expert":
        from azote.experts import expert_for

        try:
            return expert_for(env, seed=episode)
        except ValueError:
            return None  # no planning expert for this family
    if spec == "random":
        return make_agent(spec, env, episode)
    key = (spec, env.game.id)
    if key not in _AGENTS:
        _AGENTS.clear()
        _AGENTS[key] = make_agent(spec, env, episode)
    return _AGENTS[key]


def run_job(suite_path: str, task_id: str, episode: int, spec: str, video_dir: str | None) -> dict[str, Any]:
    from azote.bench.tasks import load_suite

    task = load_suite(suite_path).task(task_id)
    env = make(task.game, **task.game_kwargs)
    writer = None
    try:
        agent = _agent(spec, env, episode)
        if agent is None:
            return {"task": task.id, "episode": episode, "success": None, "reason": "no expert for this game",
                    "steps": 0}
        on_step = None
        if video_dir is not None:
            from azote.dataset.video import VideoWriter
            from azote.dataset.visual import debug_frame

            writer = VideoWriter(Path(video_dir) / f"{task.id}.mp4", task.fps)
            on_step = lambda frame, action: writer.write(debug_frame(frame, action))  # noqa: E731
        result = run_episode(task, env, agent, episode, on_step=on_step)
        if writer is not None:
            writer.close()
        return result
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        env.close()


def done_jobs(out: Path) -> set[tuple[str, int]]:
    path = out / RESULTS
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
            done.add((r["task"], int(r["episode"])))
        except (json.JSONDecodeError, KeyError, ValueError):
            continue  # a line cut by a kill: that episode runs again
    return done


def run_suite(suite: Suite, spec: str, episodes: int, out: Path, workers: int = 1, videos: bool = True,
              tasks: Iterable[str] | None = None, progress: Any | None = None) -> list[dict[str, Any]]:
    """Runs every missing (task, episode) and appends each result to OUT/results.jsonl as it finishes."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = [t for t in suite.tasks if tasks is None or t.id in set(tasks)]
    done = done_jobs(out)
    jobs = [(t.id, e) for t in chosen for e in range(episodes) if (t.id, e) not in done]
    if progress is not None:
        progress.total = len(chosen) * episodes
        progress.update(len(chosen) * episodes - len(jobs))
    video_dir = str(out / "videos") if videos else None
    results: list[dict[str, Any]] = []

    def record(result: dict[str, Any]) -> None:
        result["policy"] = spec
        with open(out / RESULTS, "a") as f:
            f.write(json.dumps(result) + "\n")
            f.flush()
            os.fsync(f.fileno())
        results.append(result)
        if progress is not None:
            progress.update(1)

    def video_for(task_id: str, episode: int) -> str | None:
        if video_dir is None or episode != 0 or (Path(video_dir) / f"{task_id}.mp4").exists():
            return None
        return video_dir

    if workers <= 1:
        for task_id, episode in jobs:
            record(run_job(str(suite.path), task_id, episode, spec, video_for(task_id, episode)))
        return results
    with worker_pool(workers, context="fork") as pool:
        pending = {pool.submit(run_job, str(suite.path), t, e, spec, video_for(t, e)) for t, e in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                record(f.result())
    return results
