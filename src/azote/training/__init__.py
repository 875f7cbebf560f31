"""Pre-training and fine-tuning the policy on datasets (`Trainer`, `TrainConfig`), and offline evaluation.

`TrainConfig` (the run's configuration tree, `azote.training.config`) imports no torch; `Trainer` is imported on
first use."""

from typing import Any

from azote.training.config import TrainConfig, TrainConfigError

__all__ = ["TrainConfig", "TrainConfigError", "Trainer", "latest_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "latest_checkpoint"):
        from azote.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'azote.training' has no attribute {name!r}")
