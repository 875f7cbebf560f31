"""The wire format of `azote serve`: msgpack maps, arrays as raw bytes with dtype and shape. Never pickle.

Every message is one msgpack map. Arrays travel as ``{"dtype": "uint8", "shape": [H, W, 3], "data": <bytes>}``
(little-endian, C order); the reader checks the dtype against a whitelist and the byte length against the shape
before it makes a (zero-copy, read-only) numpy view. Nothing in a message can name a class or a function: the
decoder only ever builds dicts, lists, strings, numbers, bytes and numpy arrays of plain dtypes.

Requests (``"type"``; every request may carry ``"token"``, ``"id"`` (echoed back) and ``"v"`` (protocol version)):

``ping``     -> ``{"ok": true, "type": "pong", "time": <server clock, s>}``
``info``     -> the model (name, horizon, action_dim, image_size, num_frames, games), limits, device, stats
``reset``    -> ``{"ok": true}``; optional ``"seed"``. The server keeps no state per client (clients send the seed
                of every prediction), so this only checks that the server and the token work.
``predict``  ``"frames"``: one observation (``[H, W, 3]`` uint8, or ``[F, H, W, 3]`` for a model with F context
                frames), a batch of them (one more leading axis) or a list of observations of any sizes;
                optional ``"seed"`` (an int, or one per observation), ``"game"`` (a game id such as
                ``"atari/Pong"``, mapped to the checkpoint's game token) or ``"game_id"`` (the token itself).
             -> ``"actions"`` [B, H, A] float32 (the model's vectors), ``"gamepad"``: named arrays, one per button
                ([B, H] uint8) plus ``"j_left"`` / ``"j_right"`` ([B, H, 2] float32), ``"single"`` (the request
                sent one observation), ``"batch_size"`` (observations in the forward pass that served it),
                ``"infer_ms"``.

Errors: ``{"ok": false, "error": {"code": ..., "message": ...}}`` with one of `ERROR_CODES`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np

from azote.errors import AzoteError

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("ping", "info", "reset", "predict")
ERROR_CODES = ("bad_message", "bad_request", "bad_array", "too_large", "unauthorized", "unsupported", "internal")

# Plain numeric dtypes only: an object dtype (or a structured one) could smuggle references or be reinterpreted.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("bool", "uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
}
MAX_NDIM = 6
MAX_SEED = 2**63 - 1
MAX_ID_CHARS = 128
MAX_GAME_CHARS = 256
MAX_TOKEN_CHARS = 4096


class ProtocolError(AzoteError, ValueError):
    """A message that breaks the protocol; `code` is one of `ERROR_CODES` and goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What the server accepts. Messages above `max_message_bytes` get a `too_large` reply; ZeroMQ drops the
    connection of a peer whose message exceeds twice that, before it is read into memory."""

    max_message_bytes: int = 64 * 2**20
    max_batch: int = 16  # observations per request (and per forward pass)
    max_image_side: int = 4096  # pixels, height and width
    max_image_pixels: int = 4096 * 2304  # height * width of one frame (4K UHD fits)
    min_image_side: int = 2

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")
        if self.min_image_side > self.max_image_side:
            raise ValueError(f"Limits.min_image_side {self.min_image_side} > max_image_side {self.max_image_side}")

    @property
    def hard_message_bytes(self) -> int:
        return 2 * self.max_message_bytes

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- arrays -------------------------------------------------------------------------------------------------
def encode_array(array: Any) -> dict[str, Any]:
    """A numpy array -> its wire form (little-endian, C order)."""
    arr = np.asarray(array)
    name = arr.dtype.name
    if name not in DTYPES:
        raise ProtocolError("bad_array", f"dtype {arr.dtype} cannot be sent; allowed: {', '.join(DTYPES)}")
    arr = np.ascontiguousarray(arr, dtype=DTYPES[name])
    return {"dtype": name, "shape": list(arr.shape), "data": arr.tobytes()}


def decode_array(obj: Any, what: str, dtypes: tuple[str, ...] | None = None, max_bytes: int | None = None) -> np.ndarray:
    """The wire form of an array -> a read-only numpy view of its bytes, after checking dtype, shape and length."""
    if not isinstance(obj, dict):
        raise ProtocolError("bad_array", f"{what}: expected an array map {{dtype, shape, data}}, got {_kind(obj)}")
    if set(obj) != {"dtype", "shape", "data"}:
        raise ProtocolError("bad_array", f"{what}: an array map has exactly the keys dtype, shape, data; got {sorted(map(str, obj))}")
    name, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(name, str) or name not in DTYPES:
        raise ProtocolError("bad_array", f"{what}: dtype {str(name)[:40]!r} is not allowed; allowed: {', '.join(dtypes or DTYPES)}")
    if dtypes is not None and name not in dtypes:
        raise ProtocolError("bad_array", f"{what}: dtype must be {' or '.join(dtypes)}, got {name}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise ProtocolError("bad_array", f"{what}: shape must be a list of at most {MAX_NDIM} ints, got {_kind(shape)}")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError("bad_array", f"{what}: shape entries must be non-negative ints, got {shape[:MAX_NDIM]}")
    if not isinstance(data, bytes):
        raise ProtocolError("bad_array", f"{what}: data must be bytes, got {_kind(data)}")
    dtype = DTYPES[name]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd shapes
    if max_bytes is not None and expected > max_bytes:
        raise ProtocolError("too_large", f"{what}: shape {shape} of {name} is {expected} bytes, above the limit of {max_bytes}")
    if len(data) != expected:
        raise ProtocolError("bad_array", f"{what}: shape {shape} of {name} needs {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


# --- messages -----------------------------------------------------------------------------------------------
def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("bad_message", f"msgpack extension types are not accepted (got type {code})")


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Bytes -> a message map, or `ProtocolError` (never anything else)."""
    if len(data) > max_bytes:
        raise ProtocolError("too_large", f"message of {len(data)} bytes is above the limit of {max_bytes}")
    if not data:
        raise ProtocolError("bad_message", "empty message")
    try:
        message = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_reject_ext, timestamp=0,
            max_str_len=1 << 20, max_array_len=1 << 16, max_map_len=1 << 10,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises ValueError, FormatError, StackError, UnicodeDecodeError, ...
        raise ProtocolError("bad_message", f"not a msgpack message ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", f"a message is a msgpack map, got {_kind(message)}")
    return message


def error_reply(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        reply["id"] = request_id
    return reply


# --- requests -----------------------------------------------------------------------------------------------
_COMMON_KEYS = {"type", "token", "id", "v"}
_KEYS = {
    "ping": _COMMON_KEYS,
    "info": _COMMON_KEYS,
    "reset": _COMMON_KEYS | {"seed"},
    "predict": _COMMON_KEYS | {"frames", "seed", "game", "game_id"},
}


def request_id(message: dict[str, Any]) -> Any:
    """The request's `id` if it is a short string or an int (what is echoed back), else None."""
    rid = message.get("id")
    if isinstance(rid, bool):
        return None
    if isinstance(rid, int) and abs(rid) <= MAX_SEED:
        return rid
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    return None


def check_envelope(message: dict[str, Any]) -> str:
    """The request type after checking the keys, the version and the id; `ProtocolError` otherwise."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in REQUEST_TYPES:
        raise ProtocolError("bad_request", f"unknown request type {str(kind)[:40]!r}; types are {', '.join(REQUEST_TYPES)}")
    unknown = sorted(str(k)[:40] for k in set(message) - _KEYS[kind])
    if unknown:
        raise ProtocolError("bad_request", f"{kind}: unknown keys {unknown[:8]}; allowed: {', '.join(sorted(_KEYS[kind]))}")
    if "v" in message and message["v"] != PROTOCOL_VERSION:
        raise ProtocolError("unsupported", f"protocol version {str(message['v'])[:20]!r}; this server speaks {PROTOCOL_VERSION}")
    if "id" in message and request_id(message) is None:
        raise ProtocolError("bad_request", f"id must be an int or a string of at most {MAX_ID_CHARS} characters")
    token = message.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
        raise ProtocolError("bad_request", "token must be a string")
    return kind


def check_seed(value: Any, what: str = "seed") -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEED:
        raise ProtocolError("bad_request", f"{what} must be an int in [0, 2**63 - 1], got {str(value)[:40]}")
    return value


def _kind(value: Any) -> str:
    return type(value).__name__
