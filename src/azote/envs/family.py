"""What a game family declares about itself, in its adapter module, with `registry.register_family`:

    register_family(Family(
        "nes",
        variables={"x", "lives", ...},                  # the info variables task conditions may use
        planning=Planning(MOVES, horizon=36, ...),      # how the planning expert searches (None: it cannot)
        search_moves=SearchMoves(MOVES, hold=8),        # what the novelty search tries
    ))

Everything here is plain data (and small functions of `info` or of the env): the packages that use it
(`experts`, `bench`) read it and build their own objects, so `envs` imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from azote.envs.base import GamepadEnv
from azote.gamepad import Gamepad

Info = dict[str, Any]

_DIRS = {
    "": (0.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0),
    "up-left": (-1.0, -1.0), "up-right": (1.0, -1.0), "down-left": (-1.0, 1.0), "down-right": (1.0, 1.0),
}


def joystick_candidates(fire: tuple[str, ...] = ("south",)) -> list[Gamepad]:
    """Every stick direction (and centre), with and without each fire button."""
    out = []
    for stick in _DIRS.values():
        out.append(Gamepad.make(j_left=stick))
        for button in fire:
            out.append(Gamepad.make([button], j_left=stick))
    return out


def distinct(env: GamepadEnv, candidates: list[Gamepad], allowed: set | None = None) -> list[Gamepad]:
    """One candidate per distinct native input (and only inputs the game reacts to, when `allowed` says so)."""
    seen, out = set(), []
    for c in candidates:
        native = env.map_action(c)
        key = native.tobytes() if hasattr(native, "tobytes") else native
        if key not in seen and (allowed is None or native in allowed):
            seen.add(key)
            out.append(c)
    return out


def lives_dropped(before: Info, after: Info) -> bool:
    """A life was lost: the `lives` variable went down."""
    return "lives" in before and after.get("lives", 0) < before["lives"]


@dataclass(frozen=True)
class Planning:
    """How the planning expert searches in a family's games (`azote.experts.profile_for` builds its
    `SearchProfile` from this): the candidate actions (a list, or a function of the env when they depend on the
    game), how long each is simulated, how often the search runs, what counts as progress and as dying."""

    candidates: Sequence[Gamepad] | Callable[[GamepadEnv], Sequence[Gamepad]]
    horizon: int = 24  # steps each candidate is simulated for
    decide_every: int = 4  # steps executed between two searches
    progress: Callable[[Info], float] | None = None  # a variable that grows as the player advances (Mario: x)
    progress_weight: float = 1.0
    lost_life: Callable[[Info, Info], bool] | None = None  # None: the game has no lives to lose
    name: str = "planner"

    def __post_init__(self) -> None:
        for name in ("horizon", "decide_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Planning {self.name!r}: {name} must be a positive whole number, got {value!r}")

    def for_env(self, env: GamepadEnv) -> Planning:
        """This planning with the candidates of `env`'s game worked out (a list, never empty)."""
        candidates = list(self.candidates(env) if callable(self.candidates) else self.candidates)
        if not candidates:
            raise ValueError(f"{env.game.id}: the {self.name} planning has no candidate actions")
        return replace(self, candidates=candidates)


@dataclass(frozen=True)
class SearchMoves:
    """The novelty search's moves (`azote bench solve`, for games the planning expert cannot solve) and how many
    steps each is held."""

    moves: tuple[Gamepad, ...]
    hold: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "moves", tuple(self.moves))
        if not self.moves or self.hold < 1:
            raise ValueError(f"SearchMoves needs at least one move and a hold of 1 or more, got {self!r}")


# The four stick directions and the two upward diagonals, each held 8 steps: the novelty search's moves for a
# family that declares none of its own.
STICK_SEARCH = SearchMoves(
    tuple(Gamepad.make(j_left=m) for m in ((0, -1), (0, 1), (-1, 0), (1, 0), (1, -1), (-1, -1))), hold=8)


@dataclass(frozen=True)
class Family:
    """Everything Azote knows about a game family beyond its games: registered once by its adapter module."""

    name: str
    # Variables the family reports in `info` besides frame, return and score (task conditions may use only
    # these); empty when they are not known before a game is opened (then any name is accepted).
    variables: frozenset[str] = frozenset()
    # How the planning expert searches: a `Planning`, a function of the env giving one (when it depends on the
    # game), or None for engines it cannot plan in.
    planning: Planning | Callable[[GamepadEnv], Planning] | None = None
    search_moves: SearchMoves = field(default=STICK_SEARCH)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"a family name is a non-empty word without '/', got {self.name!r}")
        if isinstance(self.variables, str):
            raise ValueError(f"family {self.name}: variables must be a set of names, got the string {self.variables!r}")
        object.__setattr__(self, "variables", frozenset(self.variables))

    def planning_for(self, env: GamepadEnv) -> Planning | None:
        """The planning of `env`'s game, candidates worked out; None when the family cannot be planned in."""
        planning = self.planning(env) if callable(self.planning) else self.planning
        return None if planning is None else planning.for_env(env)
