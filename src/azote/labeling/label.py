"""Labelling one video: locate the overlay, parse every frame pair, post-process, write chunks with the video.

Output (a dataset root, `azote.dataset` layout):
    OUT/videos/<id>.mp4                       the source video (hard link, else copy)
    OUT/actions/SHARD_0000/<id>/<id>_chunk_NNNN/{actions_raw.parquet, metadata.json}   kept chunks only
    OUT/labeling/<id>.json                    the report; written last, so it marks the video as done
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
import cv2
import numpy as np

from azote.dataset.format import CHUNK_SECONDS, ChunkMetadata, OriginalVideo, chunk_name, video_relpath, write_chunk
from azote.dataset.video import VideoError, probe
from azote.dataset.writer import video_labels_dir
from azote.gamepad import ActionChunk
from azote.labeling import skins as sk
from azote.labeling.parser import CROP_SCALE, OverlayParser, crop_overlay, load_parser, parse_pairs, region_rgb
from azote.labeling.postprocess import PostConfig, chunk_density, to_actions

REPORT_DIR = "labeling"


class LabelError(RuntimeError):
    """A video that cannot be labelled (unreadable, or no overlay found); names the file."""


@dataclass
class LabelConfig:
    locate_frames: int = 25  # frames sampled across the video for the locator
    batch_size: int = 64
    chunk_seconds: float = CHUNK_SECONDS
    post: PostConfig = field(default_factory=PostConfig)
    source: str = "azote-label"
    keep_video: str = "link"  # link (hard link, else copy) | copy
    template_skins: str = "all"  # all | train: the locator's templates ("train": skins the parser was trained on)


# --- decoding ------------------------------------------------------------------------------------------------
def overlay_box(affine: np.ndarray, hw: tuple[int, int], margin: int = 6) -> tuple[int, int, int, int]:
    """The even-aligned pixel box that holds the overlay (plus a margin), clipped to the frame."""
    corners = np.array([[0, 0, 1], [sk.TEMPLATE_W, 0, 1], [0, sk.TEMPLATE_H, 1], [sk.TEMPLATE_W, sk.TEMPLATE_H, 1]],
                       np.float64) @ np.asarray(affine, np.float64).T
    h, w = hw
    x0 = max(0, int(np.floor(corners[:, 0].min())) - margin) & ~1
    y0 = max(0, int(np.floor(corners[:, 1].min())) - margin) & ~1
    x1 = min(w - w % 2, (int(np.ceil(corners[:, 0].max())) + margin + 1) & ~1)
    y1 = min(h - h % 2, (int(np.ceil(corners[:, 1].max())) + margin + 1) & ~1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise LabelError(f"overlay box {corners.min(0).tolist()}-{corners.max(0).tolist()} lies outside the frame {hw}")
    return x0, y0, x1, y1


def sample_frames(path: str | os.PathLike, count: int, total: int) -> Iterator[np.ndarray]:
    """About `count` frames spread evenly over the video, decoded lazily (seeking to the keyframe before a far
    target), so a consumer that stops early decodes no more."""
    targets = sorted(set(np.linspace(0, max(0, total - 1), min(count, max(1, total))).round().astype(int).tolist()))
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or Fraction(30)
            tb = s.time_base
            t0 = s.start_time or 0
            position = -10**9  # index of the last decoded frame
            frames = None
            for want in targets:
                if want - position > 120:  # far ahead: seek rather than decode through
                    c.seek(int(Fraction(want) / Fraction(rate) / tb) + t0, stream=s, backward=True)
                    frames = c.decode(s)
                for fr in frames:  # type: ignore[union-attr]
                    position = int(round(float((fr.pts - t0) * tb * rate))) if fr.pts is not None else want
                    if position >= want:
                        yield fr.to_ndarray(format="rgb24")
                        break
                else:
                    return
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot decode ({exc})") from None


def parse_video(path: str | os.PathLike, affine: np.ndarray, family: str, parser: OverlayParser,
                batch_size: int = 64, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Every frame's crop, paired with the previous one, through the parser (frame 0 is paired with itself)."""
    info = probe(path)
    x0, y0, x1, y1 = overlay_box(affine, (info["height"], info["width"]))
    local = np.asarray(affine, np.float64).copy()
    local[:, 2] -= (x0, y0)
    outs: list[dict[str, np.ndarray]] = []
    buf: list[np.ndarray] = []
    last: np.ndarray | None = None

    def flush() -> None:
        nonlocal last
        crops = np.stack(buf)
        prev = np.concatenate([crops[:1] if last is None else last[None], crops[:-1]])
        outs.append(parse_pairs(parser, crops, prev, family, batch_size))
        last = crops[-1]
        if progress:
            progress(len(buf))
        buf.clear()

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for fr in c.decode(s):
                buf.append(crop_overlay(region_rgb(fr, (x0, y0, x1, y1)), local, CROP_SCALE))
                if len(buf) >= 4 * batch_size:
                    flush()
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from None
    if buf:
        flush()
    if not outs:
        raise VideoError(f"{path}: no frames decoded")
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


# --- the whole video -------------------------------------------------------------------------------------------
def video_id_for(path: str | os.PathLike) -> str:
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".") or "video"


def report_path(out: str | os.PathLike, video_id: str) -> Path:
    return Path(out) / REPORT_DIR / f"{video_id}.json"


def is_labelled(out: str | os.PathLike, video_id: str) -> bool:
    return report_path(out, video_id).is_file()


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


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


def locate_video(path: str | os.PathLike, frames_total: int, count: int = 25, template_skins: str = "all") -> Any:
    from azote.labeling.locate import LocateError, locate

    if template_skins not in ("all", "train"):
        raise ValueError(f"template_skins must be all or train, got {template_skins!r}")
    skins = sk.TRAIN_SKINS if template_skins == "train" else None
    try:
        return locate(sample_frames(path, count, frames_total), skins=skins)
    except LocateError as exc:
        raise LabelError(f"{path}: {exc}") from None


def label_video(path: str | os.PathLike, out: str | os.PathLike, *, game: str | None = None,
                video_id: str | None = None, parser: OverlayParser | None = None,
                config: LabelConfig | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Labels one video into the dataset at `out` and returns its report. Raises `VideoError` for an unreadable
    video and `LabelError` when no overlay is found; a video already labelled is skipped (its report returned)."""
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
    loc = locate_video(path, info["frames"], cfg.locate_frames, cfg.template_skins)
    family = loc.family
    t_locate = time.perf_counter() - t0
    parser = parser or load_parser()
    raw = parse_video(path, loc.affine, family, parser, cfg.batch_size, progress)
    t_parse = time.perf_counter() - t0 - t_locate
    actions, norm = to_actions(raw["sticks"], raw["buttons"], cfg.post)
    fps = float(info["fps"])
    rows = max(1, int(round(cfg.chunk_seconds * fps)))
    bbox = [float(v) for v in loc.bbox()]

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
            original_video=OriginalVideo(video_id=vid, source=cfg.source, url=video_relpath(vid),
                                         resolution=[int(info["height"]), int(info["width"])],
                                         start_time=start / fps, end_time=end / fps, duration=len(part) / fps,
                                         start_frame=start, end_frame=end),
            game=game, controller_type=loc.controller_type, bbox_controller_overlay=bbox,
            azote={"labeler": {"skin": loc.skin, "family": family, "action_density": round(density, 4)}})
        write_chunk(staging / chunk_name(vid, index), part, meta)
        kept.append(index)
    _keep_video(path, out / video_relpath(vid), cfg.keep_video)
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
              "controller_type": loc.controller_type, "bbox_controller_overlay": bbox, "normalisation": norm,
              "chunks": len(densities), "chunks_written": len(kept), "chunks_dropped": len(dropped),
              "dropped": dropped, "density": densities, "seconds": round(seconds, 3),
              "seconds_locate": round(t_locate, 3), "seconds_parse": round(t_parse, 3),
              "frames_per_second": round(len(actions) / seconds, 1)}
    _atomic_json(report_path(out, vid), report)
    return report


def load_labels(out: str | os.PathLike, video_id: str) -> ActionChunk:
    """Every frame's labels of a labelled video (including chunks the density filter dropped)."""
    with np.load(Path(out) / REPORT_DIR / f"{video_id}.npz") as z:
        return ActionChunk.from_arrays(z["buttons"], z["j_left"], z["j_right"])


# --- many videos -----------------------------------------------------------------------------------------------
_WORKER_PARSER: OverlayParser | None = None


def _init_worker(weights: str | None, threads: int) -> None:
    import torch

    global _WORKER_PARSER
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _WORKER_PARSER = load_parser(weights)


def _label_job(args: tuple) -> dict:
    path, out, game, vid, cfg = args
    try:
        return {"status": "ok", **label_video(path, out, game=game, video_id=vid, parser=_WORKER_PARSER, config=cfg)}
    except (VideoError, LabelError) as exc:
        return {"status": "failed", "video": str(path), "video_id": vid, "error": str(exc)}
    except Exception as exc:  # one broken video must not take the others down
        return {"status": "failed", "video": str(path), "video_id": vid, "error": f"{type(exc).__name__}: {exc}"}


def label_videos(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, games: dict[str, str] | None = None,
                 game: str | None = None, workers: int = 1, weights: str | os.PathLike | None = None,
                 config: LabelConfig | None = None, backend: str = "process",
                 on_result: Callable[[dict], None] | None = None) -> dict:
    """Labels many videos (a process pool, or Ray with `backend="ray"`). Videos already labelled are skipped;
    a video that fails is reported and the others go on. Returns a summary (also written to
    OUT/labeling/summary.json)."""
    cfg = config or LabelConfig()
    out = Path(out)
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
        _run_ray(todo, w, done)
    elif workers <= 1 or len(todo) <= 1:
        _init_worker(w, 1)
        for j in todo:
            done(_label_job(j))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(w, 1)) as pool:
            for fut in as_completed([pool.submit(_label_job, j) for j in todo]):
                done(fut.result())
    summary = summarise(results, time.perf_counter() - t0)
    _atomic_json(out / REPORT_DIR / "summary.json", summary)
    return summary


def _run_ray(todo: list[tuple], weights: str | None, done: Callable[[dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray backend needs ray (pip install 'azote[ray]')") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True)

    @ray.remote(num_cpus=1)
    def job(args: tuple) -> dict:
        if _WORKER_PARSER is None:
            _init_worker(weights, 1)
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
