"""`azote games`, `azote record`, `azote play`: the simulator's verbs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from azote.cli.common import agent_from_spec, open_game, write_json


def games(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    family: Optional[str] = typer.Option(None, help="Only this family (atari, doom, nes, procgen, retro, native)."),
) -> None:
    """List the registered games with their family, resolution and frame rate."""
    from azote.envs import list_games, missing_families

    rows = [g.as_dict() for g in list_games(family)]
    for r in rows:
        r.pop("kwargs", None)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    typer.echo(f"{'id':42} {'family':8} {'resolution':>10} {'fps':>6}  view")
    for r in rows:
        res = "x".join(str(v) for v in r["resolution"])
        typer.echo(f"{r['id']:42} {r['family']:8} {res:>10} {r['fps']:6.1f}  {r['view']}")
    typer.echo(f"{len(rows)} games")
    for fam, why in missing_families().items():
        typer.echo(f"(family {fam} unavailable: {why})", err=True)


def record(
    game: str = typer.Option(..., help="Game id, e.g. atari/Breakout (see `azote games`)."),
    policy: str = typer.Option("random", help="random, expert, a checkpoint directory, or tcp://HOST:PORT."),
    episodes: int = typer.Option(1, min=1, help="Number of episodes."),
    max_steps: int = typer.Option(3600, min=1, help="Step limit per episode."),
    out: Path = typer.Option(..., help="Dataset directory (created; finished episodes are kept on a rerun)."),
    seed: int = typer.Option(0, help="Seed of the first episode; episode i uses seed + i."),
    execute: Optional[int] = typer.Option(None, min=1, help="Actions of each chunk executed before re-planning."),
    crf: int = typer.Option(18, min=0, max=51, help="H.264 quality (lower is better)."),
) -> None:
    """Play episodes and write them as a dataset (video + 20-second label chunks)."""
    from tqdm import tqdm

    from azote.dataset import EpisodeWriter, is_complete
    from azote.envs.rollout import play_episode

    env = open_game(game)
    agent = agent_from_spec(policy, env, seed)
    slug = env.game.id.replace("/", "-")
    summary = []
    bar = tqdm(total=episodes * max_steps, unit="step", desc=f"record {env.game.id}")
    try:
        for ep in range(episodes):
            video_id = f"{slug}_{agent.name}_seed{seed + ep}"
            if is_complete(out, video_id):
                bar.update(max_steps)
                summary.append({"video_id": video_id, "skipped": "already recorded"})
                continue
            t0, total, steps = time.time(), 0.0, 0
            with EpisodeWriter(out, video_id, env.game.id, env.game.fps, source=f"azote-record:{agent.name}",
                               crf=crf, extra={"seed": seed + ep, "policy": policy}) as writer:
                for step in play_episode(env, agent, max_steps, seed=seed + ep, execute=execute):
                    writer.add(step.frame, step.action)
                    total += step.reward
                    steps += 1
                    bar.update(1)
            bar.update(max_steps - steps)
            summary.append({"video_id": video_id, "steps": steps, "return": total,
                            "seconds": round(time.time() - t0, 2), "info": _plain(step.info)})
    finally:
        bar.close()
        env.close()
    write_json(out / "record.json", {"game": game, "policy": policy, "episodes": summary})
    typer.echo(f"wrote {len(summary)} episodes to {out}")


def play(
    game: str = typer.Option(..., help="Game id, e.g. nes/SuperMarioBros-1-1."),
    policy: str = typer.Option("random", help="random, expert, a checkpoint directory, or tcp://HOST:PORT."),
    steps: int = typer.Option(600, min=1, help="Steps to play (episodes restart until this many)."),
    out: Path = typer.Option(..., help="Output directory for the videos and the actions."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    execute: Optional[int] = typer.Option(None, min=1, help="Actions of each chunk executed before re-planning."),
) -> None:
    """Run a policy and write clean.mp4, debug.mp4 (what it pressed, drawn beside the frame) and actions.jsonl."""
    from tqdm import tqdm

    from azote.dataset.video import VideoWriter
    from azote.dataset.visual import debug_frame
    from azote.envs.rollout import play_episode

    env = open_game(game)
    agent = agent_from_spec(policy, env, seed)
    out.mkdir(parents=True, exist_ok=True)
    episodes, done, t0 = [], 0, time.time()
    with VideoWriter(out / "clean.mp4", env.game.fps) as clean, VideoWriter(out / "debug.mp4", env.game.fps) as debug, \
            open(out / "actions.jsonl.partial", "w") as log, tqdm(total=steps, unit="step", desc=f"play {game}") as bar:
        ep = 0
        while done < steps:
            total, n = 0.0, 0
            for step in play_episode(env, agent, steps - done, seed=seed + ep, execute=execute):
                clean.write(step.frame)
                debug.write(debug_frame(step.frame, step.action))
                log.write(json.dumps({"episode": ep, "step": step.index, **step.action.to_row(),
                                      "reward": step.reward}) + "\n")
                total += step.reward
                n += 1
                bar.update(1)
            episodes.append({"episode": ep, "steps": n, "return": total, "info": _plain(step.info)})
            done += n
            ep += 1
    (out / "actions.jsonl.partial").replace(out / "actions.jsonl")
    env.close()
    elapsed = time.time() - t0
    write_json(out / "summary.json", {"game": game, "policy": policy, "steps": done, "seconds": round(elapsed, 2),
                                      "steps_per_second": round(done / elapsed, 1), "episodes": episodes})
    typer.echo(f"{done} steps in {elapsed:.1f}s; videos in {out}")


def _plain(info: dict) -> dict:
    """The JSON-friendly part of an info dict (RAM arrays and other bulk values are left out)."""
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None}


def register(app: typer.Typer) -> None:
    app.command()(games)
    app.command()(record)
    app.command()(play)

