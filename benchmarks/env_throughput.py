"""Steps per second of each game adapter against its raw engine, measured in the same run.

    python benchmarks/env_throughput.py [--steps 3000] [--rounds 3] [--out runs/benchmarks/env_throughput.json]

Both loops play the same actions (the wrapper's gamepad actions, translated once to native inputs for the raw
loop) and both fetch the frame each step. Rounds alternate raw and wrapped so machine noise hits both; the best
round of each is reported. The wrapper's overhead target is <= 10% on Atari and Doom.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import azote.envs as envs
from azote.gamepad import Gamepad


def gamepad_actions(n: int, seed: int = 0) -> list[Gamepad]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pressed = [b for b in ("south", "east", "west", "right_trigger", "dpad_right", "dpad_up") if rng.random() < 0.2]
        out.append(Gamepad.make(pressed, j_left=rng.uniform(-1, 1, 2), j_right=rng.uniform(-1, 1, 2)))
    return out


def wrapped_loop(env, actions):
    env.reset(seed=0)
    t = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (time.perf_counter() - t)


# --- raw engines: the bare library calls a user would make, with the same config as the adapter -----------
def raw_atari(env, native):
    ale = env._ale
    ale.reset_game()
    t = time.perf_counter()
    for a in native:
        ale.act(a)
        ale.getScreenRGB()
        if ale.game_over():
            ale.reset_game()
    return len(native) / (time.perf_counter() - t)


def raw_doom(env, native):
    g = env._game
    g.new_episode()
    t = time.perf_counter()
    for a in native:
        g.make_action(a, 1)
        if g.is_episode_finished():
            g.new_episode()
        state = g.get_state()
        if state is not None:
            state.screen_buffer
    return len(native) / (time.perf_counter() - t)


def raw_libretro(env, native):
    em = env._machine.emulator
    t = time.perf_counter()
    for a in native:
        em.set_button_mask(a, 0)
        em.step()
        em.get_screen()
    return len(native) / (time.perf_counter() - t)


def raw_retro_env(env, native):
    """stable-retro's own Gymnasium env (it reads RAM for reward and done each step, as the adapter does)."""
    import stable_retro as retro

    game = envs.game_info(env.game.id).kwargs["game"]
    env.close()
    renv = retro.make(game, render_mode=None)
    renv.reset()
    t = time.perf_counter()
    for a in native:
        _, _, term, trunc, _ = renv.step(a)
        if term or trunc:
            renv.reset()
    rate = len(native) / (time.perf_counter() - t)
    renv.close()
    return rate


def raw_procgen(env, native):
    penv = env._env
    t = time.perf_counter()
    for a in native:
        penv.act(np.array([a]))
        penv.observe()
    return len(native) / (time.perf_counter() - t)


CASES = [
    ("atari/Breakout", raw_atari),
    ("doom/basic", raw_doom),
    ("nes/SuperMarioBros", raw_libretro),
    ("procgen/coinrun", raw_procgen),
    ("retro/Airstriker-Genesis", raw_retro_env),
]


def measure(game_id: str, raw, steps: int, rounds: int) -> dict:
    actions = gamepad_actions(steps)
    best_raw, best_wrapped = 0.0, 0.0
    for _ in range(rounds):
        env = envs.make(game_id)
        native = [env.map_action(a) for a in actions]
        best_wrapped = max(best_wrapped, wrapped_loop(env, actions))
        env.reset(seed=0)
        best_raw = max(best_raw, raw(env, native))
        env.close()
    return {"game": game_id, "raw_steps_per_s": round(best_raw, 1), "azote_steps_per_s": round(best_wrapped, 1),
            "overhead_pct": round(100.0 * (best_raw / best_wrapped - 1.0), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/env_throughput.json"))
    args = parser.parse_args()
    rows = []
    for game_id, raw in CASES:
        try:
            rows.append(measure(game_id, raw, args.steps, args.rounds))
        except (KeyError, ImportError, RuntimeError) as exc:
            print(f"skip {game_id}: {exc}", file=sys.stderr)
    print(f"\nEnvironment throughput, {os.cpu_count()} CPU cores, {args.steps} steps x {args.rounds} rounds (best)\n")
    print("| game | raw engine steps/s | Azote steps/s | wrapper overhead |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['game']} | {r['raw_steps_per_s']:.0f} | {r['azote_steps_per_s']:.0f} | {r['overhead_pct']:+.1f}% |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
