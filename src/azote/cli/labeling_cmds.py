"""Labelling verbs: `azote label`, `azote label-eval`, `azote label-train` and `azote overlay ...`."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from azote.cli.common import fail
from azote.files import write_json

overlay_app = typer.Typer(help="Controller overlay skins: list the shipped ones, draw a preset in a given state, "
                               "render a video.", no_args_is_help=True)


def collect_backgrounds(games: list[str], frames: int = 500, stride: int = 2, seed: int = 0,
                        log: Any = print) -> Any:
    """A background bank of game frames (a random player) to put overlays on."""
    from azote.labeling.synth import BackgroundBank
    from azote.play.frames import game_frames

    return BackgroundBank(game_frames(games, frames, stride, seed, log))


def _bank(path: Path, games: list[str], frames: int, seed: int) -> Path:
    if not path.is_file():
        collect_backgrounds(games, frames, seed=seed, log=lambda m: typer.echo(m, err=True)).save(path)
    return path


def _load_presets(paths: list[Path], what: str) -> list[tuple[str, Any]]:
    from azote.labeling.presets import PresetError, load_preset

    out = []
    for p in paths:
        try:
            out.append((str(p), load_preset(p)))
        except PresetError as exc:
            fail(f"{what}: {exc}")
    return out


def _preset_or_skin(preset: Optional[Path], skin: Optional[str]) -> Any:
    from azote.labeling.skingen import shipped_presets

    if (preset is None) == (skin is None):
        fail("give one of --preset DIR (an input-overlay preset or an Azote template) or --skin NAME "
             "(`azote overlay skins` lists them)")
    if preset is not None:
        return _load_presets([preset], "--preset")[0][1]
    skins = shipped_presets()
    if skin not in skins:
        fail(f"unknown skin {skin!r}; the shipped skins are {', '.join(skins)} (or give --preset DIR)")
    return skins[skin]


def _video_done(bar: Any) -> Callable[[dict], None]:
    """Per labelled video: the bar moves on, a failure is printed with its reason at once."""
    from tqdm import tqdm

    def done(r: dict) -> None:
        bar.update(1)
        if r.get("status") != "ok":
            tqdm.write(f"failed: {r['error']}", file=sys.stderr)
        elif not r.get("skipped"):
            bar.set_postfix(fps=r.get("frames_per_second"), chunks=r.get("chunks_written"))

    return done


def label(
    videos: list[Path] = typer.Argument(..., help="Videos with a controller overlay."),
    out: Path = typer.Option(..., "--out", help="Dataset root to write (videos/ + actions/ + labeling/ reports)."),
    templates: Optional[list[Path]] = typer.Option(None, "--templates", help="Known overlay presets (directories or "
                                                   "JSON files; repeat the option): a video showing one is read by "
                                                   "a parser adapted to it."),
    workers: int = typer.Option(2, min=1, help="Processes (one video each)."),
    game: Optional[str] = typer.Option(None, help="Game name stored in every chunk's metadata."),
    backend: str = typer.Option("process", help="process | ray (Ray for many machines; pip install 'azote[ray]')."),
    weights: Optional[Path] = typer.Option(None, help="Labeller weights directory: parser.json and parser.safetensors, "
                                           "optionally detector/ and namer.safetensors (default: the shipped ones)."),
    min_density: float = typer.Option(0.5, min=0.0, max=1.0, help="Drop chunks with fewer non-zero action rows."),
    no_adapt: bool = typer.Option(False, "--no-adapt", help="Read known presets with the shipped parser as it is."),
    adapt_minutes: float = typer.Option(3.0, min=0.1, help="Fine-tuning time for each known preset (cached)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recover gamepad actions from videos with a controller overlay; write them as 20-second chunks with the
    video. Resumable: a rerun skips videos already labelled. A video that cannot be read is reported and skipped."""
    from tqdm import tqdm

    from azote.labeling.label import LabelConfig, label_videos, load_models

    if backend not in ("process", "ray"):
        fail(f"--backend must be process or ray, got {backend!r}")
    missing = [str(v) for v in videos if not v.is_file()]
    if missing and len(missing) == len(videos):
        fail(f"no such video: {', '.join(missing[:3])}")
    load_models(weights)  # unusable weights (WeightsError, DetectError, NamerError) fail before any video
    tpl = [p for p, _ in _load_presets(list(templates or []), "--templates")]
    cfg = LabelConfig(adapt=not no_adapt, adapt_minutes=adapt_minutes)
    cfg.post.min_density = min_density
    with tqdm(total=len(videos), unit="video", desc="label") as bar:
        try:
            summary = label_videos(videos, out, game=game, workers=workers, weights=weights, templates=tpl,
                                   config=cfg, backend=backend, on_result=_video_done(bar))
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        rate = f"{summary['frames_per_second']} frames/s" if summary["frames_per_second"] else "no new frames"
        typer.echo(f"{summary['labelled']}/{summary['videos']} videos labelled ({summary['skipped']} already done), "
                   f"{summary['chunks_written']} chunks written, {summary['chunks_dropped']} dropped by the density "
                   f"filter, {len(summary['failed'])} failed; {rate} -> {out}")
        for f in summary["failed"]:
            typer.echo(f"failed: {f['error']}", err=True)
    if summary["failed"] and summary["labelled"] == 0:
        raise typer.Exit(1)


def label_eval(
    presets: Optional[list[Path]] = typer.Option(None, "--presets", help="Presets to make test videos with (repeat "
                                                 "the option). Default: the project's generated skins in styles held "
                                                 "out of the parser's training."),
    templates: Optional[list[Path]] = typer.Option(None, "--templates", help="Known presets for the labeller (scores "
                                                   "the known-preset path; usually the same as --presets)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Test set directory (made here when it holds none; "
                                        "default: runs/label-eval/<presets>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    videos_per_preset: int = typer.Option(2, min=1, help="Videos made per preset."),
    seconds: float = typer.Option(20.0, min=1.0, help="Length of each made video."),
    workers: int = typer.Option(2, min=1),
    weights: Optional[Path] = typer.Option(None, help="Labeller weights directory: parser.json and parser.safetensors, "
                                           "optionally detector/ and namer.safetensors (default: the shipped ones)."),
    adapt_minutes: float = typer.Option(3.0, min=0.1, help="Fine-tuning time for each known preset (cached)."),
    seed: int = typer.Option(1234),
) -> None:
    """Accuracy of the labeller on videos made from presets over held-out games: per preset located yes/no, box
    IoU, stick R^2 (x, y), button accuracy, the press-nothing baseline and F1 over pressed buttons."""
    from azote.labeling.evaluate import TEST_SET_VERSION, evaluate_dir, format_table, make_test_set
    from azote.labeling.label import LabelConfig
    from azote.labeling.synth import HELDOUT_GAMES, BackgroundBank

    if presets:
        chosen = _load_presets(list(presets), "--presets")
    else:
        from azote.labeling.skingen import heldout_presets

        chosen = [(f"generated:{p.name}", p) for p in heldout_presets()]
    tpl = [p for p, _ in _load_presets(list(templates or []), "--templates")]
    if data is None:
        key = hashlib.sha256(json.dumps([[s, p.digest] for s, p in chosen]
                                        + [videos_per_preset, seconds, seed, TEST_SET_VERSION])
                             .encode()).hexdigest()[:10]
        data = Path("runs") / "label-eval" / key
    bank = BackgroundBank.load(_bank(data / "backgrounds.npz", list(HELDOUT_GAMES), 600, seed))
    make_test_set(data, chosen, bank, videos_per_preset=videos_per_preset, seconds=seconds, seed=seed,
                  log=lambda m: typer.echo(m, err=True))
    from tqdm import tqdm

    with tqdm(total=len(list((data / "streams").glob("*.mp4"))), unit="video", desc="label-eval") as bar:
        try:
            result = evaluate_dir(data, workers=workers, weights=weights, templates=tpl,
                                  config=LabelConfig(adapt_minutes=adapt_minutes), on_result=_video_done(bar))
        except (ValueError, RuntimeError, FileNotFoundError) as exc:
            fail(str(exc))
    name = "eval-templates" if tpl else "eval"
    write_json(data / f"{name}.json", result, default=str)
    (data / f"{name}.md").write_text(format_table(result))
    typer.echo(json.dumps(result, indent=1) if as_json else format_table(result))


def label_train(
    out: Path = typer.Option(Path("runs/labeling/parser"), help="Working directory (backgrounds, shards, checkpoints)."),
    shards: int = typer.Option(40, min=1, help="Training shards of the parser (generated skins)."),
    clips: int = typer.Option(100, min=1, help="Clips per shard (6 frames each, every clip a new skin)."),
    detector_shards: int = typer.Option(20, min=1, help="Training shards of the detector."),
    detector_images: int = typer.Option(200, min=1, help="Images per detector shard."),
    minutes: float = typer.Option(120.0, help="Wall-time budget of the parser's training (the schedule follows it; "
                                              "a rerun resumes)."),
    stick_minutes: float = typer.Option(20.0, min=0.0, help="Wall-time budget of training the stick reader alone "
                                        "afterwards, from the parser's weights (0: none)."),
    detector_minutes: float = typer.Option(40.0, help="Wall-time budget of the detector's training."),
    namer_videos: int = typer.Option(200, min=1, help="Generated videos (10 s each) the namer learns from, read by "
                                                      "the parser just trained."),
    workers: int = typer.Option(2, min=1, help="Processes writing shards."),
    threads: int = typer.Option(1, min=1, help="Torch threads for training."),
    export: bool = typer.Option(False, help="Copy the final weights into the package (src/azote/labeling/weights)."),
    seed: int = typer.Option(0),
) -> None:
    """Train the overlay parser, the overlay detector and the namer of unseen skins' elements from scratch on the
    project's generated skins (styles and games held out for evaluation are never used). Resumable at every
    stage."""
    import shutil

    import torch
    from tqdm import tqdm

    from azote.labeling.detect import WEIGHTS_DIR as DET_DIR
    from azote.labeling.detect import DetectorData, train_detector, write_detector_shards
    from azote.labeling.namer import NAMER_FILE, load_rows, save_namer, train_namer, write_namer_rows
    from azote.labeling.namer import WEIGHTS as NAMER_WEIGHTS
    from azote.labeling.parser import WEIGHTS_DIR, load_parser
    from azote.labeling.skingen import HELDOUT_STYLES, TRAIN_STYLES
    from azote.labeling.synth import HELDOUT_GAMES, TRAIN_GAMES, write_shards
    from azote.labeling.train import ShardData, TrainConfig, load_checkpoint, train

    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    # a bad resume point is refused before minutes of data making, not after
    for ckpt in (out / "run" / "ckpt.pt", out / "sticks" / "ckpt.pt", out / "detector" / "ckpt.pt"):
        if ckpt.exists():
            try:
                load_checkpoint(ckpt)
            except RuntimeError as exc:
                fail(str(exc))
    torch.set_num_threads(threads)
    bank = _bank(out / "backgrounds_train.npz", list(TRAIN_GAMES), 500, seed)
    held_bank = _bank(out / "backgrounds_heldout.npz", list(HELDOUT_GAMES), 300, seed + 1)

    def made(total: int, desc: str):
        bar = tqdm(total=total, desc=desc, unit="shard")
        return bar, (lambda name: bar.update(1))

    bar, tick = made(shards + 2, "parser data")
    train_paths = write_shards(out / "shards", bank, shards, clips, TRAIN_STYLES, seed, workers, tick)
    held_paths = write_shards(out / "heldout_shards", held_bank, 2, 60, HELDOUT_STYLES, seed + 7, workers, tick)
    bar.close()
    bar, tick = made(detector_shards + 1, "detector data")
    det_paths = write_detector_shards(out / "detector_shards", bank, detector_shards, detector_images, TRAIN_STYLES,
                                      seed, workers, tick)
    det_held = write_detector_shards(out / "detector_heldout", held_bank, 1, 300, HELDOUT_STYLES, seed + 7, workers, tick)
    bar.close()
    data, held = ShardData(train_paths), ShardData(held_paths)
    summary = {"parser": train(data, out / "run", TrainConfig(minutes=minutes, threads=threads, seed=seed), held=held,
                               log=log)}
    parser_dir = out / "run" / "final"
    if stick_minutes > 0:  # the stick reader on its own, under the symmetries that make it read any lighting alike
        summary["sticks"] = train(data, out / "sticks", TrainConfig(minutes=stick_minutes, threads=threads, seed=seed,
                                                                    heads="sticks", lr=5e-4, warmup=100),
                                  held=held, model=load_parser(parser_dir), log=log)
        parser_dir = out / "sticks" / "final"
    del data, held
    summary["detector"] = train_detector(DetectorData(det_paths), out / "detector", minutes=detector_minutes,
                                         held=DetectorData(det_held), seed=seed, log=log)
    bar, tick = made(namer_videos, "namer data")
    rows = write_namer_rows(out / "namer_rows", bank, namer_videos, TRAIN_STYLES, parser_dir, seed,
                            workers, tick)
    bar.close()
    save_namer(train_namer(load_rows(rows), seed=seed, log=log), out / NAMER_FILE)
    if export:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        DET_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("parser.json", "parser.safetensors"):
            shutil.copyfile(parser_dir / name, WEIGHTS_DIR / name)
        for name in ("detector.json", "detector.safetensors"):
            shutil.copyfile(out / "detector" / "final" / name, DET_DIR / name)
        shutil.copyfile(out / NAMER_FILE, NAMER_WEIGHTS)
        log(f"weights exported to {WEIGHTS_DIR}")
    typer.echo(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "config"} for k, v in summary.items()}, indent=1))


@overlay_app.command("skins")
def overlay_skins(
    heldout: bool = typer.Option(False, "--heldout", help="The skins in styles held out of the parser's training "
                                 "(what `label-eval` scores by default) instead of the shipped ones."),
    save: Optional[Path] = typer.Option(None, "--save", help="Also write each skin as an input-overlay preset "
                                        "(DIR/<name>/<name>.json + .png), for --presets and --templates."),
) -> None:
    """List the project's generated skins (`--skin NAME` elsewhere); `--save DIR` writes them as presets."""
    from azote.labeling.skingen import heldout_presets, shipped_presets

    presets = list(heldout_presets()) if heldout else list(shipped_presets().values())
    for p in presets:
        where = f"  -> {p.save_input_overlay(save / p.name)}" if save else ""
        typer.echo(f"{p.name:36s} {p.family:12s} {p.controller_type:8s} {p.size[0]}x{p.size[1]}{where}")


def _parse_state(state: str) -> Any:
    from azote.gamepad import BUTTONS, Gamepad, GamepadError

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
        return Gamepad.make(pressed, raw.get("j_left", (0, 0)), raw.get("j_right", (0, 0)))
    except (json.JSONDecodeError, ValueError, GamepadError, TypeError) as exc:
        fail(f"--state: {exc}")


@overlay_app.command("render")
def overlay_render(
    preset: Optional[Path] = typer.Option(None, "--preset", help="An input-overlay preset or Azote template "
                                          "(directory or JSON)."),
    skin: Optional[str] = typer.Option(None, help="A shipped skin instead (`azote overlay skins`)."),
    state: str = typer.Option("{}", help='Gamepad state as JSON: {"pressed": ["south"], "j_left": [0.5, -1], '
                                        '"j_right": [0, 0]} (or a dataset row: button columns + j_left/j_right).'),
    out: Path = typer.Option(..., "--out", help="PNG to write (RGBA)."),
    scale: float = typer.Option(1.0, min=0.02, max=8.0, help="Size relative to the preset's canvas."),
) -> None:
    """Draw a preset in one gamepad state."""
    from PIL import Image

    p = _preset_or_skin(preset, skin)
    pad = _parse_state(state)
    if max(p.size) * scale > 8192:
        fail(f"--scale {scale}: the picture would be {p.size[0] * scale:.0f} x {p.size[1] * scale:.0f} pixels")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(p.render(pad, scale), "RGBA").save(out)
    typer.echo(f"{out}: {p.name} ({p.family}) with {list(pad.pressed) or 'nothing'} pressed, j_left "
               f"{pad.j_left.tolist()}, j_right {pad.j_right.tolist()}")


@overlay_app.command("video")
def overlay_video(
    game: str = typer.Option(..., help="A shipped game to play randomly under the overlay."),
    preset: Optional[Path] = typer.Option(None, "--preset", help="An input-overlay preset or Azote template."),
    skin: Optional[str] = typer.Option(None, help="A shipped skin instead (`azote overlay skins`)."),
    out: Path = typer.Option(..., "--out", help="Video to write (.mp4); the true actions go beside it (.npz)."),
    seconds: float = typer.Option(10.0, min=0.1, max=3600.0),
    seed: int = typer.Option(0),
    crf: int = typer.Option(23, min=0, max=51),
) -> None:
    """A streamer-style video (1280 x 720, 60 fps): random play of a game with the overlay showing the true
    actions at a random corner placement."""
    import numpy as np

    from azote.labeling.compose import render_stream
    from azote.labeling.synth import random_actions

    p = _preset_or_skin(preset, skin)
    bank = collect_backgrounds([game], frames=int(seconds * 60), stride=1, seed=seed, log=lambda m: None)
    if game not in bank.frames:
        fail(f"cannot play {game} here (is it a shipped game? `azote games` lists them)")
    frames = bank.frames[game]
    actions = random_actions(np.random.default_rng(seed), len(frames))
    info = render_stream(frames, actions, out, p, fps=60, crf=crf, seed=seed)
    np.savez(out.with_suffix(".npz"), buttons=actions.buttons, j_left=actions.j_left, j_right=actions.j_right)
    typer.echo(json.dumps(info))


def register(app: typer.Typer) -> None:
    app.command("label")(label)
    app.command("label-eval")(label_eval)
    app.command("label-train")(label_train)
    app.add_typer(overlay_app, name="overlay")
