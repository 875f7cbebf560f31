"""Minetest (Luanti) as a native game: Debian's `minetest` 5.6 with Minetest Game, started straight into a world
with a fixed map seed (a procedurally generated voxel world, creative mode, no damage), made afresh in the private
home at every reset. It runs as a local server on a free loopback port and its client, the player "azote" being
the server's admin (all privileges, as in singleplayer; see `MinetestGame`).

`info` comes from the game's own state: a small mod, written into the world's `worldmods/`, rewrites a file in the
world directory every server step and whenever a node is dug or placed, with the player's position (`x`, `y`,
`z`: feet, in nodes; y is up), look direction (`yaw`, `pitch`: radians), `hp`, `breath`, the nodes the player has
`dug` and `placed` since the start, and `time_of_day` (0..1, held still). Mod security lets mods write inside the
world directory, so the mod needs no trust. The position is the server's: the client sends it every frame
(`dedicated_server_step` below one frame), so it is that of the frame just shown.

Minetest runs a server, map generation, two network connections and a mesh builder on threads of their own beside
the main (client) thread. Under the clock shim's plain lockstep those run in real time next to a main thread in
virtual time, and frames differ from run to run: the world appears at a different frame, packets and meshes
arrive half-way through frames. So the game runs with the shim's settling (`AZOTE_SETTLE`): the other threads
take their turn between frames (before a frame is shown, and after the next one is released) and the main thread
goes on only once they are idle; their timed waits run on virtual time. Lua's string-hash seed comes from a fixed
entropy stream (`AZOTE_FIXED_ENTROPY`), and the network sends at most 32 packets per iteration, so that no burst
overflows the loopback socket's buffer (a lost packet is resent after a timeout, and the world then loads at
another frame). Same inputs from reset: identical frames, whatever the pauses between steps or the machine's
load; `info` too, but for a rare step where the server saw the position one frame late.

Input: the game reads a Linux joystick (Irrlicht opens /dev/input/js0, which the shim answers) in its Xbox
layout: left stick walks and right stick looks (both analog), A jumps, left trigger digs, right trigger places,
the shoulders pick the hotbar slot, X and the left stick button are "aux1" (fast in creative), the right stick
button sneaks, Y opens the inventory, and B, back and start open the pause menu (the game goes on behind it; B
again closes it). The d-pad: up drops the wielded item, down takes a screenshot, left zooms, right toggles
flying. With `gamepad=False`: keys and mouse in the same layout, without the pause menu.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from azote.envs.native.game import InputProfile, NativeGame, PadProfile, StickKeys, StickMouse

WORLD = ".minetest/worlds/azote"  # in the private home
INFO_FILE = "azote_info.txt"  # in the world directory
SEED = 1  # the map seed: spawn on a savanna (x 0, z 64)
CONFIG = ".minetest/minetest.conf"

# Windowed at the env's size, no sound, fixed-function GL (software GL: no shaders, clouds, particles, smooth
# lighting, filtering), a short view range, no pause when the window loses focus, a frozen time of day (10:00), no
# ABMs or node timers (grass spreading and saplings growing at random would change the world), creative mode
# without damage, one map-generation thread, a small area generated and sent around the player.
_CONF = """screen_w = {width}
screen_h = {height}
fullscreen = false
vsync = false
enable_sound = false
video_driver = opengl
enable_shaders = false
enable_clouds = false
enable_3d_clouds = false
enable_particles = false
enable_minimap = false
smooth_lighting = false
mip_map = false
anisotropic_filter = false
bilinear_filter = false
trilinear_filter = false
viewing_range = 40
fps_max = 1000
fps_max_unfocused = 1000
pause_on_lost_focus = false
show_debug = false
hud_scaling = 0.5
gui_scaling = 0.5
fixed_map_seed = {seed}
mg_name = v7
creative_mode = true
enable_damage = false
time_speed = 0
world_start_time = 10000
abm_interval = 1000000
nodetimer_interval = 1000000
disable_anticheat = true
num_emerge_threads = 1
max_block_send_distance = 4
max_block_generate_distance = 4
active_block_range = 2
server_map_save_interval = 100000
dedicated_server_step = 0.016
max_packets_per_iteration = 32
bind_address = 127.0.0.1
name = azote
menu_last_game = minetest
enable_joysticks = {joystick}
joystick_type = xbox
"""

_WORLD_MT = """gameid = minetest
backend = dummy
player_backend = sqlite3
auth_backend = sqlite3
mod_storage_backend = sqlite3
creative_mode = true
enable_damage = false
"""

_MOD_CONF = "name = azote_info\ndescription = Writes the player's state for Azote's reader\n"

_MOD = """-- Azote: the player's state for the environment's reader, rewritten every server step and whenever a node is dug
-- or placed (to a temporary file, then renamed over the old one: the reader never sees half a file).
local path = minetest.get_worldpath() .. "/%(file)s"
local tmp = path .. ".tmp"
local dug, placed = 0, 0

-- as in singleplayer, no server status and "joined the game" in the chat at the start (the game runs as a local server)
minetest.get_server_status = function() return "" end
minetest.send_join_message = function() end

local function write()
  local player = minetest.get_connected_players()[1]
  if not player then return end
  local p = player:get_pos()
  local f = io.open(tmp, "w")
  if not f then return end
  f:write(string.format("x=%%.4f\\ny=%%.4f\\nz=%%.4f\\nyaw=%%.5f\\npitch=%%.5f\\nhp=%%d\\nbreath=%%d\\n" ..
    "dug=%%d\\nplaced=%%d\\ntime_of_day=%%.5f\\n",
    p.x, p.y, p.z, player:get_look_horizontal(), player:get_look_vertical(), player:get_hp(), player:get_breath(),
    dug, placed, minetest.get_timeofday()))
  f:close()
  os.rename(tmp, path)
end

minetest.register_on_dignode(function(pos, oldnode, digger)
  if digger and digger:is_player() then dug = dug + 1; write() end
end)
minetest.register_on_placenode(function(pos, newnode, placer)
  if placer and placer:is_player() then placed = placed + 1; write() end
end)
minetest.register_globalstep(function(dtime) write() end)
""" % {"file": INFO_FILE}

INFO_VARIABLES = {"x": 0.0, "y": 0.0, "z": 0.0, "yaw": 0.0, "pitch": 0.0, "hp": 0, "breath": 0, "dug": 0, "placed": 0,
                  "time_of_day": 0.0}


def minetest_info(frame: np.ndarray, home: Path) -> dict[str, Any]:
    """The player's state as the world's mod last wrote it (the defaults, zeros, before the player joined)."""
    out = dict(INFO_VARIABLES)
    try:
        text = (home / WORLD / INFO_FILE).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in out:
            try:
                out[key] = type(out[key])(float(value))
            except ValueError:
                pass
    return out


def _files(joystick: bool) -> dict[str, str]:
    # NativeGame.files are format strings ({home}, {width}, {height}): braces of the Lua text doubled
    return {
        CONFIG: _CONF.replace("{seed}", str(SEED)).replace("{joystick}", "true" if joystick else "false"),
        f"{WORLD}/world.mt": _WORLD_MT,
        f"{WORLD}/worldmods/azote_info/mod.conf": _MOD_CONF,
        f"{WORLD}/worldmods/azote_info/init.lua": _MOD.replace("{", "{{").replace("}", "}}"),
    }


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class MinetestGame(NativeGame):
    """Minetest's own server listens on a UDP port of the loopback interface. In its "simple singleplayer" mode the
    port is drawn from a generator seeded with the (virtual, so always the same) clock, and a second Minetest on
    the machine fails to bind it: the game runs as a local server with its player "azote" (the server's admin: all
    privileges, as in singleplayer) on a port that is free when it starts."""

    def argv(self, **values: Any) -> list[str]:
        return [*super().argv(**values), "--port", str(_free_udp_port())]


MINETEST = MinetestGame(
    name="minetest",
    # --go --world --name: a local server in that world (created at the first start) and its client, no main menu
    command=("minetest", "--go", "--world", "{home}/" + WORLD, "--gameid", "minetest", "--name", "azote",
             "--config", "{home}/" + CONFIG),
    window_class="minetest",
    files=_files(joystick=False),
    # keys and mouse (gamepad=False): Minetest's default keys in the pad's layout, the right stick moves the mouse
    profile=InputProfile(
        buttons={"south": "space", "left_trigger": "mouse1", "right_trigger": "mouse3", "west": "e", "left_thumb": "e",
                 "right_thumb": "Shift_L", "north": "i", "left_shoulder": "b", "right_shoulder": "n",
                 "dpad_up": "q", "dpad_left": "z", "dpad_right": "k"},
        left_stick=StickKeys("w", "s", "a", "d"),
        right_stick=StickMouse(16.0),
    ),
    fps=60.0,
    warmup_frames=30,
    start_inputs=(((), 320),),  # media, the world and the map around the player load (about 270 frames)
    view="3d",
    description="Minetest (Minetest Game), a fixed-seed singleplayer world in creative mode: walk, look, dig and place",
    packages=("minetest",),
    reader=minetest_info,
    env={"AZOTE_SETTLE": "1", "AZOTE_FIXED_ENTROPY": "1"},
    pad=PadProfile("js", files={CONFIG: _files(joystick=True)[CONFIG]}),
)
