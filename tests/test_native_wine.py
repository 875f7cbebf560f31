"""Windows programs under Wine through the clock shim (azote.envs.native.wine): determinism, time fidelity (the
program's QueryPerformanceCounter, GetTickCount and timeGetTime), pause fidelity, sleeps and waitable timers on
virtual time, the XInput pad, and nothing left behind after close or kill -9 of the owner.

The programs are our own (tests/wine/*.c: Win32 + OpenGL), cross-compiled with mingw-w64 into tests/wine/build
when missing or older than their sources. Each draws a readout of its state into the frame's top-left corner
(tests/wine/common.h), which `readout` decodes: a state reader as a real game's description would have."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.native

if shutil.which("Xvfb") is None or shutil.which("wine") is None or shutil.which("x86_64-w64-mingw32-gcc") is None:
    pytest.skip("Wine, mingw-w64 or Xvfb not installed: run `sudo bash scripts/native-deps.sh`", allow_module_level=True)

from azote.envs.native import InputProfile, NativeEnv, StickKeys  # noqa: E402
from azote.envs.native.wine import clone_prefix, template_prefix, windows_game, wine_missing, wine_state  # noqa: E402
from azote.gamepad import Gamepad  # noqa: E402
from processes import frame_digests, gone  # noqa: E402

if wine_missing():
    pytest.skip(wine_missing(), allow_module_level=True)

SRC = Path(__file__).parent / "wine"
BUILD = SRC / "build"
SLOTS = ("frames", "qpc_us", "tick_ms", "time_ms", "updates", "x", "y", "pad", "slept_us")


def build(name: str) -> Path:
    """tests/wine/<name>.c cross-compiled with mingw-w64 (again when it or common.h is newer than the .exe)."""
    exe, src = BUILD / f"{name}.exe", SRC / f"{name}.c"
    newest = max(src.stat().st_mtime, (SRC / "common.h").stat().st_mtime)
    if not exe.exists() or exe.stat().st_mtime < newest:
        BUILD.mkdir(exist_ok=True)
        tmp = exe.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-Wall", "-s", "-mwindows", "-o", str(tmp), str(src),
                        "-ld3d9", "-lopengl32", "-lgdi32", "-lwinmm", "-lxinput1_4"], check=True, timeout=300)
        tmp.replace(exe)
    return exe


def readout(frame: np.ndarray, home: Path | None = None) -> dict[str, int]:
    """The program's readout (tests/wine/common.h): value i in 4 blocks of 4x4 pixels at x = 16 i, a byte each."""
    return {name: sum(int(frame[1, 16 * i + 4 * k + 1, 0]) << (8 * k) for k in range(4))
            for i, name in enumerate(SLOTS)}


def game(name: str, pad: bool = False):  # noqa: ANN201
    return windows_game(f"wine-{name}", build(name), ("{width}", "{height}"), pad=pad, reader=readout,
                        profile=InputProfile(left_stick=StickKeys()), description=f"tests/wine/{name}.c")


def actions(n: int, seed: int = 0) -> list[Gamepad]:
    rng = np.random.default_rng(seed)
    return [Gamepad.make(j_left=rng.choice([-1.0, 0.0, 1.0], 2)) for _ in range(n)]


@pytest.fixture(scope="module")
def fixed():
    env = NativeEnv(game=game("fixed"))
    yield env
    env.close()


def test_template_prefix_is_cloned_with_links(tmp_path: Path) -> None:
    template = template_prefix()
    assert (template / "system.reg").is_file() and (template / "drive_c" / "windows" / "system32").is_dir()
    t = time.monotonic()
    clone_prefix(template, tmp_path / "prefix")
    took = time.monotonic() - t
    dll = tmp_path / "prefix" / "drive_c" / "windows" / "system32" / "kernel32.dll"
    assert dll.stat().st_ino == (template / "drive_c" / "windows" / "system32" / "kernel32.dll").stat().st_ino
    assert (tmp_path / "prefix" / "system.reg").stat().st_ino != (template / "system.reg").stat().st_ino
    assert took < 10, took  # measured: 0.1 s (about 900 files), against 7-15 s for wineboot -i


def test_fixed_timestep_deterministic_with_pause_fidelity(fixed: NativeEnv) -> None:
    acts = actions(60)
    first = frame_digests(fixed, acts)
    assert len(set(first)) > 50, "frames should change every step (the bar sweeps, the player moves)"
    assert frame_digests(fixed, acts) == first
    assert frame_digests(fixed, acts, pauses=np.random.default_rng(1)) == first, "wall-clock pauses changed the frames"


def test_time_fidelity_of_the_programs_clocks(fixed: NativeEnv) -> None:
    """N steps are exactly N/60 s of QueryPerformanceCounter, GetTickCount and timeGetTime, and 2N updates of the
    program's 120 Hz fixed timestep."""
    obs, info = fixed.reset()
    for _ in range(10):
        obs, *_, start = fixed.step(Gamepad.neutral())
    for _ in range(600):
        obs, *_, end = fixed.step(Gamepad.make(j_left=(1.0, 0.0)))
    assert end["qpc_us"] - start["qpc_us"] == 10_000_000
    assert end["tick_ms"] - start["tick_ms"] == 10_000
    assert end["time_ms"] - start["time_ms"] == 10_000
    assert end["updates"] - start["updates"] == 1200
    assert end["game_time"] - start["game_time"] == pytest.approx(10.0, abs=1e-9)
    # holding right (the arrow key through XTEST) for 10 s at 120 px/s: to the window's right edge and beyond
    assert (end["x"] - start["x"]) / 100 == pytest.approx(1200.0, abs=2.0)


def test_sleeps_and_waitable_timers_run_on_virtual_time() -> None:
    env = NativeEnv(game=game("sleeper"))
    try:
        acts = [Gamepad.make(j_left=(1.0, 0.0))] * 30 + actions(30, seed=2)
        first = frame_digests(env, acts)
        assert frame_digests(env, acts, pauses=np.random.default_rng(3)) == first
        obs, info = env.reset()
        for _ in range(5):
            obs, *_, start = env.step(Gamepad.neutral())
        for _ in range(60):
            obs, *_, end = env.step(Gamepad.make(j_left=(1.0, 0.0)))
        # each frame: Sleep(3) and a 4 ms waitable timer, exactly, then paced by Sleep(1) to the frame's deadline
        assert end["slept_us"] - start["slept_us"] == 60 * 7000
        assert end["qpc_us"] - start["qpc_us"] == 1_000_000 and end["tick_ms"] - start["tick_ms"] == 1000
        assert (end["x"] - start["x"]) / 100 == pytest.approx(90.0, abs=0.1)  # 90 px/s of measured time
        state = wine_state(env._session.shm)
        assert state["jumps"] >= 60, state  # the timer waits: virtual time moved to the server's deadline
    finally:
        env.close()


def test_xinput_stick_moves_the_player_in_proportion() -> None:
    env = NativeEnv(game=game("pad", pad=True))
    try:
        assert env.pad is not None and env.pad.api == "xinput"
        moved = {}
        for v in (0.25, 0.5, 1.0):
            obs, info = env.reset()
            assert env._session.shm["pad_status"] & 8, "the game should have read Azote's XInput"
            assert info["pad"] & 1, "controller 0 connected"
            obs, *_, start = env.step(Gamepad.make(j_left=(v, 0.0)))
            for _ in range(60):
                obs, *_, end = env.step(Gamepad.make(["south"], j_left=(v, 0.0)))
            assert end["pad"] >> 8 & 0x1000, "A (south) reaches the game as XINPUT_GAMEPAD_A"
            moved[v] = (end["x"] - start["x"]) / 100
            assert end["y"] == start["y"]
        # 60 px/s at full deflection, 60 updates of 1/60 s: 60 px; the stick's int16 rounding aside, in proportion
        assert moved[1.0] == pytest.approx(60.0, abs=0.1), moved
        assert moved[0.5] / moved[1.0] == pytest.approx(0.5, abs=0.002), moved
        assert moved[0.25] / moved[1.0] == pytest.approx(0.25, abs=0.002), moved
    finally:
        env.close()


def test_direct3d9_through_wined3d_presents_one_frame_a_step() -> None:
    """Direct3D 9 (wined3d, on OpenGL): each Present is one step, the program's clock exact, frames the same."""
    env = NativeEnv(game=game("d3d9"))
    try:
        acts = [Gamepad.neutral()] * 40
        first = frame_digests(env, acts)
        assert frame_digests(env, acts, pauses=np.random.default_rng(4)) == first
        obs, info = env.reset()
        obs, *_, start = env.step(Gamepad.neutral())
        for _ in range(60):
            obs, *_, end = env.step(Gamepad.neutral())
        assert end["frames"] - start["frames"] == 60 and end["qpc_us"] - start["qpc_us"] == 1_000_000
        assert len(set(first)) > 30  # the clear colour follows the program's clock
    finally:
        env.close()


def _wine_pids(shm_path: str) -> list[int]:
    """Processes whose environment names this session's shared file (the Wine session, wineserver included)."""
    want = f"AZOTE_SHM={shm_path}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if want in (d / "environ").read_bytes().split(b"\0"):
                    found.append(int(d.name))
            except OSError:
                continue
    return found


OWNER = """
import json, os, sys
from azote.envs.native import NativeEnv
from azote.envs.native.wine import windows_game
env = NativeEnv(game=windows_game("wine-fixed", sys.argv[1], ("{width}", "{height}")))
env.reset()
s = env._session
server = [p for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/exe")
          and os.path.basename(os.readlink(f"/proc/{p}/exe")).startswith("wineserver")
          and f"AZOTE_SHM={s.shm.path}".encode() in open(f"/proc/{p}/environ", "rb").read().split(b"\\0")]
print(json.dumps({"display": env.display, "dir": str(s.dir), "shm": s.shm.path,
                  "server_dir": os.readlink(f"/proc/{server[0]}/cwd") if server else None}), flush=True)
sys.stdin.read()
"""


def _wait_gone(pids: list[int], paths: list[str], seconds: float = 20) -> list:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids if not gone(p)] + [p for p in paths if os.path.lexists(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_kill_9_of_the_owner_leaves_no_process_prefix_or_socket() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(build("fixed"))], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        seen = json.loads(owner.stdout.readline())
        pids = _wine_pids(seen["shm"])
        names = {Path(os.readlink(f"/proc/{p}/exe")).name for p in pids if not gone(p)}
        assert any(n.startswith("wineserver") for n in names) and len(pids) >= 4, names
        prefix = Path(seen["dir"]) / "home" / ".wine"
        assert (prefix / "system.reg").exists() and seen["server_dir"]
        paths = [seen["dir"], seen["shm"], seen["server_dir"], f"/tmp/.X11-unix/X{seen['display'].lstrip(':')}"]
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    left = _wait_gone(pids, paths)
    assert not left, f"left behind after kill -9 of the owner: {left}"


def test_close_leaves_no_process(fixed: NativeEnv) -> None:
    env = NativeEnv(game=game("fixed"))
    env.reset()
    shm = env._session.shm.path
    pids = _wine_pids(shm)
    assert any(Path(os.readlink(f"/proc/{p}/exe")).name.startswith("wineserver") for p in pids if not gone(p))
    env.close()
    assert not _wait_gone(pids, [shm])
