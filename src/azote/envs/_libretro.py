"""A libretro emulator core from stable-retro, driven directly: buttons in, frame and RAM out, exact save states.

Used by the `nes` family (Super Mario Bros on the FCEUmm core) and the `retro` family (stable-retro's
integrated games). Gamepad buttons map to each console's buttons by `CONSOLE_BUTTONS`.
"""

from __future__ import annotations

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

    def __init__(self, rom_path: str, data: Any | None = None) -> None:
        import stable_retro as retro

        self.emulator = retro.RetroEmulator(rom_path)
        self.data = data if data is not None else retro.data.GameData()
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

    def read(self, address: int, length: int = 1) -> np.ndarray:
        blocks = self.data.memory.blocks
        base = self._ram_base + ((address - self._ram_base) // 1024) * 1024
        block = blocks[base]
        off = address - base
        if off + length <= len(block):
            return np.frombuffer(block, np.uint8, count=length, offset=off)
        return np.frombuffer(block + blocks[base + 1024], np.uint8, count=length, offset=off)

    def write(self, address: int, value: int) -> None:
        self.data.memory.assign(address, "|u1", int(value))

    def get_state(self) -> bytes:
        return bytes(self.emulator.get_state())

    def set_state(self, state: bytes) -> None:
        self.emulator.set_state(state)


_open: list[LibretroMachine] = []


def open_machine(rom_path: str, data: Any | None = None) -> LibretroMachine:
    """stable-retro allows one emulator per process: say so clearly instead of its generic error."""
    if _open:
        raise RuntimeError(
            "an NES/retro game is already open in this process (the emulator core allows one per process); "
            "close() it first or run the second game in another process"
        )
    machine = LibretroMachine(rom_path, data)
    _open.append(machine)
    return machine


def close_machine(machine: LibretroMachine | None) -> None:
    if machine is not None and machine in _open:
        _open.remove(machine)
        del machine.emulator
