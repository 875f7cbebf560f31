"""Labelling throughput on this machine: frames of 60 fps overlay video labelled per second (locate + parse + write),
one process, and a process pool over several videos, in the same run.

    python benchmarks/label_throughput.py [--seconds 20] [--videos 4] [--workers 2] [--out runs/benchmarks/label_throughput.json]

It makes overlay videos first (random play of atari/Pong and doom/basic, a held-out skin, H.264 crf 23), then:
- one process (1 torch thread) labels one video; the time is split into locate, decode + crop + parse, and
  post-process + write (chunks + the video link);
- a pool of `--workers` processes labels all videos (what `azote label VIDEO... --workers N` does).
"Real time" is 60 frames per second of video; the target is at least 2x real time per core.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_videos(root: Path, count: int, seconds: float) -> list[Path]:
    import azote.envs as envs
    from azote.agents import RandomAgent
    from azote.envs.rollout import play_episode
    from azote.labeling.pipeline_hooks import render_overlay_video
    from azote.labeling.skins import HELDOUT_SKINS
    from azote.labeling.synth import random_actions

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
        render_overlay_video(frames, random_actions(np.random.default_rng(i), n), p, HELDOUT_SKINS[i % 12],
                             fps=60, crf=23, seed=i)
        paths.append(p)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/label_throughput.json"))
    args = parser.parse_args()

    import torch

    from azote.labeling.label import LabelConfig, label_video, label_videos
    from azote.labeling.parser import load_parser

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = make_videos(root, args.videos, args.seconds)
        model = load_parser()
        label_video(videos[0], root / "warm", parser=model)  # templates, index and weights loaded once
        t = time.perf_counter()
        rep = label_video(videos[1 % len(videos)], root / "single", parser=model, config=LabelConfig())
        single = time.perf_counter() - t
        t = time.perf_counter()
        pool_reports: list[dict] = []
        pool = label_videos(videos, root / "pool", workers=args.workers, on_result=pool_reports.append)
        pooled = time.perf_counter() - t
    frames = rep["frames"]
    write = max(0.0, rep["seconds"] - rep["seconds_locate"] - rep["seconds_parse"])
    single_fps = frames / single
    pool_fps = pool["frames"] / pooled
    # what each worker spent on its videos (start-up excluded): the rate of a pool on long videos
    steady_fps = args.workers * sum(r["frames"] for r in pool_reports) / sum(r["seconds"] for r in pool_reports)
    rows = {
        "cpu_cores": os.cpu_count(), "video_seconds": args.seconds, "frames_per_video": frames,
        "resolution": rep["resolution"], "locate_s": rep["seconds_locate"], "parse_s": rep["seconds_parse"],
        "write_s": round(write, 3), "single_process_fps": round(single_fps, 1),
        "single_process_x_realtime": round(single_fps / 60, 2), "pool_workers": args.workers,
        "pool_fps": round(pool_fps, 1), "pool_x_realtime_per_core": round(pool_fps / 60 / args.workers, 2),
        "pool_includes_process_start_s": True,
        "pool_steady_fps": round(steady_fps, 1), "pool_steady_x_realtime_per_core": round(steady_fps / 60 / args.workers, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"\nLabelling throughput, {os.cpu_count()} CPU cores, {args.videos} videos of {args.seconds:.0f} s at 60 fps "
          f"({rep['resolution'][1]}x{rep['resolution'][0]})\n")
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| locate (1 process), s per video | {rep['seconds_locate']:.2f} |")
    print(f"| decode + crop + parse (1 process), s per video | {rep['seconds_parse']:.2f} |")
    print(f"| post-process + write, s per video | {write:.2f} |")
    print(f"| frames/s, 1 process (1 torch thread; the decoder's own threads) | {single_fps:.0f} |")
    print(f"| x real time, 1 process | {single_fps / 60:.2f}x |")
    print(f"| frames/s, pool of {args.workers} processes (incl. start-up) | {pool_fps:.0f} |")
    print(f"| x real time per core, pool | {pool_fps / 60 / args.workers:.2f}x |")
    print(f"| frames/s, pool, time spent on videos (start-up excluded) | {steady_fps:.0f} |")
    print(f"| x real time per core, pool, start-up excluded | {steady_fps / 60 / args.workers:.2f}x |")
    print(f"| pool / single process | {pool_fps / single_fps:.2f}x |")


if __name__ == "__main__":
    main()
