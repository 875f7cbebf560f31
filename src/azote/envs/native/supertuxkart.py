"""SuperTuxKart (Debian `supertuxkart` 1.4) as a native game: `azote/native/supertuxkart`.

The game starts straight into a one-lap race (`--race-now`: no menus, no ready-set-go countdown) on Oliver's Math
Class, a short loop around a classroom (496 m; a lap takes about 30 s, 1800 steps), the player's kart (Tux) starting
behind `AI_KARTS` AI karts on the beginner difficulty, windowed at the environment's size, without sound, internet,
shadows or other effects (GL 3 renderer without dynamic lights, small textures without compression: with the
defaults, compressing the textures in software takes minutes under llvmpipe). Random numbers (items, the AI's)
come from a fixed seed (`--seed`); with the clock shim's virtual clock the same inputs from reset give the same
frames, AI karts included. The loading happens in the start-up frames: reset() returns the race's first frame.

`info` comes from the game's own state, read two ways:

- the track's scripting API (AngelScript). The race runs on a private copy of the track (`azote_olivermath` under
  `{home}/tracks`, passed with `--trackdir`; its files are links to the installed ones) whose `scripting.as` is the
  track's own plus a callback that the game runs once per rendered frame (`Utils::setTimeout(..., 0)`, re-armed
  each time, started by `onStart`, which the game runs at the race's first physics step). It logs the player's kart
  (the kart of type KT_PLAYER, `Track::getKartType`) as `Kart::getLocation` and `Kart::getVelocity` give them, with
  `Utils::logInfo`. The game writes its log unbuffered to `stdout.log` in its config directory, in the private
  home; the reader parses the new lines at every step: `x`, `y`, `z` (metres; y is up), `vx`, `vy`, `vz` (m/s),
  `speed` (km/h: the length of the velocity) and `heading` (degrees, the direction of motion, atan2(vx, vz)).
- the race in the game's memory (`/proc/<pid>/mem`), found through the C++ run-time type information that the
  stripped executable keeps: the type name `12StandardRace` -> its typeinfo -> its vtable -> the object with that
  vtable that a pointer in the executable's data points to (`World::m_world`). In it, std::vectors are recognised
  by their shape: `m_karts` (shared pointers to objects whose type name ends in "Kart"), then
  `m_position_index` (a permutation of the karts' ids, by race position) and LinearWorld's `m_kart_info`
  (24-byte records: finished laps, ticks at the last lap, lap start ticks, estimated finish, overall distance,
  wrong-way timer). From them: `laps` (laps completed: -1 until the kart first crosses the start line, a second
  after the start, then 0), `distance` (the game's overall distance, by which it ranks the karts: metres along the
  driveline since the start line, over laps; -496 until the start line), `progress` (distance / the lap's length,
  0 before the start line; 1 = one lap), `position` (1 = leading), `karts` and `finished` (the kart completed the
  race's lap: the episode terminates). If the layout is not found (another build of the game), these keys are
  absent, with a warning, and the scripting's still come.

Input: keyboard only. `--race-now` gives the player the first keyboard and sets the game's input to "assigned
devices only", so a gamepad (also the shim's SDL game controller, which the game does see) does not drive; reaching
the race through the menus with the pad instead would take hundreds of menu frames. The gamepad is mapped to the
game's default keys: the left stick steers past a dead zone (digital, full lock: arrow keys) and its up/down
accelerate/brake, the right trigger and Y accelerate (Up), the left trigger and X brake and reverse (Down), B fires
the item (space), the left shoulder is nitro (n), the right shoulder skids (v), A looks back (b), back rescues the
kart (BackSpace). Start (pause) is not mapped: a paused race stops its clock.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from azote.envs.native.game import InputProfile, NativeGame, StickKeys
from azote.envs.native.reading import LogTail, ProcessMemory, Runs, game_process

DATA = "/usr/share/games/supertuxkart/data"
TRACK = "olivermath"  # Oliver's Math Class: a short loop (a lap takes about 30 s at full throttle)
COPY = f"azote_{TRACK}"  # the private copy's name (its directory under {home}/tracks)
TRACK_LENGTH = 496.10  # the lap's length along the driveline (m): `distance` when the first lap is completed
LAPS = 1
AI_KARTS = 2
SEED = 1
CONFIG_DIR = ".config/supertuxkart/config-0.10"
LOG = f"{CONFIG_DIR}/stdout.log"  # the game's log, written unbuffered
TAG = "AZOTE"

# The user config (UserConfig 8): groups take their settings as attributes. Lowest graphics, no audio, internet
# off (2: not allowed), no hardware report, the window at the environment's size.
_CONFIG = """<?xml version="1.0"?>
<stkconfig version="8" >
<Audio sfx_on="false" music_on="false" sfx_volume="0" music_volume="0" />
<Video real_width="{width}" real_height="{height}" width="{width}" height="{height}" fullscreen="false"
  prev_fullscreen="false" remember_window_location="false" show_fps="false" show_story_mode_timer="false"
  show_speedrun_timer="false" max_fps="1000" force_legacy_device="false" split_screen_horizontally="true"
  enable_texture_compression="false" enable_high_definition_textures="2" enable_glow="false" enable_bloom="false"
  enable_light_shaft="false" enable_dynamic_lights="false" enable_dof="false" old_driver_popup="false"
  max_texture_size="128" hq_mipmap="false" vulkan_fullscreen_desktop="false" limit_game_fps="false"
  render_driver="gl" scale_rtts_factor="1.0" />
<GFX particles-effecs="0" animated-characters="false" geometry_level="2" anisotropic="0" swap-interval="0"
  motionblur_enabled="false" mlaa="false" ssao="false" light_scatter="false" shadows_resolution="0"
  Degraded_IBL="true" christmas-mode="2" easter-ear-mode="2" />
<HWReport report-version="99" hw-report-enabled="false" />
<enable_internet value="2" />
</stkconfig>
"""

# Appended to the track's own script. Runs once per rendered frame (World::updateGraphics -> ScriptEngine::update).
_SCRIPT = """
// Azote: the player's kart for the environment's reader, once per rendered frame.
int azotePlayer = -1;
void azoteReport()
{
    if (azotePlayer < 0)
    {
        for (int i = 0; i < Track::getNumberOfKarts(); i++)
            if (Track::getKartType(i) == 0) { azotePlayer = i; break; }   // KT_PLAYER
    }
    if (azotePlayer >= 0)
    {
        Vec3 p = Kart::getLocation(azotePlayer);
        Vec3 v = Kart::getVelocity(azotePlayer);
        Utils::logInfo("%(tag)s " + azotePlayer + " " + p.getX() + " " + p.getY() + " " + p.getZ() + " " + v.getX()
                       + " " + v.getY() + " " + v.getZ());
    }
    Utils::setTimeout("azoteReport", 0.0);
}
void onStart()
{
    Utils::logInfo("%(tag)s start " + Track::getNumberOfKarts());
    azoteReport();
}
""" % {"tag": TAG}


def _install_track(home: Path) -> None:
    """The private copy of the track: links to the installed files, and the track's script with the reporter."""
    src = Path(DATA) / "tracks" / TRACK
    dst = home / "tracks" / COPY
    dst.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        if entry.name != "scripting.as":
            os.symlink(entry.path, dst / entry.name)
    own = (src / "scripting.as").read_text() if (src / "scripting.as").is_file() else ""
    if "void onStart()" in own:
        raise ValueError(f"{src}: the track's script has an onStart() of its own; Azote's reporter needs it")
    (dst / "scripting.as").write_text(own + _SCRIPT)


@dataclass(frozen=True)
class SuperTuxKartGame(NativeGame):
    """Builds the private copy of the track in the private home before each start (links, not a copy)."""

    def argv(self, **values: Any) -> list[str]:
        _install_track(Path(values["home"]))
        return super().argv(**values)


def supertuxkart_command(track: str = COPY, laps: int = LAPS, ai_karts: int = AI_KARTS) -> tuple[str, ...]:
    return ("supertuxkart", "--race-now", f"--track={track}", f"--laps={laps}", f"--numkarts={ai_karts + 1}",
            "--difficulty=0", "--mode=0", f"--seed={SEED}", "--kart=tux", "--trackdir={home}/tracks/", "--log=2",
            "--windowed", "--screensize={width}x{height}", "--no-high-scores", "--disable-addon-karts",
            "--disable-addon-tracks")


# --- the race state in the game's memory ----------------------------------------------------------------------
WORLD_TYPE = b"12StandardRace"
KART_INFO = struct.Struct("<iiifff")  # LinearWorld::KartInfo
INT_MAX = 2**31 - 1


def _elf_sections(path: str) -> dict[str, tuple[int, int, int]]:
    """name -> (address, file offset, size) of a 64-bit little-endian ELF file's sections."""
    with open(path, "rb") as f:
        data = f.read(64)
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            return {}
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        headers = [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]
        f.seek(headers[shstrndx][4])
        names = f.read(headers[shstrndx][5])
    out = {}
    for name_off, _, _, addr, offset, size, *_ in headers:
        out[names[name_off:names.index(b"\0", name_off)].decode("latin-1")] = (addr, offset, size)
    return out


@dataclass
class _Race:
    """Where the race state lies in one game process."""

    pid: int
    mem: ProcessMemory | None = None
    world: int = 0  # the StandardRace object
    karts: int = 0  # offsets in it of m_karts, m_position_index, m_kart_info
    positions: int = -1
    kart_info: int = 0
    located: bool = False
    failures: int = 0
    _names: dict[int, str] = field(default_factory=dict)

    def open(self) -> None:
        self.mem = ProcessMemory(self.pid)

    def close(self) -> None:
        if self.mem is not None:
            self.mem.close()

    def read(self, address: int, size: int) -> bytes:
        assert self.mem is not None
        return self.mem.read(address, size)

    def q(self, address: int) -> int:
        assert self.mem is not None
        return self.mem.u64(address)

    def locate(self) -> bool:
        assert self.mem is not None
        exe = os.readlink(f"/proc/{self.pid}/exe")
        mapped = self.mem.mapping(lambda path: path == exe)
        base = mapped[0] if mapped is not None else None
        sections = _elf_sections(exe)
        if base is None or not {".rodata", ".data.rel.ro", ".data", ".bss"} <= set(sections):
            return False
        addr, offset, size = sections[".rodata"]
        with open(exe, "rb") as f:
            f.seek(offset)
            rodata = f.read(size)
        at = rodata.find(b"\0" + WORLD_TYPE + b"\0")
        if at < 0:
            return False
        name = base + addr + at + 1
        addr, _, size = sections[".data.rel.ro"]
        relro = self.read(base + addr, size)
        words = np.frombuffer(relro[: size - size % 8], dtype="<u8")
        hits = np.flatnonzero(words == name)  # the typeinfo: {vptr, name, ...}
        if len(hits) != 1:
            return False
        typeinfo = base + addr + 8 * (int(hits[0]) - 1)
        vtables = [int(i) for i in np.flatnonzero(words == typeinfo) if i > 0 and words[i - 1] == 0]
        if len(vtables) != 1:  # the primary vtable: offset-to-top 0, typeinfo, then the virtual functions
            return False
        vptr = base + addr + 8 * (vtables[0] + 1)
        for section in (".data", ".bss"):
            addr, _, size = sections[section]
            words = np.frombuffer(self.read(base + addr, size - size % 8), dtype="<u8")
            for pointer in words[(words > 0x10000) & (words < 1 << 47) & (words % 8 == 0)].tolist():
                try:
                    if self.q(pointer) == vptr:
                        self.world = pointer
                        break
                except OSError:
                    continue
            if self.world:
                break
        return bool(self.world) and self._layout()

    def _type_name(self, obj: int) -> str:
        """The type name of a polymorphic object (its vtable's typeinfo's name), '' if it is not one."""
        try:
            vptr = self.q(obj)
            if vptr in self._names:
                return self._names[vptr]
            name_ptr = self.q(self.q(vptr - 8) + 8)
            name = self.read(name_ptr, 64).split(b"\0")[0].decode("latin-1")
        except (OSError, UnicodeDecodeError):
            return ""
        self._names[vptr] = name
        return name

    def _vectors(self, size: int = 4096) -> list[tuple[int, int, int]]:
        """(offset, begin, end) of what looks like a std::vector in the world object."""
        data = self.read(self.world, size)
        out = []
        for off in range(8, size - 23, 8):
            b, e, c = struct.unpack_from("<QQQ", data, off)
            if b > 0x10000 and b <= e <= c and c - b < 1 << 20 and b % 8 == 0:
                out.append((off, b, e))
        return out

    def _layout(self) -> bool:
        vectors = self._vectors()
        karts = None
        for off, b, e in vectors:
            n, rest = divmod(e - b, 16)
            if n and not rest and all(self._type_name(self.q(b + 16 * i)).endswith("Kart") for i in range(n)):
                karts = (off, n)
                break
        if karts is None:
            return False
        self.karts, n = karts
        for off, b, e in vectors:
            if off > self.karts and e - b == 4 * n:
                ids = struct.unpack(f"<{n}i", self.read(b, 4 * n))
                if sorted(ids) == list(range(n)):
                    self.positions = off
                    break
        for off, b, e in vectors:
            if off > max(self.karts, self.positions) and e - b == KART_INFO.size * n:
                records = [KART_INFO.unpack_from(self.read(b, e - b), KART_INFO.size * i) for i in range(n)]
                if all(-1 <= r[0] <= 100 and (r[1] == INT_MAX or 0 <= r[1] < 1 << 28) and math.isfinite(r[4])
                       and math.isfinite(r[3]) and 0 <= r[5] < 1e6 for r in records):
                    self.kart_info = off
        return bool(self.kart_info)

    def state(self, player: int) -> dict[str, Any]:
        b, e = struct.unpack("<QQ", self.read(self.world + self.kart_info, 16))
        n = (e - b) // KART_INFO.size
        if not 0 <= player < n:
            return {}
        laps, _, _, _, distance, _ = KART_INFO.unpack(self.read(b + KART_INFO.size * player, KART_INFO.size))
        out: dict[str, Any] = {"laps": laps, "distance": float(distance), "finished": int(laps >= LAPS), "karts": n,
                               "progress": max(0.0, float(distance)) / TRACK_LENGTH}
        if self.positions >= 0:
            pb, pe = struct.unpack("<QQ", self.read(self.world + self.positions, 16))
            ids = struct.unpack(f"<{n}i", self.read(pb, 4 * n)) if pe - pb == 4 * n else ()
            if player in ids:
                out["position"] = ids.index(player) + 1
        return out


INFO_DEFAULTS: dict[str, Any] = {"x": 0.0, "y": 0.0, "z": 0.0, "vx": 0.0, "vy": 0.0, "vz": 0.0, "speed": 0.0,
                                 "heading": 0.0}


@dataclass
class _Run:
    pid: int
    log: LogTail = field(default_factory=LogTail)  # the game's stdout.log
    player: int = -1
    kart: dict[str, Any] = field(default_factory=dict)
    race: _Race | None = None


class SuperTuxKartReader:
    """`reader(frame, home)` for SuperTuxKart: the player's kart from the track script's log lines, the race (laps,
    distance, position, finished) from the game's memory. One state per private home; a new game process (a
    reset) starts it afresh."""

    def __init__(self) -> None:
        self._runs: Runs[_Run] = Runs(lambda home: game_process(home, "supertuxkart"), _Run,
                                      lambda run: run.race.close() if run.race is not None else None)
        self._warned = False

    def __call__(self, frame: np.ndarray, home: Path) -> dict[str, Any]:
        run = self._runs.get(home)
        self._read_log(run, home / LOG)
        out: dict[str, Any] = {**INFO_DEFAULTS, **run.kart}
        if run.pid and run.player >= 0:
            out.update(self._read_race(run))
        if out.get("finished"):
            out["terminated"] = True
        return out

    def _read_log(self, run: _Run, path: Path) -> None:
        marker = b"Script: " + TAG.encode() + b" "
        for line in run.log.new_lines(path):
            at = line.find(marker)
            if at < 0:
                continue
            fields = line[at + len(marker):].split()
            if len(fields) != 7:
                continue
            try:
                player = int(fields[0])
                x, y, z, vx, vy, vz = (float(v) for v in fields[1:])
            except ValueError:
                continue
            run.player = player
            run.kart = {"x": x, "y": y, "z": z, "vx": vx, "vy": vy, "vz": vz,
                        "speed": 3.6 * math.sqrt(vx * vx + vy * vy + vz * vz),
                        "heading": math.degrees(math.atan2(vx, vz)) if vx or vz else 0.0}

    def _read_race(self, run: _Run) -> dict[str, Any]:
        if run.race is not None and run.race.failures >= 3:
            return {}
        try:
            if run.race is None:
                run.race = _Race(run.pid)
                run.race.open()
            if not run.race.located:
                run.race.located = run.race.locate()
                if not run.race.located:
                    run.race.failures += 1
                    if run.race.failures >= 3:
                        self._warn()
                    return {}
            return run.race.state(run.player)
        except (OSError, ValueError, struct.error):
            run.race.failures += 1
            run.race.located = False
            return {}

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn("SuperTuxKart: the race state (laps, distance) was not found in the game's memory (not "
                          "Debian's 1.4?), so info has only the kart's position and speed", stacklevel=3)


SUPERTUXKART = SuperTuxKartGame(
    name="supertuxkart",
    command=supertuxkart_command(),
    window_class="supertuxkart",
    files={f"{CONFIG_DIR}/config.xml": _CONFIG},
    # the player's default keys (the only device --race-now gives the player; see the module's docstring)
    profile=InputProfile(
        buttons={"right_trigger": "Up", "north": "Up", "left_trigger": "Down", "west": "Down", "east": "space",
                 "left_shoulder": "n", "right_shoulder": "v", "south": "b", "back": "BackSpace"},
        left_stick=StickKeys("Up", "Down", "Left", "Right"),
    ),
    fps=60.0,
    warmup_frames=30,
    view="3d",
    description=f"SuperTuxKart, a one-lap race on Oliver's Math Class against {AI_KARTS} beginner AI karts (3D kart racing)",
    packages=("supertuxkart",),
    start_timeout=120.0,
    reader=SuperTuxKartReader(),
)
