"""Benchmark reports: success rates with 95% Wilson intervals per task, category, view and game, as markdown,
JSON and a bar chart."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from azote.bench.tasks import Suite

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
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_task[r["task"]].append(r)
    tasks = {t.id: t for t in suite.tasks if t.id in by_task}
    groups: dict[str, dict[str, list[dict]]] = {"category": defaultdict(list), "view": defaultdict(list),
                                                "game": defaultdict(list)}
    per_task = {}
    for tid, task in tasks.items():
        rows = by_task[tid]
        per_task[tid] = {**_rate(rows), "game": task.game, "category": task.category, "view": task.game_view,
                         "description": task.description,
                         "unavailable": next((r["reason"] for r in rows if r.get("success") is None), None)}
        for key, value in (("category", task.category), ("view", task.game_view), ("game", task.game)):
            groups[key][value].extend(rows)
    all_rows = [r for rows in by_task.values() for r in rows if r["task"] in tasks]
    return {
        "suite": suite.name,
        "tasks": per_task,
        **{f"by_{key}": {v: _rate(rows) for v, rows in sorted(g.items())} for key, g in groups.items()},
        "overall": _rate(all_rows),
        "task_mean": _mean([p["rate"] for p in per_task.values() if p["rate"] is not None]),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(entry: dict[str, Any]) -> str:
    if entry["rate"] is None:
        return "n/a"
    lo, hi = entry["ci95"]
    return f"{entry['rate']:.0%} [{lo:.0%}, {hi:.0%}] (n={entry['episodes']})"


def markdown(summary: dict[str, Any], policy: str) -> str:
    identity = summary.get("policy_identity")
    named = f"`{policy}`" + (f" ({identity})" if identity and identity != policy else "")
    lines = [f"# Benchmark: suite `{summary['suite']}`, policy {named}", "",
             f"Overall success: {_fmt(summary['overall'])}; mean over tasks: "
             + (f"{summary['task_mean']:.1%}" if summary["task_mean"] is not None else "n/a"), "",
             "Success rate with its 95% Wilson interval and the number of scored episodes.", "",
             "| task | game | category | view | success |", "| --- | --- | --- | --- | --- |"]
    for tid, e in summary["tasks"].items():
        value = _fmt(e) if e["rate"] is not None else f"n/a ({e['unavailable']})"
        lines.append(f"| {tid} | {e['game']} | {e['category']} | {e['view']} | {value} |")
    for key in ("category", "view", "game"):
        lines += ["", f"| {key} | success |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in summary[f"by_{key}"].items()]
    return "\n".join(lines) + "\n"


def bar_chart(summaries: dict[str, dict[str, Any]], path: Path) -> None:
    """One horizontal bar per task (and policy), with the 95% interval as a whisker, coloured by category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(summaries)
    first = summaries[policies[0]]
    task_ids = list(first["tasks"])
    height = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(task_ids) * max(1, len(policies) * 0.7) + 1.2))
    for j, policy in enumerate(policies):
        tasks = summaries[policy]["tasks"]
        for i, tid in enumerate(task_ids):
            e = tasks.get(tid)
            if e is None or e["rate"] is None:
                continue
            y = i + (j - (len(policies) - 1) / 2) * height
            lo, hi = e["ci95"]
            shade = 1.0 - 0.7 * j / max(1, len(policies) - 1)  # any number of policies stays within (0, 1]
            ax.barh(y, e["rate"], height=height * 0.9, color=_COLORS[e["category"]], alpha=shade)
            ax.plot([lo, hi], [y, y], color="black", linewidth=1)
    ax.set_yticks(range(len(task_ids)))
    ax.set_yticklabels(task_ids, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate (95% interval)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _COLORS.values()]
    if len(policies) > 1:
        ax.set_title("policies, darkest first: " + ", ".join(policies), fontsize=9)
    ax.legend(handles, list(_COLORS), loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(out: Path, suite: Suite, results: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    summary = summarize(suite, results)
    summary["policy"] = policy
    # what the episodes were keyed by (azote.bench.runner.job_keys): a checkpoint's hash, the suite version
    keys = {json.dumps({k: r["key"][k] for k in ("policy", "suite")}) for r in results if isinstance(r.get("key"), dict)}
    if len(keys) == 1:
        summary.update({f"{k}_identity": v for k, v in json.loads(keys.pop()).items()})
    for name, text in (("report.json", json.dumps(summary, indent=1)), ("report.md", markdown(summary, policy))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    bar_chart({policy: summary}, out / "success.png")
    return summary
