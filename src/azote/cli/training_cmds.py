"""`azote train`, `azote finetune`, `azote eval-offline`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from azote.cli.common import fail, write_json

_GROUPS = "vision_tower, vl_stack, dit, action_encoder, action_decoder"


def _data_errors() -> tuple[type[Exception], ...]:
    """What bad or missing data raises: the whole command fails with one line (bad chunks alone are skipped)."""
    from azote.dataset import DatasetError, VideoError
    from azote.dataset.samples import SampleError

    return DatasetError, SampleError, VideoError, FileNotFoundError


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    if "Original Traceback" in text:  # re-raised from a data-loader worker: its last line is the error itself
        text = text.splitlines()[-1]
    return " ".join(text.split())


def _run(source: str, values: dict[str, Any], config: Optional[Path], resume: bool) -> None:
    from azote.policy import CheckpointError, ConfigError
    from azote.training import TrainConfig, Trainer

    values = {k: v for k, v in values.items() if v is not None}
    cfg = TrainConfig.load(config, **values) if config else TrainConfig.build(source, **values)
    try:
        _check_model(cfg)  # a bad checkpoint or policy config fails now, not after the data is opened
        final = Trainer(cfg, resume=resume).run()
    except (*_data_errors(), CheckpointError, ConfigError) as exc:
        fail(_one_line(exc), code=1)
    typer.echo(f"final model (EMA weights): {final}")


def _check_model(cfg: Any) -> None:
    """The starting checkpoint (config and weights' header) or the policy config file, validated before training."""
    from azote.policy import PolicyConfig
    from azote.policy.checkpoint import check_checkpoint

    if cfg.init_from:
        check_checkpoint(cfg.init_from)
    elif cfg.model.endswith(".json"):
        PolicyConfig.load(cfg.model)


def _split(groups: Optional[str]) -> Optional[list[str]]:
    return None if groups is None else [g.strip() for g in groups.split(",") if g.strip()]


def train(
    data: Optional[list[Path]] = typer.Option(None, help="Dataset root(s); repeat the option for several."),
    out: Optional[Path] = typer.Option(None, help="Run directory."),
    config: Optional[Path] = typer.Option(None, help="JSON TrainConfig; options given here override it."),
    model: Optional[str] = typer.Option(None, help="Preset (tiny, small, nitrogen-500m) or a policy config.json."),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps (default 2000)."),
    batch_size: Optional[int] = typer.Option(None, help="Samples per micro-batch per process (default 32)."),
    grad_accum: Optional[int] = typer.Option(None, help="Micro-batches per optimiser step (default 1)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 3e-4)."),
    weight_decay: Optional[float] = typer.Option(None, help="AdamW weight decay (default 0.001)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warmup steps (default 100)."),
    decay_fraction: Optional[float] = typer.Option(None, help="Share of steps in the final cosine decay (0.2)."),
    ema_decay: Optional[float] = typer.Option(None, help="EMA decay (default 0.9999, ramped up from 0)."),
    grad_clip: Optional[float] = typer.Option(None, help="Max gradient norm, 0 = off (default 1.0)."),
    shift: Optional[int] = typer.Option(None, help="First target action relative to the frame (default 0)."),
    min_action_density: Optional[float] = typer.Option(None, help="Skip chunks with a smaller share of rows with input (0.5)."),
    game_ids: Optional[bool] = typer.Option(None, "--game-ids/--no-game-ids", help="Give the model a game-ID token."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Colour jitter, rotation, crop (on)."),
    num_workers: Optional[int] = typer.Option(None, help="Data-loader processes (default 1)."),
    ckpt_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps (default 500)."),
    log_every: Optional[int] = typer.Option(None, help="Log every N steps (default 10)."),
    seed: Optional[int] = typer.Option(None, help="Seed of data order, initial weights and noise (default 0)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 on GPU), fp32, bf16."),
    fsdp: Optional[bool] = typer.Option(None, "--fsdp/--no-fsdp", help="FSDP instead of DDP under torchrun."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads per process."),
    video_dir: Optional[Path] = typer.Option(None, help="Source videos of released label shards."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint."),
) -> None:
    """Pre-train a policy on datasets (under torchrun for several processes: DDP, or FSDP with --fsdp)."""
    values = dict(data=[str(d) for d in data] if data else None, out=str(out) if out else None, model=model,
                  steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, weight_decay=weight_decay,
                  warmup_steps=warmup_steps, decay_fraction=decay_fraction, ema_decay=ema_decay, grad_clip=grad_clip,
                  shift=shift, min_action_density=min_action_density, game_ids=game_ids, augment=augment,
                  num_workers=num_workers, ckpt_every=ckpt_every, log_every=log_every, seed=seed, device=device,
                  precision=precision, fsdp=fsdp, threads=threads, video_dir=str(video_dir) if video_dir else None)
    _run("command line", values, config, resume)


def finetune(
    from_: Path = typer.Option(..., "--from", help="Checkpoint directory to start from (ours or converted ng.pt)."),
    data: list[Path] = typer.Option(..., help="Dataset root(s) of the new game(s)."),
    out: Path = typer.Option(..., help="Run directory."),
    freeze: Optional[str] = typer.Option(None, help=f"Comma-separated groups to freeze: {_GROUPS}."),
    steps: int = typer.Option(1000, help="Optimiser steps."),
    lr: float = typer.Option(1e-4, help="Peak learning rate (lower than pre-training)."),
    batch_size: int = typer.Option(32, help="Samples per micro-batch."),
    warmup_steps: int = typer.Option(50, help="Linear warmup steps."),
    config: Optional[Path] = typer.Option(None, help="JSON TrainConfig with further settings."),
    seed: int = typer.Option(0, help="Seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint."),
) -> None:
    """Fine-tune a checkpoint on new data, optionally freezing parts of the model; the same trainer as `train`."""
    if not (from_ / "config.json").is_file():
        fail(f"{from_}: not a checkpoint directory (no config.json)")
    values = dict(init_from=str(from_), data=[str(d) for d in data], out=str(out), freeze=_split(freeze),
                  steps=steps, lr=lr, batch_size=batch_size, warmup_steps=warmup_steps, seed=seed)
    _run("command line", values, config, resume)


def eval_offline(
    checkpoint: Path = typer.Option(..., help="Checkpoint directory."),
    data: list[Path] = typer.Option(..., help="Held-out dataset root(s)."),
    batches: int = typer.Option(8, min=1, help="Batches to score."),
    batch_size: int = typer.Option(16, min=1, help="Samples per batch."),
    seed: int = typer.Option(0, help="Seed of the sampled frames and of the sampler."),
    video_dir: Optional[Path] = typer.Option(None, help="Source videos of released label shards."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    out: Optional[Path] = typer.Option(None, help="Also write the scores to this JSON file."),
) -> None:
    """Action error of a checkpoint on held-out chunks: button accuracy, per-button F1, stick R^2."""
    from azote.training.evaluate import evaluate_offline

    try:
        result = evaluate_offline(str(checkpoint), [str(d) for d in data], batches=batches, batch_size=batch_size,
                                  seed=seed, video_dir=str(video_dir) if video_dir else None)
    except _data_errors() as exc:
        fail(_one_line(exc), code=1)
    if out:
        write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"{result['samples']} samples: button accuracy {result['button_accuracy']:.3f}, "
               f"stick MAE {result['stick_mae']:.3f}")
    typer.echo("stick R^2: " + ", ".join(f"{k} {v:.3f}" for k, v in result["stick_r2"].items()))


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(finetune)
    app.command("eval-offline")(eval_offline)
