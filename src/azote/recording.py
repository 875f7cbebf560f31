"""Playing games with an agent named by a spec (random, expert, checkpoint, server) and recording the episodes
as a dataset, in one process or a pool of them."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from azote.agents import Agent, RandomAgent
from azote.dataset import EpisodeWriter, is_complete
from azote.envs import make
from azote.envs.base import GamepadEnv
from azote.envs.rollout import play_episode
from azote.errors import AzoteError
from azote.lifetime import worker_pool


class AgentSpecError(AzoteError, ValueError):
    """A policy spec that names nothing usable."""


def make_agent(spec: str, env: GamepadEnv, seed: int | None = None, **options: Any) -> Agent:
    """`random` | `expert` | a checkpoint directory | `tcp://HOST:PORT` (a running `azote serve`)."""
    if spec == "random":
        return RandomAgent(seed=seed)
    if spec == "expert":
        from azote.experts import expert_for

        return expert_for(env, seed=seed)
    if spec.startswith("tcp://"):
        try:
            from azote.serving.client import RemotePolicy
        except ImportError as exc:
            raise AgentSpecError(f"policy {spec!r}: serving is not available ({exc})") from None
        return RemotePolicy(spec, **options)
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():
        try:
            from azote.policy import Policy
        except ImportError as exc:
            raise AgentSpecError(f"policy {spec!r}: the policy package is not available ({exc})") from None
        policy = Policy.from_pretrained(path, **options)
        if str(options.get("device", "cpu")).startswith("cpu"):
            _acting_threads()
        return PolicyAgent(policy, seed, game_id=_game_id(path, env.game.id, policy))
    raise AgentSpecError(
        f"unknown policy {spec!r}: use random, expert, a checkpoint directory (with config.json) or tcp://HOST:PORT"
    )


def _acting_threads() -> None:
    """Torch threads for a policy acting on the CPU: AZOTE_TORCH_THREADS, else 1. One frame at a time gains
    nothing from more threads (tiny: 58 ms per chunk with 1 thread, 111 ms with 2, on 2 cores), and spinning
    OpenMP threads next to the video encoder and the emulator made a recorded episode 8x slower."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("AZOTE_TORCH_THREADS", "1"))))


def _game_id(checkpoint: Path, game: str, policy: Any) -> int | None:
    """The game token a checkpoint trained with game ids knows this game by (its games.json), else none."""
    from azote.policy.checkpoint import GAMES_NAME, read_games

    if not policy.config.num_games or not (checkpoint / GAMES_NAME).is_file():
        return None
    games = read_games(checkpoint)
    return games.index(game) + 1 if game in games else 0  # 0: the "no game" token learned by game dropout


class PolicyAgent:
    """A `Policy` as an `Agent`: each episode's sampling is seeded by the episode seed and the call count, so an
    episode replays exactly."""

    name = "policy"

    def __init__(self, policy: Any, seed: int | None = None, game_id: int | None = None) -> None:
        self.policy, self._seed, self._calls, self.game_id = policy, seed or 0, 0, game_id

    def reset(self, seed: int | None = None) -> None:
        self._seed, self._calls = (seed if seed is not None else self._seed), 0

    def act(self, frame: Any) -> Any:
        self._calls += 1
        return self.policy.act(frame, seed=self._seed * 1_000_003 + self._calls, game_id=self.game_id)


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
