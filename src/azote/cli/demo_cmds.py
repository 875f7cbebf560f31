"""`azote demo`: the main job on its built-in default."""

from __future__ import annotations

from pathlib import Path

import typer

from azote.cli.common import write_json

DEFAULT_GAMES = ("nes/SuperMarioBros-1-1", "atari/Breakout", "doom/defend_the_center")


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Output directory."),
    steps: int = typer.Option(600, min=1, help="Steps per game."),
) -> None:
    """A random agent plays shipped games; each run is recorded as a dataset and as clean and debug videos."""
    from azote.cli.envs_cmds import play, record

    report = []
    for game in DEFAULT_GAMES:
        slug = game.replace("/", "-")
        record(game=game, policy="random", episodes=1, max_steps=steps, out=out / "dataset", seed=0, execute=None,
               crf=18)
        play(game=game, policy="random", steps=steps, out=out / "play" / slug, seed=0, execute=None)
        report.append({"game": game, "dataset": str(out / "dataset"), "videos": str(out / "play" / slug)})
    write_json(out / "demo.json", report)
    typer.echo(f"demo written to {out}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
