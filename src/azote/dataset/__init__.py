"""The dataset: the released NitroGen label layout (20-second chunks of `actions_raw.parquet` + `metadata.json`)
plus the H.264 video that the labels index."""

from azote.dataset.format import (
    CHUNK_SECONDS,
    ChunkMetadata,
    DatasetError,
    GameArea,
    OriginalVideo,
    read_actions,
    read_metadata,
    write_chunk,
)
from azote.dataset.reader import Chunk, Dataset, open_chunk
from azote.dataset.video import VideoError, VideoWriter, probe, read_frames
from azote.dataset.writer import EpisodeWriter, is_complete

__all__ = [
    "CHUNK_SECONDS", "Chunk", "ChunkMetadata", "Dataset", "DatasetError", "EpisodeWriter", "GameArea",
    "OriginalVideo", "VideoError", "VideoWriter", "is_complete", "probe", "read_actions", "read_frames",
    "open_chunk", "read_metadata", "write_chunk",
]
