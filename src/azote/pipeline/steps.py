"""Steps shared by the multi-stage jobs: train a policy on a dataset, run benchmark tasks for a policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def train_policy(data: Path, out: Path, *, steps: int, model: str, batch_size: int, lr: float,
                 init_from: Path | None = None, seed: int = 0, game_ids: bool = False) -> dict[str, Any]:
    """Trains (resuming when `out` has checkpoints) and returns the run's summary with the final checkpoint."""
    from azote.training import TrainConfig, Trainer

    tc = TrainConfig.build(  # flat names of the run configuration (see azote.training.config)
        f"{out} (pipeline)", data=[str(data)], out=str(out), model=model,
        init_from=str(init_from) if init_from else None, steps=steps, batch_size=batch_size, lr=lr,
        warmup_steps=min(100, steps // 10), ckpt_every=max(50, steps // 5), num_workers=1, seed=seed, game_ids=game_ids)
    final = Trainer(tc, resume=True).run()
    return {"final": str(final), **json.loads((out / "summary.json").read_text())}


def bench_policy(suite: Any, spec: str, tasks: list[str], episodes: int, out: Path, workers: int) -> dict[str, Any]:
    """Runs the tasks for a policy (resumable) and returns the summary: rates with 95% intervals."""
    from tqdm import tqdm

    from azote.bench.report import summarize
    from azote.bench.runner import job_keys, results_for, run_suite

    with tqdm(unit="episode", desc=f"bench {out.name}") as bar:
        run_suite(suite, spec, episodes, out, workers=workers, videos=True, tasks=tasks, progress=bar)
    return summarize(suite, results_for(out, job_keys(suite, spec, episodes, tasks)))


def fmt_rate(o: dict[str, Any]) -> str:
    lo, hi = o["ci95"]
    return f"{o['rate']:.0%} [{lo:.0%}, {hi:.0%}] (n={o['episodes']})"
