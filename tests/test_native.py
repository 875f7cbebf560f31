"""Native Linux games under Xvfb through the clock shim: determinism, time fidelity, pause fidelity, input,
crash handling and no leaked processes. The games come from Debian packages (scripts/native-deps.sh, which
scripts/setup.sh runs as root)."""

from __future__ import annotations

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
from processes import frame_digests, gone  # noqa: E402

STEPS = 60


def _actions(n: int, seed: int = 0) -> list[Gamepad]:
    rng = np.random.default_rng(seed)
    return [Gamepad.make(["south"] if rng.random() < 0.1 else [], j_left=rng.choice([-1.0, 0.0, 1.0], 2))
            for _ in range(n)]


@pytest.fixture(scope="module")
def neverball():
    env = NativeEnv(game="neverball")
    yield env
    env.close()


def test_registered_and_shim_built() -> None:
    ids = {g.gym_id for g in azote.envs.list_games("native")}
    assert {"azote/native.neverball-v0", "azote/native.supertux-v0", "azote/native.extremetuxracer-v0"} <= ids
    assert shim_path().exists()


def test_neverball_deterministic_and_pause_fidelity(neverball: NativeEnv) -> None:
    actions = _actions(STEPS)
    first = frame_digests(neverball, actions)
    assert len(set(first)) > STEPS // 2, "frames should change as the ball rolls"
    second = frame_digests(neverball, actions)
    assert first == second, f"frames differ from step {next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)}"
    paused = frame_digests(neverball, actions, pauses=np.random.default_rng(1))
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


def test_a_game_that_crashes_while_starting_is_started_once_more(tmp_path) -> None:
    """A crash (death by a signal) before lockstep gets one more start; a game that crashes every time is reported
    with what it said, and a game that quits by itself is not started again."""
    from dataclasses import replace

    from azote.envs.native.game import NativeGame
    from azote.envs.native.games import NEVERBALL
    from azote.envs.native.session import GameExited

    def game(script: str) -> NativeGame:
        return replace(NEVERBALL, command=("sh", "-c", script), start_timeout=30.0)

    mark = tmp_path / "crashed"
    neverball = shutil.which("neverball", path=os.environ.get("PATH", "") + os.pathsep + "/usr/games")
    once = f"if [ -e {mark} ]; then exec {neverball} -l map-easy/easy.sol; fi; touch {mark}; kill -SEGV $$"
    env = NativeEnv(game=game(once))
    try:
        obs, info = env.reset()
        assert mark.exists() and info["frame"] == 0 and obs.shape == (240, 320, 3)
        assert len(env._session.start_crashes) == 1 and "code -11" in env._session.start_crashes[0]
    finally:
        env.close()
    for script, code, starts in (("echo started >> {log}; kill -SEGV $$", -11, 2),
                                 ("echo started >> {log}; exit 3", 3, 1)):
        log = tmp_path / f"starts{code}"
        env = NativeEnv(game=game(script.format(log=log)))
        try:
            with pytest.raises(GameExited, match=f"exited with code {code}"):
                env.reset()
            assert log.read_text().count("started") == starts
        finally:
            env.close()


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
    env = gym.make(f"azote/native.{name}-v0")
    try:
        actions = [Gamepad.make(j_left=(1.0, 0.0))] * 30 + _actions(20, seed=3)
        if name == "extremetuxracer":  # start is Return (the race is on from reset(): it does nothing)
            actions = [Gamepad.make(["start"])] + actions
        first = frame_digests(env.unwrapped, actions)
        assert first == frame_digests(env.unwrapped, actions, pauses=np.random.default_rng(2))
        idle = frame_digests(env.unwrapped, [Gamepad.neutral()] * 30)
        assert idle[:1] == first[:1] and idle[1:31] != first[1:31], "holding right should change the frames"
    finally:
        env.close()


def test_gymnasium_check_env_and_seeded_starts() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("azote/native.neverball-v0")
    try:
        check_env(env.unwrapped)  # it also starts a second copy of the game while this one runs
        a, info_a = env.reset(seed=1)
        b, info_b = env.reset(seed=1)
        assert info_a["noops"] == info_b["noops"] and np.array_equal(a, b)  # one seed: one start
        assert len({env.reset(seed=s)[1]["noops"] for s in range(4)}) > 1  # seeds pick different starts
    finally:
        env.close()


def test_close_leaves_no_processes() -> None:
    env = gym.make("azote/native.neverball-v0")
    env.reset()
    env.step(Gamepad.neutral())
    pids, display = env.unwrapped.pids, env.unwrapped.display
    assert len(pids) == 2 and display
    env.close()
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in pids), pids
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
        left = [p for p in seen["pids"] if not gone(p)] + [p for p in paths if os.path.lexists(p)]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left behind after kill -9 of the owner: {left}"


# --- the gamepad as a gamepad (PadProfile: SDL virtual game controller, Linux joystick device) ---------------------


def _pan(a: np.ndarray, b: np.ndarray, rows: slice, cols: slice) -> float:
    """How far the view turned right from frame a to frame b, in pixels: the horizontal shift of a band of distant
    scenery (sky), by phase correlation; a chase camera turns as the player moves sideways or steers."""
    import cv2

    ga, gb = (cv2.cvtColor(np.ascontiguousarray(f[rows, cols]), cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (a, b))
    (dx, _), _ = cv2.phaseCorrelate(ga, gb, cv2.createHanningWindow((ga.shape[1], ga.shape[0]), cv2.CV_32F))
    return -dx


def test_pad_state_layout() -> None:
    from azote.envs.native import PadProfile

    bits, axes = PadProfile().state(Gamepad.make(["south", "left_trigger"], j_left=(0.5, -1.0), j_right=(-0.25, 1.0)))
    assert bits == (1 << 14) | (1 << 9) and axes == (16384, -32767, -8192, 32767, 32767, 0)
    assert PadProfile("js", right_stick=False).state(Gamepad.make(j_right=(1.0, 1.0)))[1] == (0,) * 6
    with pytest.raises(ValueError, match="api"):
        PadProfile("uinput")


def test_neverball_left_stick_tilts_in_proportion(neverball: NativeEnv) -> None:
    """Neverball reads the SDL virtual game controller: the left stick tilts the floor by ANGLE_BOUND * deflection,
    so the ball rolls sideways with an acceleration in proportion to it and the chase camera turns after it."""
    assert neverball.pad is not None and neverball.pad.api == "sdl"
    pans = {}
    for v in (0.5, 1.0):
        obs, info = neverball.reset()
        s = neverball._session
        assert s.shm["pad_status"] & 1, "the shim should have attached an SDL pad when Neverball started SDL"
        for _ in range(150):  # past "Ready?", "Set?", "GO!": the stick tilts the floor from now on
            start, *_ = neverball.step(Gamepad.neutral())
        for _ in range(20):
            obs, *_ = neverball.step(Gamepad.make(j_left=(v, 0.0)))
        assert s.shm["pad_synced"] == s.shm["frames"] - 1  # copied when the game woke for the last frame
        pans[v] = _pan(start, obs, slice(0, 40), slice(None))
    assert pans[1.0] > 5, pans
    assert 0.3 < pans[0.5] / pans[1.0] < 0.7, pans  # measured: 4.9 and 10.8 px (0.46)


def test_extremetuxracer_steers_in_proportion_through_a_linux_joystick() -> None:
    """Extreme Tux Racer (SFML, no SDL) reads /dev/input/js*: the shim lists a js device in udev's enumeration and
    feeds it js_event records; the left stick's x is the steering factor, so Tux turns (and the camera with him)
    in proportion to it."""
    env = NativeEnv(game="extremetuxracer")
    try:
        assert env.pad is not None and env.pad.api == "js"
        pans = {}
        for v in (0.5, 1.0):
            env.reset()
            assert env._session.shm["pad_status"] & 2, "SFML should have opened the shim's joystick device"
            env.step(Gamepad.make(["start"]))  # Return: nothing in the race (reset() ended the intro)
            start, *_ = env.step(Gamepad.neutral())
            for _ in range(30):
                obs, *_ = env.step(Gamepad.make(j_left=(v, 0.0)))
            pans[v] = _pan(start, obs, slice(0, 22), slice(80, 240))  # sky, between the HUD's clock and herring
        assert pans[1.0] > 8, pans
        assert 0.3 < pans[0.5] / pans[1.0] < 0.7, pans  # measured: 10.3 and 23.2 px (0.44)
    finally:
        env.close()


def test_neverball_with_an_analog_pad_is_deterministic(neverball: NativeEnv) -> None:
    rng = np.random.default_rng(7)
    buttons = ["south", "west", "left_shoulder", "right_shoulder", "left_trigger"]
    actions = [Gamepad.make([b for b in buttons if rng.random() < 0.1], j_left=rng.uniform(-1, 1, 2),
                            j_right=rng.uniform(-1, 1, 2)) for _ in range(STEPS)]
    first = frame_digests(neverball, actions)
    assert len(set(first)) > STEPS // 2
    assert first == frame_digests(neverball, actions, pauses=np.random.default_rng(3))


def test_supertux_reads_the_pad_through_its_game_controller_support() -> None:
    """SuperTux opens SDL game controllers by itself; it walks past a dead zone (8000/32767: digital, so 0.5 and
    1.0 walk alike) and A jumps."""
    env = NativeEnv(game="supertux")
    try:
        def run(pad: Gamepad) -> list[str]:
            return frame_digests(env, [pad] * 25)

        idle = run(Gamepad.neutral())
        assert env._session.shm["pad_status"] & 1
        assert run(Gamepad.make(j_left=(0.2, 0.0))) == idle  # inside SuperTux's own dead zone
        walk = run(Gamepad.make(j_left=(0.5, 0.0)))
        assert walk != idle and walk == run(Gamepad.make(j_left=(1.0, 0.0)))
        jump = run(Gamepad.make(["south"]))
        assert jump != idle and jump != walk
    finally:
        env.close()


def test_a_game_without_sdl_joysticks_is_unaffected_by_the_sdl_pad(monkeypatch) -> None:
    """Extreme Tux Racer does not use SDL: asking the shim for an SDL pad changes nothing in it (same frames with
    the same keys), and no pad is attached."""
    from azote.envs.native import session as session_mod
    from azote.envs.native.shm import PAD_SDL, ClockShm

    actions = [Gamepad.make(j_left=(1.0, 0.0))] * 10 + _actions(10, seed=5)
    env = NativeEnv(game="extremetuxracer", gamepad=False)
    try:
        plain = frame_digests(env, actions)
        monkeypatch.setattr(session_mod, "ClockShm", lambda *a, **k: ClockShm(*a, **{**k, "pad": PAD_SDL}))
        with_pad = frame_digests(env, actions)
        assert env._session.shm["pad_enabled"] == PAD_SDL and env._session.shm["pad_status"] == 0
        assert with_pad == plain
    finally:
        env.close()


def test_quitting_through_the_games_menu_ends_the_episode():
    """SuperTux's pause menu -> "Abort Level" quits a level given on the command line. On its way out the game
    joins its sound mixer thread, which sleeps in virtual time: the shim lets it wake while the main thread joins
    (before, the game hung there and the step failed after 20 s). A clean exit ends the episode like the game
    ending it, with the last info and `game_exited`."""
    env = NativeEnv(game="supertux")
    try:
        env.reset(seed=0)
        plan = [((), 20), (("start",), 3), ((), 10), (("dpad_up",), 2), ((), 5), (("south",), 2), ((), 200)]
        steps, terminated, info = 0, False, {}
        t = time.monotonic()
        for buttons, frames in plan:
            for _ in range(frames):
                _, _, terminated, _, info = env.step(Gamepad.make(list(buttons)))
                steps += 1
                if terminated:
                    break
            if terminated:
                break
        assert terminated and info["game_exited"] and "x" in info, info
        assert steps < 100 and time.monotonic() - t < 15
    finally:
        env.close()
