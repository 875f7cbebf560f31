"""Serving over the network: a safe inference server and its client (local play is `azote.play`).

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
"""

from azote.serving.client import Prediction, RemotePolicy, ServeClient, ServeError, ServeTimeout
from azote.serving.protocol import PROTOCOL_VERSION, Limits, ProtocolError, decode_array, encode_array
from azote.serving.server import DEFAULT_PORT, PolicyServer, load_server

__all__ = [
    "DEFAULT_PORT", "PROTOCOL_VERSION", "Limits", "PolicyServer", "Prediction", "ProtocolError", "RemotePolicy",
    "ServeClient", "ServeError", "ServeTimeout", "decode_array", "encode_array", "load_server",
]
