"""Steps per second of the native games (software OpenGL under Xvfb, frame-exact lockstep through the clock shim)
at 320x240 and 640x480, against the game's real-time rate (60 frames per second).

    python benchmarks/native_throughput.py [--steps 150] [--games neverball supertux extremetuxracer openarena minetest supertuxkart]
        [--wine fixed sleeper pad]

A ratio above 1 means the game runs faster than real time. `--wine` adds Windows programs under Wine (our own test
programs, tests/wine/*.c, cross-compiled with mingw-w64; `--wine` with no names skips them) and Wine's start-up
time: `wineboot -i` of the template prefix (once per machine) and a reset (prefix cloned, Wine started, lockstep).
Results also go to runs/benchmarks/native_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

import azote.envs
from azote.envs.native import NativeEnv
from azote.gamepad import Gamepad

WINE_SOURCES = Path(__file__).resolve().parent.parent / "tests" / "wine"


def wine_program(name: str):  # noqa: ANN201 - a WindowsGame
    """tests/wine/<name>.c built (when missing or older than its source) and described as a Windows game."""
    from azote.envs.native.wine import windows_game

    src, exe = WINE_SOURCES / f"{name}.c", WINE_SOURCES / "build" / f"{name}.exe"
    if not exe.exists() or exe.stat().st_mtime < max(src.stat().st_mtime, (WINE_SOURCES / "common.h").stat().st_mtime):
        exe.parent.mkdir(exist_ok=True)
        subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-s", "-mwindows", "-o", str(exe), str(src), "-ld3d9",
                        "-lopengl32", "-lgdi32", "-lwinmm", "-lxinput1_4"], check=True)
    return windows_game(f"wine-{name}", exe, ("{width}", "{height}"), pad=name == "pad")


def wine_startup() -> dict:
    """Seconds of `wineboot -i` for the template prefix (made now if it is not there yet)."""
    from azote.envs.native.wine import template_dir, template_prefix, wine_version

    template_prefix()
    boot = float((template_dir() / "boot_seconds").read_text())
    return {"wine": wine_version(), "template_wineboot_s": boot}


def measure(game, resolution: tuple[int, int], steps: int) -> dict:  # noqa: ANN001 - a name or a NativeGame
    env = NativeEnv(game=game, resolution=resolution)
    try:
        t = time.perf_counter()
        env.reset()
        reset_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        actions = [Gamepad.make(j_left=rng.choice([-1.0, 0.0, 1.0], 2)) for _ in range(steps)]
        t = time.perf_counter()
        for a in actions:
            env.step(a)
        elapsed = time.perf_counter() - t
        native = env.native_game.render_size
    finally:
        env.close()
    sps = steps / elapsed
    name = game if isinstance(game, str) else game.name
    return {"game": name, "resolution": f"{resolution[1]}x{resolution[0]}",
            "rendered": f"{native[1]}x{native[0]}" if native else f"{resolution[1]}x{resolution[0]}",
            "steps_per_s": sps, "realtime_ratio": sps / env.game.fps, "reset_s": reset_s, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--games", nargs="*", default=["neverball", "supertux", "extremetuxracer", "openarena", "minetest",
                                                   "supertuxkart"])
    ap.add_argument("--wine", nargs="*", default=["fixed", "sleeper", "pad"])
    ap.add_argument("--out", default="runs/benchmarks/native_throughput.json")
    args = ap.parse_args()
    azote.envs.list_games("native")
    rows = []
    games: list = list(args.games)
    startup = None
    if args.wine and shutil.which("wine") and shutil.which("x86_64-w64-mingw32-gcc"):
        startup = wine_startup()
        games += [wine_program(name) for name in args.wine]
    for game in games:
        for res in ((240, 320), (480, 640)):
            rows.append(measure(game, res, args.steps))
            r = rows[-1]
            print(f"{r['game']:16s} {r['resolution']:8s} {r['steps_per_s']:7.1f} steps/s  x{r['realtime_ratio']:.2f} real time", flush=True)
    print(f"\nNative games, {os.cpu_count()} CPU cores, software OpenGL (llvmpipe), {args.steps} steps each")
    print("| game | observation | rendered | steps/s | x real time (60 fps) | reset (s) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['game']} | {r['resolution']} | {r['rendered']} | {r['steps_per_s']:.1f} | {r['realtime_ratio']:.2f} | {r['reset_s']:.1f} |")
    if startup:
        print(f"\n{startup['wine']}: template prefix (wineboot -i, once) {startup['template_wineboot_s']:.1f} s; "
              "a reset of a Windows program is its row's reset (s): prefix cloned, Wine started, lockstep reached")
        rows.append(startup)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(out)


if __name__ == "__main__":
    main()
