"""`azote data ...`: dataset checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Dataset tools.", no_args_is_help=True)


@data_app.command("validate")
def validate(
    directory: Path = typer.Argument(..., help="Dataset root (ours, or released label shards)."),
    video_dir: Optional[Path] = typer.Option(None, help="Folder of <video_id>.<ext> source videos for released labels."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_video_check: bool = typer.Option(False, help="Skip probing videos (faster)."),
) -> None:
    """Check every chunk (schema, values, video); print a summary; exit 1 when a file is bad, naming it."""
    from azote.dataset import Dataset

    try:
        ds = Dataset.open(directory, video_dir=video_dir, check_video=not no_video_check)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    summary = ds.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        typer.echo(f"{summary['chunks']} good chunks from {summary['videos']} videos, {summary['rows']} rows "
                   f"({summary['hours']} h); games: {summary['games']}")
        if summary["labels_without_video"]:
            typer.echo(f"{summary['labels_without_video']} chunks have labels but no local video")
        for p in ds.problems:
            typer.echo(f"BAD {p}", err=True)
    if ds.problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
