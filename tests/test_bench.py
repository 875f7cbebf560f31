"""The benchmark: suites validate, conditions are safe, every task's recorded solution succeeds when replayed,
the runner resumes and reports."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from azote.bench import Condition, TaskError, load_suite, run_suite
from azote.bench.report import bar_chart, summarize, wilson
from azote.bench.solutions import load_solution, replay, solution_path
from azote.envs import GameUnavailable

SUITE = load_suite("standard")


def test_standard_suite_is_broad_and_balanced():
    tasks = SUITE.tasks
    assert len(tasks) >= 36
    kinds = {t.game.split("/")[0] if t.game.startswith("doom/") else t.game for t in tasks}
    assert len(kinds) >= 12  # ViZDoom scenarios and maps count once
    three_d = {t.game.split("/")[0] if t.game.startswith("doom/") else t.game for t in tasks if t.game_view == "3d"}
    assert len(three_d) >= 4
    counts = {c: sum(t.category == c for t in tasks) for c in ("combat", "navigation", "game-specific")}
    assert min(counts.values()) >= len(tasks) // 4
    assert set(SUITE.heldout) <= {t.game for t in tasks}


@pytest.mark.parametrize("task", SUITE.tasks, ids=lambda t: t.id)
def test_every_task_has_a_solution_that_succeeds(task):
    assert solution_path(task).is_file(), f"no recorded solution for {task.id} (azote bench solve)"
    try:
        result = replay(task, load_solution(task))
    except GameUnavailable as exc:  # a native game this machine lacks (CI installs them: scripts/native-deps.sh)
        pytest.skip(str(exc))
    assert result["success"], result
    assert result["steps"] <= task.max_steps


def test_conditions_are_parsed_safely():
    c = Condition("x >= 1200 and not life_lost", {"x", "life_lost"})
    assert c.evaluate({"x": 1300, "life_lost": False}, {})
    assert not c.evaluate({"x": 1300, "life_lost": True}, {})
    d = Condition("kills - start.kills >= 2 or ram[3] == 7", {"kills", "ram"})
    assert d.evaluate({"kills": 5, "ram": [0, 0, 0, 1]}, {"kills": 3})
    assert d.evaluate({"kills": 0, "ram": [0, 0, 0, 7]}, {"kills": 3})
    # RAM arrives as uint8: differences must not wrap around (0 - 1 is -1, not 255)
    ram = np.zeros(128, np.uint8)
    ram[13] = 1
    assert not Condition("ram[14] - ram[13] >= 2", {"ram"}).evaluate({"ram": ram}, {})
    for bad in ("__import__('os').system('true')", "x.__class__", "open('f')", "'text' == x", "lambda: 1"):
        with pytest.raises(ValueError):
            Condition(bad, {"x"})
    with pytest.raises(ValueError, match="unknown variables"):
        Condition("lifes < 3", {"lives"})


def write_suite(path: Path, tasks: list) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "tasks": tasks}))
    return path


GOOD = {"id": "pong-point", "game": "atari/Pong", "category": "combat", "description": "d", "time_limit": 2,
        "success": "ram[14] >= 1"}


@pytest.mark.parametrize("change, message", [
    ({"game": "atari/Pongg"}, "unknown game"),
    ({"category": "racing"}, "category"),
    ({"success": "ram[14] >="}, "not an expression"),
    ({"success": "points >= 1"}, "unknown variables"),
    ({"time_limit": -1}, "time_limit"),
    ({"success": None}, "needs a success condition"),
])
def test_a_corrupt_suite_names_the_task(tmp_path, change, message):
    bad = {**GOOD, "id": "broken-task", **change}
    path = write_suite(tmp_path / "s.yaml", [GOOD, bad])
    with pytest.raises(TaskError, match=message) as err:
        load_suite(path)
    assert "broken-task" in str(err.value) and str(path) in str(err.value)
    (tmp_path / "y.yaml").write_text("tasks: [unclosed")
    with pytest.raises(TaskError, match="not valid YAML"):
        load_suite(tmp_path / "y.yaml")


def test_runner_resumes_and_reports(tmp_path):
    path = write_suite(tmp_path / "s.yaml", [GOOD, {**GOOD, "id": "pong-survive", "mode": "survive",
                                                    "success": None, "failure": "ram[13] >= 1"}])
    suite = load_suite(path)
    out = tmp_path / "run"
    first = run_suite(suite, "random", 2, out, workers=1, videos=True, tasks=["pong-point"])
    assert len(first) == 2 and (out / "videos" / "pong-point.mp4").is_file()
    again = run_suite(suite, "random", 2, out, workers=2, videos=False)
    assert {(r["task"], r["episode"]) for r in again} == {("pong-survive", 0), ("pong-survive", 1)}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 4
    survive = [r for r in results if r["task"] == "pong-survive"]
    assert all(r["success"] == (r["reason"] == "success") for r in survive)
    summary = summarize(suite, results)
    assert summary["overall"]["episodes"] == 4 and set(summary["by_category"]) == {"combat"}
    # the report says per task what it asks, its limit, how its episodes ended, and links the video there is
    from azote.bench.report import markdown, write_report

    summary = write_report(out, suite, results, "random")
    point = summary["tasks"]["pong-point"]
    assert point["time_limit"] == 2 and sum(point["reasons"].values()) == 2
    assert point["video"] == "videos/pong-point.mp4" and summary["tasks"]["pong-survive"]["video"] is None
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| pong-point |"))
    ends = ", ".join(f"{k} {v}" for k, v in point["reasons"].items())
    assert "| d |" in row and "| 2 s |" in row and f"| {ends} |" in row and "[mp4](videos/pong-point.mp4)" in row
    assert "Overall success" in md and "subset" not in md.split("\n")[0]
    assert json.loads((out / "report.json").read_text())["tasks"]["pong-point"]["reasons"] == point["reasons"]
    # a run of some of the suite's tasks is named a subset, and its pooled rate is not the suite's "overall"
    part = summarize(suite, [r for r in results if r["task"] == "pong-point"])
    assert part["subset"] and part["suite_tasks"] == 2
    text = markdown(part, "random")
    assert "suite `t` (subset: 1 of 2 tasks)" in text.splitlines()[0] and "Overall" not in text
    assert "Success over this task" in text
    # how episodes are seeded is stated from the rows: by seed when they carry it, else by number
    assert "`task.seed + e`" in markdown(summarize(suite, [{**r, "seed": r["episode"]} for r in results]), "random")
    assert "numbered" in markdown(summarize(suite, [{k: v for k, v in r.items() if k != "seed"}
                                                    for r in results]), "random")
    # the chart lists only the categories drawn, and says what it shows
    chart = bar_chart({"random": part}, tmp_path / "part.png")
    assert chart["legend"] == ["combat"] and "subset: 1 of 2 tasks" in chart["title"]
    # the video says which task it is and, held for a second at its end, how the episode ended
    from azote.dataset.video import read_frames
    from azote.dataset.visual import CAPTION_H

    frames = list(read_frames(out / "videos" / "pong-point.mp4"))
    ep0 = next(r for r in results if r["task"] == "pong-point" and r["episode"] == 0)
    fps = suite.task("pong-point").fps
    assert len(frames) == ep0["steps"] + round(fps) and len({f.shape for f in frames}) == 1
    first, last = frames[0][:CAPTION_H].astype(int), frames[-1][:CAPTION_H].astype(int)
    assert np.abs(first - last).mean() > 1  # another caption on the same strip
    spread = lambda strip: (strip.max(axis=2) - strip.min(axis=2)).max()  # noqa: E731
    assert spread(first) < 60 < spread(last)  # grey while it plays, green or red for the outcome
    assert np.abs(frames[-1].astype(int) - frames[-2].astype(int)).mean() < 2  # the last picture, held


def test_a_caption_keeps_the_frame_size():
    from azote.dataset.visual import CAPTION_H, caption

    frame = np.zeros((50, 80, 3), np.uint8)
    for text in ("", "x", "a very long caption that cannot fit in eighty pixels at any font size" * 3):
        out = caption(frame, text, ok=False)
        assert out.shape == (50 + CAPTION_H, 80, 3) and (out[CAPTION_H:] == frame).all()
    assert (caption(frame, "SUCCESS", ok=True)[:CAPTION_H] != caption(frame, "", ok=True)[:CAPTION_H]).any()


@pytest.mark.parametrize("option, value, unknown, hint", [
    ("--tasks", "pong-point,pong-pint", "pong-pint", "pong-point"),
    ("--games", "atari/pong", "atari/pong", "atari/Pong"),
    ("--games", "atari/Breakout", "atari/Breakout", None),  # a game Azote has, but not one of the suite's
])
def test_an_unknown_filter_fails_in_one_line(tmp_path, option, value, unknown, hint):
    from typer.testing import CliRunner

    from azote.cli.main import app

    path = write_suite(tmp_path / "s.yaml", [GOOD])
    cli = CliRunner().invoke(app, ["bench", "--suite", str(path), option, value, "--out", str(tmp_path / "run")])
    lines = [line for line in cli.output.splitlines() if line.strip()]
    assert cli.exit_code != 0 and len(lines) == 1 and "Traceback" not in cli.output, cli.output
    assert repr(unknown) in lines[0] and (hint is None or f"did you mean {hint}" in lines[0])
    assert not (tmp_path / "run").exists()


def test_wilson_interval():
    assert wilson(0, 10)[0] == 0.0 and 0.25 < wilson(0, 10)[1] < 0.35
    lo, hi = wilson(5, 10)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9


def test_the_success_chart_draws_any_number_of_policies(tmp_path):
    # the main job compares four policies and the experiment more; each gets its own shade of the category colour
    tasks = {"a": {"rate": 0.4, "ci95": [0.1, 0.8], "category": "combat"},
             "b": {"rate": 1.0, "ci95": [0.5, 1.0], "category": "navigation"}}
    bar_chart({f"policy-{i}": {"tasks": tasks} for i in range(6)}, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 1000


def test_results_are_keyed_by_policy_suite_version_task_and_seed(tmp_path):
    # issue 16 item 7: an expert run into a directory holding random episodes used to skip them as done and
    # report "policy expert" from the random episodes
    from typer.testing import CliRunner

    from azote.bench.runner import ResultsMismatch, job_keys, results_for
    from azote.cli.main import app

    short = {**GOOD, "time_limit": 0.2}
    path = write_suite(tmp_path / "s.yaml", [short])
    out = tmp_path / "run"
    run_suite(load_suite(path), "random", 1, out, videos=False)
    cli = CliRunner().invoke(app, ["bench", "--policy", "expert", "--suite", str(path), "--episodes", "1",
                                   "--out", str(out), "--workers", "1", "--no-videos"])
    assert cli.exit_code != 0 and not (out / "report.md").exists()
    lines = [line for line in cli.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "random" in lines[0] and "--out" in lines[0], cli.output
    assert "refused" in " ".join(CliRunner().invoke(app, ["bench", "--help"]).output.split())
    # the same policy resumes; another task definition, suite version or episode count is told apart
    assert run_suite(load_suite(path), "random", 1, out, videos=False) == []
    write_suite(path, [{**short, "time_limit": 0.3}])
    with pytest.raises(ResultsMismatch, match="another definition"):
        run_suite(load_suite(path), "random", 1, out, videos=False)
    path.write_text(yaml.safe_dump({"name": "t", "version": 2, "tasks": [short]}))
    with pytest.raises(ResultsMismatch, match="suite t@1, not t@2"):
        run_suite(load_suite(path), "random", 1, out, videos=False)
    write_suite(path, [short])
    assert len(run_suite(load_suite(path), "random", 2, out, videos=False)) == 1  # episode 1 (seed 1) is new
    keys = job_keys(load_suite(path), "random", 2)
    assert [r["key"]["seed"] for r in results_for(out, keys)] == [0, 1]
    # the progress bar knows its total before the first episode (here all done: resumed, nothing runs)
    cli = CliRunner().invoke(app, ["bench", "--suite", str(path), "--episodes", "2", "--out", str(out),
                                   "--workers", "1", "--no-videos"])
    assert cli.exit_code == 0 and "0/2" in cli.output, cli.output
    # a report is titled by what ran
    from azote.bench.report import write_report

    summary = write_report(out, load_suite(path), results_for(out, keys), "random")
    assert summary["policy_identity"] == "random" and summary["overall"]["episodes"] == 2


def test_a_checkpoint_is_identified_by_its_files_not_its_path(tmp_path):
    from azote.bench.runner import policy_identity

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, weights in ((a, b"w1"), (b, b"w1"), (c, b"w2")):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(weights)
        (d / "trainer.pt").write_bytes(d.name.encode())  # training state: not part of how it acts
    assert policy_identity(str(a)) == policy_identity(str(b)) != policy_identity(str(c))
    assert policy_identity(str(a)).startswith("checkpoint:")
    (a / "model.safetensors").write_bytes(b"w3")  # retrained in place: another policy
    assert policy_identity(str(a)) != policy_identity(str(b))


def test_a_task_whose_game_cannot_run_here_is_unavailable_not_failed(tmp_path, monkeypatch):
    import shutil as sh

    real = sh.which
    monkeypatch.setattr(sh, "which", lambda name, *a, **k: None if name == "supertux2" else real(name, *a, **k))
    task = {"id": "tux-coins", "game": "native/supertux", "category": "game-specific", "description": "d",
            "time_limit": 2, "success": "frame >= 1"}
    suite = load_suite(write_suite(tmp_path / "s.yaml", [task]))
    (result,) = run_suite(suite, "random", 1, tmp_path / "out", workers=1, videos=False)
    assert result["success"] is None and result["reason"].startswith("unavailable: supertux")
    summary = summarize(suite, [result])
    assert summary["tasks"]["tux-coins"]["rate"] is None and "not installed" in summary["tasks"]["tux-coins"]["unavailable"]


def test_policy_solutions_replays_each_recorded_solution_once(tmp_path):
    """`--policy solutions`: the suite's reference row, each task's recorded solution played from the start it was
    recorded at (one episode, whatever --episodes says); a task without one is not scored."""
    from typer.testing import CliRunner

    from azote.cli.main import app

    out = tmp_path / "run"
    cli = CliRunner().invoke(app, ["bench", "--policy", "solutions", "--tasks", "freeway-cross-once,pong-score-a-point",
                                   "--episodes", "3", "--out", str(out), "--workers", "1", "--no-videos"])
    assert cli.exit_code == 0, cli.output
    rows = {r["task"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {"freeway-cross-once", "pong-score-a-point"} and all(r["episode"] == 0 for r in rows.values())
    assert all(r["success"] for r in rows.values()), rows
    assert rows["freeway-cross-once"]["key"]["policy"].startswith("solutions:")
    assert "success 2/2" in cli.output
    path = write_suite(tmp_path / "s.yaml", [{**GOOD, "id": "no-such-solution"}])
    cli = CliRunner().invoke(app, ["bench", "--policy", "solutions", "--suite", str(path), "--out",
                                   str(tmp_path / "none"), "--no-videos"])
    row = json.loads((tmp_path / "none" / "results.jsonl").read_text())
    assert cli.exit_code == 0 and row["success"] is None and row["reason"] == "no recorded solution"


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb not installed (scripts/native-deps.sh)")
def test_a_game_that_fails_is_not_scored_and_the_benchmark_goes_on(tmp_path):
    """A native game that dies (here: one that never starts) makes its episode an error row, not scored, and the
    other tasks still run: one broken game does not end a benchmark."""
    import gymnasium as gym

    from azote.envs import registry
    from azote.envs.native import GAMES, InputProfile, NativeGame, register_native_game

    info = register_native_game(NativeGame(name="broken-test", command=("false",), profile=InputProfile(),
                                           start_timeout=10))
    try:
        path = write_suite(tmp_path / "s.yaml", [
            {"id": "broken", "game": "native/broken-test", "category": "navigation", "description": "d",
             "time_limit": 1, "success": "frame > 10"}, GOOD])
        rows = {r["task"]: r for r in run_suite(load_suite(path), "random", 1, tmp_path / "run", videos=True)}
        assert rows["broken"]["success"] is None and rows["broken"]["reason"].startswith("error: broken-test"), rows
        assert rows["pong-point"]["success"] is not None
    finally:
        GAMES.pop("broken-test", None)
        registry._GAMES.pop(info.id, None)
        registry._ENTRY_POINTS.pop(info.id, None)
        gym.registry.pop(info.gym_id, None)
