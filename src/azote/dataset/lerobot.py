"""Export to and import from the LeRobotDataset v3.0 layout (the `lerobot` package's format), without `lerobot`.

    OUT/meta/info.json                                   codebase_version "v3.0", fps, totals, path templates,
                                                         features (dtype, shape, names per feature), splits
    OUT/meta/stats.json                                  per feature: min, max, mean, std, count, q01 .. q99
    OUT/meta/tasks.parquet                               one row per task (the game): task_index, indexed by task
    OUT/meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, where its rows and
                                                         frames are, its stats (`stats/<feature>/<stat>`)
    OUT/data/chunk-000/file-000.parquet                  one row per frame: action, timestamp, frame_index,
                                                         episode_index, index, task_index (many episodes a file)
    OUT/videos/observation.images.<camera>/chunk-000/file-000.mp4
                                                         the frames of several episodes one after another; an
                                                         episode is [from_timestamp, to_timestamp) of its file

One Azote video (its chunks in order) is one episode, and its game is the episode's task. Row i of an episode is
frame i: its `action` is the gamepad as the released model's 25-float vector (`azote.gamepad`: 21 button slots,
then both sticks as (v + 1) / 2), and its frame lies at from_timestamp + i / fps in the episode's video file.
The video is re-encoded with libx264 (H.264, yuv420p), which LeRobot reads like its own AV1 files (h264 is one
of its accepted codecs): each episode is encoded on its own, so it starts on a keyframe, and its packets are then
appended to the camera's current file with shifted times, as LeRobot concatenates episodes. A file rolls over to
the next `file-NNN` before it would pass `data_files_size_in_mb` / `video_files_size_in_mb`, and to the next
`chunk-NNN` folder after `chunks_size` files, as LeRobot's writer does.

LeRobot needs one integer frame rate and one frame size per camera for the whole dataset: an Azote dataset that
mixes rates or sizes is refused (export each kind to its own LeRobot dataset). Rates within 1% of an integer
(59.94) are written as that integer: rows and frames stay paired, only the nominal clock changes.

Import reads such a dataset back into an Azote dataset (chunks + H.264 video through `EpisodeWriter`). The 25
floats go back through `ActionChunk.from_model_vectors`: buttons exactly; a stick value comes back within float32
rounding of (v + 1) / 2 (at most 2.4e-7), exactly for values such as 0, +-0.5, +-1.

Both directions write into a hidden staging directory beside OUT, every file by a temporary name then a rename,
and rename the directory to OUT at the end: a killed run leaves no half file and no OUT. Bad input raises
`LeRobotError` (a `DatasetError`) naming the file and the field.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import stat
import string
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from azote.dataset.format import DatasetError, local_url_problem
from azote.dataset.reader import Chunk, Dataset
from azote.dataset.video import VideoError, VideoWriter, probe, read_frames
from azote.dataset.writer import EpisodeWriter
from azote.files import write_atomic, write_json
from azote.gamepad import MODEL_ACTION_DIM, MODEL_SLOTS, ActionChunk, GamepadError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DEFAULT_CHUNKS_SIZE = 1000  # LeRobot's defaults: files per chunk folder, and MB per data / video file
DEFAULT_DATA_FILE_MB = 100
DEFAULT_VIDEO_FILE_MB = 200
DEFAULT_CAMERA = "screen"
DEFAULT_ROBOT_TYPE = "gamepad"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # stats keys q01, q10, q50, q90, q99
VIDEO_ID_COLUMN = "azote_video_id"  # extra episodes column: the Azote video each episode came from
ACTION_NAMES: tuple[str, ...] = (*MODEL_SLOTS, "j_left_x", "j_left_y", "j_right_x", "j_right_y")
assert len(ACTION_NAMES) == MODEL_ACTION_DIM
# The columns LeRobot adds to every dataset, with their info.json entries.
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

_BYTES_PER_MB = 1 << 20
# Bounds of what import reads, checked before a file is opened or decoded.
MAX_INFO_BYTES = 4 << 20
MAX_TASKS_BYTES = 64 << 20
MAX_EPISODES_FILE_BYTES = 512 << 20
MAX_EPISODE_FILES = 100_000
MAX_DATA_FILE_BYTES = 2 << 30
MAX_DATA_ROWS = 1 << 25
MAX_META_ROWS = 1 << 22
STATS_FRAMES = 100  # frames sampled per episode for the image stats
STATS_SIDE = 150  # a sampled frame larger than 2x this is strided down to about this size


class LeRobotError(DatasetError):
    """A LeRobot dataset (or an Azote dataset on its way to one) that cannot be converted: names file and field."""


# --- small helpers ---------------------------------------------------------------------------------------------
def _atomic_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=4, allow_nan=False)


def _atomic_parquet(path: Path, table: pa.Table) -> None:
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="snappy"))


def _next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The file after (chunk, file): a chunk folder holds `chunks_size` files."""
    return (chunk_index + 1, 0) if file_index + 1 >= chunks_size else (chunk_index, file_index + 1)


def _staging(out: Path) -> Path:
    """The hidden directory beside `out` that becomes `out` when the work is complete."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty directory")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    staging.mkdir(parents=True)
    return staging


def _finish(staging: Path, out: Path) -> None:
    if out.is_dir():
        out.rmdir()  # empty (checked by _staging); a rename cannot replace it on every system
    os.replace(staging, out)


def _bar(items: Iterable, total: int, desc: str, progress: bool) -> Iterable:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="episode", disable=None)  # None: off when not a terminal


# --- statistics (LeRobot's stats.json / episodes `stats/...` layout) --------------------------------------------
def _vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension stats of [T, D] values (D = 1 for the scalar columns)."""
    v = values.astype(np.float64)
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0), "count": np.array([len(v)])}
    for q, value in zip(QUANTILES, np.quantile(v, QUANTILES, axis=0)):
        out[f"q{round(q * 100):02d}"] = value
    return out


def _image_stats(frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel stats of sampled RGB frames, in [0, 1], shaped (3, 1, 1) as LeRobot keeps them."""
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(np.float64) / 255.0
    out = {k: v.reshape(3, 1, 1) for k, v in _vector_stats(pixels).items() if k != "count"}
    out["count"] = np.array([len(frames)])  # LeRobot counts the sampled images, not the pixels
    return out


def _aggregate(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Episodes' stats -> the dataset's: extremes, count-weighted mean and pooled variance, and for quantiles
    the envelope (lowest of the lower ones, highest of the upper ones), as LeRobot aggregates them."""
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    shape = (-1,) + (1,) * stats[0]["mean"].ndim
    means = np.stack([s["mean"] for s in stats])
    total = counts.sum()
    mean = (means * counts.reshape(shape)).sum(0) / total
    var = ((np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * counts.reshape(shape)).sum(0) / total
    out = {"min": np.min([s["min"] for s in stats], axis=0), "max": np.max([s["max"] for s in stats], axis=0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(total)])}
    for key in stats[0]:
        if re.fullmatch(r"q\d\d", key):
            values = np.stack([s[key] for s in stats])
            out[key] = values.min(0) if int(key[1:]) <= 50 else values.max(0)
    return out


def _listed(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: v.tolist() for k, v in stats.items()}


# --- export -----------------------------------------------------------------------------------------------------
@dataclass
class _Episode:
    video_id: str
    game: str
    chunks: list[Chunk]
    fps: int
    size: tuple[int, int]  # H, W of the frames

    @property
    def length(self) -> int:
        return sum(len(c) for c in self.chunks)


def _integer_fps(chunk: Chunk) -> int:
    fps = chunk.fps
    whole = round(fps)
    if whole < 1 or abs(fps - whole) > 0.01 * whole:
        raise LeRobotError(chunk.directory / "metadata.json", "chunk_size",
                           f"{fps:.4g} rows per second: LeRobot needs an integer frame rate")
    return int(whole)


def _episodes_of(ds: Dataset) -> list[_Episode]:
    """Groups a validated dataset's chunks into episodes (one per video) and checks what LeRobot needs."""
    if ds.problems:
        first = ds.problems[0]
        more = f" (and {len(ds.problems) - 1} more bad chunks; see azote data validate)" if len(ds.problems) > 1 else ""
        raise LeRobotError(first.path, first.field, first.message + more)
    if ds.missing_video:
        c = ds.missing_video[0]
        raise LeRobotError(c.directory / "metadata.json", "original_video.url",
                           f"no local video for {c.video_id} ({len(ds.missing_video)} chunks without one; "
                           f"pass the folder of source videos)")
    if not ds.chunks:
        raise LeRobotError(ds.root, "actions", "no chunks to export")
    groups: dict[str, list[Chunk]] = {}
    for c in ds.chunks:  # sorted by (video_id, index)
        groups.setdefault(c.video_id, []).append(c)
    episodes = []
    for video_id, chunks in groups.items():
        numbers = [c.index for c in chunks]  # released shards may hold a video's later chunks only: not a gap
        if numbers != list(range(numbers[0], numbers[0] + len(chunks))):
            missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            raise LeRobotError(chunks[-1].directory.parent, "chunk_id",
                               f"video {video_id} lacks chunk {missing[0]}: an episode must be continuous")
        games = {c.game or "" for c in chunks}
        if len(games) != 1:
            raise LeRobotError(chunks[0].directory.parent, "game", f"video {video_id} has several games {sorted(games)}")
        rates = {_integer_fps(c) for c in chunks}
        if len(rates) != 1:
            raise LeRobotError(chunks[-1].directory / "metadata.json", "chunk_size",
                               f"video {video_id} has chunks at several frame rates {sorted(rates)}")
        h, w = int(chunks[0].video_info["height"]), int(chunks[0].video_info["width"])
        # the size written: VideoWriter pads odd sizes to even (4:2:0 chroma), as the feature's shape must say
        episodes.append(_Episode(video_id, games.pop() or "unknown", chunks, rates.pop(), (h + h % 2, w + w % 2)))
    first = episodes[0]
    for e in episodes[1:]:
        if e.fps != first.fps:
            raise LeRobotError(e.chunks[0].directory / "metadata.json", "fps",
                               f"video {e.video_id} runs at {e.fps} fps, {first.video_id} at {first.fps}: a LeRobot "
                               f"dataset has one frame rate")
        if e.size != first.size:
            raise LeRobotError(e.chunks[0].video_path or e.chunks[0].directory, "resolution",
                               f"video {e.video_id} is {e.size[0]}x{e.size[1]}, {first.video_id} is "
                               f"{first.size[0]}x{first.size[1]}: a LeRobot camera has one frame size")
    return episodes


def _frames(episode: _Episode) -> Iterator[np.ndarray]:
    """Frame i of the episode for each row i, chunk after chunk (each chunk seeks to its own start)."""
    for chunk in episode.chunks:
        try:
            yield from chunk.frames()
        except VideoError as exc:
            raise LeRobotError(chunk.video_path or chunk.directory, "video", str(exc)) from None


def _stats_sample(length: int) -> set[int]:
    return set(np.linspace(0, length - 1, min(length, STATS_FRAMES)).round().astype(int).tolist())


def _small(frame: np.ndarray) -> np.ndarray:
    side = max(frame.shape[:2])
    step = side // STATS_SIDE if side >= 2 * STATS_SIDE else 1
    return frame[::step, ::step]


def _data_table(actions: ActionChunk, episode_index: int, first_index: int, task_index: int, fps: int) -> pa.Table:
    n = len(actions)
    vectors = actions.to_model_vectors().astype(np.float32)
    frame_index = np.arange(n, dtype=np.int64)
    return pa.table({
        "action": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), MODEL_ACTION_DIM),
        "timestamp": pa.array((frame_index / fps).astype(np.float32)),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.full(n, episode_index, np.int64)),
        "index": pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
        "task_index": pa.array(np.full(n, task_index, np.int64)),
    })


class _DataFiles:
    """`data/chunk-C/file-F.parquet`, one row group per episode, rolling over at the size limit."""

    def __init__(self, root: Path, limit_bytes: int, chunks_size: int) -> None:
        self.root, self.limit, self.chunks_size = root, limit_bytes, chunks_size
        self.chunk_index, self.file_index = 0, 0
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._bytes = 0

    def add(self, table: pa.Table) -> tuple[int, int]:
        if self._writer is not None and self._bytes + table.nbytes > self.limit:
            self.close()
            self.chunk_index, self.file_index = _next_file(self.chunk_index, self.file_index, self.chunks_size)
        if self._writer is None:
            self._path = self.root / DATA_PATH.format(chunk_index=self.chunk_index, file_index=self.file_index)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._path.with_name(f".{self._path.name}.tmp"), table.schema,
                                            compression="snappy")
            self._bytes = 0
        self._writer.write_table(table)
        self._bytes += table.nbytes
        return self.chunk_index, self.file_index

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            os.replace(self._path.with_name(f".{self._path.name}.tmp"), self._path)  # type: ignore[union-attr]
            self._writer = None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._path.with_name(f".{self._path.name}.tmp").unlink(missing_ok=True)  # type: ignore[union-attr]
            self._writer = None


class _VideoFiles:
    """`videos/<key>/chunk-C/file-F.mp4`. As LeRobot does, each episode is encoded on its own (so it starts on a
    keyframe, and its exact size is known) and then appended to the current file, its packets' times shifted
    past the episodes already there (no re-encoding); a file that would pass the size limit is closed first."""

    def __init__(self, root: Path, key: str, fps: int, crf: int, limit_bytes: int, chunks_size: int) -> None:
        self.root, self.key, self.fps, self.crf = root, key, fps, crf
        self.limit, self.chunks_size = limit_bytes, chunks_size
        self.chunk_index, self.file_index = 0, 0
        self.scratch = root / "videos" / ".episode.mp4"
        self.first_file: Path | None = None
        self._out: Any = None  # the open output container, writing to `_tmp`
        self._stream: Any = None
        self._path = self._tmp = root
        self._bytes = self._frames = 0

    def episode_writer(self) -> VideoWriter:
        """Where the next episode's frames are encoded, before `append`."""
        return VideoWriter(self.scratch, self.fps, crf=self.crf)

    def append(self, frames: int) -> tuple[int, int, int]:
        """Moves the episode just encoded into the current file; returns (chunk, file, its first frame there)."""
        size = self.scratch.stat().st_size
        if self._out is not None and self._bytes + size >= self.limit:
            self.close()
            self.chunk_index, self.file_index = _next_file(self.chunk_index, self.file_index, self.chunks_size)
        if self._out is None:
            self._path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk_index,
                                                       file_index=self.file_index)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self._path.with_name(f".{self._path.name}.partial")
            self._out = av.open(str(self._tmp), mode="w", format="mp4")
            self._stream, self._bytes, self._frames = None, 0, 0
        first = self._frames
        with av.open(str(self.scratch), format="mp4") as src:
            stream = src.streams.video[0]
            if self._stream is None:
                self._stream = self._out.add_stream_from_template(stream)
            shift = round(Fraction(first, self.fps) / stream.time_base)
            for packet in src.demux(stream):
                if packet.dts is None:  # the demuxer's empty packet at the end
                    continue
                packet.dts += shift
                if packet.pts is not None:
                    packet.pts += shift
                packet.stream = self._stream
                self._out.mux(packet)
        self.scratch.unlink()
        self._frames += frames
        self._bytes += size
        self.first_file = self.first_file or self._path
        return self.chunk_index, self.file_index, first

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            os.replace(self._tmp, self._path)

    def abort(self) -> None:
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # closing a half-written container may fail again; the file is deleted anyway
                pass
            self._out = None
            self._tmp.unlink(missing_ok=True)
        self.scratch.unlink(missing_ok=True)


def _video_feature(path: Path, size: tuple[int, int], crf: int) -> dict[str, Any]:
    """The info.json entry of the camera, with the `info` block read back from the written file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {"video.height": s.height, "video.width": s.width, "video.codec": s.codec_context.codec.canonical_name,
                "video.pix_fmt": s.codec_context.pix_fmt, "video.fps": int(round(float(s.base_rate or s.average_rate))),
                "video.channels": 3, "has_audio": bool(c.streams.audio)}
    info.update({"is_depth_map": False, "video.crf": crf, "video.preset": "veryfast"})
    return {"dtype": "video", "shape": [size[0], size[1], 3], "names": ["height", "width", "channels"], "info": info}


def export_lerobot(
    dataset_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    video_dir: str | os.PathLike | None = None,
    camera: str = DEFAULT_CAMERA,
    robot_type: str = DEFAULT_ROBOT_TYPE,
    crf: int = 18,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    data_files_size_in_mb: int = DEFAULT_DATA_FILE_MB,
    video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_MB,
    progress: bool = True,
) -> dict[str, Any]:
    """Writes the Azote dataset at `dataset_root` as a LeRobotDataset v3.0 at `out` (which must not exist, or be
    empty). Every chunk is validated first (`Dataset.open`); any bad chunk stops the export. Returns a summary."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", camera) or camera.startswith("."):
        raise ValueError(f"camera must be a plain name (letters, digits, _ . -), got {camera!r}")
    for name, value in (("chunks_size", chunks_size), ("data_files_size_in_mb", data_files_size_in_mb),
                        ("video_files_size_in_mb", video_files_size_in_mb)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    ds = Dataset.open(dataset_root, video_dir=video_dir, check_video=True)
    episodes = _episodes_of(ds)
    tasks: dict[str, int] = {}
    for e in episodes:
        tasks.setdefault(e.game, len(tasks))
    fps, size, key = episodes[0].fps, episodes[0].size, f"observation.images.{camera}"
    out = Path(out)
    staging = _staging(out)
    data = _DataFiles(staging, data_files_size_in_mb * _BYTES_PER_MB, chunks_size)
    videos = _VideoFiles(staging, key, fps, crf, video_files_size_in_mb * _BYTES_PER_MB, chunks_size)
    rows: list[dict[str, Any]] = []
    stats: list[dict[str, dict[str, np.ndarray]]] = []
    total = 0
    try:
        for index, e in enumerate(_bar(episodes, len(episodes), "export", progress)):
            actions = ActionChunk.concat([c.actions for c in e.chunks])
            table = _data_table(actions, index, total, tasks[e.game], fps)
            sample, sampled = _stats_sample(len(actions)), []
            with videos.episode_writer() as writer:
                for i, frame in enumerate(_frames(e)):
                    writer.write(frame)
                    if i in sample:
                        sampled.append(_small(frame))
            if writer.frames != len(actions):  # Chunk.frames raises first; this guards the pairing itself
                raise LeRobotError(e.chunks[0].video_path or e.chunks[0].directory, "frames",
                                   f"{writer.frames} frames for {len(actions)} rows")
            v_chunk, v_file, first_frame = videos.append(len(actions))
            d_chunk, d_file = data.add(table)
            ep_stats = {"action": _vector_stats(actions.to_model_vectors())}
            for name in INDEX_FEATURES:
                ep_stats[name] = _vector_stats(table.column(name).to_numpy().reshape(-1, 1))
            ep_stats[key] = _image_stats(sampled)
            stats.append(ep_stats)
            row: dict[str, Any] = {
                "episode_index": index, "tasks": [e.game], "length": len(actions),
                "data/chunk_index": d_chunk, "data/file_index": d_file,
                "dataset_from_index": total, "dataset_to_index": total + len(actions),
                f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                f"videos/{key}/from_timestamp": first_frame / fps,
                f"videos/{key}/to_timestamp": (first_frame + len(actions)) / fps,
            }
            for feature, values in ep_stats.items():
                for stat_name, value in values.items():
                    row[f"stats/{feature}/{stat_name}"] = value.tolist()
            row[VIDEO_ID_COLUMN] = e.video_id
            rows.append(row)
            total += len(actions)
        videos.close()
        data.close()
        features: dict[str, Any] = {
            "action": {"dtype": "float32", "shape": [MODEL_ACTION_DIM], "names": list(ACTION_NAMES)},
            key: _video_feature(videos.first_file, size, crf),  # type: ignore[arg-type]
            **copy.deepcopy(INDEX_FEATURES),
        }
        _write_episodes(staging, rows, data_files_size_in_mb * _BYTES_PER_MB, chunks_size)
        _write_tasks(staging / TASKS_PATH, tasks)
        names = stats[0].keys()
        _atomic_json(staging / STATS_PATH, {n: _listed(_aggregate([s[n] for s in stats])) for n in names})
        info = {
            "codebase_version": CODEBASE_VERSION, "fps": fps, "features": features,
            "total_episodes": len(episodes), "total_frames": total, "total_tasks": len(tasks),
            "chunks_size": chunks_size, "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
            "robot_type": robot_type, "splits": {"train": f"0:{len(episodes)}"},
        }
        _atomic_json(staging / INFO_PATH, info)  # last: a dataset with info.json is complete
        _finish(staging, out)
    except BaseException:
        videos.abort()
        data.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {(r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"]) for r in rows}
    return {"out": str(out), "episodes": len(episodes), "frames": total, "tasks": len(tasks), "fps": fps,
            "camera": key, "video_files": len(files)}


def _write_episodes(root: Path, rows: list[dict[str, Any]], limit_bytes: int, chunks_size: int) -> None:
    """`meta/episodes/chunk-C/file-F.parquet`; each row says which file it is in (`meta/episodes/...`)."""
    per_row = max(1, pa.Table.from_pylist(rows[:1]).nbytes)
    per_file = max(1, limit_bytes // per_row)
    chunk_index, file_index = 0, 0
    for start in range(0, len(rows), per_file):
        part = [{**r, "meta/episodes/chunk_index": chunk_index, "meta/episodes/file_index": file_index}
                for r in rows[start : start + per_file]]
        _atomic_parquet(root / EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index),
                        pa.Table.from_pylist(part))
        chunk_index, file_index = _next_file(chunk_index, file_index, chunks_size)


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """`tasks.parquet` as pandas writes a frame indexed by `task` with one `task_index` column: LeRobot reads it
    with `pandas.read_parquet` and looks tasks up by that index, which the `pandas` schema metadata restores."""
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "task": pa.array(list(tasks), pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    _atomic_parquet(path, table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}))


# --- import -----------------------------------------------------------------------------------------------------
def _checked_file(path: Path, limit: int, what: str = "file") -> None:
    """A regular file of at most `limit` bytes, before it is opened (a FIFO would block, /dev/zero never ends)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LeRobotError(path, what, "missing") from None
    except OSError as exc:
        raise LeRobotError(path, what, f"unreadable ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise LeRobotError(path, what, "not a regular file")
    if st.st_size > limit:
        raise LeRobotError(path, what, f"{st.st_size} bytes, more than the {limit} read for it")


def _int(value: Any, path: Path, field: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LeRobotError(path, field, f"must be an integer >= {low}, got {value!r:.60}")
    return int(value)


def _template(value: Any, path: Path, field: str, allowed: set[str]) -> str:
    """A path template from info.json: only {chunk_index}, {file_index} (and {video_key}) with an integer format,
    nothing that str.format would turn into attribute or item access."""
    if not isinstance(value, str) or not value:
        raise LeRobotError(path, field, f"must be a path template, got {value!r:.60}")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise LeRobotError(path, field, f"not a valid template ({exc})") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed or conversion or not re.fullmatch(r"(0?\d{0,2}d)?", spec or ""):
            raise LeRobotError(path, field, f"template field {{{name}{':' + spec if spec else ''}}} is not one of "
                                            f"{sorted(allowed)} with an integer format")
    return value


def _relative(root: Path, rel: str, path: Path, field: str) -> Path:
    problem = local_url_problem(rel)
    if problem:
        raise LeRobotError(path, field, f"{rel!r}: {problem}")
    return root / rel


@dataclass
class _Info:
    fps: int
    camera: str
    shape: tuple[int, int]
    data_path: str
    video_path: str
    total_episodes: int
    total_frames: int


def _read_info(root: Path, camera: str | None) -> _Info:
    path = root / INFO_PATH
    _checked_file(path, MAX_INFO_BYTES)
    try:
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LeRobotError(path, "json", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise LeRobotError(path, "json", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise LeRobotError(path, "json", "top level must be an object")
    version = raw.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise LeRobotError(path, "codebase_version", f"is {version!r:.40}, only {CODEBASE_VERSION!r} is read "
                                                      f"(convert older datasets with lerobot's converter)")
    fps = _int(raw.get("fps"), path, "fps", low=1)
    features = raw.get("features")
    if not isinstance(features, dict):
        raise LeRobotError(path, "features", "must be an object")
    action = features.get("action")
    if not isinstance(action, dict):
        raise LeRobotError(path, "features.action", "missing: the gamepad action feature")
    if action.get("dtype") not in ("float32", "float64"):
        raise LeRobotError(path, "features.action.dtype", f"is {action.get('dtype')!r:.40}, expected float32")
    if action.get("shape") != [MODEL_ACTION_DIM]:
        raise LeRobotError(path, "features.action.shape",
                           f"is {action.get('shape')!r:.60}, expected [{MODEL_ACTION_DIM}] (the gamepad's 25 floats)")
    names = action.get("names")
    if isinstance(names, dict) and len(names) == 1:  # LeRobot also writes {"axes": [...]}
        names = next(iter(names.values()))
    if names is not None and list(names) != list(ACTION_NAMES):
        raise LeRobotError(path, "features.action.names", "are not the gamepad's 25 slots (another layout of 25 "
                                                          f"floats?): expected {list(ACTION_NAMES)[:3]}...")
    videos = sorted(k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") == "video")
    if not videos:
        raise LeRobotError(path, "features", "no video feature: Azote keeps the frames the actions belong to")
    if camera is None:
        if len(videos) > 1:
            raise LeRobotError(path, "features", f"several cameras {videos}: choose one")
        key = videos[0]
    else:
        key = camera if camera in videos else f"observation.images.{camera}"
        if key not in videos:
            raise LeRobotError(path, "features", f"no camera {camera!r}; the cameras are {videos}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key) or key.startswith("."):
        raise LeRobotError(path, f"features.{key}", "a camera name must be a plain name (it names a folder)")
    shape = features[key].get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and shape[2] == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 1 << 14 for s in shape)):
        raise LeRobotError(path, f"features.{key}.shape", f"is {shape!r:.60}, expected [height, width, 3]")
    return _Info(
        fps=fps, camera=key, shape=(shape[0], shape[1]),
        data_path=_template(raw.get("data_path"), path, "data_path", {"chunk_index", "file_index"}),
        video_path=_template(raw.get("video_path"), path, "video_path", {"chunk_index", "file_index", "video_key"}),
        total_episodes=_int(raw.get("total_episodes"), path, "total_episodes"),
        total_frames=_int(raw.get("total_frames"), path, "total_frames"),
    )


def _read_tasks(root: Path) -> dict[int, str]:
    path = root / TASKS_PATH
    _checked_file(path, MAX_TASKS_BYTES)
    try:
        if pq.read_metadata(path).num_rows > MAX_META_ROWS:
            raise LeRobotError(path, "rows", f"more than {MAX_META_ROWS} tasks")
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise LeRobotError(path, "parquet", f"unreadable ({exc})") from None
    # pandas stores the `task` index as a column named after it (or __index_level_0__ when unnamed)
    text = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
    if "task_index" not in table.column_names or text is None:
        raise LeRobotError(path, "task_index", f"needs columns task_index and task, has {table.column_names}")
    out: dict[int, str] = {}
    for i, t in zip(table.column("task_index").to_pylist(), table.column(text).to_pylist()):
        if not isinstance(t, str):
            raise LeRobotError(path, "task", f"must be text, got {t!r:.60}")
        out[_int(i, path, "task_index")] = t
    return out


def _episode_columns(key: str) -> list[str]:
    return ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
            "dataset_to_index", f"videos/{key}/chunk_index", f"videos/{key}/file_index",
            f"videos/{key}/from_timestamp", f"videos/{key}/to_timestamp"]


def _read_episodes(root: Path, info: _Info) -> list[dict[str, Any]]:
    """Every episode's row (stats left unread), checked against info.json: indices 0..N-1, lengths adding up to
    total_frames, contiguous global row ranges."""
    base = root / EPISODES_DIR
    files = sorted(base.glob("chunk-*/file-*.parquet"))[: MAX_EPISODE_FILES + 1]
    if not files:
        raise LeRobotError(base, "file", "no chunk-XXX/file-XXX.parquet of episodes")
    if len(files) > MAX_EPISODE_FILES:
        raise LeRobotError(base, "file", f"more than {MAX_EPISODE_FILES} episode files")
    wanted = _episode_columns(info.camera)
    rows: list[dict[str, Any]] = []
    for path in files:
        _checked_file(path, MAX_EPISODES_FILE_BYTES)
        try:
            pf = pq.ParquetFile(path)
            if pf.metadata.num_rows > MAX_META_ROWS:
                raise LeRobotError(path, "rows", f"more than {MAX_META_ROWS} episodes in one file")
            names = pf.schema_arrow.names
            for col in wanted:
                if col not in names:
                    raise LeRobotError(path, col, "column missing")
            table = pf.read(columns=wanted + ([VIDEO_ID_COLUMN] if VIDEO_ID_COLUMN in names else []))
        except (pa.ArrowException, OSError) as exc:
            raise LeRobotError(path, "parquet", f"unreadable ({exc})") from None
        for row in table.to_pylist():
            row["_file"] = path
            rows.append(row)
    rows.sort(key=lambda r: r["episode_index"] if isinstance(r["episode_index"], int) else -1)
    info_path = root / INFO_PATH
    if len(rows) != info.total_episodes:
        raise LeRobotError(info_path, "total_episodes", f"says {info.total_episodes}, meta/episodes has {len(rows)}")
    end = 0
    for i, r in enumerate(rows):
        p = r["_file"]
        if _int(r["episode_index"], p, "episode_index") != i:
            raise LeRobotError(p, "episode_index", f"episodes must be numbered 0..{len(rows) - 1}; {i} is missing")
        length = _int(r["length"], p, f"length (episode {i})", low=1)
        start = _int(r["dataset_from_index"], p, f"dataset_from_index (episode {i})")
        if start != end or _int(r["dataset_to_index"], p, f"dataset_to_index (episode {i})") != start + length:
            raise LeRobotError(p, f"dataset_from_index (episode {i})",
                               f"rows [{start}, {r['dataset_to_index']}) disagree with length {length} after row {end}")
        end += length
        tasks = r["tasks"]
        if not (isinstance(tasks, list) and len(tasks) == 1 and isinstance(tasks[0], str)):
            raise LeRobotError(p, f"tasks (episode {i})", f"must hold one task (Azote keeps one game per video), "
                                                          f"got {tasks!r:.60}")
        for col in ("data/chunk_index", "data/file_index", f"videos/{info.camera}/chunk_index",
                    f"videos/{info.camera}/file_index"):
            _int(r[col], p, f"{col} (episode {i})")
        for col in (f"videos/{info.camera}/from_timestamp", f"videos/{info.camera}/to_timestamp"):
            v = r[col]
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise LeRobotError(p, f"{col} (episode {i})", f"must be a time >= 0, got {v!r:.40}")
    if end != info.total_frames:
        raise LeRobotError(info_path, "total_frames", f"says {info.total_frames}, the episodes' lengths add up to {end}")
    return rows


class _DataReader:
    """Reads a data file's columns once and hands out episodes' rows; the file is checked before it is opened."""

    COLUMNS = ("action", "timestamp", "frame_index", "episode_index", "index")

    def __init__(self, root: Path, info: _Info) -> None:
        self.root, self.info = root, info
        self._path: Path | None = None
        self._cols: dict[str, np.ndarray] = {}

    def _load(self, path: Path) -> None:
        _checked_file(path, MAX_DATA_FILE_BYTES)
        try:
            pf = pq.ParquetFile(path)
            if pf.metadata.num_rows > MAX_DATA_ROWS:
                raise LeRobotError(path, "rows", f"{pf.metadata.num_rows} rows, more than {MAX_DATA_ROWS} in one file")
            for col in self.COLUMNS:
                if col not in pf.schema_arrow.names:
                    raise LeRobotError(path, col, "column missing")
            table = pf.read(columns=list(self.COLUMNS))
        except (pa.ArrowException, OSError) as exc:
            raise LeRobotError(path, "parquet", f"unreadable ({exc})") from None
        action = table.column("action").combine_chunks()
        t = action.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) or not (
                pa.types.is_floating(t.value_type)):
            raise LeRobotError(path, "action", f"must be a list of floats, has type {t}")
        if action.null_count or (not pa.types.is_fixed_size_list(t)
                                 and not (action.value_lengths().to_numpy(zero_copy_only=False) == MODEL_ACTION_DIM).all()):
            raise LeRobotError(path, "action", f"every row must hold {MODEL_ACTION_DIM} floats")
        if pa.types.is_fixed_size_list(t) and t.list_size != MODEL_ACTION_DIM:
            raise LeRobotError(path, "action", f"rows hold {t.list_size} floats, expected {MODEL_ACTION_DIM}")
        cols = {"action": action.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, MODEL_ACTION_DIM)}
        for name in self.COLUMNS[1:]:
            col = table.column(name)
            if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                raise LeRobotError(path, name, f"must be numbers without nulls, has type {col.type}")
            cols[name] = col.to_numpy()
        self._path, self._cols = path, cols

    def episode(self, r: dict[str, Any]) -> np.ndarray:
        """The episode's [length, 25] actions, after checking its rows' frame_index, index and timestamp."""
        rel = self.info.data_path.format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        path = _relative(self.root, rel, r["_file"], "data_path")
        if path != self._path:
            self._load(path)
        i, length, fps = r["episode_index"], r["length"], self.info.fps
        where = np.flatnonzero(self._cols["episode_index"] == i)
        if len(where) != length:
            raise LeRobotError(path, "episode_index", f"episode {i} has {len(where)} rows, meta/episodes says length "
                                                      f"{length}: frame counts disagree")
        order = where[np.argsort(self._cols["frame_index"][where], kind="stable")]
        if not np.array_equal(self._cols["frame_index"][order], np.arange(length)):
            raise LeRobotError(path, "frame_index", f"episode {i}: frames must be numbered 0..{length - 1} once each")
        if not np.array_equal(self._cols["index"][order], np.arange(r["dataset_from_index"], r["dataset_to_index"])):
            raise LeRobotError(path, "index", f"episode {i}: rows must be [{r['dataset_from_index']}, "
                                              f"{r['dataset_to_index']}) as meta/episodes says")
        drift = np.abs(self._cols["timestamp"][order].astype(np.float64) - np.arange(length) / fps)
        if drift.size and drift.max() > 0.5 / fps:
            raise LeRobotError(path, "timestamp", f"episode {i}: frame {int(drift.argmax())} is off the {fps} fps clock")
        return self._cols["action"][order]


def _episode_frames(root: Path, info: _Info, r: dict[str, Any]) -> Iterator[np.ndarray]:
    """The episode's frames from its video file: frame i at from_timestamp + i / fps."""
    key, i, length, fps = info.camera, r["episode_index"], r["length"], info.fps
    rel = info.video_path.format(video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                                 file_index=r[f"videos/{key}/file_index"])
    path = _relative(root, rel, r["_file"], "video_path")
    start_t, end_t = r[f"videos/{key}/from_timestamp"], r[f"videos/{key}/to_timestamp"]
    if abs((end_t - start_t) * fps - length) > 1.0:
        raise LeRobotError(r["_file"], f"videos/{key}/to_timestamp (episode {i})",
                           f"[{start_t:.6g}, {end_t:.6g}) s holds {(end_t - start_t) * fps:.1f} frames at {fps} fps, "
                           f"the episode has {length}: frame counts disagree")
    _checked_file(path, 1 << 50, "video")  # any size: only the episode's frames are decoded
    try:
        facts = probe(path, count_frames=False, strict=True)
    except VideoError as exc:
        raise LeRobotError(path, "video", str(exc).removeprefix(f"{path}: ")) from None
    if abs(facts["fps"] - fps) > 0.01 * fps:
        raise LeRobotError(path, "fps", f"video runs at {facts['fps']:.4g} fps, info.json says {fps}")
    if [facts["height"], facts["width"]] != list(info.shape):
        raise LeRobotError(path, f"features.{key}.shape", f"video is {facts['height']}x{facts['width']}, info.json says "
                                                          f"{info.shape[0]}x{info.shape[1]}")
    count = 0
    try:
        for frame in read_frames(path, int(round(start_t * fps)), length, strict=True):
            count += 1
            yield frame
    except VideoError as exc:
        raise LeRobotError(path, "video", str(exc).removeprefix(f"{path}: ")) from None
    if count != length:
        raise LeRobotError(path, "frames", f"episode {i} needs {length} frames from {start_t:.6g} s, the video has "
                                           f"{count}: frame counts disagree")


def _video_ids(rows: list[dict[str, Any]]) -> list[str]:
    """Each episode's Azote video id: the one it was exported from when the dataset says so, else episode_NNNNNN."""
    ids, seen = [], set()
    for r in rows:
        vid = r.get(VIDEO_ID_COLUMN)
        ok = isinstance(vid, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", vid) and not vid.startswith(".")
        vid = vid if ok and vid not in seen else f"episode_{r['episode_index']:06d}"
        seen.add(vid)
        ids.append(vid)
    return ids


def import_lerobot(
    lerobot_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    camera: str | None = None,
    crf: int = 18,
    progress: bool = True,
) -> dict[str, Any]:
    """Writes the LeRobotDataset v3.0 at `lerobot_root` as an Azote dataset at `out` (which must not exist, or
    be empty): one video per episode, its task as the game. `camera` picks the video feature when there are
    several (`observation.images.<camera>` or the full key). Metadata is checked before anything is written; each
    episode's rows and frames are checked as they are read. Returns a summary."""
    root = Path(lerobot_root)
    if not root.is_dir():
        raise FileNotFoundError(f"LeRobot dataset directory {root} does not exist")
    info = _read_info(root, camera)
    tasks = _read_tasks(root)
    rows = _read_episodes(root, info)
    ids = _video_ids(rows)
    out = Path(out)
    staging = _staging(out)
    data = _DataReader(root, info)
    try:
        for r, vid in _bar(list(zip(rows, ids)), len(rows), "import", progress):
            vectors = data.episode(r)
            try:
                actions = ActionChunk.from_model_vectors(vectors)
            except GamepadError as exc:
                raise LeRobotError(data._path or root, "action", f"episode {r['episode_index']}: {exc}") from None
            with EpisodeWriter(staging, vid, r["tasks"][0], info.fps, source="lerobot", crf=crf) as w:
                for frame, action in zip(_episode_frames(root, info, r), actions, strict=True):
                    w.add(frame, action)
        _finish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"out": str(out), "videos": len(rows), "rows": info.total_frames, "fps": info.fps, "camera": info.camera,
            "games": sorted({r["tasks"][0] for r in rows}), "tasks": len(tasks)}
