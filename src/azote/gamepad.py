"""The unified gamepad: 17 buttons and two analogue sticks, shared by every game and model.

Conventions
-----------
* Buttons are 0/1, named as in the released NitroGen dataset (`BUTTONS`, in that order).
* Sticks ``j_left`` and ``j_right`` are (x, y) in [-1, 1]; y is image convention: negative is up.
* The released model works on a 25-dim vector (`MODEL_SLOTS`): 21 button slots (four of them unused legacy
  slots that stay 0), then left stick (x, y) and right stick (x, y) stored as ``(v + 1) / 2``.

One action is a `Gamepad`; a sequence of actions (a chunk, an episode, a dataset chunk) is an `ActionChunk`
holding arrays ``buttons [T, 17] uint8``, ``j_left [T, 2] float32``, ``j_right [T, 2] float32``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from azote.errors import AzoteError

BUTTONS: tuple[str, ...] = (
    "back", "dpad_down", "dpad_left", "dpad_right", "dpad_up", "east", "guide", "left_shoulder",
    "left_thumb", "left_trigger", "north", "right_shoulder", "right_thumb", "right_trigger", "south",
    "start", "west",
)
STICKS: tuple[str, ...] = ("j_left", "j_right")
NUM_BUTTONS = len(BUTTONS)
BUTTON_INDEX: dict[str, int] = {name: i for i, name in enumerate(BUTTONS)}

# The released model's 21 button slots; the four RIGHT_* direction slots are legacy and always 0.
MODEL_SLOTS: tuple[str, ...] = (
    "back", "dpad_down", "dpad_left", "dpad_right", "dpad_up", "east", "guide", "left_shoulder",
    "left_thumb", "left_trigger", "north", "right_bottom", "right_left", "right_right", "right_shoulder",
    "right_thumb", "right_trigger", "right_up", "south", "start", "west",
)
MODEL_ACTION_DIM = 25
LEGACY_SLOTS: tuple[int, ...] = tuple(i for i, s in enumerate(MODEL_SLOTS) if s not in BUTTON_INDEX)
# Model slot of each of our buttons, in BUTTONS order.
BUTTON_SLOTS: np.ndarray = np.array([MODEL_SLOTS.index(b) for b in BUTTONS], dtype=np.int64)
J_LEFT_SLOTS = slice(21, 23)
J_RIGHT_SLOTS = slice(23, 25)


class GamepadError(AzoteError, ValueError):
    """An action that is not a valid gamepad state (unknown button, wrong shape, NaN, out of range)."""


def _as_stick(value: Any, name: str, clip: bool) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape[-1:] != (2,):
        raise GamepadError(f"{name}: expected (..., 2) stick values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GamepadError(f"{name}: stick values must be finite, got {arr.tolist()}")
    if np.any(np.abs(arr) > 1.0):
        if not clip:
            raise GamepadError(f"{name}: stick values must lie in [-1, 1], got {arr.tolist()} (pass clip=True to clip)")
        arr = np.clip(arr, -1.0, 1.0)
    return arr


def _as_buttons(value: Any, name: str = "buttons") -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape[-1:] != (NUM_BUTTONS,):
        raise GamepadError(f"{name}: expected (..., {NUM_BUTTONS}) button values, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5].tolist()
        raise GamepadError(f"{name}: button values must be 0 or 1, got {bad}")
    return arr.astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Gamepad:
    """One gamepad state. Construct with `Gamepad.make(...)` for validation and clipping."""

    buttons: np.ndarray  # [17] uint8
    j_left: np.ndarray  # [2] float32
    j_right: np.ndarray  # [2] float32

    @staticmethod
    def make(
        pressed: Iterable[str] = (),
        j_left: Sequence[float] = (0.0, 0.0),
        j_right: Sequence[float] = (0.0, 0.0),
        clip: bool = True,
    ) -> "Gamepad":
        """A gamepad with the named buttons pressed. Sticks outside [-1, 1] are clipped (or rejected if not `clip`)."""
        buttons = np.zeros(NUM_BUTTONS, dtype=np.uint8)
        for name in pressed:
            if name not in BUTTON_INDEX:
                raise GamepadError(f"unknown button {name!r}; buttons are {', '.join(BUTTONS)}")
            buttons[BUTTON_INDEX[name]] = 1
        return Gamepad(buttons, _as_stick(j_left, "j_left", clip), _as_stick(j_right, "j_right", clip))

    @staticmethod
    def neutral() -> "Gamepad":
        return Gamepad.make()

    @property
    def pressed(self) -> tuple[str, ...]:
        return tuple(BUTTONS[i] for i in np.flatnonzero(self.buttons))

    def is_pressed(self, name: str) -> bool:
        return bool(self.buttons[BUTTON_INDEX[name]])

    def is_neutral(self) -> bool:
        return not self.buttons.any() and not self.j_left.any() and not self.j_right.any()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Gamepad):
            return NotImplemented
        return (
            np.array_equal(self.buttons, other.buttons)
            and np.array_equal(self.j_left, other.j_left)
            and np.array_equal(self.j_right, other.j_right)
        )

    def __repr__(self) -> str:
        return f"Gamepad(pressed={list(self.pressed)}, j_left={self.j_left.tolist()}, j_right={self.j_right.tolist()})"

    # conversions ---------------------------------------------------------------------------------------
    def to_model_vector(self) -> np.ndarray:
        return buttons_sticks_to_model(self.buttons[None], self.j_left[None], self.j_right[None])[0]

    @staticmethod
    def from_model_vector(vec: Any) -> "Gamepad":
        return ActionChunk.from_model_vectors(np.asarray(vec)[None])[0]

    def to_row(self) -> dict[str, Any]:
        """A row of the dataset's `actions_raw.parquet` (17 int columns, then j_left/j_right as [x, y])."""
        row: dict[str, Any] = {name: int(v) for name, v in zip(BUTTONS, self.buttons)}
        row["j_left"] = [float(v) for v in self.j_left]
        row["j_right"] = [float(v) for v in self.j_right]
        return row

    @staticmethod
    def from_row(row: Mapping[str, Any], clip: bool = False) -> "Gamepad":
        missing = [c for c in (*BUTTONS, *STICKS) if c not in row]
        if missing:
            raise GamepadError(f"row lacks columns {missing}")
        buttons = _as_buttons([row[b] for b in BUTTONS])
        return Gamepad(buttons, _as_stick(row["j_left"], "j_left", clip), _as_stick(row["j_right"], "j_right", clip))

    def to_gym(self) -> dict[str, np.ndarray]:
        return {"buttons": self.buttons.astype(np.int8), "j_left": self.j_left.copy(), "j_right": self.j_right.copy()}

    @staticmethod
    def from_gym(action: Mapping[str, Any], clip: bool = True) -> "Gamepad":
        try:
            return Gamepad(
                _as_buttons(action["buttons"]),
                _as_stick(action["j_left"], "j_left", clip),
                _as_stick(action["j_right"], "j_right", clip),
            )
        except KeyError as exc:
            raise GamepadError(f"gym action needs keys buttons, j_left, j_right; missing {exc}") from None


def as_gamepad(action: Any) -> Gamepad:
    """Accepts a `Gamepad`, a Gymnasium dict action or a 25-dim model vector."""
    if isinstance(action, Gamepad):
        return action
    if isinstance(action, Mapping):
        return Gamepad.from_gym(action)
    arr = np.asarray(action)
    if arr.shape == (MODEL_ACTION_DIM,):
        return Gamepad.from_model_vector(arr)
    raise GamepadError(f"cannot read a gamepad action from {type(action).__name__} with shape {arr.shape}")


def buttons_sticks_to_model(buttons: np.ndarray, j_left: np.ndarray, j_right: np.ndarray) -> np.ndarray:
    """Arrays [..., 17], [..., 2], [..., 2] -> the released model's [..., 25] float32 vectors."""
    lead = buttons.shape[:-1]
    out = np.zeros((*lead, MODEL_ACTION_DIM), dtype=np.float32)
    out[..., BUTTON_SLOTS] = buttons
    out[..., J_LEFT_SLOTS] = (j_left + 1.0) / 2.0
    out[..., J_RIGHT_SLOTS] = (j_right + 1.0) / 2.0
    return out


@dataclass(frozen=True, eq=False)
class ActionChunk:
    """T consecutive gamepad states as arrays (a model's action chunk, or a dataset chunk's rows)."""

    buttons: np.ndarray  # [T, 17] uint8
    j_left: np.ndarray  # [T, 2] float32
    j_right: np.ndarray  # [T, 2] float32

    def __post_init__(self) -> None:
        n = len(self.buttons)
        if self.buttons.ndim != 2 or self.j_left.shape != (n, 2) or self.j_right.shape != (n, 2):
            raise GamepadError(
                f"ActionChunk needs buttons [T, 17], j_left [T, 2], j_right [T, 2]; got "
                f"{self.buttons.shape}, {self.j_left.shape}, {self.j_right.shape}"
            )

    @staticmethod
    def from_arrays(buttons: Any, j_left: Any, j_right: Any, clip: bool = True) -> "ActionChunk":
        return ActionChunk(_as_buttons(buttons), _as_stick(j_left, "j_left", clip), _as_stick(j_right, "j_right", clip))

    @staticmethod
    def empty() -> "ActionChunk":
        return ActionChunk.neutral(0)

    @staticmethod
    def neutral(length: int) -> "ActionChunk":
        return ActionChunk(
            np.zeros((length, NUM_BUTTONS), np.uint8), np.zeros((length, 2), np.float32), np.zeros((length, 2), np.float32)
        )

    @staticmethod
    def stack(actions: Sequence[Gamepad]) -> "ActionChunk":
        if not actions:
            return ActionChunk.empty()
        return ActionChunk(
            np.stack([a.buttons for a in actions]).astype(np.uint8),
            np.stack([a.j_left for a in actions]).astype(np.float32),
            np.stack([a.j_right for a in actions]).astype(np.float32),
        )

    @staticmethod
    def concat(chunks: Sequence["ActionChunk"]) -> "ActionChunk":
        if not chunks:
            return ActionChunk.empty()
        return ActionChunk(
            np.concatenate([c.buttons for c in chunks]),
            np.concatenate([c.j_left for c in chunks]),
            np.concatenate([c.j_right for c in chunks]),
        )

    def __len__(self) -> int:
        return len(self.buttons)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return ActionChunk(self.buttons[index], self.j_left[index], self.j_right[index])
        return Gamepad(self.buttons[index], self.j_left[index], self.j_right[index])

    def __iter__(self) -> Iterator[Gamepad]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActionChunk):
            return NotImplemented
        return (
            np.array_equal(self.buttons, other.buttons)
            and np.array_equal(self.j_left, other.j_left)
            and np.array_equal(self.j_right, other.j_right)
        )

    def __repr__(self) -> str:
        return f"ActionChunk(T={len(self)})"

    def nonzero_mask(self) -> np.ndarray:
        """[T] bool: rows with any pressed button or any non-zero stick value."""
        return self.buttons.any(axis=1) | self.j_left.any(axis=1) | self.j_right.any(axis=1)

    def to_model_vectors(self) -> np.ndarray:
        return buttons_sticks_to_model(self.buttons, self.j_left, self.j_right)

    @staticmethod
    def from_model_vectors(vectors: Any) -> "ActionChunk":
        """[T, 25] model outputs -> actions: buttons are `> 0.5`, sticks `clamp(2u - 1, -1, 1)`."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != MODEL_ACTION_DIM:
            raise GamepadError(f"expected model vectors [T, {MODEL_ACTION_DIM}], got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise GamepadError("model vectors contain NaN or infinity")
        buttons = (v[:, BUTTON_SLOTS] > 0.5).astype(np.uint8)
        j_left = np.clip(2.0 * v[:, J_LEFT_SLOTS] - 1.0, -1.0, 1.0).astype(np.float32)
        j_right = np.clip(2.0 * v[:, J_RIGHT_SLOTS] - 1.0, -1.0, 1.0).astype(np.float32)
        return ActionChunk(buttons, j_left, j_right)

    def to_columns(self) -> dict[str, Any]:
        """Columns of `actions_raw.parquet`: 17 int32 arrays, then j_left/j_right as [T, 2] float32."""
        cols: dict[str, Any] = {name: self.buttons[:, i].astype(np.int32) for i, name in enumerate(BUTTONS)}
        cols["j_left"] = self.j_left.astype(np.float32)
        cols["j_right"] = self.j_right.astype(np.float32)
        return cols

    @staticmethod
    def from_columns(columns: Mapping[str, Any], clip: bool = False) -> "ActionChunk":
        missing = [c for c in (*BUTTONS, *STICKS) if c not in columns]
        if missing:
            raise GamepadError(f"missing columns {missing}")
        buttons = np.stack([np.asarray(columns[b]) for b in BUTTONS], axis=-1)
        j_left = np.asarray(columns["j_left"], dtype=np.float32).reshape(-1, 2)
        j_right = np.asarray(columns["j_right"], dtype=np.float32).reshape(-1, 2)
        return ActionChunk.from_arrays(buttons.reshape(-1, NUM_BUTTONS), j_left, j_right, clip=clip)

    def to_rows(self) -> list[dict[str, Any]]:
        return [g.to_row() for g in self]

    @staticmethod
    def from_rows(rows: Sequence[Mapping[str, Any]], clip: bool = False) -> "ActionChunk":
        return ActionChunk.stack([Gamepad.from_row(r, clip=clip) for r in rows])


def gym_space(seed: int | None = None) -> Any:
    """The Gymnasium action space of every `GamepadEnv`: Dict(buttons=MultiBinary(17), j_left=Box, j_right=Box)."""
    from gymnasium import spaces

    return spaces.Dict(
        {
            "buttons": spaces.MultiBinary(NUM_BUTTONS),
            "j_left": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "j_right": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
        },
        seed=seed,
    )


def stick_direction(stick: np.ndarray, dead_zone: float = 0.3) -> tuple[int, int]:
    """(dx, dy) in {-1, 0, 1} of a stick past a dead zone on each axis (y negative = up)."""
    dx = 0 if abs(stick[0]) < dead_zone else (1 if stick[0] > 0 else -1)
    dy = 0 if abs(stick[1]) < dead_zone else (1 if stick[1] > 0 else -1)
    return dx, dy


def direction(action: Gamepad, dead_zone: float = 0.3) -> tuple[int, int]:
    """The direction the player asks for: the d-pad, or the left stick past the dead zone when the d-pad is idle."""
    b = action.buttons
    dx = int(b[BUTTON_INDEX["dpad_right"]]) - int(b[BUTTON_INDEX["dpad_left"]])
    dy = int(b[BUTTON_INDEX["dpad_down"]]) - int(b[BUTTON_INDEX["dpad_up"]])
    sx, sy = stick_direction(action.j_left, dead_zone)
    return (dx if dx else sx), (dy if dy else sy)
