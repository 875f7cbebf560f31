"""OpenArena (ioquake3) against its bots as a native game: lockstep start, determinism with bots (also with
wall-clock pauses), frags and deaths from the server's log, health and position from the game's memory, the
gamepad through SDL, and no process left after close."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.native

if shutil.which("Xvfb") is None or not (shutil.which("openarena") or os.path.exists("/usr/games/openarena")):
    pytest.skip("OpenArena not installed: run `sudo bash scripts/native-deps.sh`", allow_module_level=True)

import azote.envs  # noqa: E402,F401
from azote.envs.native import NativeEnv  # noqa: E402
from azote.envs.native.openarena import LOG, PID_FILE, OpenArenaReader, elf_symbols  # noqa: E402
from azote.gamepad import Gamepad  # noqa: E402


def _actions(n: int, seed: int = 0) -> list[Gamepad]:
    """Walking, turning, looking and firing at random (held a few steps at a time)."""
    rng = np.random.default_rng(seed)
    out: list[Gamepad] = []
    while len(out) < n:
        pad = Gamepad.make(["right_trigger"] if rng.random() < 0.4 else [], j_left=rng.choice([-1.0, 0.0, 1.0], 2),
                           j_right=(rng.uniform(-1, 1), rng.uniform(-0.3, 0.3)))
        out += [pad] * int(rng.integers(1, 6))
    return out[:n]


def _run(env: NativeEnv, actions: list[Gamepad], pauses: np.random.Generator | None = None
         ) -> tuple[list[str], list[dict]]:
    obs, info = env.reset()
    digests, infos = [hashlib.sha1(obs.tobytes()).hexdigest()], [info]
    for a in actions:
        if pauses is not None:
            time.sleep(float(pauses.uniform(0, 0.03)))  # wall-clock pause between steps: must change nothing
        obs, _, _, _, info = env.step(a)
        digests.append(hashlib.sha1(obs.tobytes()).hexdigest())
        infos.append(info)
    return digests, infos


def _first_difference(a: list[str], b: list[str]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


@pytest.fixture(scope="module")
def openarena():
    env = NativeEnv(game="openarena")
    yield env
    env.close()


def test_starts_in_the_match_in_lockstep(openarena: NativeEnv) -> None:
    obs, info = openarena.reset()
    s = openarena._session
    assert s.shm["lockstep"] == 1 and s.shm["pad_status"] & 1, "lockstep, with the SDL pad attached"
    assert obs.shape == (240, 320, 3) and info["frame"] == 0
    # in the match from the first observation: spawned with 125 health (it ticks down to 100), the machine gun
    assert info["alive"] == 1 and info["health"] == 125 and info["weapon"] == 2 and info["ammo"] == 100
    assert info["frags"] == 0 and info["deaths"] == 0
    t0 = info["level_time"]
    for _ in range(120):
        obs, _, _, _, info = openarena.step(Gamepad.neutral())
    # 120 steps are 2 s of the game's clock; the server's own clock (20 Hz frames) moved by as much
    assert info["game_time"] == pytest.approx(2.0, abs=1e-9)
    assert info["level_time"] - t0 == pytest.approx(2.0, abs=0.051)
    assert (s.home / LOG).is_file() and int((s.home / PID_FILE).read_text()) == s.proc.pid


def test_deterministic_with_bots_and_pauses(openarena: NativeEnv) -> None:
    """The bots' randomness is seeded from the game's clock, which the shim makes virtual: same inputs from
    reset, same frames, whatever the pauses between steps (each reset starts a new game process)."""
    actions = _actions(150)
    first, infos = _run(openarena, actions)
    assert len(set(first)) > 140, "frames should change as the player and the bots move"
    assert infos[-1]["ammo"] < 100, "it fired"
    paused, _ = _run(openarena, actions, pauses=np.random.default_rng(1))
    assert first == paused, f"frames differ from step {_first_difference(first, paused)}"


def test_deterministic_with_keyboard_and_mouse() -> None:
    env = NativeEnv(game="openarena", gamepad=False)
    try:
        assert env.pad is None
        actions = _actions(100, seed=2)
        first, infos = _run(env, actions)
        again, _ = _run(env, actions, pauses=np.random.default_rng(2))
        assert first == again, f"frames differ from step {_first_difference(first, again)}"
        # w/s/a/d walk, the mouse (right stick) turns, mouse1 (right trigger) fires
        path = sum(np.hypot(b["x"] - a["x"], b["y"] - a["y"]) for a, b in zip(infos, infos[1:]))
        assert path > 200 and infos[-1]["ammo"] < 100 and infos[-1]["yaw"] != infos[0]["yaw"]
    finally:
        env.close()


def test_right_stick_turns_in_proportion_and_trigger_fires(openarena: NativeEnv) -> None:
    """ioquake3 reads the shim's SDL game controller with analog axes: the right stick turns by 4 degrees per
    step at full deflection past a dead zone of 0.05 (0.5 -> (0.5 - 0.05) / 0.95 of it)."""
    turned = {}
    for v in (0.5, 1.0):
        _, info = openarena.reset()
        yaw0 = info["yaw"]
        for _ in range(10):
            _, _, _, _, info = openarena.step(Gamepad.make(j_right=(v, 0.0)))
        turned[v] = (yaw0 - info["yaw"]) % 360.0  # right turns clockwise: yaw decreases
    assert turned[1.0] == pytest.approx(40.0, abs=1.0), turned
    assert turned[0.5] / turned[1.0] == pytest.approx(0.45 / 0.95, abs=0.02), turned
    for _ in range(30):  # the machine gun fires every 0.1 s
        _, _, _, _, info = openarena.step(Gamepad.make(["right_trigger"]))
    assert info["ammo"] == 95


def test_frags_rise_when_a_bot_is_fragged(openarena: NativeEnv) -> None:
    """The recorded solution of openarena-frag (it aims at the nearest bot) frags one at its last step: the
    reader counts it from the server's log, once, with a reward of 1."""
    from azote.bench import load_suite
    from azote.bench.solutions import load_solution

    task = load_suite("standard").task("openarena-frag")
    solution = load_solution(task)
    _, info = openarena.reset(seed=task.seed + solution.episode, options={"noops": solution.noops})
    frags, rewards = [info["frags"]], []
    for action in solution.actions:
        _, reward, _, _, info = openarena.step(action)
        frags.append(info["frags"])
        rewards.append(reward)
    assert frags[0] == 0 and frags[-1] == 1 and frags[-2] == 0, "the frag comes at the solution's last step"
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and info["game_score"] == 1  # the game's own score
    log = (openarena._session.home / LOG).read_text()
    assert "killed" in log and "Azote killed" in log


def test_standing_still_fails_the_survive_task(openarena: NativeEnv) -> None:
    """The bots hunt the player: one that does nothing dies before openarena-survive's 20 s are up."""
    from azote.agents import ScriptedAgent
    from azote.bench import load_suite
    from azote.bench.runner import run_episode
    from azote.gamepad import ActionChunk

    task = load_suite("standard").task("openarena-survive")
    result = run_episode(task, openarena, ScriptedAgent(ActionChunk.neutral(1)), 0)
    assert result["reason"] == "failure" and result["final"]["deaths"] == 1, result
    assert result["steps"] < task.max_steps  # killed after about 12 s


def test_log_parser_counts_frags_deaths_and_suicides(tmp_path: Path) -> None:
    """The reader's log side on a written log (no game): kills of the player's client number only, suicides and
    world kills (1022) count as deaths and suicides, a client that takes another name is no longer the player."""
    log = tmp_path / LOG
    log.parent.mkdir(parents=True)
    reader = OpenArenaReader()
    lines = [
        r"  0:00 ClientUserinfoChanged: 0 n\Sarge\t\0\model\sarge",
        r"  0:00 ClientUserinfoChanged: 2 n\^1Az^7ote\t\0\model\sarge",
        "  0:03 Kill: 2 0 3: Azote killed Sarge by MOD_MACHINEGUN",
        "  0:04 Kill: 0 1 3: Sarge killed Tony by MOD_MACHINEGUN",
        "  0:05 Kill: 0 2 3: Sarge killed Azote by MOD_MACHINEGUN",
    ]
    log.write_text("\n".join(lines) + "\n  0:06 Kill: 2 2 7: Azote ki")  # a line being written
    info = reader(np.zeros((2, 2, 3), np.uint8), tmp_path)
    assert (info["frags"], info["deaths"], info["suicides"], info["reward"]) == (1, 1, 0, 1.0)
    with open(log, "a") as f:
        f.write("lled Azote by MOD_ROCKET_SPLASH\n  0:07 Kill: 1022 2 19: <world> killed Azote by MOD_FALLING\n")
    info = reader(np.zeros((2, 2, 3), np.uint8), tmp_path)
    assert (info["frags"], info["deaths"], info["suicides"], info["reward"]) == (1, 3, 2, -2.0)
    assert "health" not in info  # no game process to read


def test_game_module_exports_what_the_reader_reads() -> None:
    path = "/usr/lib/openarena/baseoa/qagamex86_64.so"
    symbols = elf_symbols(os.path.realpath(path), {"g_entities", "g_clients", "level"})
    assert set(symbols) == {"g_entities", "g_clients", "level"}
    assert symbols["g_clients"][1] % 64 == 0 and symbols["g_entities"][1] % 1024 == 0


def test_close_leaves_no_processes() -> None:
    env = NativeEnv(game="openarena")
    env.reset()
    env.step(Gamepad.neutral())
    pids, display = env.pids, env.display
    assert len(pids) == 2 and display
    env.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), pids
    assert not os.path.exists(f"/tmp/.X11-unix/X{display.lstrip(':')}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie not yet reaped counts as gone
        return not f.read().split(") ")[1].startswith("Z")
