"""Import of the released ng.pt: both configuration layouts, a checkpoint built here, and malicious pickles."""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile

import pytest
import torch
from safetensors.torch import load_file

from azote.policy import (
    CheckpointError,
    ConfigError,
    UnsafeCheckpointError,
    convert_ng_checkpoint,
    from_pretrained,
    sample_actions,
)
from azote.policy.ng_import import read_ng_checkpoint, safe_load


@pytest.mark.parametrize("name", ["tiny_ng_dictconfig.pt", "tiny_ng_objectconfig.pt"])
def test_reads_both_config_layouts_as_plain_data(reference, name):
    ckpt = read_ng_checkpoint(reference(name))
    assert ckpt.ckpt_config == json.loads(reference("tiny_ckpt_config.json").read_text())
    weights = load_file(str(reference("tiny_weights.safetensors")))
    assert ckpt.model.keys() == weights.keys()
    assert all(torch.equal(ckpt.model[k], weights[k]) for k in weights)
    # The released code's configuration classes were recorded, never imported.
    assert not any(m == "nitrogen" or m.startswith("nitrogen.") for m in sys.modules)


@pytest.mark.parametrize("name", ["tiny_ng_dictconfig.pt", "tiny_ng_objectconfig.pt"])
def test_convert_and_reproduce_reference(reference, tmp_path, tiny_vectors, assert_close, name):
    out = convert_ng_checkpoint(reference(name), tmp_path / "ckpt", vision=reference("tiny_config.json"))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    model = from_pretrained(out)
    cfg = model.config
    assert (cfg.name, cfg.action_horizon, cfg.action_shift, cfg.num_frames) == ("tiny-reference", 18, 3, 1)
    assert (cfg.noise_beta_alpha, cfg.noise_beta_beta, cfg.dropout) == (1.6, 0.8, 0.2)
    v = tiny_vectors
    with torch.no_grad():
        assert_close(model(v["pixel_values"], v["x_t"], v["t_discrete"]), v["velocity"])


def test_convert_a_checkpoint_built_in_the_released_layout(
    reference, tmp_path, tiny_reference_model, tiny_vectors, assert_close
):
    ckpt_config = json.loads(reference("tiny_ckpt_config.json").read_text())
    ng = tmp_path / "ng.pt"
    # A module's state_dict() (an OrderedDict carrying `_metadata`), as a training loop saves it.
    torch.save({"model": tiny_reference_model.state_dict(), "step": 1234, "epoch": 5, "ckpt_config": ckpt_config}, ng)
    vision = json.dumps(json.loads(reference("tiny_config.json").read_text())["vision"])  # inline JSON
    out = convert_ng_checkpoint(ng, tmp_path / "converted", vision=vision)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "1234" and f.metadata()["epoch"] == "5"
    model = from_pretrained(out)
    v = tiny_vectors
    assert_close(sample_actions(model, v["pixel_values"], noise=v["initial_noise"]), v["sampled_actions"])


def test_named_tower_that_does_not_fit_asks_for_vision_config(reference, tmp_path):
    with pytest.raises(ConfigError, match="--vision-config"):
        convert_ng_checkpoint(reference("tiny_ng_dictconfig.pt"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_vision_config_is_a_clear_error(reference, tmp_path):
    vision = json.loads(reference("tiny_config.json").read_text())["vision"]
    vision["intermediate_size"] = 256
    with pytest.raises(CheckpointError, match=r"vision_encoder\.encoder\.layers\.0\.mlp\.fc1\.weight.*--vision-config"):
        convert_ng_checkpoint(reference("tiny_ng_dictconfig.pt"), tmp_path / "out", vision=json.dumps(vision))


class _RunsACommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsACommand, _Evals])
def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    ng = tmp_path / "ng.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 0, "epoch": 0, "ckpt_config": payload(str(marker))}, ng)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load (posix\.system|__builtin__\.eval).*nothing was executed"):
        convert_ng_checkpoint(ng, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_malicious_global_in_the_config_namespace_is_inert(tmp_path):
    """A class under `nitrogen.` is only recorded: the module is not imported and nothing of it is called."""
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    # PROTO 2, GLOBAL nitrogen.evil.Run, BINUNICODE command, TUPLE1, REDUCE, STOP: "Run(command)".
    data = b"\x80\x02cnitrogen.evil\nRun\nX" + len(command).to_bytes(4, "little") + command + b"\x85R."
    ng = tmp_path / "ng.pt"
    with zipfile.ZipFile(ng, "w") as z:
        z.writestr("archive/data.pkl", data)
    obj = safe_load(ng)
    assert type(obj).__name__ == "Run" and obj.args == (f"touch {marker}",)
    assert not marker.exists() and "nitrogen.evil" not in sys.modules


def test_plain_pickle_is_not_read(tmp_path):
    ng = tmp_path / "ng.pt"
    ng.write_bytes(pickle.dumps(_RunsACommand(str(tmp_path / "pwned"))))
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint"):
        convert_ng_checkpoint(ng, tmp_path / "out")
    assert not (tmp_path / "pwned").exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        convert_ng_checkpoint(tmp_path / "absent.pt", tmp_path / "out")
