"""Running benchmark episodes: one (task, episode) per job, in parallel processes, results appended to a JSON-lines
file as they finish so that a rerun skips what is done. Each result carries its key (policy identity, suite
version, task definition, episode seed); an output directory holding another key is refused, never reused."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any, Callable, Iterable

import gymnasium as gym
import numpy as np

from azote.agents import Agent, ScriptedAgent, make_agent
from azote.bench.recorded import SOLUTIONS_DIR, load_solution, solution_path
from azote.bench.tasks import Suite, Task
from azote.envs import make
from azote.envs.base import GamepadEnv, GameUnavailable
from azote.envs.native import NativeGameError
from azote.errors import AzoteError
from azote.gamepad import Gamepad
from azote.lifetime import worker_pool
from azote.play.loop import play_episode

RESULTS = "results.jsonl"


def episode_seed(task: Task, episode: int) -> int:
    """Episode e of a task starts from seed `task.seed + e`: every episode starts differently (no-op starts on
    the emulators, ViZDoom's seed, the Procgen level), and a rerun of an episode starts the same."""
    return task.seed + episode


def start(task: Task, env: GamepadEnv, episode: int = 0, noops: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The task's start state for one episode: reset with the episode's seed and the task's options (`noops`
    fixes the no-op count, as a recorded solution does), then the task's scripted opening."""
    options = {**task.options, **({} if noops is None else {"noops": noops})}
    frame, info = env.reset(seed=episode_seed(task, episode), options=options or None)
    for hold in task.prefix:
        pad = hold.gamepad()
        for _ in range(hold.frames):
            frame, _, terminated, truncated, info = env.step(pad)
            if terminated or truncated:
                raise RuntimeError(f"task {task.id}: the game ended during the scripted opening")
    return frame, info


class TaskEnv(gym.Wrapper):
    """A game as one benchmark task, decided from the game's own info after every step.

    `reset(seed=e)` starts episode e of the task (`start`: the game reset with seed `task.seed + e`, then the
    task's scripted opening; `options={"noops": k}` fixes the no-op count). A step that meets the failure
    condition, or in a reach task the success condition, ends the episode (terminated); the time limit truncates
    it (a survive task has then succeeded). `info` gains `step`, `seconds` (what conditions may use) and
    `outcome`: None while the episode runs, then success, failure, timeout, or terminated / truncated when the
    game itself ended it first."""

    def __init__(self, env: GamepadEnv, task: Task) -> None:
        super().__init__(env)
        self.task = task
        self._success, self._failure = task.conditions()
        self._first: dict[str, Any] = {}
        self._steps = 0
        self.episode = 0
        self.noops = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        self.episode = 0 if seed is None else int(seed)
        frame, info = start(self.task, self.env.unwrapped, self.episode, (options or {}).get("noops"))
        self.noops, self._first, self._steps = int(info.get("noops", 0)), dict(info), 0
        return frame, {**info, "step": 0, "seconds": 0.0, "outcome": None}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self.env.step(action)
        task, self._steps = self.task, self._steps + 1
        info = {**info, "step": self._steps, "seconds": self._steps / task.fps}
        outcome = None
        if self._failure is not None and self._failure.evaluate(info, self._first):
            outcome = "failure"
        elif self._success is not None and task.mode == "reach" and self._success.evaluate(info, self._first):
            outcome = "success"
        elif terminated or truncated:
            outcome = "terminated" if terminated else "truncated"
        elif self._steps >= task.max_steps:
            outcome, truncated = ("success" if task.mode == "survive" else "timeout"), True
        info["outcome"] = outcome
        return frame, reward, terminated or outcome in ("success", "failure"), truncated, info


def run_episode(task: Task, env: GamepadEnv, agent: Agent, episode: int,
                on_step: Callable[[np.ndarray, Gamepad], None] | None = None,
                actions: list[Gamepad] | None = None, noops: int | None = None) -> dict[str, Any]:
    """Plays one episode of a task (the one episode loop, `azote.play.play_episode`, over `TaskEnv`).

    `on_step(frame, action)` sees every frame with the action taken on it (for videos); `actions` collects them.
    """
    game = TaskEnv(env, task)
    t0, step, info = time.time(), 0, {}
    options = None if noops is None else {"noops": noops}
    for s in play_episode(game, agent, task.max_steps, seed=episode, options=options):
        if on_step is not None:
            on_step(s.frame, s.action)
        if actions is not None:
            actions.append(s.action)
        step, info = s.index + 1, s.info
    reason = info.get("outcome") or "timeout"
    return {
        "task": task.id, "episode": episode, "seed": episode_seed(task, episode), "noops": game.noops,
        "success": reason == "success", "reason": reason, "steps": step,
        "game_seconds": round(step / task.fps, 2), "wall_seconds": round(time.time() - t0, 2),
        "final": {k: (v if isinstance(v, (bool, int, float, str)) else None) for k, v in info.items()
                  if isinstance(v, (bool, int, float, str)) and k != "outcome"},
    }


# --- jobs in worker processes -------------------------------------------------------------------------------
_AGENTS: dict[tuple[str, str], Agent] = {}


def _agent(spec: str, env: GamepadEnv, episode: int) -> Agent | None:
    """The agent for a job. Experts are bound to the env; models are loaded once per worker process."""
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


# The policy that replays each task's recorded solution from the start it was recorded at: the suite's
# reference row (one episode a task: every episode would replay the same).
SOLUTIONS = "solutions"


def run_job(suite_path: str, task_id: str, episode: int, spec: str, video_dir: str | None) -> dict[str, Any]:
    from azote.bench.tasks import load_suite

    task = load_suite(suite_path).task(task_id)
    start_episode, noops = episode, None
    if spec == SOLUTIONS:
        if not solution_path(task).is_file():
            return {"task": task.id, "episode": episode, "success": None, "reason": "no recorded solution",
                    "steps": 0}
        solution = load_solution(task)
        start_episode, noops = solution.episode, solution.noops
    try:
        env = make(task.game, **task.game_kwargs)
    except GameUnavailable as exc:  # not installed here: the task is not scored, rather than failed
        return {"task": task.id, "episode": episode, "success": None, "reason": f"unavailable: {exc}", "steps": 0}
    writer = None
    try:
        agent = ScriptedAgent(solution.actions) if spec == SOLUTIONS else _agent(spec, env, episode)
        if agent is None:
            return {"task": task.id, "episode": episode, "success": None, "reason": "no expert for this game",
                    "steps": 0}
        on_step = None
        if video_dir is not None:
            from azote.dataset.video import VideoWriter
            from azote.dataset.visual import caption, debug_frame

            writer = VideoWriter(Path(video_dir) / f"{task.id}.mp4", task.fps)
            shown: dict[str, Any] = {"step": 0, "picture": None}  # the last picture, held at the end

            def draw(frame: np.ndarray, action: Gamepad) -> None:
                # a video watched on its own says which task it is and how far into the time limit
                shown["picture"] = debug_frame(frame, action)
                writer.write(caption(shown["picture"], f"{task.id}   {shown['step'] / task.fps:.1f} of "
                                                       f"{task.time_limit:g} s   step {shown['step']}"))
                shown["step"] += 1

            on_step = draw
        try:
            result = {**run_episode(task, env, agent, start_episode, on_step=on_step, noops=noops), "episode": episode}
        except NativeGameError as exc:  # the game crashed or hung: not the policy's result, and not the benchmark's end
            if writer is not None:
                writer.abort()
                writer = None
            return {"task": task.id, "episode": episode, "success": None,
                    "reason": f"error: {str(exc).splitlines()[0]}", "steps": 0}
        if writer is not None:
            if shown["picture"] is not None:  # the outcome stays on screen for a second after the last step
                why = {"success": task.success if task.mode == "reach" else f"survived {task.time_limit:g} s",
                       "failure": task.failure, "timeout": f"limit {task.time_limit:g} s",
                       "terminated": "the game ended", "truncated": "the game cut it short"}
                text = (f"{task.id}   {result['reason'].upper()} after {result['steps']} steps"
                        f" ({why.get(result['reason'], result['reason'])})")
                end = caption(shown["picture"], text, ok=bool(result["success"]))
                for _ in range(max(1, round(task.fps))):
                    writer.write(end)
            writer.close()
        return result
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        env.close()


class ResultsMismatch(AzoteError, ValueError):
    """OUT/results.jsonl holds episodes of another benchmark (policy, suite version, task definition or seed)."""


_IDENTITIES: dict[tuple, str] = {}
# The files of a checkpoint directory that decide how it acts (the training state beside them does not).
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "games.json")


def policy_identity(spec: str) -> str:
    """What a policy's results depend on: `random` and `expert` by name, a server by its address (its weights are
    not visible from here), a checkpoint by the sha256 of its files, not by its path (so a retrained checkpoint
    in the same place is another policy, and a moved one the same)."""
    if spec in ("random", "expert") or spec.startswith("tcp://"):
        return spec
    if spec == SOLUTIONS:  # the recorded solutions as they are now
        files = sorted(SOLUTIONS_DIR.glob("*.npz"))
        return f"solutions:{_digest(files)}"
    path = Path(spec)
    files = [path / name for name in _CHECKPOINT_FILES if (path / name).is_file()]
    stamp = (str(path.resolve()), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _IDENTITIES:  # hashed once per process: the runner and the report both ask
        _IDENTITIES[stamp] = f"checkpoint:{_digest(files)}"
    return _IDENTITIES[stamp]


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def job_keys(suite: Suite, spec: str, episodes: int,
             tasks: Iterable[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """(task id, episode) -> everything that defines that episode's result. Episode e seeds the agent with e and
    the game with `episode_seed` (the task's seed + e)."""
    chosen = [t for t in suite.tasks if tasks is None or t.id in set(tasks)]
    policy, version = policy_identity(spec), f"{suite.name}@{suite.version}"
    return {(t.id, e): {"policy": policy, "suite": version, "task": t.fingerprint(), "seed": e,
                        "game_seed": episode_seed(t, e)}
            for t in chosen for e in range(episodes)}


MAX_RESULTS_BYTES = 256 << 20  # ~500 bytes an episode: half a million episodes
# what a result row holds, by type (a row of another shape is not one of ours: refused, never counted)
_ROW_TYPES: dict[str, tuple[type, ...]] = {"task": (str,), "episode": (int,), "success": (bool, type(None)),
                                           "reason": (str,), "steps": (int,), "key": (dict,)}


def _read_results(out: Path) -> list[dict[str, Any]]:
    """The rows of OUT/results.jsonl. Only its last line may be unreadable (cut by a kill: that episode runs again,
    and `_append` drops the cut line before writing after it); any other bad line, or a file that is not a
    regular file of bounded size, is refused (`ResultsMismatch`) with the file and the line named."""
    path = out / RESULTS
    if not os.path.lexists(path):
        return []
    if not path.is_file() or path.is_symlink():
        raise ResultsMismatch(f"{path}: not a regular file; use another --out, or delete it to start over")
    size = path.stat().st_size
    if size > MAX_RESULTS_BYTES:
        raise ResultsMismatch(f"{path}: {size} bytes, more than {MAX_RESULTS_BYTES} for a benchmark's results")
    with open(path, "rb") as f:
        data = f.read(MAX_RESULTS_BYTES + 1)
    lines = data.split(b"\n")
    lines.pop()  # what follows the last newline: nothing, or a line a kill cut short
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
            if not isinstance(r, dict):
                raise TypeError("not a JSON object")
            for name, types in _ROW_TYPES.items():
                if name not in r:
                    raise KeyError(f"no {name!r}")
                if not isinstance(r[name], types) or (name in ("episode", "steps") and isinstance(r[name], bool)):
                    raise TypeError(f"{name!r} is {type(r[name]).__name__} {json.dumps(r[name])[:40]}")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).strip("'\"")[:120]
            raise ResultsMismatch(f"{path}: line {number} is not a benchmark result ({why}); use another --out, "
                                  "or delete it to start over") from None
        rows.append(r)
    return rows


def _append(path: Path, line: str) -> None:
    """Appends one result line, first dropping a last line a kill cut short (so it never merges with this one)."""
    with open(path, "ab+") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            start = max(0, end - (1 << 16))  # a result line is a few hundred bytes
            f.seek(start)
            tail = f.read()
            if not tail.endswith(b"\n"):
                if b"\n" in tail or start == 0:
                    f.truncate(start + tail.rfind(b"\n") + 1)
                else:  # not one of ours: kept apart, and refused by the next reader
                    f.write(b"\n")
        f.write(line.encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _named(spec: Any, identity: Any) -> str:
    return f"{spec!r}" + (f" ({identity})" if identity != spec else "")


def check_results(out: Path, keys: dict[tuple[str, int], dict[str, Any]], spec: str | None = None) -> set[tuple[str, int]]:
    """The jobs of `keys` already done in OUT. One output directory holds one benchmark: any episode of another
    policy or suite version, or of one of these tasks with another definition or seed, is refused
    (`ResultsMismatch`, one line) rather than counted, whatever its task."""
    if not keys:
        return set()
    policy, version = next(iter(keys.values()))["policy"], next(iter(keys.values()))["suite"]
    done = set()
    for r in _read_results(out):
        key, job = r.get("key"), (r["task"], r["episode"])
        theirs = key if isinstance(key, dict) else {}
        what = None
        if not theirs:
            what = f"episodes written before results were keyed (policy {r.get('policy', '?')!r})"
        elif theirs.get("policy") != policy:
            what = (f"episodes of policy {_named(r.get('policy'), theirs.get('policy'))}, "
                    f"not {_named(spec or policy, policy)}")
        elif theirs.get("suite") != version:
            what = f"episodes of suite {theirs.get('suite')}, not {version}"
        elif job in keys and theirs != keys[job]:
            what = f"task {job[0]} episode {job[1]} run with another definition of the task or another seed"
        if what is not None:
            raise ResultsMismatch(f"{out / RESULTS} holds {what}; use another --out, or delete it to start over")
        if job in keys:
            done.add(job)
    return done


def results_for(out: Path, keys: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded results of exactly these jobs, one per job, in the order of `keys` (what a report counts)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for r in _read_results(out):
        job = (r["task"], r["episode"])
        if job in keys and r.get("key") == keys[job]:
            found.setdefault(job, r)
    return [found[job] for job in keys if job in found]


def run_suite(suite: Suite, spec: str, episodes: int, out: Path, workers: int = 1, videos: bool = True,
              tasks: Iterable[str] | None = None, progress: Any | None = None) -> list[dict[str, Any]]:
    """Runs every missing (task, episode) and appends each result, with its key (`job_keys`), to
    OUT/results.jsonl as it finishes. Raises `ResultsMismatch` when OUT holds another benchmark's results."""
    keys = job_keys(suite, spec, episodes, tasks)
    done = check_results(out, keys, spec)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [job for job in keys if job not in done]
    if progress is not None:
        progress.total = len(keys)
        progress.update(len(keys) - len(jobs))
    video_dir = str(out / "videos") if videos else None
    results: list[dict[str, Any]] = []

    def record(result: dict[str, Any]) -> None:
        result["policy"] = spec
        result["key"] = keys[(result["task"], result["episode"])]
        _append(out / RESULTS, json.dumps(result))
        results.append(result)
        if progress is not None:
            progress.update(1)

    def video_for(task_id: str, episode: int) -> str | None:
        # Episode 0 runs only when not done, so a video already there is from a killed run: it is redone, never
        # kept (it might not be of this policy).
        return video_dir if video_dir is not None and episode == 0 else None

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
