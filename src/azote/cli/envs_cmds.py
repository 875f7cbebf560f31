"""`azote games`, `azote record`, `azote demos`: the simulator's verbs (`azote play` is in serving_cmds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from azote.agents import check_spec
from azote.cli.common import fail, open_game
from azote.files import write_json


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
    workers: int = typer.Option(1, min=1, help="Episodes played in parallel processes."),
) -> None:
    """Play episodes and write them as a dataset (video + 20-second label chunks)."""
    _record(game, policy, episodes, max_steps, out, seed, execute, crf, workers)


def demos(
    game: str = typer.Option(..., help="Game id whose engine has snapshots (Atari, NES, retro, Procgen)."),
    episodes: int = typer.Option(1, min=1, help="Number of episodes."),
    max_steps: int = typer.Option(3600, min=1, help="Step limit per episode."),
    out: Path = typer.Option(..., help="Dataset directory (finished episodes are kept on a rerun)."),
    seed: int = typer.Option(0, help="Seed of the first episode; episode i uses seed + i."),
    workers: int = typer.Option(1, min=1, help="Episodes played in parallel processes."),
) -> None:
    """Demonstrations by the planning expert (search over emulator snapshots), written as a dataset."""
    _record(game, "expert", episodes, max_steps, out, seed, None, 18, workers)


def _record(game: str, policy: str, episodes: int, max_steps: int, out: Path, seed: int, execute: int | None,
            crf: int, workers: int) -> None:
    from tqdm import tqdm

    from azote.play.recording import record_episodes

    env = open_game(game)  # a clear error for a bad game id (or a game the expert cannot plan) before any worker
    try:
        if policy == "expert":
            from azote.experts.profiles import profile_for

            profile_for(env)
    except ValueError as exc:
        fail(str(exc))
    finally:
        env.close()
    check_spec(policy)
    # one worker ticks every step; a pool ticks a whole episode (as max_steps) when it finishes
    with tqdm(total=episodes * max_steps, unit="step", desc=f"record {game} ({policy})") as bar:
        results = record_episodes(game, policy, out, list(range(seed, seed + episodes)), max_steps,
                                  execute=execute, crf=crf, workers=workers, progress=bar)
    write_json(out / f"record-{game.replace('/', '-')}-{Path(policy).name or policy}.json",
               {"game": game, "policy": policy, "episodes": results}, default=str)
    new = sum(not r["skipped"] for r in results)
    played = [r for r in results if r["steps"]]  # episodes of earlier runs report their stored result
    mean = sum(r["return"] for r in played) / len(played) if played else float("nan")
    typer.echo(f"wrote {new} episodes ({len(results) - new} already there) to {out}; "
               f"mean return {mean:.2f} over {len(played)} episodes")


def register(app: typer.Typer) -> None:
    app.command()(games)
    app.command()(record)
    app.command()(demos)

