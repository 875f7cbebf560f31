"""Reads datasets in the NitroGen label layout: ours (with video) and the released label shards (often without).

A bad file never stops the rest from loading: `Dataset.open` keeps the good chunks in `chunks` and reports each
bad one in `problems` as a `DatasetError` naming the file and the field.
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
        return probe(self.video_path)

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
        source = read_frames(self.video_path, int(targets[0]), int(targets[-1] - targets[0] + 1))  # type: ignore[arg-type]
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
    def open(root: str | os.PathLike, video_dir: str | os.PathLike | None = None, check_video: bool = False) -> "Dataset":
        """Scans `root/actions/**/metadata.json`. `video_dir` holds `<video_id>.<ext>` source videos for released
        label shards. `check_video` also probes every video (frame count covers the chunk)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset directory {root} does not exist")
        ds = Dataset(root)
        base = root / "actions" if (root / "actions").is_dir() else root
        dirs = sorted({p.parent for p in base.rglob(METADATA_FILE)} | {p.parent for p in base.rglob(ACTIONS_FILE)})
        probed: dict[Path, dict] = {}
        for d in dirs:
            if any(part.startswith(".") for part in d.relative_to(base).parts):
                continue  # staging directories of an unfinished write
            try:
                chunk = _load_chunk(root, d, Path(video_dir) if video_dir else None)
                if chunk.video_path is None:
                    ds.missing_video.append(chunk)
                    continue
                if check_video:
                    if chunk.video_path not in probed:
                        probed[chunk.video_path] = probe(chunk.video_path)
                    chunk.__dict__["video_info"] = probed[chunk.video_path]
                    last = int(chunk.video_frame_index([len(chunk) - 1])[0])
                    if last >= probed[chunk.video_path]["frames"]:
                        raise DatasetError(chunk.video_path, "frames",
                                           f"video has {probed[chunk.video_path]['frames']} frames, "
                                           f"chunk {d.name} needs frame {last}")
                ds.chunks.append(chunk)
            except DatasetError as exc:
                ds.problems.append(exc)
            except VideoError as exc:
                ds.problems.append(DatasetError(d, "video", str(exc)))
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


def _load_chunk(root: Path, d: Path, video_dir: Path | None) -> Chunk:
    meta = read_metadata(d / METADATA_FILE)
    actions = read_actions(d / ACTIONS_FILE)
    if len(actions) != meta.chunk_size:
        raise DatasetError(d / METADATA_FILE, "chunk_size", f"says {meta.chunk_size} rows, parquet has {len(actions)}")
    chunk = Chunk(d, meta, _find_video(root, meta, video_dir))
    chunk.__dict__["actions"] = actions  # already read and checked
    url = meta.original_video.url or ""
    ours = bool(url) and "://" not in url
    if chunk.video_path is None and ours:
        raise DatasetError(d / METADATA_FILE, "original_video.url", f"video {root / url} is missing")
    return chunk


def _find_video(root: Path, meta: ChunkMetadata, video_dir: Path | None) -> Path | None:
    url = meta.original_video.url or ""
    if url and "://" not in url:
        p = root / url
        if p.is_file():
            return p
    if video_dir is not None:
        for ext in VIDEO_EXTENSIONS:
            p = video_dir / f"{meta.original_video.video_id}{ext}"
            if p.is_file():
                return p
    return None
