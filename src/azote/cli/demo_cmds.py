"""`azote demo`: the main job on its built-in default (the whole loop at small scale, resumable)."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Output directory (a rerun resumes after the last finished stage)."),
    scale: float = typer.Option(1.0, min=0.05, help="Make every stage larger (or smaller) by this factor."),
    workers: int = typer.Option(2, min=1, help="Parallel processes for expert play, labelling and benchmark episodes."),
    fresh: bool = typer.Option(False, help="Delete OUT first and start over."),
) -> None:
    """Experts play shipped games; their videos get controller overlays; the labeller recovers the actions from
    the overlays; a tiny policy is pre-trained, fine-tuned on a held-out game and compared with training from
    scratch on the benchmark; OUT/report.md shows every stage's figures."""
    from azote.pipeline.mainjob import MainJobConfig, clean, run_main_job

    if fresh:
        clean(out)
    cfg = MainJobConfig(out=str(out), workers=workers).scaled(scale)
    t0 = time.time()
    result = run_main_job(cfg, log=typer.echo)
    bench = result["bench"]
    typer.echo(f"done in {time.time() - t0:.0f}s; report: {out / 'report.md'}")
    for name, b in bench.items():
        typer.echo(f"  {name:>13}: held-out {b['heldout']['rate']:.0%}, seen {b['seen']['rate']:.0%}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
