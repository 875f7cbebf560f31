"""Pre-training and fine-tuning the policy on datasets (`Trainer`, `TrainConfig`), and offline evaluation."""

from azote.training.config import TrainConfig, TrainConfigError
from azote.training.trainer import Trainer, latest_checkpoint

__all__ = ["TrainConfig", "TrainConfigError", "Trainer", "latest_checkpoint"]
