"""The on-disk format: the released NitroGen label layout, plus the video the labels index.

    ROOT/actions/SHARD_XXXX/<video_id>/<video_id>_chunk_NNNN/actions_raw.parquet
    ROOT/actions/SHARD_XXXX/<video_id>/<video_id>_chunk_NNNN/metadata.json
    ROOT/videos/<video_id>.mp4          (ours; `original_video.url` holds this path relative to ROOT; a labelled
                                         source keeps its container's extension, e.g. .webm)

`actions_raw.parquet`: the 17 button columns (int32 0/1, in `azote.gamepad.BUTTONS` order), then `j_left` and
`j_right`, each a list [x, y] in [-1, 1] (y negative is up). Row i is frame i of the chunk.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from azote.errors import AzoteError
from azote.gamepad import BUTTONS, STICKS, ActionChunk, GamepadError

CHUNK_SECONDS = 20.0
# Bounds of one chunk's files, checked before anything is read: the released chunks are 20 s at 30-60 fps
# (600-1200 rows, a few kB of metadata); an hour-long chunk at 240 fps is 864k rows.
MAX_METADATA_BYTES = 1 << 20
MAX_ACTIONS_BYTES = 64 << 20
MAX_CHUNK_ROWS = 1 << 20
ACTIONS_FILE = "actions_raw.parquet"
METADATA_FILE = "metadata.json"


class DatasetError(AzoteError, ValueError):
    """A bad file in a dataset: names the file and the field at fault."""

    def __init__(self, path: str | os.PathLike, field: str, message: str) -> None:
        # one line whatever the file holds: decoder and parser messages may span lines
        message = " ".join(str(message).split())
        self.path, self.field, self.message = str(path), field, message
        shown = self.path.replace("\n", "\\n").replace("\r", "\\r")
        super().__init__(f"{shown}: {field}: {message}")


def is_remote(url: str) -> bool:
    """A url the dataset does not hold (the released labels' YouTube links): never opened from disk."""
    return "://" in url


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class OriginalVideo(BaseModel):
    """Where a chunk's rows lie in its video. Field validators see the fields declared before them, which is how
    the cross-field checks (end after start, duration = end - start) name the field at fault."""

    model_config = ConfigDict(extra="allow", strict=True)
    video_id: str
    source: str | None = None
    url: str | None = None  # ours: a path relative to the dataset root; released labels: a web link
    resolution: list[int] | None = Field(default=None, min_length=2, max_length=2)  # [H, W]
    start_time: float
    end_time: float
    duration: float
    start_frame: int | None = Field(default=None, ge=0)
    end_frame: int | None = Field(default=None, ge=0)

    @field_validator("video_id")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # the id names files (`video_dir/<video_id>.mp4`): a path in it would reach outside that folder
        if not v or v.startswith(".") or any(c in v for c in "/\\\0"):
            raise ValueError("must be a plain name (no path separator, not starting with '.')")
        return v

    @field_validator("url")
    @classmethod
    def _inside_root(cls, v: str | None) -> str | None:
        if v and not is_remote(v):
            problem = local_url_problem(v)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("resolution")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and min(v) < 1:
            raise ValueError("height and width must be >= 1")
        return v

    @field_validator("start_time")
    @classmethod
    def _start(cls, v: float) -> float:
        if _finite(v) < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("end_time")
    @classmethod
    def _end(cls, v: float, info: ValidationInfo) -> float:
        start = info.data.get("start_time")
        if start is not None and _finite(v) < start:
            raise ValueError(f"{v} is before start_time {start}")
        return _finite(v)

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float, info: ValidationInfo) -> float:
        if _finite(v) <= 0:
            raise ValueError("must be > 0")
        start, end = info.data.get("start_time"), info.data.get("end_time")
        # loose: the released files round their times; a real disagreement is a whole frame or more
        if start is not None and end is not None and abs((end - start) - v) > 0.05 + 1e-3 * v:
            raise ValueError(f"{v} disagrees with end_time - start_time = {end - start:.6g}")
        return v

    @field_validator("end_frame")
    @classmethod
    def _end_frame(cls, v: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start_frame")
        if v is not None and start is not None and v < start:
            raise ValueError(f"{v} is before start_frame {start}")
        return v


def local_url_problem(url: str) -> str | None:
    """Why a dataset-relative video path could reach outside the dataset root, or None when it cannot."""
    if "\0" in url or "\\" in url:
        return "must be a plain relative path (no NUL or backslash)"
    p = PurePosixPath(url)
    if p.is_absolute():
        return "must be a path relative to the dataset root, not an absolute path"
    if ".." in p.parts:
        return "must stay inside the dataset root (no '..')"
    return None


class GameArea(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    xtl: float
    ytl: float
    xbr: float
    ybr: float

    @field_validator("xtl", "ytl", "xbr", "ybr")
    @classmethod
    def _unit(cls, v: float, info: ValidationInfo) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must lie in [0, 1]")
        low = {"xbr": "xtl", "ybr": "ytl"}.get(info.field_name or "")
        if low and low in info.data and v < info.data[low]:
            raise ValueError(f"{v} is less than {low} {info.data[low]}")
        return v


class ChunkMetadata(BaseModel):
    """`metadata.json` of one 20-second chunk (the released fields; extra fields are kept)."""

    model_config = ConfigDict(extra="allow", strict=True)
    uuid: str
    chunk_id: str
    chunk_size: int = Field(gt=0)
    original_video: OriginalVideo
    game: str | None = None
    controller_type: str | None = None
    bbox_controller_overlay: list[float] | None = Field(default=None, min_length=4, max_length=4)  # x, y, w, h
    bbox_game_area: GameArea | None = None
    bbox_others: Any = None

    @field_validator("chunk_id")
    @classmethod
    def _number(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{1,9}", v):
            raise ValueError('must be the chunk number in digits (e.g. "0003")')
        return v

    @field_validator("bbox_controller_overlay")
    @classmethod
    def _box(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            for x in v:
                _finite(x)
            if v[2] < 0 or v[3] < 0:
                raise ValueError("width and height must not be negative")
        return v

    @property
    def fps(self) -> float:
        """Rows per second of video: chunk_size / duration."""
        d = self.original_video.duration
        return self.chunk_size / d if d > 0 else 0.0


def chunk_name(video_id: str, index: int) -> str:
    return f"{video_id}_chunk_{index:04d}"


def chunk_dir(root: str | os.PathLike, video_id: str, index: int, shard: int = 0) -> Path:
    return Path(root) / "actions" / f"SHARD_{shard:04d}" / video_id / chunk_name(video_id, index)


def video_relpath(video_id: str, extension: str = ".mp4") -> str:
    """Where a dataset keeps a video, relative to its root. `extension` names the video's real container: our
    recordings are H.264 mp4; a labelled source keeps its own (`azote.dataset.video.container_extension`)."""
    return f"videos/{video_id}{extension}"


# --- writing ---------------------------------------------------------------------------------------------
def actions_table(actions: ActionChunk) -> pa.Table:
    cols = actions.to_columns()
    arrays = [pa.array(cols[b], pa.int32()) for b in BUTTONS]
    for s in STICKS:
        arrays.append(pa.array(cols[s].astype(np.float64).tolist(), pa.list_(pa.float64())))
    return pa.Table.from_arrays(arrays, names=[*BUTTONS, *STICKS])


def write_chunk(directory: str | os.PathLike, actions: ActionChunk, metadata: ChunkMetadata) -> Path:
    """Writes one chunk directory atomically: both files go to a temporary sibling that is renamed into place."""
    directory = Path(directory)
    if len(actions) != metadata.chunk_size:
        raise ValueError(f"{directory}: chunk_size {metadata.chunk_size} != {len(actions)} action rows")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    pq.write_table(actions_table(actions), tmp / ACTIONS_FILE)
    (tmp / METADATA_FILE).write_text(json.dumps(metadata.model_dump(mode="json"), indent=1))
    if directory.exists():  # a rewrite of the same chunk replaces it whole
        old = directory.with_name(f".{directory.name}.old")
        os.replace(directory, old)
        os.replace(tmp, directory)
        _rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def _rmtree(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    path.rmdir()


# --- reading and validating --------------------------------------------------------------------------------
def _regular_file(path: Path, limit: int) -> None:
    """Refuses, before opening it, what is not a regular file of at most `limit` bytes: a FIFO would block the
    reader for ever, a link to /dev/zero would fill memory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(path, "file", "missing") from None
    except OSError as exc:
        raise DatasetError(path, "file", f"unreadable ({exc.strerror or exc})") from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(path, "file", "not a regular file (a device, FIFO or directory)")
    if st.st_size > limit:
        raise DatasetError(path, "file", f"{st.st_size} bytes, more than {limit} for one chunk")


def read_metadata(path: str | os.PathLike) -> ChunkMetadata:
    path = Path(path)
    _regular_file(path, MAX_METADATA_BYTES)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(path, "file", "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(path, "json", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise DatasetError(path, "json", "nested too deeply") from None
    except OSError as exc:  # a directory, a device, an unreadable file
        raise DatasetError(path, "file", f"unreadable ({exc.strerror or exc})") from None
    if not isinstance(raw, dict):
        raise DatasetError(path, "json", "top level must be an object")
    try:
        return ChunkMetadata.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "metadata"
        got = err.get("input")
        got_s = f" (got {type(got).__name__} {got!r:.60})" if "input" in err and not isinstance(got, dict) else ""
        raise DatasetError(path, where, f"{err['msg'].removeprefix('Value error, ')}{got_s}") from None


def read_actions(path: str | os.PathLike) -> ActionChunk:
    """Reads `actions_raw.parquet`, checking column names, types and values."""
    path = Path(path)
    _regular_file(path, MAX_ACTIONS_BYTES)
    try:
        meta = pq.read_metadata(path)  # the footer only: the row count before any column is decoded
        if meta.num_rows > MAX_CHUNK_ROWS:
            raise DatasetError(path, "rows", f"{meta.num_rows} rows, more than {MAX_CHUNK_ROWS} for one chunk")
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError(path, "file", "missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(path, "parquet", f"unreadable ({exc})") from None
    names = set(table.column_names)
    for col in (*BUTTONS, *STICKS):
        if col not in names:
            raise DatasetError(path, col, "column missing")
    columns: dict[str, Any] = {}
    for b in BUTTONS:
        t = table.schema.field(b).type
        if not (pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise DatasetError(path, b, f"button column must be integer 0/1, has type {t}")
        arr = table.column(b).to_numpy(zero_copy_only=False)
        if table.column(b).null_count or not np.isin(arr, (0, 1)).all():
            raise DatasetError(path, b, "button values must be 0 or 1")
        columns[b] = arr.astype(np.uint8)
    for s in STICKS:
        col = table.column(s)
        t = col.type
        if not (pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)) or not (
            pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
        ):
            raise DatasetError(path, s, f"stick column must be a list of two numbers, has type {t}")
        flat = col.combine_chunks()
        lengths = flat.value_lengths().to_numpy(zero_copy_only=False) if hasattr(flat, "value_lengths") else None
        if col.null_count or (lengths is not None and not (lengths == 2).all()):
            raise DatasetError(path, s, "every row must hold exactly [x, y]")
        values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 2)
        if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1.0):
            raise DatasetError(path, s, "stick values must be finite and within [-1, 1]")
        columns[s] = values
    try:
        return ActionChunk.from_columns(columns)
    except GamepadError as exc:
        raise DatasetError(path, "rows", str(exc)) from None
