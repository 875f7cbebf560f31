"""Serving and playing: a safe inference server, its client, real-time play and keyboard/mouse profiles.

Server
    `PolicyServer(policy, host="127.0.0.1", port=5555, token=None, limits=Limits())` (`.start()` in a thread,
    `.serve_forever()`), `load_server(checkpoint_dir, device=...)`. ZeroMQ ROUTER + msgpack; arrays as raw bytes
    with a whitelisted dtype and a shape checked against the byte length; nothing is ever unpickled. Predictions
    that arrive together share one forward pass. `azote serve CKPT --port P`.
Protocol
    `azote.serving.protocol`: message layout, `Limits`, `ProtocolError`, `encode_array` / `decode_array`.
Client
    `ServeClient(address, token=, timeout=, retries=)`: `ping`, `info`, `reset`, `predict`; a timed-out REQ socket
    is replaced before the retry. `RemotePolicy(address, game=)`: the same as an `Agent` (what
    `tcp://HOST:PORT` policy specs make).
Playing
    `play(env, agent, out, PlayOptions(...))`: clean and debug videos, actions.jsonl, summary.json; lockstep (whole
    chunks or the first `execute` actions) or real time (`RealtimeRunner`, `ActionSchedule`: the game runs on a
    wall clock, the policy plans in a background thread, overlapping chunks are cross-faded).
Keyboard and mouse
    `KeyMouseProfile` (`load_profile("wasd")` or a JSON/YAML file), `KeyMouseMapper`: gamepad -> keys held,
    presses, releases and mouse motion.
"""

from azote.serving.client import Prediction, RemotePolicy, ServeClient, ServeError, ServeTimeout
from azote.serving.keymouse import (
    PROFILES,
    KeyMouseAction,
    KeyMouseMapper,
    KeyMouseProfile,
    ProfileError,
    StickToKeys,
    StickToMouse,
    load_profile,
)
from azote.serving.play import PlayOptions, play
from azote.serving.protocol import PROTOCOL_VERSION, Limits, ProtocolError, decode_array, encode_array
from azote.serving.realtime import ActionSchedule, RealtimeRunner, RealtimeStats
from azote.serving.server import DEFAULT_PORT, PolicyServer, load_server

__all__ = [
    "DEFAULT_PORT", "PROFILES", "PROTOCOL_VERSION", "ActionSchedule", "KeyMouseAction", "KeyMouseMapper",
    "KeyMouseProfile", "Limits", "PlayOptions", "PolicyServer", "Prediction", "ProfileError", "ProtocolError",
    "RealtimeRunner", "RealtimeStats", "RemotePolicy", "ServeClient", "ServeError", "ServeTimeout", "StickToKeys",
    "StickToMouse", "decode_array", "encode_array", "load_profile", "load_server", "play",
]
