"""The trainer on a micro model: it learns, it resumes exactly after SIGKILL, it runs under torchrun (gloo)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import azote.envs as envs
from azote.agents import RandomAgent
from azote.dataset import Dataset, EpisodeWriter
from azote.dataset.samples import SampleConfig, TrainingSamples
from azote.play.loop import play_episode
from azote.policy import PolicyConfig, build_model, get_preset, save_pretrained
from azote.training.augment import AugmentConfig, augment
from azote.training.schedule import wsd_factor

MICRO = dict(hidden_size=32, dit_layers=2, dit_heads=2, vl_layers=1, vl_heads=2, action_horizon=6, dropout=0.1)
MICRO_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32)


def micro_config(path: Path) -> Path:
    tiny = get_preset("tiny")
    cfg = tiny.replace(name="micro", vision=tiny.vision.model_copy(update=MICRO_VISION), **MICRO)
    path.write_text(cfg.to_json())
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two procgen games, 120 steps each, in 2-second chunks."""
    root = tmp_path_factory.mktemp("train-data")
    for game in ("procgen/coinrun", "procgen/maze"):
        env = envs.make(game)
        with EpisodeWriter(root, game.replace("/", "-"), game, env.game.fps, chunk_seconds=2.0) as w:
            for step in play_episode(env, RandomAgent(seed=1, press_p=0.3), 120, seed=1):
                w.add(step.frame, step.action)
        env.close()
    return root


def test_samples_are_a_pure_function_of_the_index(data):
    ds = [Dataset.open(data)]
    cfg = SampleConfig(horizon=6, image_size=32, batch_size=4, min_action_density=0.0, seed=3)
    a, b = TrainingSamples(ds, cfg), TrainingSamples(ds, cfg)
    for i in (0, 5, 40):
        x, y = a.batch(i), b.batch(i)
        assert all(torch.equal(x[k], y[k]) for k in x)
    first = a.batch(0)
    assert first["pixel_values"].shape == (4, 1, 3, 32, 32) and first["pixel_values"].dtype == torch.uint8
    assert first["actions"].shape == (4, 6, 25) and set(first["game_ids"].tolist()) <= {1, 2}
    strict = TrainingSamples(ds, SampleConfig(horizon=6, image_size=32, min_action_density=1.0))
    assert strict.stats.skipped_low_action > 0 or strict.stats.chunks == a.stats.chunks
    with pytest.raises(ValueError, match="no usable chunks"):
        TrainingSamples(ds, SampleConfig(min_action_density=1.0, shift=10_000))


def test_overlay_box_is_blacked_out(tmp_path):
    env = envs.make("atari/Pong")
    with EpisodeWriter(tmp_path, "pong", env.game.id, env.game.fps, bbox_controller_overlay=[100, 150, 60, 60]) as w:
        for step in play_episode(env, RandomAgent(seed=0), 30, seed=0):
            w.add(step.frame, step.action)
    env.close()
    samples = TrainingSamples([Dataset.open(tmp_path)], SampleConfig(horizon=4, image_size=210, batch_size=2,
                                                                     min_action_density=0.0))
    px = samples.batch(0)["pixel_values"][:, 0]  # resized 210x160 -> 210x210: the box spans x 131..210, y 150..210
    assert int(px[:, :, 152:208, 134:208].max()) == 0
    assert int(px[:, :, :140, :120].max()) > 0


def test_wsd_schedule_and_augment_shapes():
    f = [wsd_factor(s, 100, 10, 0.2) for s in range(100)]
    assert f[0] == 0.1 and f[9] == 1.0 and f[50] == 1.0 and f[79] == 1.0 and f[99] == pytest.approx(0.0)
    assert all(x >= y for x, y in zip(f[80:], f[81:]))
    x = torch.rand(3, 1, 3, 32, 32) * 2 - 1
    y = augment(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)
    assert torch.equal(y, augment(x, AugmentConfig(), torch.Generator().manual_seed(0)))


def test_micro_model_overfits_one_batch(data, tmp_path):
    torch.manual_seed(0)
    config = PolicyConfig.load(micro_config(tmp_path / "m.json")).replace(dropout=0.0, hidden_size=64, dit_heads=4)
    model = build_model(config)
    model.train()
    batch = TrainingSamples([Dataset.open(data)], SampleConfig(horizon=6, image_size=32, batch_size=8,
                                                               min_action_density=0.0)).batch(0)
    g = torch.Generator().manual_seed(0)
    fixed = {"pixel_values": batch["pixel_values"], "actions": batch["actions"], "action_mask": batch["action_mask"],
             "noise": torch.randn(batch["actions"].shape, generator=g), "t": torch.rand(8, generator=g)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = model.compute_loss(fixed)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def train_cmd(data: Path, out: Path, model: Path, steps: int, ckpt_every: int) -> list[str]:
    return [sys.executable, "-m", "azote.cli.main", "train", "--data", str(data), "--out", str(out), "--model",
            str(model), "--steps", str(steps), "--batch-size", "4", "--ckpt-every", str(ckpt_every),
            "--log-every", "2", "--warmup-steps", "3", "--min-action-density", "0", "--num-workers", "1",
            "--threads", "1", "--seed", "7"]


def test_resume_after_sigkill_matches_an_uninterrupted_run(data, tmp_path):
    model = micro_config(tmp_path / "micro.json")
    steps = 24
    straight = tmp_path / "straight"
    subprocess.run(train_cmd(data, straight, model, steps, 4), check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(data, killed, model, steps, 4), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list((killed / "checkpoints").glob("step_0000004")) and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (killed / "final").exists(), "the run finished before it could be killed"
    subprocess.run(train_cmd(data, killed, model, steps, 4) + ["--resume"], check=True, capture_output=True,
                   timeout=600)
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (killed / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(2, steps + 1, 2))  # integers, none duplicated
    assert (killed / "loss.png").is_file() and list((killed / "tb").iterdir())


def test_metrics_kept_on_resume_are_rewritten_unchanged(tmp_path):
    # issue 16 item 8: after --resume, metrics.csv held the earlier steps as floats ("2.0")
    from azote.training.trainer import MetricLog

    log = MetricLog(tmp_path, start_step=0)
    for step in range(1, 7):
        log.write(step, loss=1 / step, lr=1e-4 * step, grad_norm=0.5, rate=12.5)
    log.close()
    before = (tmp_path / "metrics.csv").read_text().splitlines()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("7,0.14")  # the row a kill cut short
    resumed = MetricLog(tmp_path, start_step=4)
    assert [r["step"] for r in resumed.rows] == [1, 2, 3, 4] and all(type(r["step"]) is int for r in resumed.rows)
    # a run killed after its last checkpoint resumes there and trains no step: its summary still has the last loss
    assert resumed.last_loss == 0.25
    resumed.write(5, loss=0.2, lr=5e-4, grad_norm=0.5, rate=12.5)
    resumed.close()
    after = (tmp_path / "metrics.csv").read_text().splitlines()
    assert after[:5] == before[:5] and after[5].startswith("5,") and len(after) == 6
    assert not list(tmp_path.glob(".*tmp"))

def test_ddp_two_cpu_processes_with_gloo(data, tmp_path):
    model = micro_config(tmp_path / "micro.json")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29617",
           "-m", "azote.cli.main", "train", "--data", str(data), "--out", str(out), "--model", str(model),
           "--steps", "6", "--batch-size", "4", "--ckpt-every", "3", "--log-every", "1", "--min-action-density", "0",
           "--num-workers", "0", "--threads", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and (out / "final" / "model.safetensors").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 7  # header + 6 steps, written once (by rank 0)
    state = torch.load(out / "checkpoints" / "step_0000006" / "trainer.pt", weights_only=True)
    assert len(state["rng"]) == 2  # one RNG state per rank


# --- hostile files (issue 16): a bad chunk is skipped and named, never the end of a run ----------------------------
def synthetic_video(root: Path, video_id: str, shade: int, frames: int = 40, fps: float = 20.0) -> Path:
    """`frames` uniform 32x32 frames of one shade with random presses, in 1-second chunks (20 rows each)."""
    from azote.gamepad import ActionChunk

    rng = np.random.default_rng(shade)
    actions = ActionChunk.from_arrays(rng.random((frames, 17)) < 0.3, rng.uniform(-1, 1, (frames, 2)),
                                      rng.uniform(-1, 1, (frames, 2)))
    with EpisodeWriter(root, video_id, "synthetic", fps, chunk_seconds=1.0) as w:
        w.add_chunk([np.full((32, 32, 3), shade, np.uint8)] * frames, actions)
    return root / "actions" / "SHARD_0000" / video_id


def hostile_dataset(root: Path) -> tuple[list[str], list[str]]:
    """Two good videos and one video per fault of issue 16; returns (good chunk names, bad chunk names)."""
    from azote.dataset import VideoWriter

    def chunks(d: Path) -> list[Path]:
        return sorted(d.iterdir())

    def edit(chunk: Path, **changes) -> None:
        meta = json.loads((chunk / "metadata.json").read_text())
        for k, v in changes.items():
            (meta["original_video"] if k in meta["original_video"] else meta)[k] = v
        (chunk / "metadata.json").write_text(json.dumps(meta))

    good = [c.name for v in ("good0", "good1") for c in chunks(synthetic_video(root, v, 60 + 10 * len(v)))]
    bad = []
    for vid in ("empty", "garbage", "short", "late", "notvideo", "zz"):
        cs = chunks(synthetic_video(root, vid, 200))
        video = root / "videos" / f"{vid}.mp4"
        if vid == "empty":  # 0-byte mp4
            video.write_bytes(b"")
        elif vid == "garbage":
            video.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
        elif vid == "short":  # a video shorter than its labels
            video.unlink()
            with VideoWriter(video, 20.0) as w:
                for _ in range(10):
                    w.write(np.full((32, 32, 3), 200, np.uint8))
        elif vid == "late":  # start_time past the end of the video
            edit(cs[0], start_time=500.0, end_time=501.0)
        elif vid == "notvideo":  # a url pointing at a file that is not a video
            (root / "notes.txt").write_text("not a video\n" * 50)
            edit(cs[0], url="notes.txt")
        else:
            edit(cs[1], chunk_id="zz")
        lost = cs if vid in ("empty", "garbage", "short") else [cs[1] if vid == "zz" else cs[0]]
        bad += [c.name for c in lost]
        good += [c.name for c in cs if c not in lost]
    return good, bad


def test_train_skips_each_bad_chunk_names_it_and_trains_on_the_rest(tmp_path):
    from typer.testing import CliRunner

    from azote.cli.main import app

    data = tmp_path / "data"
    good, bad = hostile_dataset(data)
    model = micro_config(tmp_path / "micro.json")
    out = tmp_path / "run"
    # `azote train` in this process (the command's own code, without a second interpreter's start-up)
    result = CliRunner().invoke(app, train_cmd(data, out, model, 4, 4)[3:] + ["--num-workers", "0"])
    text = result.output
    assert result.exit_code == 0 and result.exception is None, text[-3000:]
    skipped = [line for line in text.splitlines() if line.startswith("skipping")]
    for name in bad:  # one line per skipped chunk, naming it (and the file at fault)
        assert sum(name in line for line in skipped) == 1, (name, skipped)
    assert not any(name in line for line in skipped for name in good)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and (out / "final" / "model.safetensors").is_file()
    assert summary["samples"]["chunks"] == len(good) and summary["samples"]["skipped_bad"] == len(bad)


def test_a_video_that_stops_decoding_after_validation_is_skipped(tmp_path):
    synthetic_video(tmp_path, "dark", 40)
    synthetic_video(tmp_path, "bright", 220)
    ds = Dataset.open(tmp_path)
    assert len(ds.chunks) == 4 and not ds.problems
    (tmp_path / "videos" / "bright.mp4").write_bytes(b"\0" * 5000)  # changed after the dataset was opened
    cfg = SampleConfig(horizon=6, image_size=32, batch_size=4, min_action_density=0.0, seed=1)
    said: list[str] = []
    a = TrainingSamples([ds], cfg, log=said.append)
    batches = [a.batch(i) for i in range(8)]
    assert len(said) == 2 and all("bright_chunk_000" in s and "bright.mp4" in s for s in said)  # once per chunk
    for b in batches:  # every sample now comes from the dark video
        assert b["pixel_values"].float().mean(dim=(1, 2, 3, 4)).max() < 100
    b = TrainingSamples([ds], cfg, log=None)  # the same stream in another process or after a resume
    assert all(torch.equal(x[k], y[k]) for x, y in zip(batches, (b.batch(i) for i in range(8))) for k in x)


def test_train_with_nothing_usable_fails_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from azote.cli.main import app

    synthetic_video(tmp_path / "data", "only", 100)
    (tmp_path / "data" / "videos" / "only.mp4").write_bytes(b"")
    model = micro_config(tmp_path / "micro.json")
    result = CliRunner().invoke(app, train_cmd(tmp_path / "data", tmp_path / "run", model, 2, 2)[3:])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable chunks" in errors[0] and "2 bad" in errors[0]


# --- one configuration tree per run (issue 19, item 5) -----------------------------------------------------------
def invoke(args: list[str]):
    """`azote ARGS` in this process; (exit code, output)."""
    from typer.testing import CliRunner

    from azote.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 2-step run of the micro model with a shift of 3 (the released model's), non-default betas and
    augmentation; returns its directory."""
    root = tmp_path_factory.mktemp("pretrain")
    synthetic_video(root / "data", "dark", 60, frames=60)
    model = micro_config(root / "micro.json")
    out = root / "run"
    code, text = invoke(["train", "--data", root / "data", "--out", out, "--model", model, "--steps", "2",
                         "--batch-size", "2", "--num-workers", "0", "--min-action-density", "0", "--threads", "1",
                         "--shift", "3", "--hue", "0.05", "--set", "optim.betas=[0.8, 0.9]",
                         "--set", "sampling.game_weights={\"synthetic\": 2}"])
    assert code == 0, text[-2000:]
    return out


def test_a_run_saves_its_whole_configuration_as_run_json(pretrained):
    from azote.policy.checkpoint import read_games
    from azote.training import TrainConfig

    saved = json.loads((pretrained / "run.json").read_text())
    assert saved["format"] == "azote-run/1" and not (pretrained / "config.json").exists()
    assert saved["optim"]["betas"] == [0.8, 0.9] and saved["optim"]["steps"] == 2
    assert saved["augment"] == {**json.loads(AugmentConfig().model_dump_json()), "hue": 0.05}
    assert saved["sampling"]["shift"] == 3 and saved["sampling"]["game_weights"] == {"synthetic": 2}
    assert saved["sampling"]["min_action_density"] == 0
    assert TrainConfig.load(pretrained / "run.json").model_dump() == saved | {"optim": {**saved["optim"], "betas": (0.8, 0.9)}}
    # the checkpoint owns the shift and the game vocabulary
    assert PolicyConfig.load(pretrained / "final" / "config.json").action_shift == 3
    summary = json.loads((pretrained / "summary.json").read_text())
    assert read_games(pretrained / "final") == summary["games"] == ["synthetic"] and summary["action_shift"] == 3


def test_train_config_run_json_reproduces_the_configuration(pretrained, tmp_path):
    from azote.training import TrainConfig

    code, text = invoke(["train", "--config", pretrained / "run.json", "--out", tmp_path / "again"])
    assert code == 0, text[-2000:]
    first, again = (json.loads((d / "run.json").read_text()) for d in (pretrained, tmp_path / "again"))
    assert again == {**first, "out": str(tmp_path / "again")}
    # the same weights: every setting that defines the run came back
    a, b = (load_file(str(d / "final" / "model.safetensors")) for d in (pretrained, tmp_path / "again"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an older run's flat config.json still loads, into the same tree
    flat = {"data": first["data"]["roots"], "out": first["out"], "model": first["model"]["preset"], "steps": 2,
            "batch_size": 2, "num_workers": 0, "min_action_density": 0.0, "threads": 1, "shift": 3, "hue": 0.05,
            "betas": [0.8, 0.9], "game_weights": {"synthetic": 2}}
    (tmp_path / "config.json").write_text(json.dumps(flat))
    assert TrainConfig.load(tmp_path / "config.json") == TrainConfig.load(pretrained / "run.json")


def test_every_setting_of_the_tree_is_a_train_option():
    import typer

    from azote.cli.main import app
    from azote.training.config import leaves

    command = typer.main.get_command(app).commands["train"]
    options = {opt for p in command.params for opt in p.opts}
    assert {f"--{flat.replace('_', '-')}" for flat, _, _ in leaves()} <= options
    assert {"--set", "--config", "--resume"} <= options


def test_a_run_directory_given_as_a_policy_names_its_checkpoint(pretrained, monkeypatch):
    from azote.agents import AgentSpecError, check_spec

    monkeypatch.chdir(pretrained.parent)
    line = "run is a training run directory; its checkpoint is run/final"
    with pytest.raises(AgentSpecError) as refused:
        check_spec("run")
    assert str(refused.value) == line
    check_spec("run/final")  # the checkpoint itself is fine
    code, text = invoke(["finetune", "--from", "run", "--data", "data", "--out", "ft"])
    assert code != 0 and f"error: {line}" in text


def test_a_fine_tuned_checkpoint_keeps_its_parents_shift_unless_asked(pretrained, tmp_path):
    common = ["--data", pretrained.parent / "data", "--steps", "1", "--batch-size", "2", "--num-workers", "0",
              "--min-action-density", "0", "--threads", "1"]
    code, text = invoke(["finetune", "--from", pretrained / "final", "--out", tmp_path / "kept", *common])
    assert code == 0, text[-2000:]
    assert PolicyConfig.load(tmp_path / "kept" / "final" / "config.json").action_shift == 3
    assert "action shift: " not in text and "action shift 3" in text
    code, text = invoke(["finetune", "--from", pretrained / "final", "--out", tmp_path / "asked", "--shift", "1",
                         *common])
    assert code == 0, text[-2000:]
    assert PolicyConfig.load(tmp_path / "asked" / "final" / "config.json").action_shift == 1
    assert f"action shift: 1 as asked (the checkpoint {pretrained / 'final'} has 3)" in text
    ft = json.loads((tmp_path / "kept" / "run.json").read_text())  # fine-tuning's own defaults, then the options
    assert ft["model"]["init_from"] == str(pretrained / "final") and ft["optim"]["lr"] == 1e-4
    assert ft["sampling"]["shift"] is None


def test_a_game_gets_the_same_token_through_the_agent_and_the_server(tmp_path):
    from types import SimpleNamespace

    from azote.agents import make_agent
    from azote.policy.checkpoint import write_games
    from azote.serving.protocol import encode_array, pack
    from azote.serving.server import load_server

    ckpt = tmp_path / "ckpt"
    save_pretrained(build_model(PolicyConfig.load(micro_config(tmp_path / "m.json")).replace(num_games=2)), ckpt)
    write_games(ckpt, ["atari/Pong", "atari/Breakout"])
    server = load_server(ckpt, port=0)
    frame = np.zeros((32, 32, 3), np.uint8)
    for game, token in (("atari/Breakout", 2), ("atari/Pong", 1), ("atari/Freeway", 0)):
        agent = make_agent(str(ckpt), SimpleNamespace(game=SimpleNamespace(id=game)), seed=0)  # type: ignore[arg-type]
        job = server.handle(pack({"type": "predict", "frames": encode_array(frame), "game": game}))
        assert agent.game_id == job.game_ids[0] == token, game  # type: ignore[union-attr]
