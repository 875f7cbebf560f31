"""Pre-training and fine-tuning: AdamW, warmup-stable-decay, EMA, gradient clipping and accumulation, bf16 on
GPU, DDP/FSDP through torchrun, atomic checkpoints and exact resume.

Run directory:

    OUT/run.json               the run's configuration (`TrainConfig`; `azote train --config OUT/run.json` again)
    OUT/games.json             the game vocabulary, fixed when the run begins
    OUT/checkpoints/step_N/    model/ (EMA weights, a policy checkpoint) + trainer.pt (everything to resume)
    OUT/final/                 the EMA weights at the end: what acts (`azote play --policy OUT/final`)
    OUT/metrics.csv, OUT/tb/   loss, learning rate, gradient norm, throughput (CSV and TensorBoard)
    OUT/loss.png, OUT/summary.json

Exact resume: every micro-batch is a function of (seed, index) (see `azote.dataset.samples`), augmentation draws
are seeded by the micro-batch index, and the torch RNG (flow-matching noise and times, dropout) is saved with
the optimiser, schedule and EMA. A run killed at any point and resumed ends with the same weights as one that
was never interrupted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from azote.dataset import Dataset
from azote.dataset.samples import SampleConfig, TrainingSamples
from azote.files import write_atomic
from azote.lifetime import tie_to_parent
from azote.policy import NitroGenModel, PolicyConfig, build_model, get_preset
from azote.policy.checkpoint import CheckpointError, from_pretrained, read_games, save_pretrained, write_games
from azote.policy.model import check_device
from azote.safeload import safe_load
from azote.training.augment import augment
from azote.training.config import RUN_FILE, TrainConfig
from azote.training.schedule import EMA, wsd_factor

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer.pt"


def _atomic_dir(final: Path, write: Callable[[Path], None]) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _loader_worker(parent: int, worker_id: int) -> None:
    """A data-loader worker dies with its training process (torch's own watchdog notices only seconds later)."""
    tie_to_parent(parent)


def _to_stderr(message: str) -> None:  # a module function: data-loader workers may be spawned, not forked
    print(message, file=sys.stderr, flush=True)


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (incomplete ones never carry their final name)."""
    root = Path(out) / CHECKPOINTS
    done = sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file()) if root.is_dir() else []
    return done[-1] if done else None


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, quiet: bool = False) -> None:
        self.cfg, self.resume, self.quiet = config, resume, quiet
        self.out = Path(config.out)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and config.runtime.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.main = self.rank == 0
        self.device = self._device()
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        precision = config.runtime.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")

    def _device(self) -> torch.device:
        d = self.cfg.runtime.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        dev = check_device(d)
        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            dev = torch.device("cuda", local if dev.index is None else dev.index)
            torch.cuda.set_device(dev)
        return dev

    # --- set-up ------------------------------------------------------------------------------------------
    def _data(self) -> tuple[list[Dataset], list[str]]:
        datasets = [Dataset.open(root, video_dir=self.cfg.data.video_dir) for root in self.cfg.data.roots]
        for ds in datasets:
            for problem in ds.problems:
                self._log(f"skipping bad file: {problem}")
        games = sorted({c.game or "?" for ds in datasets for c in ds.chunks})
        if self.resume and latest_checkpoint(self.out) is not None and read_games(self.out):
            # the game vocabulary is fixed when a run begins (the game embedding's size depends on it): data of
            # games added since then is left out of a resumed run
            games = read_games(self.out)
            known, dropped = set(games), 0
            for ds in datasets:
                dropped += sum((c.game or "?") not in known for c in ds.chunks)
                ds.chunks = [c for c in ds.chunks if (c.game or "?") in known]
            if dropped:
                self._log(f"resuming: {dropped} chunks of games added since the run began are left out")
        return datasets, games

    def _model(self, games: list[str]) -> NitroGenModel:
        """The model to train. Its config's `action_shift` is the one shift of the run (the samples' targets start
        there, and the checkpoints keep it): a preset's or a checkpoint's, unless `sampling.shift` asks for another
        (said in the log when it changes a checkpoint's)."""
        c, m = self.cfg, self.cfg.model
        changes: dict[str, Any] = dict(m.overrides)
        if c.sampling.shift is not None:
            changes["action_shift"] = c.sampling.shift
        if m.init_from:
            model = from_pretrained(m.init_from, device="cpu")
            shift = model.config.action_shift
            if changes.get("action_shift", shift) != shift:
                self._log(f"action shift: {changes['action_shift']} as asked (the checkpoint {m.init_from} has {shift}); "
                          "the fine-tuned checkpoints keep the new shift")
            changes = {k: v for k, v in changes.items() if getattr(model.config, k, None) != v or k == "vision"}
            if set(changes) <= {"action_shift"}:  # the shift changes no module: the loaded model stays as it is
                model.config = model.config.replace(**changes)
            else:
                model = _rebuilt(model, model.config.replace(**changes), m.init_from)
        else:
            base: PolicyConfig = PolicyConfig.load(m.preset) if m.preset.endswith(".json") else get_preset(m.preset)
            if m.game_ids:
                changes["num_games"] = len(games)
            torch.manual_seed(c.seed)  # the same initial weights on every process
            model = build_model(base.replace(**changes), device="cpu")
        model.set_trainable(**{g: g not in m.freeze for g in model.parameter_groups()})
        model.train()
        return model.to(self.device)

    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
        if not decay and not no_decay:
            raise ValueError(f"freeze={self.cfg.model.freeze} leaves no trainable parameter in this model")
        o = self.cfg.optim
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), fused=fused)

    def _log(self, message: str) -> None:
        if self.main and not self.quiet:
            print(message, flush=True)

    # --- the loop ----------------------------------------------------------------------------------------
    def run(self) -> Path:
        c, o, rt = self.cfg, self.cfg.optim, self.cfg.runtime
        datasets, games = self._data()
        raw = self._model(games)
        model: torch.nn.Module = _LossModule(raw)
        if self.distributed:
            if rt.fsdp:
                from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

                model = FSDP(model, use_orig_params=True)
            else:
                model = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optimizer = self._optimizer(model)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: wsd_factor(s, o.steps, o.warmup_steps, o.decay_fraction, o.final_lr_ratio))
        ema = EMA(raw, o.ema_decay)
        step, rng_state = 0, None
        ckpt = latest_checkpoint(self.out) if self.resume else None
        if ckpt is not None:
            # the one safe reader of torch files: bounded, nothing executed (a planted file is refused)
            state = safe_load(ckpt / STATE_FILE)
            raw.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            ema.load_state_dict(state["ema"])
            rng_state = state["rng"][self.rank]
            step = int(state["step"])
            self._log(f"resuming from {ckpt} at step {step}")
        else:  # a fresh run, or --resume with nothing to resume yet: the same seeded start
            torch.manual_seed(c.seed + 1000 + self.rank)

        sp = c.sampling
        sample_cfg = SampleConfig(  # horizon and shift: the model's, the one place they are set
            horizon=raw.config.action_horizon, shift=raw.config.action_shift, image_size=raw.config.vision.image_size,
            batch_size=o.batch_size, min_action_density=sp.min_action_density, game_weights=sp.game_weights,
            chunks_per_window=sp.chunks_per_window, batches_per_window=sp.batches_per_window, seed=c.seed)
        # one rank tells of a chunk whose video stops decoding (every rank skips it alike)
        samples = TrainingSamples(datasets, sample_cfg, games=games, start=step * o.grad_accum * self.world,
                                  rank=self.rank, world_size=self.world,
                                  log=None if self.quiet or not self.main else _to_stderr)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / RUN_FILE, c.to_json())
            write_games(self.out, games)
            st = samples.stats
            self._log(f"data: {st.chunks} chunks ({st.rows} rows) from {len(games)} games; skipped "
                      f"{st.skipped_low_action} chunks below {sp.min_action_density:.0%} action density, "
                      f"{st.skipped_no_video} without video and {st.skipped_bad} bad; action shift "
                      f"{raw.config.action_shift}")
        loader = torch.utils.data.DataLoader(
            samples, batch_size=None, num_workers=rt.num_workers, persistent_workers=rt.num_workers > 0,
            prefetch_factor=4 if rt.num_workers > 0 else None, pin_memory=self.device.type == "cuda",
            worker_init_fn=partial(_loader_worker, os.getpid()) if rt.num_workers > 0 else None)
        batches = iter(loader)
        if rng_state is not None:
            # after the loader's iterator, which draws its workers' base seed from the global RNG
            torch.set_rng_state(rng_state)
        log = MetricLog(self.out, step, enabled=self.main)
        bar = None
        if self.main and not self.quiet:
            from tqdm import tqdm

            bar = tqdm(total=o.steps, initial=step, unit="step", desc="train")
        t_last, samples_since = time.time(), 0
        use_game_ids = raw.config.num_games > 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        try:
            while step < o.steps:
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for micro in range(o.grad_accum):
                    batch = next(batches)
                    pixels = (batch["pixel_values"].to(self.device, non_blocking=True).float() / 255.0 - 0.5) / 0.5
                    if c.augment.enabled:
                        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + int(batch["index"]))
                        pixels = augment(pixels, c.augment, gen)
                    inputs = {"pixel_values": pixels, "actions": batch["actions"].to(self.device),
                              "action_mask": batch["action_mask"].to(self.device)}
                    if use_game_ids:
                        inputs["game_ids"] = batch["game_ids"].to(self.device)
                    sync = micro == o.grad_accum - 1 or not self.distributed
                    with (nullcontext() if sync else model.no_sync()), autocast:
                        loss = model(inputs) / o.grad_accum
                    loss.backward()
                    total += float(loss.detach())
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], o.grad_clip if o.grad_clip > 0 else math.inf)
                optimizer.step()
                schedule.step()
                ema.update(raw)
                step += 1
                samples_since += o.batch_size * o.grad_accum * self.world
                if self.distributed:
                    t = torch.tensor([total], device=self.device)
                    dist.all_reduce(t)
                    total = float(t) / self.world
                if step % rt.log_every == 0 or step == o.steps:
                    now = time.time()
                    rate = samples_since / max(now - t_last, 1e-9)
                    t_last, samples_since = now, 0
                    log.write(step, total, schedule.get_last_lr()[0], float(grad_norm), rate)
                    if bar is not None:
                        bar.set_postfix(loss=f"{total:.4f}", sps=f"{rate:.1f}")
                if bar is not None:
                    bar.update(1)
                if step % rt.ckpt_every == 0 or step == o.steps:
                    self._checkpoint(step, raw, optimizer, schedule, ema, games)
        finally:
            if bar is not None:
                bar.close()
            log.close()
        final = self.out / "final"
        if self.main:
            snapshot = _ema_model(raw, ema)
            _atomic_dir(final, lambda d: _save_acting(snapshot, games, d))
            log.plot(self.out / "loss.png")
            write_atomic(self.out / "summary.json", json.dumps(
                {"steps": step, "final": str(final), "games": games, "action_shift": raw.config.action_shift,
                 "last_loss": log.last_loss if math.isfinite(log.last_loss) else None,
                 "samples": samples.stats.__dict__}, indent=1))
        if self.distributed:
            dist.barrier()
        return final

    def _checkpoint(self, step: int, raw: NitroGenModel, optimizer: torch.optim.Optimizer,
                    schedule: Any, ema: EMA, games: list[str]) -> None:
        rng = torch.get_rng_state()
        if self.distributed:
            states = [None] * self.world
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if not self.main:
            return
        state = {"step": step, "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "ema": ema.state_dict(), "rng": states}
        snapshot = _ema_model(raw, ema)

        def write(d: Path) -> None:
            _save_acting(snapshot, games, d / "model")
            torch.save(state, d / STATE_FILE)

        _atomic_dir(self.out / CHECKPOINTS / f"step_{step:07d}", write)
        kept = sorted((self.out / CHECKPOINTS).glob("step_*"))
        for old in kept[: -self.cfg.runtime.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)


class _LossModule(torch.nn.Module):
    """forward() = the flow-matching loss, so that DDP/FSDP hooks (which fire on forward) see the training step."""

    def __init__(self, model: NitroGenModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.model.compute_loss(inputs)


def _ema_model(raw: NitroGenModel, ema: EMA) -> NitroGenModel:
    with torch.random.fork_rng(devices=[]):  # initialising the copy must not move the training RNG
        copy = build_model(raw.config, device="cpu")
    copy.load_state_dict({k: v.detach().cpu() for k, v in raw.state_dict().items()})
    ema.copy_to(copy)
    return copy.eval()


def _save_acting(model: NitroGenModel, games: list[str], directory: Path) -> None:
    save_pretrained(model, directory)
    write_games(directory, games)


def _rebuilt(model: NitroGenModel, config: PolicyConfig, source: str) -> NitroGenModel:
    """The loaded model under a changed config (`model.overrides` on a checkpoint): rebuilt and given the same
    weights, which must still fit (dropout or sampler settings change; widths and layers cannot)."""
    with torch.random.fork_rng(devices=[]):
        new = build_model(config, device="cpu")
    try:
        new.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: model.overrides change the checkpoint's architecture "
                              f"({' '.join(str(exc).split())[:300]})") from None
    return new


class MetricLog:
    """metrics.csv + TensorBoard; on resume, rows after the resumed step are dropped (they will be redone)."""

    FIELDS = ("step", "loss", "lr", "grad_norm", "samples_per_s", "time")

    def __init__(self, out: Path, start_step: int, enabled: bool = True) -> None:
        self.enabled, self.path, self.last_loss = enabled, out / "metrics.csv", float("nan")
        self.rows: list[dict[str, float]] = []
        self._tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = [row for row in map(self._parse, csv.DictReader(f))
                             if row is not None and row["step"] <= start_step]
        if self.rows:  # a run resumed at its last step runs none: its last loss is the one logged before
            self.last_loss = self.rows[-1]["loss"]
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # a kill while rewriting keeps the old file
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.FIELDS)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)
        except ImportError:  # tensorboard is optional at run time; the CSV has the same figures
            self._tb = None

    @classmethod
    def _parse(cls, raw: dict[str, str | None]) -> dict[str, float] | None:
        """A row as it was written (the step stays an int, so rows kept on resume are rewritten unchanged), or
        None for a row cut short by a kill."""
        try:
            row = {k: float(raw[k]) for k in cls.FIELDS}  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None
        if not row["step"].is_integer():
            return None
        return {**row, "step": int(row["step"])}  # "12.0" from an earlier resume is mended to 12

    def write(self, step: int, loss: float, lr: float, grad_norm: float, rate: float) -> None:
        if not self.enabled:
            return
        row = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "samples_per_s": rate, "time": time.time()}
        self.rows.append(row)
        self.last_loss = loss
        self._csv.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for key in ("loss", "lr", "grad_norm", "samples_per_s"):
                self._tb.add_scalar(f"train/{key}", row[key], step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()

    def plot(self, path: Path) -> None:
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
        a.plot(steps, [r["loss"] for r in self.rows])
        a.set_yscale("log")
        a.set_xlabel("step")
        a.set_ylabel("flow-matching loss")
        b.plot(steps, [r["lr"] for r in self.rows])
        b.set_xlabel("step")
        b.set_ylabel("learning rate")
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
