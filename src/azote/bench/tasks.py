"""Benchmark tasks: a game, a start state, a time limit and a success condition over the game's own variables.

A suite is one YAML file of tasks. Conditions are small expressions over the `info` variables the game reports
(`x >= 1200 and not life_lost`, `kills - start.kills >= 3`, `ram[72] < 40`), parsed once and evaluated without
`eval`: only names, numbers, comparisons, arithmetic, `and`/`or`/`not`, `start.<var>` (the value at the start)
and indexing are allowed, and every name must be a variable of the task's game family.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from azote.envs import VIEWS, game_info, get_family
from azote.errors import AzoteError, describe_validation_error
from azote.gamepad import Gamepad

CATEGORIES = ("combat", "navigation", "game-specific")
SUITES_DIR = Path(__file__).parent / "suites"
# Besides these, a condition may use the variables its game's family declares (`azote.envs.Family.variables`).
COMMON_VARIABLES = {"frame", "score", "step", "seconds"}  # `return` is a Python keyword: use score


class TaskError(AzoteError, ValueError):
    """A task that does not validate: names the suite file and the task."""


_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.USub: operator.neg, ast.Not: operator.not_,
}


class Condition:
    """A parsed condition; `evaluate(info, start)` gives a bool."""

    def __init__(self, text: str, allowed: set[str] | None = None) -> None:
        self.text = text
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"condition {text!r} is not an expression ({exc.msg})") from None
        self.names: set[str] = set()
        self._check(tree.body)
        if allowed is not None and allowed:
            unknown = self.names - allowed - COMMON_VARIABLES
            if unknown:
                raise ValueError(f"condition {text!r} uses unknown variables {sorted(unknown)}; "
                                 f"known: {sorted(allowed | COMMON_VARIABLES)}")
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp) or isinstance(node, ast.Compare):
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, (ast.cmpop, ast.boolop)):
                    self._check(child)
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            op = node.op
            if type(op) not in _OPS:
                raise ValueError(f"operator {type(op).__name__} is not allowed in {ast.unparse(node)!r}")
            for child in (node.left, node.right) if isinstance(node, ast.BinOp) else (node.operand,):
                self._check(child)
        elif isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id == "start"):
                raise ValueError("only start.<variable> attributes are allowed")
            self.names.add(node.attr)
        elif isinstance(node, ast.Subscript):
            self._check(node.value)
            self._check(node.slice)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, bool)):
                raise ValueError(f"constant {node.value!r} is not a number or a boolean")
        else:
            raise ValueError(f"{type(node).__name__} is not allowed in a condition")

    def evaluate(self, info: dict[str, Any], start: dict[str, Any]) -> bool:
        return bool(self._eval(self._tree, info, start))

    def _eval(self, node: ast.AST, info: dict[str, Any], start: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in info:
                raise KeyError(f"condition {self.text!r}: the game reported no variable {node.id!r}")
            return _plain(info[node.id])
        if isinstance(node, ast.Attribute):
            return _plain(start[node.attr])
        if isinstance(node, ast.Subscript):
            return _plain(self._eval(node.value, info, start)[int(self._eval(node.slice, info, start))])
        if isinstance(node, ast.UnaryOp):
            return _OPS[type(node.op)](self._eval(node.operand, info, start))
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](self._eval(node.left, info, start), self._eval(node.right, info, start))
        if isinstance(node, ast.BoolOp):
            values = (self._eval(v, info, start) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, info, start)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, info, start)
                if not _OPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"cannot evaluate {type(node).__name__}")


def _plain(value: Any) -> Any:
    """Numpy scalars become Python numbers, so `ram[14] - ram[13]` is -1 and not 255 (uint8 would wrap)."""
    return value.item() if isinstance(value, np.generic) else value


class Hold(BaseModel):
    """A scripted stretch of input: press these buttons and hold the sticks for `frames` steps."""

    model_config = ConfigDict(extra="forbid")
    press: list[str] = Field(default_factory=list)
    j_left: tuple[float, float] = (0.0, 0.0)
    j_right: tuple[float, float] = (0.0, 0.0)
    frames: int = Field(gt=0)

    def gamepad(self) -> Gamepad:
        return Gamepad.make(self.press, self.j_left, self.j_right, clip=False)


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    game: str
    category: Literal["combat", "navigation", "game-specific"]
    view: Literal[VIEWS] | None = None  # the simulator's views (envs.VIEWS), not a copy
    description: str
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # reset options (a Procgen level, ...)
    prefix: list[Hold] = Field(default_factory=list)  # scripted opening, part of the start state
    time_limit: float = Field(gt=0, description="seconds of game time")
    mode: Literal["reach", "survive"] = "reach"
    success: str | None = None  # reach: success as soon as true
    failure: str | None = None  # fails as soon as true (both modes)
    game_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("game")
    @classmethod
    def _known_game(cls, v: str) -> str:
        game_info(v)  # raises KeyError naming close matches
        return v

    def conditions(self) -> tuple[Condition | None, Condition | None]:
        allowed = set(get_family(game_info(self.game).family).variables)
        return (Condition(self.success, allowed) if self.success else None,
                Condition(self.failure, allowed) if self.failure else None)

    def fingerprint(self) -> str:
        """A hash of what decides this task's episodes (game, start state, limits, conditions); its wording and
        grouping (description, category, view) are left out, so rewording a task keeps its results."""
        defining = self.model_dump(mode="json", exclude={"description", "category", "view"})
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def fps(self) -> float:
        return game_info(self.game).fps

    @property
    def max_steps(self) -> int:
        return int(round(self.time_limit * self.fps))

    @property
    def game_view(self) -> str:
        return self.view or game_info(self.game).view


@dataclass
class Suite:
    name: str
    path: Path
    tasks: list[Task]
    heldout: list[str] = field(default_factory=list)  # games kept out of pre-training
    # Bumped by hand when what the tasks measure changes without their text changing (an adapter's variables),
    # so that results of the old version are not taken for results of the new one.
    version: str = "1"

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(f"suite {self.name} has no task {task_id!r}")

    def games(self) -> list[str]:
        return sorted({t.game for t in self.tasks})


MAX_SUITE_BYTES = 1 << 20  # the standard suite is ~15 kB


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (`standard`, shipped with Azote) or by path to a YAML file; every task is validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in sorted(SUITES_DIR.glob("*.yaml")))
        raise TaskError(f"no suite {name_or_path!r} (shipped suites: {shipped})")
    size = path.stat().st_size
    if size > MAX_SUITE_BYTES:
        raise TaskError(f"{path}: {size} bytes, more than {MAX_SUITE_BYTES} for a suite")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:
        raise TaskError(f"{path}: not valid YAML (nested too deeply)") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list):
        raise TaskError(f"{path}: expected a mapping with a list under 'tasks'")
    tasks, seen = [], set()
    for i, item in enumerate(raw["tasks"]):
        label = item.get("id", f"#{i}") if isinstance(item, dict) else f"#{i}"
        try:
            task = Task.model_validate(item)
            task.conditions()
            if task.mode == "reach" and not task.success:
                raise ValueError("a 'reach' task needs a success condition")
        except ValidationError as exc:
            raise TaskError(describe_validation_error(exc, f"{path}: task {label}", "task")) from None
        except (ValueError, KeyError) as exc:
            why = str(exc.args[0] if exc.args else exc)
            raise TaskError(f"{path}: task {label}: {why[:300]}{'...' if len(why) > 300 else ''}") from None
        except (RecursionError, MemoryError):
            raise TaskError(f"{path}: task {label}: a condition nested too deeply") from None
        if task.id in seen:
            raise TaskError(f"{path}: task {label}: duplicate id")
        seen.add(task.id)
        tasks.append(task)
    heldout = list(raw.get("heldout", []))
    for g in heldout:
        try:
            game_info(g)
        except KeyError as exc:
            raise TaskError(f"{path}: heldout: {exc.args[0]}") from None
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).strip():
        raise TaskError(f"{path}: version: expected a number or a short text, got {version!r}")
    return Suite(str(raw.get("name", path.stem)), path, tasks, heldout, str(version).strip())
