"""`azote experiment`: the pre-training experiment, resumable, at a chosen scale."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment(
    out: Path = typer.Option(Path("runs/exp"), help="Experiment directory (a rerun resumes)."),
    scale: float = typer.Option(1.0, min=0.01, help="Make every stage larger (or smaller) by this factor."),
    workers: int = typer.Option(2, min=1, help="Parallel processes for demonstrations and benchmark episodes."),
    model: str = typer.Option("tiny", help="Policy preset."),
) -> None:
    """Pre-train on 8 games, fine-tune on 2 held-out games with 1/3/10 demonstration episodes against training
    from scratch with the same data and steps; benchmark everything on the held-out games' tasks."""
    from azote.pipeline.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(out=str(out), workers=workers, model=model).scaled(scale)
    run_experiment(cfg)
    typer.echo(f"report: {out / 'experiment.md'} and {out / 'experiment.png'}")


def register(app: typer.Typer) -> None:
    app.command()(experiment)
