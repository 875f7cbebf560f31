"""Playing a game with an agent and recording what it did: `clean.mp4`, `debug.mp4` (the frame with the pressed
buttons and stick positions drawn beside it, and the keys and mouse move under it for keyboard/mouse games),
`actions.jsonl` (one line per step) and `summary.json`.

Lockstep (default): the game waits for the policy; each chunk is executed whole, or its first `execute` actions
before the policy sees a new frame. Real time (`realtime=True`): the game runs on a wall clock at its frame rate
and the policy plans in a background thread (`azote.play.realtime`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from azote.agents import Agent
from azote.envs.base import GamepadEnv
from azote.gamepad import ActionChunk
from azote.play.keymouse import KeyMouseAction, KeyMouseMapper, KeyMouseProfile, keymouse_strip
from azote.play.loop import play_episode
from azote.play.realtime import RealtimeRunner
from azote.play.recording import plain_info
from azote.play.step import Step


@dataclass
class PlayOptions:
    steps: int  # steps to play; episodes restart until this many
    seed: int = 0  # seed of the first episode; episode i uses seed + i
    execute: int | None = None  # lockstep: actions of each chunk executed before re-planning (None: all)
    realtime: bool = False
    fps: float | None = None  # real time: steps per second (None: the game's own rate)
    replan_every: int | None = None  # real time: steps between frames sent to the policy (None: when it is free)
    blend: int = 4  # real time: steps over which a new chunk is cross-faded in
    keymouse: KeyMouseProfile | None = None  # map each action to keys and mouse (logged and drawn)
    keymouse_applied: bool = False  # the game itself takes its input through that profile

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.execute is not None and self.execute < 1:
            raise ValueError(f"execute must be >= 1 (or None for whole chunks), got {self.execute}")


class _TimedAgent:
    """Counts the agent's calls and their time (the lockstep game waits for each one)."""

    def __init__(self, agent: Agent) -> None:
        self.agent, self.name = agent, agent.name
        self.calls, self.seconds = 0, 0.0

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed)

    def act(self, frame: np.ndarray) -> ActionChunk:
        t0 = time.perf_counter()
        chunk = self.agent.act(frame)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return chunk


class _Recorder:
    """Encodes the videos and writes the action log in a background thread, so a real-time loop is not held up
    by the encoder (the queue is bounded: a recorder that cannot keep up slows the loop instead of eating memory)."""

    def __init__(self, out: Path, fps: float) -> None:
        from azote.dataset.video import VideoWriter

        self.out = out
        self._clean = VideoWriter(out / "clean.mp4", fps)
        self._debug = VideoWriter(out / "debug.mp4", fps)
        self._log_path = out / "actions.jsonl.partial"
        self._log = open(self._log_path, "w")
        self._queue: queue.Queue[tuple[Step, dict[str, Any], KeyMouseAction | None] | None] = queue.Queue(maxsize=256)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="azote-play-recorder", daemon=True)
        self._thread.start()

    def add(self, step: Step, row: dict[str, Any], keys: KeyMouseAction | None) -> None:
        if self._error is not None:
            raise RuntimeError(f"recording failed: {self._error}") from self._error
        # a copy: an engine may reuse its frame buffer before the writer thread gets to it
        self._queue.put((dataclasses.replace(step, frame=np.array(step.frame)), row, keys))

    def _run(self) -> None:
        from azote.dataset.visual import debug_frame

        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            step, row, keys = item
            try:
                self._clean.write(step.frame)
                panel = debug_frame(step.frame, step.action)
                if keys is not None:
                    panel = np.concatenate([panel, keymouse_strip(keys, panel.shape[1])])
                self._debug.write(panel)
                self._log.write(json.dumps(row) + "\n")
            except BaseException as exc:
                self._error = exc

    def close(self, complete: bool = True) -> None:
        """Finishes the files; the action log gets its final name only for a complete run."""
        self._queue.put(None)
        self._thread.join()
        self._log.close()
        for video in (self._clean, self._debug):
            if video.frames:
                video.close()  # what was played is kept, even from a failed run (it shows what went wrong)
            else:
                video.abort()
        if self._error is not None:
            raise RuntimeError(f"recording failed: {self._error}") from self._error
        if complete:
            self._log_path.replace(self.out / "actions.jsonl")


def play(
    env: GamepadEnv,
    agent: Agent,
    out: str | os.PathLike,
    options: PlayOptions,
    *,
    policy: str = "",
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Plays `options.steps` steps (restarting episodes), writes the recordings under `out`, returns the summary
    (also written as `summary.json`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timed = _TimedAgent(agent)
    runner = None
    if options.realtime:
        runner = RealtimeRunner(env, timed, fps=options.fps, replan_every=options.replan_every, blend=options.blend)
    mapper = KeyMouseMapper(options.keymouse) if options.keymouse is not None else None
    recorder = _Recorder(out, runner.fps if runner else env.game.fps)
    episodes: list[dict[str, Any]] = []
    done, ep, t0 = 0, 0, time.perf_counter()
    complete = False
    try:
        while done < options.steps:
            seed = options.seed + ep
            steps = play_episode(env, timed, options.steps - done, seed=seed, execute=options.execute, realtime=runner)
            if mapper is not None:
                mapper.reset()
            total, n, info = 0.0, 0, {}
            for step in steps:
                row = {"episode": ep, "step": step.index, **step.action.to_row(), "reward": step.reward}
                keys = mapper.step(step.action) if mapper is not None else None
                if keys is not None:
                    row.update(keys.as_dict())
                recorder.add(step, row, keys)
                total += step.reward
                n += 1
                info = step.info
                if on_step is not None:
                    on_step()
            if n == 0:
                raise RuntimeError(f"episode {ep} of {env.game.id} played no step")
            episodes.append({"episode": ep, "seed": seed, "steps": n, "return": total, "info": plain_info(info)})
            done += n
            ep += 1
        complete = True
    finally:
        try:
            if runner is not None:
                runner.close()
        finally:
            recorder.close(complete)
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "game": env.game.id,
        "policy": policy or agent.name,
        "mode": "realtime" if runner else "lockstep",
        "execute": options.execute if runner is None else None,
        "steps": done,
        "seconds": round(elapsed, 2),
        "steps_per_second": round(done / elapsed, 1) if elapsed else 0.0,
        "policy_calls": timed.calls,
        "act_ms_mean": round(1000 * timed.seconds / timed.calls, 2) if timed.calls else None,
        "episodes": episodes,
    }
    if runner is not None:
        summary["realtime"] = {**runner.stats.as_dict(), "replan_every": options.replan_every, "blend": options.blend}
    if options.keymouse is not None:
        summary["keymouse"] = {"applied_to_game": options.keymouse_applied, **options.keymouse.as_dict()}
    _write_json(out / "summary.json", summary)
    return summary


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
