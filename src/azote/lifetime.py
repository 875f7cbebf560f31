"""Processes and files that live no longer than the process that made them.

A pool's workers outlive a parent killed with SIGKILL (they wait on their queue, or finish the job in hand, with
parent PID 1), and a rerun then races them on the same temporary files. Every pool Azote starts comes from
`worker_pool`, whose workers ask the kernel to kill them when their parent dies (Linux `PR_SET_PDEATHSIG`) and
leave at once if it already has.

Programs that are not Python workers (a game, its X server) and the files they use cannot be tied that way: the
game may start children of its own, and a file has no parent. The `warden` is a small process, in a session of its
own, that holds one end of a pipe from this process: when this process ends, however it ends, the pipe closes and
the warden kills the process groups and removes the paths still registered with it. Imports nothing of Azote.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
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


# The warden's program (run with `python -S -c`: no site, nothing of Azote): read registrations until the pipe
# closes, then end the groups (SIGTERM, a moment's grace, SIGKILL) and remove the paths.
_WARDEN = """
import json, os, shutil, signal, sys, time
groups, paths = set(), set()
for line in sys.stdin:
    try:
        op, arg = json.loads(line)
    except ValueError:
        continue
    {"group": groups.add, "path": paths.add}.get(op, lambda a: None)(arg)
    {"ungroup": groups.discard, "unpath": paths.discard}.get(op, lambda a: None)(arg)
def alive(g):
    try:
        os.killpg(g, 0)
        return True
    except OSError:
        return False
for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
    for g in [g for g in groups if alive(g)]:
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while any(alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
for p in paths:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            os.unlink(p)
        except OSError:
            pass
"""


class Warden:
    """Cleans up after this process when it ends, even by SIGKILL: process groups (`guard_group`, for programs
    started with `start_new_session=True`) are killed and paths (`guard_path`) removed. Release what you clean
    up yourself, so a number or name reused later is never touched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # its own session: a signal to this process's group (Ctrl-C, a group kill) does not reach it
        self._proc = subprocess.Popen([sys.executable, "-S", "-c", _WARDEN], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, op: str, arg: int | str) -> None:
        with self._lock:
            if self._proc.stdin is None or self._proc.stdin.closed:
                return
            try:  # one short line: a single write, never interleaved with another process's
                self._proc.stdin.write((json.dumps([op, arg]) + "\n").encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # the warden is gone: nothing left to tell it
                pass

    def guard_group(self, pgid: int) -> None:
        self._send("group", int(pgid))

    def release_group(self, pgid: int) -> None:
        self._send("ungroup", int(pgid))

    def guard_path(self, path: str | os.PathLike) -> None:
        self._send("path", os.fspath(path))

    def release_path(self, path: str | os.PathLike) -> None:
        self._send("unpath", os.fspath(path))


_warden: Warden | None = None
_warden_lock = threading.Lock()


def warden() -> Warden:
    """This process's warden (started on first use)."""
    global _warden
    with _warden_lock:
        if _warden is None:
            _warden = Warden()
        return _warden


_inherited: list[Warden] = []


def _forget_warden_in_child() -> None:
    # A forked child gets its own warden when it needs one. Its copy of the parent's pipe end is closed, so the
    # parent's warden sees the end of its parent alone; the copy is kept referenced, never collected.
    global _warden
    if _warden is not None and _warden._proc.stdin is not None:
        _warden._proc.stdin.close()
        _inherited.append(_warden)
    _warden = None


os.register_at_fork(after_in_child=_forget_warden_in_child)
