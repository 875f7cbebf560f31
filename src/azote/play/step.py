"""One step of an episode, as every mode of the episode loop yields it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from azote.gamepad import Gamepad


@dataclass
class Step:
    index: int
    frame: np.ndarray  # the frame the action was chosen for (what a dataset row pairs with the action)
    action: Gamepad
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
