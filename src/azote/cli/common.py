"""Helpers shared by the CLI verbs: opening games and agents from their names, atomic JSON output, errors."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import typer

from azote.agents import Agent
from azote.envs.base import GamepadEnv


def fail(message: str, code: int = 2) -> NoReturn:
    """`error: message` on stderr and exit `code`; for what is not an `AzoteError` (those reach the root command)."""
    typer.echo(f"error: {message}", err=True)
    # SystemExit, not typer.Exit: click's Exit is a RuntimeError, so a `fail` inside `try: ... except
    # RuntimeError` was caught and reported again as "error: 2".
    raise SystemExit(code)


def open_game(game: str, **kwargs: Any) -> GamepadEnv:
    from azote.envs import make

    try:
        return make(game, **kwargs)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except (RuntimeError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(f"cannot open {game}: {exc}")


def agent_from_spec(spec: str, env: GamepadEnv, seed: int | None = None) -> Agent:
    """`random` | `expert` | a checkpoint directory | `tcp://HOST:PORT` (a running `azote serve`)."""
    from azote.agents import make_agent

    try:
        return make_agent(spec, env, seed)
    except ValueError as exc:  # AgentSpecError, and a plain ValueError from a checkpoint's files
        fail(str(exc))


def check_checkpoint_dir(path: str | os.PathLike) -> None:
    """Fails in one line unless a checkpoint directory's config validates and its weights' header fits it (no
    weights are read): before any game, data or socket is opened."""
    from azote.policy.checkpoint import check_checkpoint
    from azote.training.config import run_directory_message

    run = run_directory_message(str(path))
    if run is not None:  # a training run's directory, not its checkpoint: say which one to use
        fail(run)
    try:
        check_checkpoint(path)  # CheckpointError, ConfigError: one line from `azote`'s root command
    except FileNotFoundError as exc:
        fail(str(exc))
