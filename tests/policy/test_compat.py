"""Exact compatibility with the released NitroGen model: tensor names/shapes and the reference outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from azote.policy import CheckpointError, build_model, sample_actions
from azote.policy.checkpoint import check_state_dict


def test_nitrogen_500m_state_dict_is_the_released_one(reference):
    ref = json.loads(reference("nitrogen_500m_state_dict.json").read_text())
    model = build_model("nitrogen-500m", device="meta")
    ours = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    assert len(ours) == ref["num_tensors"] == 595
    assert dict(ours) == ref["tensors"]
    assert ours == list(ref["tensors"].items())  # same order too
    assert model.num_parameters() == ref["num_parameters"] == 493_631_513


def test_tiny_reference_architecture(tiny_reference_model, reference):
    data = json.loads(reference("tiny_config.json").read_text())
    assert len(tiny_reference_model.state_dict()) == data["num_tensors"]
    assert tiny_reference_model.num_parameters() == data["num_parameters"]


def test_velocity_matches_reference(tiny_reference_model, tiny_vectors, assert_close):
    v = tiny_vectors
    with torch.no_grad():
        velocity = tiny_reference_model(v["pixel_values"], v["x_t"], v["t_discrete"])
    assert_close(velocity, v["velocity"])


@pytest.mark.parametrize("cached", [True, False])
def test_sixteen_step_sampling_matches_reference(tiny_reference_model, tiny_vectors, assert_close, cached):
    v = tiny_vectors
    actions = sample_actions(tiny_reference_model, v["pixel_values"], noise=v["initial_noise"], num_steps=16, cached=cached)
    assert_close(actions, v["sampled_actions"])


def test_training_loss_matches_reference(tiny_reference_model, tiny_vectors, assert_close):
    v = tiny_vectors
    batch = {"pixel_values": v["pixel_values"], "actions": v["train_actions"], "noise": v["train_noise"], "t": v["train_t"]}
    with torch.no_grad():
        loss = tiny_reference_model.compute_loss(batch)
    assert_close(loss.reshape(1), v["train_loss"])
    # The bucket is floor(t * 1000) in float32: 0.9 gives 900 (float64 would give 899).
    assert torch.floor(v["train_t"] * 1000).long().tolist() == [200, 900]


def test_loading_is_strict(tiny_reference_config, reference):
    weights = load_file(str(reference("tiny_weights.safetensors")))
    model = build_model(tiny_reference_config)
    extra = {**weights, "model.unexpected.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(extra, strict=True)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    found = {k: list(v.shape) for k, v in weights.items() if k != "position_embedding.weight"}
    with pytest.raises(CheckpointError, match="missing tensors: position_embedding.weight"):
        check_state_dict(shapes, found, "tiny_weights.safetensors")
    found["position_embedding.weight"] = [512, 64]
    with pytest.raises(CheckpointError, match=r"position_embedding.weight: checkpoint \[512, 64\], model \[1024, 64\]"):
        check_state_dict(shapes, found, "tiny_weights.safetensors")
