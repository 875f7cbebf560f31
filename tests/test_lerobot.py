"""LeRobotDataset v3.0 export and import: the layout and its metadata, per-frame pairing of actions and frames,
the round trip back to an Azote dataset, and bad input refused in one line."""

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from azote.cli.main import app
from azote.dataset import Dataset, EpisodeWriter
from azote.dataset import lerobot as lr
from azote.dataset.lerobot import LeRobotError, export_lerobot, import_lerobot
from azote.gamepad import MODEL_ACTION_DIM, MODEL_SLOTS, ActionChunk

KEY = "observation.images.screen"
FPS = 30
VIDEOS = {"run_a": (45, "test/GameA"), "run_b": (30, "test/GameB")}  # video -> rows, game


def frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i: flat colours that change with i and a white square that moves with it (alignment is visible)."""
    f = np.zeros((h, w, 3), np.uint8)
    f[..., 0] = (i * 37) % 200 + 20
    f[..., 1] = (i * 11) % 200 + 20
    f[..., 2] = np.linspace(0, 255, w).astype(np.uint8)[None]
    x = (3 * i) % (w - 16)
    f[8:24, x : x + 16] = 255
    return f


def noise(i: int) -> np.ndarray:
    """A frame that does not compress: tens of kB per frame on disk as soon as it is encoded."""
    return np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def make_dataset(root: Path, videos: dict = VIDEOS, fps: float = FPS, seed: int = 0, frame=frame) -> dict[str, tuple]:
    """Writes the videos (0.5 s chunks, so each video has several) and returns video -> (frames, actions)."""
    rng = np.random.default_rng(seed)
    made = {}
    for vid, (n, game) in videos.items():
        sticks = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
        sticks[::5] = 0.0  # some rest positions, some exact halves
        sticks[1::7] = 0.5
        actions = ActionChunk.from_arrays(rng.integers(0, 2, (n, 17)), sticks[:, :2], sticks[:, 2:])
        frames = [frame(i) for i in range(n)]
        with EpisodeWriter(root, vid, game, fps, chunk_seconds=0.5) as w:
            w.add_chunk(frames, actions)
        made[vid] = (frames, actions)
    return made


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("lerobot")
    made = make_dataset(base / "azote")
    summary = export_lerobot(base / "azote", base / "lr", progress=False)
    return base, made, summary


def read_episodes(root: Path) -> list[dict]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    return sorted((r for f in files for r in pq.read_table(f).to_pylist()), key=lambda r: r["episode_index"])


def read_data(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in sorted((root / "data").glob("chunk-*/file-*.parquet"))])


def test_export_writes_the_v3_layout_and_metadata(exported):
    base, made, summary = exported
    root = base / "lr"
    assert summary["episodes"] == 2 and summary["frames"] == 75 and summary["tasks"] == 2
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
                     "meta/stats.json", "meta/tasks.parquet", f"videos/{KEY}/chunk-000/file-000.mp4"]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["robot_type"] == "gamepad"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 75, 2)
    assert info["splits"] == {"train": "0:2"} and info["chunks_size"] == 1000
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert set(feats) == {"action", KEY, "timestamp", "frame_index", "episode_index", "index", "task_index"}
    assert feats["action"]["dtype"] == "float32" and feats["action"]["shape"] == [MODEL_ACTION_DIM]
    assert feats["action"]["names"][:21] == list(MODEL_SLOTS) and feats["action"]["names"][21] == "j_left_x"
    assert feats[KEY]["dtype"] == "video" and feats[KEY]["shape"] == [48, 64, 3]
    assert feats[KEY]["names"] == ["height", "width", "channels"]
    assert feats[KEY]["info"]["video.codec"] == "h264" and feats[KEY]["info"]["video.fps"] == FPS
    assert feats["index"] == {"dtype": "int64", "shape": [1], "names": None}
    assert feats["timestamp"]["dtype"] == "float32"

    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0, 1], "task": ["test/GameA", "test/GameB"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pandas rebuilds the index

    eps = read_episodes(root)
    assert [(e["episode_index"], e["length"], e["tasks"], e["azote_video_id"]) for e in eps] == [
        (0, 45, ["test/GameA"], "run_a"), (1, 30, ["test/GameB"], "run_b")]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 45), (45, 75)]
    assert [(e[f"videos/{KEY}/from_timestamp"], e[f"videos/{KEY}/to_timestamp"]) for e in eps] == [(0.0, 1.5), (1.5, 2.5)]
    assert all(e["data/chunk_index"] == e["data/file_index"] == e["meta/episodes/file_index"] == 0 for e in eps)
    assert len(eps[0]["stats/action/mean"]) == MODEL_ACTION_DIM and eps[0]["stats/action/count"] == [45]
    assert np.array(eps[0][f"stats/{KEY}/mean"]).shape == (3, 1, 1)

    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert set(stats) == set(feats)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert stats["action"]["count"] == [75] and stats["index"]["max"] == [74] and stats["index"]["mean"] == [37.0]
    all_actions = ActionChunk.concat([made[v][1] for v in VIDEOS]).to_model_vectors()
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], all_actions.std(0), atol=1e-6)
    assert np.array(stats[KEY]["mean"]).shape == (3, 1, 1) and 0 < stats[KEY]["mean"][0][0][0] < 1


def test_export_pairs_each_action_row_with_its_frame(exported):
    base, made, _ = exported
    root = base / "lr"
    data = read_data(root)
    assert data.schema.field("action").type == pa.list_(pa.float32(), MODEL_ACTION_DIM)
    assert data.column_names == ["action", "timestamp", "frame_index", "episode_index", "index", "task_index"]
    expected = ActionChunk.concat([made[v][1] for v in VIDEOS]).to_model_vectors()
    got = np.array(data.column("action").to_pylist(), np.float32)
    assert np.array_equal(got, expected)  # the gamepad's own 25-float vectors, bit for bit
    assert data.column("index").to_pylist() == list(range(75))
    assert data.column("frame_index").to_pylist() == list(range(45)) + list(range(30))
    assert data.column("episode_index").to_pylist() == [0] * 45 + [1] * 30
    assert data.column("task_index").to_pylist() == [0] * 45 + [1] * 30
    np.testing.assert_allclose(data.column("timestamp").to_numpy(), np.r_[np.arange(45), np.arange(30)] / FPS, atol=1e-6)

    # LeRobot finds frame i of an episode at from_timestamp + i / fps (within 1e-4 s): decode by time stamps
    eps = read_episodes(root)
    with av.open(str(root / "videos" / KEY / "chunk-000" / "file-000.mp4")) as c:
        s = c.streams.video[0]
        decoded = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    assert len(decoded) == 75
    for e, vid in zip(eps, VIDEOS):
        frames = made[vid][0]
        for i in range(e["length"]):
            want = e[f"videos/{KEY}/from_timestamp"] + i / FPS
            t, pixels = min(decoded, key=lambda d: abs(d[0] - want))
            assert abs(t - want) < 1e-4
            errors = [np.abs(pixels.astype(int) - f).mean() for f in frames]
            assert errors[i] < 6.0 and int(np.argmin(errors)) == i  # encoded twice (Azote, LeRobot); its own frame


def test_import_round_trip_keeps_actions_and_frames(exported, tmp_path):
    base, made, _ = exported
    back = tmp_path / "back"
    summary = import_lerobot(base / "lr", back, progress=False)
    assert summary["videos"] == 2 and summary["rows"] == 75 and summary["games"] == ["test/GameA", "test/GameB"]
    ds = Dataset.open(back, check_video=True)
    assert not ds.problems and {c.video_id for c in ds.chunks} == set(VIDEOS)
    for vid, (frames, actions) in made.items():
        chunks = [c for c in ds.chunks if c.video_id == vid]
        assert {c.game for c in chunks} == {VIDEOS[vid][1]} and all(c.fps == FPS for c in chunks)
        got = ActionChunk.concat([c.actions for c in chunks])
        assert np.array_equal(got.buttons, actions.buttons)
        # sticks pass through (v + 1) / 2 in float32: back within its rounding, exactly for 0 and +-0.5
        np.testing.assert_allclose(got.j_left, actions.j_left, rtol=0, atol=2.5e-7)
        np.testing.assert_allclose(got.j_right, actions.j_right, rtol=0, atol=2.5e-7)
        exact = np.isin(actions.j_left, (0.0, 0.5, -0.5, 1.0, -1.0))
        assert np.array_equal(got.j_left[exact], actions.j_left[exact])
        decoded = [f for c in chunks for f in c.frames()]
        assert len(decoded) == len(frames)
        for i, d in enumerate(decoded):  # encoded three times now (about 1.3 grey levels lost each time here)
            errors = [np.abs(d.astype(int) - f).mean() for f in frames]
            assert errors[i] < 8.0 and int(np.argmin(errors)) == i
    result = CliRunner().invoke(app, ["data", "validate", str(back)])
    assert result.exit_code == 0, result.output


def test_cli_export_then_import(exported, tmp_path):
    base, _, _ = exported
    runner = CliRunner()
    result = runner.invoke(app, ["data", "export", "--format", "lerobot", str(base / "azote"), str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert "exported 2 episodes, 75 frames" in result.output
    result = runner.invoke(app, ["data", "import", "--format", "lerobot", str(tmp_path / "lr"), str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    assert len(Dataset.open(tmp_path / "back").chunks) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_files_roll_over_to_new_files_and_chunks(tmp_path, monkeypatch):
    made = make_dataset(tmp_path / "azote", frame=noise)  # the video file's size on disk grows frame by frame
    monkeypatch.setattr(lr, "_BYTES_PER_MB", 1000)  # "1 MB" = 1000 bytes: every episode starts a new file
    export_lerobot(tmp_path / "azote", tmp_path / "lr", chunks_size=1, data_files_size_in_mb=1,
                   video_files_size_in_mb=1, progress=False)
    root = tmp_path / "lr"
    eps = read_episodes(root)
    assert [(e["data/chunk_index"], e["data/file_index"]) for e in eps] == [(0, 0), (1, 0)]
    assert [(e[f"videos/{KEY}/chunk_index"], e[f"videos/{KEY}/from_timestamp"]) for e in eps] == [(0, 0.0), (1, 0.0)]
    assert (root / "videos" / KEY / "chunk-001" / "file-000.mp4").is_file()
    assert (root / "data" / "chunk-001" / "file-000.parquet").is_file()
    import_lerobot(root, tmp_path / "back", progress=False)
    ds = Dataset.open(tmp_path / "back")
    assert not ds.problems
    got = ActionChunk.concat([c.actions for c in ds.chunks if c.video_id == "run_b"])
    assert np.array_equal(got.buttons, made["run_b"][1].buttons)


def test_an_interrupted_export_leaves_no_output(exported, tmp_path, monkeypatch):
    base, _, _ = exported
    out = tmp_path / "lr"
    (tmp_path / ".lr.partial").mkdir()  # what a killed run leaves: cleared by the next one
    (tmp_path / ".lr.partial" / "junk").write_text("x")
    calls = []

    def dies(self, frame):
        calls.append(1)
        if len(calls) > 50:  # in the second episode
            raise KeyboardInterrupt
        return real(self, frame)

    real = lr.VideoWriter.write
    monkeypatch.setattr(lr.VideoWriter, "write", dies)
    with pytest.raises(KeyboardInterrupt):
        export_lerobot(base / "azote", out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def corrupt_info(root: Path, **changes) -> None:
    p = root / "meta" / "info.json"
    info = json.loads(p.read_text())
    for k, v in changes.items():
        if k == "action_shape":
            info["features"]["action"]["shape"] = v
        else:
            info[k] = v
    p.write_text(json.dumps(info))


def drop_last_row(root: Path) -> None:
    p = root / "data" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(p)
    pq.write_table(t.slice(0, t.num_rows - 1), p)


FAULTS = {  # fault -> (what it does to a copy of the export, what the error names)
    "action_shape": (lambda r: corrupt_info(r, action_shape=[24]), "meta/info.json: features.action.shape"),
    "old_version": (lambda r: corrupt_info(r, codebase_version="v2.1"), "meta/info.json: codebase_version"),
    "no_info": (lambda r: (r / "meta" / "info.json").unlink(), "meta/info.json: file: missing"),
    "no_data_file": (lambda r: (r / "data" / "chunk-000" / "file-000.parquet").unlink(),
                     "data/chunk-000/file-000.parquet: file: missing"),
    "no_video_file": (lambda r: (r / "videos" / KEY / "chunk-000" / "file-000.mp4").unlink(),
                      "file-000.mp4: video: missing"),
    "total_frames": (lambda r: corrupt_info(r, total_frames=76), "meta/info.json: total_frames"),
    "row_missing": (drop_last_row, "file-000.parquet: episode_index: episode 1 has 29 rows"),
    "template_attack": (lambda r: corrupt_info(r, data_path="data/{chunk_index.__class__}.parquet"),
                        "meta/info.json: data_path"),
    "info_not_json": (lambda r: (r / "meta" / "info.json").write_text("{"), "meta/info.json: json"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_bad_export_is_refused_in_one_line(exported, tmp_path, fault):
    base, _, _ = exported
    root = tmp_path / "lr"
    shutil.copytree(base / "lr", root)
    damage, named = FAULTS[fault]
    damage(root)
    with pytest.raises(LeRobotError):
        import_lerobot(root, tmp_path / "direct", progress=False)
    result = CliRunner().invoke(app, ["data", "import", "--format", "lerobot", str(root), str(tmp_path / "back")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.output
    assert not (tmp_path / "back").exists() and not (tmp_path / ".back.partial").exists()


def test_user_errors_of_the_commands_are_one_line(exported, tmp_path):
    base, _, _ = exported
    runner = CliRunner()
    mixed = tmp_path / "mixed"  # two frame rates: a LeRobot dataset has one
    make_dataset(mixed, {"slow": (10, "g")}, fps=25)
    make_dataset(mixed, {"fast": (10, "g")}, fps=30)
    cases = {
        "unknown --format 'parquet'": ["data", "export", "--format", "parquet", str(base / "azote"), str(tmp_path / "o")],
        "already exists": ["data", "export", str(base / "azote"), str(base / "lr")],
        "does not exist": ["data", "export", str(tmp_path / "nothing"), str(tmp_path / "o")],
        "a LeRobot dataset has one frame rate": ["data", "export", str(mixed), str(tmp_path / "o")],
        "no camera 'side'": ["data", "import", "--camera", "side", str(base / "lr"), str(tmp_path / "o")],
    }
    for expected, args in cases.items():
        result = runner.invoke(app, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        assert expected in lines[0], (args, result.output)
    assert not (tmp_path / "o").exists()
