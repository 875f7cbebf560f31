"""Killed processes (issue 16): `azote record`, `label`, `train` and `bench` are killed with SIGKILL at seeded random
points of their work and run again with the same command line. The rerun must end with the output of a run that
was never interrupted (the files that define the result, compared by content), no process of the killed run may
be left (every pid of its process group, read from /proc), and no temporary file may be left behind.

Only the command's own process is killed (by its pid): its workers must go by themselves. Each command runs in its
own session, so every process it starts is found by the process group, whoever its parent is by then.

The kill points come from AZOTE_FAULT_SEED (default 16): a run killed at a point that shows a defect is
replayed with the same seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from azote.cli.main import app

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

SEED = int(os.environ.get("AZOTE_FAULT_SEED", "16"))
RUN_TIMEOUT = 120.0  # seconds a single command may take before the test ends it (by pid) and fails
GRACE = 3.0  # seconds the processes of a killed command have to go


# --- processes, read from /proc ---------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def group_members(pgid: int) -> dict[int, str]:
    """Live processes (not zombies) of a process group: pid -> start time (told apart from a reused pid)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] != "Z" and int(st[2]) == pgid:
                out[int(entry)] = st[19]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _end(members: dict[int, str]) -> None:
    """Ends what a failed test left, each process by its own pid."""
    for pid, started in members.items():
        st = _stat(pid)
        if st is not None and st[19] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reap(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(group_members(proc.pid))
        proc.wait()
        raise AssertionError(f"{proc.args!r} ran past {timeout:.0f} s") from None


def _gone_within(pgid: int, seconds: float) -> dict[int, str]:
    """Waits until no process of the group is left, at most `seconds`; returns those still there (pid -> cmdline),
    ended by their pids."""
    deadline = time.monotonic() + seconds
    left = group_members(pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = group_members(pgid)
    named = {pid: _cmdline(pid) for pid in left}
    _end(left)
    return named


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "azote.cli.main", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_to_end(args: list[str]) -> None:
    proc = subprocess.Popen(command(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=ENV)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        _end(group_members(proc.pid))
        proc.wait()
        raise AssertionError(f"{args!r} ran past {RUN_TIMEOUT:.0f} s") from None
    assert proc.returncode == 0, f"{args!r} exited {proc.returncode}:\n{output[-3000:]}"
    assert not _gone_within(proc.pid, GRACE), "processes of a finished command are still running"


def wrote_since(out: Path, since: float) -> bool:
    """Something under `out` was written at or after `since` (wall-clock seconds)."""
    try:
        return out.is_dir() and any(p.stat().st_mtime >= since for p in [out, *out.rglob("*")])
    except FileNotFoundError:  # renamed away while looked at: a write in progress
        return True


def run_killed(args: list[str], out: Path, rng: random.Random, window: float) -> dict[str, Any]:
    """Starts the command, waits until it has written something under `out` (its work has begun, past the
    imports), then a random time in [0, window) and kills the command's own process by its pid. Checks that
    every process of its group goes within GRACE s. Returns what happened (killed or finished first, after how
    long, how many processes there were)."""
    since = time.time() - 0.02  # file times may trail the clock by a tick
    proc = subprocess.Popen(command(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=ENV)
    t0, members = time.monotonic(), {}
    try:
        while not wrote_since(out, since):
            if proc.poll() is not None or time.monotonic() - t0 > RUN_TIMEOUT:
                break
            time.sleep(0.005)
        delay = rng.uniform(0.0, window)
        kill_at = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < kill_at:
            members.update(group_members(proc.pid))
            time.sleep(0.005)
        members.update(group_members(proc.pid))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        code = _reap(proc, 30)
        left = _gone_within(proc.pid, GRACE)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not left, f"{len(left)} processes of the killed command outlived it by {GRACE} s: {left}"
    return {"killed": code == -signal.SIGKILL, "code": code, "after": round(time.monotonic() - t0, 2),
            "delay": round(delay, 3), "processes": len(members)}


# --- what defines a result ----------------------------------------------------------------------------------------
# values that measure the run, not its result (wall times, rates, whether an earlier run had done the work)
VOLATILE = {"seconds", "wall_seconds", "frames_per_second", "seconds_locate", "seconds_adapt", "seconds_parse",
            "skipped", "rate", "sps", "samples_per_s", "time"}


def _plain(value: Any, root: str) -> Any:
    """`value` without measurements, the output directory's own path written <out>."""
    if isinstance(value, dict):
        return {k: _plain(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_plain(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<out>")
    return value


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(root: Path, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """relative path -> the content that defines the result: file bytes (videos, parquet, safetensors), JSON
    without measurements, results rows in any order, npz arrays, metrics without rates."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") or rel.endswith(s) for s in skip):
            continue
        if path.suffix == ".json":
            out[rel] = _plain(json.loads(path.read_text()), str(root))
        elif path.suffix == ".jsonl":
            rows = [_plain(json.loads(line), str(root)) for line in path.read_text().splitlines()]
            out[rel] = sorted(json.dumps(r, sort_keys=True) for r in rows)
        elif path.suffix == ".npz":
            with np.load(path) as z:
                out[rel] = {k: _digest(z[k].tobytes()) + str(z[k].dtype) for k in sorted(z.files)}
        elif path.name == "metrics.csv":
            out[rel] = [{k: v for k, v in r.items() if k not in VOLATILE}
                        for r in csv.DictReader(io.StringIO(path.read_text()))]
        else:
            out[rel] = _digest(path.read_bytes())
    return out


def assert_same(reference: dict[str, Any], got: dict[str, Any], what: str) -> None:
    missing, extra = sorted(set(reference) - set(got)), sorted(set(got) - set(reference))
    assert not missing and not extra, f"{what}: files missing {missing}, extra {extra}"
    differ = [k for k in reference if reference[k] != got[k]]
    assert not differ, f"{what}: differs from an uninterrupted run in {differ}: " + \
        "; ".join(f"{k}: {reference[k]!r:.300} != {got[k]!r:.300}" for k in differ[:3])


def temporaries(root: Path) -> list[str]:
    """Files and directories a finished run must not leave: hidden names (staging, .tmp, .old), *.partial, *.tmp."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.name.startswith(".") or p.name.endswith((".partial", ".tmp")) or ".tmp." in p.name)


def kill_and_rerun(args: Callable[[Path], list[str]], out: Path, reference: dict[str, Any], kills: int,
                   window: float, skip: tuple[str, ...] = (),
                   rng: random.Random | None = None) -> list[dict[str, Any]]:
    """`kills` runs killed at random points one after the other into `out`, then one run to the end; its output
    must be the reference's, without temporary files. Returns what each kill did."""
    rng = rng or random.Random(SEED)
    events = []
    for _ in range(kills):
        events.append(run_killed(args(out), out, rng, window))
    assert any(e["killed"] for e in events), f"every run finished before its kill: {events}"
    run_to_end(args(out))
    assert_same(reference, fingerprint(out, skip), f"after kills {events}")
    assert not temporaries(out), f"temporary files left after kills {events}: {temporaries(out)}"
    return events


def in_process(args: list[str]) -> None:
    """The uninterrupted run, in this process (the command's own code without a second interpreter's start-up)."""
    import torch

    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0 and result.exception is None, result.output[-3000:]


# --- the commands ---------------------------------------------------------------------------------------------
def test_record_killed_and_rerun(tmp_path):
    def args(out: Path, workers: int = 2) -> list[str]:
        return ["record", "--game", "atari/Pong", "--policy", "random", "--episodes", "4", "--max-steps", "90",
                "--workers", str(workers), "--out", str(out)]

    in_process(args(tmp_path / "reference", workers=1))
    reference = fingerprint(tmp_path / "reference")
    assert len([k for k in reference if k.endswith(".mp4")]) == 4
    events = kill_and_rerun(args, tmp_path / "killed", reference, kills=2, window=1.5)
    assert max(e["processes"] for e in events) >= 3  # the command and its two workers were there to be killed


def test_bench_killed_and_rerun(tmp_path):
    suite = tmp_path / "suite.yaml"
    task = {"game": "atari/Pong", "category": "combat", "description": "d", "time_limit": 1.0}
    suite.write_text(yaml.safe_dump({"name": "faults", "tasks": [
        {**task, "id": "pong-point", "success": "ram[14] >= 1"},
        {**task, "id": "pong-survive", "mode": "survive", "failure": "ram[13] >= 1"}]}))

    def args(out: Path, workers: int = 2) -> list[str]:
        return ["bench", "--policy", "random", "--suite", str(suite), "--episodes", "4", "--out", str(out),
                "--workers", str(workers)]

    in_process(args(tmp_path / "reference", workers=1))
    reference = fingerprint(tmp_path / "reference", skip=("success.png",))
    assert len(reference["results.jsonl"]) == 8
    kill_and_rerun(args, tmp_path / "killed", reference, kills=2, window=2.0,
                   skip=("success.png",))


def test_train_killed_and_rerun(tmp_path):
    from test_training import micro_config, synthetic_video

    data = tmp_path / "data"
    synthetic_video(data, "dark", 60, frames=60)
    synthetic_video(data, "bright", 160, frames=60)
    model = micro_config(tmp_path / "micro.json")

    def args(out: Path) -> list[str]:
        return ["train", "--data", str(data), "--out", str(out), "--model", str(model), "--steps", "30",
                "--batch-size", "4", "--ckpt-every", "5", "--log-every", "2", "--warmup-steps", "3",
                "--min-action-density", "0", "--num-workers", "1", "--threads", "1", "--seed", "7", "--resume"]

    in_process(args(tmp_path / "reference"))
    skip = ("tb", "loss.png", "trainer.pt")
    reference = fingerprint(tmp_path / "reference", skip)
    assert "final/model.safetensors" in reference and len(reference["metrics.csv"]) == 15
    kill_and_rerun(args, tmp_path / "killed", reference, kills=2,
                   window=2.5, skip=skip)


def test_label_killed_and_rerun(tmp_path):
    from azote.labeling.skingen import shipped_presets
    from test_labeling import _make_video

    videos = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for i, v in enumerate(videos):
        _make_video(v, shipped_presets()["retro-snes-filled-dark"], frames=24, seed=i)

    def args(out: Path, workers: int = 2) -> list[str]:
        return ["label", *map(str, videos), "--out", str(out), "--workers", str(workers), "--min-density", "0"]

    in_process(args(tmp_path / "reference", workers=1))
    reference = fingerprint(tmp_path / "reference")
    assert len([k for k in reference if k.endswith("actions_raw.parquet")]) == 3
    kill_and_rerun(args, tmp_path / "killed", reference, kills=1, window=3.0)
