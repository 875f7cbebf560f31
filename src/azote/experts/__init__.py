"""Demonstrators that play well without learning, by searching over emulator snapshots; they make
demonstration data for training."""

from azote.experts.planner import PlanningExpert, SearchProfile
from azote.experts.profiles import profile_for


def expert_for(env, seed: int | None = None) -> PlanningExpert:  # type: ignore[no-untyped-def]
    """The planning expert with the search profile of the env's family."""
    return PlanningExpert(env, profile_for(env), seed=seed)


__all__ = ["PlanningExpert", "SearchProfile", "expert_for", "profile_for"]
