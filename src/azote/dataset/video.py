"""Video encode and decode with PyAV: H.264 mp4 written frame by frame, decoded sequentially from a frame index."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from azote.errors import AzoteError


class VideoError(AzoteError, RuntimeError):
    """A video that cannot be opened or decoded; names the file."""


def rational_fps(fps: float) -> Fraction:
    """60 -> 60/1, 59.94 -> 60000/1001, 35 -> 35/1: containers need a rational rate."""
    return Fraction(fps).limit_denominator(1001)


# libx264 threads. Left to itself (threads=auto) the encoder takes as many threads as the CPUs this process may
# use and, as PyAV opens it, cuts every picture into one slice per thread: the pixels then depend on the machine
# and on the process's CPU affinity (2 CPUs: 2 slices, 3: 3 slices, each a different picture), so the same
# episode re-recorded under another CPU count or affinity gave different pixels. A fixed count makes the video a
# function of the frames and the settings alone (for the same libx264 build); one thread also costs little here,
# where episodes are encoded in parallel processes.
ENCODER_THREADS = 1


class VideoWriter:
    """Writes RGB frames (H x W x 3 uint8) to an H.264 mp4. Frames of odd size are padded with black to even
    size (4:2:0 chroma needs it); `padded_size` says what was written. Writes to `<path>.partial` and renames on
    `close()`, so a killed process never leaves a truncated video under the final name. The same frames give the
    same bytes on any machine (`ENCODER_THREADS`)."""

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18, preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=rational_fps(fps))
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(int(crf)), "preset": preset, "threads": str(ENCODER_THREADS)}
        self._size: tuple[int, int] | None = None
        self.frames = 0

    @property
    def padded_size(self) -> tuple[int, int] | None:
        return self._size

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self._size is None:
            self._size = (h + h % 2, w + w % 2)
            self._stream.height, self._stream.width = self._size
        if (h + h % 2, w + w % 2) != self._size:
            raise ValueError(f"{self.path}: frame size changed from {self._size} to {(h, w)}")
        if (h, w) != self._size:
            padded = np.zeros((*self._size, 3), np.uint8)
            padded[:h, :w] = frame
            frame = padded
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None  # type: ignore[assignment]
        if self.frames:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)

    def abort(self) -> None:
        """Drops what was written (an episode that failed half-way)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a broken container may fail again; the file is deleted anyway
                pass
            self._container = None  # type: ignore[assignment]
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# The containers a dataset's video may be in, told by their first bytes. Left to itself, ffmpeg's probing takes
# a text file for a "tty" video, and a playlist or concat list for a list of further files (or urls) to open.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def container_format(path: str | os.PathLike) -> str:
    """The demuxer for a dataset video (mp4/mov, Matroska/WebM, AVI) from its first bytes; `VideoError` otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise VideoError(f"{path}: cannot read video ({exc.strerror or exc})") from None
    if head[4:8] in _MP4_BOXES:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    what = "an empty file" if not head else f"a file starting {head[:8]!r}"
    raise VideoError(f"{path}: not an mp4, Matroska/WebM or AVI video ({what})")


def _open(path: str | os.PathLike, strict: bool) -> av.container.InputContainer:
    return av.open(str(path), format=container_format(path) if strict else None)


def probe(path: str | os.PathLike, count_frames: bool = True, strict: bool = False) -> dict:
    """Frame count, rate, size and duration of a video. When the header lacks the frame count, it is decoded
    (`count_frames`) or estimated from the stream's duration (a quick check of a long source video). `strict`
    opens only the containers of `container_format` (a dataset's videos), whatever ffmpeg would guess."""
    try:
        with _open(path, strict) as c:
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0)
            frames = s.frames
            if not frames and not count_frames and rate:
                seconds = float(s.duration * s.time_base) if s.duration and s.time_base else (c.duration or 0) / 1e6
                frames = int(round(seconds * rate))
            if not frames:
                frames = sum(1 for _ in c.decode(video=0))
            return {"frames": int(frames), "fps": rate, "height": s.height, "width": s.width,
                    "duration": frames / rate if rate else 0.0}
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: cannot read video ({exc})") from None


def read_frames(path: str | os.PathLike, start: int = 0, count: int | None = None,
                strict: bool = False) -> Iterator[np.ndarray]:
    """Decodes frames start .. start+count-1 (RGB uint8) in order, seeking to the keyframe before `start`.
    `strict` as in `probe`.

    Frames are numbered by presentation time at the stream's average rate, which is how our writer and
    ordinary constant-rate videos number them."""
    try:
        container = _open(path, strict)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        tb = stream.time_base
        if start > 0 and rate:
            container.seek(int(Fraction(start) / Fraction(rate) / tb), stream=stream, backward=True)
        emitted = 0
        for frame in container.decode(stream):
            index = int(round(float(frame.pts * tb * rate))) if frame.pts is not None and rate else None
            if index is not None and index < start:
                continue
            yield frame.to_ndarray(format="rgb24")
            emitted += 1
            if count is not None and emitted >= count:
                return
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from None
    finally:
        container.close()


# ffmpeg's demuxer families and the extensions that name them; the first is the one a misnamed file gets
_CONTAINER_EXTENSIONS = {"matroska": (".mkv", ".webm"), "mov": (".mp4", ".mov", ".m4v"), "avi": (".avi",)}


def container_extension(path: str | os.PathLike) -> str:
    """The extension naming a video's real container, for the copy a dataset keeps: the file's own when it names
    that container (a WebM stays `.webm`, a MOV `.mov`), else the container's (a WebM called `.mp4` is `.webm`)."""
    try:
        family = container_format(path)
    except VideoError:  # not one a dataset reads by its first bytes: what ffmpeg makes of it
        try:
            with av.open(str(path)) as c:
                demuxers = c.format.name.split(",")
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{path}: cannot open video ({exc})") from None
        family = next((f for f in _CONTAINER_EXTENSIONS if f in demuxers), None)
        if family is None:
            return f".{demuxers[0]}"
    own = Path(path).suffix.lower()
    if own in _CONTAINER_EXTENSIONS[family]:
        return own
    if family == "matroska":  # WebM is Matroska with DocType "webm" in the EBML header
        with open(path, "rb") as f:
            return ".webm" if b"\x42\x82\x84webm" in f.read(64) else ".mkv"
    return _CONTAINER_EXTENSIONS[family][0]
