"""A libretro emulator core from stable-retro, driven directly: buttons in, frame and RAM out, exact save states.

Used by the `nes` family (Super Mario Bros on the FCEUmm core) and the `retro` family (stable-retro's
integrated games). Gamepad buttons map to each console's buttons by `CONSOLE_BUTTONS`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from azote.gamepad import BUTTON_INDEX, Gamepad, direction

# For each console: core button name -> gamepad buttons that press it (directions come from `direction`).
CONSOLE_BUTTONS: dict[str, dict[str, tuple[str, ...]]] = {
    "Nes": {"A": ("south", "east"), "B": ("west", "north"), "START": ("start",), "SELECT": ("back",)},
    "GameBoy": {"A": ("south", "east"), "B": ("west", "north"), "START": ("start",), "SELECT": ("back",)},
    "Gba": {"A": ("south", "east"), "B": ("west", "north"), "L": ("left_shoulder",), "R": ("right_shoulder",),
            "START": ("start",), "SELECT": ("back",)},
    "Snes": {"B": ("south",), "A": ("east",), "Y": ("west",), "X": ("north",), "L": ("left_shoulder",),
             "R": ("right_shoulder",), "START": ("start",), "SELECT": ("back",)},
    "Genesis": {"A": ("west",), "B": ("south",), "C": ("east",), "X": ("left_shoulder",), "Y": ("north",),
                "Z": ("right_shoulder",), "START": ("start",), "MODE": ("back",)},
    "Sms": {"B": ("south",), "A": ("east", "west"), "PAUSE": ("start",)},
    "GameGear": {"B": ("south",), "A": ("east", "west"), "START": ("start",)},
    "Atari2600": {"BUTTON": ("south", "east"), "RESET": ("start",), "SELECT": ("back",)},
    "PCEngine": {"I": ("east",), "II": ("south",), "RUN": ("start",), "SELECT": ("back",)},
}
_DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT")


class ButtonMapper:
    """Gamepad -> the core's button mask, precomputed as index arrays so a step costs a few microseconds."""

    def __init__(self, console: str, core_buttons: list[str | None]) -> None:
        if console not in CONSOLE_BUTTONS:
            raise ValueError(f"no gamepad mapping for console {console!r}; known: {sorted(CONSOLE_BUTTONS)}")
        self.size = len(core_buttons)
        index = {name: i for i, name in enumerate(core_buttons) if name}
        # wiring[core, pad] = 1 when the gamepad button presses that core button
        self._wiring = np.zeros((self.size, len(BUTTON_INDEX)), np.uint8)
        for core, pads in CONSOLE_BUTTONS[console].items():
            if core in index:
                self._wiring[index[core], [BUTTON_INDEX[b] for b in pads]] = 1
        self._dir = [index.get(d) for d in _DIRECTIONS]
        self.table = [(core, ", ".join(pads)) for core, pads in CONSOLE_BUTTONS[console].items() if core in index]

    def __call__(self, action: Gamepad) -> np.ndarray:
        mask = (self._wiring @ action.buttons > 0).astype(np.uint8)
        dx, dy = direction(action)
        up, down, left, right = self._dir
        for slot, on in ((left, dx < 0), (right, dx > 0), (up, dy < 0), (down, dy > 0)):
            if on and slot is not None:
                mask[slot] = 1
        return mask


class LibretroMachine:
    """One emulator instance: `step(mask)` advances one frame; `ram` is the console's work RAM (live copy)."""

    def __init__(self, rom_path: str, data_files: tuple[str, str] | None = None) -> None:
        import stable_retro as retro

        self.emulator = retro.RetroEmulator(rom_path)
        self.data = retro.data.GameData()
        if data_files is not None:  # an integration's variables, reward and end (data.json, scenario.json)
            self.data.load(*data_files)
        self.emulator.configure_data(self.data)
        self.console = retro.get_romfile_system(rom_path)
        self.core_buttons: list[str | None] = retro.data.EMU_INFO[self.console]["buttons"]  # type: ignore[attr-defined]
        self.fps = float(self.emulator.get_screen_rate())
        self._ram_base = min(self.data.memory.blocks)

    def step(self, mask: np.ndarray) -> None:
        self.emulator.set_button_mask(mask, 0)
        self.emulator.step()

    def screen(self) -> np.ndarray:
        return self.emulator.get_screen()

    def ram(self, size: int = 2048) -> np.ndarray:
        """The first `size` bytes of RAM (2 KiB: the NES work RAM), read without a full memory refresh."""
        blocks = self.data.memory.blocks
        return np.frombuffer(b"".join(blocks[self._ram_base + k] for k in range(0, size, 1024)), np.uint8)

    def write(self, address: int, value: int) -> None:
        self.data.memory.assign(address, "|u1", int(value))

    def get_state(self) -> bytes:
        return bytes(self.emulator.get_state())

    def set_state(self, state: bytes) -> None:
        self.emulator.set_state(state)
        self.data.update_ram()

    def power_on(self) -> None:
        self.emulator.reset()

    # the integration's view of the game (retro family)
    def restart_data(self) -> None:
        self.data.reset()
        self.data.update_ram()

    def variables(self) -> dict[str, int]:
        self.data.update_ram()
        return {k: int(v) for k, v in self.data.lookup_all().items()}

    def reward(self) -> float:
        return float(self.data.current_reward())

    def done(self) -> bool:
        return bool(self.data.is_done())

    def close(self) -> None:
        del self.emulator


# What a machine in another process answers (LibretroMachine's methods; its attributes are sent once).
_REMOTE_METHODS = frozenset({"step", "screen", "ram", "write", "get_state", "set_state", "power_on",
                             "restart_data", "variables", "reward", "done"})


class RemoteMachine:
    """A `LibretroMachine` in a child process, for the second and later emulators of a process (stable-retro's
    core allows one per process): same methods, each a round trip over a socket. The child is a fresh
    interpreter that loads only this module (`_CHILD`), not a fork (a fork inherits the core's one-instance flag)
    nor multiprocessing's spawn (which would run the user's main script again); it dies with this process."""

    def __init__(self, rom_path: str, data_files: tuple[str, str] | None = None) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, __file__, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
            self._conn = Connection(os.dup(ours.fileno()))
        try:
            self._conn.send((rom_path, data_files))
            self.console, self.core_buttons, self.fps = self._answer()
        except BaseException:
            self.close()
            raise

    def _answer(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"the emulator process (pid {self._proc.pid}) ended unexpectedly") from None
        if not ok:
            raise RuntimeError(f"emulator process: {value}")
        return value

    def __getattr__(self, name: str) -> Any:
        if name not in _REMOTE_METHODS:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self._conn.send((name, args))
            return self._answer()

        return call

    def close(self) -> None:
        conn, self._conn = self.__dict__.get("_conn"), None
        if conn is not None:
            conn.close()  # the child sees end of file and leaves
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# The child's program: this file loaded on its own (importing `azote.envs` would register every game family).
_CHILD = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("azote_emulator_child", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module._serve(int(sys.argv[2]), int(sys.argv[3]))
"""


def _serve(fd: int, parent: int) -> None:
    """The child's loop: build the machine, then answer calls until the parent closes the socket."""
    from azote.lifetime import tie_to_parent

    tie_to_parent(parent)
    conn = Connection(fd)
    try:
        machine = LibretroMachine(*conn.recv())
        conn.send((True, (machine.console, machine.core_buttons, machine.fps)))
    except Exception as exc:
        conn.send((False, f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, getattr(machine, name)(*args)))
        except Exception as exc:  # the caller raises it; the machine stays usable
            conn.send((False, f"{name}: {type(exc).__name__}: {exc}"))


Machine = LibretroMachine | RemoteMachine
_open: list[Machine] = []


def open_machine(rom_path: str, data_files: tuple[str, str] | None = None) -> Machine:
    """An emulator: in this process for the first one, in a child process for any other open at the same time
    (stable-retro's core allows one per process), so two games, `check_env` or a vector env work."""
    cls = RemoteMachine if any(isinstance(m, LibretroMachine) for m in _open) else LibretroMachine
    machine = cls(rom_path, data_files)
    _open.append(machine)
    return machine


def close_machine(machine: Machine | None) -> None:
    if machine is not None and machine in _open:
        _open.remove(machine)
        machine.close()

