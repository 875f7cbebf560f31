"""save_pretrained / from_pretrained: round trip, atomic writes, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from azote.policy import (
    CheckpointError,
    ConfigError,
    build_model,
    from_pretrained,
    get_preset,
    sample_actions,
    save_pretrained,
)


@pytest.fixture()
def small_ckpt(tmp_path):
    torch.manual_seed(0)
    config = get_preset("tiny").replace(name="ckpt-test", vision={"num_hidden_layers": 1}, dit_layers=2)
    model = build_model(config).eval()
    return model, save_pretrained(model, tmp_path / "ckpt")


def test_round_trip(small_ckpt):
    model, path = small_ckpt
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(path)
    assert loaded.config == model.config and not loaded.training
    for (name, a), (name_b, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b and torch.equal(a, b)
    # Buffers that are not saved (the tower's position ids) are rebuilt.
    assert torch.equal(loaded.vision_encoder.embeddings.position_ids, model.vision_encoder.embeddings.position_ids)
    s = model.config.vision.image_size
    pixels = torch.rand(2, 1, 3, s, s)
    noise = torch.randn(2, 18, 25)
    assert torch.equal(sample_actions(model, pixels, noise=noise), sample_actions(loaded, pixels, noise=noise))


def test_overwrite_in_place_leaves_no_temporary_files(small_ckpt):
    model, path = small_ckpt
    save_pretrained(model, path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]


def test_missing_files(small_ckpt, tmp_path):
    _, path = small_ckpt
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        from_pretrained(tmp_path / "nowhere")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        from_pretrained(path)


def test_shape_mismatch(small_ckpt):
    _, path = small_ckpt
    weights = load_file(str(path / "model.safetensors"))
    weights["action_decoder.layer2.W"] = torch.zeros(1, 192, 24)
    save_file(weights, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*action_decoder\.layer2\.W: checkpoint \[1, 192, 24\], model \[1, 192, 25\]"):
        from_pretrained(path)


def test_unexpected_and_corrupt_weights(small_ckpt):
    _, path = small_ckpt
    weights = load_file(str(path / "model.safetensors"))
    save_file({**weights, "extra.weight": torch.zeros(3)}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected tensors: extra.weight"):
        from_pretrained(path)
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        from_pretrained(path)


@pytest.mark.parametrize(
    "change, field",
    [({"dit_heads": 5}, "dit_heads"), ({"hidden_size": -1}, "hidden_size"), ({"surprise": 1}, "surprise")],
)
def test_bad_config(small_ckpt, change, field):
    _, path = small_ckpt
    data = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(ConfigError, match=rf"config\.json: invalid policy configuration: .*{field}"):
        from_pretrained(path)


def test_config_that_is_not_json(small_ckpt):
    _, path = small_ckpt
    (path / "config.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        from_pretrained(path)
