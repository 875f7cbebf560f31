"""Entry point of the `azote` command. Each stage's verbs live in their own module and register here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from azote.cli import (
    bench_cmds,
    data_cmds,
    demo_cmds,
    envs_cmds,
    labeling_cmds,
    pipeline_cmds,
    policy_cmds,
    serving_cmds,
    training_cmds,
)
from azote.errors import AzoteError, one_line


class AzoteGroup(TyperGroup):
    """The root command. The one place that turns an `AzoteError` out of any command into `error: <message>` on
    one line of stderr and exit code 2, so that commands need no handler of their own for them. Here rather than
    around `main()` alone so that a test invoking `app` (typer's CliRunner) gets what the `azote` command gives."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AzoteError as exc:
            typer.echo(f"error: {one_line(exc) or type(exc).__name__}", err=True)
            raise SystemExit(2) from None  # SystemExit, as `fail` (click's Exit is a RuntimeError)


app = typer.Typer(
    name="azote",
    help="Azote: label gameplay videos, train a vision-to-gamepad policy, play and benchmark it on real games.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=AzoteGroup,
)

for _module in (envs_cmds, data_cmds, policy_cmds, training_cmds, bench_cmds, pipeline_cmds, demo_cmds, serving_cmds,
                labeling_cmds):
    _module.register(app)


# Options that take several presets: `--templates A B` is read as `--templates A --templates B`.
_PRESET_LISTS = ("--templates", "--presets")


def spread_preset_lists(argv: list[str]) -> list[str]:
    """The command line with each run of presets after a preset-list option given one option each. Only values
    that name a preset (a directory or a .json file) are taken, so videos after `--templates DIR` stay videos."""
    out, i = [], 0
    while i < len(argv):
        out.append(argv[i])
        i += 1
        if out[-1] in _PRESET_LISTS and i < len(argv):
            option = out[-1]
            out.append(argv[i])
            i += 1
            while i < len(argv) and not argv[i].startswith("-") and (
                    argv[i].endswith(".json") or Path(argv[i]).is_dir()):
                out += [option, argv[i]]
                i += 1
    return out


def main() -> None:
    """The `azote` command; an `AzoteError` from any verb ends it with one line and exit code 2 (`AzoteGroup`)."""
    app(args=spread_preset_lists(sys.argv[1:]), prog_name="azote")


if __name__ == "__main__":
    main()
