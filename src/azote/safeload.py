"""The one reader of torch checkpoint files (`torch.save` zip archives) in Azote: the released `ng.pt`, the
trainer's resume state and any other `.pt` a stage reads go through `safe_load`. Nothing in the file is trusted.
Imports nothing of Azote, so that every package may use it.

- The pickle (`<root>/data.pkl`) runs on a small interpreter of our own, never on `pickle.Unpickler`: it knows only
  the opcodes that build data, resolves globals from a fixed table (tensor rebuilding, `OrderedDict`, `set`) or
  turns them into inert records (`ForeignObject`, for the released code's configuration classes), and never
  imports a module the file names. It is bounded in opcodes, memo entries and the size of every key it hashes, and
  what it built is checked for size (counting each shared object every time it is reached), depth and cycles, so
  a few hundred bytes can neither run for ever nor fill memory.
- Each zip member's declared size and compression ratio are checked before it is read, and it is read no further
  than declared.
- Each tensor's extent is computed from its shape, strides and offset and checked against its storage, and views
  that repeat elements (stride 0, overlapping strides) are refused, before anything is materialised.

Every refusal is a `CheckpointError` (`UnsafeCheckpointError` for a forbidden global) whose message is one line
naming the file and the reason. `read_json` is the one bounded reader of JSON files (configurations, presets).
"""

from __future__ import annotations

import io
import json
import math
import re
import stat
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from azote.errors import AzoteError

__all__ = ["DEFAULT_LIMITS", "CheckpointError", "ForeignObject", "LoadLimits", "UnsafeCheckpointError", "safe_load"]


class CheckpointError(AzoteError, RuntimeError):
    """A checkpoint that cannot be loaded: a missing file, unreadable weights, or names/shapes that do not fit."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle asks for something other than tensors, containers and configuration data."""


@dataclass(frozen=True)
class LoadLimits:
    """Bounds checked while reading, before the memory or time they guard is spent. The defaults are far above
    what the released 500M checkpoint and a trainer's resume state need (about 10^4 opcodes and nodes, depth 6)."""

    max_pickle_bytes: int = 64 << 20
    max_opcodes: int = 1_000_000
    max_memo: int = 1_000_000
    max_nodes: int = 1_000_000  # objects in the result, a shared one counted every time it is reached
    max_depth: int = 64
    max_key_nodes: int = 10_000  # hashing a nested tuple costs its whole tree
    max_storage_bytes: int = 64 << 30  # all tensor storages together
    max_compression_ratio: int = 20  # torch.save stores members uncompressed; weights hardly compress
    max_dims: int = 32
    max_name_chars: int = 512
    max_foreign_classes: int = 1_000


DEFAULT_LIMITS = LoadLimits()

# Modules whose classes are read as plain data (the released code's pydantic configuration objects).
DATA_MODULES = ("nitrogen",)

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Refused(Exception):
    """Raised inside the reader; `safe_load` turns it into a one-line `CheckpointError` naming the file."""

    def __init__(self, reason: str, unsafe: bool = False):
        super().__init__(reason)
        self.unsafe = unsafe


@dataclass(frozen=True)
class _StorageKind:
    dtype: torch.dtype


class ForeignObject:
    """An instance of a class the file names but that is never imported: only its pickled data is kept."""

    qualified_name = "?"
    # NEWOBJ creates instances without calling __init__, so these defaults live on the class.
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    state: Any = None

    def fields(self) -> dict[str, Any]:
        """The object's data: a pydantic model's fields (plus extras), or a plain object's `__dict__`."""
        state = self.state
        if isinstance(state, tuple):  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if isinstance(state, dict):
            fields = dict(state["__dict__"]) if isinstance(state.get("__dict__"), dict) else {
                k: v for k, v in state.items() if not (isinstance(k, str) and k.startswith("__"))
            }
            extra = state.get("__pydantic_extra__")
            if isinstance(extra, dict):
                fields.update(extra)
            return fields
        if self.kwargs:
            return dict(self.kwargs)
        raise UnsafeCheckpointError(f"cannot read {self.qualified_name} as configuration data")

    def __repr__(self) -> str:
        return f"<{self.qualified_name} (not imported)>"


def _foreign_class(module: str, name: str) -> type[ForeignObject]:
    return type(name, (ForeignObject,), {"qualified_name": f"{module}.{name}", "__module__": __name__})


def _is_int(x: Any) -> bool:
    return type(x) is int


_MAX_EXTENT = 1 << 48  # no real tensor has this many elements; bounds the arithmetic below


def _rebuild_tensor(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
    metadata: Any = None, *, max_dims: int = 32,
) -> Tensor:
    """A tensor over its storage, refused unless it lies inside the storage and no two elements share memory."""
    if not isinstance(storage, Tensor) or not _is_int(offset) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise _Refused("malformed tensor record")
    if len(size) != len(stride) or len(size) > max_dims:
        raise _Refused(f"tensor record with {len(size)} sizes and {len(stride)} strides")
    if not all(_is_int(s) and 0 <= s <= _MAX_EXTENT for s in size + stride) or not 0 <= offset <= _MAX_EXTENT:
        raise _Refused(f"tensor record with sizes {list(size)[:8]}, strides {list(stride)[:8]}, offset {offset}")
    numel = math.prod(size)
    if numel == 0:
        return torch.empty(size, dtype=storage.dtype)
    # dims of one element repeat nothing; the others, by increasing stride, must each step past the span before
    repeated = sorted((st, s) for s, st in zip(size, stride) if s > 1)
    span = 1
    for st, s in repeated:
        if st < span:
            raise _Refused(
                f"tensor of shape {list(size)} with strides {list(stride)} repeats storage elements (a stride-0 or "
                "overlapping view)"
            )
        span = st * s
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= storage.numel():
        raise _Refused(
            f"tensor of shape {list(size)} (strides {list(stride)}, offset {offset}) reaches element {last} of a "
            f"storage of {storage.numel()}"
        )
    view = torch.as_strided(storage, size, stride, offset)
    whole = offset == 0 and numel == storage.numel() and view.is_contiguous()
    return view if whole else view.clone()  # a clone (never larger than its storage) shares no memory


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise _Refused("malformed parameter record")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    **{("torch", name): _StorageKind(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}

_HASHABLE_LEAVES = (str, bytes, int, float, bool, type(None), Tensor, ForeignObject)
_DATA_LEAVES = (str, bytes, int, float, bool, type(None), Tensor)


class _Pickle:
    """A bounded interpreter of the data subset of the pickle format (protocols 0-5)."""

    def __init__(
        self, data: bytes, limits: LoadLimits, persistent_load: Callable[[Any], Any],
    ):
        self.data = data
        self.pos = 0
        self.limits = limits
        self.persistent_load = persistent_load
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        # nodes of every tuple/frozenset built (kept alive, so ids stay theirs): the cost of hashing it
        self.key_nodes: dict[int, tuple[Any, int]] = {}
        self.foreign: dict[tuple[str, str], type[ForeignObject]] = {}
        self.dispatch: dict[int, Callable[[], None]] = {ord(code): fn for code, fn in self._handlers().items()}

    # --- reading the byte stream ---------------------------------------------------------------------------
    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Refused("the pickle is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def line(self, max_chars: int = 1024) -> bytes:
        end = self.data.find(b"\n", self.pos, self.pos + max_chars + 1)
        if end < 0:
            raise _Refused("the pickle has a text argument that is too long or unterminated")
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    # --- the stacks -----------------------------------------------------------------------------------------
    def push(self, obj: Any) -> None:
        self.stack.append(obj)

    def above_mark(self) -> int:
        """Items on the stack above the last mark (those below it are out of reach until the mark is popped)."""
        return len(self.stack) - (self.marks[-1] if self.marks else 0)

    def pop(self) -> Any:
        if self.above_mark() <= 0:
            raise _Refused("the pickle pops an empty stack")
        return self.stack.pop()

    def top(self) -> Any:
        if self.above_mark() <= 0:
            raise _Refused("the pickle reads an empty stack")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise _Refused("the pickle pops a mark it never set")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # --- what makes data safe to build --------------------------------------------------------------------
    def nodes_of(self, obj: Any) -> int:
        """What hashing or comparing `obj` costs, in nodes (tuples and frozensets are recorded when built)."""
        if isinstance(obj, (tuple, frozenset)):
            known = self.key_nodes.get(id(obj))
            if known is None or known[0] is not obj:
                raise _Refused("the pickle uses a key the reader did not build")
            return known[1]
        return 1

    def check_key(self, key: Any) -> None:
        if not isinstance(key, (tuple, frozenset) + _HASHABLE_LEAVES):
            raise _Refused(f"the pickle uses an unhashable {type(key).__name__} as a key")
        if self.nodes_of(key) > self.limits.max_key_nodes:
            raise _Refused(f"the pickle hashes a key of more than {self.limits.max_key_nodes} nested items")

    def immutable(self, obj: tuple[Any, ...] | frozenset[Any]) -> Any:
        nodes = 1
        for item in obj:
            nodes += self.nodes_of(item)
            if nodes > self.limits.max_nodes:
                break
        self.key_nodes[id(obj)] = (obj, nodes)
        return obj

    def hashed(self, items: list[Any]) -> list[Any]:
        for item in items:
            self.check_key(item)
        return items

    def find_class(self, module: str, name: str) -> Any:
        if len(module) + len(name) > self.limits.max_name_chars:
            raise _Refused(f"the pickle names a global of {len(module) + len(name)} characters")
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module.split(".")[0] in DATA_MODULES:
            if (module, name) not in self.foreign and len(self.foreign) >= self.limits.max_foreign_classes:
                raise _Refused(f"the pickle names more than {self.limits.max_foreign_classes} configuration classes")
            return self.foreign.setdefault((module, name), _foreign_class(module, name))
        raise _Refused(
            f"refusing to load {module}.{name}: the checkpoint's pickle asks for a global that is neither a tensor, "
            "a container nor a configuration record (nothing was executed)", unsafe=True,
        )

    def call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise _Refused("the pickle calls with arguments that are not a tuple")
        if isinstance(func, type) and issubclass(func, ForeignObject):
            obj = func.__new__(func)
            obj.args = args  # an enum member or a plain record: its data only
            return obj
        if func is OrderedDict and not args:
            return OrderedDict()
        if (func is set or func is frozenset) and len(args) <= 1:
            items = list(args[0]) if args and isinstance(args[0], (list, tuple, set, frozenset)) else None
            if args and items is None:
                raise _Refused("the pickle builds a set from something other than a list")
            items = self.hashed(items or [])
            return set(items) if func is set else self.immutable(frozenset(items))
        if func is _rebuild_tensor:
            return _rebuild_tensor(*args, max_dims=self.limits.max_dims) if 4 <= len(args) <= 7 else self._bad(func)
        if func is _rebuild_parameter and 1 <= len(args) <= 3:
            return _rebuild_parameter(*args)
        return self._bad(func)

    @staticmethod
    def _bad(func: Any) -> Any:
        what = getattr(func, "qualified_name", None) or getattr(func, "__name__", type(func).__name__)
        raise _Refused(f"the pickle calls {str(what)[:80]} in a way a checkpoint never does")

    # --- opcodes --------------------------------------------------------------------------------------------
    def _handlers(self) -> dict[bytes, Callable[[], None]]:
        def memo_put(index: int) -> None:
            if index not in self.memo and len(self.memo) >= self.limits.max_memo:
                raise _Refused(f"the pickle's memo grows past {self.limits.max_memo} entries")
            self.memo[index] = self.top()

        def memo_get(index: int) -> None:
            if index not in self.memo:
                raise _Refused(f"the pickle reads memo entry {index}, never stored")
            self.push(self.memo[index])

        def text_int(raw: bytes) -> int:
            try:
                return int(raw.rstrip(b"L") or b"x")
            except ValueError:
                raise _Refused(f"the pickle holds a malformed integer {raw[:40]!r}") from None

        def long_n(n: int) -> None:
            if n > 1024:  # no checkpoint holds an integer of more than 8192 bits
                raise _Refused(f"the pickle holds an integer of {n} bytes")
            self.push(int.from_bytes(self.take(n), "little", signed=True))

        def proto() -> None:
            version = self.uint(1)
            if version > 5:
                raise _Refused(f"unsupported pickle protocol {version}")

        def int_text() -> None:
            raw = self.line(64)
            self.push(raw == b"01" if raw in (b"00", b"01") else text_int(raw))  # protocol 0 writes bools as 00 and 01

        def text_str(raw: bytes, encoding: str) -> str:
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                raise _Refused("the pickle holds a string that does not decode") from None

        def global_text() -> None:
            module = text_str(self.line(self.limits.max_name_chars), "utf-8")
            name = text_str(self.line(self.limits.max_name_chars), "utf-8")
            self.push(self.find_class(module, name))

        def stack_global() -> None:
            name, module = self.pop(), self.pop()
            if not isinstance(module, str) or not isinstance(name, str):
                raise _Refused("the pickle names a global with something other than strings")
            self.push(self.find_class(module, name))

        def dict_from(items: list[Any]) -> dict[Any, Any]:
            if len(items) % 2:
                raise _Refused("the pickle builds a dict from an odd number of items")
            out: dict[Any, Any] = {}
            for k, v in zip(items[::2], items[1::2]):
                self.check_key(k)
                out[k] = v
            return out

        def target(kind: type, what: str) -> Any:
            obj = self.top()
            if not isinstance(obj, kind):
                raise _Refused(f"the pickle {what} a {type(obj).__name__}")
            return obj

        def append() -> None:
            value = self.pop()
            target(list, "appends to").append(value)

        def appends() -> None:
            items = self.pop_mark()
            target(list, "appends to").extend(items)

        def setitem() -> None:
            value, key = self.pop(), self.pop()
            self.check_key(key)
            target(dict, "sets an item of")[key] = value

        def setitems() -> None:
            items = dict_from(self.pop_mark())
            target(dict, "sets items of").update(items)

        def additems() -> None:
            items = self.hashed(self.pop_mark())
            target(set, "adds items to").update(items)

        def reduce() -> None:
            args = self.pop()
            func = self.pop()
            self.push(self.call(func, args))

        def newobj(with_kwargs: bool) -> None:
            kwargs = self.pop() if with_kwargs else {}
            args, cls = self.pop(), self.pop()
            if not (isinstance(cls, type) and issubclass(cls, ForeignObject)):
                raise _Refused("the pickle creates an object of a class that is not a configuration record")
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise _Refused("the pickle creates an object with malformed arguments")
            obj = cls.__new__(cls)
            obj.args, obj.kwargs = args, dict(kwargs)
            self.push(obj)

        def build() -> None:
            state = self.pop()
            inst = self.top()
            if isinstance(inst, ForeignObject):
                inst.state = state
                return
            # a module's state_dict() is an OrderedDict carrying the modules' versions as `_metadata`
            if isinstance(inst, OrderedDict) and isinstance(state, dict) and set(state) <= {"_metadata"}:
                meta = state.get("_metadata")
                if meta is not None and not isinstance(meta, dict):
                    raise _Refused("the pickle gives a state dict malformed metadata")
                if meta is not None:
                    inst._metadata = meta  # type: ignore[attr-defined]
                return
            raise _Refused(f"the pickle sets the state of a {type(inst).__name__}")

        def persid() -> None:
            self.push(self.persistent_load(self.pop()))

        def tuple_of(n: int) -> Callable[[], None]:
            def op() -> None:
                items = [self.pop() for _ in range(n)][::-1]
                self.push(self.immutable(tuple(items)))
            return op

        def frozenset_op() -> None:
            self.push(self.immutable(frozenset(self.hashed(self.pop_mark()))))

        def pop_op() -> None:
            if self.above_mark() > 0:
                self.stack.pop()
            else:
                self.pop_mark()

        return {
            "\x80": proto,
            "\x95": lambda: self.take(8) and None,  # FRAME: a hint for buffered readers
            "(": lambda: self.marks.append(len(self.stack)),
            "0": pop_op,
            "1": lambda: self.pop_mark() and None,
            "2": lambda: self.push(self.top()),
            "N": lambda: self.push(None),
            "\x88": lambda: self.push(True),
            "\x89": lambda: self.push(False),
            "I": int_text,
            "J": lambda: self.push(int.from_bytes(self.take(4), "little", signed=True)),
            "K": lambda: self.push(self.uint(1)),
            "M": lambda: self.push(self.uint(2)),
            "L": lambda: self.push(text_int(self.line(64))),
            "\x8a": lambda: long_n(self.uint(1)),
            "\x8b": lambda: long_n(int.from_bytes(self.take(4), "little", signed=True)),
            "F": lambda: self.push(_text_float(self.line(64))),
            "G": lambda: self.push(struct.unpack(">d", self.take(8))[0]),
            "X": lambda: self.push(text_str(self.take(self.uint(4)), "utf-8")),
            "\x8c": lambda: self.push(text_str(self.take(self.uint(1)), "utf-8")),
            "\x8d": lambda: self.push(text_str(self.take(self.uint(8)), "utf-8")),
            "V": lambda: self.push(text_str(self.line(1 << 20), "raw-unicode-escape")),
            "T": lambda: self.push(text_str(self.take(int.from_bytes(self.take(4), "little", signed=True)), "ascii")),
            "U": lambda: self.push(text_str(self.take(self.uint(1)), "ascii")),
            "B": lambda: self.push(self.take(self.uint(4))),
            "C": lambda: self.push(self.take(self.uint(1))),
            "\x8e": lambda: self.push(self.take(self.uint(8))),
            "]": lambda: self.push([]),
            "}": lambda: self.push({}),
            ")": lambda: self.push(self.immutable(())),
            "\x8f": lambda: self.push(set()),
            "l": lambda: self.push(self.pop_mark()),
            "d": lambda: self.push(dict_from(self.pop_mark())),
            "t": lambda: self.push(self.immutable(tuple(self.pop_mark()))),
            "\x85": tuple_of(1),
            "\x86": tuple_of(2),
            "\x87": tuple_of(3),
            "a": append,
            "e": appends,
            "s": setitem,
            "u": setitems,
            "\x90": additems,
            "\x91": frozenset_op,
            "p": lambda: memo_put(text_int(self.line(64))),
            "q": lambda: memo_put(self.uint(1)),
            "r": lambda: memo_put(self.uint(4)),
            "\x94": lambda: memo_put(len(self.memo)),
            "g": lambda: memo_get(text_int(self.line(64))),
            "h": lambda: memo_get(self.uint(1)),
            "j": lambda: memo_get(self.uint(4)),
            "c": global_text,
            "\x93": stack_global,
            "R": reduce,
            "\x81": lambda: newobj(False),
            "\x92": lambda: newobj(True),
            "b": build,
            "Q": persid,
        }

    def run(self) -> Any:
        dispatch, data, limit = self.dispatch, self.data, self.limits.max_opcodes
        for _ in range(limit):
            if self.pos >= len(data):
                raise _Refused("the pickle ends without STOP")
            code = data[self.pos]
            self.pos += 1
            if code == 0x2E:  # STOP
                if len(self.stack) != 1 or self.marks:
                    raise _Refused("the pickle stops with a malformed stack")
                return self.stack[0]
            handler = dispatch.get(code)
            if handler is None:
                raise _Refused(f"the pickle uses opcode {bytes([code])!r}, which a checkpoint of data never holds")
            handler()
        raise _Refused(f"the pickle runs past {limit} opcodes")


def _text_float(raw: bytes) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _Refused(f"the pickle holds a malformed float {raw[:40]!r}") from None


def _children(item: Any) -> Any:
    """What a container of the result refers to, or None for a data leaf; refuses anything else."""
    if isinstance(item, _DATA_LEAVES):
        return None
    if isinstance(item, ForeignObject):
        return (item.args, item.kwargs, item.state)
    if isinstance(item, dict):
        children = [x for kv in item.items() for x in kv]
        meta = getattr(item, "_metadata", None)
        if meta is not None:
            children.append(meta)
        return children
    if isinstance(item, (list, tuple, set, frozenset)):
        return item
    raise _Refused(f"the pickle leaves a bare {type(item).__name__} in the data")


def check_graph(obj: Any, limits: LoadLimits = DEFAULT_LIMITS) -> None:
    """Refuses (`_Refused`) a result that contains itself, nests deeper than `max_depth`, expands to more than
    `max_nodes` (each shared object counted every time it is reached, as a reader walking it would) or holds
    anything but data. Linear in the distinct objects: what each shared one expands to is computed once."""
    expanded: dict[int, tuple[int, int]] = {}  # id -> (nodes, height) of each container done
    on_path: set[int] = set()
    todo: list[tuple[Any, int, bool]] = [(obj, 0, False)]
    while todo:
        item, depth, leaving = todo.pop()
        key = id(item)
        if leaving:
            nodes, height = 1, 1
            for child in _children(item):
                child_nodes, child_height = expanded.get(id(child), (1, 0))
                nodes += child_nodes
                height = max(height, child_height + 1)
            if nodes > limits.max_nodes:
                raise _Refused(f"the pickle expands to more than {limits.max_nodes:,} objects (shared references "
                               "nested in each other)")
            if height > limits.max_depth:
                raise _Refused(f"the pickle nests containers deeper than {limits.max_depth} levels")
            expanded[key] = (nodes, height)
            on_path.discard(key)
            continue
        children = _children(item)
        if children is None or key in expanded:
            continue
        if key in on_path:
            raise _Refused("the pickle holds a container that contains itself")
        if depth >= limits.max_depth:
            raise _Refused(f"the pickle nests containers deeper than {limits.max_depth} levels")
        on_path.add(key)
        todo.append((item, depth, True))
        todo.extend((child, depth + 1, False) for child in children)


def _read_member(
    archive: zipfile.ZipFile, file_bytes: int, name: str, limits: LoadLimits, what: str, *, size: int = -1,
    max_size: int = -1,
) -> bytes:
    """Member `name`, read only if it declares no more compressed bytes than the file holds and either exactly
    `size` bytes at a plausible compression ratio (a storage: its size is the tensors') or at most `max_size`
    (data.pkl, byteorder); never read past its declared size."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Refused(f"{what} is missing from the archive") from None
    if size >= 0 and info.file_size != size:
        raise _Refused(f"{what} declares {info.file_size} bytes in the archive, its record says {size}")
    if max_size >= 0 and info.file_size > max_size:
        raise _Refused(f"{what} declares {info.file_size} bytes (at most {max_size} expected)")
    if info.compress_size > file_bytes:
        raise _Refused(f"{what} declares {info.compress_size} stored bytes in a file of {file_bytes}")
    ratio_bound = max(4096, info.compress_size * limits.max_compression_ratio)
    if max_size < 0 and info.compress_type != zipfile.ZIP_STORED and info.file_size > ratio_bound:
        raise _Refused(
            f"{what} would inflate {info.compress_size} bytes to {info.file_size} (more than "
            f"{limits.max_compression_ratio}x: a zip bomb)"
        )
    try:
        with archive.open(info) as f:
            raw = f.read(info.file_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise _Refused(f"{what} cannot be read ({_one_line(exc)})") from None
    if len(raw) != info.file_size:
        raise _Refused(f"{what} holds {len(raw)} bytes, not the {info.file_size} it declares")
    return raw


class _Archive:
    """Storages of a torch zip archive, read on demand by the pickle's persistent records."""

    def __init__(self, archive: zipfile.ZipFile, file_bytes: int, root: str, limits: LoadLimits):
        self.archive = archive
        self.file_bytes = file_bytes
        self.root = root
        self.limits = limits
        self.storages: dict[str, Tensor] = {}
        self.bytes_read = 0

    def storage(self, pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageKind)):
            raise _Refused("the pickle holds a persistent record that is not a tensor storage")
        _, kind, key, _location, numel = pid
        if not isinstance(key, str) or not re.fullmatch(r"\w{1,64}", key):
            raise _Refused("the pickle names a storage with a malformed key")
        if key in self.storages:
            stored = self.storages[key]
            if stored.dtype != kind.dtype or stored.numel() != numel:
                raise _Refused(f"storage {key} is named twice with different types or sizes")
            return stored
        if not _is_int(numel) or numel < 0:
            raise _Refused(f"storage {key} has a malformed size")
        itemsize = torch.empty(0, dtype=kind.dtype).element_size()
        size = numel * itemsize
        if self.bytes_read + size > self.limits.max_storage_bytes:
            raise _Refused(f"the tensors need more than {self.limits.max_storage_bytes >> 30} GiB")
        raw = _read_member(self.archive, self.file_bytes, f"{self.root}/data/{key}", self.limits, f"storage {key}",
                           size=size)
        self.bytes_read += size
        flat = torch.frombuffer(bytearray(raw), dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
        self.storages[key] = flat
        return flat


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def safe_load(path: str | Path, limits: LoadLimits = DEFAULT_LIMITS) -> Any:
    """The object saved in a torch zip checkpoint: tensors (on the CPU), containers, numbers, strings and inert
    `ForeignObject` records. No code from the file runs; every refusal is a one-line `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a torch zip checkpoint (expected the torch.save zip format)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise _Refused(f"expected one <root>/data.pkl in the archive, found {len(pickles)}")
            root = pickles[0].split("/")[0]
            file_bytes = path.stat().st_size
            if f"{root}/byteorder" in names:
                order = _read_member(archive, file_bytes, f"{root}/byteorder", limits, "byteorder", max_size=16)
                if order.strip() != b"little":
                    raise _Refused(f"byte order {order!r} is not supported")
            data = _read_member(archive, file_bytes, pickles[0], limits, "data.pkl", max_size=limits.max_pickle_bytes)
            storages = _Archive(archive, file_bytes, root, limits)
            obj = _Pickle(data, limits, storages.storage).run()
            check_graph(obj, limits)
            return obj
    except _Refused as exc:
        cls = UnsafeCheckpointError if exc.unsafe else CheckpointError
        raise cls(f"{path}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a readable torch zip checkpoint ({_one_line(exc)})") from None
    except (MemoryError, RecursionError) as exc:  # a limit above was too generous for this machine
        raise CheckpointError(f"{path}: refused while reading ({_one_line(exc)})") from None
    except CheckpointError:
        raise
    except Exception as exc:  # a malformed pickle fails in many ways; all of them mean "cannot read"
        raise CheckpointError(f"{path}: cannot read the checkpoint's pickle ({_one_line(exc)})") from None


# --- JSON ------------------------------------------------------------------------------------------------------------
class JsonFileError(AzoteError, ValueError):
    """A JSON file refused: too big, unreadable, not UTF-8, not JSON, or nested too deep. One line naming the file."""


def read_json(path: str | Path | io.BytesIO, max_bytes: int, label: str | None = None) -> Any:
    """The JSON document in `path` (or in a bytes buffer), read no further than `max_bytes` (a file's size is
    checked before reading), with every failure a `JsonFileError` naming `label` (default: the path)."""
    if isinstance(path, io.BytesIO):
        name, raw = label or "JSON", path.read(max_bytes + 1)
    else:
        path = Path(path)
        name = label or str(path)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
                raise JsonFileError(f"{name}: not a regular file")
            size = st.st_size
            if size > max_bytes:
                raise JsonFileError(f"{name}: {size:,} bytes, more than the {max_bytes:,} this file may have")
            with open(path, "rb") as f:
                raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise JsonFileError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise JsonFileError(f"{name}: more than the {max_bytes:,} bytes this file may have")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise JsonFileError(f"{name}: not UTF-8 text") from None
    except RecursionError:
        raise JsonFileError(f"{name}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers past Python's digit limit
        raise JsonFileError(f"{name}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None
