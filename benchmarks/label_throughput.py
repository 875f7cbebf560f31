"""Labelling throughput on this machine: frames of 60 fps overlay video labelled per second (locate + read + write),
zero-shot and with a known preset (`--templates`), one process and a process pool, in the same run.

    python benchmarks/label_throughput.py [--seconds 60] [--videos 4] [--workers 2] [--out runs/benchmarks/label_throughput.json]

It makes 1280 x 720 overlay videos first (random play of atari/Pong and doom/basic, the project's held-out skins,
H.264 crf 23), then, for each mode:
- one process (1 torch thread) labels one video; the time is split into locate, adapt (known preset: the first
  video of a preset fine-tunes the parser, later ones load it from the cache), read (decode + crop + parse) and
  post-process + write;
- a pool of `--workers` processes labels all videos (what `azote label VIDEO... --workers N` does).
"Real time" is 60 frames per second of video; the target is at least 2x real time per core. The adaptation is
paid once per preset and size, so it is reported on its own and left out of the steady rate.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_videos(root: Path, count: int, seconds: float) -> tuple[list[Path], Path]:
    import azote.envs as envs
    from azote.agents import RandomAgent
    from azote.labeling.compose import Placement
    from azote.labeling.roundtrip import render_overlay_video
    from azote.labeling.skingen import heldout_presets
    from azote.labeling.synth import random_actions
    from azote.play.loop import play_episode

    preset = heldout_presets()[0]
    tpl = preset.save_input_overlay(root / "preset")
    n = int(seconds * 60)
    paths = []
    for i in range(count):
        game = ("atari/Pong", "doom/basic")[i % 2]
        env = envs.make(game)
        frames = [s.frame for s in play_episode(env, RandomAgent(seed=i, press_p=0.3), n, seed=i)]
        env.close()
        while len(frames) < n:  # an episode that ended early: play it again from the start
            frames += frames[: n - len(frames)]
        p = root / f"bench-{i}.mp4"
        s = 360 / preset.size[0]  # the same size in every video: one adaptation serves them all
        render_overlay_video(frames, random_actions(np.random.default_rng(i), n), p, preset, fps=60, crf=23,
                             placement=Placement(40 + 8 * i, 420 - 4 * i, s, 0.85))
        paths.append(p)
    return paths, tpl


def measure(videos: list[Path], root: Path, workers: int, templates: list[Path]) -> dict:
    from azote.labeling.label import label_video, label_videos, load_models
    from azote.labeling.locate import TemplateBank
    from azote.labeling.presets import load_preset

    model, det, namer = load_models()
    bank = TemplateBank([load_preset(t) for t in templates]) if templates else None
    first = label_video(videos[0], root / "warm", parser=model, detector=det, namer=namer, bank=bank)  # adapts once
    t = time.perf_counter()
    rep = label_video(videos[1 % len(videos)], root / "single", parser=model, detector=det, namer=namer, bank=bank)
    single = time.perf_counter() - t
    reports: list[dict] = []
    t = time.perf_counter()
    pool = label_videos(videos, root / "pool", workers=workers, templates=templates, on_result=reports.append)
    pooled = time.perf_counter() - t
    frames = rep["frames"]
    write = max(0.0, rep["seconds"] - rep["seconds_locate"] - rep["seconds_adapt"] - rep["seconds_parse"])
    steady = workers * sum(r["frames"] for r in reports) / sum(r["seconds"] for r in reports)
    return {"method": rep["locate"]["method"], "frames_per_video": frames, "resolution": rep["resolution"],
            "first_video_adapt_s": first["seconds_adapt"], "locate_s": rep["seconds_locate"],
            "adapt_s": rep["seconds_adapt"], "read_s": rep["seconds_parse"], "write_s": round(write, 3),
            "single_fps": round(frames / single, 1), "single_x_realtime": round(frames / single / 60, 2),
            "pool_fps": round(pool["frames"] / pooled, 1),
            "pool_x_realtime_per_core": round(pool["frames"] / pooled / 60 / workers, 2),
            "pool_steady_fps": round(steady, 1), "pool_steady_x_realtime_per_core": round(steady / 60 / workers, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)  # streamed videos are long: per-video costs amortise
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/label_throughput.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("AZOTE_CACHE", str(root / "cache"))  # the adaptation is measured, not reused
        videos, tpl = make_videos(root, args.videos, args.seconds)
        rows = {"zero-shot": measure(videos, root / "zero", args.workers, []),
                "known preset": measure(videos, root / "known", args.workers, [tpl])}
    result = {"cpu_cores": os.cpu_count(), "video_seconds": args.seconds, "videos": args.videos,
              "workers": args.workers, "modes": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    res = next(iter(rows.values()))["resolution"]
    print(f"\nLabelling throughput, {os.cpu_count()} CPU cores, {args.videos} videos of {args.seconds:.0f} s at 60 fps "
          f"({res[1]}x{res[0]})\n")
    names = list(rows)
    print("| measure | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for key, label in (("locate_s", "locate, s per video"), ("first_video_adapt_s", "adapt (first video of a preset), s"),
                       ("adapt_s", "adapt (cached), s per video"), ("read_s", "decode + crop + parse, s per video"),
                       ("write_s", "post-process + write, s per video"), ("single_fps", "frames/s, 1 process"),
                       ("single_x_realtime", "x real time, 1 process"),
                       ("pool_fps", f"frames/s, pool of {args.workers} (incl. start-up)"),
                       ("pool_x_realtime_per_core", "x real time per core, pool"),
                       ("pool_steady_fps", "frames/s, pool, time on videos"),
                       ("pool_steady_x_realtime_per_core", "x real time per core, pool, time on videos")):
        print(f"| {label} | " + " | ".join(str(rows[n][key]) for n in names) + " |")


if __name__ == "__main__":
    main()
