"""Processes of one native-game environment: a private Xvfb display, the game (LD_PRELOADed with the clock
shim) in its own process group, and an XTEST connection that types the gamepad into it. Everything a session
starts it kills on `close()` (also run by a finalizer and at interpreter exit); if its owner dies without closing
it (SIGKILL), the owner's warden (`azote.lifetime`) kills the process groups and removes the display's socket,
the clock file and the session directory."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from azote.envs.native.game import MOUSE_BUTTONS, PAD_APIS, NativeGame
from azote.envs.native.shm import ClockShm, shim_path
from azote.errors import AzoteError
from azote.lifetime import warden

SESSION_PREFIX = "azote-native-"
OWNER_FILE = "owner"  # the pid of the process whose session this directory is


class NativeGameError(AzoteError, RuntimeError):
    """The game or its display failed: did not start, crashed, or stopped presenting frames."""


class GameExited(NativeGameError):
    """The game's process ended by itself (`code`: its exit status), for example through its own quit menu."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _start_group(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """A program in a process group of its own, which the warden kills if this process dies first."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    warden().guard_group(proc.pid)
    return proc


def _kill_group(proc: subprocess.Popen | None, grace: float = 0.0) -> None:
    """Kills a process started by `_start_group` together with its whole process group (SIGTERM first when
    `grace` > 0, so that it can clean up, then SIGKILL), and releases it from the warden."""
    if proc is None:
        return
    if grace > 0 and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not get ignored
        pass
    warden().release_group(proc.pid)


def _remove_stale_sessions() -> None:
    """Session directories of owners that died when their warden could not clean up (it was killed too)."""
    for d in Path(tempfile.gettempdir()).glob(f"{SESSION_PREFIX}*"):
        try:
            owner = int((d / OWNER_FILE).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):  # not ours to judge (no owner file yet, another user's)
            continue


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line[:200] + (" ..." if len(line) > 200 else "") for line in text[-lines:])


class Xvfb:
    """A private X display (`Xvfb -displayfd` picks a free number)."""

    def __init__(self, width: int, height: int, log: Path, timeout: float = 20.0) -> None:
        if shutil.which("Xvfb") is None:
            raise NativeGameError("Xvfb is not installed: run `sudo bash scripts/native-deps.sh`")
        rfd, wfd = os.pipe()
        with open(log, "ab") as err:
            self.proc: subprocess.Popen | None = _start_group(
                ["Xvfb", "-displayfd", str(wfd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
                 "-noreset", "+extension", "GLX", "+extension", "XTEST"],
                pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            )
        os.close(wfd)
        digits = b""
        deadline = time.monotonic() + timeout
        try:
            while not digits.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([rfd], [], [], left)[0]:
                    raise NativeGameError(f"Xvfb did not start within {timeout:.0f} s:\n{_tail(log)}")
                chunk = os.read(rfd, 16)
                if not chunk:
                    raise NativeGameError(f"Xvfb exited at start (code {self.proc.wait()}):\n{_tail(log)}")
                digits += chunk
        except BaseException:
            _kill_group(self.proc)
            raise
        finally:
            os.close(rfd)
        self.display = f":{int(digits.strip())}"
        for leftover in self._files():  # Xvfb removes them on SIGTERM, not when killed
            warden().guard_path(leftover)

    def _files(self) -> tuple[str, str]:
        number = self.display.lstrip(":")
        return f"/tmp/.X11-unix/X{number}", f"/tmp/.X{number}-lock"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        _kill_group(self.proc, grace=5.0)  # SIGTERM: Xvfb removes its socket and lock file
        self.proc = None
        for leftover in self._files():
            try:
                os.unlink(leftover)  # only if it was killed before it could clean up: the display was ours
            except OSError:
                pass
            warden().release_path(leftover)


class XInput:
    """Keyboard and mouse through XTEST on one display; remembers what it holds."""

    def __init__(self, display: str) -> None:
        from Xlib import XK, X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        self._X, self._XK, self._xtest = X, XK, xtest
        self.dpy = xdisplay.Display(display)
        if not self.dpy.has_extension("XTEST"):
            raise NativeGameError(f"display {display} has no XTEST extension")
        self.held: set[str] = set()
        self._codes: dict[str, int] = {}
        # The server's key auto-repeat fires on wall-clock time: a key held over a slow step would type extra
        # presses (seen: a menu skipped under load). A pad held across steps presses once.
        self.dpy.change_keyboard_control(auto_repeat_mode=X.AutoRepeatModeOff)
        self.dpy.sync()

    def _code(self, keysym_name: str) -> int:
        if keysym_name not in self._codes:
            sym = self._XK.string_to_keysym(keysym_name)
            code = self.dpy.keysym_to_keycode(sym) if sym else 0
            if not code:
                raise ValueError(f"input profile: unknown X key {keysym_name!r} (a keysym name such as 'Left', 'a')")
            self._codes[keysym_name] = code
        return self._codes[keysym_name]

    def _send(self, name: str, down: bool) -> None:
        X = self._X
        if name in MOUSE_BUTTONS:
            self._xtest.fake_input(self.dpy, X.ButtonPress if down else X.ButtonRelease, MOUSE_BUTTONS[name])
        else:
            self._xtest.fake_input(self.dpy, X.KeyPress if down else X.KeyRelease, self._code(name))

    def apply(self, held: set[str], motion: tuple[int, int] = (0, 0)) -> None:
        """Presses what is newly held, releases what no longer is, moves the mouse; waits for the server."""
        for name in sorted(self.held - held):
            self._send(name, False)
        for name in sorted(held - self.held):
            self._send(name, True)
        if motion != (0, 0):
            # relative motion: detail=True makes x, y deltas
            self._xtest.fake_input(self.dpy, self._X.MotionNotify, True, x=motion[0], y=motion[1])
        self.held = set(held)
        # Two round trips: the first has the server handle the events, the second starts after it flushed them
        # to the game's connection, so the game reads them before its next frame.
        self.dpy.sync()
        self.dpy.sync()

    def find_window(self, window_class: str | None) -> Any | None:
        """The first mapped top-level window whose WM_CLASS contains `window_class` (any mapped one if None)."""
        root = self.dpy.screen().root
        stack = list(root.query_tree().children)
        while stack:
            w = stack.pop(0)
            try:
                if w.get_attributes().map_state == self._X.IsViewable:
                    cls = w.get_wm_class() or ()
                    if cls and (window_class is None or any(window_class.lower() in c.lower() for c in cls)):
                        return w
                stack.extend(w.query_tree().children)
            except Exception:  # the window went away meanwhile  # noqa: BLE001
                continue
        return None

    def focus(self, window: Any) -> None:
        geom = window.get_geometry()
        self._xtest.fake_input(self.dpy, self._X.MotionNotify, x=geom.width // 2, y=geom.height // 2)
        window.set_input_focus(self._X.RevertToPointerRoot, self._X.CurrentTime)
        self.dpy.sync()

    def close(self) -> None:
        try:
            self.dpy.close()
        except Exception:  # noqa: BLE001 - the server may already be gone
            pass


class Session:
    """Display + game + input + shared clock of one environment. Holds no reference to the env (finalizers)."""

    def __init__(self, game: NativeGame, resolution: tuple[int, int], fps: float, warmup_frames: int,
                 warmup: str, pad: bool = False) -> None:
        self.game, self.resolution, self.fps = game, resolution, fps
        self.warmup_frames, self.warmup = warmup_frames, warmup
        if pad and game.pad is None:
            raise ValueError(f"{game.name}: no gamepad profile (NativeGame.pad) to play it with a gamepad")
        self.pad = game.pad if pad else None  # the game gets the gamepad as a gamepad (see PadProfile)
        _remove_stale_sessions()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{game.name}-"))
        warden().guard_path(self.dir)
        (self.dir / OWNER_FILE).write_text(str(os.getpid()))
        self.xvfb: Xvfb | None = None
        self.input: XInput | None = None
        self.proc: subprocess.Popen | None = None
        self.shm: ClockShm | None = None
        self.log = self.dir / "game.log"
        self.window: Any = None
        self.origin = (0, 0)
        self.start_crashes: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """(Re)starts the game from scratch and waits until it is in lockstep. A game killed by a signal on its way
        there is started once more (Neverball on llvmpipe segfaulted once at start-up in a full parallel test run,
        and never alone); `start_crashes` keeps the first line of what each such crash said."""
        try:
            self._start()
        except GameExited as exc:
            if exc.code >= 0:  # it quit by itself: starting it again would do the same
                raise
            self.start_crashes.append(str(exc).splitlines()[0])
            self._start()

    def _start(self) -> None:
        self.stop_game()
        h, w = self.game.render_size or self.resolution
        if self.xvfb is None or not self.xvfb.alive():
            self.close_display()
            self.xvfb = Xvfb(w, h, self.dir / "xvfb.log")
            self.input = XInput(self.xvfb.display)
        home = self.home
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        values = {"home": str(home), "width": w, "height": h}
        files = {**self.game.files, **(self.pad.files if self.pad else {})}
        for rel, text in files.items():
            path = home / rel.format(**values)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.format(**values))
        self.shm = ClockShm(self.fps, self.warmup_frames, self.warmup, (h, w), pad=self.pad.bits if self.pad else 0)
        warden().guard_path(self.shm.path)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SDL_", "LIBGL_", "XDG_", "WAYLAND"))},
            "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"), "DISPLAY": self.xvfb.display,
            "LIBGL_ALWAYS_SOFTWARE": "1", "GALLIUM_DRIVER": "llvmpipe", "vblank_mode": "0",
            "SDL_AUDIODRIVER": "dummy", "SDL_VIDEODRIVER": "x11", "ALSOFT_DRIVERS": "null",
            "LD_PRELOAD": str(shim_path()), "AZOTE_SHM": self.shm.path, "AZOTE_HOME": str(home),
            **{k: v.format(**values) for k, v in self.game.env.items()},
        }
        argv = self.game.argv(**values)  # NativeEnv checked the program is installed (NativeGame.missing)
        argv[0] = shutil.which(argv[0], path=env.get("PATH", os.defpath) + os.pathsep + "/usr/games") or argv[0]
        with open(self.log, "wb") as out:
            self.proc = _start_group(argv, env=env, cwd=str(home), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT)
        shm = self.shm
        if not shm.wait_until(lambda: shm["lockstep"] == 1, self.game.start_timeout, self.alive):
            self._fail(f"did not reach lockstep ({shm['frames']} of {self.warmup_frames} start-up frames shown)",
                       self.game.start_timeout)
        if shm["capture_fail"]:
            self._fail("the shim found no glReadPixels in the game (not an OpenGL game?)", 0)
        if self.pad is not None and not shm["pad_status"] & PAD_APIS[self.pad.api]:
            self._fail(f"the game did not take the gamepad ({self.pad.api}: "
                       + ("SDL has no virtual joysticks, 2.24 or later needed" if shm["pad_status"] & 4 else
                          "it never opened a joystick; does its config turn joysticks on?") + ")", 0)
        self.window = self.input.find_window(self.game.window_class) if self.input else None
        if self.window is not None:
            self.input.focus(self.window)
        for held, frames in self.game.start_inputs:
            for _ in range(frames):
                self.step(set(held), (0, 0))
        self.origin = (shm["frames"], shm["vtime_ns"])  # what reset() returns: frame 0, game time 0

    @property
    def home(self) -> Path:
        """The game's private home directory (its config, saves and replays)."""
        return self.dir / "home"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.xvfb is not None and self.xvfb.alive()

    def _fail(self, what: str, timeout: float) -> None:
        code = self.proc.poll() if self.proc is not None else None
        if self.xvfb is not None and not self.xvfb.alive():
            why = "its X display (Xvfb) died"
        elif code is not None:
            why = f"the game exited with code {code}"
        else:
            why = f"the game hung (no frame within {timeout:g} s)" if timeout else "the game is unusable"
        log = _tail(self.log)
        self.stop_game()
        message = f"{self.game.name}: {what}: {why}; reset() restarts it. Game output:\n{log}"
        if code is not None and "display" not in why:
            raise GameExited(message, code)
        raise NativeGameError(message)

    # --- stepping --------------------------------------------------------------------------------------------
    def step(self, held: set[str], motion: tuple[int, int],
             pad: tuple[int, tuple[int, ...]] | None = None) -> None:
        """Sends the input, releases one frame and waits until the game has presented the next one. `pad`
        (buttons, axes; see PadProfile.state) is the gamepad for games played with one (None: centred, released)."""
        if self.proc is None or self.shm is None:
            raise NativeGameError(f"{self.game.name}: the game is not running; call reset()")
        if not self.alive():
            self._fail("stopped", 0)
        assert self.input is not None
        self.input.apply(held, motion)
        shm = self.shm
        if self.pad is not None:
            shm.set_pad(*(pad or (0, (0,) * 6)))  # the shim copies it when the game wakes for the next frame
        n = shm["frames"]
        shm["grant"] = n
        shm.wake("grant")
        if not shm.wait_until(lambda: shm["frames"] > n, self.game.step_timeout, self.alive):
            self._fail(f"frame {n + 1} was not presented", self.game.step_timeout)

    def frame(self) -> np.ndarray:
        assert self.shm is not None
        pixels = self.shm.pixels()
        if pixels.shape[:2] != tuple(self.resolution):
            import cv2

            pixels = cv2.resize(pixels, (self.resolution[1], self.resolution[0]), interpolation=cv2.INTER_AREA)
        return pixels

    # --- teardown --------------------------------------------------------------------------------------------
    def stop_game(self) -> None:
        if self.input is not None and self.input.held:
            try:
                self.input.apply(set())
            except Exception:  # noqa: BLE001 - the display may be gone
                self.input.held = set()
        _kill_group(self.proc)
        self.proc = None
        if self.shm is not None:
            self.shm.close()
            warden().release_path(self.shm.path)
            self.shm = None
        self.window = None

    def close_display(self) -> None:
        if self.input is not None:
            self.input.close()
            self.input = None
        if self.xvfb is not None:
            self.xvfb.close()
            self.xvfb = None

    def close(self) -> None:
        self.stop_game()
        self.close_display()
        shutil.rmtree(self.dir, ignore_errors=True)
        warden().release_path(self.dir)

    def pids(self) -> list[int]:
        """Process ids this session started that are still running (for leak checks)."""
        return [p.pid for p in (self.proc, self.xvfb.proc if self.xvfb else None) if p is not None and p.poll() is None]
