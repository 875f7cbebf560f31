"""`azote data ...`: dataset checks, and export to / import from other dataset formats (LeRobotDataset v3.0)."""

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


FORMATS = ("lerobot",)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        from azote.cli.common import fail

        fail(f"unknown --format {fmt!r}; formats: {', '.join(FORMATS)}")


def _convert(work, *args, **kwargs) -> dict:
    """Runs an export or import; a user's mistake (bad or missing file, existing output) is one line, exit 2."""
    from azote.cli.common import fail

    try:
        return work(*args, **kwargs)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:  # VideoError, DatasetError: the root's line
        fail(str(exc))
    except OSError as exc:  # disk full, no permission: the system's words
        fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


@data_app.command("export")
def export(
    directory: Path = typer.Argument(..., help="Azote dataset root."),
    out: Path = typer.Argument(..., help="Output directory (must not exist, or be empty)."),
    fmt: str = typer.Option("lerobot", "--format", help="Output format: lerobot (LeRobotDataset v3.0)."),
    video_dir: Optional[Path] = typer.Option(None, help="Folder of <video_id>.<ext> source videos for released labels."),
    camera: str = typer.Option("screen", help="Camera name: frames go to the feature observation.images.<camera>."),
    robot_type: str = typer.Option("gamepad", help="robot_type written to meta/info.json."),
    crf: int = typer.Option(18, help="libx264 quality of the re-encoded video (lower is better)."),
    video_file_mb: int = typer.Option(200, help="A video file rolls over to the next once this large (MB)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write an Azote dataset in another format: one video = one episode, its game = the task."""
    _check_format(fmt)
    from azote.dataset.lerobot import export_lerobot

    s = _convert(export_lerobot, directory, out, video_dir=video_dir, camera=camera, robot_type=robot_type, crf=crf,
                 video_files_size_in_mb=video_file_mb, progress=not quiet)
    typer.echo(f"exported {s['episodes']} episodes, {s['frames']} frames at {s['fps']} fps, {s['tasks']} tasks "
               f"({s['camera']} in {s['video_files']} video file{'s' if s['video_files'] != 1 else ''}) to {s['out']}")


@data_app.command("import")
def import_(
    directory: Path = typer.Argument(..., help="Dataset root in the given format."),
    out: Path = typer.Argument(..., help="Output Azote dataset directory (must not exist, or be empty)."),
    fmt: str = typer.Option("lerobot", "--format", help="Input format: lerobot (LeRobotDataset v3.0)."),
    camera: Optional[str] = typer.Option(None, help="Camera to keep when the dataset has several."),
    crf: int = typer.Option(18, help="libx264 quality of the re-encoded video (lower is better)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Read a dataset in another format into an Azote dataset (chunks + video), checking it on the way."""
    _check_format(fmt)
    from azote.dataset.lerobot import import_lerobot

    s = _convert(import_lerobot, directory, out, camera=camera, crf=crf, progress=not quiet)
    typer.echo(f"imported {s['videos']} videos, {s['rows']} rows at {s['fps']} fps from {s['camera']}; "
               f"games: {', '.join(s['games'])}; to {s['out']}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
