"""Resumable stages of the main job and the experiment: a finished stage is kept, a crashed one is redone."""

import pytest

from azote.pipeline.stages import Stages


def test_a_finished_stage_is_kept_and_a_crashed_one_is_redone(tmp_path):
    calls = []

    def ok(d):
        calls.append("ok")
        (d / "out.txt").write_text("x")
        return {"value": 1}

    def crash(d):
        calls.append("crash")
        (d / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    stages = Stages(tmp_path, log=lambda m: None)
    assert stages.run("a", ok) == {"value": 1}
    with pytest.raises(RuntimeError):
        stages.run("b", crash)
    assert stages.done("a") and not stages.done("b")

    again = Stages(tmp_path, log=lambda m: None)
    assert again.run("a", ok) == {"value": 1}  # kept: not run a second time
    assert again.run("b", lambda d: {"redone": (d / "partial.txt").exists()}) == {"redone": True}
    assert calls == ["ok", "crash"]
    assert again.seconds("a") is not None and again.seconds("missing") is None
