"""Training throughput on this machine: trainer samples per second (tiny, CPU) against what the data loader
delivers, in the same run.

    python benchmarks/train_throughput.py [--preset tiny] [--batch-size 32] [--steps 10] [--out runs/benchmarks/train_throughput.json]

It records a small dataset first (Atari 210x160 and Doom 320x240 episodes), then measures:
- decode: frames per second of sequential decoding + preparation (resize to the model's image size), one process;
- loader: samples per second one loader process delivers (windows of chunks decoded once, many batches each);
- trainer: samples per second of a full optimiser step (augment + forward + backward + AdamW + EMA).
The loader keeps a trainer busy when loader samples/s x workers >= trainer samples/s; the table says how many
loader processes a trainer of a given speed needs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import azote.envs as envs
from azote.agents import RandomAgent
from azote.dataset import Dataset, EpisodeWriter
from azote.dataset.samples import SampleConfig, TrainingSamples, prepare_frame
from azote.play.loop import play_episode
from azote.policy import build_model, get_preset
from azote.training.augment import AugmentConfig, augment
from azote.training.schedule import EMA


def make_data(root: Path, steps: int) -> None:
    for game in ("atari/Breakout", "doom/basic"):
        env = envs.make(game)
        for seed in range(2):
            with EpisodeWriter(root, f"{game.replace('/', '-')}-{seed}", game, env.game.fps) as w:
                for step in play_episode(env, RandomAgent(seed=seed, press_p=0.3), steps, seed=seed):
                    w.add(step.frame, step.action)
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--episode-steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/train_throughput.json"))
    args = parser.parse_args()
    cfg = get_preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, args.episode_steps)
        ds = Dataset.open(root)
        scfg = SampleConfig(horizon=cfg.action_horizon, image_size=cfg.vision.image_size, batch_size=args.batch_size,
                            min_action_density=0.0)
        samples = TrainingSamples([ds], scfg)

        decode = {}
        for game in ("atari/Breakout", "doom/basic"):
            chunk = next(c for c in ds.chunks if c.game == game)
            t = time.perf_counter()
            n = sum(1 for f in chunk.frames() for _ in [prepare_frame(f, chunk, scfg.image_size)])
            decode[game] = n / (time.perf_counter() - t)

        windows = 2
        t = time.perf_counter()
        for i in range(windows * scfg.batches_per_window):
            samples.batch(i)
        loader_sps = windows * scfg.batches_per_window * scfg.batch_size / (time.perf_counter() - t)

        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.001)
        ema = EMA(model)
        batches = [samples.batch(i) for i in range(args.steps + 2)]

        def step(b: dict) -> None:
            px = (b["pixel_values"].float() / 255 - 0.5) / 0.5
            px = augment(px, AugmentConfig(), torch.Generator().manual_seed(0))
            loss = model.compute_loss({"pixel_values": px, "actions": b["actions"], "action_mask": b["action_mask"]})
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema.update(model)

        for b in batches[:2]:  # warm-up
            step(b)
        t = time.perf_counter()
        for b in batches[2:]:
            step(b)
        train_sps = args.steps * args.batch_size / (time.perf_counter() - t)

    workers_needed = train_sps / loader_sps
    rows = {
        "cpu_cores": os.cpu_count(), "preset": args.preset, "batch_size": args.batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "decode_frames_per_s": {k: round(v, 1) for k, v in decode.items()},
        "loader_samples_per_s_per_process": round(loader_sps, 1),
        "trainer_samples_per_s": round(train_sps, 1),
        "loader_processes_to_keep_trainer_busy": round(workers_needed, 2),
        "samples_per_decoded_frame": round(scfg.batches_per_window * scfg.batch_size
                                           / (scfg.chunks_per_window * 1200), 3),
    }
    print(f"\nTraining throughput, {os.cpu_count()} CPU cores, preset {args.preset} "
          f"({rows['parameters'] / 1e6:.1f}M parameters), batch {args.batch_size}\n")
    print("| measure | value |")
    print("| --- | ---: |")
    for game, v in decode.items():
        print(f"| decode + resize, {game} (frames/s, 1 process) | {v:.0f} |")
    print(f"| loader samples/s (1 process) | {loader_sps:.0f} |")
    print(f"| trainer samples/s ({args.preset}, CPU) | {train_sps:.1f} |")
    print(f"| loader / trainer ratio | {loader_sps / train_sps:.1f}x |")
    print(f"| loader processes needed for this trainer | {workers_needed:.2f} |")
    print(f"| loader processes for a trainer at 1000 samples/s (a GPU) | {1000 / loader_sps:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
