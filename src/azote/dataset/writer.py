"""Writes one video and its action labels in the dataset format, so that a killed writer leaves nothing half-done.

The video goes to `videos/<id>.mp4.partial` while frames arrive; actions stay in memory (a few MB per hour).
`close()` renames the video, writes every 20-second chunk into a hidden staging directory and renames that
directory to `actions/SHARD_XXXX/<id>` in one step: a video's label directory exists only when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from azote.dataset.format import (
    CHUNK_SECONDS,
    ChunkMetadata,
    GameArea,
    OriginalVideo,
    chunk_name,
    video_relpath,
    write_chunk,
)
from azote.dataset.video import VideoWriter
from azote.gamepad import ActionChunk, Gamepad


def video_labels_dir(root: str | os.PathLike, video_id: str, shard: int = 0) -> Path:
    return Path(root) / "actions" / f"SHARD_{shard:04d}" / video_id


def is_complete(root: str | os.PathLike, video_id: str, shard: int = 0) -> bool:
    """True when a video and its labels were fully written (what resumable jobs skip)."""
    return video_labels_dir(root, video_id, shard).is_dir() and (Path(root) / video_relpath(video_id)).is_file()


class EpisodeWriter:
    """Frames and the action taken at each frame -> `videos/<id>.mp4` + 20-second label chunks."""

    def __init__(
        self,
        root: str | os.PathLike,
        video_id: str,
        game: str,
        fps: float,
        *,
        source: str = "azote",
        controller_type: str | None = None,
        bbox_controller_overlay: list[float] | None = None,
        chunk_seconds: float = CHUNK_SECONDS,
        shard: int = 0,
        crf: int = 18,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if "/" in video_id or video_id.startswith("."):
            raise ValueError(f"video_id must be a plain name, got {video_id!r}")
        self.root, self.video_id, self.game, self.fps = Path(root), video_id, game, float(fps)
        self.source, self.controller_type, self.overlay = source, controller_type, bbox_controller_overlay
        self.rows_per_chunk = max(1, int(round(chunk_seconds * self.fps)))
        self.shard, self.extra = shard, dict(extra or {})
        self._video = VideoWriter(self.root / video_relpath(video_id), self.fps, crf=crf)
        self._actions: list[Gamepad] = []
        self._frame_shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._actions)

    def add(self, frame: np.ndarray, action: Gamepad) -> None:
        """Frame i of the video and the action taken while it was shown."""
        self._video.write(frame)
        self._frame_shape = self._frame_shape or frame.shape[:2]
        self._actions.append(action)

    def add_chunk(self, frames: list[np.ndarray], actions: ActionChunk) -> None:
        for frame, action in zip(frames, actions, strict=True):
            self.add(frame, action)

    def abort(self) -> None:
        self._video.abort()

    def close(self) -> list[Path]:
        """Finishes the video and writes the label chunks; returns the chunk directories."""
        if not self._actions:
            self._video.abort()
            return []
        self._video.close()
        actions = ActionChunk.stack(self._actions)
        final = video_labels_dir(self.root, self.video_id, self.shard)
        staging = final.with_name(f".{self.video_id}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        h, w = self._frame_shape  # type: ignore[misc]
        ph, pw = self._video.padded_size  # type: ignore[misc]
        area = None if (ph, pw) == (h, w) else GameArea(xtl=0.0, ytl=0.0, xbr=w / pw, ybr=h / ph)
        for index, start in enumerate(range(0, len(actions), self.rows_per_chunk)):
            rows = actions[start : start + self.rows_per_chunk]
            end = start + len(rows)
            meta = ChunkMetadata(
                uuid=f"{chunk_name(self.video_id, index)}_actions",
                chunk_id=f"{index:04d}",
                chunk_size=len(rows),
                original_video=OriginalVideo(
                    video_id=self.video_id,
                    source=self.source,
                    url=video_relpath(self.video_id),
                    resolution=[int(ph), int(pw)],
                    start_time=start / self.fps,
                    end_time=end / self.fps,
                    duration=len(rows) / self.fps,
                    start_frame=start,
                    end_frame=end,
                ),
                game=self.game,
                controller_type=self.controller_type,
                bbox_controller_overlay=self.overlay,
                bbox_game_area=area,
                **({"azote": self.extra} if self.extra else {}),
            )
            write_chunk(staging / chunk_name(self.video_id, index), rows, meta)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return sorted(final.iterdir())

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
