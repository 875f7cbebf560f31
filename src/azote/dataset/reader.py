"""Reads datasets in the NitroGen label layout: ours (with video) and the released label shards (often without).

A bad file never stops the rest from loading: `Dataset.open` keeps the good chunks in `chunks` and reports each
bad one in `problems` as a `DatasetError` naming the file and the field. Every chunk goes through `open_chunk`,
the one validation of the format (metadata, actions, and the video they index), whoever reads the dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from azote.dataset.format import (
    ACTIONS_FILE,
    METADATA_FILE,
    ChunkMetadata,
    DatasetError,
    is_remote,
    read_actions,
    read_metadata,
)
from azote.dataset.video import VideoError, probe, read_frames
from azote.gamepad import ActionChunk

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")


@dataclass
class Chunk:
    """One 20-second chunk: its metadata, its actions (read on demand) and where its frames are."""

    directory: Path
    metadata: ChunkMetadata
    video_path: Path | None

    @property
    def video_id(self) -> str:
        return self.metadata.original_video.video_id

    @property
    def index(self) -> int:
        return int(self.metadata.chunk_id)

    @property
    def game(self) -> str | None:
        return self.metadata.game

    @property
    def fps(self) -> float:
        return self.metadata.fps

    def __len__(self) -> int:
        return self.metadata.chunk_size

    @cached_property
    def actions(self) -> ActionChunk:
        return read_actions(self.directory / ACTIONS_FILE)

    @cached_property
    def video_info(self) -> dict:
        if self.video_path is None:
            raise VideoError(f"{self.directory}: no local video for {self.video_id}")
        return probe(self.video_path, strict=True)

    def video_frame_index(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Video frame shown at each row: row i is at start_time + i / fps (the chunk's own rate)."""
        ov = self.metadata.original_video
        vfps = self.video_info["fps"] or self.fps
        times = ov.start_time + np.asarray(rows, dtype=np.float64) / self.fps
        return np.floor(times * vfps + 1e-6).astype(np.int64)

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Decodes the frames of rows start .. start+count-1 in order (one per row)."""
        count = len(self) - start if count is None else count
        targets = self.video_frame_index(np.arange(start, start + count))
        if len(targets) == 0:
            return
        source = read_frames(self.video_path, int(targets[0]), int(targets[-1] - targets[0] + 1),  # type: ignore[arg-type]
                             strict=True)
        current, frame = int(targets[0]) - 1, None
        for want in targets:
            while current < want:
                try:
                    frame = next(source)
                except StopIteration:
                    raise VideoError(f"{self.video_path}: ends before frame {want} (chunk {self.directory.name})") from None
                current += 1
            yield frame  # type: ignore[misc]


@dataclass
class Dataset:
    root: Path
    chunks: list[Chunk] = field(default_factory=list)
    problems: list[DatasetError] = field(default_factory=list)
    missing_video: list[Chunk] = field(default_factory=list)  # released labels without a local video

    @staticmethod
    def open(root: str | os.PathLike, video_dir: str | os.PathLike | None = None, check_video: bool = True) -> "Dataset":
        """Scans `root/actions/**/metadata.json` and validates every chunk with `open_chunk`. `video_dir` holds
        `<video_id>.<ext>` source videos for released label shards. `check_video=False` skips probing the videos
        (a quick look at the labels only)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset directory {root} does not exist")
        ds = Dataset(root)
        base = root / "actions" if (root / "actions").is_dir() else root
        dirs = sorted({p.parent for p in base.rglob(METADATA_FILE)} | {p.parent for p in base.rglob(ACTIONS_FILE)})
        probes: dict[Path, dict | str] = {}  # each video probed once: its facts, or why it is unreadable
        for d in dirs:
            if any(part.startswith(".") for part in d.relative_to(base).parts):
                continue  # staging directories of an unfinished write
            try:
                chunk = open_chunk(root, d, video_dir, check_video=check_video, probes=probes)
            except DatasetError as exc:
                ds.problems.append(exc)
                continue
            (ds.missing_video if chunk.video_path is None else ds.chunks).append(chunk)
        ds.chunks.sort(key=lambda c: (c.video_id, c.index))
        return ds

    def games(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.chunks:
            out[c.game or "?"] = out.get(c.game or "?", 0) + 1
        return out

    def summary(self) -> dict:
        rows = sum(len(c) for c in self.chunks)
        seconds = sum(c.metadata.original_video.duration for c in self.chunks)
        return {
            "root": str(self.root),
            "chunks": len(self.chunks),
            "videos": len({c.video_id for c in self.chunks}),
            "rows": rows,
            "hours": round(seconds / 3600.0, 4),
            "games": self.games(),
            "labels_without_video": len(self.missing_video),
            "problems": [str(p) for p in self.problems],
        }


def open_chunk(root: str | os.PathLike, directory: str | os.PathLike, video_dir: str | os.PathLike | None = None, *,
               check_video: bool = True, probes: dict[Path, dict | str] | None = None) -> Chunk:
    """Reads and validates one chunk directory: the metadata's fields, the actions, their agreement, the video's
    path (inside the dataset root) and, with `check_video`, the video itself (it decodes, covers every row, and
    when it is the file the metadata names: its resolution, frame rate and start frame match). Raises only
    `DatasetError`, naming the file and the field. `probes` caches video probes across chunks of one video.
    The chunk's `video_path` is None for released labels whose video is not here."""
    root, d = Path(root), Path(directory)
    try:
        meta = read_metadata(d / METADATA_FILE)
        actions = read_actions(d / ACTIONS_FILE)
        if len(actions) != meta.chunk_size:
            raise DatasetError(d / METADATA_FILE, "chunk_size", f"says {meta.chunk_size} rows, parquet has {len(actions)}")
        url = meta.original_video.url or ""
        named = bool(url) and not is_remote(url)
        video = _find_video(root, meta, Path(video_dir) if video_dir else None)
        if video is None and named:
            raise DatasetError(d / METADATA_FILE, "original_video.url", f"video {root / url} is missing")
        chunk = Chunk(d, meta, video)
        chunk.__dict__["actions"] = actions  # already read and checked
        if check_video and video is not None:
            _check_video(chunk, probes if probes is not None else {}, named=named)
        return chunk
    except DatasetError:
        raise
    except VideoError as exc:
        raise DatasetError(d, "video", str(exc)) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, OSError, RecursionError) as exc:
        # whatever else a hostile file trips over is still that file's fault, reported like the others
        raise DatasetError(d, "chunk", f"unreadable ({type(exc).__name__}: {exc})") from None


def _check_video(chunk: Chunk, probes: dict, named: bool) -> None:
    """The video decodes and covers the chunk; the file the metadata names is also the video it describes. A
    source video found in `video_dir` may be any copy of the original (another size or rate), so only its length
    is checked there."""
    video: Path = chunk.video_path  # type: ignore[assignment]  (only chunks with a local video come here)
    ov, where = chunk.metadata.original_video, f"chunk {chunk.directory.name}"
    if video not in probes:
        try:
            # the frame count from the header (or the duration) rather than decoding hours of source video
            probes[video] = probe(video, count_frames=False, strict=True)
        except VideoError as exc:
            probes[video] = str(exc).removeprefix(f"{video}: ")
    info = probes[video]
    if isinstance(info, str):  # the video's own fault, repeated for each of its chunks
        raise DatasetError(video, "video", f"{info} ({where})")
    if info["frames"] < 1 or not info["fps"] > 0:
        raise DatasetError(video, "video", f"no frames or no frame rate ({where})")
    chunk.__dict__["video_info"] = info
    last = int(chunk.video_frame_index([len(chunk) - 1])[0])
    if last >= info["frames"]:
        raise DatasetError(video, "frames", f"video has {info['frames']} frames ({info['duration']:.2f} s), {where} "
                                            f"needs frame {last} (start_time {ov.start_time:.6g} s + {ov.duration:.6g} s)")
    if not named:
        return
    size = [info["height"], info["width"]]
    if ov.resolution is not None and list(ov.resolution) != size:
        raise DatasetError(video, "resolution", f"video is {size[0]}x{size[1]}, {where} says "
                                                f"original_video.resolution {ov.resolution}: another video?")
    if abs(info["fps"] - chunk.fps) > 0.01 * chunk.fps:  # our chunks hold one row per video frame
        raise DatasetError(video, "fps", f"video runs at {info['fps']:.4g} fps, {where} at {chunk.fps:.4g} "
                                         f"(chunk_size / duration)")
    if ov.start_frame is not None and abs(ov.start_frame - ov.start_time * info["fps"]) > 1.0:
        raise DatasetError(video, "start_frame", f"{where} says start_frame {ov.start_frame}, its start_time "
                                                 f"{ov.start_time:.6g} s is frame {ov.start_time * info['fps']:.1f}")


def _find_video(root: Path, meta: ChunkMetadata, video_dir: Path | None) -> Path | None:
    url = meta.original_video.url or ""
    if url and not is_remote(url):  # a path the metadata validator keeps inside the root
        p = root / url
        if p.is_file():
            return p
    if video_dir is not None:
        for ext in VIDEO_EXTENSIONS:
            p = video_dir / f"{meta.original_video.video_id}{ext}"
            if p.is_file():
                return p
    return None
