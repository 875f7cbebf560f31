"""Benchmark reports: success rates with 95% Wilson intervals per task, category, view and game, as markdown,
JSON and a bar chart."""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from azote.bench.tasks import Suite, Task

_COLORS = {"combat": "#d1495b", "navigation": "#00798c", "game-specific": "#edae49"}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sensible at 0 and n, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r.get("success") is not None]
    k, n = sum(bool(r["success"]) for r in scored), len(scored)
    lo, hi = wilson(k, n)
    return {"successes": k, "episodes": n, "rate": k / n if n else None, "ci95": [round(lo, 3), round(hi, 3)]}


def summarize(suite: Suite, results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Rates per task, category, view and game, and over all the tasks that ran; `subset` says whether those are
    fewer than the suite's `suite_tasks` (then the pooled rate is not the suite's result)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_task[r["task"]].append(r)
    tasks = {t.id: t for t in suite.tasks if t.id in by_task}
    groups: dict[str, dict[str, list[dict]]] = {"category": defaultdict(list), "view": defaultdict(list),
                                                "game": defaultdict(list)}
    per_task = {}
    for tid, task in tasks.items():
        rows = by_task[tid]
        played = [r for r in rows if r.get("success") is not None]
        steps = _mean([r["steps"] for r in played])
        reasons = Counter(str(r.get("reason")) for r in rows)
        per_task[tid] = {**_rate(rows), "game": task.game, "category": task.category, "view": task.game_view,
                         "description": task.description, "time_limit": task.time_limit,
                         # most frequent first: how the episodes ended is what explains a low rate
                         "reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                         "mean_steps": round(steps, 1) if steps is not None else None,
                         "mean_seconds": round(steps / task.fps, 1) if steps is not None else None,
                         "unavailable": next((r["reason"] for r in rows if r.get("success") is None), None)}
        for key, value in (("category", task.category), ("view", task.game_view), ("game", task.game)):
            groups[key][value].extend(rows)
    all_rows = [r for rows in by_task.values() for r in rows if r["task"] in tasks]
    return {
        "suite": suite.name,
        "suite_tasks": len(suite.tasks),
        "subset": len(per_task) < len(suite.tasks),
        "episodes_per_task": max((len(by_task[t]) for t in tasks), default=0),
        "seeding": _seeding(tasks, all_rows),
        "tasks": per_task,
        **{f"by_{key}": {v: _rate(rows) for v, rows in sorted(g.items())} for key, g in groups.items()},
        "overall": _rate(all_rows),
        "task_mean": _mean([p["rate"] for p in per_task.values() if p["rate"] is not None]),
    }


def _seeding(tasks: dict[str, Task], rows: list[dict[str, Any]]) -> str:
    """How the episodes were seeded, from the rows: `task.seed + episode` when every row's game seed says so,
    `recorded` when rows carry seeds of another pattern, `episode` when they carry none (older results)."""
    seeded = [r for r in rows if isinstance(r.get("seed"), int)]
    if not seeded:
        return "episode"
    if len(seeded) == len(rows) and all(r["seed"] == tasks[r["task"]].seed + r["episode"] for r in rows):
        return "task.seed + episode"
    return "recorded"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(entry: dict[str, Any]) -> str:
    if entry["rate"] is None:
        return "n/a"
    lo, hi = entry["ci95"]
    return f"{entry['rate']:.0%} [{lo:.0%}, {hi:.0%}] (n={entry['episodes']})"


def scope(summary: dict[str, Any], code: str = "`") -> str:
    """`suite standard` or `suite standard (subset: 3 of 40 tasks)`: what a result is a result of."""
    text = f"suite {code}{summary.get('suite', '?')}{code}"
    if summary.get("subset"):
        text += f" (subset: {len(summary['tasks'])} of {summary['suite_tasks']} tasks)"
    return text


_SEEDING = {
    "task.seed + episode": "Episode *e* of a task starts the game from seed `task.seed + e` (the task's own "
                           "seed plus the episode number) and seeds the agent with *e*.",
    "recorded": "Each episode's game seed is recorded in results.jsonl (`seed`).",
    "episode": "Episodes of a task are numbered from 0; the episode number seeds the agent.",
}


def markdown(summary: dict[str, Any], policy: str) -> str:
    identity = summary.get("policy_identity")
    named = f"`{policy}`" + (f" ({identity})" if identity and identity != policy else "")
    n = len(summary["tasks"])
    task_mean = f"{summary['task_mean']:.1%}" if summary["task_mean"] is not None else "n/a"
    if summary.get("subset"):  # a subset's pooled rate is not the suite's result: it is named by what ran
        these = "this task" if n == 1 else f"these {n} tasks"
        headline = f"**Success over {these}: {_fmt(summary['overall'])}**"
        headline += "" if n == 1 else f"; mean of their task rates: {task_mean}"
    else:
        headline = f"**Overall success: {_fmt(summary['overall'])}**; mean over tasks: {task_mean}"
    per = summary.get("episodes_per_task")
    lines = [f"# Benchmark: {scope(summary)}, policy {named}", "", headline, "",
             (f"{per} episode{'s' if per != 1 else ''} per task. " if per else "")
             + _SEEDING.get(summary.get("seeding", "episode"), ""), "",
             "*success*: rate with its 95% Wilson interval and the number of scored episodes; *limit*: game "
             "time allowed; *ended by*: how many episodes ended how (success; failure: the task's failure "
             "condition; timeout: the limit; terminated or truncated: the game itself ended the episode); "
             "*video*: episode 0, with what was pressed.", "",
             "| task | description | game | category | view | limit | success | ended by | mean steps | video |",
             "| --- | --- | --- | --- | --- | ---: | --- | --- | ---: | --- |"]
    for tid, e in summary["tasks"].items():
        value = _fmt(e) if e["rate"] is not None else f"n/a ({e['unavailable']})"
        limit = f"{e['time_limit']:g} s" if e.get("time_limit") is not None else "-"
        ends = ", ".join(f"{k} {v}" for k, v in e.get("reasons", {}).items()) or "-"
        steps = "-"
        if e.get("mean_steps") is not None:
            steps = f"{e['mean_steps']:g}" + (f" ({e['mean_seconds']:g} s)" if e.get("mean_seconds") is not None else "")
        video = f"[mp4]({e['video']})" if e.get("video") else "-"
        lines.append(f"| {tid} | {e['description']} | {e['game']} | {e['category']} | {e['view']} | {limit} | "
                     f"{value} | {ends} | {steps} | {video} |")
    if summary.get("chart"):
        lines += ["", f"![success per task]({summary['chart']})"]
    for key in ("category", "view", "game"):
        groups = summary[f"by_{key}"]
        if n > 1 and len(groups) > 1:  # one group would only repeat the headline
            lines += ["", f"## By {key}", "", f"| {key} | success |", "| --- | --- |"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in groups.items()]
    return "\n".join(lines) + "\n"


def bar_chart(summaries: dict[str, dict[str, Any]], path: Path, title: str | None = None) -> dict[str, Any]:
    """One horizontal bar per task (and policy), with the 95% interval as a whisker, coloured by category.
    Returns the title and the legend's labels (only the categories drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(summaries)
    first = summaries[policies[0]]
    task_ids = list(first["tasks"])
    if title is None:
        who = ("policy " if len(policies) == 1 else "policies ") + ", ".join(policies)
        title = f"{scope(first, code='')}, {who}" if "suite" in first else who
        if len(policies) > 1:
            title += " (darkest first)"
    height = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(9, max(2.4, 0.32 * len(task_ids) * max(1, len(policies) * 0.7) + 1.4)))
    present: set[str] = set()
    for j, policy in enumerate(policies):
        tasks = summaries[policy]["tasks"]
        for i, tid in enumerate(task_ids):
            e = tasks.get(tid)
            y = i + (j - (len(policies) - 1) / 2) * height
            if e is None or e["rate"] is None:
                if e is not None and len(policies) == 1:
                    ax.text(0.01, y, "n/a", va="center", fontsize=7, color="grey")
                continue
            lo, hi = e["ci95"]
            shade = 1.0 - 0.7 * j / max(1, len(policies) - 1)  # any number of policies stays within (0, 1]
            ax.barh(y, e["rate"], height=height * 0.9, color=_COLORS[e["category"]], alpha=shade)
            ax.plot([lo, hi], [y, y], color="black", linewidth=1)
            # the rate as a dot too: a 0% bar has no width
            ax.plot([e["rate"]], [y], "o", color=_COLORS[e["category"]], markeredgecolor="black", markersize=4,
                    alpha=shade, clip_on=False)
            present.add(e["category"])
            if len(policies) == 1:  # the value beside its whisker, or inside the bar when the whisker nears 1
                label = f"{e['rate']:.0%} (n={e['episodes']})"
                if hi <= 0.8:
                    ax.text(hi + 0.015, y, label, va="center", fontsize=7)
                else:
                    inside = lo > 0.2  # on the bar, left of the whisker
                    ax.text(lo - 0.015 if inside else 0.01, y, label, va="center", ha="right" if inside else "left",
                            fontsize=7,
                            color="white" if inside and e["category"] != "game-specific" else "black")
    ax.set_yticks(range(len(task_ids)))
    ax.set_yticklabels(task_ids, fontsize=8)
    ax.set_ylim(len(task_ids) - 0.5, -0.5)  # first task on top, and room for one bar
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate (95% interval)")
    ax.set_title(title, fontsize=9)
    labels = [c for c in _COLORS if c in present]
    if labels:  # beside the axes, never over a bar
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=_COLORS[c]) for c in labels], labels, title="category",
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8, frameon=False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return {"title": title, "legend": labels}


def write_report(out: Path, suite: Suite, results: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    summary = summarize(suite, results)
    summary["policy"] = policy
    # what the episodes were keyed by (azote.bench.runner.job_keys): a checkpoint's hash, the suite version
    keys = {json.dumps({k: r["key"][k] for k in ("policy", "suite")}) for r in results if isinstance(r.get("key"), dict)}
    if len(keys) == 1:
        summary.update({f"{k}_identity": v for k, v in json.loads(keys.pop()).items()})
    for tid, entry in summary["tasks"].items():  # links relative to report.md, to the videos that exist
        video = Path("videos") / f"{tid}.mp4"
        entry["video"] = video.as_posix() if (out / video).is_file() else None
    summary["chart"] = "success.png"
    for name, text in (("report.json", json.dumps(summary, indent=1)), ("report.md", markdown(summary, policy))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    bar_chart({policy: summary}, out / "success.png")
    return summary
