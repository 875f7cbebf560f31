"""Worker processes that live no longer than their parent.

A pool's workers outlive a parent killed with SIGKILL (they wait on their queue, or finish the job in hand, with
parent PID 1), and a rerun then races them on the same temporary files. Every pool Azote starts comes from
`worker_pool`, whose workers ask the kernel to kill them when their parent dies (Linux `PR_SET_PDEATHSIG`) and
leave at once if it already has. Imports nothing of Azote.
"""

from __future__ import annotations

import ctypes
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

PR_SET_PDEATHSIG = 1


def tie_to_parent(parent: int | None = None) -> None:
    """Called in a child: it is killed (SIGKILL) when its parent exits, however the parent ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to tie to
        return
    if parent is not None and os.getppid() != parent:  # the parent died before the tie was made
        os._exit(1)


def _start(parent: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    tie_to_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                context: str = "spawn") -> ProcessPoolExecutor:
    """A process pool whose workers die with this process."""
    import multiprocessing as mp

    return ProcessPoolExecutor(workers, mp_context=mp.get_context(context), initializer=_start,
                               initargs=(os.getpid(), initializer, initargs))


def run_jobs(job: Callable[[tuple], str], todo: Sequence[tuple], workers: int = 1,
             progress: Callable[[str], None] | None = None) -> None:
    """Runs file-writing jobs (each returns the path it wrote) here or in a pool of `workers` processes, telling
    `progress` the name of each file as it lands."""
    if workers <= 1:
        for args in todo:
            name = job(args)
            if progress:
                progress(Path(name).name)
        return
    with worker_pool(workers) as pool:
        for name in pool.map(job, todo):
            if progress:
                progress(Path(name).name)
