"""Worker processes die with their parent, even when the parent is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = """
import os, sys, time
from azote.lifetime import worker_pool

def job(_):
    time.sleep(60)

if __name__ == "__main__":
    with worker_pool(2, context=sys.argv[1]) as pool:
        futures = [pool.submit(job, i) for i in range(2)]
        time.sleep(1.5)
        print(" ".join(str(p) for p in pool._processes), flush=True)
        time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_pool_workers_die_with_a_killed_parent(tmp_path, context):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), context], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers), line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers), "workers outlived their parent"


WARDED = """
import subprocess, sys, tempfile, time
from azote.lifetime import warden
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
warden().guard_group(child.pid)
kept = tempfile.mkdtemp(prefix="azote-warden-test-")
warden().guard_path(kept)
released = tempfile.mkdtemp(prefix="azote-warden-test-")
warden().guard_path(released)
warden().release_path(released)
print(child.pid, kept, released, warden().pid, flush=True)
time.sleep(60)
"""


def test_the_warden_cleans_up_after_a_killed_owner():
    proc = subprocess.Popen([sys.executable, "-c", WARDED], stdout=subprocess.PIPE, text=True)
    try:
        child, kept, released, warden_pid = proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while (_alive(int(child)) or os.path.exists(kept) or _alive(int(warden_pid))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(child)) and not os.path.exists(kept) and not _alive(int(warden_pid))
    assert os.path.isdir(released)  # what was released is left alone
    os.rmdir(released)
