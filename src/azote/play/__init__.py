"""Playing games with an agent: the one episode loop, recording to datasets and videos, real time, keyboard and
mouse.

Episodes
    `play_episode(env, agent, max_steps, seed=, execute=)` yields every `Step` of one episode, lockstep: each
    chunk the agent returns runs whole, or its first `execute` actions before the agent sees a new frame.
    Recording (`record_episodes`), playing (`play`) and the benchmark (`azote.bench`) all run it.
Playing
    `play(env, agent, out, PlayOptions(...))`: clean and debug videos, actions.jsonl, summary.json; lockstep or real
    time (`RealtimeRunner`, `ActionSchedule`: the game runs on a wall clock, the policy plans in a background
    thread, overlapping chunks are cross-faded).
Recording
    `record_episodes(game, spec, out, seeds, max_steps)`: episodes written as a dataset, in one process or a pool.
Keyboard and mouse
    `KeyMouseProfile` (`load_profile("wasd")` or a JSON/YAML file), `KeyMouseMapper`: gamepad -> keys held,
    presses, releases and mouse motion.
"""

from azote.play.keymouse import (
    PROFILES,
    KeyMouseAction,
    KeyMouseMapper,
    KeyMouseProfile,
    ProfileError,
    StickToKeys,
    StickToMouse,
    load_profile,
)
from azote.play.loop import play_episode
from azote.play.player import PlayOptions, play
from azote.play.realtime import ActionSchedule, RealtimeRunner, RealtimeStats
from azote.play.recording import record_episodes
from azote.play.step import Step

__all__ = [
    "PROFILES", "ActionSchedule", "KeyMouseAction", "KeyMouseMapper", "KeyMouseProfile", "PlayOptions",
    "ProfileError", "RealtimeRunner", "RealtimeStats", "Step", "StickToKeys", "StickToMouse", "load_profile",
    "play", "play_episode", "record_episodes",
]
