"""Running a hostile input contained: each load or command runs in a forked child under an address-space cap,
watched by the test, so a regression that hangs or allocates is killed and reported and never takes the test
run down with it. Used by every hostile-file suite (tests/policy/test_hostile_files.py, tests/test_hostile_inputs.py).

A refusal is judged by `assert_refused` (one `error:` line naming the file and the reason, a non-zero exit, no
traceback, within SECONDS and MEMORY) or, for commands that go on past a bad file and report it,
`assert_reported` (the file named on one line with the reason, no traceback, in the same bounds).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any, Callable

SECONDS = 5.0
MEMORY = 500 << 20


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def contained(fn: Callable[[], Any], timeout: float = 30.0, cap: int = 1 << 30) -> dict[str, Any]:
    """Runs `fn()` in a forked child whose address space may grow by at most `cap` bytes; returns what it
    returned or raised, its seconds and its peak RSS growth, or `killed` when it ran past `timeout`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(read_end)
            import torch

            torch.set_num_threads(1)
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = _status_bytes("VmSize") + cap
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
            try:  # the peak RSS starts again from the current one (Linux 4.0+); else it starts at the fork
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            rss = _status_bytes("VmRSS")
            start = time.monotonic()
            try:
                out: dict[str, Any] = {"value": fn()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = {"raised": type(exc).__name__, "message": str(exc)[:4000]}
            out["seconds"] = time.monotonic() - start
            out["rss_growth"] = _status_bytes("VmHWM") - rss
            data = json.dumps(out, default=repr).encode()[:60_000]
            os.write(write_end, data)
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        return {"killed": True}
    with os.fdopen(read_end, "rb") as f:
        raw = f.read()
    return json.loads(raw) if raw else {"killed": True, "died": True}


def cli(args: list[str]) -> Callable[[], dict[str, Any]]:
    """`azote ARGS` in this process (run in the child by `contained`): exit code, output, and the exception that
    escaped the command, if any (a traceback)."""
    def run() -> dict[str, Any]:
        from typer.testing import CliRunner

        from azote.cli.main import app

        result = CliRunner().invoke(app, args)
        crashed = None if result.exception is None or isinstance(result.exception, SystemExit) else result.exception
        return {"exit_code": result.exit_code, "output": result.output,
                "crashed": None if crashed is None else f"{type(crashed).__name__}: {crashed}"[:300]}
    return run


def assert_refused(outcome: dict[str, Any], *named: str) -> str:
    """A CLI run that refused in time and memory, in one line naming each of `named`; returns the line."""
    result = _in_bounds(outcome)
    assert result["exit_code"] != 0, result["output"]
    lines = result["output"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result["output"]
    for text in named:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def assert_raises_in_bounds(outcome: dict[str, Any], error: str, *named: str) -> str:
    _in_limits(outcome)
    assert outcome.get("raised") == error, outcome
    message = outcome["message"]
    assert "\n" not in message
    for text in named:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def _in_limits(outcome: dict[str, Any]) -> None:
    assert not outcome.get("killed"), "ran past 30 s (killed)"
    assert outcome["seconds"] < SECONDS, f"took {outcome['seconds']:.1f} s"
    assert outcome["rss_growth"] < MEMORY, f"grew by {outcome['rss_growth'] >> 20} MB"


def _in_bounds(outcome: dict[str, Any]) -> dict[str, Any]:
    """A CLI run's result, once it ended in time and memory without raising or printing a traceback."""
    _in_limits(outcome)
    assert "raised" not in outcome, f"the command raised {outcome.get('raised')}: {outcome.get('message')}"
    result = outcome["value"]
    assert result["crashed"] is None, f"traceback: {result['crashed']}"
    assert "Traceback" not in result["output"], result["output"]
    return result


def assert_reported(outcome: dict[str, Any], prefix: str, *named: str) -> str:
    """A CLI run that, in time and memory and without a traceback, exited non-zero with a line starting with
    `prefix` that names each of `named` (a command may say it again in its closing summary); returns it."""
    result = _in_bounds(outcome)
    assert result["exit_code"] != 0, result["output"]
    lines = [line for line in result["output"].splitlines() if line.startswith(prefix)]
    hits = [line for line in lines if all(text in line for text in named)]
    assert hits, f"no {prefix!r} line naming {named}: {result['output'][-2000:]}"
    return hits[0]
