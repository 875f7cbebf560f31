"""Datasets made of part of another one (some games, the first N episodes): labels are copied, videos linked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from azote.dataset.reader import Dataset


def make_subset(src: str | os.PathLike, dst: str | os.PathLike, keep: Callable[[str, str | None], bool]) -> Path:
    """Builds `dst` from the videos of `src` for which `keep(video_id, game)` is true. Rebuilt from scratch each
    call; the videos are symbolic links, so a subset costs only its labels."""
    src, dst = Path(src), Path(dst)
    ds = Dataset.open(src)
    chosen = {c.video_id: c for c in ds.chunks if keep(c.video_id, c.game)}
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for video_id, chunk in sorted(chosen.items()):
        labels = chunk.directory.parent
        shutil.copytree(labels, tmp / labels.relative_to(src))
        rel = Path(chunk.metadata.original_video.url or "")
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(chunk.video_path.resolve(), tmp / rel)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst
