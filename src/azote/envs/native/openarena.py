"""OpenArena (Debian `openarena`, the ioquake3 engine) against its built-in bots: `azote/native/openarena`.

The game starts straight into a free-for-all on a small map with bots (`+map`, `+addbot`), windowed at the
environment's size, without sound, intro or network sockets. Two settings keep it in lockstep under the clock
shim, both because ioquake3 measures time with `gettimeofday` (`Sys_Milliseconds`), which the shim leaves still
between frames: `com_maxfps 1001` (1000 / 1001 = 0 ms between frames: the engine never waits for its clock to
move, which it would do for ever while loading, when it presents no frames) and a huge `sv_minRate` (the listen
server sends the client a fragmented message only when enough milliseconds passed for its rate: with that rate
no wait at all). Each step then runs one `Com_Frame` (client, and the server's 20 Hz frames as they fall due) and
presents one frame; time advances 1/60 s per step. The game module seeds its random numbers (the bots') from the
game clock when the map starts, which the shim makes virtual, so the bots play the same way every run; the only
draw from /dev/urandom left, the client's key (it names the player's guid), is a fixed file in the private home.
The mouse goes through SDL's relative mode by warping (the pointer goes back to the window's centre each frame).

`info` comes from the game's own state:

- the server's log (`g_log games.log`, `g_logsync 1`, in the private home), read incrementally: `frags` (bots the
  player killed), `deaths`, `suicides` (self or world kills, which the game scores -1), and `reward`, the change
  in the game's free-for-all score (frags - suicides) since the last step;
- the server game module's memory (`/proc/<pid>/mem`; the module `qagamex86_64.so` exports `g_clients`,
  `g_entities` and `level`, and `playerState_t`, where each client's state begins, is the engine's ABI): `health`, `armor`, `x`, `y`, `z` (map units), `yaw`,
  `pitch` (degrees), `weapon`, `ammo` (of the weapon in hand), `alive`, `game_score` and `level_time` (the
  server's clock, s). If the memory cannot be read (another build of the game module), these keys are absent
  and the log's still come.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from azote.envs.native.game import InputProfile, NativeGame, PadProfile, StickKeys, StickMouse
from azote.envs.native.reading import LogTail, ProcessMemory, Runs
from azote.gamepad import ActionChunk, Gamepad

PLAYER = "Azote"  # the player's name, how the log tells its lines from the bots'
MAP = "oa_dm1"  # "Place of Two Deaths": a small free-for-all arena
# (bot, skill 1-5): skill 2 is "Bring It On"; at skill 1 bots play with half health and rarely attack.
BOTS = (("Sarge", 2), ("Tony", 2))
HOME = ".openarena"  # fs_homepath inside the private home
LOG = f"{HOME}/baseoa/games.log"
PID_FILE = f"{HOME}/baseoa/ioq3.pid"  # the engine writes its pid here while it runs

# Cvars and binds, written to autoexec.cfg (run at start-up, before the renderer and input start).
_CONFIG = """// Azote: OpenArena for lockstep play under the clock shim
set com_introplayed 1
set com_maxfps 1001
set com_hunkmegs 128
set com_blood 0
set cl_renderer opengl1
set r_fullscreen 0
set r_swapInterval 0
set r_picmip 2
set r_dynamiclight 0
set r_flares 0
set r_fastsky 1
set r_drawSun 0
set r_lodbias 1
set r_subdivisions 16
set cg_shadows 0
set cg_marks 0
set cg_brassTime 0
set cg_gibs 0
set cg_drawFPS 0
set cg_autoswitch 0
set s_initsound 0
set net_enabled 0
set sv_pure 0
set sv_minRate 100000000
set sv_maxclients 8
set cl_maxpackets 125
set snaps 40
set fraglimit 0
set timelimit 0
set g_doWarmup 0
set g_forcerespawn 2
set g_log games.log
set g_logsync 1
set bot_nochat 1
set in_mouse 1
set in_nograb 0
set m_filter 0
set cl_mouseAccel 0
set sensitivity 5
set name {player}
unbindall
bind w +forward
bind s +back
bind a +moveleft
bind d +moveright
bind UPARROW +forward
bind DOWNARROW +back
bind LEFTARROW +left
bind RIGHTARROW +right
bind SPACE +moveup
bind c +movedown
bind MOUSE1 +attack
bind MOUSE2 +zoom
bind SHIFT +speed
bind q weapprev
bind e weapnext
bind ENTER +button2
bind TAB +scores
set in_joystick 0
""".replace("{player}", PLAYER)
# With the gamepad (the shim's SDL virtual game controller, which ioquake3 opens as an SDL game controller): the
# sticks are analog axes (in_joystickUseAnalog; j_forward/j_side 127/32767 make full deflection full speed, the
# right stick turns 4 degrees per 1/60 s at full deflection), the buttons are keys PAD0_*.
_PAD_CONFIG = _CONFIG.replace("set in_joystick 0\n", """set in_joystick 1
set in_joystickNo 0
set in_joystickUseAnalog 1
set joy_threshold 0.05
set j_forward -0.003876
set j_side 0.003876
set j_yaw -0.00732
set j_pitch 0.00732
set j_up 0
set j_forward_axis 1
set j_side_axis 0
set j_yaw_axis 2
set j_pitch_axis 3
set j_up_axis 4
bind PAD0_LEFTSTICK_UP +forward
bind PAD0_LEFTSTICK_DOWN +back
bind PAD0_LEFTSTICK_LEFT +moveleft
bind PAD0_LEFTSTICK_RIGHT +moveright
bind PAD0_RIGHTSTICK_LEFT +left
bind PAD0_RIGHTSTICK_RIGHT +right
bind PAD0_RIGHTSTICK_UP +lookup
bind PAD0_RIGHTSTICK_DOWN +lookdown
bind PAD0_RIGHTTRIGGER +attack
bind PAD0_LEFTTRIGGER +zoom
bind PAD0_A +moveup
bind PAD0_B +movedown
bind PAD0_X +button2
bind PAD0_Y weapnext
bind PAD0_LEFTSHOULDER weapprev
bind PAD0_RIGHTSHOULDER weapnext
bind PAD0_BACK +scores
bind PAD0_LEFTSTICK_CLICK +speed
bind PAD0_DPAD_UP weapnext
bind PAD0_DPAD_DOWN weapprev
""")
# A fixed client key: otherwise the engine draws one from /dev/urandom (it only names the player's guid).
_QKEY = "azote" * 409 + "az\n"  # 2048 bytes, the size ioquake3 reads


def openarena_command(map_name: str = MAP, bots: tuple[tuple[str, int], ...] = BOTS) -> tuple[str, ...]:
    """The command line: private home, window size, then the match (map and bots)."""
    cmd = ["openarena", "+set", "fs_homepath", "{home}/" + HOME, "+set", "r_mode", "-1",
           "+set", "r_customwidth", "{width}", "+set", "r_customheight", "{height}", "+map", map_name]
    for name, skill in bots:
        cmd += ["+addbot", name, str(int(skill))]
    return tuple(cmd)


# --- the server's log -----------------------------------------------------------------------------------------
_WORLD = 1022  # ENTITYNUM_WORLD: the killer of falls, lava, crushers
_USERINFO = re.compile(r"ClientUserinfoChanged: (\d+) n\\([^\\]*)")
_KILL = re.compile(r"Kill: (\d+) (\d+) (\d+):")
_COLOR = re.compile(r"\^.")  # Quake colour codes in names


# --- the server game module's memory -------------------------------------------------------------------------
# playerState_t (q_shared.h, the engine <-> game ABI): offsets of the fields read here.
PS_ORIGIN, PS_PM_TYPE, PS_CLIENTNUM, PS_WEAPON, PS_VIEWANGLES = 20, 4, 140, 144, 152
PS_STATS, PS_PERSISTANT, PS_AMMO = 184, 248, 376
PS_SIZE = 468
STAT_HEALTH, STAT_ARMOR = 0, 4  # OpenArena's statIndex_t has STAT_PERSISTANT_POWERUP (missionpack order)
PERS_SCORE = 0
PM_DEAD = 3  # pm_type
MAX_GENTITIES, MAX_CLIENTS = 1024, 64
GAME_MODULE = "qagamex86_64.so"


def elf_symbols(path: str, names: set[str]) -> dict[str, tuple[int, int]]:
    """(value, size) of exported symbols of a 64-bit little-endian ELF shared object (value: the offset from its
    load address)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, tuple[int, int]] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 11 or not entsize:  # SHT_DYNSYM
            continue
        stroff = sections[link][4]
        for i in range(size // entsize):
            name_off, _, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, offset + i * entsize)
            end = data.index(b"\0", stroff + name_off)
            name = data[stroff + name_off:end].decode("latin-1")
            if name in names and shndx:
                out[name] = (value, sym_size)
    return out


@dataclass
class _Memory:
    """Where the player's playerState_t lies in the game process, and its memory."""

    pid: int
    mem: ProcessMemory | None = None
    clients: int = 0  # address of g_clients (gclient_t begins with its playerState_t)
    client_size: int = 0  # sizeof(gclient_t)
    level: int = 0  # address of level

    def close(self) -> None:
        if self.mem is not None:
            self.mem.close()
            self.mem = None

    def read(self, address: int, size: int) -> bytes:
        assert self.mem is not None
        return self.mem.read(address, size)

    def locate(self) -> bool:
        """Finds the game module in the process (after a map load it is there), its symbols and the layout."""
        self.close()
        self.mem = ProcessMemory(self.pid)
        module = self.mem.mapping(lambda path: path.endswith(GAME_MODULE))
        if module is None:
            return False
        base, path = module
        symbols = elf_symbols(path, {"g_entities", "g_clients", "level"})
        if len(symbols) != 3:
            return False
        (entities, entities_size), (clients, clients_size) = symbols["g_entities"], symbols["g_clients"]
        # gentity_t g_entities[MAX_GENTITIES], gclient_t g_clients[MAX_CLIENTS]: their sizes give the strides
        entity_size, self.client_size = entities_size // MAX_GENTITIES, clients_size // MAX_CLIENTS
        if entity_size < 512 or self.client_size < PS_SIZE:
            return False
        self.clients, self.level, entities = base + clients, base + symbols["level"][0], base + entities
        # The layout holds if level_locals_t begins with `clients` and `gentities`, and entities 0 and 1 point to
        # clients 0 and 1 (gentity_t.client, which the game sets for every client slot when it starts).
        if struct.unpack("<QQ", self.read(self.level, 16)) != (self.clients, entities):
            return False
        first = self.read(entities, entity_size)
        second = self.read(entities + entity_size, entity_size)
        return any(struct.unpack_from("<Q", first, off)[0] == self.clients
                   and struct.unpack_from("<Q", second, off)[0] == self.clients + self.client_size
                   for off in range(0, entity_size - 7, 8))

    def player(self, client: int) -> dict[str, Any] | None:
        ps = self.read(self.clients + client * self.client_size, PS_SIZE)
        if struct.unpack_from("<i", ps, PS_CLIENTNUM)[0] != client:
            return None
        stats = struct.unpack_from("<16i", ps, PS_STATS)
        pers = struct.unpack_from("<16i", ps, PS_PERSISTANT)
        weapon, = struct.unpack_from("<i", ps, PS_WEAPON)
        x, y, z = struct.unpack_from("<3f", ps, PS_ORIGIN)
        pitch, yaw, _ = struct.unpack_from("<3f", ps, PS_VIEWANGLES)
        ammo = struct.unpack_from("<i", ps, PS_AMMO + 4 * weapon)[0] if 0 <= weapon < 16 else 0
        level_time, = struct.unpack("<i", self.read(self.level + 40, 4))  # level.time (ms)
        pm_type, = struct.unpack_from("<i", ps, PS_PM_TYPE)
        return {"health": stats[STAT_HEALTH], "armor": stats[STAT_ARMOR], "x": x, "y": y, "z": z,
                "yaw": yaw % 360.0, "pitch": pitch, "weapon": weapon, "ammo": ammo,
                "alive": int(pm_type != PM_DEAD and stats[STAT_HEALTH] > 0), "game_score": pers[PERS_SCORE],
                "level_time": level_time / 1000.0}


@dataclass
class _Run:
    """What the reader knows about one run of the game (one pid)."""

    pid: int
    log: LogTail = field(default_factory=LogTail)  # the server's log
    client: int | None = None  # the player's client number
    frags: int = 0
    deaths: int = 0
    suicides: int = 0
    last_score: int = 0  # frags - suicides at the previous call
    memory: _Memory | None = None
    memory_failed: int = 0
    names: dict[int, str] = field(default_factory=dict)


class OpenArenaReader:
    """`reader(frame, home)` for OpenArena: the player's frags and deaths from the server's log, health, armor and
    position from the game module's memory (see the module's docstring). One state per private home; a new
    game process (a reset) starts it afresh."""

    def __init__(self, player: str = PLAYER) -> None:
        self.player = player
        self._runs: Runs[_Run] = Runs(_pid, _Run,
                                      lambda run: run.memory.close() if run.memory is not None else None)

    def __call__(self, frame: np.ndarray, home: Path) -> dict[str, Any]:
        run = self._runs.get(home)
        self._read_log(run, home / LOG)
        score = run.frags - run.suicides
        out: dict[str, Any] = {"frags": run.frags, "deaths": run.deaths, "suicides": run.suicides,
                               "reward": float(score - run.last_score)}
        run.last_score = score
        if run.pid and run.client is not None:
            out.update(self._read_memory(run))
        return out

    def players(self, home: Path) -> dict[str, dict[str, Any]]:
        """Every player's state from the game's memory (the same keys as the player's in `info`), by name; empty
        if the memory cannot be read. For scripted players (the one that recorded the tasks' solutions)."""
        run = self._runs.get(home)
        self._read_log(run, home / LOG)
        if not self._read_memory(run):
            return {}
        out = {}
        for number, name in run.names.items():
            try:
                state = run.memory.player(number) if run.memory is not None else None
            except (OSError, ValueError, struct.error):
                state = None
            if state is not None:
                out[name] = state
        return out

    def _read_log(self, run: _Run, path: Path) -> None:
        for raw in run.log.new_lines(path):
            line = raw.decode("utf-8", "replace")
            m = _KILL.search(line)
            if m:
                killer, victim = int(m.group(1)), int(m.group(2))
                if run.client is None:
                    continue
                if victim == run.client:
                    run.deaths += 1
                    if killer in (victim, _WORLD):
                        run.suicides += 1
                elif killer == run.client:
                    run.frags += 1
                continue
            m = _USERINFO.search(line)
            if m:
                number, name = int(m.group(1)), _COLOR.sub("", m.group(2))
                run.names[number] = name
                if name == self.player:
                    run.client = number
                elif run.client == number:
                    run.client = None

    def _read_memory(self, run: _Run) -> dict[str, Any]:
        if run.client is None or not run.pid or run.memory_failed >= 3:  # 3: not this build's layout: stop
            return {}
        try:
            if run.memory is None:
                memory = _Memory(run.pid)
                if not memory.locate():
                    memory.close()
                    run.memory_failed += 1
                    return {}
                run.memory = memory
            state = run.memory.player(run.client)  # type: ignore[arg-type]
            if state is None:  # the module was reloaded (a new map): find it again next time
                run.memory.close()
                run.memory = None
                run.memory_failed += 1
                return {}
            run.memory_failed = 0
            return state
        except (OSError, ValueError, struct.error):
            if run.memory is not None:
                run.memory.close()
                run.memory = None
            run.memory_failed += 1
            return {}


class OpenArenaAimer:
    """A scripted player that cheats: it reads every player's position from the game's memory, turns the right
    stick towards the nearest living bot and pulls the right trigger when it is on target and near (it does not
    know about walls). It recorded the OpenArena tasks' solutions (`scripts/openarena_solutions.py`); the
    recorded gamepad then replays them without it. For the gamepad profile (PadProfile: 4 degrees per step at
    full deflection, dead zone 0.05)."""

    name = "openarena-aimer"

    def __init__(self, env: Any, reach: float = 900.0, gain: float = 0.6) -> None:
        self.env, self.reach, self.gain = env.unwrapped, reach, gain
        self._step = 0

    def reset(self, seed: int | None = None) -> None:
        self._step = 0

    def act(self, frame: np.ndarray) -> ActionChunk:
        self._step += 1
        game = self.env.native_game
        players = game.reader.players(self.env._session.home)
        me = players.get(PLAYER)
        if me is None or not me["alive"]:  # dead: fire respawns
            return ActionChunk.stack([Gamepad.make(["right_trigger"] if self._step % 2 else [])])
        best = None
        for name, other in players.items():
            if name == PLAYER or not other["alive"]:
                continue
            dx, dy, dz = other["x"] - me["x"], other["y"] - me["y"], other["z"] - me["z"]
            d = math.hypot(dx, dy)
            if best is None or d < best[0]:
                best = (d, math.degrees(math.atan2(dy, dx)), -math.degrees(math.atan2(dz, max(d, 1.0))))
        if best is None:
            return ActionChunk.stack([Gamepad.neutral()])
        d, yaw, pitch = best
        yaw_error = (yaw - me["yaw"] + 180.0) % 360.0 - 180.0
        pitch_error = pitch - ((me["pitch"] + 180.0) % 360.0 - 180.0)

        def stick(error: float) -> float:  # degrees to turn -> deflection (a share of 4 degrees per step)
            share = min(1.0, self.gain * abs(error) / 4.0)
            return 0.0 if share < 0.02 else math.copysign(0.05 + 0.95 * share, error)

        fire = abs(yaw_error) < 5.0 and abs(pitch_error) < 10.0 and d < self.reach
        # right stick right turns right (yaw decreases); down looks down (pitch increases)
        return ActionChunk.stack([Gamepad.make(["right_trigger"] if fire else [],
                                               j_right=(-stick(yaw_error), stick(pitch_error)))])


def _pid(home: Path) -> int | None:
    try:
        pid = int((home / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


ARROWS = StickKeys("w", "s", "a", "d")

OPENARENA = NativeGame(
    name="openarena",
    command=openarena_command(),
    window_class="ioquake3",
    # SDL's relative mouse mode by warping the pointer back to the window's centre (not XInput2 raw motion, whose
    # first event after the pointer was placed on the window would turn the view by the pointer's position)
    env={"SDL_MOUSE_RELATIVE_MODE_WARP": "1"},
    files={f"{HOME}/baseoa/autoexec.cfg": _CONFIG, f"{HOME}/qkey": _QKEY},
    profile=InputProfile(
        buttons={"right_trigger": "mouse1", "left_trigger": "mouse2", "south": "space", "east": "c",
                 "west": "Return", "north": "e", "right_shoulder": "e", "left_shoulder": "q", "back": "Tab",
                 "left_thumb": "Shift_L", "dpad_up": "e", "dpad_down": "q"},
        left_stick=ARROWS,
        right_stick=StickMouse(pixels=36.0, dead_zone=0.1),  # sensitivity 5 x m_yaw 0.022: 4 degrees per step
    ),
    fps=60.0,
    warmup_frames=60,
    view="3d",
    description=f"OpenArena free-for-all on {MAP} against the bots {' and '.join(b for b, _ in BOTS)} (3D shooter)",
    packages=("openarena",),
    reader=OpenArenaReader(),
    pad=PadProfile("sdl", files={f"{HOME}/baseoa/autoexec.cfg": _PAD_CONFIG}),
)
