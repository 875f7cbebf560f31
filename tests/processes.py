"""What the tests that start games share: process checks (their leak tests), the frames of a run, and a loaded
machine."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np


def gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped by its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].startswith("Z")


def frame_digests(env, actions, pauses: np.random.Generator | None = None) -> list[str]:  # noqa: ANN001
    """The sha1 of every frame from reset through `actions`, with random wall-clock pauses between steps when
    `pauses` is given (which must change nothing)."""
    obs, _ = env.reset()
    digests = [hashlib.sha1(obs.tobytes()).hexdigest()]
    for a in actions:
        if pauses is not None:
            time.sleep(float(pauses.uniform(0, 0.05)))
        obs, *_ = env.step(a)
        digests.append(hashlib.sha1(obs.tobytes()).hexdigest())
    return digests


@contextlib.contextmanager
def busy_cpu(spinners: int, seconds: float = 120.0) -> Iterator[None]:
    """This process (and what it starts) and `spinners` processes that spin for at most `seconds`, all on one CPU
    while the block runs: the processes started in the block are preempted often, and the tests that other
    workers run beside it keep the other CPUs. Ended and unpinned when the block is left."""
    allowed = os.sched_getaffinity(0)
    cpu = {min(allowed)}
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = []
    try:
        os.sched_setaffinity(0, cpu)
        procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(spinners)]  # inherit the one CPU
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        os.sched_setaffinity(0, allowed)
