"""`azote serve` and `azote play`: a policy behind a socket, and a policy playing a game on video."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from azote.agents import check_spec
from azote.cli.common import agent_from_spec, check_checkpoint_dir, fail, open_game

_MAX_TOKEN_BYTES = 4096  # a shared secret is a line; a bigger file is not one (and is never read whole)


def _token(token_file: Optional[Path]) -> str | None:
    """The shared token: from a file (so it stays out of `ps` and shell history), else AZOTE_SERVE_TOKEN."""
    from azote.serving.client import TOKEN_ENV

    if token_file is not None:
        try:
            with open(token_file, "rb") as f:
                raw = f.read(_MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read the token file {token_file}: {exc.strerror or exc}")
        if len(raw) > _MAX_TOKEN_BYTES:
            fail(f"the token file {token_file} is over {_MAX_TOKEN_BYTES} bytes: not a token")
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            fail(f"the token file {token_file} is not UTF-8 text")
        if not token:
            fail(f"the token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def serve(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (config.json + model.safetensors)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on; anything but loopback needs a token."),
    port: int = typer.Option(5555, min=0, max=65535, help="TCP port (0: any free port, printed at start)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    token_file: Optional[Path] = typer.Option(None, help="File holding a shared token clients must send "
                                              "(default: the AZOTE_SERVE_TOKEN environment variable, else none)."),
    batch_window_ms: float = typer.Option(2.0, min=0.0, help="How long a prediction waits for others to share its forward pass."),
    max_batch: int = typer.Option(16, min=1, help="Observations per request and per forward pass."),
    max_message_mb: int = typer.Option(64, min=1, help="Largest request accepted, MiB."),
    threads: int = typer.Option(0, min=0, help="torch CPU threads (0: torch's default; 1 is often fastest on a busy machine)."),
) -> None:
    """Serve a policy over ZeroMQ (msgpack, raw arrays; never pickle): requests info, reset, predict, ping."""
    from azote.serving.protocol import Limits
    from azote.serving.server import load_server

    if not (checkpoint / "config.json").is_file():
        fail(f"{checkpoint}: not a checkpoint directory (no config.json)")
    check_checkpoint_dir(checkpoint)
    _set_threads(threads)
    limits = Limits(max_message_bytes=max_message_mb * 2**20, max_batch=max_batch)
    token = _token(token_file)
    try:
        server = load_server(checkpoint, device=device, host=host, port=port, token=token, limits=limits,
                             batch_window_s=batch_window_ms / 1000)
        address = server.bind()
    except (ValueError, OSError, RuntimeError) as exc:
        fail(str(exc))
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    c = server.policy.config
    typer.echo(f"serving {checkpoint} ({c.name}, horizon {c.action_horizon}, {server.policy.device}) on {address}; "
               f"token {'required' if server.token else 'not required'}; Ctrl-C stops", err=True)
    typer.echo(f"listening {address}")  # one line on stdout, for scripts that started us with --port 0
    server.serve_forever(stop)
    typer.echo("stopped", err=True)


def play(
    game: str = typer.Option(..., help="Game id, e.g. nes/SuperMarioBros-1-1."),
    policy: str = typer.Option("random", help="random, expert, a checkpoint directory, or tcp://HOST:PORT."),
    steps: int = typer.Option(600, min=1, help="Steps to play (episodes restart until this many)."),
    out: Path = typer.Option(..., help="Output directory for the videos and the actions."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    execute: Optional[int] = typer.Option(None, min=1, help="Actions of each chunk executed before re-planning "
                                          "(default: the whole chunk). In real time: steps between frames sent."),
    realtime: bool = typer.Option(False, "--realtime", help="Run the game on a wall clock at its frame rate; the "
                                  "policy plans in the background and chunks are blended."),
    fps: Optional[float] = typer.Option(None, min=0.1, help="Real time: steps per second (default: the game's rate)."),
    blend: int = typer.Option(4, min=0, help="Real time: steps over which a new chunk is cross-faded in."),
    keymouse: str = typer.Option("auto", help="Keyboard/mouse profile: auto (the game's own for keyboard/mouse "
                                 "games), off, wasd, arrows, or a JSON/YAML profile file."),
    token_file: Optional[Path] = typer.Option(None, help="Token file for a tcp:// policy (default: AZOTE_SERVE_TOKEN)."),
    timeout: float = typer.Option(30.0, min=0.1, help="Seconds to wait for each answer of a tcp:// policy."),
    threads: int = typer.Option(0, min=0, help="torch CPU threads for a checkpoint played in process (0: default)."),
) -> None:
    """Run a policy and write clean.mp4, debug.mp4 (what it pressed, drawn beside the frame), actions.jsonl and
    summary.json."""
    from tqdm import tqdm

    from azote.play import PlayOptions
    from azote.play import play as play_game
    from azote.serving.client import ServeError, ServeTimeout

    check_spec(policy)
    _set_threads(threads)
    profile, applied, kwargs = _keymouse(game, keymouse)
    env = open_game(game) if not kwargs else _open_with(game, kwargs)
    if profile is None and keymouse == "auto":
        from azote.play.keymouse import native_profile_of

        profile = native_profile_of(env)
        applied = profile is not None
    if profile is not None and not applied:
        typer.echo(f"note: {game} takes gamepad input; the {profile.name} keys are only logged and drawn", err=True)
    agent: Any = None
    try:
        if policy.startswith("tcp://"):
            from azote.serving.client import RemotePolicy

            try:
                agent = RemotePolicy(policy, token=_token(token_file), game=env.game.id, seed=seed, timeout=timeout)
            except ValueError as exc:
                fail(str(exc))
        else:
            agent = agent_from_spec(policy, env, seed)
        options = PlayOptions(steps=steps, seed=seed, execute=None if realtime else execute, realtime=realtime, fps=fps,
                              replan_every=execute if realtime else None, blend=blend, keymouse=profile,
                              keymouse_applied=applied)
        with tqdm(total=steps, unit="step", desc=f"play {game}") as bar:
            summary = play_game(env, agent, out, options, policy=policy, on_step=lambda: bar.update(1))
    except (ServeError, ServeTimeout) as exc:
        fail(f"policy server: {exc}", code=1)
    finally:
        if hasattr(agent, "close"):
            agent.close()
        env.close()
    line = f"{summary['steps']} steps in {summary['seconds']:.1f}s"
    if realtime:
        rt = summary["realtime"]
        line += (f"; {rt['achieved_actions_per_second']:.1f} actions/s (target {rt['target_actions_per_second']:g}), "
                 f"{rt['chunks_merged']} chunks, policy latency {rt['latency_ms_mean']} ms")
    typer.echo(f"{line}; videos in {out}")


def _keymouse(game: str, spec: str) -> tuple[Any, bool, dict[str, Any]]:
    """(profile, applied to the game, env kwargs). A named profile on a native game replaces its input mapping."""
    if spec in ("auto", "off"):
        return None, False, {}
    from azote.play.keymouse import load_profile

    profile = load_profile(spec)
    try:
        from azote.envs import game_info

        family = game_info(game).family
    except KeyError as exc:
        fail(str(exc.args[0]))
    if family != "native":
        return profile, False, {}
    import dataclasses

    from azote.envs.native import GAMES

    native = GAMES[game.rpartition("/")[2]]
    return profile, True, {"game": dataclasses.replace(native, profile=profile.to_native())}


def _open_with(game: str, kwargs: dict[str, Any]) -> Any:
    """`open_game` with constructor arguments named like its own (a native game's `game=` spec)."""
    from azote.envs import make

    try:
        return make(game, **kwargs)
    except (KeyError, RuntimeError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(f"cannot open {game}: {exc}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(play)
