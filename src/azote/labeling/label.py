"""Labelling one video: locate the overlay, learn its layout, read every frame, post-process, write chunks.

Locating: with known presets (`--templates`), their template fit (`azote.labeling.locate`) gives the preset and
its exact place, and the parser is adapted to that preset (`azote.labeling.adapt`, cached per preset and size);
otherwise, or when no template fits, the zero-shot detector (`azote.labeling.detect`) gives the overlay's box and
the parser reads the layout off the video itself.

Output (a dataset root, `azote.dataset` layout):
    OUT/videos/<id>.<ext>                     the source video (hard link, else copy), its container's extension
    OUT/actions/SHARD_0000/<id>/<id>_chunk_NNNN/{actions_raw.parquet, metadata.json}   kept chunks only
    OUT/labeling/<id>.json                    the report (with the LabelConfig it was labelled with); written last,
                                              so it marks the video as done
    OUT/labeling/<id>.npz                     every frame's labels and parser outputs (dropped chunks too)

A killed run leaves no half-written chunk: chunks go to a hidden staging directory renamed into place in one
step, the video is copied to a temporary name first, and a video counts as done only once its report exists.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np
import torch

from azote.dataset.format import CHUNK_SECONDS, ChunkMetadata, OriginalVideo, chunk_name, video_relpath, write_chunk
from azote.dataset.video import VideoError, container_extension, probe
from azote.dataset.writer import video_labels_dir
from azote.errors import AzoteError
from azote.files import write_json
from azote.gamepad import ActionChunk
from azote.labeling import parser as P
from azote.labeling.frames import box_to_crop, compose, invert, region_rgb, source_box, warp
from azote.labeling.locate import Located, LocateError, TemplateBank
from azote.labeling.namer import DPAD, NAMER_FILE, Namer, load_namer
from azote.labeling.postprocess import PostConfig, chunk_density, normalise_stick, rest_reading, to_actions
from azote.labeling.presets import Preset

REPORT_DIR = "labeling"
VERSION = 8  # bumped when the same weights and settings label differently (8: knob drawings named no button,
# small one-way stick readings no travel)


class LabelError(AzoteError, RuntimeError):
    """A video that cannot be labelled (unreadable, or no overlay found); names the file."""


@dataclass
class LabelConfig:
    locate_frames: int = 24  # frames sampled across the video for locating and for the reference look
    batch_size: int = 64
    chunk_seconds: float = CHUNK_SECONDS
    post: PostConfig = field(default_factory=PostConfig)
    source: str = "azote-label"
    keep_video: str = "link"  # link (hard link, else copy) | copy
    adapt: bool = True  # adapt the parser to a matched known preset
    adapt_minutes: float = 3.0
    adapt_clips: int = 160
    adapt_steps: int = 600  # at most; adapt_minutes usually ends it first
    discovery_frames: int = 1800  # crops the elements are discovered in (a longer video is sampled)
    keep_frames: int = 7200  # a video up to this long keeps every crop (360 MB), so its elements need no 2nd pass
    probe_frames: int = 240  # unseen skins: frames the parser reads to name the elements (160 and 480 name alike)
    stick_check_frames: int = 1800  # unseen skins, longer videos: stick patches checked after this many frames


def sample_frames(path: str | os.PathLike, count: int, total: int) -> Iterator[np.ndarray]:
    """About `count` frames spread evenly over the video, decoded lazily, so a consumer that stops early decodes no
    more. Any frame up to half a spacing before a target stands for it: a far target is reached by seeking to the
    keyframe before it, which serves when it is near enough (no decoding through), as it mostly is in streamed
    video with a keyframe every few seconds. Frames no other frame refers to are not decoded (about 40% of an
    H.264 stream with B-frames); a stream whose every frame is such is decoded whole."""
    targets = sorted(set(np.linspace(0, max(0, total - 1), min(count, max(1, total))).round().astype(int).tolist()))
    slack = max(0, (targets[-1] - targets[0]) // max(1, 2 * (len(targets) - 1)))
    got = False
    for skip in ("NONREF", "DEFAULT"):
        for frame in _sample(path, targets, slack, skip):
            got = True
            yield frame
        if got:
            return


def _sample(path: str | os.PathLike, targets: list[int], slack: int, skip: str) -> Iterator[np.ndarray]:
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.codec_context.skip_frame = skip
            rate = s.average_rate or s.guessed_rate or Fraction(30)
            tb = s.time_base
            t0 = s.start_time or 0
            position = yielded = -10**9  # indices of the last decoded and the last yielded frame
            frames = None
            for want in targets:
                if want - position > 120:  # far ahead: seek rather than decode through
                    c.seek(int(Fraction(want) / Fraction(rate) / tb) + t0, stream=s, backward=True)
                    frames = c.decode(s)
                for fr in frames:  # type: ignore[union-attr]
                    position = int(round(float((fr.pts - t0) * tb * rate))) if fr.pts is not None else want
                    if position >= want - slack and position > yielded:
                        yielded = position
                        yield fr.to_ndarray(format="rgb24")
                        break
                else:
                    return
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot decode ({exc})") from None


# --- one video's reader --------------------------------------------------------------------------------------------
@dataclass
class StickReader:
    to_patch: np.ndarray  # video pixels -> patch pixels
    ref: np.ndarray  # [PATCH, PATCH, 3]: the patch's median over the sampled frames
    centre: tuple[float, float]  # rest position, video pixels
    travel: float  # video pixels


@dataclass
class OverlayReader:
    """Everything fixed for one video: where to cut the crop and the stick patches, their reference looks, the
    layout, and the parser to use."""

    located: Located
    to_crop: np.ndarray
    ref: np.ndarray  # [CROP_H, CROP_W, 3]
    layout: P.LayoutEstimate
    sticks: list[StickReader | None]
    model: P.OverlayParser
    adapted: str | None = None  # cache key of the adapted weights
    elements: dict[str, int] | None = None  # button -> discovered element
    elements_found: int = 0
    reread: list[int] = field(default_factory=list)  # sticks read a second time through a corrected patch
    preset: Preset | None = None  # the known preset, when its drawing is placed in the crop (`located.affine`)
    dpad: list[int] | None = None  # the elements a known preset's nine-picture d-pad is read from

    def source(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """The one box of the frame that every crop and patch reads."""
        boxes = [source_box(self.to_crop, P.CROP, hw)]
        boxes += [source_box(s.to_patch, (P.PATCH, P.PATCH), hw) for s in self.sticks if s is not None]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def cut(self, region: np.ndarray, origin: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        crop = warp(region, self.to_crop, P.CROP, origin)
        patches = [warp(region, s.to_patch, (P.PATCH, P.PATCH), origin) if s is not None else None for s in self.sticks]
        return crop, patches

    def describe(self) -> dict:
        sticks = [None if s is None else {"centre": [round(v, 2) for v in s.centre], "travel": round(s.travel, 2)}
                  for s in self.sticks]
        return {"buttons_found": [b for b, ok in zip(P.BUTTONS, self.layout.present) if ok], "sticks": sticks,
                "family_probs": [round(float(v), 4) for v in self.layout.family_probs], "adapted": self.adapted,
                "sticks_reread": self.reread,
                **({"elements_found": self.elements_found, "elements": self.elements} if self.elements is not None
                   else {}), **({"dpad_elements": self.dpad} if self.dpad is not None else {})}


def _median(images: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(images), axis=0).astype(np.uint8)


@dataclass
class StickWindows:
    """The video's pixels around each stick in the first `limit` frames, kept from the one decoding pass so that a
    stick patch corrected later (moved up to a travel or grown up to half) is cut again without decoding the video
    a second time."""

    boxes: list[tuple[int, int, int, int] | None]  # per stick, video pixels (x0, y0, x1, y1)
    hw: tuple[int, int]  # the video's frame size
    limit: int
    frames: list[list[np.ndarray | None]] = field(default_factory=list)  # per frame, per stick

    WIDE = 1.8  # the window is a patch at this much the travel: 3.43 * 1.5 + 1 travel units each way
    BYTES = 512 << 20  # at most this much kept; a video that needs more is decoded again instead

    @classmethod
    def around(cls, reader: OverlayReader, hw: tuple[int, int], limit: int) -> StickWindows | None:
        from azote.labeling.synth import stick_patch

        boxes = [source_box(stick_patch(sr.centre, cls.WIDE * sr.travel), (P.PATCH, P.PATCH), hw)
                 if sr is not None else None for sr in reader.sticks]
        size = sum((b[2] - b[0]) * (b[3] - b[1]) * 3 for b in boxes if b is not None)
        return cls(boxes, hw, limit) if size and size * limit <= cls.BYTES else None

    def keep(self, region: np.ndarray, origin: tuple[int, int]) -> None:
        if len(self.frames) < self.limit:
            self.frames.append([None if b is None else region[b[1] - origin[1]:b[3] - origin[1],
                                                              b[0] - origin[0]:b[2] - origin[0]].copy()
                                for b in self.boxes])

    def serve(self, reader: OverlayReader, sticks: Sequence[int], frames: int) -> bool:
        """Whether the first `frames` frames are kept and `sticks`' patches lie in their windows."""
        if len(self.frames) < frames:
            return False
        for s in sticks:
            b, p = self.boxes[s], source_box(reader.sticks[s].to_patch, (P.PATCH, P.PATCH), self.hw)  # type: ignore
            if b is None or not (b[0] <= p[0] and b[1] <= p[1] and p[2] <= b[2] and p[3] <= b[3]):
                return False
        return True

    def patches(self, reader: OverlayReader, sticks: Sequence[int], frames: int, batch_size: int
                ) -> Iterator[list[list[np.ndarray | None]]]:
        """`sticks`' patches (None for the others) of the first `frames` frames, in batches."""
        for t in range(0, frames, batch_size):
            yield [[warp(w[s], reader.sticks[s].to_patch, (P.PATCH, P.PATCH), self.boxes[s][:2])  # type: ignore
                    if s in sticks else None for s in range(len(w))] for w in self.frames[t:min(t + batch_size, frames)]]


def make_reader(located: Located, frames: Sequence[np.ndarray], model: P.OverlayParser,
                preset: Preset | None = None) -> OverlayReader:
    """The reader for one video from its sampled frames: for a known preset its geometry, else the layout the
    parser reads off the sampled frames (maps averaged over them)."""
    from azote.labeling.synth import crop_geometry, neutral_reference, stick_patch

    to_crop = box_to_crop(located.box, P.CROP, P.MARGIN)
    crops = [warp(f, to_crop, P.CROP) for f in frames]
    if preset is not None and located.affine is not None:
        ref = neutral_reference(np.stack(crops), preset, compose(to_crop, located.affine))
        geo = crop_geometry(preset, located.affine, located.box)
        sticks_crop = [(float(c[0]), float(c[1]), float(t)) if h else None
                       for c, t, h in zip(geo["centres"], geo["travel"], geo["has"])]
        layout = P.layout_from_masks(geo["masks"], sticks_crop, preset.family)
    else:
        ref = _median(crops)
        with torch.inference_mode():
            maps, glob = model.forward_maps(P.still_inputs(ref, crops))
        layout = P.layout_from_maps(maps, glob)
    inv = invert(to_crop)
    s = float(to_crop[0, 0])
    readers: list[StickReader | None] = []
    for g in layout.sticks:
        if g is None:
            readers.append(None)
            continue
        c = inv @ np.array([g[0], g[1], 1.0])
        centre, travel = (float(c[0]), float(c[1])), g[2] / s
        for _ in range(4 if preset is None else 0):  # a rest and travel read off the drawing: refine them
            v = _read_sticks(model, frames, stick_patch(centre, travel))
            d, share = rest_reading(v)
            moved = False
            if float(np.hypot(*d)) > 0.06 and share >= 0.15:  # the rest is where the knob sits most often
                centre = (centre[0] + float(d[0]) * travel, centre[1] + float(d[1]) * travel)
                moved = True
            if np.mean(np.abs(v - d).max(axis=1) > 0.9 * P.GRID_SPAN) >= 0.1:  # readings pile up at the grid's
                travel *= 1.35  # edge: the knob travels further than the drawing suggested
                moved = True
            if not moved:
                break
        m = stick_patch(centre, travel)
        readers.append(StickReader(m, _median([warp(f, m, (P.PATCH, P.PATCH)) for f in frames]), centre, travel))
    known = preset if preset is not None and located.affine is not None else None
    return OverlayReader(located, to_crop, ref, layout, readers, model, preset=known)


def _read_sticks(model: P.OverlayParser, frames: Sequence[np.ndarray], to_patch: np.ndarray) -> np.ndarray:
    """Stick readings [N, 2] of the sampled frames through one patch placement (each against their median)."""
    patches = [warp(f, to_patch, (P.PATCH, P.PATCH)) for f in frames]
    ref = _median(patches)
    with torch.inference_mode():
        return model.read_sticks(P.still_inputs(ref, patches)).numpy()


def _triples(ref: np.ndarray, before: np.ndarray, images: list[np.ndarray]) -> np.ndarray:
    """The parser's inputs [N, H, W, 9] for consecutive images: reference, previous image (`before` for the
    first), image."""
    x = np.empty((len(images),) + ref.shape[:2] + (9,), np.uint8)
    x[..., :3] = ref
    x[0, ..., 3:6] = before
    for i, im in enumerate(images):
        x[i, ..., 6:] = im
        if i + 1 < len(images):
            x[i + 1, ..., 3:6] = im
    return x


def _batches(path: str | os.PathLike, reader: OverlayReader, batch_size: int, limit: int | None = None,
             windows: StickWindows | None = None) -> Iterator[tuple[list[np.ndarray], list[list[np.ndarray | None]]]]:
    """Every frame's overlay crop and stick patches (the first `limit` frames'), in batches, decoded once; the
    pixels around the sticks go to `windows`. A stick patch the reader moves between batches is cut from then on
    where it now is."""
    info = probe(path)
    hw = (info["height"], info["width"])
    placed, box = None, (0, 0, 2, 2)
    wide = [b for b in (windows.boxes if windows is not None else []) if b is not None]
    crops: list[np.ndarray] = []
    patches: list[list[np.ndarray | None]] = []
    count = 0
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            # no deblocking of frames nothing is predicted from (about 40% of H.264 with B-frames): 12% less
            # decoding, no drift, and the overlay's labels read alike (label-eval)
            s.codec_context.options = {"skip_loop_filter": "noref"}
            for fr in c.decode(s):
                if limit is not None and count >= limit:
                    break
                if placed != [id(r) for r in reader.sticks]:
                    placed, box = [id(r) for r in reader.sticks], reader.source(hw)
                    box = tuple(f(v) for f, v in zip((min, min, max, max), zip(box, *wide)))  # type: ignore
                region = region_rgb(fr, box)
                crop, ps = reader.cut(region, (box[0], box[1]))
                if windows is not None:
                    windows.keep(region, (box[0], box[1]))
                crops.append(crop)
                patches.append(ps)
                count += 1
                if len(crops) >= batch_size:
                    yield crops, patches
                    crops, patches = [], []
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from None
    if crops:
        yield crops, patches


def _read_sticks_batch(reader: OverlayReader, patches: list[list[np.ndarray | None]],
                       before: list[np.ndarray | None] | None, sticks: Sequence[int] = (0, 1)) -> np.ndarray:
    """Readings [n, 2, 2] of `sticks` in consecutive frames' patches (0 for a stick the overlay lacks, and the
    others)."""
    out = np.zeros((len(patches), 2, 2), np.float32)
    for s, sr in enumerate(reader.sticks):
        if sr is None or s not in sticks:
            continue
        cur = [p[s] for p in patches]
        prev = before[s] if before is not None and before[s] is not None else cur[0]
        xs = _triples(sr.ref, prev, cur)
        out[:, s] = reader.model.read_sticks(torch.from_numpy(xs)).numpy()
    return out


def _stick_geometry_off(readings: np.ndarray, post: PostConfig) -> tuple[np.ndarray, float] | None:
    """Where a stick's rest and travel really are, in units of the patch it was read through, when its readings
    say the patch was placed or scaled badly enough to read it again (None when it was not)."""
    _, info = normalise_stick(readings, post)
    centre, scale = np.asarray(info["centre"], np.float64), float(np.sqrt(np.prod(info["scale"])))
    if float(np.hypot(*centre)) > 0.15 or abs(np.log(max(scale, 1e-3))) > np.log(1.15):
        return centre, scale
    return None


def _correct_sticks(reader: OverlayReader, readings: np.ndarray, post: PostConfig, frames: Sequence[np.ndarray]
                    ) -> list[int]:
    """Moves each stick patch whose readings [T, 2, 2] say it is misplaced or misscaled to where they say the rest
    and travel are; returns the sticks moved (to be read again)."""
    from azote.labeling.synth import stick_patch

    moved = []
    for s, sr in enumerate(reader.sticks):
        off = _stick_geometry_off(readings[:, s], post) if sr is not None else None
        if sr is not None and off is not None:
            centre = (sr.centre[0] + float(off[0][0]) * sr.travel, sr.centre[1] + float(off[0][1]) * sr.travel)
            m = stick_patch(centre, sr.travel * off[1])
            reader.sticks[s] = StickReader(m, _median([warp(f, m, (P.PATCH, P.PATCH)) for f in frames]), centre,
                                           sr.travel * off[1])
            moved.append(s)
    return moved


def _read_again(path: str | os.PathLike, reader: OverlayReader, sticks: list[int], readings: np.ndarray,
                batch_size: int, windows: StickWindows | None) -> list[np.ndarray | None]:
    """Reads `sticks` again in the first len(`readings`) frames, into `readings`, from `windows` when they serve,
    else from the video; returns the last frame's patches (None for the other sticks)."""
    n = len(readings)
    if windows is not None and windows.serve(reader, sticks, n):
        batches: Iterator[list[list[np.ndarray | None]]] = windows.patches(reader, sticks, n, batch_size)
    else:
        batches = (patches for _, patches in _batches(path, reader, batch_size, limit=n))
    t, before = 0, None
    for patches in batches:
        readings[t:t + len(patches), sticks] = _read_sticks_batch(reader, patches, before, sticks)[:, sticks]
        before = patches[-1]
        t += len(patches)
    return before or [None, None]


def _read_elements(buttons: np.ndarray, start: int, crops: np.ndarray, elements: Sequence[Any],
                   found: dict[int, tuple[int, bool]], pad: Any, labels: bool = False) -> None:
    """Each named button's state in `crops` [n, H, W, 3] (frames from `start`) from its element's pictures, and a
    d-pad read from its pictures (`namer.PictureReading` or None). `labels`: the crops are the elements' discovery
    sample, whose pictures the elements already know."""
    done: dict[int, np.ndarray] = {}

    def shown(i: int) -> np.ndarray:
        if i not in done:
            done[i] = elements[i].labels[:len(crops)] if labels else elements[i].classify(crops)
        return done[i]

    for j, (i, minority) in found.items():
        buttons[start:start + len(crops), j] = shown(i) == minority
    if pad is not None:
        cols = [P.BUTTONS.index(b) for b in DPAD]
        buttons[start:start + len(crops), cols] = pad.read(np.stack([shown(i) for i in pad.elements], axis=1), crops)


@torch.inference_mode()
def read_video(path: str | os.PathLike, reader: OverlayReader, cfg: LabelConfig, frames: Sequence[np.ndarray],
               namer: Namer | None = None, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Every frame's buttons and sticks: button states [T, 17] (probabilities, or 0/1 where an element says) and
    stick readings [T, 2, 2] in travel units (0 for a stick the overlay lacks).

    Both paths find the overlay's two-picture elements in the crops of every frame (of frames spread over the
    video when it is long; `azote.labeling.elements`), and read each named button off its element's pictures
    (in crops kept from the one decoding pass, or for a video longer than `keep_frames` in a second pass).
    A known preset (`namer` None): the adapted parser reads every frame (paired with the previous one), and a
    button takes the element that the preset's drawing says its press alone switches (a d-pad drawn with nine
    pictures: the picture its elements show), else the element inside its drawn region that the parser's readings
    follow (which cleans the parser's occasional misreadings). An unseen skin: the namer (`azote.labeling.namer`)
    says from the parser's layout, its readings of a few hundred frames and the stick readings which element is
    which button and which picture is pressed; a button with no element reads as released. Sticks are read frame
    by frame, and for an unseen skin once more through patches placed where those readings say the rest and
    travel are, when the layout's guess was off (in a long video that is checked after `stick_check_frames`, so
    that only those frames are read twice, and once more at the end), from the pixels around the sticks kept in
    the one decoding pass (`StickWindows`) where they serve. `frames` are the frames sampled for locating (the new patches' reference look)."""
    from azote.labeling.elements import discover
    from azote.labeling.namer import drawn_area, name_by_drawing, name_by_readings, name_elements
    from azote.labeling.synth import drawn_changes

    known = namer is None
    info = probe(path)
    total, hw = max(1, int(info["frames"])), (info["height"], info["width"])
    stride = max(1, -(-total // cfg.discovery_frames))
    sample: list[np.ndarray] = []
    kept: list[np.ndarray] | None = [] if stride > 1 and total <= cfg.keep_frames else None  # every crop, batched
    sticks: list[np.ndarray] = []
    read: list[np.ndarray] = []  # a known preset's parser readings of every frame
    last: tuple[np.ndarray, list[np.ndarray | None]] | None = None
    seen, checked = 0, False
    # an unseen skin's stick patches may be corrected: the pixels around them kept, for the frames read again
    windows = None if known else StickWindows.around(
        reader, hw, total if total <= cfg.keep_frames else min(total, cfg.stick_check_frames + cfg.batch_size))
    for crops, patches in _batches(path, reader, cfg.batch_size, windows=windows):
        sample += [c for k, c in enumerate(crops, seen) if k % stride == 0]
        if kept is not None and seen + len(crops) > cfg.keep_frames:  # the container's frame count was short
            kept = None
        if kept is not None:
            kept.append(np.stack(crops))
        if known:
            maps, _ = reader.model.forward_maps(torch.from_numpy(_triples(reader.ref, last[0] if last else crops[0],
                                                                          crops)))
            read.append(P.button_probs(maps, reader.layout).numpy())
        sticks.append(_read_sticks_batch(reader, patches, last[1] if last else None))
        last = (crops[-1], patches[-1])
        seen += len(crops)
        if not known and not checked and cfg.stick_check_frames <= seen < total:
            # a long video: its stick patches corrected now, so that only these frames are read twice
            checked, early = True, np.concatenate(sticks)
            moved = _correct_sticks(reader, early, cfg.post.zero_shot(), frames)
            if moved:
                again_last = _read_again(path, reader, moved, early, cfg.batch_size, windows)
                last = (last[0], [again_last[s] if s in moved else p for s, p in enumerate(last[1])])
                sticks, reader.reread = [early], moved
        if progress:
            progress(len(crops))
    if not seen:
        raise VideoError(f"{path}: no frames decoded")
    crops_sample = np.stack(sample)
    h, w = crops_sample.shape[1:3]
    elements = discover(crops_sample, where=drawn_area(reader.layout.weights, reader.layout.present, (w, h))
                        if known else None)
    readings = np.concatenate(sticks)[:seen]
    pad = None  # a known preset's d-pad read from its pictures
    if known:
        buttons = np.concatenate(read)[:seen]
        found = name_by_readings(elements, reader.layout.weights, reader.layout.present, buttons[::stride][:len(sample)])
        if reader.preset is not None:
            changes = drawn_changes(reader.preset, compose(reader.to_crop, reader.located.affine),
                                    np.median(crops_sample, axis=0).astype(np.float32) / 255)
            drawn, pad = name_by_drawing(elements, crops_sample, reader.ref, changes)
            taken = {i for i, _ in drawn.values()} | set(pad.elements if pad else ())
            skip = set(drawn) | ({P.BUTTONS.index(b) for b in DPAD} if pad else set())
            found = {**{j: v for j, v in found.items() if j not in skip and v[0] not in taken}, **drawn}
    else:
        # the parser's readings of frames spread over the sample
        rows = np.unique(np.linspace(0, len(sample) - 1, min(len(sample), cfg.probe_frames)).round().astype(int))
        probs = P.still_button_probs(reader.model, reader.ref, crops_sample[rows], reader.layout, cfg.batch_size)
        found = name_elements(namer, elements, crops_sample, reader.layout.weights, reader.layout.present, probs,
                              rows, readings[::stride][:len(sample)])
        buttons = np.zeros((seen, len(P.BUTTONS)), np.float32)
    reader.elements = {P.BUTTONS[j]: i for j, (i, _) in found.items()}
    reader.dpad = list(pad.elements) if pad is not None else None
    reader.elements_found = len(elements)
    if stride == 1:
        _read_elements(buttons, 0, crops_sample[:seen], elements, found, pad, labels=True)
    elif kept is not None:
        t = 0
        for batch in kept:
            _read_elements(buttons, t, batch, elements, found, pad)
            t += len(batch)
    late = stride > 1 and kept is None and (bool(found) or pad is not None)  # a long video's elements in every frame
    again = [] if known else _correct_sticks(reader, readings, cfg.post.zero_shot(), frames)
    reader.reread = sorted(set(reader.reread) | set(again))
    if again and not late:  # from the kept windows where they serve, else a pass of its own
        _read_again(path, reader, again, readings, cfg.batch_size, windows)
        again = []
    kept = windows = None  # the crops' memory back before a second pass
    if again or late:  # a second pass
        t, before = 0, None
        for crops, patches in _batches(path, reader, cfg.batch_size):
            n = len(crops)
            if late:
                _read_elements(buttons, t, np.stack(crops), elements, found, pad)
            if again:
                readings[t:t + n, again] = _read_sticks_batch(reader, patches, before, again)[:, again]
                before = patches[-1]
            t += n
    return {"buttons": buttons, "sticks": readings}


# --- the whole video -------------------------------------------------------------------------------------------
def video_id_for(path: str | os.PathLike) -> str:
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".") or "video"


def report_path(out: str | os.PathLike, video_id: str) -> Path:
    return Path(out) / REPORT_DIR / f"{video_id}.json"


def is_labelled(out: str | os.PathLike, video_id: str) -> bool:
    return report_path(out, video_id).is_file()


def _keep_video(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        if mode != "link":
            raise OSError("copy asked for")
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def locate_overlay(path: Path, frames: Sequence[np.ndarray], bank: TemplateBank | None,
                   detector: Any) -> Located:
    """A known preset's template fit when one fits, else the zero-shot detector's box. Raises `LabelError` with
    both reasons when neither finds the overlay."""
    from azote.labeling.detect import DetectError, detect

    reasons = []
    if bank is not None:
        try:
            return bank.locate(iter(frames))
        except LocateError as exc:
            reasons.append(str(exc))
    try:
        det = detect(frames, detector)
    except DetectError as exc:
        reasons.append(str(exc))
        raise LabelError(f"{path}: " + "; ".join(reasons)) from None
    return Located(method="detector", family=det.family, box=det.box, score=det.confidence,
                   frames_matched=len(frames), frames_sampled=len(frames),
                   votes=dict(zip(("xbox", "playstation", "switch", "retro"), det.family_probs)))


def label_video(path: str | os.PathLike, out: str | os.PathLike, *, game: str | None = None,
                video_id: str | None = None, parser: P.OverlayParser | None = None, detector: Any = None,
                namer: Namer | None = None, bank: TemplateBank | None = None, config: LabelConfig | None = None,
                progress: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Labels one video into the dataset at `out` and returns its report. Raises `VideoError` for an unreadable
    video and `LabelError` when no overlay is found; a video already labelled is skipped (its report returned).
    `bank` holds known presets (their template fit is tried first)."""
    cfg = config or LabelConfig()
    path, out = Path(path), Path(out)
    vid = video_id or video_id_for(path)
    if is_labelled(out, vid):
        return {**json.loads(report_path(out, vid).read_text()), "skipped": True}
    t0 = time.perf_counter()
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    info = probe(path)
    if info["frames"] < 1 or not info["fps"]:
        raise VideoError(f"{path}: no frames or no frame rate ({info})")
    frames = list(sample_frames(path, cfg.locate_frames, info["frames"]))
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded")
    loc = locate_overlay(path, frames, bank, detector)
    t_locate = time.perf_counter() - t0
    base = parser or P.load_parser()
    preset = next((p for p in bank.presets if p.name == loc.preset), None) if bank is not None and loc.preset else None
    model, adapted = base, None
    if preset is not None and cfg.adapt:
        from azote.labeling.adapt import adapted_parser

        model, adapted = adapted_parser(preset, loc, frames, base, minutes=cfg.adapt_minutes, clips=cfg.adapt_clips,
                                        steps=cfg.adapt_steps, log=log)
    reader = make_reader(loc, frames, model, preset)
    reader.adapted = adapted
    t_adapt = time.perf_counter() - t0 - t_locate
    raw = read_video(path, reader, cfg, frames, None if preset is not None else namer or load_namer(), progress)
    t_parse = time.perf_counter() - t0 - t_locate - t_adapt
    post = cfg.post if preset is not None else cfg.post.zero_shot()
    actions, norm = to_actions(raw["sticks"], raw["buttons"], post)
    fps = float(info["fps"])
    rows = max(1, int(round(cfg.chunk_seconds * fps)))
    bbox = [float(v) for v in loc.bbox()]
    family = loc.family

    stored = video_relpath(vid, container_extension(path))  # a WebM kept as .webm, never as .mp4
    final = video_labels_dir(out, vid)
    staging = final.with_name(f".{vid}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    kept, dropped, densities = [], [], []
    for index, start in enumerate(range(0, len(actions), rows)):
        part = actions[start:start + rows]
        density = chunk_density(part)
        densities.append(round(density, 4))
        if density < cfg.post.min_density:
            dropped.append(index)
            continue
        end = start + len(part)
        meta = ChunkMetadata(
            uuid=f"{chunk_name(vid, index)}_actions", chunk_id=f"{index:04d}", chunk_size=len(part),
            original_video=OriginalVideo(video_id=vid, source=cfg.source, url=stored,
                                         resolution=[int(info["height"]), int(info["width"])],
                                         start_time=start / fps, end_time=end / fps, duration=len(part) / fps,
                                         start_frame=start, end_frame=end),
            game=game, controller_type=loc.controller_type, bbox_controller_overlay=bbox,
            azote={"labeler": {"method": loc.method, "preset": loc.preset, "family": family,
                               "action_density": round(density, 4)}})
        write_chunk(staging / chunk_name(vid, index), part, meta)
        kept.append(index)
    _keep_video(path, out / stored, cfg.keep_video)
    if final.exists():
        shutil.rmtree(final)
    if kept:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    npz = out / REPORT_DIR / f"{vid}.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = npz.with_name(f".{vid}.tmp.npz")
    np.savez_compressed(tmp, buttons=actions.buttons, j_left=actions.j_left, j_right=actions.j_right,
                        button_probs=raw["buttons"].astype(np.float16), raw_sticks=raw["sticks"].astype(np.float32))
    os.replace(tmp, npz)
    seconds = time.perf_counter() - t0
    report = {"video": str(path), "video_id": vid, "game": game, "frames": int(len(actions)), "fps": fps,
              "resolution": [int(info["height"]), int(info["width"])], "locate": loc.as_dict(), "family": family,
              "layout": reader.describe(),
              "controller_type": loc.controller_type, "bbox_controller_overlay": bbox, "normalisation": norm,
              "chunks": len(densities), "chunks_written": len(kept), "chunks_dropped": len(dropped),
              "dropped": dropped, "density": densities, "seconds": round(seconds, 3),
              "seconds_locate": round(t_locate, 3), "seconds_adapt": round(t_adapt, 3), "seconds_parse": round(t_parse, 3),
              "frames_per_second": round(len(actions) / seconds, 1),
              # how the video was labelled: the LabelConfig, the post-processing it applied (a zero-shot read widens
              # it) and the labeller's version
              "config": asdict(cfg), "post_applied": asdict(post), "version": VERSION}
    write_json(report_path(out, vid), report, default=str)
    return report


def load_labels(out: str | os.PathLike, video_id: str) -> ActionChunk:
    """Every frame's labels of a labelled video (including chunks the density filter dropped)."""
    with np.load(Path(out) / REPORT_DIR / f"{video_id}.npz") as z:
        return ActionChunk.from_arrays(z["buttons"], z["j_left"], z["j_right"])


# --- many videos -----------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def model_sources(weights: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where the labeller's three networks come from: a weights directory as `azote label-train --export` writes one
    (parser.json and parser.safetensors, detector/, namer.safetensors); the detector and the namer it lacks are the
    shipped ones."""
    from azote.labeling.detect import WEIGHTS_DIR as DETECTOR_DIR
    from azote.labeling.namer import WEIGHTS as NAMER_WEIGHTS

    w = Path(weights) if weights else None
    return {"parser": w or P.WEIGHTS_DIR,
            "detector": w / "detector" if w and (w / "detector").is_dir() else DETECTOR_DIR,
            "namer": w / NAMER_FILE if w and (w / NAMER_FILE).is_file() else NAMER_WEIGHTS}


def load_models(weights: str | os.PathLike | None = None) -> tuple[P.OverlayParser, Any, Namer]:
    """The parser, the detector and the namer (`model_sources`). Raises `WeightsError`, `DetectError` or
    `NamerError` naming the file that is missing or bad."""
    from azote.labeling.detect import load_detector

    src = model_sources(weights)
    return P.load_parser(src["parser"]), load_detector(src["detector"]), load_namer(src["namer"])


def _init_worker(weights: str | None, templates: Sequence[str], threads: int) -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    from azote.labeling.presets import load_preset

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _WORKER["blas"] = threadpool_limits(threads)  # discovery's matrix products too (kept for the worker's life)
    _WORKER["parser"], _WORKER["detector"], _WORKER["namer"] = load_models(weights)
    _WORKER["bank"] = TemplateBank([load_preset(t) for t in templates]) if templates else None


def _label_job(args: tuple) -> dict:
    path, out, game, vid, cfg = args
    try:
        return {"status": "ok", **label_video(path, out, game=game, video_id=vid, parser=_WORKER["parser"],
                                              detector=_WORKER["detector"], namer=_WORKER["namer"], bank=_WORKER["bank"],
                                              config=cfg)}
    except (VideoError, LabelError) as exc:
        return {"status": "failed", "video": str(path), "video_id": vid, "error": str(exc)}
    except Exception as exc:  # one broken video must not take the others down
        return {"status": "failed", "video": str(path), "video_id": vid, "error": f"{type(exc).__name__}: {exc}"}


def label_videos(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, games: dict[str, str] | None = None,
                 game: str | None = None, workers: int = 1, weights: str | os.PathLike | None = None,
                 templates: Sequence[str | os.PathLike] = (), config: LabelConfig | None = None,
                 backend: str = "process", on_result: Callable[[dict], None] | None = None) -> dict:
    """Labels many videos (a process pool, or Ray with `backend="ray"`). `templates` are known presets (directories
    or JSON files). Videos already labelled are skipped; a video that fails is reported and the others go on.
    Returns a summary (also written to OUT/labeling/summary.json)."""
    from azote.labeling.presets import load_preset

    cfg = config or LabelConfig()
    out = Path(out)
    tpl = [str(t) for t in templates]
    for t in tpl:  # a bad preset fails here, once, with its reason (not once per video)
        load_preset(t)
    jobs, seen = [], set()
    for p in paths:
        vid = video_id_for(p)
        if vid in seen:
            raise ValueError(f"{p}: two videos would get the id {vid!r}")
        seen.add(vid)
        jobs.append((str(p), str(out), (games or {}).get(vid, game), vid, cfg))
    t0 = time.perf_counter()
    results: list[dict] = []

    def done(r: dict) -> None:
        results.append(r)
        if on_result:
            on_result(r)

    todo = []
    for j in jobs:
        if is_labelled(out, j[3]):
            done({"status": "ok", **json.loads(report_path(out, j[3]).read_text()), "skipped": True})
        else:
            todo.append(j)
    w = str(weights) if weights else None
    if backend == "ray":
        _run_ray(todo, w, tpl, done)
    elif workers <= 1 or len(todo) <= 1:
        if todo:
            _init_worker(w, tpl, 1)
        for j in todo:
            done(_label_job(j))
    else:
        from concurrent.futures import as_completed

        from azote.lifetime import worker_pool

        with worker_pool(min(workers, len(todo)), _init_worker, (w, tpl, 1)) as pool:
            for fut in as_completed([pool.submit(_label_job, j) for j in todo]):
                done(fut.result())
    summary = summarise(results, time.perf_counter() - t0)
    write_json(out / REPORT_DIR / "summary.json", summary, default=str)
    return summary


def _run_ray(todo: list[tuple], weights: str | None, templates: list[str], done: Callable[[dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray backend needs ray (pip install 'azote[ray]')") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True)

    @ray.remote(num_cpus=1)
    def job(args: tuple) -> dict:
        if not _WORKER:
            _init_worker(weights, templates, 1)
        return _label_job(args)

    pending = [job.remote(j) for j in todo]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        done(ray.get(ready[0]))


def summarise(results: list[dict], seconds: float) -> dict:
    ok = [r for r in results if r.get("status") == "ok"]
    fresh = [r for r in ok if not r.get("skipped")]
    frames = sum(r.get("frames", 0) for r in fresh)
    return {"videos": len(results), "labelled": len(ok), "skipped": len(ok) - len(fresh),
            "failed": [{"video": r["video"], "error": r["error"]} for r in results if r.get("status") != "ok"],
            "frames": sum(r.get("frames", 0) for r in ok), "chunks_written": sum(r.get("chunks_written", 0) for r in ok),
            "chunks_dropped": sum(r.get("chunks_dropped", 0) for r in ok), "seconds": round(seconds, 2),
            "frames_per_second": round(frames / seconds, 1) if seconds > 0 and frames else None}
