"""What the trainer uses: compute_loss with masks, parameter groups, presets."""

from __future__ import annotations

import pytest
import torch

from azote.policy import PARAMETER_GROUPS, PRESETS, build_model, get_preset


def _batch(model, b: int = 2) -> dict[str, torch.Tensor]:
    s = model.config.vision.image_size
    g = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randint(0, 256, (b, 1, 3, s, s), dtype=torch.uint8, generator=g),
        "actions": torch.rand(b, 18, 25, generator=g),
        "noise": torch.randn(b, 18, 25, generator=g),
        "t": torch.tensor([0.3, 0.7][:b]),
    }


def test_loss_masks(tiny_model):
    batch = _batch(tiny_model)
    with torch.no_grad():
        full = tiny_model.compute_loss(batch)
        assert torch.allclose(tiny_model.compute_loss({**batch, "action_mask": torch.ones(2, 18)}), full)
        step_mask = torch.zeros(2, 18)
        step_mask[:, :5] = 1
        dim_mask = step_mask[..., None].expand(2, 18, 25)
        by_step = tiny_model.compute_loss({**batch, "action_mask": step_mask})
        by_dim = tiny_model.compute_loss({**batch, "action_mask": dim_mask})
        assert torch.allclose(by_step, by_dim) and not torch.allclose(by_step, full)
        # The masked loss is the mean squared error over the valid entries only.
        t = batch["t"][:, None, None]
        actions = batch["actions"]
        x_t = (1 - t) * batch["noise"] + t * actions
        pixels = (batch["pixel_values"].float() / 255 - 0.5) / 0.5
        pred = tiny_model(pixels, x_t, torch.floor(batch["t"] * 1000).long())
        expected = ((pred - (actions - batch["noise"])) ** 2)[:, :5].mean()
        assert torch.allclose(by_step, expected, atol=1e-6)
        with pytest.raises(ValueError, match="action_mask"):
            tiny_model.compute_loss({**batch, "action_mask": torch.ones(2, 25)})


def test_loss_trains():
    torch.manual_seed(0)
    model = build_model("tiny").train()
    batch = _batch(model)
    del batch["noise"], batch["t"]
    loss = model.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.action_encoder.W1.W.grad is not None and model.vision_encoder.embeddings.patch_embedding.weight.grad is not None


def test_parameter_groups_cover_everything_and_freeze():
    model = build_model("tiny", device="meta")
    groups = model.parameter_groups()
    assert set(groups) == set(PARAMETER_GROUPS)
    names = [n for members in groups.values() for n, _ in members]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert all(n.startswith("vision_encoder.") for n, _ in groups["vision_tower"])
    model.set_trainable(vision_tower=False, vl_stack=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for g in ("vision_tower", "vl_stack") for n, _ in groups[g]}
    with pytest.raises(ValueError, match="unknown parameter groups"):
        model.set_trainable(decoder=False)


def test_presets():
    tiny = build_model("tiny", device="meta")
    assert tiny.num_parameters() < 10_000_000
    assert tiny.config.vision.image_size != 256
    assert build_model("small", device="meta").num_parameters() < build_model("nitrogen-500m", device="meta").num_parameters()
    for name, config in PRESETS.items():
        assert config.name == name
        assert config.action_horizon == 18 and config.action_dim == 25


def test_load_vision_tower_from_a_local_directory(tmp_path):
    from transformers import SiglipVisionModel

    torch.manual_seed(0)
    config = get_preset("tiny").replace(vision={"num_hidden_layers": 1}, dit_layers=2)
    tower = SiglipVisionModel(config.vision.model_copy(update={"use_head": True}).to_transformers())
    tower.save_pretrained(tmp_path / "siglip")
    model = build_model(config)
    model.load_vision_tower(tmp_path / "siglip")
    ours = model.vision_encoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in tower.state_dict().items() if not k.startswith("head."))
    other = build_model(config.replace(vision={"num_hidden_layers": 2}))
    with pytest.raises(ValueError, match="does not match the policy's vision config"):
        other.load_vision_tower(tmp_path / "siglip")
    with pytest.raises(FileNotFoundError, match="no such vision tower directory"):
        model.load_vision_tower(tmp_path / "absent")
