"""Training samples: (frame at t, actions t+shift .. t+shift+H-1, action mask, game) from datasets on disk.

Frames come from the videos by sequential decoding: random access into H.264 costs a seek and up to a whole
group of pictures per frame, so the stream is organised in *windows*: each window draws a few chunks (weighted by
game), decodes each once into a small cache at the model's image size, and serves many batches from them.
Every micro-batch is a pure function of (seed, index), which is what makes training resume exactly: a resumed
run asks for the same indices and gets the same samples, whatever the number of loader workers.

Frames are resized like the policy's preprocessing (whole frame, PIL bilinear). The controller overlay box is
blacked out when the chunk has one; the released chunks' `bbox_game_area` is cropped first.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from azote.dataset.frames import resize_frame
from azote.dataset.reader import Chunk, Dataset
from azote.dataset.video import VideoError
from azote.errors import AzoteError
from azote.gamepad import MODEL_ACTION_DIM


class SampleError(AzoteError, ValueError):
    """The datasets cannot make training samples (nothing usable, games outside the vocabulary)."""


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class SampleConfig:
    horizon: int = 18  # actions per sample (the released model: 18)
    shift: int = 0  # first target action relative to the frame: the model's action_shift (the trainer passes it)
    image_size: int = 128
    batch_size: int = 32
    min_action_density: float = 0.5  # chunks with a smaller share of rows with any input are skipped
    game_weights: dict[str, float] = field(default_factory=dict)  # relative weight per game; default 1 each
    chunks_per_window: int = 8
    batches_per_window: int = 32
    cache_chunks: int = 16  # decoded chunks kept per worker
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "image_size", "batch_size", "chunks_per_window", "batches_per_window", "cache_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"SampleConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.shift < 0:
            raise ValueError(f"SampleConfig.shift must be >= 0, got {self.shift}")
        if not 0.0 <= self.min_action_density <= 1.0:
            raise ValueError(f"SampleConfig.min_action_density must be in [0, 1], got {self.min_action_density}")


def prepare_frame(frame: np.ndarray, chunk: Chunk, size: int) -> np.ndarray:
    """Crops the game area, blacks out the controller overlay, resizes. Boxes are in the source video's pixels
    (`original_video.resolution`), scaled to the decoded frame's size."""
    meta = chunk.metadata
    h, w = frame.shape[:2]
    src_h, src_w = meta.original_video.resolution or [h, w]
    sy, sx = h / src_h, w / src_w
    if meta.bbox_controller_overlay is not None:
        x, y, bw, bh = meta.bbox_controller_overlay
        x0, y0 = max(0, int(math.floor(x * sx))), max(0, int(math.floor(y * sy)))
        x1, y1 = min(w, int(math.ceil((x + bw) * sx))), min(h, int(math.ceil((y + bh) * sy)))
        if x1 > x0 and y1 > y0:
            frame = frame.copy()
            frame[y0:y1, x0:x1] = 0
    area = meta.bbox_game_area
    if area is not None:
        x0, y0 = int(round(area.xtl * w)), int(round(area.ytl * h))
        x1, y1 = int(round(area.xbr * w)), int(round(area.ybr * h))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            frame = frame[y0:y1, x0:x1]
    return resize_frame(np.ascontiguousarray(frame), size)


@dataclass
class SampleStats:
    chunks: int = 0
    rows: int = 0
    skipped_low_action: int = 0
    skipped_no_video: int = 0
    skipped_bad: int = 0  # chunks the validation refused (each named in its dataset's `problems`)
    games: dict[str, int] = field(default_factory=dict)


class TrainingSamples(torch.utils.data.IterableDataset):
    """An endless, deterministic stream of collated micro-batches:

    `pixel_values` uint8 [B, 1, 3, S, S]; `actions` float32 [B, H, 25] (the model's vector layout);
    `action_mask` float32 [B, H] (0 past the end of the chunk); `game_ids` int64 [B] (index in `games` + 1);
    `index` int64 (the micro-batch's index in the stream).

    `start` and the DDP `rank`/`world_size` choose which micro-batches this copy yields: index
    `start + (k * world_size + rank)` for k = 0, 1, ... With DataLoader workers, worker w of n yields every n-th
    of those, which the DataLoader's in-order round robin puts back in order.

    A chunk whose video fails to decode although it passed validation (changed since, or broken past its
    header) is skipped, said once through `log`, and its samples come from the next chunk that decodes: a
    function of the files, so the stream stays the same on every worker and after a resume (files unchanged).
    """

    def __init__(self, datasets: Sequence[Dataset], config: SampleConfig, games: Sequence[str] | None = None,
                 start: int = 0, rank: int = 0, world_size: int = 1,
                 log: Callable[[str], None] | None = _to_stderr) -> None:
        super().__init__()
        self.config = config
        self.stats = SampleStats()
        self.log = log
        usable: list[Chunk] = []
        for ds in datasets:
            self.stats.skipped_no_video += len(ds.missing_video)
            self.stats.skipped_bad += len(ds.problems)
            for chunk in ds.chunks:
                if chunk.video_path is None:
                    self.stats.skipped_no_video += 1
                    continue
                density = float(chunk.actions.nonzero_mask().mean()) if len(chunk) else 0.0
                if density < config.min_action_density or len(chunk) <= config.shift:
                    self.stats.skipped_low_action += 1
                    continue
                usable.append(chunk)
        if not usable:
            raise SampleError(
                f"no usable chunks: {self.stats.skipped_low_action} below the action density "
                f"{config.min_action_density}, {self.stats.skipped_no_video} without video, "
                f"{self.stats.skipped_bad} bad"
            )
        self.chunks = usable
        self.stats.chunks = len(usable)
        self.stats.rows = sum(len(c) for c in usable)
        for c in usable:
            self.stats.games[c.game or "?"] = self.stats.games.get(c.game or "?", 0) + 1
        self.games = list(games) if games is not None else sorted(self.stats.games)
        unknown = set(self.stats.games) - set(self.games)
        if unknown:
            raise SampleError(f"games {sorted(unknown)} are in the data but not in the game list {self.games}")
        self._game_index = {g: i + 1 for i, g in enumerate(self.games)}
        # chunk weight: the game's weight shared by its chunks, each in proportion to its length
        rows_per_game: dict[str, int] = {}
        for c in usable:
            rows_per_game[c.game or "?"] = rows_per_game.get(c.game or "?", 0) + len(c)
        weights = np.array([config.game_weights.get(c.game or "?", 1.0) * len(c) / rows_per_game[c.game or "?"]
                            for c in usable])
        if (weights < 0).any() or weights.sum() <= 0:
            raise SampleError("game_weights must be non-negative and give some game a positive weight")
        self._p = weights / weights.sum()
        self.start, self.rank, self.world_size = start, rank, world_size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._broken: set[int] = set()  # chunks whose video failed to decode in this process

    # --- the deterministic schedule -----------------------------------------------------------------------
    def window_chunks(self, window: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, 1, window])
        k = min(self.config.chunks_per_window, int(np.count_nonzero(self._p)))  # games weighted 0 never come
        return rng.choice(len(self.chunks), size=k, replace=False, p=self._p)

    def batch_plan(self, index: int) -> list[tuple[int, int]]:
        """(chunk, row) of every sample of micro-batch `index`."""
        c = self.config
        members = self.window_chunks(index // c.batches_per_window)
        rng = np.random.default_rng([c.seed, 2, index])
        p = self._p[members] / self._p[members].sum()
        picks = rng.choice(members, size=c.batch_size, p=p)
        return [(int(ch), int(rng.integers(0, len(self.chunks[ch]) - c.shift))) for ch in picks]

    # --- decoding ----------------------------------------------------------------------------------------
    def _frames(self, chunk_index: int) -> np.ndarray | None:
        """The chunk's frames at the model's size, or None when its video does not decode."""
        if chunk_index in self._cache:
            self._cache.move_to_end(chunk_index)
            return self._cache[chunk_index]
        if chunk_index in self._broken:
            return None
        chunk = self.chunks[chunk_index]
        size = self.config.image_size
        try:
            frames = np.stack([prepare_frame(f, chunk, size) for f in chunk.frames()])
        except VideoError as exc:
            self._broken.add(chunk_index)
            if self.log is not None:
                self.log(f"skipping chunk {chunk.directory}: {' '.join(str(exc).split())}")
            return None
        self._cache[chunk_index] = frames
        while len(self._cache) > self.config.cache_chunks:
            self._cache.popitem(last=False)
        return frames

    def _decoded(self, chunk_index: int, row: int) -> tuple[int, int, np.ndarray]:
        """(chunk, row, frames) for a planned sample: the planned chunk, else the next one (in chunk order,
        weighted above 0) whose video decodes, at the same row wrapped into its length."""
        n = len(self.chunks)
        for k in range(n):
            ch = (chunk_index + k) % n
            if k and self._p[ch] <= 0:
                continue
            frames = self._frames(ch)
            if frames is not None:
                return ch, (row if k == 0 else row % (len(self.chunks[ch]) - self.config.shift)), frames
        raise VideoError(f"no chunk's video decodes ({n} tried)")

    def _targets(self, chunk: Chunk, row: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        first = row + c.shift
        rows = chunk.actions[first : first + c.horizon]
        vectors = np.zeros((c.horizon, MODEL_ACTION_DIM), np.float32)
        mask = np.zeros(c.horizon, np.float32)
        if len(rows):
            vectors[: len(rows)] = rows.to_model_vectors()
            mask[: len(rows)] = 1.0
        return vectors, mask

    def batch(self, index: int) -> dict[str, Any]:
        plan = self.batch_plan(index)
        pixels, actions, masks, games = [], [], [], []
        for planned, planned_row in plan:
            chunk_index, row, frames = self._decoded(planned, planned_row)
            chunk = self.chunks[chunk_index]
            pixels.append(frames[row])
            a, m = self._targets(chunk, row)
            actions.append(a)
            masks.append(m)
            games.append(self._game_index[chunk.game or "?"])
        px = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)[:, None].contiguous()
        return {
            "pixel_values": px,
            "actions": torch.from_numpy(np.stack(actions)),
            "action_mask": torch.from_numpy(np.stack(masks)),
            "game_ids": torch.tensor(games, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        k = worker
        while True:
            yield self.batch(self.start + k * self.world_size + self.rank)
            k += workers

