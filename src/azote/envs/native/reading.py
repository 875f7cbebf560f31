"""What the readers of native games' state share: the game's process by its private home, one state per run of the
game (a reset starts a new process, and the state starts afresh with it), the lines a growing log file gained, and
reads of the game's memory."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable, Generic, Protocol, TypeVar


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def game_process(home: Path, comm: str) -> int | None:
    """The process of the game named `comm` that runs with the private home `home` (AZOTE_HOME in its
    environment, which the session sets)."""
    key = b"\0AZOTE_HOME=" + os.fsencode(str(home)) + b"\0"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", "rb") as f:
                if f.read().strip() != comm.encode():
                    continue
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if key in b"\0" + f.read():
                    return int(entry.name)
        except OSError:  # gone meanwhile, or not ours
            continue
    return None


class LogTail:
    """The complete lines a growing file gained since the last call; a line still being written waits for the next."""

    def __init__(self) -> None:
        self.offset = 0  # bytes of the file read
        self.partial = b""

    def new_lines(self, path: Path) -> list[bytes]:
        try:
            with open(path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:  # not written yet
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return lines


class _HasPid(Protocol):
    pid: int


State = TypeVar("State", bound=_HasPid)


class Runs(Generic[State]):
    """One state per private home, made by `new(pid)` when the game's process there is not the state's (pid 0:
    none found yet); `close(state)` releases what a dropped state holds. States of homes that are gone (closed
    environments) are dropped at the next call. The game's process is looked up (`pid_of`, which may scan /proc)
    only while none is known or the known one has ended, not at every step."""

    def __init__(self, pid_of: Callable[[Path], int | None], new: Callable[[int], State],
                 close: Callable[[State], None] = lambda state: None) -> None:
        self.pid_of, self.new, self.close = pid_of, new, close
        self._states: dict[Path, State] = {}

    def get(self, home: Path) -> State:
        for gone in [h for h in self._states if h != home and not h.exists()]:
            self._drop(gone)
        state = self._states.get(home)
        if state is not None and state.pid and _alive(state.pid):
            return state
        pid = self.pid_of(home) or 0
        if state is None or state.pid != pid:
            self._drop(home)
            state = self._states[home] = self.new(pid)
        return state

    def _drop(self, home: Path) -> None:
        state = self._states.pop(home, None)
        if state is not None:
            self.close(state)


class ProcessMemory:
    """Reads another process's memory through /proc/<pid>/mem (a game run by this user: no ptrace needed)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self, address: int, size: int) -> bytes:
        if not 0x10000 <= address < 1 << 47:  # not a user-space address: not a pointer
            raise OSError(f"bad address {address:#x}")
        data = os.pread(self.fd, size, address)
        if len(data) != size:
            raise OSError(f"short read at {address:#x}")
        return data

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    def mapping(self, is_file: Callable[[str], bool]) -> tuple[int, str] | None:
        """(load address, path) of the first file the process maps whose path `is_file` accepts (its mapping at
        file offset 0), or None."""
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and int(parts[2], 16) == 0 and is_file(parts[5]):
                    return int(parts[0].split("-")[0], 16), parts[5]
        return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
