"""The labelling round trip on recorded play, where the true actions are known: draw an overlay of the recorded
actions on the episode's video, label that video, score the labels against the recorded actions (the main job's
label stage, `azote.pipeline.mainjob`, and the labelling tests and benchmark use it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from azote.gamepad import BUTTONS, ActionChunk
from azote.labeling.compose import Placement
from azote.labeling.compose import render_stream as _compose_stream
from azote.labeling.presets import Preset


def render_overlay_video(frames: Any, actions: ActionChunk, out: str | os.PathLike, preset: Preset,
                         fps: float = 60.0, *, placement: Placement | None = None, crf: int = 23,
                         seed: int = 0) -> dict:
    """A streamer-style video (1280 x 720): every frame shown as capture software shows it, with `preset`'s overlay
    showing the action of that frame (a random corner placement unless `placement` is given). Returns the truth
    (preset, family, placement, bbox, frames) as JSON-able values."""
    return _compose_stream(frames, actions, out, preset, fps, placement=placement, crf=crf, seed=seed)


def render_stream_from_video(video: str | os.PathLike, actions: ActionChunk, out: str | os.PathLike, index: int = 0,
                             seed: int = 0, presets: Sequence[Preset] | None = None) -> dict:
    """The main job's step 2: a recorded episode's video rendered again with an overlay of its actions. The skin
    is `presets[index % len(presets)]` (default: generated skins in styles held out of the labeller's training),
    placement and quality are seeded."""
    from azote.dataset.video import probe, read_frames
    from azote.labeling.skingen import heldout_presets

    presets = list(presets or heldout_presets())
    rng = np.random.default_rng([seed, index])
    info = probe(video)
    frames = read_frames(video, 0, len(actions))
    crf = int(rng.integers(18, 29))
    out_info = render_overlay_video(frames, actions, out, presets[index % len(presets)], info["fps"] or 60.0, crf=crf,
                                    seed=int(rng.integers(1 << 30)))
    return {**out_info, "source": str(video)}



def label_streams(paths: Sequence[str | os.PathLike], out: str | os.PathLike, games: dict[str, str] | None = None,
                  workers: int = 2) -> dict:
    """Labels overlay videos into the dataset root `out` (video id = file stem); resumable."""
    from azote.labeling.label import label_videos

    return label_videos(paths, out, games=games, workers=workers)


def score_labels(labelled: str | os.PathLike, truth: str | os.PathLike) -> dict[str, Any]:
    """Flat metrics of the labels under `labelled` (every frame, dropped chunks included) against the actions of
    the recorded dataset `truth` (same video ids)."""
    from azote.dataset import Dataset
    from azote.labeling.evaluate import score_actions
    from azote.labeling.label import REPORT_DIR, load_labels

    labelled = Path(labelled)
    ds = Dataset.open(truth)
    by_video: dict[str, list] = {}
    for c in ds.chunks:
        by_video.setdefault(c.video_id, []).append(c)
    preds, truths, located = [], [], 0
    for vid, chunks in sorted(by_video.items()):
        if not (labelled / REPORT_DIR / f"{vid}.npz").is_file():
            continue
        located += 1
        chunks.sort(key=lambda c: c.index)
        t = ActionChunk.concat([c.actions for c in chunks])
        p = load_labels(labelled, vid)
        n = min(len(p), len(t))
        preds.append(p[:n])
        truths.append(t[:n])
    out: dict[str, Any] = {"videos": len(by_video), "locate_rate": located / len(by_video) if by_video else None}
    if preds:
        truth_all = ActionChunk.concat(truths)
        s = score_actions(ActionChunk.concat(preds), truth_all)
        # F1 of the buttons the players pressed; a never-pressed button's stray reading is an error in accuracy
        pressed = truth_all.buttons.any(axis=0)
        f1s = [s["button_f1"][b] for j, b in enumerate(BUTTONS) if pressed[j]]
        out.update({"frames": s["frames"], "stick_r2_x": s["stick_r2_x"], "stick_r2_y": s["stick_r2_y"],
                    "stick_mae": s["stick_mae"], "button_accuracy": s["button_accuracy"],
                    "button_f1_mean": float(np.mean(f1s)) if f1s else None})
    return out
