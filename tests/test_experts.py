"""The planning expert: it plays better than random, its chunks replay what the search saw, and it refuses
games it cannot plan in."""

import numpy as np
import pytest

import azote.envs as envs
from azote.agents import RandomAgent
from azote.experts import expert_for
from azote.play.loop import play_episode


def episode_return(env, agent, steps, seed=0):
    total, info = 0.0, {}
    for step in play_episode(env, agent, steps, seed=seed):
        total += step.reward
        info = step.info
    return total, info


def test_expert_beats_random_at_mario():
    env = envs.make("nes/SuperMarioBros-1-1")
    try:
        _, rinfo = episode_return(env, RandomAgent(seed=0), 300)
        expert = expert_for(env, seed=0)
        _, einfo = episode_return(env, expert, 300)
        assert einfo["x"] > rinfo["x"] + 200 and not einfo["life_lost"]
        assert expert.searched_steps > 300  # it really searched
    finally:
        env.close()


def test_executing_the_chunk_reproduces_the_search():
    env = envs.make("atari/Breakout")
    expert = expert_for(env, seed=1)
    env.reset(seed=1)
    expert.reset(1)
    for _ in range(10):  # some play first
        for a in expert.act(env.render()):
            env.step(a)
    snapshot = env.get_state()
    chunk = expert.act(env.render())
    after_search = env.render().copy()
    env.set_state(snapshot)
    assert np.array_equal(env.render(), after_search)  # act() left the game where it found it
    a = [env.step(x)[0] for x in chunk]
    env.set_state(snapshot)
    b = [env.step(x)[0] for x in chunk]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_expert_needs_a_family_with_snapshots():
    env = envs.make("doom/basic")
    with pytest.raises(ValueError, match="no planning profile"):
        expert_for(env)
    env.close()
