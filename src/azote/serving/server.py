"""`PolicyServer`: a policy behind a ZeroMQ ROUTER socket, msgpack messages (see `azote.serving.protocol`).

One thread receives, validates and answers. Predictions that arrive together (while the previous forward pass ran,
or within `batch_window_s` of each other) go through the model in one forward pass. Any message that is not a
valid request gets an error reply and the loop goes on; an exception inside a batched pass is retried request by
request so that one bad request cannot fail the others.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import zmq

from azote.gamepad import BUTTON_SLOTS, BUTTONS, J_LEFT_SLOTS, J_RIGHT_SLOTS, MODEL_ACTION_DIM
from azote.policy.checkpoint import game_token
from azote.policy.sampling import initial_noise
from azote.serving.protocol import (
    MAX_GAME_CHARS,
    PROTOCOL_VERSION,
    Limits,
    ProtocolError,
    check_envelope,
    check_seed,
    decode_array,
    encode_array,
    error_reply,
    pack,
    request_id,
    unpack,
)

log = logging.getLogger("azote.serving")
DEFAULT_PORT = 5555
_MAX_ENVELOPE = 8  # routing frames before the empty delimiter (REQ through a few proxies)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a host name: treat as reachable from outside


@dataclass
class _Job:
    """A validated `predict` request waiting for its forward pass."""

    envelope: list[bytes]
    rid: Any
    observations: list[np.ndarray]
    noise: torch.Tensor | None  # [B, H, A]: fixed by the request's seeds, else drawn at pass time
    game_ids: list[int | None]
    single: bool
    received: float = field(default_factory=time.perf_counter)


class PolicyServer:
    """Serves one `azote.policy.Policy`.

    `games`: the checkpoint's game list (its `games.json`), so that a request naming a game gets its token.
    Binding to anything but loopback needs a `token` (anyone who can reach the port could otherwise use the model).
    """

    def __init__(
        self,
        policy: Any,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        limits: Limits | None = None,
        batch_window_s: float = 0.002,
        games: Sequence[str] | None = None,
        name: str = "",
    ) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(
                f"binding to {host} makes the policy reachable from other machines; set a shared token "
                "(--token-file or AZOTE_SERVE_TOKEN) or bind to 127.0.0.1"
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (0: any free port), got {port}")
        if batch_window_s < 0:
            raise ValueError(f"batch_window_s must be >= 0, got {batch_window_s}")
        self.policy = policy
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.token = token or None
        self.limits = limits or Limits()
        self.batch_window_s = batch_window_s
        self.games = list(games or [])
        self.name = name or policy.config.name
        cfg = policy.config
        self._obs_ndim = 3 if cfg.num_frames == 1 else 4
        self._generator = torch.Generator().manual_seed(0)  # for requests without a seed
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: Counter[str] = Counter()
        self._started = time.time()

    # --- lifecycle ------------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def bind(self) -> str:
        """Binds the socket (port 0: a free port, then `self.port` says which); returns the address."""
        if self._sock is not None:
            return self.address
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.hard_message_bytes)  # bigger: the peer is dropped unread
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        if ":" in self.host:
            sock.setsockopt(zmq.IPV6, 1)
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            if self.port == 0:
                self.port = sock.bind_to_random_port(f"tcp://{host}")
            else:
                sock.bind(f"tcp://{host}:{self.port}")
        except zmq.ZMQError as exc:
            sock.close(0)
            self._ctx.term()
            self._sock = self._ctx = None
            raise OSError(f"cannot listen on {self.address}: {exc}") from None
        self._sock = sock
        return self.address

    def serve_forever(self, stop: threading.Event | None = None, poll_ms: int = 100) -> None:
        """Answers requests until `stop` (or `self.stop()`) is set; binds first if needed."""
        self.bind()
        stop = stop or self._stop
        assert self._sock is not None
        sock = self._sock
        try:
            while not stop.is_set() and not self._stop.is_set():
                if not sock.poll(poll_ms):
                    continue
                jobs = self._collect(sock)
                if jobs:
                    self._run(jobs)
        finally:
            self._close_socket()

    def start(self) -> "PolicyServer":
        """Serves in a background thread (for tests, benchmarks and embedding); returns self once bound."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="azote-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- the loop -------------------------------------------------------------------------------------------
    def _collect(self, sock: zmq.Socket) -> list[_Job]:
        """Receives what is waiting (and what arrives within the batch window while predictions are pending);
        answers everything but predictions at once."""
        jobs: list[_Job] = []
        observations, deadline = 0, None
        for _ in range(64 * self.limits.max_batch):  # bounded: a flood of small messages cannot starve the model
            if not sock.poll(0):
                if not jobs or observations >= self.limits.max_batch:
                    break
                now = time.perf_counter()
                if deadline is None:
                    deadline = now + self.batch_window_s
                if deadline <= now or not sock.poll(max(1, int((deadline - now) * 1000 + 0.5))):
                    break
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                continue
            job = self._receive(sock, frames)
            if job is not None:
                jobs.append(job)
                observations += len(job.observations)
        return jobs

    def _receive(self, sock: zmq.Socket, frames: list[bytes]) -> _Job | None:
        envelope, body = _split_envelope(frames)
        self.stats["messages"] += 1
        if len(body) != 1:
            self._send(sock, envelope, error_reply("bad_message", f"expected one message frame, got {len(body)}"))
            return None
        try:
            result = self.handle(body[0], envelope)
        except Exception:  # a bug in validation must not take the server down
            log.exception("internal error while handling a request")
            self.stats["error:internal"] += 1
            result = error_reply("internal", "the server failed to handle the request (see its log)")
        if isinstance(result, _Job):
            return result
        self._send(sock, envelope, result)
        return None

    def _send(self, sock: zmq.Socket | None, envelope: list[bytes], reply: dict[str, Any]) -> None:
        if sock is None:
            return
        try:
            sock.send_multipart([*envelope, pack(reply)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone or its queue is full: nothing to do
            log.debug("reply dropped: %s", exc)

    # --- requests -------------------------------------------------------------------------------------------
    def handle(self, data: bytes, envelope: list[bytes] | None = None) -> dict[str, Any] | _Job:
        """One request's bytes -> its reply, or a `_Job` for the next forward pass. Never raises `ProtocolError`."""
        rid = None
        try:
            message = unpack(data, self.limits.max_message_bytes)
            rid = request_id(message)
            kind = check_envelope(message)
            self._check_token(message.get("token"))
            self.stats[f"request:{kind}"] += 1
            if kind == "ping":
                return {"ok": True, "type": "pong", "time": time.time(), "id": rid}
            if kind == "info":
                return {"ok": True, "type": "info", "id": rid, **self.info()}
            if kind == "reset":
                if "seed" in message and message["seed"] is not None:
                    check_seed(message["seed"])
                return {"ok": True, "type": "reset", "id": rid}
            return self._predict_job(message, envelope or [], rid)
        except ProtocolError as exc:
            self.stats[f"error:{exc.code}"] += 1
            log.debug("rejected a request: %s: %s", exc.code, exc.message)
            return error_reply(exc.code, exc.message, rid)

    def _check_token(self, token: Any) -> None:
        if self.token is None:
            return
        given = token.encode() if isinstance(token, str) else b""
        if not hmac.compare_digest(given, self.token.encode()):
            raise ProtocolError("unauthorized", "missing or wrong token")

    def info(self) -> dict[str, Any]:
        c = self.policy.config
        passes = self.stats["forward_passes"]
        return {
            "server": "azote",
            "protocol": PROTOCOL_VERSION,
            "model": {
                "name": self.name, "horizon": c.action_horizon, "action_dim": c.action_dim,
                "image_size": c.vision.image_size, "num_frames": c.num_frames, "action_shift": c.action_shift,
                "num_games": c.num_games, "games": self.games, "num_inference_timesteps": c.num_inference_timesteps,
            },
            "buttons": list(BUTTONS),
            "device": str(self.policy.device),
            "limits": self.limits.as_dict(),
            "batch_window_ms": self.batch_window_s * 1000,
            "token_required": self.token is not None,
            "stats": {
                **dict(self.stats),
                "mean_batch": (self.stats["batched_observations"] / passes) if passes else 0.0,
                "uptime_s": round(time.time() - self._started, 1),
            },
        }

    def _predict_job(self, message: dict[str, Any], envelope: list[bytes], rid: Any) -> _Job:
        if "frames" not in message:
            raise ProtocolError("bad_request", "predict needs 'frames': one observation, a batch or a list of them")
        observations, single = self._observations(message["frames"])
        n = len(observations)
        noise = self._noise(message.get("seed"), n)
        game_ids = [self._game_id(message)] * n
        return _Job(envelope, rid, observations, noise, game_ids, single)

    def _observations(self, frames: Any) -> tuple[list[np.ndarray], bool]:
        lim, nd = self.limits, self._obs_ndim
        if isinstance(frames, dict):
            arr = decode_array(frames, "frames", ("uint8",), lim.max_message_bytes)
            if arr.ndim == nd:
                obs, single = [arr], True
            elif arr.ndim == nd + 1:
                obs, single = list(arr), False
            else:
                raise ProtocolError("bad_array", f"frames: expected {self._obs_shape()} or a batch of them, got shape {list(arr.shape)}")
        elif isinstance(frames, list):
            if len(frames) > lim.max_batch:
                raise ProtocolError("too_large", f"frames: {len(frames)} observations, the limit is {lim.max_batch}")
            obs = [decode_array(f, f"frames[{i}]", ("uint8",), lim.max_message_bytes) for i, f in enumerate(frames)]
            single = False
        else:
            raise ProtocolError("bad_request", f"frames: expected an array map or a list of them, got {type(frames).__name__}")
        if not obs:
            raise ProtocolError("bad_request", "frames: no observations")
        if len(obs) > lim.max_batch:
            raise ProtocolError("too_large", f"frames: {len(obs)} observations, the limit is {lim.max_batch}")
        for i, o in enumerate(obs):
            self._check_observation(o, f"frames[{i}]")
        return obs, single

    def _obs_shape(self) -> str:
        f = self.policy.config.num_frames
        return "[H, W, 3]" if f == 1 else f"[F, H, W, 3] with F from 1 to {f}"

    def _check_observation(self, obs: np.ndarray, what: str) -> None:
        lim, f = self.limits, self.policy.config.num_frames
        # fewer frames than the context at the start of an episode: the policy leaves the missing ones out
        if obs.ndim != self._obs_ndim or obs.shape[-1] != 3 or (f > 1 and not 1 <= obs.shape[0] <= f):
            raise ProtocolError("bad_array", f"{what}: expected {self._obs_shape()} uint8 RGB, got shape {list(obs.shape)}")
        h, w = obs.shape[-3], obs.shape[-2]
        if not (lim.min_image_side <= h <= lim.max_image_side and lim.min_image_side <= w <= lim.max_image_side):
            raise ProtocolError("too_large" if max(h, w) > lim.max_image_side else "bad_array",
                                f"{what}: image {h}x{w}; each side must lie in [{lim.min_image_side}, {lim.max_image_side}]")
        if h * w > lim.max_image_pixels:
            raise ProtocolError("too_large", f"{what}: image {h}x{w} has {h * w} pixels, the limit is {lim.max_image_pixels}")

    def _noise(self, seed: Any, n: int) -> torch.Tensor | None:
        """Seeded noise, drawn as `Policy.predict(frames, seed=s)` (one int) or `Policy.act(frame, seed=s_i)` (one
        seed per observation) draws it, so a served prediction equals the in-process one."""
        model = self.policy.model
        if seed is None:
            return None
        if isinstance(seed, list):
            if len(seed) != n:
                raise ProtocolError("bad_request", f"seed: {len(seed)} seeds for {n} observations")
            seeds = [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
            return torch.cat([initial_noise(model, 1, torch.Generator().manual_seed(s)) for s in seeds])
        return initial_noise(model, n, torch.Generator().manual_seed(check_seed(seed)))

    def _game_id(self, message: dict[str, Any]) -> int | None:
        num_games = self.policy.config.num_games
        if message.get("game_id") is not None:
            gid = message["game_id"]
            if num_games == 0:
                raise ProtocolError("unsupported", "game_id: this policy has no game token (its config's num_games is 0)")
            if type(gid) is not int or not 0 <= gid <= num_games:
                raise ProtocolError("bad_request", f"game_id must be an int in [0, {num_games}] (0: no game), got {str(gid)[:20]}")
            return gid
        game = message.get("game")
        if game is None:
            return None
        if not isinstance(game, str) or len(game) > MAX_GAME_CHARS:
            raise ProtocolError("bad_request", "game must be a game id string such as 'atari/Pong'")
        if num_games == 0:
            return None  # a model without game tokens plays every game the same way
        return game_token(self.games, game)  # 0: "no game", learned by game dropout

    # --- forward passes -------------------------------------------------------------------------------------
    def _run(self, jobs: list[_Job]) -> None:
        """Answers the jobs, packing them greedily into forward passes of at most `max_batch` observations."""
        group: list[_Job] = []
        size = 0
        for job in jobs:
            if group and size + len(job.observations) > self.limits.max_batch:
                self._run_group(group)
                group, size = [], 0
            group.append(job)
            size += len(job.observations)
        if group:
            self._run_group(group)

    def _run_group(self, jobs: list[_Job]) -> None:
        try:
            replies = self.predict_jobs(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                code = "bad_request" if isinstance(exc, ValueError) else "internal"
                if code == "internal":
                    log.exception("forward pass failed")
                self.stats[f"error:{code}"] += 1
                replies = [error_reply(code, f"prediction failed: {exc}", jobs[0].rid)]
            else:  # find the request that broke the batch; the others still get their answer
                for job in jobs:
                    self._run_group([job])
                return
        for job, reply in zip(jobs, replies):
            self._send(self._sock, job.envelope, reply)

    def predict_jobs(self, jobs: list[_Job]) -> list[dict[str, Any]]:
        """One forward pass for the jobs' observations together (`Policy.predict`), split into their replies."""
        t0 = time.perf_counter()
        observations = [o for job in jobs for o in job.observations]
        noise = torch.cat([job.noise if job.noise is not None else initial_noise(self.policy.model, len(job.observations), self._generator)
                           for job in jobs])
        ids = [g for job in jobs for g in job.game_ids]
        game_ids = None if all(g is None for g in ids) else [g or 0 for g in ids]
        out = self.policy.predict(observations, noise=noise, game_ids=game_ids)
        if not np.all(np.isfinite(out)):
            raise RuntimeError("the model produced non-finite actions")
        infer_ms = (time.perf_counter() - t0) * 1000
        self.stats["forward_passes"] += 1
        self.stats["batched_observations"] += len(observations)
        self.stats["predictions"] += len(jobs)
        replies, start = [], 0
        for job in jobs:
            n = len(job.observations)
            vectors = out[start:start + n]
            start += n
            reply: dict[str, Any] = {
                "ok": True, "type": "predict", "id": job.rid, "single": job.single, "actions": encode_array(vectors),
                "batch_size": len(observations), "infer_ms": round(infer_ms, 3),
            }
            if vectors.shape[-1] == MODEL_ACTION_DIM:
                reply["gamepad"] = gamepad_fields(vectors)
            replies.append(reply)
        return replies


def gamepad_fields(vectors: np.ndarray) -> dict[str, Any]:
    """Model vectors [..., 25] -> named wire arrays: each button [...] uint8 (pressed: > 0.5), and the sticks
    j_left / j_right [..., 2] float32 in [-1, 1] (the decoding of `ActionChunk.from_model_vectors`)."""
    buttons = (vectors[..., BUTTON_SLOTS] > 0.5).astype(np.uint8)
    fields = {name: encode_array(buttons[..., i]) for i, name in enumerate(BUTTONS)}
    fields["j_left"] = encode_array(np.clip(2.0 * vectors[..., J_LEFT_SLOTS] - 1.0, -1.0, 1.0).astype(np.float32))
    fields["j_right"] = encode_array(np.clip(2.0 * vectors[..., J_RIGHT_SLOTS] - 1.0, -1.0, 1.0).astype(np.float32))
    return fields


def _split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames -> (routing envelope up to and including the empty delimiter, message body)."""
    for i in range(1, min(len(frames), _MAX_ENVELOPE + 1)):
        if frames[i] == b"":
            return frames[: i + 1], frames[i + 1:]
    return frames[:1], frames[1:]  # a DEALER peer sends no delimiter


def load_server(checkpoint: str | Path, *, device: str = "cpu", **kwargs: Any) -> PolicyServer:
    """A server for a checkpoint directory (`config.json` + `model.safetensors`)."""
    from azote.policy import Policy
    from azote.policy.checkpoint import read_games  # the game vocabulary's one reader

    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no config.json)")
    policy = Policy.from_pretrained(path, device=device)
    return PolicyServer(policy, games=read_games(path), name=kwargs.pop("name", path.name), **kwargs)
