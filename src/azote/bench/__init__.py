"""The benchmark: tasks (game + start state + time limit + success condition over the game's own variables),
suites, a parallel resumable runner and reports."""

from azote.agents import ScriptedAgent
from azote.bench.runner import run_episode, run_suite, start
from azote.bench.tasks import CATEGORIES, VIEWS, Condition, Suite, Task, TaskError, load_suite

__all__ = ["CATEGORIES", "VIEWS", "Condition", "ScriptedAgent", "Suite", "Task", "TaskError", "load_suite",
           "run_episode", "run_suite", "start"]
