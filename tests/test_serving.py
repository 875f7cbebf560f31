"""Serving and playing: the wire format, the server under hostile input, batching, the client's timeouts and
reconnection, real-time play with blended chunks, keyboard/mouse profiles, and a game played end to end through
`azote serve` with a tiny random-weight checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
import torch
import zmq
from typer.testing import CliRunner

from azote.cli.main import app
from azote.dataset import probe
from azote.gamepad import BUTTON_INDEX, ActionChunk, Gamepad
from azote.play import (
    ActionSchedule,
    KeyMouseMapper,
    KeyMouseProfile,
    ProfileError,
    RealtimeRunner,
    StickToKeys,
    StickToMouse,
    load_profile,
)
from azote.policy import Policy, build_model, get_preset, save_pretrained
from azote.serving import (
    Limits,
    PolicyServer,
    ProtocolError,
    RemotePolicy,
    ServeClient,
    ServeError,
    ServeTimeout,
    decode_array,
    encode_array,
)
from azote.serving.protocol import pack, unpack

runner = CliRunner()
TOKEN = "s3cret-token"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model is fastest on one thread, and this machine may be shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_pretrained(build_model("tiny"), path)
    return path


@pytest.fixture(scope="module")
def policy(checkpoint: Path) -> Policy:
    return Policy.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def server(policy: Policy) -> Iterator[PolicyServer]:
    with PolicyServer(policy, port=0) as srv:
        yield srv


def frame(seed: int, h: int = 210, w: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- the wire format ----------------------------------------------------------------------------------------
def test_arrays_round_trip_and_are_checked() -> None:
    for arr in (frame(0, 5, 7), np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((0, 3), np.int64)):
        back = decode_array(unpack(pack({"a": encode_array(arr)}), 1 << 20)["a"], "a")
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
    good = encode_array(np.zeros((2, 3), np.uint8))
    bad = [
        ({**good, "dtype": "object"}, "not allowed"),
        ({**good, "dtype": "<U4"}, "not allowed"),
        ({**good, "shape": [2, 4]}, "needs 8 bytes, got 6"),
        ({**good, "shape": [-2, -3]}, "non-negative"),
        ({**good, "shape": [2.0, 3]}, "non-negative ints"),
        ({**good, "shape": [1] * 7}, "at most 6"),
        ({**good, "data": "abcdef"}, "must be bytes"),
        ({**good, "extra": 1}, "exactly the keys"),
        ([1, 2, 3], "array map"),
    ]
    for obj, message in bad:
        with pytest.raises(ProtocolError, match=message):
            decode_array(obj, "x")
    with pytest.raises(ProtocolError) as exc:  # an absurd shape is refused by arithmetic, before any allocation
        decode_array({"dtype": "uint8", "shape": [10**9, 10**9, 3], "data": b"x"}, "x", max_bytes=1 << 20)
    assert exc.value.code == "too_large"
    with pytest.raises(ProtocolError, match="uint8"):
        decode_array(encode_array(np.zeros(3, np.float32)), "frames", ("uint8",))


def test_unpack_refuses_pickle_ext_types_and_nesting() -> None:
    for data in (pickle.dumps({"type": "ping"}), pickle.dumps([1, 2], protocol=0), b"\x91" * 10_000 + b"\xc0",
                 msgpack.packb(msgpack.ExtType(5, b"abc")), msgpack.packb([1, 2]), b"", b"\xc1"):
        with pytest.raises(ProtocolError):
            unpack(data, 1 << 20)
    with pytest.raises(ProtocolError) as exc:
        unpack(b"\x80" * 100, 10)
    assert exc.value.code == "too_large"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Limits(max_batch=0)
    assert Limits(max_message_bytes=1 << 20).hard_message_bytes == 2 << 20


# --- the server ---------------------------------------------------------------------------------------------
def test_predictions_equal_the_in_process_policy(server: PolicyServer, policy: Policy) -> None:
    with ServeClient(server.address, timeout=30) as client:
        info = client.info()
        assert info["model"]["horizon"] == 18 and info["model"]["action_dim"] == 25 and info["protocol"] == 1
        assert info["limits"]["max_batch"] == 16 and not info["token_required"]
        f = frame(1)
        one = client.predict(f, seed=[7])
        assert one.single and one.actions.shape == (1, 18, 25)
        np.testing.assert_array_equal(one.actions[0], policy.predict([f], seed=7)[0])
        assert one.chunks[0] == policy.act(f, seed=7)  # the named gamepad fields decode to the same chunk
        batch = np.stack([frame(2), frame(3)])
        two = client.predict(batch, seed=11)  # one seed for the batch: as Policy.predict(batch, seed=11)
        assert not two.single and len(two.chunks) == 2
        np.testing.assert_array_equal(two.actions, policy.predict(batch, seed=11))
        mixed = client.predict([frame(4, 64, 48), frame(5, 300, 400)], seed=[1, 2])  # frames of any sizes
        # (a batch of two computes with other kernels than one frame alone: equal up to float rounding)
        np.testing.assert_allclose(mixed.actions[1], policy.predict([frame(5, 300, 400)], seed=2)[0], atol=1e-4)
        assert client.ping() < 5.0
        client.reset(3)


def test_remote_policy_is_an_agent_that_acts_like_the_in_process_one(server: PolicyServer, checkpoint: Path) -> None:
    from azote.agents import Agent

    remote, local = RemotePolicy(server.address, seed=5, timeout=30), Policy.from_pretrained(checkpoint)
    assert isinstance(remote, Agent) and isinstance(local, Agent)
    remote.reset(9)
    local.reset(9)
    for i in range(2):
        assert remote.act(frame(30 + i)) == local.act(frame(30 + i))
    remote.close()


def test_game_names_map_to_the_checkpoints_game_tokens() -> None:
    torch.manual_seed(1)
    model = build_model(get_preset("tiny").replace(num_games=2))
    pol = Policy(model)
    srv = PolicyServer(pol, port=0, games=["atari/Pong", "atari/Breakout"])
    f = frame(6)
    job = srv.handle(pack({"type": "predict", "frames": encode_array(f), "seed": [5], "game": "atari/Breakout"}))
    reply = srv.predict_jobs([job])[0]  # type: ignore[list-item]
    expected = pol.predict([f], seed=5, game_ids=[2])
    np.testing.assert_array_equal(decode_array(reply["actions"], "actions"), expected)
    assert srv.handle(pack({"type": "predict", "frames": encode_array(f), "game": "atari/Nope"})).game_ids == [0]  # type: ignore[union-attr]
    bad = srv.handle(pack({"type": "predict", "frames": encode_array(f), "game_id": 3}))
    assert isinstance(bad, dict) and bad["error"]["code"] == "bad_request"


@pytest.mark.parametrize("guidance", [{"history_guidance": 2.5}, {"game_guidance": 1.5}])
def test_the_server_guides_and_masks_missing_frames_as_the_policy_does(guidance: dict) -> None:
    """A served policy samples with the policy's own guidance and context mask (not the older guidance weight)."""
    torch.manual_seed(1)
    model = build_model(get_preset("tiny").replace(num_frames=2, num_games=2))
    pol = Policy(model, **guidance)
    srv = PolicyServer(pol, port=0)
    for obs in (np.stack([frame(6), frame(7)]), frame(8)[None]):  # a full context, and the first frame only
        job = srv.handle(pack({"type": "predict", "frames": encode_array(obs[None]), "seed": [5], "game_id": 1}))
        reply = srv.predict_jobs([job])[0]  # type: ignore[list-item]
        np.testing.assert_array_equal(decode_array(reply["actions"], "actions"), pol.predict([obs], seed=5, game_ids=[1]))


def hostile_messages(valid: dict[str, Any], marker: Path) -> list[list[bytes]]:
    """Over a thousand malformed or hostile messages (each a list of frames after the DEALER's delimiter)."""
    rng = np.random.default_rng(0)
    good = pack(valid)
    msgs: list[bytes | list[bytes]] = []
    msgs += [good[: int(n)] for n in rng.integers(0, len(good) - 1, 500)]  # truncated
    msgs += [rng.bytes(int(n)) for n in rng.integers(1, 300, 300)]  # noise
    for i in rng.integers(0, 60, 100):  # a byte of the header (type, token, dtype, shape) flipped
        flipped = bytearray(good)
        flipped[int(i)] ^= 0xFF
        msgs.append(bytes(flipped))

    class Evil:  # unpickling this would create the marker file
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))

    evil = [pickle.dumps(Evil(), protocol=p) for p in range(6)]
    msgs += evil
    msgs += [pack({"type": "predict", "frames": {"dtype": "uint8", "shape": [len(e)], "data": e}}) for e in evil]
    msgs += [pack({"type": "ping", "token": TOKEN, "id": msgpack.ExtType(1, evil[2])})]
    msgs += [msgpack.packb(v) for v in (1, -5, 2.5, None, True, "predict", b"\x80\x04", [valid], [])]
    msgs += [b"\x91" * 50_000 + b"\xc0", msgpack.packb({f"k{i}": i for i in range(5000)})]
    frame_arr = encode_array(frame(9, 20, 20))
    hostile_values = [None, True, -1, 2**64 - 1, 1.5, "x" * 5000, b"\x00" * 10, [], {}, [[[[]]]],
                      {"dtype": "O", "shape": [1], "data": b"x"}, {"dtype": "uint8", "shape": [10**6, 10**6, 3], "data": b""},
                      msgpack.Timestamp(0, 0), msgpack.ExtType(3, b"zz")]
    for key in ("type", "frames", "seed", "game", "game_id", "id", "v", "token", "unknown"):
        for value in hostile_values:
            msgs.append(pack({**valid, key: value}))
    for key in ("dtype", "shape", "data"):  # the same values inside the array map
        for value in hostile_values:
            msgs.append(pack({**valid, "frames": {**valid["frames"], key: value}}))
    arrays = [
        {"dtype": "uint8", "shape": [5000, 10, 3], "data": bytes(150_000)},  # a side above the limit
        {"dtype": "uint8", "shape": [1, 1, 3], "data": bytes(3)},  # too small
        {"dtype": "uint8", "shape": [10, 10, 4], "data": bytes(400)},  # not RGB
        {"dtype": "uint8", "shape": [10, 30], "data": bytes(300)},
        {"dtype": "uint8", "shape": [0, 10, 10, 3], "data": b""},  # an empty batch
        {"dtype": "uint8", "shape": [17, 4, 4, 3], "data": bytes(17 * 48)},  # over max_batch
        {"dtype": "float32", "shape": [4, 4, 3], "data": bytes(192)},
        {"dtype": "uint8", "shape": [1, 2, 4, 4, 3], "data": bytes(96)},
        {"dtype": "uint8", "shape": [2**31, 2**31, 3], "data": bytes(12)},
        {"dtype": "float128", "shape": [1], "data": bytes(16)},
        {"dtype": "complex64", "shape": [1], "data": bytes(8)},
    ]
    msgs += [pack({**valid, "frames": a}) for a in arrays]
    msgs += [pack({**valid, "frames": [frame_arr] * 17}), pack({**valid, "frames": []}),
             pack({**valid, "frames": [frame_arr, 5]})]
    msgs += [pack({**valid, "seed": s}) for s in (-1, 2**63, "7", 1.0, [1, 2], [[1]], [True])]
    msgs += [pack({k: v for k, v in valid.items() if k != "token"}), pack({**valid, "token": "wrong"}),
             pack({**valid, "token": TOKEN + "x"}), pack({**valid, "v": 2}), pack({**valid, "type": "PREDICT"})]
    msgs += [pack({**valid, "frames": {**frame_arr, "data": frame_arr["data"][:-1]}})]
    msgs += [bytes(1_500_000)] * 3  # above the 1 MiB limit, below the hard one: a too_large reply
    out = [m if isinstance(m, list) else [m] for m in msgs]
    out += [[good, good, good], [b"", good], [b""]]  # several body frames, stray delimiters
    return out


def test_fuzz_the_server_survives_hostile_input_and_still_answers(policy: Policy, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    limits = Limits(max_message_bytes=1 << 20, max_batch=16)
    with PolicyServer(policy, port=0, token=TOKEN, limits=limits) as srv:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(srv.address)
        valid = {"type": "predict", "token": TOKEN, "frames": encode_array(frame(8, 24, 32)), "seed": [3]}
        messages = hostile_messages(valid, marker)
        assert len(messages) >= 1000
        replies: list[dict[str, Any]] = []
        for start in range(0, len(messages), 100):  # in slices, so no queue reaches its high-water mark
            part = messages[start:start + 100]
            for body in part:
                sock.send_multipart([b"", *body])
            for _ in part:
                assert sock.poll(30_000), f"no reply after {len(replies)} replies"
                frames = sock.recv_multipart()
                assert frames[0] == b"" and len(frames) == 2
                replies.append(msgpack.unpackb(frames[1]))
        errors = [r for r in replies if r["ok"] is False]
        assert len(replies) == len(messages) and len(errors) >= 1000
        codes = {r["error"]["code"] for r in errors}
        assert {"bad_message", "bad_request", "bad_array", "too_large", "unauthorized", "unsupported"} <= codes
        assert all(isinstance(r["error"]["message"], str) and r["error"]["message"] for r in errors)
        assert not marker.exists(), "a pickle payload was executed"

        # above the hard limit the peer is dropped unread; the server goes on
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(srv.address)
        big.send_multipart([b"", bytes(3 << 20)])
        assert not big.poll(300)
        big.close()
        sock.close()
        ctx.term()

        with ServeClient(srv.address, token=TOKEN, timeout=30) as client:
            answer = client.predict(frame(8, 24, 32), seed=[3])
            np.testing.assert_array_equal(answer.actions[0], policy.predict([frame(8, 24, 32)], seed=3)[0])
            assert client.info()["stats"]["error:unauthorized"] >= 3
        with pytest.raises(ServeError, match="unauthorized"):
            with ServeClient(srv.address, token="nope", timeout=30) as client:
                client.ping()


def test_concurrent_clients_share_one_forward_pass(policy: Policy) -> None:
    with PolicyServer(policy, port=0, batch_window_s=0.5) as srv:
        ctx = zmq.Context()
        socks = []
        for i in range(4):
            s = ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(srv.address)
            socks.append(s)
        with ServeClient(srv.address) as client:
            assert client.ping() < 5
        for i, s in enumerate(socks):
            s.send(pack({"type": "predict", "frames": encode_array(frame(20 + i)), "seed": [100 + i]}))
        replies = []
        for s in socks:
            assert s.poll(60_000)
            replies.append(unpack(s.recv(), 1 << 24))
            s.close()
        ctx.term()
    assert [r["batch_size"] for r in replies] == [4, 4, 4, 4]
    # batched or not, each client gets its own seeded chunk (float32 kernels differ with the batch size: on AMX
    # CPUs by up to 2e-4 after the denoising steps; another client's seed differs by ~4, its frame by ~0.05)
    for i, r in enumerate(replies):
        np.testing.assert_allclose(decode_array(r["actions"], "a")[0], policy.predict([frame(20 + i)], seed=100 + i)[0],
                                   atol=2e-3)


def test_client_times_out_then_reconnects_on_a_fresh_socket() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    seen: list[int] = []
    stop = threading.Event()

    def stalls_once() -> None:  # swallows the first request, answers the others
        while not stop.is_set():
            if not router.poll(50):
                continue
            ident, empty, body = router.recv_multipart()
            msg = unpack(body, 1 << 20)
            seen.append(msg["id"])
            if len(seen) > 1:
                router.send_multipart([ident, empty, pack({"ok": True, "type": "pong", "id": msg["id"]})])

    thread = threading.Thread(target=stalls_once, daemon=True)
    thread.start()
    try:
        client = ServeClient(f"tcp://127.0.0.1:{port}", timeout=0.4, retries=1)
        assert client.ping() > 0.3
        assert client.reconnects == 1 and len(seen) == 2
        assert client.ping() < 0.4  # the fresh socket goes on working
        client.close()
    finally:
        stop.set()
        thread.join(5)
        router.close()
        ctx.term()
    silent = ServeClient(f"tcp://127.0.0.1:{port}", timeout=0.2, retries=2)
    t0 = time.perf_counter()
    with pytest.raises(ServeTimeout, match="3 tries"):
        silent.ping()
    assert silent.reconnects == 3 and time.perf_counter() - t0 < 3
    silent.close()


def test_bad_addresses_and_public_binds_fail_clearly(policy: Policy) -> None:
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        ServeClient("localhost:5555")
    with pytest.raises(ValueError, match="token"):
        PolicyServer(policy, host="0.0.0.0", port=0)
    srv = PolicyServer(policy, host="0.0.0.0", port=0, token=TOKEN)  # allowed with a token (not started)
    assert srv.token == TOKEN



def test_a_bad_token_file_is_one_line_naming_the_file(checkpoint: Path, tmp_path: Path) -> None:
    # issue 16 item 8: the error raised inside the server's try block was reported a second time as "error: 2"
    (tmp_path / "empty").write_text("  \n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "huge").write_bytes(b"x" * 100_000)
    for name, reason in (("empty", "empty"), ("missing", "No such file"), ("binary", "UTF-8"), ("huge", "bytes")):
        result = runner.invoke(app, ["serve", str(checkpoint), "--port", "0", "--token-file", str(tmp_path / name)])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: ") and str(tmp_path / name) in lines[0] and reason in lines[0], lines

# --- real time ----------------------------------------------------------------------------------------------
def stick_chunk(value: float, n: int = 10, button: str | None = None) -> ActionChunk:
    buttons = np.zeros((n, 17), np.uint8)
    if button:
        buttons[:, BUTTON_INDEX[button]] = 1
    return ActionChunk.from_arrays(buttons, np.full((n, 2), value, np.float32), np.zeros((n, 2), np.float32))


def test_schedule_drops_stale_actions_and_cross_fades_chunks() -> None:
    s = ActionSchedule(blend=3)
    s.merge(stick_chunk(-1.0, button="south"), first_step=0)
    assert s.pop(0).j_left[0] == -1.0 and s.pop(1).is_pressed("south")
    s.merge(stick_chunk(1.0, button="east"), first_step=0)  # planned from step 0's frame, arriving at step 2
    assert s.stale_dropped == 2
    got = [s.pop(step) for step in range(2, 10)]
    xs = [round(float(g.j_left[0]), 3) for g in got]
    assert xs == [-0.5, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]  # a ramp, not a jump
    assert [g.is_pressed("east") for g in got[:3]] == [False, True, True]  # buttons follow from weight 0.5
    assert s.blended == 3 and s.pop(10) is None and s.pop(12) is None  # nothing planned that far
    s.merge(stick_chunk(0.3, n=4), first_step=20)  # a chunk for the future leaves a gap before it
    assert s.pop(13) is None and not s.covered(19) and s.covered(20)


class SlowAgent:
    """A fake policy with a fixed latency: chunk i holds the left stick at a value that encodes i."""

    name = "slow"

    def __init__(self, latency: float) -> None:
        self.latency, self.calls = latency, 0

    def reset(self, seed: int | None = None) -> None:
        self.calls = 0

    def act(self, frame: np.ndarray) -> ActionChunk:
        time.sleep(self.latency)
        self.calls += 1
        return stick_chunk(1.0 if self.calls % 2 else -1.0, n=12)


def test_realtime_runs_at_the_games_pace_with_a_slow_policy() -> None:
    from azote.envs import make

    env = make("atari/Pong")
    try:
        with RealtimeRunner(env, SlowAgent(0.05), fps=60, blend=4) as rt:
            steps = list(rt.run_episode(90, seed=0))
        stats = rt.stats.as_dict()
    finally:
        env.close()
    assert len(steps) == 90
    assert 50 <= stats["achieved_actions_per_second"] <= 61, stats
    assert stats["chunks_merged"] >= 5 and stats["policy_requests"] >= stats["chunks_merged"]
    assert stats["starved_steps"] < 15 and stats["blended_steps"] > 0 and stats["latency_steps_mean"] >= 2
    xs = np.array([s.action.j_left[0] for s in steps[stats["starved_steps"]:]])
    assert np.abs(np.diff(xs)).max() < 1.0  # chunks alternate -1 / +1 (a jump of 2) but fade over 4 steps


# --- keyboard and mouse -------------------------------------------------------------------------------------
def test_wasd_profile_maps_sticks_buttons_and_mouse() -> None:
    mapper = KeyMouseMapper(load_profile("wasd"))
    a = mapper.step(Gamepad.make(["south", "right_trigger"], j_left=(0.9, -0.2), j_right=(1.0, 0.0)))
    assert a.held == ("d", "mouse1", "space") and a.pressed == a.held and a.mouse == (16, 0)
    b = mapper.step(Gamepad.make([], j_left=(-0.5, -0.5), j_right=(0.05, 0.05)))  # right stick in its dead zone
    assert b.held == ("a", "w") and set(b.released) == {"d", "mouse1", "space"} and b.mouse == (0, 0)
    c = mapper.step(Gamepad.make([], j_right=(0.0, -0.55)))
    assert c.mouse == (0, -8) and c.released == ("a", "w")
    chunk = mapper.map_chunk(ActionChunk.stack([Gamepad.make(["dpad_up"])] * 3))
    assert [x.pressed for x in chunk] == [("1",), (), ()]


def test_profiles_load_from_files_and_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "shooter.yaml"
    path.write_text("buttons: {south: space, right_trigger: mouse1}\nleft_stick: {keys: [Up, Down, Left, Right], "
                    "dead_zone: 0.5}\nright_stick: {mouse: 8}\n")
    p = load_profile(str(path))
    assert p.name == "shooter" and p.left_stick == StickToKeys("Up", "Down", "Left", "Right", 0.5)
    assert p.right_stick == StickToMouse(8.0, 0.1)
    assert KeyMouseMapper(p).step(Gamepad.make(j_left=(0.4, 0.0))).held == ()  # inside the wider dead zone
    (tmp_path / "bad.json").write_text(json.dumps({"buttons": {"turbo": "x"}}))
    with pytest.raises(ProfileError, match="turbo"):
        load_profile(str(tmp_path / "bad.json"))
    (tmp_path / "bad2.json").write_text(json.dumps({"left_stick": {"keys": ["w"], "mouse": 3}}))
    with pytest.raises(ProfileError, match="left_stick"):
        load_profile(str(tmp_path / "bad2.json"))
    with pytest.raises(ProfileError, match="wasd"):
        load_profile("no-such-profile")


def test_profile_converts_to_and_from_a_native_input_profile() -> None:
    game = pytest.importorskip("azote.envs.native.game")
    native = KeyMouseProfile().to_native()
    assert isinstance(native, game.InputProfile)
    back = KeyMouseProfile.from_native(native, name="wasd")
    pad = Gamepad.make(["south", "left_trigger"], j_left=(0.7, 0.7), j_right=(-0.6, 0.3))
    assert back.native(pad) == native.native(pad) == KeyMouseProfile().native(pad)


def test_play_logs_and_draws_keys_with_a_profile(tmp_path: Path) -> None:
    result = runner.invoke(app, ["play", "--game", "atari/Pong", "--steps", "12", "--keymouse", "wasd",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "actions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"keys", "pressed", "released", "mouse"} <= set(rows[0])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["keymouse"]["name"] == "wasd" and summary["keymouse"]["applied_to_game"] is False
    assert probe(tmp_path / "debug.mp4")["height"] == 2 * 210 + 28  # the key strip under the frame and panel


# --- end to end through `azote serve` -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(checkpoint: Path) -> Iterator[str]:
    """`azote serve CKPT --port 0` in its own process; yields its address."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "azote.cli.main", "serve", str(checkpoint), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not line.startswith("listening"):
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                pytest.fail(f"azote serve exited: {proc.stderr.read() if proc.stderr else ''}")
        assert line.startswith("listening tcp://127.0.0.1:"), line
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_pong_played_through_azote_serve_matches_playing_in_process(served: str, checkpoint: Path, tmp_path: Path) -> None:
    args = ["--game", "atari/Pong", "--steps", "40", "--execute", "10", "--seed", "3", "--threads", "1"]
    remote = runner.invoke(app, ["play", "--policy", served, *args, "--out", str(tmp_path / "remote")])
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, ["play", "--policy", str(checkpoint), *args, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    clean, debug = probe(tmp_path / "remote" / "clean.mp4"), probe(tmp_path / "remote" / "debug.mp4")
    assert clean["frames"] == debug["frames"] == 40 and debug["width"] > clean["width"]
    summary = json.loads((tmp_path / "remote" / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["policy_calls"] == 4 and summary["mode"] == "lockstep"
    assert summary["policy"] == served and summary["execute"] == 10
    actions = [(tmp_path / d / "actions.jsonl").read_text().splitlines() for d in ("remote", "local")]
    assert len(actions[0]) == 40 and actions[0] == actions[1]  # the same seeded chunks, served or not


def test_realtime_play_through_the_server_reports_its_action_rate(served: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["play", "--game", "atari/Pong", "--policy", served, "--steps", "40", "--realtime",
                                 "--fps", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    rt = summary["realtime"]
    assert summary["mode"] == "realtime" and rt["steps"] == 40 and rt["target_actions_per_second"] == 10
    assert 8 <= rt["achieved_actions_per_second"] <= 10.5 and rt["chunks_merged"] >= 1
    assert rt["latency_ms_mean"] is not None and "actions/s" in result.output
    assert len((tmp_path / "actions.jsonl").read_text().splitlines()) == 40


def test_play_reports_an_unreachable_server(tmp_path: Path) -> None:
    with zmq.Context() as ctx:  # a port nobody answers on
        s = ctx.socket(zmq.ROUTER)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        result = runner.invoke(app, ["play", "--game", "atari/Pong", "--policy", f"tcp://127.0.0.1:{port}",
                                     "--steps", "5", "--timeout", "0.3", "--out", str(tmp_path)])
        s.close(0)
    assert result.exit_code == 1 and "no reply" in result.output


def test_a_request_that_breaks_the_forward_pass_does_not_fail_the_others(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = PolicyServer(policy, port=0, batch_window_s=0.5)
    real = srv.predict_jobs

    def fragile(jobs: list[Any]) -> list[dict[str, Any]]:
        if any(o.shape[0] == 13 for job in jobs for o in job.observations):
            raise RuntimeError("kernel exploded")
        return real(jobs)

    monkeypatch.setattr(srv, "predict_jobs", fragile)
    with srv:
        ctx = zmq.Context()
        socks = [ctx.socket(zmq.REQ) for _ in range(2)]
        for s, h in zip(socks, (13, 14)):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(srv.address)
            s.send(pack({"type": "predict", "frames": encode_array(frame(h, h, h)), "seed": [1]}))
        replies = []
        for s in socks:
            assert s.poll(60_000)
            replies.append(unpack(s.recv(), 1 << 24))
            s.close()
        ctx.term()
    assert replies[0]["ok"] is False and replies[0]["error"]["code"] == "internal"
    assert "kernel exploded" in replies[0]["error"]["message"]
    assert replies[1]["ok"] is True and replies[1]["batch_size"] == 1
