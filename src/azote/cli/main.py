"""Entry point of the `azote` command. Each stage's verbs live in their own module and register here."""

from __future__ import annotations

import importlib

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
