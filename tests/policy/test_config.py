"""Configuration validation and presets."""

from __future__ import annotations

import json

import pytest

from azote.policy import PRESETS, ConfigError, PolicyConfig, VisionConfig, get_preset


def test_json_round_trip(tmp_path):
    for config in PRESETS.values():
        path = tmp_path / f"{config.name}.json"
        path.write_text(config.to_json())
        assert PolicyConfig.load(path) == config


def test_validation_names_the_field():
    with pytest.raises(ConfigError, match="dit_heads"):
        get_preset("tiny").replace(dit_heads=5)
    with pytest.raises(ConfigError, match="vision.image_size 100 is not a multiple of vision.patch_size 16"):
        get_preset("tiny").replace(vision={"image_size": 100})
    with pytest.raises(ConfigError, match="vl_heads"):
        get_preset("tiny").replace(vl_heads=7)
    with pytest.raises(ConfigError, match=r"my\.json: invalid policy configuration: dropout"):
        PolicyConfig.from_dict({**json.loads(get_preset("tiny").to_json()), "dropout": 2.0}, "my.json")
    with pytest.raises(ConfigError, match="unknown policy preset 'huge'"):
        get_preset("huge")


def test_vision_config_from_transformers():
    full = {"model_type": "siglip", "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                                       "num_attention_heads": 4, "image_size": 64, "patch_size": 16}}
    vision = VisionConfig.from_transformers_dict(full)
    assert vision.num_patches == 16 and vision.to_transformers().hidden_size == 64
    with pytest.raises(ConfigError, match="not a SigLIP vision tower"):
        VisionConfig.from_transformers_dict({"model_type": "clip_vision_model"})


def test_released_preset():
    config = get_preset("nitrogen-500m")
    assert (config.hidden_size, config.dit_layers, config.vl_layers, config.action_horizon) == (1024, 8, 4, 18)
    assert config.vision.image_size == 256 and config.num_image_tokens == 256


def test_new_released_fields_are_bounded():
    tiny = get_preset("tiny")
    with pytest.raises(ConfigError, match="vl_sequence_length"):
        tiny.replace(vl_sequence_length=10**7)
    with pytest.raises(ConfigError, match="vl_sequence_length 10 is shorter than the 64 VL tokens"):
        tiny.replace(vl_sequence_length=10)
    with pytest.raises(ConfigError, match="dit_sinusoidal_positions"):
        tiny.replace(dit_sinusoidal_positions=10**9)
    with pytest.raises(ConfigError, match="sinusoidal tables would hold"):  # 128 x 65536 x 1024 = 8.6e9 numbers
        tiny.replace(hidden_size=1024, dit_heads=8, dit_layers=128, dit_sinusoidal_positions=65536)
    with pytest.raises(ConfigError, match="dit_activation"):
        tiny.replace(dit_activation="geglu")
    with pytest.raises(ConfigError, match="action_layout"):
        tiny.replace(action_layout="sideways")
