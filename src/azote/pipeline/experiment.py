"""The paper's pre-training experiment at a scale a CPU can carry.

Planning experts record demonstrations of several pre-training games and two held-out games; a policy is
pre-trained on the pre-training games; for each held-out game and data budget (episodes of its demonstrations) it
is fine-tuned, and a policy of the same size is trained from scratch on the same data for the same number of
steps; the held-out games' benchmark tasks are run for all of them, for the pre-trained policy zero-shot and for
the random policy. Every stage is resumable (`azote experiment` again continues where it stopped).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from azote.pipeline.stages import Stages
from azote.pipeline.steps import bench_policy, fmt_rate, train_policy

PRETRAIN_GAMES = [
    "atari/Breakout", "atari/Pong", "atari/SpaceInvaders", "atari/MsPacman", "atari/Boxing", "atari/Seaquest",
    "atari/Enduro", "retro/Airstriker-Genesis",
]
HELDOUT_GAMES = ["atari/Freeway", "nes/SuperMarioBros-1-1"]


@dataclass
class ExperimentConfig:
    out: str = "runs/exp"
    pretrain_games: list[str] = field(default_factory=lambda: list(PRETRAIN_GAMES))
    heldout_games: list[str] = field(default_factory=lambda: list(HELDOUT_GAMES))
    pretrain_episodes: int = 4
    heldout_episodes: int = 10
    episode_steps: int = 3600
    budgets: list[int] = field(default_factory=lambda: [1, 3, 10])  # held-out episodes used for training
    model: str = "tiny"
    pretrain_steps: int = 6000
    finetune_steps: int = 1000
    batch_size: int = 32
    bench_episodes: int = 10
    suite: str = "standard"
    workers: int = 2
    seed: int = 0

    def scaled(self, scale: float) -> "ExperimentConfig":
        """Every stage larger (or smaller) by `scale`: episodes, steps, benchmark episodes."""
        c = ExperimentConfig(**asdict(self))
        c.pretrain_episodes = max(1, round(c.pretrain_episodes * scale))
        c.heldout_episodes = max(max(c.budgets), round(c.heldout_episodes * scale))
        c.pretrain_steps = max(1, round(c.pretrain_steps * scale))
        c.finetune_steps = max(1, round(c.finetune_steps * scale))
        c.bench_episodes = max(1, round(c.bench_episodes * scale))
        return c


def _slug(game: str) -> str:
    return game.replace("/", "-")


def run_experiment(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from tqdm import tqdm

    from azote.bench import load_suite
    from azote.dataset.subset import make_subset
    from azote.play.recording import record_episodes

    root = Path(cfg.out)
    stages = Stages(root, log)
    (root / "experiment.json").write_text(json.dumps(asdict(cfg), indent=1))
    demos = root / "demos"

    def record(kind: str, games: list[str], episodes: int, first_seed: int) -> Callable[[Path], Any]:
        def stage(_: Path) -> Any:
            out = {}
            for game in games:
                with tqdm(total=episodes * cfg.episode_steps, unit="step", desc=f"demos {game}") as bar:
                    res = record_episodes(game, "expert", demos / kind, list(range(first_seed, first_seed + episodes)),
                                          cfg.episode_steps, workers=cfg.workers, progress=bar)
                out[game] = {"episodes": len(res), "mean_return": sum(r["return"] for r in res) / len(res)}
            return out
        return stage

    stages.run("demos-pretrain", record("pretrain", cfg.pretrain_games, cfg.pretrain_episodes, 100))
    stages.run("demos-heldout", record("heldout", cfg.heldout_games, cfg.heldout_episodes, 200))

    def train(data: Path, out: Path, steps: int, init_from: Path | None, lr: float) -> dict[str, Any]:
        return train_policy(data, out, steps=steps, model=cfg.model, batch_size=cfg.batch_size, lr=lr,
                            init_from=init_from, seed=cfg.seed)

    def pretrain(d: Path) -> Any:
        games = set(cfg.pretrain_games)
        data = make_subset(demos / "pretrain", d / "data", lambda vid, game: game in games)
        return train(data, d / "run", cfg.pretrain_steps, None, 3e-4)

    pre = stages.run("pretrain", pretrain)
    policies: dict[str, tuple[str, str, int | None]] = {}  # name -> (checkpoint, game, budget)
    for game in cfg.heldout_games:
        ids = [f"{_slug(game)}_expert_seed{s}" for s in range(200, 200 + cfg.heldout_episodes)]
        for budget in cfg.budgets:
            keep = set(ids[:budget])
            tag = f"{_slug(game)}-{budget}ep"

            def data_for(d: Path, keep: set = keep) -> Path:
                return make_subset(demos / "heldout", d / "data", lambda vid, g: vid in keep)

            ft = stages.run(f"finetune-{tag}", lambda d, data_for=data_for: train(
                data_for(d), d / "run", cfg.finetune_steps, Path(pre["final"]), 1e-4))
            sc = stages.run(f"scratch-{tag}", lambda d, data_for=data_for: train(
                data_for(d), d / "run", cfg.finetune_steps, None, 3e-4))
            policies[f"finetune-{tag}"] = (ft["final"], game, budget)
            policies[f"scratch-{tag}"] = (sc["final"], game, budget)

    suite = load_suite(cfg.suite)
    heldout_tasks = {g: [t.id for t in suite.tasks if t.game == g] for g in cfg.heldout_games}
    evaluations: list[tuple[str, str, str, int | None]] = []  # (name, spec, game, budget)
    for game in cfg.heldout_games:
        evaluations.append((f"random-{_slug(game)}", "random", game, None))
        evaluations.append((f"pretrained-{_slug(game)}", pre["final"], game, 0))
    evaluations += [(name, spec, game, budget) for name, (spec, game, budget) in policies.items()]

    results: dict[str, Any] = {}
    for name, spec, game, budget in evaluations:
        def bench(d: Path, spec: str = spec, game: str = game) -> Any:
            return bench_policy(suite, spec, heldout_tasks[game], cfg.bench_episodes, d, cfg.workers)

        summary = stages.run(f"bench-{name}", bench)
        results[name] = {"game": game, "budget": budget, "overall": summary["overall"],
                         "tasks": {t: v["rate"] for t, v in summary["tasks"].items()}}
    report = write_experiment_report(root, cfg, results, pre)
    return report


def write_experiment_report(root: Path, cfg: ExperimentConfig, results: dict[str, Any], pre: dict) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    lines = ["| held-out game | demo episodes | from scratch | fine-tuned from pre-training | difference |",
             "| --- | ---: | --- | --- | ---: |"]

    for game in cfg.heldout_games:
        for budget in cfg.budgets:
            tag = f"{_slug(game)}-{budget}ep"
            sc, ft = results[f"scratch-{tag}"]["overall"], results[f"finetune-{tag}"]["overall"]
            diff = ft["rate"] - sc["rate"]
            rows.append({"game": game, "budget": budget, "scratch": sc, "finetune": ft, "difference": diff})
            lines.append(f"| {game} | {budget} | {fmt_rate(sc)} | {fmt_rate(ft)} | {diff:+.0%} |")
    lines += ["", "| held-out game | random | pre-trained, zero-shot |", "| --- | --- | --- |"]
    for game in cfg.heldout_games:
        lines.append(f"| {game} | {fmt_rate(results[f'random-{_slug(game)}']['overall'])} | "
                     f"{fmt_rate(results[f'pretrained-{_slug(game)}']['overall'])} |")

    fig, axes = plt.subplots(1, len(cfg.heldout_games), figsize=(5 * len(cfg.heldout_games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], cfg.heldout_games):
        for kind, color in (("scratch", "#888888"), ("finetune", "#00798c")):
            rates = [results[f"{kind}-{_slug(game)}-{b}ep"]["overall"] for b in cfg.budgets]
            ax.plot(cfg.budgets, [r["rate"] for r in rates], "o-", color=color,
                    label="fine-tuned" if kind == "finetune" else "from scratch")
            ax.fill_between(cfg.budgets, [r["ci95"][0] for r in rates], [r["ci95"][1] for r in rates], color=color,
                            alpha=0.15)
        for kind, style in (("random", ":"), ("pretrained", "--")):
            ax.axhline(results[f"{kind}-{_slug(game)}"]["overall"]["rate"], linestyle=style, color="black",
                       label="random" if kind == "random" else "pre-trained zero-shot")
        ax.set_xscale("log")
        ax.set_xticks(cfg.budgets)
        ax.set_xticklabels([str(b) for b in cfg.budgets])
        ax.set_xlabel("demonstration episodes of the held-out game")
        ax.set_ylabel("task success rate")
        ax.set_ylim(0, 1)
        ax.set_title(game)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(root / "experiment.png", dpi=110)
    plt.close(fig)
    text = "\n".join(["# Pre-training experiment", "",
                      f"Pre-training: {', '.join(cfg.pretrain_games)} ({cfg.pretrain_episodes} expert episodes of "
                      f"{cfg.episode_steps} steps each, {cfg.pretrain_steps} steps of batch {cfg.batch_size}, "
                      f"model `{cfg.model}`). Fine-tuning and scratch: {cfg.finetune_steps} steps each. "
                      f"Success over the held-out game's benchmark tasks, {cfg.bench_episodes} episodes per task, "
                      "95% Wilson intervals.", "", *lines, "", "![experiment](experiment.png)", ""])
    (root / "experiment.md").write_text(text)
    out = {"rows": rows, "results": results, "pretrain": pre}
    (root / "experiment-results.json").write_text(json.dumps(out, indent=1, default=str))
    return out
