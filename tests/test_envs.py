"""Every PyPI game family behind GamepadEnv: registry, determinism, mapping, info, snapshots."""

import gymnasium as gym
import numpy as np
import pytest

import azote.envs as envs
from azote.gamepad import Gamepad, direction

RIGHT = Gamepad.make(["dpad_right"])
STICK_RIGHT = Gamepad.make(j_left=(1.0, 0.0))
LEFT = Gamepad.make(j_left=(-1.0, 0.0))
NOOP = Gamepad.neutral()


def scripted(n: int, seed: int = 0) -> list[Gamepad]:
    rng = np.random.default_rng(seed)
    return [
        Gamepad.make([b for b in ("south", "west", "dpad_right", "right_trigger") if rng.random() < 0.3],
                     j_left=rng.uniform(-1, 1, 2), j_right=rng.uniform(-1, 1, 2))
        for _ in range(n)
    ]


def run(env, actions, seed=0):
    frame, info = env.reset(seed=seed)
    frames, infos = [frame], [info]
    for a in actions:
        frame, _, term, trunc, info = env.step(a)
        frames.append(frame)
        infos.append(info)
        if term or trunc:
            break
    return frames, infos


@pytest.fixture
def game(request):
    env = envs.make(request.param)
    yield env
    env.close()


# Two games of every family; NES and retro share one emulator per process, so each test closes its env.
TWO_PER_FAMILY = [
    "atari/Breakout", "atari/Pong", "doom/basic", "doom/freedoom2-MAP01", "nes/SuperMarioBros-1-1",
    "nes/SuperMarioBros-4-1", "procgen/coinrun", "procgen/maze", "retro/Airstriker-Genesis",
]


def test_registry_lists_every_family_and_gym_make_works():
    families = {g.family for g in envs.list_games()}
    assert {"atari", "doom", "nes", "procgen", "retro"} <= families
    assert len(envs.list_games("atari")) >= 100
    assert len(envs.list_games("procgen")) == 16
    assert {"doom/basic", "doom/defend_the_center", "doom/deadly_corridor", "doom/health_gathering",
            "doom/my_way_home", "doom/deathmatch"} <= {g.id for g in envs.list_games("doom")}
    env = gym.make("azote/atari.Breakout-v0")
    assert env.spec.id == "azote/atari.Breakout-v0" == envs.game_info("atari/Breakout").gym_id
    frame, _ = env.reset(seed=0)
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    assert env.action_space.contains(NOOP.to_gym())
    frame, *_ = env.step(env.action_space.sample())
    shown = env.render()  # the frame as a copy: drawing on it leaves the observation as it was
    assert np.array_equal(shown, frame) and not np.shares_memory(shown, frame)
    kept = frame.copy()
    shown[:] = 0
    assert np.array_equal(frame, kept)
    env.close()
    with pytest.warns(UserWarning, match="latest versioned"):  # today's unversioned id resolves to v0
        assert gym.make("azote/atari.Breakout").spec.id == "azote/atari.Breakout-v0"
    with pytest.raises(KeyError, match="unknown game"):
        envs.make("atari/NoSuchGame")
    # Gymnasium-legal ids (one namespace), parsed by Gymnasium's own parser: importing Azote patches nothing.
    from gymnasium.envs import registration
    assert registration.parse_env_id.__module__ == "gymnasium.envs.registration"
    assert all(registration.parse_env_id(g.gym_id)[0] == "azote" for g in envs.list_games())
    for alias in ("atari/Breakout", "azote/atari.Breakout-v0", "atari.Breakout", "azote/atari/Breakout-v0"):
        assert envs.game_info(alias).id == "atari/Breakout"


@pytest.mark.parametrize("game", TWO_PER_FAMILY, indirect=True)
def test_same_seed_and_actions_give_identical_frames(game):
    actions = scripted(60)
    a, _ = run(game, actions, seed=3)
    b, _ = run(game, actions, seed=3)
    assert len(a) == len(b) > 1
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    h, w = game.game.resolution
    assert a[-1].shape == (h, w, 3) and a[-1].dtype == np.uint8


@pytest.mark.parametrize("game", TWO_PER_FAMILY, indirect=True)
def test_snapshot_restores_the_exact_future(game):
    run(game, scripted(30, seed=1), seed=1)
    state = game.get_state()
    future = scripted(20, seed=2)
    a = [game.step(x)[0] for x in future]
    game.set_state(state)
    b = [game.step(x)[0] for x in future]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_atari_mapping_moves_the_paddle_and_fires():
    env = envs.make("atari/Breakout")
    assert env.map_action(Gamepad.make(["dpad_right", "south"])) == 11  # RIGHTFIRE
    assert env.map_action(Gamepad.make(["east"], j_left=(-0.9, -0.9))) == 15  # UPLEFTFIRE
    assert env.map_action(Gamepad.make(j_left=(0.2, 0.1))) == 0  # inside the dead zone
    _, infos = run(env, [RIGHT] * 30)
    right = int(infos[-1]["ram"][72])  # Breakout keeps the paddle's x in RAM[72]
    _, infos = run(env, [LEFT] * 30)
    assert int(infos[-1]["ram"][72]) < right
    _, infos = run(env, [Gamepad.make(["south"], j_left=(1, 0))] * 400)
    assert infos[-1]["lives"] < infos[0]["lives"] or infos[-1]["score"] > 0  # the ball was served and played
    env.close()


def test_doom_moves_turns_and_shoots():
    env = envs.make("doom/basic")
    _, infos = run(env, [Gamepad.make(j_left=(0, -1))] * 20)
    start, end = infos[0], infos[-1]
    assert np.hypot(end["x"] - start["x"], end["y"] - start["y"]) > 60  # walked forward
    _, infos = run(env, [Gamepad.make(j_right=(1, 0))] * 10)
    assert abs(infos[-1]["angle"] - infos[0]["angle"]) > 20
    back, left = env.map_action(Gamepad.make(["dpad_down"])), env.map_action(Gamepad.make(["dpad_left"]))
    assert back[0] == -25.0 and left[2] == -3.0  # d-pad back walks backwards, d-pad left turns left
    _, infos = run(env, [Gamepad.make(["right_trigger"]) if i % 8 < 4 else NOOP for i in range(40)])
    assert infos[-1]["ammo"] < infos[0]["ammo"]
    env.close()


def test_mario_right_moves_mario_right_and_info_tracks_the_game():
    env = envs.make("nes/SuperMarioBros-1-1")
    _, infos = run(env, [Gamepad.make(["west"], j_left=(1, 0))] * 100)
    assert infos[-1]["x"] > infos[0]["x"] + 100
    # the seed's no-op start (0-30 frames) has run the timer down by a tick or two at most
    assert infos[0]["world"] == 1 and infos[0]["stage"] == 1 and 397 <= infos[0]["time"] <= 400 - 1
    assert infos[-1]["time"] < infos[0]["time"]
    _, infos = run(env, [Gamepad.make(j_left=(-1, 0))] * 60)
    assert infos[-1]["x"] <= infos[0]["x"]
    env.close()


def test_a_second_emulator_runs_in_a_child_process_and_plays_the_same():
    # stable-retro's core allows one emulator per process: a second game open at once gets a child process
    from azote.envs._libretro import LibretroMachine, RemoteMachine

    moves = scripted(40, seed=4)
    a = envs.make("nes/SuperMarioBros-4-1")
    b = envs.make("retro/Airstriker-Genesis")
    assert isinstance(a._machine, LibretroMachine) and isinstance(b._machine, RemoteMachine)
    child = b._machine._proc
    remote, remote_infos = run(b, moves, seed=2)
    snapshot = b.get_state()
    frame, info = a.reset()
    assert info["world"] == 4 and info["stage"] == 1
    b.close()
    assert child.poll() is not None  # closing the game ends its emulator process
    a.close()
    c = envs.make("retro/Airstriker-Genesis")
    assert isinstance(c._machine, LibretroMachine)
    local, local_infos = run(c, moves, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(remote, local)) and remote_infos[-1] == local_infos[-1]
    assert np.array_equal(c.set_state(snapshot), local[-1])  # snapshots move between the two
    c.close()


CHECKED = ["atari/Pong", "doom/basic", "nes/SuperMarioBros-1-1", "procgen/coinrun", "retro/Airstriker-Genesis"]


@pytest.mark.parametrize("game_id", CHECKED)
def test_gymnasium_check_env_passes_for_every_family(game_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(envs.game_info(game_id).gym_id)
    try:
        check_env(env.unwrapped)  # it also makes a second env of the game while this one is open
    finally:
        env.close()


@pytest.mark.parametrize("game_id", ["atari/Pong", "nes/SuperMarioBros-1-1", "retro/Airstriker-Genesis"])
def test_seeds_pick_the_start_of_deterministic_games(game_id):
    env = envs.make(game_id)
    moves = scripted(150, seed=5)
    try:
        first, infos = run(env, moves, seed=1)
        again, _ = run(env, moves, seed=1)
        assert all(np.array_equal(x, y) for x, y in zip(first, again))  # one seed: the same episode
        starts = {run(env, [], seed=s)[1][0]["noops"] for s in range(8)}
        assert len(starts) >= 4 and max(starts) <= 30  # no-op starts drawn from the seed, at most noop_max
        other_seed = next(s for s in range(2, 10) if run(env, [], seed=s)[1][0]["noops"] != infos[0]["noops"])
        other, _ = run(env, moves, seed=other_seed)
        assert not all(np.array_equal(x, y) for x, y in zip(first, other))  # two seeds: two episodes
        assert env.reset(seed=9, options={"noops": 0})[1]["noops"] == 0
        fresh = envs.make(game_id) if game_id.startswith("atari") else None
        if fresh is not None:  # never seeded: the game's own start, as noops=0 gives it
            assert np.array_equal(fresh.reset()[0], env.reset(seed=0, options={"noops": 0})[0])
            assert fresh.reset()[1]["noops"] == 0
            fresh.close()
        with pytest.raises(ValueError, match="noops"):
            env.reset(seed=1, options={"noops": -1})
    finally:
        env.close()


def test_atari_sticky_actions_and_gymnasium_atari_wrappers():
    from gymnasium.wrappers import AtariPreprocessing

    env = AtariPreprocessing(gym.make("azote/atari.Pong-v0"), noop_max=10, frame_skip=4, screen_size=84)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84) and obs.dtype == np.uint8
    obs, *_ = env.step(NOOP.to_gym())
    assert env.unwrapped.get_action_meanings()[:2] == ["NOOP", "FIRE"]
    env.close()
    # sticky actions (ALE v5): with probability 0.25 the previous action repeats, so one seed differs from
    # the deterministic game under the same inputs
    moves = scripted(300, seed=6)
    plain, _ = run(envs.make("atari/Breakout"), moves, seed=1)
    sticky, _ = run(envs.make("atari/Breakout", repeat_action_probability=0.25), moves, seed=1)
    assert not all(np.array_equal(x, y) for x, y in zip(plain, sticky))
    assert all(np.array_equal(x, y) for x, y in zip(
        sticky, run(envs.make("atari/Breakout", repeat_action_probability=0.25), moves, seed=1)[0]))


def test_record_video_and_vector_envs(tmp_path):
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(gym.make("azote/atari.Pong-v0"), str(tmp_path), episode_trigger=lambda e: True)
    env.reset(seed=0)
    for _ in range(30):
        env.step(NOOP.to_gym())
    env.close()
    assert list(tmp_path.glob("*.mp4"))
    for mode in ("sync", "async"):
        vec = gym.make_vec("azote/nes.SuperMarioBros-1-1-v0", num_envs=2, vectorization_mode=mode)
        try:
            obs, infos = vec.reset(seed=[1, 2])
            assert obs.shape == (2, 224, 240, 3) and infos["noops"][0] != infos["noops"][1]
            obs, reward, terminated, truncated, infos = vec.step(vec.action_space.sample())
            assert obs.shape == (2, 224, 240, 3) and reward.shape == (2,)
        finally:
            vec.close()


def test_procgen_levels_follow_the_seed_and_coinrun_moves():
    env = envs.make("procgen/coinrun")
    f1, i1 = env.reset(seed=5)
    f2, _ = env.reset(seed=6)
    f3, i3 = env.reset(seed=5)
    assert i1["level"] == 5 and np.array_equal(f1, f3) and not np.array_equal(f1, f2)
    frames, _ = run(env, [STICK_RIGHT] * 20, seed=5)
    assert not np.array_equal(frames[0], frames[-1])  # the view scrolls with the agent
    assert env.map_action(Gamepad.make(["south"], j_left=(1, 0))) == 9  # an action key wins over moving
    env.close()


def test_retro_airstriker_fires_and_moves():
    env = envs.make("retro/Airstriker-Genesis")
    frames, infos = run(env, [Gamepad.make(["south"] if (i // 10) % 2 == 0 else [],
                                           j_left=(0.8 if (i // 60) % 2 else -0.8, 0)) for i in range(400)])
    assert infos[-1]["score"] > 0  # shots hit something
    assert {"lives", "score"} <= set(infos[-1])
    env.close()


# --- a family declared in one place --------------------------------------------------------------------------
class DotEnv(envs.GamepadEnv):
    """A tiny deterministic game for the family test: a white dot on a 16x16 frame, moved one pixel per step by
    the stick or d-pad; `info` reports its position."""

    def __init__(self, game_id: str, render_mode: str | None = "rgb_array", noop_max: int | None = None) -> None:
        super().__init__(envs.game_info(game_id), render_mode, noop_max)
        self._x, self._y = 2, 8

    def map_action(self, action: Gamepad) -> tuple[int, int]:
        return direction(action)

    def _observe(self) -> tuple[np.ndarray, dict]:
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[self._y, self._x] = 255
        return frame, {"x": self._x, "y": self._y}

    def _reset_game(self, seed, options):
        self._x, self._y = 2, 8
        return self._observe()

    def _step_game(self, action):
        dx, dy = self.map_action(action)
        self._x, self._y = min(15, max(0, self._x + dx)), min(15, max(0, self._y + dy))
        frame, info = self._observe()
        return frame, 0.0, False, False, info

    def get_state(self) -> bytes:
        return self._pack_state(bytes([self._x, self._y]))

    def set_state(self, state: bytes) -> np.ndarray:
        engine, _ = self._unpack_state(state)
        self._x, self._y = engine[0], engine[1]
        return self._frame


DOT_RIGHT = (Gamepad.make(j_left=(1, 0)), Gamepad.make(j_left=(0, 1)))


@pytest.fixture
def dot_family():
    """What the adapter module of a new family does at import: declare the family, register its games."""
    from azote.envs.family import distinct, joystick_candidates
    from azote.envs.registry import unregister_family

    family = envs.register_family(envs.Family(
        "dot",
        variables={"x", "y"},
        planning=envs.Planning(lambda env: distinct(env, joystick_candidates(fire=())), horizon=6, decide_every=2,
                               progress=lambda info: float(info["x"]), name="dot-runner",
                               lost_life=lambda before, after: after["y"] != 8),  # the dot must keep to its row
        search_moves=envs.SearchMoves(DOT_RIGHT, hold=3),
    ))
    envs.register_game(envs.GameInfo("dot/Runner", "dot", (16, 16), 30.0, 1, "2d-top", "a dot to move"),
                       f"{__name__}:DotEnv")
    yield family
    unregister_family("dot")
    assert "dot" not in {f.name for f in envs.list_families()} and "azote/dot.Runner-v0" not in gym.registry
    with pytest.raises(KeyError, match="unknown game"):
        envs.game_info("dot/Runner")


def test_a_family_registered_once_is_usable_everywhere(dot_family, tmp_path):
    from azote.bench.solutions import search_moves
    from azote.bench.tasks import TaskError, load_suite
    from azote.experts import expert_for, profile_for

    assert envs.get_family("dot") is dot_family and "dot/Runner" in {g.id for g in envs.list_games("dot")}
    env = envs.make("dot/Runner")
    assert isinstance(env, DotEnv)
    assert gym.make("azote/dot.Runner-v0").reset(seed=0)[1]["x"] == 2

    # the benchmark checks conditions against the declared variables
    suite = tmp_path / "dot.yaml"
    suite.write_text("tasks:\n- {id: dot-right, game: dot/Runner, category: navigation, description: move right,\n"
                     "   time_limit: 1, success: 'x - start.x >= 10 and y == 8'}\n")
    task = load_suite(suite).task("dot-right")
    success, _ = task.conditions()
    suite.write_text(suite.read_text().replace("y == 8", "kills > 0"))
    with pytest.raises(TaskError, match="unknown variables.*kills"):
        load_suite(suite)

    # the planning expert plans with the declared profile, and reaches the task's goal
    profile = profile_for(env)
    assert (profile.name, profile.horizon, profile.decide_every, len(profile.candidates)) == ("dot-runner", 6, 2, 9)
    assert profile.lost_life({"y": 8}, {"y": 9}) and not profile.lost_life({"y": 8}, {"y": 8})
    expert = expert_for(env, seed=0)
    _, start = env.reset(seed=0)
    info = start
    for _ in range(5):
        for a in expert.act(env.render()):
            _, _, _, _, info = env.step(a)
    assert success.evaluate(info, start), info

    # the novelty search uses the declared moves
    assert search_moves("dot") == (list(DOT_RIGHT), 3)
    env.close()


def test_a_native_game_that_cannot_run_here_is_listed_and_refused_in_one_line(monkeypatch):
    # registered whether installed or not (a suite naming it loads anywhere); making it says what to install
    import shutil as sh

    from azote.envs.native import GAMES

    assert {"native/neverball", "native/supertux"} <= {g.id for g in envs.list_games("native")}
    real = sh.which
    monkeypatch.setattr(sh, "which", lambda name, *a, **k: None if name == "supertux2" else real(name, *a, **k))
    assert GAMES["supertux"].command[0] == "supertux2"
    with pytest.raises(envs.GameUnavailable, match="supertux2.*not installed.*apt-get install"):
        envs.make("native/supertux")
