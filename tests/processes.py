"""What the tests that start games share: process checks (their leak tests) and the frames of a run."""

from __future__ import annotations

import hashlib
import os
import time

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
