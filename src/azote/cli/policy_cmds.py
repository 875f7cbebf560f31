"""Policy verbs: `model-info`, `convert-checkpoint`, `predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn, Optional

import typer

from azote.cli.common import fail

# Errors that carry a message for the user (bad input, missing or unsafe files); anything else is a bug.
_EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def _fail(exc: BaseException) -> NoReturn:
    # exit 1, not the root command's 2 for an AzoteError: these verbs have always exited 1 on bad input
    fail(str(exc), code=1)


def model_info(
    preset_or_checkpoint: str = typer.Argument(..., metavar="PRESET_OR_CHECKPOINT_DIR", help="a preset name or a checkpoint directory"),
    as_json: bool = typer.Option(False, "--json", help="print parameters, tensors (name -> shape) and config as JSON"),
) -> None:
    """Parameter count, tensor names and shapes, and configuration of a preset or a checkpoint."""
    from azote.policy.checkpoint import config_summary

    try:
        info = config_summary(preset_or_checkpoint)
    except _EXPECTED_ERRORS as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    cfg = info["config"]
    assert isinstance(cfg, dict)
    vision = cfg["vision"]
    typer.echo(f"{cfg['name']}: {info['parameters']:,} parameters in {len(info['tensors'])} tensors")  # type: ignore[arg-type]
    typer.echo(
        f"  vision: {vision['num_hidden_layers']} layers x {vision['hidden_size']} wide, "
        f"{vision['image_size']} px / patch {vision['patch_size']}"
    )
    typer.echo(
        f"  VL stack: {cfg['vl_layers']} blocks; DiT: {cfg['dit_layers']} blocks x {cfg['hidden_size']} wide; "
        f"chunk: {cfg['action_horizon']} x {cfg['action_dim']}; {cfg['num_inference_timesteps']} Euler steps"
    )


def convert_checkpoint(
    ng_pt: Path = typer.Argument(..., metavar="NG_PT", help="the released checkpoint (ng.pt)"),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="checkpoint directory to write"),
    vision_config: Optional[str] = typer.Option(
        None, "--vision-config", metavar="JSON",
        help="vision tower configuration (a JSON file or inline JSON) when it is not the tower the checkpoint names",
    ),
    game_mapping: Optional[Path] = typer.Option(
        None, "--game-mapping", metavar="JSON",
        help="names of a game-conditioned checkpoint's games: the game_mapping.json the released tokenizer writes "
             "(game -> token) or a list; written as games.json",
    ),
) -> None:
    """Converts the released NitroGen ng.pt to config.json + model.safetensors, executing nothing from the file."""
    from azote.policy.checkpoint import config_summary
    from azote.policy.ng_import import convert_ng_checkpoint

    try:
        out = convert_ng_checkpoint(ng_pt, out_dir, vision_config, game_mapping)
        info = config_summary(out)
    except _EXPECTED_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote {out} ({info['parameters']:,} parameters, {len(info['tensors'])} tensors)")  # type: ignore[arg-type]
    games = info["config"]["num_games"]  # type: ignore[index]
    if games and game_mapping is None:
        typer.echo(f"the checkpoint has a game token for {games} games (ids 1..{games}; 0 = no game); their names are "
                   "not in ng.pt: give --game-mapping to name them")


def predict(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint directory"),
    image: Path = typer.Option(..., "--image", help="an RGB image (PNG) of the game screen, any size"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampling noise"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Euler steps (default: the checkpoint's)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    as_json: bool = typer.Option(False, "--json", help="print the chunk as JSON"),
) -> None:
    """Predicts one chunk of gamepad actions for one frame."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from azote.policy import Policy

    try:
        with Image.open(image) as im:
            frame = np.asarray(im.convert("RGB"))
        policy = Policy.from_pretrained(checkpoint, device=device, num_steps=steps)
        chunk = policy.act(frame, seed=seed)
    except UnidentifiedImageError:
        _fail(ValueError(f"{image}: not an image file"))
    except _EXPECTED_ERRORS as exc:
        _fail(exc)
    rows = chunk.to_rows()
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(checkpoint), "image": str(image), "seed": seed, "actions": rows}, indent=2))
        return
    for i, g in enumerate(chunk):
        pressed = " ".join(g.pressed) or "-"
        sticks = "  ".join(f"{name} ({v[0]:+.2f}, {v[1]:+.2f})" for name, v in (("j_left", g.j_left), ("j_right", g.j_right)))
        typer.echo(f"{i:2d}  {pressed:40s}  {sticks}")


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info)
    app.command("convert-checkpoint")(convert_checkpoint)
    app.command("predict")(predict)
