"""SuperTuxKart as a native game: it starts in the race in lockstep, same inputs give the same frames (AI karts
included), the track script reports the kart's position and speed, the game's memory its laps, distance and race
position, standing still finishes no lap, and closing leaves no process. The game comes from Debian
(`supertuxkart`, scripts/native-deps.sh)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import numpy as np
import pytest

pytestmark = pytest.mark.native

if shutil.which("Xvfb") is None or not (shutil.which("supertuxkart") or os.path.exists("/usr/games/supertuxkart")):
    pytest.skip("SuperTuxKart not installed: run `sudo bash scripts/native-deps.sh`", allow_module_level=True)

import azote.envs  # noqa: E402,F401
from azote.envs.native import NativeEnv  # noqa: E402
from azote.envs.native.supertuxkart import AI_KARTS, COPY, LOG, TRACK_LENGTH  # noqa: E402
from azote.gamepad import Gamepad  # noqa: E402
from processes import gone  # noqa: E402

GAS = Gamepad.make(["right_trigger"])
STATE = ("x", "z", "speed", "laps", "distance", "position")


@pytest.fixture(scope="module")
def stk():
    env = NativeEnv(game="supertuxkart")
    yield env
    env.close()


def _run(env: NativeEnv, actions: list[Gamepad], pauses: np.random.Generator | None = None) -> list[tuple]:
    obs, info = env.reset()
    out = [(hashlib.sha1(obs.tobytes()).hexdigest(), tuple(info.get(k) for k in STATE))]
    for a in actions:
        if pauses is not None:
            time.sleep(float(pauses.uniform(0, 0.02)))  # wall-clock pauses between steps: must change nothing
        obs, _, _, _, info = env.step(a)
        out.append((hashlib.sha1(obs.tobytes()).hexdigest(), tuple(info.get(k) for k in STATE)))
    return out


def test_starts_in_the_race_in_lockstep(stk: NativeEnv) -> None:
    obs, info = stk.reset()
    assert obs.shape == (240, 320, 3) and info["frame"] == 0 and stk._session.shm["lockstep"] == 1
    assert stk.pad is None, "--race-now drives the player's kart from the keyboard only"
    # behind the start line, last of the grid, still; the race state comes from the game's memory
    assert info["laps"] == -1 and info["finished"] == 0 and info["progress"] == 0.0
    assert info["karts"] == AI_KARTS + 1 and info["position"] == AI_KARTS + 1
    assert info["speed"] < 2.0 and obs.std() > 10
    assert (stk._session.home / "tracks" / COPY / "scripting.as").is_file()
    assert "Script: AZOTE start" in (stk._session.home / LOG).read_text()


def test_same_inputs_same_frames_also_with_pauses(stk: NativeEnv) -> None:
    rng = np.random.default_rng(0)
    actions: list[Gamepad] = []
    while len(actions) < 150:
        steer = float(rng.choice([-1.0, 0.0, 1.0]))
        actions += [Gamepad.make(["right_trigger"] if rng.random() < 0.8 else [], j_left=(steer, 0.0))] * 8
    actions = actions[:150]
    first = _run(stk, actions)
    assert len({h for h, _ in first}) > 140, "frames should change as the karts drive"
    paused = _run(stk, actions, pauses=np.random.default_rng(1))
    diff = [i for i, (a, b) in enumerate(zip(first, paused)) if a != b]
    assert not diff, f"frames or info differ from step {diff[0]}"


def test_accelerating_raises_speed_and_progress(stk: NativeEnv) -> None:
    _, start = stk.reset()
    speeds, infos = [], []
    for _ in range(150):
        _, _, terminated, _, info = stk.step(GAS)
        speeds.append(info["speed"])
        infos.append(info)
    assert not terminated
    assert speeds[30] > speeds[5] and max(speeds) > 40.0, "full throttle: about 54 km/h within 2 s"
    # the kart crossed the start line (lap 0 begins) and drove on along the track
    assert infos[-1]["laps"] == 0 and infos[-1]["distance"] > 10.0
    assert 0.0 < infos[-1]["progress"] == pytest.approx(infos[-1]["distance"] / TRACK_LENGTH)
    assert np.hypot(infos[-1]["x"] - start["x"], infos[-1]["z"] - start["z"]) > 15.0


def test_steering_turns_the_kart(stk: NativeEnv) -> None:
    """Left and right (the stick past its dead zone: arrow keys) turn the direction of motion opposite ways."""
    turned = {}
    for side in (-1.0, 1.0):
        stk.reset()
        for _ in range(50):
            _, _, _, _, info = stk.step(GAS)
        heading = info["heading"]
        for _ in range(30):
            _, _, _, _, info = stk.step(Gamepad.make(["right_trigger"], j_left=(side, 0.0)))
        turned[side] = (info["heading"] - heading + 180.0) % 360.0 - 180.0
    assert turned[1.0] > 10.0 and turned[-1.0] < -10.0, turned  # heading is atan2(vx, vz): right raises it


def test_standing_still_fails_the_lap_task(stk: NativeEnv) -> None:
    from azote.agents import ScriptedAgent
    from azote.bench import load_suite
    from azote.bench.runner import run_episode
    from azote.gamepad import ActionChunk

    task = load_suite("standard").task("stk-half-lap")  # the shorter of the two: the same "no progress" holds
    result = run_episode(task, stk, ScriptedAgent(ActionChunk.neutral(1)), 0)
    assert result["reason"] == "timeout" and result["steps"] == task.max_steps, result
    final = result["final"]
    assert final["laps"] == -1 and final["finished"] == 0 and final["progress"] == 0.0


def test_close_leaves_no_processes() -> None:
    env = NativeEnv(game="supertuxkart")
    env.reset()
    env.step(GAS)
    pids, display = env.pids, env.display
    assert len(pids) == 2 and display
    env.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    assert all(gone(p) for p in pids), pids
    assert not os.path.exists(f"/tmp/.X11-unix/X{display.lstrip(':')}")
