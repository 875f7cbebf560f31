"""The controller's side of the clock shim: the shared file (layout of `struct az_shm` in shim/clockshim.c) and
futex waits/wakes on its two counters."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

MAGIC = 0x4C435A41  # "AZCL"
VERSION = 2  # 2: the gamepad fields (pad_*)
PIXELS_OFFSET = 4096
WARMUP_MODES = {"real": 0, "frames": 1, "virtual": 2}

# Offsets of the fields of struct az_shm (keep in step with the C struct).
_U32 = {
    "magic": 0, "version": 4, "frames": 8, "grant": 12, "lockstep": 16, "warmup_frames": 20, "warmup_mode": 24,
    "capture_w": 28, "capture_h": 32, "captured": 36, "lockstep_frame": 40, "pid": 44, "capture_fail": 112,
    "pad_enabled": 144, "pad_buttons": 148, "pad_status": 164, "pad_synced": 168, "unsettled": 172,
}
_I64 = {
    "frame_ns": 48, "epoch_ns": 56, "mono_ns": 64, "vtime_ns": 72, "t0_ns": 80, "observed_ns": 88,
    "clock_reads": 96, "sleeps": 104, "fps_milli": 120, "wall0_ns": 128, "start_ns": 136,
}

_PAD_AXES = 152  # int16[6]: left x, left y, right x, right y, left trigger, right trigger
PAD_SDL, PAD_JS = 1, 2  # pad_enabled bits: SDL2 virtual game controller, Linux joystick device (js API)
PAD_STATUS = {"sdl": 1, "js": 2, "sdl_failed": 4}  # pad_status bits (set by the shim)

_SYS_FUTEX = 202  # x86_64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def shim_path() -> Path:
    """The built clock shim (compiled by `pip install`, see setup.py)."""
    here = Path(__file__).resolve().parent
    found = sorted(here.glob("_clockshim*.so"))
    if not found:
        raise FileNotFoundError(
            f"the clock shim is not built in {here}: reinstall Azote (`pip install -e .`, needs gcc) so setup.py "
            "compiles shim/clockshim.c"
        )
    return found[0]


class ClockShm:
    """A shared file the shim maps (its path goes to the game in AZOTE_SHM)."""

    def __init__(
        self,
        fps: float,
        warmup_frames: int,
        warmup: str,
        capture: tuple[int, int],
        epoch_ns: int = 1_704_067_200 * 10**9,  # 2024-01-01 00:00:00 UTC: a fixed date, for reproducible runs
        # Virtual monotonic clocks start at 1 s, below the real ones: a library that turns a virtual reading into
        # an absolute deadline for a real kernel wait (pthread_cond_timedwait) gets one in the past, never one that
        # blocks for minutes; likewise the wall clock's fixed epoch lies in the past.
        mono_ns: int = 10**9,
        start_ns: int = 60 * 10**9,  # frame-time start-up begins 60 s after load (unless loading took longer)
        pad: int = 0,  # PAD_SDL | PAD_JS: the gamepad the shim gives the game (0: none)
    ) -> None:
        if warmup not in WARMUP_MODES:
            raise ValueError(f"warmup must be one of {sorted(WARMUP_MODES)}, got {warmup!r}")
        h, w = capture
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="azote-clock-", dir=shm_dir)
        self.size = PIXELS_OFFSET + max(1, w * h * 4)
        os.ftruncate(fd, self.size)
        self._mm = mmap.mmap(fd, self.size)
        os.close(fd)
        self._anchor = ctypes.c_char.from_buffer(self._mm)  # pins the mapping while futex calls use its address
        self._base = ctypes.addressof(self._anchor)
        self.capture = (h, w)
        for name, value in (("version", VERSION), ("warmup_frames", warmup_frames),
                            ("warmup_mode", WARMUP_MODES[warmup]), ("capture_w", w), ("capture_h", h),
                            ("pad_enabled", pad)):
            self[name] = value
        for name, value in (("frame_ns", round(1e9 / fps)), ("fps_milli", round(fps * 1000)),
                            ("epoch_ns", epoch_ns), ("mono_ns", mono_ns), ("start_ns", start_ns)):
            self[name] = value
        self["magic"] = MAGIC  # last: the shim ignores the file until the header is complete

    def __getitem__(self, name: str) -> int:
        if name in _U32:
            return struct.unpack_from("<I", self._mm, _U32[name])[0]
        return struct.unpack_from("<q", self._mm, _I64[name])[0]

    def __setitem__(self, name: str, value: int) -> None:
        if name in _U32:
            struct.pack_into("<I", self._mm, _U32[name], int(value) & 0xFFFFFFFF)
        else:
            struct.pack_into("<q", self._mm, _I64[name], int(value))

    def set_pad(self, buttons: int, axes: tuple[int, ...]) -> None:
        """The gamepad the game reads from the next frame on: `buttons` a bitmask (bit i = azote.gamepad.BUTTONS[i]),
        `axes` six int16 (left x, left y, right x, right y in -32767..32767, y down positive; triggers 0..32767).
        Write it while the game waits for its grant (the shim copies it at the frame boundary)."""
        if len(axes) != 6:
            raise ValueError(f"set_pad: expected 6 axes, got {len(axes)}")
        struct.pack_into("<6h", self._mm, _PAD_AXES, *axes)
        self["pad_buttons"] = buttons

    def pad(self) -> tuple[int, tuple[int, ...]]:
        """(buttons, axes) as last written by `set_pad`."""
        return self["pad_buttons"], struct.unpack_from("<6h", self._mm, _PAD_AXES)

    def wake(self, name: str) -> None:
        _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._base + _U32[name]), _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)

    def wait_change(self, name: str, seen: int, timeout: float) -> None:
        """Blocks until the u32 field `name` differs from `seen` (or `timeout` seconds pass, or a spurious wake)."""
        ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._base + _U32[name]), _FUTEX_WAIT,
                      ctypes.c_uint32(seen & 0xFFFFFFFF), ctypes.byref(ts), None, 0)

    def wait_until(self, predicate, timeout: float, alive=lambda: True, poll: float = 0.05) -> bool:  # noqa: ANN001
        """Waits on the `frames` counter until predicate() holds; False on timeout or when alive() turns false."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self["frames"]
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not alive():
                return False
            self.wait_change("frames", seen, min(poll, left))

    def pixels(self) -> np.ndarray:
        """The last captured frame, top row first, RGB (a copy)."""
        h, w = self.capture
        rgba = np.frombuffer(self._mm, np.uint8, h * w * 4, PIXELS_OFFSET).reshape(h, w, 4)
        return np.ascontiguousarray(rgba[::-1, :, :3])

    def close(self) -> None:
        if self._mm is not None:
            self._base = 0
            del self._anchor
            try:
                self._mm.close()
            except BufferError:  # a view is still alive; the file goes anyway
                pass
            self._mm = None  # type: ignore[assignment]
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
