import json

from azote.agents import make_agent
from azote.envs import make
from azote.policy import build_model, get_preset, save_pretrained


def test_a_checkpoint_trained_with_game_ids_acts_with_the_game_token(tmp_path):
    ckpt = tmp_path / "ckpt"
    save_pretrained(build_model(get_preset("tiny").replace(num_games=2)), ckpt)
    (ckpt / "games.json").write_text(json.dumps(["atari/Pong", "atari/Breakout"]))
    for game, expected in (("atari/Breakout", 2), ("atari/Pong", 1), ("atari/Freeway", 0)):
        env = make(game)
        try:
            agent = make_agent(str(ckpt), env, seed=0)
            assert agent.game_id == expected
            frame, _ = env.reset(seed=0)
            assert len(agent.act(frame)) == agent.horizon  # a Policy is the agent itself
        finally:
            env.close()
