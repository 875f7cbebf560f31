"""`azote bench`: run a suite with a policy and write the report; `--list` the tasks; `solve` finds solutions."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Optional

import typer

from azote.agents import check_spec
from azote.cli.common import fail

bench_app = typer.Typer(help="The benchmark: tasks whose success is decided by the game's own variables.",
                        invoke_without_command=True)


@bench_app.callback()
def bench(
    ctx: typer.Context,
    policy: str = typer.Option("random", help="random, expert, a checkpoint directory, tcp://HOST:PORT, or "
                               "solutions (each task's recorded solution replayed: one episode a task)."),
    suite: str = typer.Option("standard", help="A shipped suite name or a YAML file."),
    episodes: int = typer.Option(10, min=1, help="Episodes per task."),
    out: Optional[Path] = typer.Option(None, help="Output directory (results.jsonl, report, plot, videos) of one "
                                       "benchmark: rerun with the same policy it resumes; episodes of another policy, "
                                       "checkpoint weights, suite version, task definition or seed there are refused "
                                       "(an error), never counted or mixed."),
    workers: int = typer.Option(2, min=1, help="Episodes run in parallel processes."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated task ids (default: all)."),
    games: Optional[str] = typer.Option(None, help="Comma-separated games: only their tasks."),
    videos: bool = typer.Option(True, "--videos/--no-videos", help="One rollout video per task (episode 0)."),
    list_: bool = typer.Option(False, "--list", help="List the suite's tasks and exit."),
    as_json: bool = typer.Option(False, "--json", help="With --list: print JSON."),
) -> None:
    """Run every task of a suite N times with a policy; results are resumable; report.md, report.json,
    success.png and videos/ are written to OUT. Each result is keyed by the policy (a checkpoint by the hash of
    its files), the suite version, the task's definition and the episode seed; OUT holding another key is refused."""
    if ctx.invoked_subcommand is not None:
        return
    from azote.bench import load_suite

    s = load_suite(suite)
    task_ids = _known("task", tasks, [t.id for t in s.tasks], s.name)
    game_ids = _known("game", games, s.games(), s.name)
    chosen = [t for t in s.tasks if (task_ids is None or t.id in task_ids)
              and (game_ids is None or t.game in game_ids)]
    if list_:
        rows = [{"id": t.id, "game": t.game, "category": t.category, "view": t.game_view,
                 "time_limit": t.time_limit, "description": t.description, "heldout": t.game in s.heldout}
                for t in chosen]
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
        else:
            for r in rows:
                typer.echo(f"{r['id']:28} {r['game']:28} {r['category']:14} {r['view']:8} {r['description']}")
            typer.echo(f"{len(rows)} tasks, {len({r['game'] for r in rows})} games")
        return
    if out is None:
        fail("--out is required to run the benchmark")
    if not chosen:
        fail("no task matches --tasks/--games")
    from tqdm import tqdm

    from azote.bench.report import write_report
    from azote.bench.runner import SOLUTIONS, check_results, job_keys, results_for, run_suite

    if policy == SOLUTIONS:
        if episodes != 1:
            typer.echo("solutions: one episode a task (a recorded solution plays the same every time)", err=True)
        episodes = 1
    else:
        check_spec(policy)

    ids = [t.id for t in chosen]
    check_results(out, job_keys(s, policy, episodes, ids), policy)  # before any progress bar is drawn
    # the total is known before the first episode (run_suite sets the same), so the ETA shows from the start
    with tqdm(total=len(ids) * episodes, unit="episode", desc=f"bench {s.name} ({policy})") as bar:
        run_suite(s, policy, episodes, out, workers=workers, videos=videos, tasks=ids, progress=bar)
    rows = results_for(out, job_keys(s, policy, episodes, ids))
    summary = write_report(out, s, rows, policy)
    overall = summary["overall"]
    typer.echo(f"success {overall['successes']}/{overall['episodes']}; report: {out / 'report.md'}")
    failed = [r for r in rows if str(r.get("reason", "")).startswith("error:")]
    if failed:
        typer.echo(f"{len(failed)} episode(s) not scored: the game failed ({failed[0]['task']} episode "
                   f"{failed[0]['episode']}: {failed[0]['reason'][7:]}); see {out / 'results.jsonl'}", err=True)


def _known(what: str, given: str | None, known: list[str], suite: str) -> list[str] | None:
    """The comma-separated names of `given`, or a one-line failure naming those not in the suite (a typo would
    otherwise run nothing, or less than asked, without a word)."""
    if given is None:
        return None
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for n in unknown:
            lower = {k.lower(): k for k in known}  # `atari/pong` finds atari/Pong
            close = [lower[c] for c in ([n.lower()] if n.lower() in lower
                                        else difflib.get_close_matches(n.lower(), list(lower), n=2, cutoff=0.6))]
            hints.append(f"{n!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        fail(f"suite {suite} has no {what} {', '.join(hints)}; `azote bench --suite {suite} --list` lists them")
    return names


@bench_app.command("solve")
def solve(
    suite: str = typer.Option("standard", help="A shipped suite name or a YAML file."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated task ids (default: all without a solution)."),
    out: Optional[Path] = typer.Option(None, help="Where to write solutions (default: the package's)."),
    attempts: int = typer.Option(3, min=1, help="Expert seeds to try."),
    horizon: Optional[int] = typer.Option(None, min=1, help="Expert search horizon (default: the family's)."),
    budget: int = typer.Option(300_000, min=1, help="Game steps the novelty search may spend per task."),
    hold: Optional[int] = typer.Option(None, min=1, help="Steps each novelty-search move is held (default: per family)."),
    beam: Optional[int] = typer.Option(None, min=1, help="States of each depth the novelty search expands."),
    force: bool = typer.Option(False, help="Solve again tasks that have a solution."),
) -> None:
    """Find and store a successful action sequence per task (planning expert, else novelty search)."""
    from azote.bench import load_suite
    from azote.bench.solutions import SOLUTIONS_DIR, save_solution, solution_path, solve

    s = load_suite(suite)
    root = out or SOLUTIONS_DIR
    task_ids = _known("task", tasks, [t.id for t in s.tasks], s.name)
    for task in s.tasks:
        if task_ids is not None and task.id not in task_ids:
            continue
        if solution_path(task, root).exists() and not force:
            continue
        found = solve(task, attempts, horizon, budget, hold, beam)
        if found is None:
            typer.echo(f"{task.id}: not solved", err=True)
            continue
        how, solution = found
        save_solution(task, solution, root, how)
        typer.echo(f"{task.id}: solved by {how} in {len(solution.actions)} steps")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
