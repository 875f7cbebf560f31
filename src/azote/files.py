"""Files written whole or not at all: a temporary name beside the target, then a rename (a killed process never
leaves a half-written file under the final name). Imports nothing of Azote."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def umask() -> int:
    """The process's file mode creation mask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[Path], None], *, sync: bool = False) -> Path:
    """Writes `data` (bytes, text, or a function that writes a given path) to `path` atomically; `sync` flushes it
    to disk before the rename (checkpoints). The temporary name keeps the suffix, for writers that add one
    (`np.savez`). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if callable(data):
            data(tmp)
        else:
            (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)  # type: ignore[operator]
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes owner-only files; these are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, data: Any, indent: int = 1, **dumps: Any) -> Path:
    """JSON written atomically (see `write_atomic`)."""
    return write_atomic(path, json.dumps(data, indent=indent, **dumps) + "\n")
