"""Native Linux games under Xvfb through the clock shim: determinism, time fidelity, pause fidelity, input,
crash handling and no leaked processes. The games come from Debian packages (scripts/native-deps.sh, which
scripts/setup.sh runs as root)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time

import numpy as np
import pytest

pytestmark = pytest.mark.native

if shutil.which("Xvfb") is None or not (shutil.which("neverball") or os.path.exists("/usr/games/neverball")):
    pytest.skip("native games not installed: run `sudo bash scripts/native-deps.sh`", allow_module_level=True)

import gymnasium as gym  # noqa: E402

import azote.envs  # noqa: E402,F401
from azote.envs.native import NativeEnv, NativeGameError  # noqa: E402
from azote.envs.native.games import neverball_clock_glyphs  # noqa: E402
from azote.envs.native.shm import shim_path  # noqa: E402
from azote.gamepad import Gamepad  # noqa: E402

STEPS = 60


def _actions(n: int, seed: int = 0) -> list[Gamepad]:
    rng = np.random.default_rng(seed)
    return [Gamepad.make(["south"] if rng.random() < 0.1 else [], j_left=rng.choice([-1.0, 0.0, 1.0], 2))
            for _ in range(n)]


def _run(env: NativeEnv, actions: list[Gamepad], pauses: np.random.Generator | None = None) -> list[str]:
    obs, _ = env.reset()
    digests = [hashlib.sha1(obs.tobytes()).hexdigest()]
    for a in actions:
        if pauses is not None:
            time.sleep(float(pauses.uniform(0, 0.05)))  # wall-clock pause between steps: must change nothing
        obs, *_ = env.step(a)
        digests.append(hashlib.sha1(obs.tobytes()).hexdigest())
    return digests


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie not yet reaped by its parent counts as gone
        return f.read().split(") ")[1].startswith("Z")


@pytest.fixture(scope="module")
def neverball():
    env = NativeEnv(game="neverball")
    yield env
    env.close()


def test_registered_and_shim_built() -> None:
    ids = {g.gym_id for g in azote.envs.list_games("native")}
    assert {"azote/native/neverball-v0", "azote/native/supertux-v0", "azote/native/extremetuxracer-v0"} <= ids
    assert shim_path().exists()


def test_neverball_deterministic_and_pause_fidelity(neverball: NativeEnv) -> None:
    actions = _actions(STEPS)
    first = _run(neverball, actions)
    assert len(set(first)) > STEPS // 2, "frames should change as the ball rolls"
    second = _run(neverball, actions)
    assert first == second, f"frames differ from step {next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)}"
    paused = _run(neverball, actions, pauses=np.random.default_rng(1))
    assert first == paused, "random wall-clock pauses between steps changed the trajectory"


def test_neverball_time_fidelity(neverball: NativeEnv) -> None:
    """600 steps advance the game's own timer (read from its HUD) by exactly 10.00 s."""
    neverball.reset()
    idle = Gamepad.neutral()
    for _ in range(150):  # past "Ready?", "Set?", "GO!": the clock runs
        obs, *_, info = neverball.step(idle)
    start, t0, seen0 = neverball_clock_glyphs(obs), info["game_time"], info["observed_time"]
    obs, *_ = neverball.step(idle)
    later = neverball_clock_glyphs(obs)
    assert len(start) == 6 and not np.array_equal(start[-1], later[-1]), "hundredths should move every frame"
    for _ in range(599):
        obs, *_, info = neverball.step(idle)
    end = neverball_clock_glyphs(obs)
    assert info["game_time"] - t0 == pytest.approx(10.0, abs=1e-9)
    assert info["observed_time"] - seen0 == pytest.approx(10.0, abs=1e-6)  # what the game read from its clock
    # M:SS hh -> only the tens of seconds changed, hundredths and ones identical: exactly 10.00 s.
    same = [a.shape == b.shape and np.array_equal(a, b) for a, b in zip(start, end)]
    assert len(end) == 6 and same == [True, True, False, True, True, True], same


def test_crash_gives_clear_error_and_reset_restarts(neverball: NativeEnv) -> None:
    neverball.reset()
    game_pid = neverball._session.proc.pid
    os.killpg(game_pid, signal.SIGKILL)
    with pytest.raises(NativeGameError, match="exited"):
        for _ in range(5):
            neverball.step(Gamepad.neutral())
    obs, info = neverball.reset()
    assert info["frame"] == 0 and obs.shape == (240, 320, 3)
    assert neverball.step(Gamepad.neutral())[0].shape == (240, 320, 3)


def test_neverball_reports_the_level_outcome_from_its_replay(neverball: NativeEnv) -> None:
    # 'easy' has a 90 s clock: left alone, the level ends by time-up, which the game writes into its replay
    obs, info = neverball.reset()
    assert info["outcome"] == "playing" and info["goal"] == 0
    steps, terminated = 0, False
    while not terminated and steps < 7000:
        obs, _, terminated, _, info = neverball.step(Gamepad.neutral())
        steps += 1
    assert terminated and info["outcome"] == "time" and info["time_up"] == 1 and info["goal"] == 0
    assert info["level_seconds"] == 90.0 and info["level_coins"] == 0
    assert 90.0 < info["game_time"] < 95.0  # the clock starts after the "Ready? Set?" intro


def test_display_does_not_auto_repeat_held_keys(neverball: NativeEnv) -> None:
    # auto-repeat runs on wall-clock time: with it on, a key held over a slow step would type extra presses
    from Xlib import X

    neverball.reset()
    dpy = neverball._session.input.dpy
    assert dpy.get_keyboard_control().global_auto_repeat == X.AutoRepeatModeOff


@pytest.mark.parametrize("name", ["supertux", "extremetuxracer"])
def test_other_games_deterministic_with_input(name: str) -> None:
    env = gym.make(f"azote/native/{name}-v0")
    try:
        actions = [Gamepad.make(j_left=(1.0, 0.0))] * 30 + _actions(20, seed=3)
        first = _run(env.unwrapped, actions)
        assert first == _run(env.unwrapped, actions, pauses=np.random.default_rng(2))
        idle = _run(env.unwrapped, [Gamepad.neutral()] * 30)
        assert idle[:1] == first[:1] and idle[1:31] != first[1:31], "holding right should change the frames"
    finally:
        env.close()


def test_gymnasium_check_env_and_seeded_starts() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("azote/native/neverball-v0")
    try:
        check_env(env.unwrapped)  # it also starts a second copy of the game while this one runs
        a, info_a = env.reset(seed=1)
        b, info_b = env.reset(seed=1)
        assert info_a["noops"] == info_b["noops"] and np.array_equal(a, b)  # one seed: one start
        assert len({env.reset(seed=s)[1]["noops"] for s in range(4)}) > 1  # seeds pick different starts
    finally:
        env.close()


def test_close_leaves_no_processes() -> None:
    env = gym.make("azote/native/neverball-v0")
    env.reset()
    env.step(Gamepad.neutral())
    pids, display = env.unwrapped.pids, env.unwrapped.display
    assert len(pids) == 2 and display
    env.close()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in pids), pids
    assert not os.path.exists(f"/tmp/.X11-unix/X{display.lstrip(':')}")


OWNER = """
import json, sys
from azote.envs.native import NativeEnv
env = NativeEnv(game=sys.argv[1])
env.reset()
s = env._session
print(json.dumps({"pids": env.pids, "display": env.display, "dir": str(s.dir), "shm": s.shm.path}), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("name", ["neverball", "supertux"])
def test_kill_9_of_the_owner_leaves_no_process_socket_or_directory(tmp_path, name: str) -> None:
    import json
    import subprocess
    import sys

    owner = subprocess.Popen([sys.executable, "-c", OWNER, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        seen = json.loads(owner.stdout.readline())
        number = seen["display"].lstrip(":")
        paths = [f"/tmp/.X11-unix/X{number}", seen["dir"], seen["shm"]]
        assert len(seen["pids"]) == 2 and all(os.path.lexists(p) for p in paths), seen
        paths.append(f"/tmp/.X{number}-lock")  # if Xvfb made one
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = [p for p in seen["pids"] if not _gone(p)] + [p for p in paths if os.path.lexists(p)]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left behind after kill -9 of the owner: {left}"
