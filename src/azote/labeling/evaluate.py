"""How well the labeller recovers actions: test videos made from any presets over frames of held-out games, and
their scores per preset.

Test set layout (DIR):
    DIR/streams/<id>.mp4     streamer-style videos (1280 x 720, 60 fps, overlay 22-34% of the width in a corner,
                             now and then partly off-screen, opacity 0.6-1, H.264 crf 20-28)
    DIR/truth/<id>.npz       the actions shown (buttons, j_left, j_right)
    DIR/truth/<id>.json      preset, its source, family, placement, bbox, game, crf
    DIR/labels/              what `azote label` makes of the streams (a dataset root)

Scores count what the overlay can show: the buttons and sticks the preset draws (a NES pad has no sticks and no
shoulder buttons, so their presses are invisible and not scored).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from azote.gamepad import BUTTONS, ActionChunk
from azote.labeling.frames import bbox_iou
from azote.labeling.presets import Preset

MIN_IOU = 0.5  # a box this close to the truth counts as located
TEST_SET_VERSION = 2  # 2: rocker d-pads (no two opposite directions held)


# --- metrics -----------------------------------------------------------------------------------------------------
def r2(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Coefficient of determination (None when the truth does not vary)."""
    pred, truth = np.asarray(pred, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    sst = ((truth - truth.mean()) ** 2).sum() if len(truth) else 0.0
    if len(truth) == 0 or sst <= 1e-12:
        return None
    return float(1 - ((pred - truth) ** 2).sum() / sst)


def f1(pred: np.ndarray, truth: np.ndarray) -> float | None:
    tp = float((pred & truth).sum())
    fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def score_actions(pred: ActionChunk, truth: ActionChunk, buttons: Sequence[str] = BUTTONS,
                  sticks: Sequence[str] = ("j_left", "j_right")) -> dict[str, Any]:
    """Stick R^2 (x and y, the scored sticks pooled), button accuracy, the press-nothing baseline, F1 over the
    pressed buttons (pooled) and per button, over aligned frames; only `buttons` and `sticks` are scored."""
    n = min(len(pred), len(truth))
    p, t = pred[:n], truth[:n]
    cols = [BUTTONS.index(b) for b in buttons]
    pb, tb = p.buttons.astype(bool)[:, cols], t.buttons.astype(bool)[:, cols]
    out: dict[str, Any] = {"frames": n, "stick_r2_x": None, "stick_r2_y": None, "stick_mae": None}
    if sticks and n:
        ps = np.concatenate([getattr(p, s) for s in sticks])
        ts = np.concatenate([getattr(t, s) for s in sticks])
        out.update({"stick_r2_x": r2(ps[:, 0], ts[:, 0]), "stick_r2_y": r2(ps[:, 1], ts[:, 1]),
                    "stick_mae": float(np.abs(ps - ts).mean())})
    out.update({"button_accuracy": float((pb == tb).mean()) if n and cols else None,
                "press_nothing": float((~tb).mean()) if n and cols else None,
                "pressed_f1": f1(pb, tb) if n and cols else None,
                "button_f1": {b: f1(pb[:, j], tb[:, j]) for j, b in enumerate(buttons)}})
    return out


def shown(preset: Preset) -> tuple[list[str], list[str]]:
    """The buttons and sticks a preset draws (what a labeller can read off it)."""
    regions = preset.button_regions()
    return [b for b in BUTTONS if b in regions], [s for s in ("j_left", "j_right") if s in preset.sticks()]


# --- test set ----------------------------------------------------------------------------------------------------
def test_set_exists(data: str | os.PathLike) -> bool:
    return any((Path(data) / "truth").glob("*.json"))


def make_test_set(data: str | os.PathLike, presets: Sequence[tuple[str, Preset]], bank: Any, *,
                  videos_per_preset: int = 2, seconds: float = 20.0, fps: float = 60.0, seed: int = 1234,
                  log: Callable[[str], None] = print) -> list[str]:
    """Streamer-style videos of `bank`'s games with each preset (`(source, preset)` pairs): random corner placement
    (22-34% of the width, sometimes partly off-screen), opacity 0.6-1, crf 20-28. Resumable: made videos are kept."""
    from azote.labeling.compose import random_placement, render_stream
    from azote.labeling.synth import random_actions

    data = Path(data)
    (data / "streams").mkdir(parents=True, exist_ok=True)
    (data / "truth").mkdir(parents=True, exist_ok=True)
    games = bank.games
    made, n, i = [], int(round(seconds * fps)), 0
    names = [_safe(p.name) for _, p in presets]
    for (source, preset), name in zip(presets, names):
        if names.count(name) > 1:  # two presets of one name (say two colours of one skin): ids from their content
            name = f"{name}-{preset.digest[:6]}"
        for k in range(videos_per_preset):
            vid = f"{name}-{k:02d}"
            meta_path = data / "truth" / f"{vid}.json"
            vrng = np.random.default_rng([seed, i])
            i += 1
            if not meta_path.is_file():
                game = games[int(vrng.integers(len(games)))]
                actions = random_actions(vrng, n)
                _, frames = bank.run(vrng, n, game)
                crf = int(vrng.integers(20, 29))
                placement = random_placement(vrng, preset)
                info = render_stream(frames, actions, data / "streams" / f"{vid}.mp4", preset, fps,
                                     placement=placement, crf=crf)
                np.savez(data / "truth" / f"{vid}.npz", buttons=actions.buttons, j_left=actions.j_left,
                         j_right=actions.j_right)
                buttons, sticks = shown(preset)
                tmp = meta_path.with_name(f".{meta_path.name}.tmp")
                tmp.write_text(json.dumps({**info, "preset_id": name, "game": game, "source": str(source), "buttons": buttons,
                                           "sticks": sticks}, indent=1))
                os.replace(tmp, meta_path)
                log(f"test set: {vid} {game} width {info['bbox'][2]:.0f} px opacity {placement.opacity:.2f} crf {crf}")
            made.append(vid)
    return made


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "preset"


def load_truth(data: str | os.PathLike, vid: str) -> tuple[ActionChunk, dict]:
    data = Path(data)
    with np.load(data / "truth" / f"{vid}.npz", allow_pickle=False) as z:
        actions = ActionChunk.from_arrays(z["buttons"], z["j_left"], z["j_right"])
    return actions, json.loads((data / "truth" / f"{vid}.json").read_text())


# --- scoring -----------------------------------------------------------------------------------------------------
def _pooled(entries: list[tuple[ActionChunk, ActionChunk, list[str], list[str]]]) -> dict[str, Any]:
    """Scores pooled over videos (each scored on its own preset's buttons and sticks)."""
    if not entries:
        return {"frames": 0, "stick_r2_x": None, "stick_r2_y": None, "stick_mae": None, "button_accuracy": None,
                "press_nothing": None, "pressed_f1": None}
    ps, ts, pb, tb = [], [], [], []
    for p, t, buttons, sticks in entries:
        n = min(len(p), len(t))
        cols = [BUTTONS.index(b) for b in buttons]
        pb.append(p.buttons[:n, cols].astype(bool).ravel())
        tb.append(t.buttons[:n, cols].astype(bool).ravel())
        for s in sticks:
            ps.append(getattr(p, s)[:n])
            ts.append(getattr(t, s)[:n])
    pbv, tbv = np.concatenate(pb), np.concatenate(tb)
    out: dict[str, Any] = {"frames": int(sum(min(len(p), len(t)) for p, t, _, _ in entries)),
                           "button_accuracy": float((pbv == tbv).mean()) if len(pbv) else None,
                           "press_nothing": float((~tbv).mean()) if len(tbv) else None,
                           "pressed_f1": f1(pbv, tbv) if len(pbv) else None,
                           "stick_r2_x": None, "stick_r2_y": None, "stick_mae": None}
    if ps:
        P, T = np.concatenate(ps), np.concatenate(ts)
        out.update({"stick_r2_x": r2(P[:, 0], T[:, 0]), "stick_r2_y": r2(P[:, 1], T[:, 1]),
                    "stick_mae": float(np.abs(P - T).mean())})
    return out


def score_test_set(data: str | os.PathLike, labels: str | os.PathLike) -> dict[str, Any]:
    """Scores the labels in `labels` against DIR/truth: overall, per preset and per video."""
    from azote.labeling.label import REPORT_DIR, load_labels

    data = Path(data)
    labels = Path(labels)
    per_video, by_preset = [], {}
    for meta_path in sorted((data / "truth").glob("*.json")):
        vid = meta_path.stem
        truth, meta = load_truth(data, vid)
        preset_id = meta.get("preset_id", meta["preset"])
        entry: dict[str, Any] = {"video": vid, "preset": preset_id, "family": meta["family"], "game": meta["game"],
                                 "width": round(meta["bbox"][2], 1), "opacity": round(meta["placement"]["opacity"], 3),
                                 "crf": meta["crf"], "located": False}
        report_file = labels / REPORT_DIR / f"{vid}.json"
        pair = None
        if report_file.is_file():
            rep = json.loads(report_file.read_text())
            iou = bbox_iou(rep["bbox_controller_overlay"], meta["bbox"])
            entry.update({"method": rep.get("locate", {}).get("method"), "bbox_iou": round(iou, 4),
                          "located_family": rep["family"], "located": iou >= MIN_IOU})
            if entry["located"]:
                pred = load_labels(labels, vid)
                s = score_actions(pred, truth, meta["buttons"], meta["sticks"])
                entry.update({k: v for k, v in s.items() if k != "button_f1"})
                pair = (pred, truth, meta["buttons"], meta["sticks"])
        else:
            entry["error"] = "not labelled (see labels/labeling/summary.json)"
        group = by_preset.setdefault(preset_id, {"family": meta["family"], "videos": [], "pairs": []})
        group["videos"].append(entry)
        if pair:
            group["pairs"].append(pair)
        per_video.append(entry)
    presets = {}
    for name, g in by_preset.items():
        ious = [v["bbox_iou"] for v in g["videos"] if "bbox_iou" in v]
        presets[name] = {"family": g["family"], "videos": len(g["videos"]),
                         "located": float(np.mean([v["located"] for v in g["videos"]])),
                         "bbox_iou": float(np.mean(ious)) if ious else None, **_pooled(g["pairs"])}
    overall = _pooled([p for g in by_preset.values() for p in g["pairs"]])
    ious = [v["bbox_iou"] for v in per_video if "bbox_iou" in v]
    return {"videos": len(per_video), "located": float(np.mean([v["located"] for v in per_video])) if per_video else None,
            "bbox_iou": float(np.mean(ious)) if ious else None, **overall, "presets": presets, "per_video": per_video}


def _labeller_key(weights: str | os.PathLike | None, templates: Sequence[str | os.PathLike], config: Any) -> str:
    """What produced a set of labels (the parser's bytes, the known presets, the settings), so that labels made by
    other weights are never taken for these."""
    from azote.labeling.label import VERSION, model_sources

    h = hashlib.sha256()
    src = model_sources(weights)
    for f in (src["parser"] / "parser.safetensors", src["detector"] / "detector.safetensors", src["namer"]):
        h.update(f.read_bytes() if f.is_file() else b"-")
    h.update(json.dumps([sorted(str(Path(t).resolve()) for t in templates), config.adapt, config.adapt_minutes,
                         config.adapt_clips, config.adapt_steps, config.discovery_frames, config.probe_frames,
                         VERSION]).encode())
    return h.hexdigest()[:10]


def evaluate_dir(data: str | os.PathLike, workers: int = 2, weights: str | os.PathLike | None = None,
                 templates: Sequence[str | os.PathLike] = (), config: Any = None,
                 on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Labels DIR/streams into DIR/labels/<what labels them> (resumable) and scores them; `on_result` gets each
    video's result as it is done."""
    from azote.labeling.label import LabelConfig, label_videos

    data = Path(data)
    config = config or LabelConfig()
    streams = sorted((data / "streams").glob("*.mp4"))
    if not streams:
        raise FileNotFoundError(f"{data}/streams: no test videos")
    labels = data / "labels" / _labeller_key(weights, templates, config)
    summary = label_videos(streams, labels, workers=workers, weights=weights, templates=templates, config=config,
                           on_result=on_result)
    result = score_test_set(data, labels)
    result["labelling"] = {k: summary[k] for k in ("videos", "labelled", "skipped", "failed", "frames",
                                                   "frames_per_second")}
    result["templates"] = [str(t) for t in templates]
    result["games"] = sorted({v["game"] for v in result["per_video"]})
    return result


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per preset, then the pooled figures."""
    mode = "known presets (--templates)" if result.get("templates") else "zero-shot"
    lines = [f"Labeller on {result['videos']} videos ({mode}; games {', '.join(result.get('games', []))}), "
             f"{result['frames']} frames scored", "",
             "| preset | family | videos | located | box IoU | stick R^2 x | stick R^2 y | button acc. | "
             "press-nothing | F1 pressed |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in result["presets"].items():
        lines.append(f"| {name} | {r['family']} | {r['videos']} | {_fmt(r['located'])} | {_fmt(r['bbox_iou'])} | "
                     f"{_fmt(r['stick_r2_x'])} | {_fmt(r['stick_r2_y'])} | {_fmt(r['button_accuracy'])} | "
                     f"{_fmt(r['press_nothing'])} | {_fmt(r['pressed_f1'])} |")
    lines.append(f"| **all** | | {result['videos']} | {_fmt(result['located'])} | {_fmt(result['bbox_iou'])} | "
                 f"{_fmt(result['stick_r2_x'])} | {_fmt(result['stick_r2_y'])} | {_fmt(result['button_accuracy'])} | "
                 f"{_fmt(result['press_nothing'])} | {_fmt(result['pressed_f1'])} |")
    lab = result.get("labelling")
    if lab:
        lines += ["", f"Labelling: {lab['labelled']}/{lab['videos']} videos, {len(lab['failed'])} failed, "
                      f"{_fmt(lab['frames_per_second'])} frames/s (this run)."]
        lines += [f"- failed: {Path(f['video']).name}: {f['error']}" for f in lab["failed"]]
    return "\n".join(lines) + "\n"
