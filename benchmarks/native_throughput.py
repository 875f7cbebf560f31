"""Steps per second of the native games (software OpenGL under Xvfb, frame-exact lockstep through the clock shim)
at 320x240 and 640x480, against the game's real-time rate (60 frames per second).

    python benchmarks/native_throughput.py [--steps 150] [--games neverball supertux extremetuxracer openarena minetest]

A ratio above 1 means the game runs faster than real time. Results also go to runs/benchmarks/native_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import azote.envs
from azote.envs.native import NativeEnv
from azote.gamepad import Gamepad


def measure(game: str, resolution: tuple[int, int], steps: int) -> dict:
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
    return {"game": game, "resolution": f"{resolution[1]}x{resolution[0]}",
            "rendered": f"{native[1]}x{native[0]}" if native else f"{resolution[1]}x{resolution[0]}",
            "steps_per_s": sps, "realtime_ratio": sps / env.game.fps, "reset_s": reset_s, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--games", nargs="+", default=["neverball", "supertux", "extremetuxracer", "openarena", "minetest"])
    ap.add_argument("--out", default="runs/benchmarks/native_throughput.json")
    args = ap.parse_args()
    azote.envs.list_games("native")
    rows = []
    for game in args.games:
        for res in ((240, 320), (480, 640)):
            rows.append(measure(game, res, args.steps))
            r = rows[-1]
            print(f"{game:16s} {r['resolution']:8s} {r['steps_per_s']:7.1f} steps/s  x{r['realtime_ratio']:.2f} real time", flush=True)
    print(f"\nNative games, {os.cpu_count()} CPU cores, software OpenGL (llvmpipe), {args.steps} steps each")
    print("| game | observation | rendered | steps/s | x real time (60 fps) | reset (s) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['game']} | {r['resolution']} | {r['rendered']} | {r['steps_per_s']:.1f} | {r['realtime_ratio']:.2f} | {r['reset_s']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(out)


if __name__ == "__main__":
    main()
