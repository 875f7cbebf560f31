"""The main job: the whole NitroGen loop at small scale, from games to a report a person can read.

1. planning experts play several shipped games (the truth: frames and the actions taken);
2. each video is rendered again with a controller overlay the way streamers show one (skins the labeller never
   saw in training);
3. the labeller recovers the actions from the overlaid videos alone, and is scored against the truth;
4. the labelled chunks (density-filtered, overlay blacked out at training time) form the dataset;
5. a policy is pre-trained on every game but the held-out one, fine-tuned on the held-out game, and a policy of
   the same size is trained from scratch on the same data for the same steps;
6. benchmark tasks of the held-out game and of the seen games are run for these policies and for random;
7. report.md with each stage's figures, plots, a picture of the agent playing and rollout videos.

Every stage keeps its output under OUT/<stage>/ and a rerun resumes after the last finished stage.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from azote.errors import AzoteError
from azote.pipeline.stages import Stages
from azote.pipeline.steps import bench_policy, fmt_rate, train_policy


@dataclass
class MainJobConfig:
    out: str = "runs/demo"
    pretrain_games: list[str] = field(default_factory=lambda: [
        "atari/Breakout", "atari/Pong", "atari/SpaceInvaders", "atari/Boxing"])
    heldout_game: str = "atari/Freeway"
    episodes: int = 2  # expert episodes per game
    episode_steps: int = 1200
    model: str = "tiny"
    pretrain_steps: int = 500
    finetune_steps: int = 200
    batch_size: int = 16
    bench_episodes: int = 5  # per held-out task
    seen_episodes: int = 2  # per seen-game task (one task per seen game)
    suite: str = "standard"
    workers: int = 2
    seed: int = 0

    def scaled(self, scale: float) -> "MainJobConfig":
        c = MainJobConfig(**asdict(self))
        c.episodes = max(1, round(c.episodes * scale))
        c.episode_steps = max(300, round(c.episode_steps * min(scale, 3.0)))
        c.pretrain_steps = max(1, round(c.pretrain_steps * scale))
        c.finetune_steps = max(1, round(c.finetune_steps * scale))
        c.bench_episodes = max(1, round(c.bench_episodes * scale))
        c.seen_episodes = max(1, round(c.seen_episodes * scale))
        return c

    @property
    def games(self) -> list[str]:
        return [*self.pretrain_games, self.heldout_game]


def _truth_by_video(root: Path) -> dict[str, tuple[str, Path, Any]]:
    """video id -> (game, video path, the whole episode's actions) from a recorded dataset."""
    from azote.dataset import Dataset
    from azote.gamepad import ActionChunk

    ds = Dataset.open(root, check_video=True)
    by_video: dict[str, list] = {}
    for c in ds.chunks:
        by_video.setdefault(c.video_id, []).append(c)
    out = {}
    for vid, chunks in sorted(by_video.items()):
        chunks.sort(key=lambda c: c.index)
        out[vid] = (chunks[0].game, chunks[0].video_path, ActionChunk.concat([c.actions for c in chunks]))
    return out


def run_main_job(cfg: MainJobConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from tqdm import tqdm

    from azote.bench import load_suite
    from azote.dataset.subset import make_subset
    from azote.labeling import roundtrip
    from azote.play.recording import record_episodes

    root = Path(cfg.out)
    stages = Stages(root, log)
    (root / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    truth = root / "demos" / "truth"

    def demos(d: Path) -> Any:
        out = {}
        for game in cfg.games:
            with tqdm(total=cfg.episodes * cfg.episode_steps, unit="step", desc=f"expert plays {game}") as bar:
                res = record_episodes(game, "expert", d / "truth", list(range(100, 100 + cfg.episodes)),
                                      cfg.episode_steps, workers=cfg.workers, progress=bar)
            out[game] = {"episodes": len(res), "steps": sum(r["steps"] for r in res),
                         "mean_return": sum(r["return"] for r in res) / len(res)}
        return out

    demo_summary = stages.run("demos", demos)

    def overlay(d: Path) -> Any:
        videos = _truth_by_video(truth)
        made = {}
        for i, (vid, (game, video, actions)) in enumerate(tqdm(videos.items(), desc="render overlays", unit="video")):
            made[vid] = roundtrip.render_stream_from_video(video, actions, d / f"{vid}.mp4", index=i, seed=cfg.seed)
        return made

    streams = stages.run("overlay", overlay)

    def label(d: Path) -> Any:
        paths = [root / "overlay" / f"{vid}.mp4" for vid in streams]
        games = {f"{vid}": _truth_by_video(truth)[vid][0] for vid in streams}
        report = roundtrip.label_streams(paths, d / "dataset", games=games, workers=cfg.workers)
        accuracy = roundtrip.score_labels(d / "dataset", truth)
        return {"labelling": report, "accuracy": accuracy}

    labelled = stages.run("label", label)
    data = root / "label" / "dataset"

    def pretrain(d: Path) -> Any:
        games = set(cfg.pretrain_games)
        subset = make_subset(data, d / "data", lambda vid, game: game in games)
        return train_policy(subset, d / "run", steps=cfg.pretrain_steps, model=cfg.model,
                            batch_size=cfg.batch_size, lr=3e-4, seed=cfg.seed)

    pre = stages.run("pretrain", pretrain)

    def heldout_data(d: Path) -> Path:
        out = make_subset(data, d / "data", lambda vid, game: game == cfg.heldout_game)
        if not any(out.rglob("actions_raw.parquet")):  # say why, not only "no usable chunks" from the trainer
            raise AzoteError(f"the held-out game {cfg.heldout_game} has no labelled chunk to fine-tune on (the "
                             "labeller kept none above the action density; see label/dataset/labeling/); a larger "
                             "--scale gives the labeller more frames")
        return out

    fine = stages.run("finetune", lambda d: train_policy(
        heldout_data(d), d / "run", steps=cfg.finetune_steps, model=cfg.model, batch_size=cfg.batch_size, lr=1e-4,
        init_from=Path(pre["final"]), seed=cfg.seed))
    scratch = stages.run("scratch", lambda d: train_policy(
        heldout_data(d), d / "run", steps=cfg.finetune_steps, model=cfg.model, batch_size=cfg.batch_size,
        lr=3e-4, seed=cfg.seed))

    suite = load_suite(cfg.suite)
    heldout_tasks = [t.id for t in suite.tasks if t.game == cfg.heldout_game]
    seen_tasks = []
    for game in cfg.pretrain_games:  # the shortest task of each seen game keeps the default run short
        tasks = sorted((t for t in suite.tasks if t.game == game), key=lambda t: t.time_limit)
        seen_tasks += [tasks[0].id] if tasks else []
    policies = {"random": "random", "pretrained": pre["final"], "fine-tuned": fine["final"],
                "from scratch": scratch["final"]}
    bench: dict[str, dict[str, Any]] = {}
    for name, spec in policies.items():
        slug = name.replace(" ", "-")
        bench[name] = {
            "heldout": stages.run(f"bench-heldout-{slug}", lambda d, spec=spec: bench_policy(
                suite, spec, heldout_tasks, cfg.bench_episodes, d, cfg.workers)),
            "seen": stages.run(f"bench-seen-{slug}", lambda d, spec=spec: bench_policy(
                suite, spec, seen_tasks, cfg.seen_episodes, d, cfg.workers)),
        }
    return write_main_report(root, cfg, stages, demo_summary, labelled, pre, fine, scratch, bench)


def _agent_picture(root: Path, out: Path) -> str | None:
    """A frame from a rollout video with the pressed actions drawn (the fine-tuned agent on the held-out game)."""
    from azote.dataset.video import read_frames

    for video in sorted((root / "bench-heldout-fine-tuned" / "videos").glob("*.mp4")):
        frames = list(read_frames(video, start=0, count=240))
        if frames:
            from PIL import Image

            Image.fromarray(frames[len(frames) * 2 // 3]).save(out)
            return out.name
    return None


def write_main_report(root: Path, cfg: MainJobConfig, stages: Stages, demos: dict, labelled: dict, pre: dict,
                      fine: dict, scratch: dict, bench: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from azote.bench.report import bar_chart

    acc = labelled["accuracy"]
    lines = ["# Azote main job", "",
             f"Games: {', '.join(cfg.pretrain_games)} (pre-training) and **{cfg.heldout_game}** (held out). "
             f"Model `{cfg.model}`. Every stage's output is in its own directory here; `azote demo --out {root}` "
             "again resumes after the last finished stage.", "",
             "| stage | wall time |", "| --- | ---: |"]
    lines += [f"| {name} | {stages.seconds(name) or 0:.0f} s |" for name in stages.summaries]
    lines += ["", "## 1. Planning experts play", "", "| game | episodes | steps | expert mean return |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {g} | {v['episodes']} | {v['steps']} | {v['mean_return']:.1f} |" for g, v in demos.items()]
    lines += ["", "## 2-3. Overlays rendered, actions recovered from the overlays alone", "",
              "Each expert video was rendered again with a controller overlay (skins held out of the labeller's "
              "training); the labeller located the overlay and parsed every frame pair. Against the actions the "
              "expert actually took:", "",
              "| metric | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in acc.items()
              if not isinstance(v, (dict, list))]
    lab = labelled["labelling"]
    lines += ["", f"Dataset: {lab.get('chunks_written', '?')} chunks written, {lab.get('chunks_dropped', '?')} "
              "dropped by the 50% action-density filter; the overlay box is in each chunk's metadata and blacked "
              "out in every training frame.", "",
              "## 4-5. Pre-training, fine-tuning, training from scratch", "",
              "| run | data | steps | wall time | final loss |", "| --- | --- | ---: | ---: | ---: |"]
    runs = (("pre-training", "", "pretrain", pre, "seen games"),
            ("fine-tuning", " (from pre-training)", "finetune", fine, cfg.heldout_game),
            ("from scratch", "", "scratch", scratch, cfg.heldout_game))
    for title, detail, stage, run, data in runs:
        loss = run.get("last_loss")
        loss_cell = f"{loss:.4f}" if isinstance(loss, (int, float)) else "-"
        lines.append(f"| {title}{detail} | {data} | {run.get('steps')} | {stages.seconds(stage) or 0:.0f} s | "
                     f"{loss_cell} |")
    for title, _, stage, _, _ in runs:
        png = root / stage / "run" / "loss.png"
        if png.is_file():
            lines.append(f"\n![{title} loss]({png.relative_to(root)})")
    lines += ["", "## 6. Benchmark", "", f"Held-out game {cfg.heldout_game}: {cfg.bench_episodes} episodes per task; "
              f"seen games: {cfg.seen_episodes} per task; success decided by the game's state; 95% Wilson "
              "intervals.", "", "| policy | held-out tasks | seen-game tasks |", "| --- | --- | --- |"]
    for name, b in bench.items():
        lines.append(f"| {name} | {fmt_rate(b['heldout']['overall'])} | {fmt_rate(b['seen']['overall'])} |")
    tasks = list(next(iter(bench.values()))["heldout"]["tasks"]) + list(next(iter(bench.values()))["seen"]["tasks"])
    lines += ["", "| task | " + " | ".join(bench) + " |", "| --- |" + " --- |" * len(bench)]
    for t in tasks:
        cells = []
        for b in bench.values():
            e = b["heldout"]["tasks"].get(t) or b["seen"]["tasks"].get(t)
            cells.append(f"{e['rate']:.0%}" if e and e["rate"] is not None else "-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    merged = {name: {"tasks": {**b["heldout"]["tasks"], **b["seen"]["tasks"]}} for name, b in bench.items()}
    bar_chart(merged, root / "benchmark.png")
    lines += ["", "![benchmark](benchmark.png)", ""]
    picture = _agent_picture(root, root / "agent.png")
    if picture:
        lines += ["## The agent playing", "", f"![the fine-tuned agent on {cfg.heldout_game}]({picture})", ""]
    videos = sorted(p.relative_to(root) for p in root.glob("bench-*/videos/*.mp4"))
    lines += ["Rollout videos (pressed buttons and sticks drawn beside the frame):", ""]
    lines += [f"- [{v}]({v})" for v in videos]
    text = "\n".join(lines) + "\n"
    tmp = root / ".report.md.tmp"
    tmp.write_text(text)
    tmp.replace(root / "report.md")
    result = {"demos": demos, "labelling": labelled, "pretrain": pre, "finetune": fine, "scratch": scratch,
              "bench": {n: {k: v["overall"] for k, v in b.items()} for n, b in bench.items()}}
    (root / "report.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def clean(root: Path) -> None:
    """Removes a previous run (for `--fresh`)."""
    if root.exists():
        shutil.rmtree(root)


