"""Recording episodes of an agent named by a spec (random, expert, checkpoint, server) as a dataset, in one
process or a pool of them."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from azote.agents import Agent, make_agent
from azote.dataset import EpisodeWriter, is_complete
from azote.envs import make
from azote.envs.base import GamepadEnv
from azote.lifetime import worker_pool
from azote.play.loop import play_episode

EPISODES = "episodes"  # per-episode results beside the dataset, read back when a rerun skips the episode


@dataclass
class EpisodeResult:
    video_id: str
    seed: int
    steps: int = 0
    ret: float = 0.0
    seconds: float = 0.0
    info: dict[str, Any] | None = None
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "seed": self.seed, "steps": self.steps, "return": self.ret,
                "seconds": round(self.seconds, 2), "info": self.info, "skipped": self.skipped}


def plain_info(info: dict) -> dict:
    """The JSON-friendly part of an info dict (RAM arrays and other bulk values are left out)."""
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None}


def video_id_for(game: str, agent_name: str, seed: int) -> str:
    return f"{game.replace('/', '-')}_{agent_name}_seed{seed}"


def record_episode(env: GamepadEnv, agent: Agent, out: Path, seed: int, max_steps: int, *,
                   execute: int | None = None, crf: int = 18, policy: str = "",
                   on_step: Callable[[], None] | None = None) -> EpisodeResult:
    """Plays one episode and writes it (skipped when a complete recording of it exists)."""
    video_id = video_id_for(env.game.id, agent.name, seed)
    if is_complete(out, video_id):
        return _stored_result(out, video_id, seed)
    t0, result = time.time(), EpisodeResult(video_id, seed)
    with EpisodeWriter(out, video_id, env.game.id, env.game.fps, source=f"azote-record:{agent.name}",
                       crf=crf, extra={"seed": seed, "policy": policy or agent.name}) as writer:
        for step in play_episode(env, agent, max_steps, seed=seed, execute=execute):
            writer.add(step.frame, step.action)
            result.ret += step.reward
            result.steps += 1
            result.info = step.info
            if on_step is not None:
                on_step()
        result.info = plain_info(result.info or {})
        result.seconds = time.time() - t0
        # before the writer commits the labels (which mark the episode as complete): a kill between the two
        # would otherwise leave a complete episode whose result a rerun cannot report
        path = out / EPISODES / f"{video_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_text(json.dumps(result.as_dict()))
        path.with_suffix(".partial").replace(path)
    return result


def _stored_result(out: Path, video_id: str, seed: int) -> EpisodeResult:
    """The result of an episode recorded by an earlier run, so a resumed run still reports its return."""
    path = out / EPISODES / f"{video_id}.json"
    if not path.is_file():
        return EpisodeResult(video_id, seed, skipped=True)
    d = json.loads(path.read_text())
    return EpisodeResult(video_id, seed, d["steps"], d["return"], d["seconds"], d["info"], skipped=True)


def _record_in_worker(game: str, spec: str, out: str, seed: int, max_steps: int, execute: int | None,
                      crf: int) -> dict[str, Any]:
    env = make(game)
    try:
        agent = make_agent(spec, env, seed)
        return record_episode(env, agent, Path(out), seed, max_steps, execute=execute, crf=crf,
                              policy=spec).as_dict()
    finally:
        env.close()


def record_episodes(game: str, spec: str, out: str | os.PathLike, seeds: list[int], max_steps: int, *,
                    execute: int | None = None, crf: int = 18, workers: int = 1,
                    progress: Any | None = None) -> list[dict[str, Any]]:
    """Records one episode per seed. `workers > 1` plays episodes in parallel processes (each game engine in
    its own process). `progress` is a tqdm-like bar counting steps (one worker) or episodes (several)."""
    out = Path(out)
    if workers <= 1:
        env = make(game)
        try:
            agent = make_agent(spec, env, seeds[0] if seeds else None)
            results = []
            for seed in seeds:
                tick = (lambda: progress.update(1)) if progress is not None else None
                r = record_episode(env, agent, out, seed, max_steps, execute=execute, crf=crf, policy=spec,
                                   on_step=tick)
                if progress is not None:
                    progress.update(max_steps - r.steps)
                results.append(r.as_dict())
            return results
        finally:
            env.close()
    results = []
    with worker_pool(workers, context="fork") as pool:
        futures = [pool.submit(_record_in_worker, game, spec, str(out), s, max_steps, execute, crf) for s in seeds]
        for f in as_completed(futures):
            results.append(f.result())
            if progress is not None:
                progress.update(max_steps)
    return sorted(results, key=lambda r: r["seed"])
