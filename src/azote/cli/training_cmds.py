"""`azote train`, `azote finetune`, `azote eval-offline`.

The options of `train` and `finetune` are made from the run configuration's fields (`azote.training.config`): one
option per setting, named by its flat name (`--lr`, `--betas`, `--augment/--no-augment`, `--data`), with the
field's description as help; a dict or tuple setting takes JSON. `--set key.path=value` reaches any value, the
model overrides' included (`--set model.overrides.dropout=0`). A new field needs no code here."""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import typer

from azote.cli.common import fail
from azote.files import write_json
from azote.training.config import FINETUNE_DEFAULTS, FREEZE_GROUPS, leaves, merge, nested, set_path

_GROUPS = FREEZE_GROUPS


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


# --- options made from the configuration's fields -----------------------------------------------------------------
def _option_type(annotation: Any) -> tuple[Any, str]:
    """(the option's type, how its value is read: "plain", "flag", "list" or "json") for a field's annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _option_type(inner[0])
    if annotation is bool:
        return Optional[bool], "flag"
    if annotation in (int, float, str):
        return Optional[annotation], "plain"
    if origin is Literal:
        return Optional[str], "plain"
    if origin is list and args and args[0] in (int, float, str):
        return Optional[list[args[0]]], "list"  # type: ignore[valid-type]
    return Optional[str], "json"


def _help(field: Any, path: tuple[str, ...], kind: str, defaults: dict[str, Any]) -> str:
    text = (field.description or "").rstrip(".")
    text = text[:1].upper() + text[1:]
    default = field.get_default(call_default_factory=True)
    if len(path) == 2 and path[1] in defaults.get(path[0], {}):
        default = defaults[path[0]][path[1]]
    shown = json.dumps(default) if kind == "json" else default
    where = ".".join(path)
    if field.is_required():
        return f"{text} ({where})."
    return f"{text} ({where}; default {shown}{'; JSON' if kind == 'json' else ''})."


_KINDS: dict[str, str] = {}  # flat name -> how the command line's value is read


def _generated(exclude: tuple[str, ...], defaults: dict[str, Any]) -> list[inspect.Parameter]:
    params = []
    for flat, path, field in leaves():
        if flat in exclude:
            continue
        annotation, kind = _option_type(field.annotation)
        _KINDS[flat] = kind
        name = "--" + flat.replace("_", "-")
        decl = f"{name}/--no-{flat.replace('_', '-')}" if kind == "flag" else name
        params.append(inspect.Parameter(flat, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(None, decl, help=_help(field, path, kind, defaults))))
    return params


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """Flat values the command line gave (None and an empty repeatable option are not given); JSON ones parsed."""
    values = {}
    for flat, value in options.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        if _KINDS.get(flat) == "json":
            try:
                value = json.loads(value)
            except ValueError:
                fail(f"--{flat.replace('_', '-')}: {value!r} is not JSON (for example {_json_example(flat)})")
        elif isinstance(value, tuple):
            value = list(value)
        values[flat] = value
    return values


def _json_example(flat: str) -> str:
    return {"betas": "'[0.9, 0.95]'", "game_weights": "'{\"atari/Pong\": 2}'"}.get(flat, "'{\"dropout\": 0.0}'")


def _command(name: str, doc: str, fixed: list[inspect.Parameter], body: Callable[..., None],
             exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Callable[..., None]:
    """A typer command whose options are `fixed` and one per configuration setting (but `exclude`); `defaults`
    are the command's own defaults (shown in the help)."""
    params = fixed + _generated(exclude, defaults or {})

    def command(**kwargs: Any) -> None:
        body(**kwargs)

    command.__name__ = name
    command.__doc__ = doc
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


_CONFIG = _option("config", Optional[Path], typer.Option(
    None, help="A run configuration (a run's run.json, or an older run's config.json); options given here override it."))
_SET = _option("set_", Optional[list[str]], typer.Option(
    None, "--set", help="KEY.PATH=VALUE on the configuration (repeatable), e.g. optim.lr=1e-4, "
                        "model.overrides.dropout=0, sampling.game_weights='{\"atari/Pong\": 2}'."))
_RESUME = _option("resume", bool, typer.Option(False, "--resume", help="Continue from the run's latest checkpoint."))


# --- the commands -------------------------------------------------------------------------------------------------
def _run(defaults: dict[str, Any], options: dict[str, Any]) -> None:
    from azote.policy import CheckpointError, ConfigError
    from azote.training import TrainConfig, Trainer

    config, sets, resume = options.pop("config"), options.pop("set_") or [], options.pop("resume")
    values = merge(defaults, TrainConfig.read(config)) if config else dict(defaults)
    values = merge(values, nested(_given(options)))
    for assignment in sets:
        values = set_path(values, assignment)
    cfg = TrainConfig.build(str(config) if config else "command line", values)
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
    from azote.training.config import run_directory_message

    if cfg.model.init_from:
        run = run_directory_message(cfg.model.init_from)
        if run is not None:
            fail(run)
        check_checkpoint(cfg.model.init_from)
    elif cfg.model.preset.endswith(".json"):
        PolicyConfig.load(cfg.model.preset)


def _train(**options: Any) -> None:
    _run({}, options)


def _finetune(**options: Any) -> None:
    from azote.training.config import run_directory_message

    start = options.pop("from_")
    run = run_directory_message(str(start))
    if run is not None:
        fail(run)
    if not (start / "config.json").is_file():
        fail(f"{start}: not a checkpoint directory (no config.json)")
    options["init_from"] = str(start)
    _run(FINETUNE_DEFAULTS, options)


train = _command(
    "train", "Pre-train a policy on datasets (under torchrun for several processes: DDP, or FSDP with --fsdp). The "
             "run's whole configuration is saved as OUT/run.json; `--config OUT/run.json` runs it again.",
    [_CONFIG, _SET, _RESUME], _train)

finetune = _command(
    "finetune", "Fine-tune a checkpoint on new data, optionally freezing parts of the model; the same trainer and "
                "options as `train`, with fine-tuning's defaults (1000 steps, lr 1e-4, 50 warmup steps). The "
                "action shift stays the checkpoint's unless --shift asks for another.",
    [_option("from_", Path, typer.Option(..., "--from", help="Checkpoint directory to start from (ours or converted "
                                                              "ng.pt).")), _CONFIG, _SET, _RESUME],
    _finetune, exclude=("init_from", "model", "game_ids"), defaults=FINETUNE_DEFAULTS)


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
        write_json(out, result, default=str)
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
