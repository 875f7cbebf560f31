"""Entry point of the `azote` command. Each stage's verbs live in their own module and register here."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="azote",
    help="Azote: label gameplay videos, train a vision-to-gamepad policy, play and benchmark it on real games.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under azote.cli that define `register(app)`; imported lazily per module so a broken optional stage
# does not take the whole command down with it.
_COMMAND_MODULES = ("envs_cmds", "data_cmds", "policy_cmds", "training_cmds", "bench_cmds", "pipeline_cmds",
                    "demo_cmds", "serving_cmds", "labeling_cmds")

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"azote.cli.{_name}")
    except ModuleNotFoundError as exc:  # a stage that has not landed yet
        if exc.name != f"azote.cli.{_name}":
            raise
        continue
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
    app(args=spread_preset_lists(sys.argv[1:]), prog_name="azote")


if __name__ == "__main__":
    main()
