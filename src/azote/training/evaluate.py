"""Offline evaluation: how well a checkpoint's action chunks match held-out labelled chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from azote.dataset import Dataset
from azote.dataset.samples import SampleConfig, TrainingSamples
from azote.gamepad import BUTTONS, ActionChunk


def r2(pred: np.ndarray, true: np.ndarray) -> float:
    """Coefficient of determination; nan when the truth does not vary."""
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return float("nan") if ss_tot == 0 else 1.0 - float(((pred - true) ** 2).sum()) / ss_tot


@dataclass
class ActionScores:
    samples: int
    button_accuracy: float
    button_f1: dict[str, float]
    stick_r2: dict[str, float]  # j_left_x, j_left_y, j_right_x, j_right_y
    stick_mae: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def score_actions(pred: Sequence[ActionChunk], true: Sequence[ActionChunk], masks: np.ndarray) -> ActionScores:
    """Buttons and sticks of predicted chunks against the truth, over the valid (mask = 1) rows."""
    keep = masks.reshape(-1) > 0
    pb = np.concatenate([p.buttons for p in pred])[keep].astype(bool)
    tb = np.concatenate([t.buttons for t in true])[keep].astype(bool)
    f1 = {}
    for i, name in enumerate(BUTTONS):
        tp = int((pb[:, i] & tb[:, i]).sum())
        fp, fn = int((pb[:, i] & ~tb[:, i]).sum()), int((~pb[:, i] & tb[:, i]).sum())
        f1[name] = float("nan") if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    sticks = {}
    errors = []
    for stick in ("j_left", "j_right"):
        ps = np.concatenate([getattr(p, stick) for p in pred])[keep]
        ts = np.concatenate([getattr(t, stick) for t in true])[keep]
        sticks[f"{stick}_x"], sticks[f"{stick}_y"] = r2(ps[:, 0], ts[:, 0]), r2(ps[:, 1], ts[:, 1])
        errors.append(np.abs(ps - ts))
    return ActionScores(
        samples=len(pred), button_accuracy=float((pb == tb).mean()), button_f1=f1, stick_r2=sticks,
        stick_mae=float(np.concatenate(errors).mean()),
    )


def evaluate_offline(checkpoint: str, data: Sequence[str], batches: int = 8, batch_size: int = 16, seed: int = 0,
                     video_dir: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Samples `batches` x `batch_size` (frame, chunk) pairs from the data (no augmentation, no density filter)
    and scores the checkpoint's sampled chunks against them."""
    from azote.policy import Policy

    policy = Policy.from_pretrained(checkpoint, device=device, seed=seed)
    cfg = policy.config
    datasets = [Dataset.open(d, video_dir=video_dir) for d in data]
    samples = TrainingSamples(datasets, SampleConfig(
        horizon=cfg.action_horizon, shift=cfg.action_shift, image_size=cfg.vision.image_size, batch_size=batch_size,
        min_action_density=0.0, seed=seed))
    preds, truths, masks = [], [], []
    for index in range(batches):
        batch = samples.batch(index)
        frames = batch["pixel_values"][:, 0].permute(0, 2, 3, 1).numpy()
        with torch.inference_mode():
            out = policy.predict(list(frames), seed=seed + index)
        preds += [ActionChunk.from_model_vectors(v) for v in out]
        truths += [ActionChunk.from_model_vectors(v) for v in batch["actions"].numpy()]
        masks.append(batch["action_mask"].numpy())
    scores = score_actions(preds, truths, np.concatenate(masks))
    return {"checkpoint": checkpoint, "data": list(data), **scores.as_dict()}

