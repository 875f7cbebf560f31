"""Labelling verbs: `azote label`, `azote label-eval`, `azote label-train` and `azote overlay ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from azote.cli.common import fail, write_json

overlay_app = typer.Typer(help="Controller overlay skins: list them, draw one in a given state, render a video.",
                          no_args_is_help=True)


def collect_backgrounds(games: list[str], frames: int = 500, stride: int = 2, seed: int = 0,
                        log: Any = print) -> Any:
    """Runs of game frames (a random player) to put overlays on: `frames` per game, every `stride`-th step."""
    import numpy as np

    from azote.agents import RandomAgent
    from azote.envs import make
    from azote.envs.rollout import play_episode
    from azote.labeling.synth import BackgroundBank

    out = {}
    for game in games:
        try:
            env = make(game)
        except Exception as exc:  # an engine that is not installed here: use the other games
            log(f"backgrounds: skipping {game} ({exc})")
            continue
        got: list[np.ndarray] = []
        episode = 0
        try:
            while len(got) < frames and episode < 20:
                for step in play_episode(env, RandomAgent(seed=seed + episode, press_p=0.3),
                                         (frames - len(got)) * stride + 30, seed=seed + episode):
                    if step.index >= 30 and step.index % stride == 0:
                        got.append(step.frame)
                episode += 1
        finally:
            env.close()
        if got:
            out[game] = np.stack(got[:frames])
            log(f"backgrounds: {game} {len(got[:frames])} frames")
    return BackgroundBank(out)


def _bank(path: Path, games: list[str], frames: int, seed: int) -> Path:
    if not path.is_file():
        collect_backgrounds(games, frames, seed=seed, log=lambda m: typer.echo(m, err=True)).save(path)
    return path


def label(
    videos: list[Path] = typer.Argument(..., help="Videos with a controller overlay."),
    out: Path = typer.Option(..., "--out", help="Dataset root to write (videos/ + actions/ + labeling/ reports)."),
    workers: int = typer.Option(2, min=1, help="Processes (one video each)."),
    game: Optional[str] = typer.Option(None, help="Game name stored in every chunk's metadata."),
    backend: str = typer.Option("process", help="process | ray (Ray for many machines; pip install 'azote[ray]')."),
    weights: Optional[Path] = typer.Option(None, help="Parser weights directory (default: the shipped weights)."),
    min_density: float = typer.Option(0.5, min=0.0, max=1.0, help="Drop chunks with fewer non-zero action rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recover gamepad actions from videos with a controller overlay; write them as 20-second chunks with the
    video. Resumable: a rerun skips videos already labelled. A video that cannot be read is reported and skipped."""
    from tqdm import tqdm

    from azote.labeling.label import LabelConfig, label_videos
    from azote.labeling.parser import WeightsError, load_parser

    if backend not in ("process", "ray"):
        fail(f"--backend must be process or ray, got {backend!r}")
    try:
        load_parser(weights)
    except WeightsError as exc:
        fail(str(exc))
    cfg = LabelConfig()
    cfg.post.min_density = min_density
    with tqdm(total=len(videos), unit="video", desc="label") as bar:
        def on_result(r: dict) -> None:
            bar.update(1)
            if r.get("status") != "ok":
                tqdm.write(f"skipped {r['video']}: {r['error']}", file=sys.stderr)
            elif not r.get("skipped"):
                bar.set_postfix(fps=r.get("frames_per_second"), chunks=r.get("chunks_written"))

        try:
            summary = label_videos(videos, out, game=game, workers=workers, weights=weights, config=cfg,
                                   backend=backend, on_result=on_result)
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        typer.echo(f"{summary['labelled']}/{summary['videos']} videos labelled ({summary['skipped']} already done), "
                   f"{summary['chunks_written']} chunks written, {summary['chunks_dropped']} dropped by the density "
                   f"filter, {len(summary['failed'])} failed; {summary['frames_per_second']} frames/s -> {out}")
    if summary["failed"] and summary["labelled"] == 0:
        raise typer.Exit(1)


def label_eval(
    data: Path = typer.Option(..., "--data", help="Test set directory (made here first if it holds none)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    videos: int = typer.Option(24, min=1, help="Videos to make when the test set does not exist yet."),
    seconds: float = typer.Option(20.0, min=1.0, help="Length of each made video."),
    workers: int = typer.Option(2, min=1),
    weights: Optional[Path] = typer.Option(None, help="Parser weights directory (default: the shipped weights)."),
    seed: int = typer.Option(1234),
) -> None:
    """Accuracy of the labeller on videos made from skins and games held out of its training: stick R^2 (x, y),
    button accuracy, per-button F1, a per-family table and the locate success rate."""
    from azote.labeling.evaluate import evaluate_dir, format_table, make_test_set, test_set_exists
    from azote.labeling.synth import HELDOUT_GAMES, BackgroundBank

    if not test_set_exists(data):
        bank = BackgroundBank.load(_bank(data / "backgrounds.npz", list(HELDOUT_GAMES), 400, seed))
        make_test_set(data, bank, videos=videos, seconds=seconds, seed=seed, log=lambda m: typer.echo(m, err=True))
    result = evaluate_dir(data, workers=workers, weights=weights)
    write_json(data / "eval.json", result)
    (data / "eval.md").write_text(format_table(result))
    typer.echo(json.dumps(result, indent=1) if as_json else format_table(result))


def label_train(
    out: Path = typer.Option(Path("runs/labeling/parser"), help="Working directory (backgrounds, shards, checkpoints)."),
    shards: int = typer.Option(50, min=1, help="Training shards of synthetic clips."),
    random_skins: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of clips with a random skin (colours and "
                                                                     "styles outside the library)."),
    clips: int = typer.Option(100, min=1, help="Clips per shard (12 frames each)."),
    steps: int = typer.Option(6000, min=1, help="At most this many steps (the time budget usually ends first)."),
    batch_size: int = typer.Option(48, min=1),
    minutes: float = typer.Option(38.0, help="Wall-time budget of the training (the learning-rate schedule follows "
                                             "it; a rerun resumes)."),
    workers: int = typer.Option(2, min=1, help="Processes writing shards."),
    threads: int = typer.Option(1, min=1, help="Torch threads for training (1 is fastest on a busy machine)."),
    export: bool = typer.Option(False, help="Copy the final weights into the package (src/azote/labeling/weights)."),
    seed: int = typer.Option(0),
) -> None:
    """Train the overlay parser from scratch on synthetic overlays (skins and games held out for evaluation are
    never used). Resumable at every stage."""
    import shutil

    from azote.labeling.parser import WEIGHTS_DIR
    from azote.labeling.skins import HELDOUT_SKINS, TRAIN_SKINS
    from azote.labeling.synth import HELDOUT_GAMES, TRAIN_GAMES, write_shards
    from azote.labeling.train import TrainConfig, train

    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    bank = _bank(out / "backgrounds_train.npz", list(TRAIN_GAMES), 500, seed)
    held_bank = _bank(out / "backgrounds_heldout.npz", list(HELDOUT_GAMES), 300, seed + 1)
    train_shards = write_shards(out / "shards", bank, shards, clips, TRAIN_SKINS, seed, workers, log,
                                random_skins=random_skins)
    eval_shards = write_shards(out / "heldout_shards", held_bank, 2, 50, HELDOUT_SKINS, seed + 7, workers, log)
    summary = train(train_shards, out / "run", TrainConfig(steps=steps, batch_size=batch_size, minutes=minutes,
                                                           threads=threads, seed=seed),
                    eval_shards=eval_shards, log=log)
    if summary["done"] and export:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("parser.json", "parser.safetensors"):
            shutil.copyfile(out / "run" / "final" / name, WEIGHTS_DIR / name)
        log(f"weights exported to {WEIGHTS_DIR}")
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))


@overlay_app.command("skins")
def overlay_skins() -> None:
    """List the skins (held-out ones are marked)."""
    from azote.labeling.skins import HELDOUT_SKINS, SKINS

    for name, s in SKINS.items():
        typer.echo(f"{name:16s} {s.controller_type:8s} palette {s.palette} {'filled ' if s.filled else 'outline'} "
                   f"pressed={s.pressed_style:6s} stick={s.stick_style:5s}{'  (held out)' if name in HELDOUT_SKINS else ''}")


@overlay_app.command("render")
def overlay_render(
    skin: str = typer.Option(..., help="Skin name (`azote overlay skins`)."),
    state: str = typer.Option("{}", help='Gamepad state as JSON: {"pressed": ["south"], "j_left": [0.5, -1], '
                                        '"j_right": [0, 0]} (or a dataset row: button columns + j_left/j_right).'),
    out: Path = typer.Option(..., "--out", help="PNG to write (RGBA)."),
    scale: float = typer.Option(2.0, min=0.1, max=8.0, help="Size relative to the 192x120 template."),
) -> None:
    """Draw one skin in one gamepad state."""
    from PIL import Image

    from azote.gamepad import BUTTONS, Gamepad, GamepadError
    from azote.labeling.skins import get_skin, render

    try:
        s = get_skin(skin)
    except KeyError as exc:
        fail(str(exc.args[0]))
    try:
        raw = json.loads(state)
        if not isinstance(raw, dict):
            raise ValueError("the state must be a JSON object")
        if any(b in raw for b in BUTTONS):
            pressed = [b for b in BUTTONS if raw.get(b)]
        else:
            pressed = list(raw.get("pressed", []))
        unknown = set(raw) - {"pressed", "j_left", "j_right", *BUTTONS}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        pad = Gamepad.make(pressed, raw.get("j_left", (0, 0)), raw.get("j_right", (0, 0)))
    except (json.JSONDecodeError, ValueError, GamepadError, TypeError) as exc:
        fail(f"--state: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render(s, pad, scale), "RGBA").save(out)
    typer.echo(f"{out}: {s.name} with {list(pad.pressed) or 'nothing'} pressed, j_left {pad.j_left.tolist()}, "
               f"j_right {pad.j_right.tolist()}")


@overlay_app.command("video")
def overlay_video(
    game: str = typer.Option(..., help="A shipped game to play randomly under the overlay."),
    skin: str = typer.Option(..., help="Skin name."),
    out: Path = typer.Option(..., "--out", help="Video to write (.mp4); the true actions go beside it (.npz)."),
    seconds: float = typer.Option(10.0, min=0.1),
    seed: int = typer.Option(0),
    crf: int = typer.Option(23, min=0, max=51),
) -> None:
    """A streamer-style video: random play of a game with the overlay showing the true actions."""
    import numpy as np

    from azote.labeling.pipeline_hooks import render_overlay_video
    from azote.labeling.synth import random_actions

    bank = collect_backgrounds([game], frames=int(seconds * 60), stride=1, seed=seed, log=lambda m: None)
    frames = bank.frames[game]
    actions = random_actions(np.random.default_rng(seed), len(frames))
    info = render_overlay_video(frames, actions, out, skin, fps=60, crf=crf, seed=seed)
    np.savez(out.with_suffix(".npz"), buttons=actions.buttons, j_left=actions.j_left, j_right=actions.j_right)
    typer.echo(json.dumps(info))


def register(app: typer.Typer) -> None:
    app.command("label")(label)
    app.command("label-eval")(label_eval)
    app.command("label-train")(label_train)
    app.add_typer(overlay_app, name="overlay")
