"""Windows games under Wine, stepped frame by frame like the native Linux games: `windows_game(name, exe, ...)`
makes a `NativeGame` (a `WindowsGame`) that runs a Windows program you own with Debian's `wine` (64-bit) on the
private Xvfb display, in a private prefix, with the clock shim's Wine build preloaded into every process of the
Wine session (see "Wine" in shim/clockshim.c).

- Prefix. `wineboot -i` makes a template prefix once per machine and Wine version (about 7 s, 700 MB: Wine 8
  copies its PE DLLs into system32), kept in the temporary directory; each reset clones it into the private home
  with hard links (about 0.1 s; registry files are copied, since Wine rewrites them), installs Azote's XInput DLLs
  when the game is played with the gamepad, then runs `setup(prefix)` if the description has one. Mono and Gecko
  are not installed (`WINEDLLOVERRIDES` turns mscoree and mshtml off, so no prompt). wined3d's command stream
  thread is off in it (`csmt` 0): Direct3D then presents on the game's own thread, one frame per step.
- Clocks. QueryPerformanceCounter, GetSystemTimeAsFileTime, GetTickCount and timeGetTime (the latter two through
  the tick count wineserver writes), Sleep, and the waits of WaitForSingleObject and friends with timeouts
  (waitable timers included) run on the shim's virtual clock: N steps are N/fps seconds of the program's clocks.
- Frames. OpenGL programs and Direct3D 8-11 through wined3d (Wine's default: Direct3D on OpenGL) present through
  glXSwapBuffers, which the shim hooks: one step, one presented frame, read back from the back buffer. Vulkan
  (DXVK, vkd3d-proton, native Vulkan games) is not supported: frames presented with vkQueuePresentKHR are never
  seen, so such a game never reaches lockstep (`NativeGameError` at reset).
- Input. Keys and mouse through XTEST (`InputProfile`, as for Linux games); with `pad=True` the gamepad is XInput
  controller 0 (`PadProfile("xinput")`): Azote's own xinput1_1..1_4 and xinput9_1_0 DLLs (shim/xinput.c,
  cross-compiled with mingw-w64 on first use) read it from the shared clock file, as a native DLL override.
  Wine's own XInput (winebus.sys in winedevice.exe, SDL or hidraw backends) is not used: its reports arrive on
  other processes' time, never at a frame boundary.
- Lifetime. wineserver and Wine's services (services.exe, winedevice.exe, explorer.exe...) leave the game's
  process group; when the session's shared file goes (close, or the owner's warden after a kill -9), wineserver
  kills them and itself and removes its server directory. The private prefix lies in the session directory.

Nothing is downloaded: the user points at a game installed on this machine (a directory with its .exe; the
prefix's Z: drive is the Linux root, so the game runs in place). What has been checked is in tests/test_native_wine.py
(programs of our own in tests/wine/).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from azote.envs.native.game import InputProfile, NativeGame, PadProfile

SHIM_DIR = Path(__file__).resolve().parent / "shim"
XINPUT_DLLS = ("xinput1_4.dll", "xinput1_3.dll", "xinput1_2.dll", "xinput1_1.dll", "xinput9_1_0.dll")
# Wine's Mono (.NET) and Gecko (HTML) installers would ask to download at prefix creation: off.
BASE_OVERRIDES = "mscoree,mshtml="
MINGW = "x86_64-w64-mingw32-gcc"
TEMPLATE_PREFIX = "azote-wine-template-"
# Registry settings of the template prefix (a new list makes a new template). wined3d's command stream thread
# (CSMT) presents frames on a thread of its own, running behind the game's main thread: off, Direct3D presents on
# the thread that calls Present, which then waits at the frame boundary like an OpenGL game's SwapBuffers.
TEMPLATE_REGISTRY = ((r"HKCU\Software\Wine\Direct3D", "csmt", "REG_DWORD", "0"),)
# The DLL's exports (XInputGetStateEx is ordinal 100, unnamed, as in Microsoft's xinput1_3 and 1_4).
XINPUT_DEF = """LIBRARY xinput1_4.dll
EXPORTS
    XInputGetState
    XInputSetState
    XInputGetCapabilities
    XInputEnable
    XInputGetBatteryInformation
    XInputGetKeystroke
    XInputGetDSoundAudioDeviceGuids
    XInputGetAudioDeviceIds
    XInputGetStateEx @100 NONAME
"""


def wine_shim_path() -> Path:
    """The clock shim's Wine build (`_clockshim_wine*.so`, compiled by `pip install` with the Linux one)."""
    here = Path(__file__).resolve().parent
    found = sorted(here.glob("_clockshim_wine*.so"))
    if not found:
        raise FileNotFoundError(f"the clock shim's Wine build is not in {here}: reinstall Azote (`pip install -e .`)")
    return found[0]


def wine_version() -> str:
    """`wine --version` (empty when Wine is not installed)."""
    wine = shutil.which("wine")
    if wine is None:
        return ""
    try:
        out = subprocess.run([wine, "--version"], capture_output=True, text=True, timeout=30,
                             env={**_clean_env(), "WINEDEBUG": "-all"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def wine_missing() -> str | None:
    """What this machine lacks to run Windows programs (None: nothing)."""
    if shutil.which("wine") is None or shutil.which("wineboot") is None:
        return "Wine is not installed (apt-get install wine wine64, or sudo bash scripts/native-deps.sh)"
    try:
        wine_shim_path()
    except FileNotFoundError as e:
        return str(e)
    return None


def _clean_env() -> dict[str, str]:
    """This process's environment without what the shim or a session would add."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "AZOTE_SHM", "AZOTE_HOME", "AZOTE_WINE_EXE", "DISPLAY")
            and not k.startswith("WINE")}


class _Lock:
    """An exclusive lock on a file (one template build at a time, across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> "_Lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def template_dir() -> Path:
    """Where this user's template prefix for this Wine version lives (in the temporary directory, on the same
    file system as the sessions' private homes, so that they can hard-link it)."""
    key = hashlib.sha1(repr((wine_version(), TEMPLATE_REGISTRY)).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"{TEMPLATE_PREFIX}{os.getuid()}-{key}"


def template_prefix(timeout: float = 300.0) -> Path:
    """The template prefix (made by `wineboot -i` on first use; `boot_seconds` in it says how long that took)."""
    root = template_dir()
    ready = root / "ready"
    if ready.exists():
        return root / "prefix"
    root.parent.mkdir(parents=True, exist_ok=True)
    with _Lock(root.parent / f"{root.name}.lock"):
        if ready.exists():
            return root / "prefix"
        shutil.rmtree(root, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{root.name}.", dir=root.parent))
        env = {**_clean_env(), "WINEPREFIX": str(work / "prefix"), "WINEDEBUG": "-all",
               "WINEDLLOVERRIDES": BASE_OVERRIDES}
        start = time.monotonic()
        try:
            # its own session: wineboot's wineserver is waited for (-w) and then gone
            subprocess.run(["wineboot", "-i"], env=env, check=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for key, value, kind, data in TEMPLATE_REGISTRY:
                subprocess.run(["wine", "reg", "add", key, "/v", value, "/t", kind, "/d", data, "/f"], env=env,
                               check=True, timeout=timeout, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
            subprocess.run(["wineserver", "-w"], env=env, check=False, timeout=timeout, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            subprocess.run(["wineserver", "-k"], env=env, check=False, timeout=30, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            shutil.rmtree(work, ignore_errors=True)
            raise
        (work / "boot_seconds").write_text(f"{time.monotonic() - start:.2f}\n")
        (work / "ready").write_text(wine_version() + "\n")
        work.rename(root)
    return root / "prefix"


def clone_prefix(template: Path, dest: Path) -> None:
    """A private prefix at `dest` from the template: hard links (symbolic ones across file systems); registry
    files copied. Wine replaces rather than rewrites the files it changes, so the template stays as it is."""
    for top, dirs, files in os.walk(template):
        rel = Path(top).relative_to(template)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs:
            src = Path(top) / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dest / rel / name)
        dirs[:] = [d for d in dirs if not (Path(top) / d).is_symlink()]
        for name in files:
            src, dst = Path(top) / name, dest / rel / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif name.endswith(".reg"):
                shutil.copy2(src, dst)
            else:
                try:
                    os.link(src, dst)
                except OSError:
                    os.symlink(src, dst)


def xinput_dll() -> Path:
    """Azote's XInput DLL (shim/xinput.c), cross-compiled with mingw-w64 into the template's directory when it is
    missing or older than its source."""
    src, out = SHIM_DIR / "xinput.c", template_dir().parent / f"azote-xinput-{os.getuid()}.dll"
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    if shutil.which(MINGW) is None:
        raise FileNotFoundError(f"{MINGW} is not installed (apt-get install mingw-w64): it builds Azote's XInput DLL")
    with tempfile.TemporaryDirectory(prefix="azote-xinput-") as tmp:
        (Path(tmp) / "xinput.def").write_text(XINPUT_DEF)
        dll = Path(tmp) / "xinput.dll"
        subprocess.run([MINGW, "-O2", "-s", "-shared", "-o", str(dll), str(src), str(Path(tmp) / "xinput.def")],
                       check=True, capture_output=True, timeout=120)
        shutil.copyfile(dll, out.with_suffix(f".{os.getpid()}.tmp"))
        out.with_suffix(f".{os.getpid()}.tmp").replace(out)
    return out


def install_xinput(prefix: Path) -> None:
    """Azote's XInput DLL as every XInput version in the prefix's system32 (native overrides: `WINEDLLOVERRIDES`)."""
    dll = xinput_dll()
    system32 = prefix / "drive_c" / "windows" / "system32"
    for name in XINPUT_DLLS:
        target = system32 / name
        if target.exists() or target.is_symlink():
            target.unlink()  # a hard link into the template: replace it, never write through it
        shutil.copyfile(dll, target)


@dataclass(frozen=True)
class WindowsGame(NativeGame):
    """A Windows program under Wine (make one with `windows_game`). `exe` is the program's path on this machine
    (Linux path; it runs in place through Wine's Z: drive), `args` its arguments ({home}, {width}, {height}
    placeholders as in `command`). `setup(prefix, home)`, if given, runs after the private prefix is made at each
    reset (copy a config, write registry keys with `wine reg`...). `dll_overrides` are added to
    `WINEDLLOVERRIDES` ("d3d9=n,b" style, ';'-separated)."""

    exe: str = ""
    args: tuple[str, ...] = ()
    setup: Callable[[Path, Path], None] | None = None
    dll_overrides: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.exe:
            raise ValueError(f"WindowsGame {self.name!r}: exe is empty")

    def missing(self) -> str | None:
        if shutil.which("Xvfb") is None:
            return "Xvfb is not installed (sudo bash scripts/native-deps.sh)"
        if not Path(self.exe).is_file():
            return f"{self.name}: {self.exe!r} does not exist (point the description at the game's .exe)"
        return wine_missing()

    def argv(self, **values: Any) -> list[str]:
        """Makes the private prefix under {home} (see the module), then the command line: wine <exe> <args>.
        Called by the session with the private home ready, just before the game starts."""
        prefix = Path(values["home"]) / ".wine"
        shutil.rmtree(prefix, ignore_errors=True)
        clone_prefix(template_prefix(), prefix)
        if self.pad is not None and self.pad.api == "xinput":
            install_xinput(prefix)
        if self.setup is not None:
            self.setup(prefix, Path(values["home"]))
        return [part.format(**values) for part in self.command]


def windows_game(name: str, exe: str | os.PathLike, args: tuple[str, ...] = (), *,
                 profile: InputProfile | None = None, pad: bool | PadProfile = False,
                 env: Mapping[str, str] | None = None, dll_overrides: str = "",
                 setup: Callable[[Path, Path], None] | None = None, **fields: Any) -> WindowsGame:
    """A `NativeGame` for a Windows program you own: `windows_game("mygame", "/games/MyGame/MyGame.exe")`.

    `profile` maps the gamepad to keys and mouse; `pad=True` (or a `PadProfile("xinput", ...)`) hands the game
    the gamepad as XInput controller 0 instead. `fields` are `NativeGame`'s (resolution, fps, warmup_frames,
    start_inputs, reader, window_class, description...); `files` are written under the private home as usual
    (the prefix is `{home}/.wine`, so "{home}/.wine/drive_c/users/..." reaches the Windows user's profile)."""
    exe = os.fspath(exe)
    if pad is True:
        pad = PadProfile("xinput")
    elif pad is False:
        pad = None
    if pad is not None and pad.api != "xinput":
        raise ValueError(f"{name}: a Windows game takes the gamepad through XInput, not {pad.api!r}")
    overrides = BASE_OVERRIDES
    if pad is not None:
        overrides += ";" + ",".join(n[:-4] for n in XINPUT_DLLS) + "=n"
    if dll_overrides:
        overrides += ";" + dll_overrides
    wine_env = {
        "WINEPREFIX": "{home}/.wine", "WINEDEBUG": "-all", "WINEDLLOVERRIDES": overrides,
        "AZOTE_WINE_EXE": Path(exe).name,
        # the Wine build of the shim: the frame hook winex11.drv can see, wineserver on virtual time
        "LD_PRELOAD": str(wine_shim_path()) if wine_missing() is None else "",
        **(env or {}),
    }
    return WindowsGame(name=name, command=("wine", exe, *args), profile=profile or InputProfile(), env=wine_env,
                       pad=pad, exe=exe, args=tuple(args), setup=setup, dll_overrides=dll_overrides,
                       packages=("wine", "wine64"), **fields)


def wine_state(shm: Any) -> dict[str, int]:
    """The shim's Wine counters in a session's shared file (`struct az_wine` in shim/clockshim.c)."""
    import struct

    values = struct.unpack_from("<q10I", shm._mm, 256)
    names = ("real_start_ns", "game_pid", "server_pid", "epoch", "server_ack", "game_at_frame", "game_in_read",
             "read_seq", "jumps", "syncs")
    return dict(zip(names, values))


__all__ = ["WindowsGame", "clone_prefix", "template_prefix", "wine_missing", "wine_shim_path", "windows_game",
           "wine_state", "wine_version", "xinput_dll"]
