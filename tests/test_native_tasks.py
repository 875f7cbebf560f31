"""The native games' benchmark tasks and the info they rest on: Extreme Tux Racer's race read from its memory
(distance down the course, herring, race clock) and its shorter, deterministic reset; SuperTux's position, coins
and deaths from the script in its level; and every native task of the standard suite NOT met by neutral input
over its whole time limit (nor by random input where the task needs skill), so none is trivial. Each task's
recorded solution is replayed by tests/test_bench.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import numpy as np
import pytest

pytestmark = pytest.mark.native

_GAMES = ("neverball", "supertux2", "etr")
if shutil.which("Xvfb") is None or not all(shutil.which(g) or os.path.exists(f"/usr/games/{g}") for g in _GAMES):
    pytest.skip("native games not installed: run `sudo bash scripts/native-deps.sh`", allow_module_level=True)

from azote.agents import ScriptedAgent  # noqa: E402
from azote.bench import load_suite  # noqa: E402
from azote.bench.runner import run_episode  # noqa: E402
from azote.bench.solutions import load_solution  # noqa: E402
from azote.envs import make  # noqa: E402
from azote.envs.native import NativeEnv  # noqa: E402
from azote.gamepad import ActionChunk, Gamepad  # noqa: E402

GAMES = {"native/neverball", "native/supertux", "native/extremetuxracer"}
TASKS = [t for t in load_suite("standard").tasks if t.game in GAMES]
# Tasks that random input fails too (the others ask for one simple skill that random play may show by chance).
RANDOM_FAILS = {"neverball-easy-goal", "supertux-past-the-pillar"}


@pytest.fixture(scope="module")
def etr():
    env = NativeEnv(game="extremetuxracer")
    yield env
    env.close()


def test_the_suite_has_native_tasks_of_both_kinds() -> None:
    assert len(TASKS) >= 4 and {t.game for t in TASKS} == GAMES
    assert {t.category for t in TASKS} >= {"navigation", "game-specific"}


def test_extremetuxracer_reports_its_race_from_memory(etr: NativeEnv) -> None:
    """Distance down the course grows as Tux slides, the race clock runs at the frame rate, the herring counter
    counts the herring the recorded solution steers into, and a reset starts all of it again."""
    solution = load_solution(load_suite("standard").task("etr-three-herring"))
    actions, noops = solution.actions, solution.noops
    obs, info = etr.reset(options={"noops": noops})  # the start it was recorded from
    assert info["herring"] == 0 and info["finished"] == 0 and info["race_time"] == pytest.approx((noops + 1) / 60, abs=1e-3)
    seen, distances = [], [info["distance"]]
    for i in range(len(actions)):
        obs, reward, terminated, _, info = etr.step(actions[i])
        seen.append(info["herring"])
        distances.append(info["distance"])
        assert not terminated
    assert all(b > a for a, b in zip(distances, distances[1:])), "Tux only goes down the course"
    assert distances[-1] - distances[0] > 45
    assert info["race_time"] == pytest.approx((noops + len(actions) + 1) / 60, abs=0.01)  # 1/60 s a frame
    assert seen[-1] >= 3 and all(b - a in (0, 1) for a, b in zip(seen, seen[1:])), "one herring at a time"
    assert info["return"] > seen[-1]  # reward: herring plus metres down the course / 10
    obs, info = etr.reset()  # a new game process: all of it from the start again
    assert 3.4 < info["distance"] < 4.0 and info["herring"] == 0  # Bunny Hill's start line
    assert info["race_time"] < 0.05, "reset() lands in the race, at its first frames"


def test_extremetuxracer_reset_is_short_and_deterministic(etr: NativeEnv) -> None:
    """reset() starts the game and goes through its menus into the race in 14 frames (was 288: 40 idle frames
    after each key and 120 of course intro), and the same inputs give the same frames and the same race."""
    rng = np.random.default_rng(4)
    actions = [Gamepad.make(["south"] if rng.random() < 0.1 else [], j_left=rng.uniform(-1, 1, 2)) for _ in range(90)]

    def run() -> tuple[float, list[str], list[tuple]]:
        t0 = time.monotonic()
        obs, info = etr.reset()
        took = time.monotonic() - t0
        s = etr._session
        assert s.origin[0] - s.shm["lockstep_frame"] <= 15, "frames played by reset() after lockstep"
        digests, race = [hashlib.sha1(obs.tobytes()).hexdigest()], []
        for a in actions:
            obs, _, _, _, info = etr.step(a)
            digests.append(hashlib.sha1(obs.tobytes()).hexdigest())
            race.append((info["distance"], info["x"], info["herring"], info["race_time"]))
        return took, digests, race

    took_a, frames_a, race_a = run()
    took_b, frames_b, race_b = run()
    assert frames_a == frames_b and race_a == race_b
    assert len(set(frames_a)) > 80
    print(f"Extreme Tux Racer reset: {took_a:.1f} s, {took_b:.1f} s")


def test_supertux_reports_position_coins_and_deaths() -> None:
    """Walking right moves Tux's x; walking into the first snowball kills him, and the level starts again."""
    env = NativeEnv(game="supertux")
    try:
        obs, info = env.reset()
        assert info["x"] == 96 and info["coins"] == 100 and info["deaths"] == 0
        for _ in range(10):
            obs, *_, info = env.step(Gamepad.neutral())
        assert info["x"] == 96
        xs = []
        for _ in range(360):
            obs, *_, info = env.step(Gamepad.make(j_left=(1.0, 0.0)))
            xs.append(info["x"])
        assert max(xs) > 700 and info["deaths"] == 1 and info["x"] == 96, (max(xs), info)
    finally:
        env.close()


class _Neutral:
    name = "neutral"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, frame: np.ndarray) -> ActionChunk:
        return ActionChunk.neutral(16)


def _random_play(seed: int, steps: int) -> ScriptedAgent:
    rng = np.random.default_rng(seed)
    buttons = ["south", "east", "west", "north"]
    return ScriptedAgent(ActionChunk.stack([
        Gamepad.make([b for b in buttons if rng.random() < 0.1], j_left=rng.uniform(-1, 1, 2))
        for _ in range(steps)]))


@pytest.mark.parametrize("task, play", [(t, "neutral") for t in TASKS] + [(t, "random") for t in TASKS
                                                                          if t.id in RANDOM_FAILS],
                         ids=lambda v: v if isinstance(v, str) else v.id)
def test_a_native_task_is_not_met_by_idling(task, play: str) -> None:
    """Neutral input for the task's whole time limit fails it (random input too where the task needs skill)."""
    agent = _Neutral() if play == "neutral" else _random_play(0, task.max_steps)
    env = make(task.game, **task.game_kwargs)
    try:
        result = run_episode(task, env, agent, 0)
    finally:
        env.close()
    assert not result["success"] and result["reason"] in ("timeout", "failure"), result
