"""Real-time play: the game advances on a wall clock at its frame rate whether or not the policy has answered.

The next chunk is computed in a background thread from a fresh frame while the current chunk plays. A chunk
planned from the frame of step s holds the actions for steps s + offset, s + offset + 1, ...; by the time it
arrives the game is some steps further on, so its stale head is dropped and the rest is cross-faded into the
actions still planned (`ActionSchedule`), so that sticks do not jump at chunk boundaries. When no plan covers a
step (the first steps of an episode, or a policy slower than a chunk), the last action is held.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from azote.agents import Agent
from azote.envs.base import GamepadEnv
from azote.gamepad import NUM_BUTTONS, ActionChunk, Gamepad
from azote.play.step import Step


class ActionSchedule:
    """Planned gamepad actions for the steps to come, by absolute step index.

    `merge(chunk, first_step)` lays a new chunk over the plan: steps already played are dropped; where the old
    plan and the new chunk overlap, the new one's weight ramps up linearly over `blend` steps (sticks are
    interpolated, a button follows the new chunk from weight 0.5 on); after the ramp, and after the old plan
    ends, the new chunk alone. `pop(step)` hands out the action of one step.
    """

    def __init__(self, blend: int = 4, start: int = 0) -> None:
        if blend < 0:
            raise ValueError(f"blend must be >= 0 steps, got {blend}")
        self.blend = blend
        self.start = start  # the step of the first planned entry (the next one to play)
        self._buttons = np.zeros((0, NUM_BUTTONS), np.uint8)
        self._j_left = np.zeros((0, 2), np.float32)
        self._j_right = np.zeros((0, 2), np.float32)
        self._valid = np.zeros(0, bool)
        self.stale_dropped = 0  # actions of merged chunks that arrived too late to play
        self.blended = 0  # steps whose action mixes two chunks

    def __len__(self) -> int:
        """Planned steps from `start` on (a gap, if any, counts)."""
        return len(self._valid)

    def covered(self, step: int) -> bool:
        i = step - self.start
        return 0 <= i < len(self._valid) and bool(self._valid[i])

    def merge(self, chunk: ActionChunk, first_step: int) -> None:
        n = len(chunk)
        skip = max(0, self.start - first_step)
        self.stale_dropped += min(skip, n)
        if skip >= n:
            return
        offset = first_step + skip - self.start  # >= 0: where the chunk's live part begins in the plan
        live = n - skip
        length = offset + live
        buttons = np.zeros((length, NUM_BUTTONS), np.uint8)
        j_left = np.zeros((length, 2), np.float32)
        j_right = np.zeros((length, 2), np.float32)
        valid = np.zeros(length, bool)
        keep = min(len(self._valid), length)  # the old plan, truncated where the new chunk ends
        buttons[:keep], j_left[:keep], j_right[:keep], valid[:keep] = (
            self._buttons[:keep], self._j_left[:keep], self._j_right[:keep], self._valid[:keep])
        new_b, new_l, new_r = chunk.buttons[skip:], chunk.j_left[skip:], chunk.j_right[skip:]
        # weight of the new chunk at each of its live steps: a ramp over the first `blend` steps it overlaps
        w = np.ones(live, np.float32)
        old = valid[offset:]
        if self.blend and old.any():
            k = np.arange(live)
            ramp = (k + 1) / (self.blend + 1)
            w = np.where(old & (k < self.blend), ramp, 1.0).astype(np.float32)
            self.blended += int((w < 1).sum())
        sl = slice(offset, length)
        wc = w[:, None]
        j_left[sl] = (1 - wc) * j_left[sl] + wc * new_l
        j_right[sl] = (1 - wc) * j_right[sl] + wc * new_r
        buttons[sl] = np.where(wc >= 0.5, new_b, buttons[sl])
        valid[sl] = True
        self._buttons, self._j_left, self._j_right, self._valid = buttons, j_left, j_right, valid

    def pop(self, step: int) -> Gamepad | None:
        """The planned action of `step` (None if nothing covers it); the plan moves on past `step`."""
        if step < self.start:
            raise ValueError(f"step {step} was already played (the plan starts at {self.start})")
        drop = step - self.start
        action = None
        if drop < len(self._valid) and self._valid[drop]:
            action = Gamepad(self._buttons[drop].copy(), self._j_left[drop].copy(), self._j_right[drop].copy())
        cut = min(drop + 1, len(self._valid))
        self._buttons, self._j_left, self._j_right, self._valid = (
            self._buttons[cut:], self._j_left[cut:], self._j_right[cut:], self._valid[cut:])
        self.start = step + 1
        return action


@dataclass
class RealtimeStats:
    """What a real-time run achieved."""

    target_fps: float
    steps: int = 0
    seconds: float = 0.0
    requests: int = 0  # frames sent to the policy
    chunks: int = 0  # chunks that came back and were merged
    starved_steps: int = 0  # steps no plan covered (the last action was held)
    late_ticks: int = 0  # steps that started after their tick (the loop was behind, and caught up)
    dropped_ticks: int = 0  # ticks given up when the loop fell more than `max_lag` behind (the clock re-anchored)
    stale_actions: int = 0  # actions of chunks that arrived after their step had been played
    blended_steps: int = 0
    latencies_s: list[float] = field(default_factory=list)
    latency_steps: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        return {
            "target_actions_per_second": self.target_fps,
            "achieved_actions_per_second": round(self.steps / self.seconds, 2) if self.seconds else 0.0,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "policy_requests": self.requests,
            "chunks_merged": self.chunks,
            "starved_steps": self.starved_steps,
            "late_ticks": self.late_ticks,
            "dropped_ticks": self.dropped_ticks,
            "stale_actions": self.stale_actions,
            "blended_steps": self.blended_steps,
            "latency_ms_mean": round(1000 * statistics.fmean(lat), 2) if lat else None,
            "latency_ms_p95": round(1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
            "latency_steps_mean": round(statistics.fmean(self.latency_steps), 2) if self.latency_steps else None,
        }


class RealtimeRunner:
    """Plays an env on a wall clock at `fps` steps per second, the policy answering in a background thread.

    `replan_every`: steps between the frames sent to the policy (None: a fresh frame as soon as the previous
    answer is back). `blend`: steps over which a new chunk is cross-faded in. `offset`: steps between a frame and
    the first action of the chunk planned from it. `max_lag`: ticks the loop may fall behind and catch up on;
    beyond that the clock re-anchors (those ticks are lost, as a real-time game would drop them).
    """

    def __init__(
        self,
        env: GamepadEnv,
        agent: Agent,
        *,
        fps: float | None = None,
        replan_every: int | None = None,
        blend: int = 4,
        offset: int = 0,
        max_lag: int = 3,
        result_timeout: float = 120.0,
    ) -> None:
        self.env, self.agent = env, agent
        self.fps = float(fps or env.game.fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be >= 1 step (or None), got {replan_every}")
        if blend < 0 or offset < 0 or max_lag < 0:
            raise ValueError("blend, offset and max_lag must be >= 0")
        self.replan_every, self.blend, self.offset, self.max_lag = replan_every, blend, offset, max_lag
        self.result_timeout = result_timeout
        self.stats = RealtimeStats(self.fps)
        self._inbox: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue(maxsize=1)
        self._results: queue.Queue[tuple[Any, int, float]] = queue.Queue()
        self._busy = False
        self._thread = threading.Thread(target=self._work, name="azote-realtime-policy", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            frame, step = item
            t0 = time.perf_counter()
            try:
                result: Any = self.agent.act(frame)
            except BaseException as exc:  # handed to the game loop, which raises it
                result = exc
            self._results.put((result, step, time.perf_counter() - t0))

    def _take(self, schedule: ActionSchedule, step: int) -> None:
        """Merges the chunks that came back since the last step."""
        while True:
            try:
                result, at, latency = self._results.get_nowait()
            except queue.Empty:
                return
            self._busy = False
            if isinstance(result, BaseException):
                raise result  # the agent's own error (a server timeout stays a ServeTimeout)
            if len(result) == 0:
                raise RuntimeError(f"agent {self.agent.name} returned an empty action chunk")
            schedule.merge(result, at + self.offset)
            self.stats.chunks += 1
            self.stats.latencies_s.append(latency)
            self.stats.latency_steps.append(step - at)

    def run_episode(self, max_steps: int, seed: int | None = None) -> Iterator[Step]:
        """Yields each step as it is played; the time the caller spends on a step counts against the tick."""
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self._drain()
        frame, info = self.env.reset(seed=seed)
        self.agent.reset(seed)
        schedule = ActionSchedule(self.blend)
        period = 1.0 / self.fps
        last_request: int | None = None
        last_action = Gamepad.neutral()
        t0 = time.perf_counter()
        tick = t0
        try:
            for step in range(max_steps):
                self._take(schedule, step)
                due = last_request is None or self.replan_every is None or step - last_request >= self.replan_every
                if not self._busy and due:
                    self._inbox.put((np.array(frame), step))
                    self._busy, last_request = True, step
                    self.stats.requests += 1
                action = schedule.pop(step)
                if action is None:
                    self.stats.starved_steps += 1
                    action = last_action
                obs, reward, terminated, truncated, info = self.env.step(action)
                yield Step(step, frame, action, float(reward), terminated, truncated, info)
                self.stats.steps += 1
                frame, last_action = obs, action
                if terminated or truncated:
                    break
                tick += period
                wait = tick - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif -wait > self.max_lag * period:
                    self.stats.dropped_ticks += int(-wait / period)
                    tick = time.perf_counter()
                else:
                    self.stats.late_ticks += 1
        finally:
            self.stats.seconds += time.perf_counter() - t0
            self.stats.stale_actions += schedule.stale_dropped
            self.stats.blended_steps += schedule.blended
            self._drain()

    def _drain(self) -> None:
        """Waits for an answer still being computed (the agent is reset next) and discards it."""
        if self._busy:
            try:
                self._results.get(timeout=self.result_timeout)
            except queue.Empty:
                raise TimeoutError(f"the policy gave no chunk within {self.result_timeout:g} s") from None
            self._busy = False
        while not self._results.empty():
            self._results.get_nowait()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._inbox.put(None)
            self._thread.join(timeout=5)

    def __enter__(self) -> "RealtimeRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
