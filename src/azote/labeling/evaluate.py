"""How well the labeller recovers actions: a test set of overlay videos made from skins and games held out of the
parser's training (and of the locator's templates), and the scores.

Test set layout (DIR):
    DIR/streams/<id>.mp4     streamer-style videos (held-out game, held-out skin, random place/scale/opacity/quality)
    DIR/truth/<id>.npz       the actions shown (buttons, j_left, j_right)
    DIR/truth/<id>.json      skin, family, placement, bbox, game, crf
    DIR/labels/              what `azote label` makes of the streams (a dataset root)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from azote.gamepad import BUTTONS, ActionChunk
from azote.labeling import skins as sk
from azote.labeling.compose import render_stream

# --- metrics ---------------------------------------------------------------------------------------------------


def r2(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Coefficient of determination (None when the truth does not vary)."""
    pred, truth = np.asarray(pred, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    sst = ((truth - truth.mean()) ** 2).sum()
    if len(truth) == 0 or sst <= 1e-12:
        return None
    return float(1 - ((pred - truth) ** 2).sum() / sst)


def f1(pred: np.ndarray, truth: np.ndarray) -> float | None:
    tp = float((pred & truth).sum())
    fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def score_actions(pred: ActionChunk, truth: ActionChunk) -> dict[str, Any]:
    """Stick R^2 (x and y, both sticks pooled), button accuracy and per-button F1 over aligned frames."""
    n = min(len(pred), len(truth))
    p, t = pred[:n], truth[:n]
    ps, ts = np.concatenate([p.j_left, p.j_right]), np.concatenate([t.j_left, t.j_right])
    pb, tb = p.buttons.astype(bool), t.buttons.astype(bool)
    return {"frames": n, "stick_r2_x": r2(ps[:, 0], ts[:, 0]), "stick_r2_y": r2(ps[:, 1], ts[:, 1]),
            "stick_mae": float(np.abs(ps - ts).mean()) if n else None,
            "button_accuracy": float((pb == tb).mean()) if n else None,
            "button_f1": {b: f1(pb[:, j], tb[:, j]) for j, b in enumerate(BUTTONS)}}


def _pool(pairs: Sequence[tuple[ActionChunk, ActionChunk]]) -> dict[str, Any]:
    if not pairs:
        return {"frames": 0, "stick_r2_x": None, "stick_r2_y": None, "stick_mae": None, "button_accuracy": None,
                "button_f1": {b: None for b in BUTTONS}}
    cut = [(p[:min(len(p), len(t))], t[:min(len(p), len(t))]) for p, t in pairs]
    return score_actions(ActionChunk.concat([p for p, _ in cut]), ActionChunk.concat([t for _, t in cut]))


def bbox_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    return inter / max(aw * ah + bw * bh - inter, 1e-9)


# --- test set ----------------------------------------------------------------------------------------------------
def test_set_exists(data: str | os.PathLike) -> bool:
    return any((Path(data) / "truth").glob("*.json"))


def make_test_set(data: str | os.PathLike, bank: Any, *, videos: int = 24, seconds: float = 10.0, fps: float = 60.0,
                  skins: Sequence[str] = sk.HELDOUT_SKINS, seed: int = 1234,
                  log: Callable[[str], None] = print) -> list[str]:
    """Streamer-style videos of `bank`'s games (held-out games) with `skins` (held-out skins): every skin and
    every game in turn, random placement (scale 0.5-2, opacity 0.5-1) and H.264 quality (crf 18-32)."""
    from azote.labeling.synth import random_actions

    data = Path(data)
    (data / "streams").mkdir(parents=True, exist_ok=True)
    (data / "truth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    games = bank.games
    made = []
    n = int(round(seconds * fps))
    for i in range(videos):
        vid = f"test-{i:03d}"
        meta_path = data / "truth" / f"{vid}.json"
        skin, game = skins[i % len(skins)], games[(i * 5 + i // len(games)) % len(games)]
        vrng = np.random.default_rng([seed, i])
        actions = random_actions(vrng, n)
        if not meta_path.is_file():
            _, frames = bank.run(vrng, n, game)
            crf = int(vrng.integers(18, 33))
            info = render_stream(frames, actions, data / "streams" / f"{vid}.mp4", skin, fps, crf=crf,
                                 seed=int(vrng.integers(1 << 30)))
            np.savez(data / "truth" / f"{vid}.npz", buttons=actions.buttons, j_left=actions.j_left,
                     j_right=actions.j_right)
            tmp = meta_path.with_name(f".{meta_path.name}.tmp")
            tmp.write_text(json.dumps({**info, "game": game, "family": sk.get_skin(skin).family}, indent=1))
            os.replace(tmp, meta_path)
            log(f"test set: {vid} {game} {skin} scale {info['placement']['scale']:.2f} "
                f"opacity {info['placement']['opacity']:.2f} crf {crf}")
        made.append(vid)
    return made


def load_truth(data: str | os.PathLike, vid: str) -> tuple[ActionChunk, dict]:
    data = Path(data)
    with np.load(data / "truth" / f"{vid}.npz") as z:
        actions = ActionChunk.from_arrays(z["buttons"], z["j_left"], z["j_right"])
    return actions, json.loads((data / "truth" / f"{vid}.json").read_text())


# --- scoring -----------------------------------------------------------------------------------------------------
def score_test_set(data: str | os.PathLike, labels: str | os.PathLike | None = None) -> dict[str, Any]:
    """Scores the labels in DIR/labels (or `labels`) against DIR/truth: overall, per family, per video."""
    from azote.labeling.label import REPORT_DIR, load_labels

    data = Path(data)
    labels = Path(labels) if labels else data / "labels"
    per_video, pairs_by_family, located = [], {}, {}
    for meta_path in sorted((data / "truth").glob("*.json")):
        vid = meta_path.stem
        truth, meta = load_truth(data, vid)
        family = meta["family"]
        report_file = labels / REPORT_DIR / f"{vid}.json"
        entry: dict[str, Any] = {"video": vid, "game": meta["game"], "skin": meta["skin"], "family": family,
                                 "scale": round(meta["placement"]["scale"], 3),
                                 "opacity": round(meta["placement"]["opacity"], 3), "crf": meta["crf"]}
        ok = False
        if report_file.is_file():
            rep = json.loads(report_file.read_text())
            iou = bbox_iou(rep["bbox_controller_overlay"], meta["bbox"])
            ok = rep["family"] == family and iou >= 0.8
            entry.update({"located_family": rep["family"], "bbox_iou": round(iou, 4), "located": ok})
            if ok:
                pred = load_labels(labels, vid)
                s = score_actions(pred, truth)
                entry.update({k: v for k, v in s.items() if k != "button_f1"})
                pairs_by_family.setdefault(family, []).append((pred, truth))
        else:
            entry.update({"located": False, "error": "not labelled (no overlay found or unreadable)"})
        located.setdefault(family, []).append(ok)
        per_video.append(entry)
    all_pairs = [p for v in pairs_by_family.values() for p in v]
    overall = _pool(all_pairs)
    n_loc = sum(sum(v) for v in located.values())
    n_all = sum(len(v) for v in located.values())
    families = {}
    for family in sk.FAMILIES:
        if family not in located:
            continue
        s = _pool(pairs_by_family.get(family, []))
        families[family] = {"videos": len(located[family]), "locate_rate": float(np.mean(located[family])),
                            "controller_type": sk.CONTROLLER_TYPE[family],
                            **{k: s[k] for k in ("frames", "stick_r2_x", "stick_r2_y", "button_accuracy")}}
    return {"videos": n_all, "locate_rate": n_loc / n_all if n_all else None,
            **{k: overall[k] for k in ("frames", "stick_r2_x", "stick_r2_y", "stick_mae", "button_accuracy")},
            "button_f1": overall["button_f1"], "families": families, "per_video": per_video}


def evaluate_dir(data: str | os.PathLike, workers: int = 2, weights: str | os.PathLike | None = None,
                 template_skins: str = "train") -> dict[str, Any]:
    """Labels DIR/streams into DIR/labels (resumable) and scores them. `template_skins="train"` gives the locator
    only the skins the parser was trained on, so held-out skins are new to both stages."""
    from azote.labeling.label import LabelConfig, label_videos

    data = Path(data)
    streams = sorted((data / "streams").glob("*.mp4"))
    if not streams:
        raise FileNotFoundError(f"{data}/streams: no test videos (make them with `azote label-eval --data {data}`)")
    summary = label_videos(streams, data / "labels", workers=workers, weights=weights,
                           config=LabelConfig(template_skins=template_skins))
    result = score_test_set(data)
    result["labelling"] = {k: summary[k] for k in ("videos", "labelled", "skipped", "failed", "frames",
                                                   "frames_per_second")}
    result["template_skins"] = template_skins
    result["heldout_skins"] = list(sk.HELDOUT_SKINS)
    result["games"] = sorted({v["game"] for v in result["per_video"]})
    return result


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def format_table(result: dict[str, Any]) -> str:
    """Markdown: the overall figures, the per-family table and per-button F1."""
    lines = [f"Labeller accuracy on {result['videos']} videos of held-out games ({', '.join(result.get('games', []))}) "
             f"with held-out skins ({len(result.get('heldout_skins', []))}), {result['frames']} frames scored", "",
             "| measure | value |", "| --- | ---: |",
             f"| stick R^2 x | {_fmt(result['stick_r2_x'])} |", f"| stick R^2 y | {_fmt(result['stick_r2_y'])} |",
             f"| stick mean abs error | {_fmt(result['stick_mae'])} |",
             f"| button accuracy | {_fmt(result['button_accuracy'])} |",
             f"| locate success rate | {_fmt(result['locate_rate'])} |", "",
             "| family | controller_type | videos | located | stick R^2 x | stick R^2 y | button accuracy |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for fam, r in result["families"].items():
        lines.append(f"| {fam} | {r['controller_type']} | {r['videos']} | {_fmt(r['locate_rate'])} | "
                     f"{_fmt(r['stick_r2_x'])} | {_fmt(r['stick_r2_y'])} | {_fmt(r['button_accuracy'])} |")
    lines += ["", "| button | F1 |", "| --- | ---: |"]
    lines += [f"| {b} | {_fmt(v)} |" for b, v in result["button_f1"].items()]
    lab = result.get("labelling")
    if lab:
        lines += ["", f"Labelling: {lab['labelled']}/{lab['videos']} videos, {len(lab['failed'])} failed, "
                      f"{_fmt(lab['frames_per_second'])} frames/s (this run)."]
    return "\n".join(lines) + "\n"
