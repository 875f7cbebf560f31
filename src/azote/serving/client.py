"""Clients of `azote serve`: `ServeClient` (requests, timeouts, reconnection) and `RemotePolicy` (an `Agent`).

A ZeroMQ REQ socket that timed out is stuck (it must receive before it may send again), so after a timeout the
client closes it and connects a new one before it retries.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import zmq

from azote.errors import AzoteError
from azote.gamepad import BUTTONS, ActionChunk
from azote.serving.protocol import PROTOCOL_VERSION, Limits, ProtocolError, decode_array, encode_array, pack, unpack

TOKEN_ENV = "AZOTE_SERVE_TOKEN"
_REPLY_LIMIT = Limits().hard_message_bytes


class ServeError(AzoteError, RuntimeError):
    """The server answered with an error (`code` is one of `azote.serving.protocol.ERROR_CODES`)."""

    def __init__(self, code: str, message: str, address: str) -> None:
        super().__init__(f"{address}: {code}: {message}")
        self.code, self.message, self.address = code, message, address


class ServeTimeout(AzoteError, TimeoutError):
    """No reply within the timeout, after every retry."""


@dataclass
class Prediction:
    """A `predict` reply: raw model vectors [B, H, A], one `ActionChunk` per observation, and timings."""

    actions: np.ndarray
    chunks: list[ActionChunk]
    single: bool
    batch_size: int
    infer_ms: float
    round_trip_ms: float


def parse_address(address: str) -> str:
    """`tcp://HOST:PORT` (checked), as ZeroMQ wants it."""
    if not address.startswith("tcp://"):
        raise ValueError(f"server address must look like tcp://HOST:PORT, got {address!r}")
    host, sep, port = address[len("tcp://"):].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"server address must look like tcp://HOST:PORT with a port in 1..65535, got {address!r}")
    return address


class ServeClient:
    """Requests to one server. Each request waits `timeout` seconds for its reply; on a timeout the socket is
    recreated and the request sent again, `retries` more times, then `ServeTimeout`. Thread-safe (one request at
    a time). The token defaults to the AZOTE_SERVE_TOKEN environment variable."""

    def __init__(self, address: str, *, token: str | None = None, timeout: float = 30.0, retries: int = 1) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.address = parse_address(address)
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout, self.retries = timeout, retries
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.reconnects = 0

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self._ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, _REPLY_LIMIT)  # a hostile server cannot make us read gigabytes
            if "[" in self.address:
                sock.setsockopt(zmq.IPV6, 1)
            sock.connect(self.address)
            self._sock = sock
        return self._sock

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def request(self, message: dict[str, Any], timeout: float | None = None, retries: int | None = None) -> dict[str, Any]:
        """Sends one request and returns the reply map; `ServeError` for an error reply."""
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        with self._lock:
            rid = next(self._ids)
            body = {"v": PROTOCOL_VERSION, "id": rid, **message}
            if self.token:
                body["token"] = self.token
            data = pack(body)
            for _ in range(retries + 1):
                reply = self._exchange(data, timeout)
                if reply is not None:
                    return self._check(reply)
                self._drop_socket()  # a REQ socket that timed out cannot send again: connect a new one
                self.reconnects += 1
            raise ServeTimeout(
                f"no reply from {self.address} within {timeout:g} s ({retries + 1} tries); is `azote serve` running there?"
            )

    def _exchange(self, data: bytes, timeout: float) -> dict[str, Any] | None:
        """Sends on the REQ socket and waits for the one reply; None on a timeout."""
        try:
            sock = self._socket()
            sock.send(data)
        except zmq.ZMQError:  # a socket left mid-exchange (e.g. by an interrupt): start afresh
            self._drop_socket()
            sock = self._socket()
            sock.send(data)
        if not sock.poll(max(1, int(timeout * 1000))):
            return None
        return self._reply(sock.recv())

    def _reply(self, data: bytes) -> dict[str, Any]:
        try:
            return unpack(data, _REPLY_LIMIT)
        except ProtocolError as exc:
            raise ServeError("bad_message", f"unreadable reply ({exc.message})", self.address) from None

    def _check(self, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("ok") is True:
            return reply
        err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        raise ServeError(str(err.get("code", "bad_message")), str(err.get("message", "malformed error reply")), self.address)

    # --- requests -------------------------------------------------------------------------------------------
    def ping(self, timeout: float | None = None) -> float:
        """Round-trip time in seconds."""
        t0 = time.perf_counter()
        self.request({"type": "ping"}, timeout=timeout)
        return time.perf_counter() - t0

    def info(self) -> dict[str, Any]:
        reply = self.request({"type": "info"})
        return {k: v for k, v in reply.items() if k not in ("ok", "type", "id")}

    def reset(self, seed: int | None = None) -> None:
        self.request({"type": "reset", **({"seed": int(seed)} if seed is not None else {})})

    def predict(
        self,
        frames: Any,
        *,
        seed: int | Sequence[int] | None = None,
        game: str | None = None,
        game_id: int | None = None,
    ) -> Prediction:
        """One observation (`[H, W, 3]` uint8), a batch (`[B, H, W, 3]`) or a list of observations of any sizes."""
        if isinstance(frames, (list, tuple)):
            wire: Any = [encode_array(np.asarray(f)) for f in frames]
        else:
            wire = encode_array(np.asarray(frames))
        message: dict[str, Any] = {"type": "predict", "frames": wire}
        if seed is not None:
            message["seed"] = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed)
        if game is not None:
            message["game"] = game
        if game_id is not None:
            message["game_id"] = int(game_id)
        t0 = time.perf_counter()
        reply = self.request(message)
        rtt = (time.perf_counter() - t0) * 1000
        try:
            actions = decode_array(reply.get("actions"), "actions", ("float32",))
            chunks = _chunks(reply.get("gamepad"), actions)
        except ProtocolError as exc:
            raise ServeError("bad_message", f"malformed predict reply: {exc.message}", self.address) from None
        return Prediction(np.array(actions), chunks, bool(reply.get("single")), int(reply.get("batch_size", 0)),
                          float(reply.get("infer_ms", 0.0)), rtt)

    def close(self) -> None:
        with self._lock:
            self._drop_socket()
            self._ctx.term()

    def __enter__(self) -> "ServeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _chunks(gamepad: Any, actions: np.ndarray) -> list[ActionChunk]:
    """The named gamepad arrays of a reply -> one `ActionChunk` per observation (from the model vectors when the
    server sent no named fields, e.g. for a model whose action vector is not the gamepad's)."""
    if actions.ndim != 3:
        raise ProtocolError("bad_array", f"actions: expected [B, H, A], got shape {list(actions.shape)}")
    if gamepad is None:
        return [ActionChunk.from_model_vectors(v) for v in actions]
    if not isinstance(gamepad, dict):
        raise ProtocolError("bad_array", "gamepad: expected a map of named arrays")
    b, h = actions.shape[:2]
    missing = [k for k in (*BUTTONS, "j_left", "j_right") if k not in gamepad]
    if missing:
        raise ProtocolError("bad_array", f"gamepad: missing fields {missing[:4]}")
    buttons = np.stack([decode_array(gamepad[n], n, ("uint8",)) for n in BUTTONS], axis=-1)
    j_left = decode_array(gamepad["j_left"], "j_left", ("float32",))
    j_right = decode_array(gamepad["j_right"], "j_right", ("float32",))
    if buttons.shape != (b, h, len(BUTTONS)) or j_left.shape != (b, h, 2) or j_right.shape != (b, h, 2):
        raise ProtocolError("bad_array", f"gamepad: shapes {buttons.shape}, {j_left.shape}, {j_right.shape} do not match actions {actions.shape}")
    return [ActionChunk.from_arrays(buttons[i], j_left[i], j_right[i]) for i in range(b)]


class RemotePolicy:
    """A policy served by `azote serve`, as an `Agent`. Like the in-process `Policy`, the call with index c
    (from 1) in an episode of seed s samples with seed `s * 1_000_003 + c`, so both play the same episode.

    `game`: the game's id (e.g. "atari/Pong"), for a checkpoint trained with game tokens."""

    name = "remote"

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        game: str | None = None,
        seed: int | None = None,
        timeout: float = 30.0,
        retries: int = 1,
    ) -> None:
        self.client = ServeClient(address, token=token, timeout=timeout, retries=retries)
        self.game = game
        self._seed, self._calls = seed or 0, 0
        self.last: Prediction | None = None

    @property
    def address(self) -> str:
        return self.client.address

    def reset(self, seed: int | None = None) -> None:
        self._seed, self._calls = (seed if seed is not None else self._seed), 0
        self.client.reset(self._seed)  # fails early (unreachable server, wrong token) rather than mid-episode

    def _next_seed(self) -> int:
        self._calls += 1
        return (self._seed * 1_000_003 + self._calls) % (2**63)

    def act(self, frame: np.ndarray) -> ActionChunk:
        self.last = self.client.predict(np.asarray(frame), seed=[self._next_seed()], game=self.game)
        return self.last.chunks[0]

    def act_batch(self, frames: Sequence[np.ndarray]) -> list[ActionChunk]:
        seeds = [self._next_seed() for _ in frames]
        self.last = self.client.predict(list(frames), seed=seeds, game=self.game)
        return self.last.chunks

    def info(self) -> dict[str, Any]:
        return self.client.info()

    def close(self) -> None:
        self.client.close()
