"""Each field of the released configuration computed as the released code computes it.

The vectors (`tests/data/released_cases.*`) were made once by `scripts/released_vectors.py`, which runs the
released model definition and tokenizer on toy-size configurations with the weights `azote.policy.seeded`
defines from tensor names (float32, CPU). Here each case's released `ckpt_config` goes through Azote's importer,
the model is built and given the same weights, and its sampled chunks (and decoded actions, and training loss)
are compared with the released ones: within 1e-5 absolute and 1e-5 relative to the reference's norm.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from azote.gamepad import BUTTON_SLOTS, ActionChunk
from azote.policy import VisionConfig, build_model, sample_actions
from azote.policy.ng_import import config_from_ng
from azote.policy.seeded import fill_seeded_

DATA = Path(__file__).resolve().parents[1] / "data"


@lru_cache(maxsize=1)
def _data() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta = json.loads((DATA / "released_cases.json").read_text())
    return meta, load_file(str(DATA / "released_cases.safetensors"))


def case(name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta, tensors = _data()
    prefix = f"{name}."
    return meta["cases"][name], {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@lru_cache(maxsize=None)
def model_for(name: str) -> Any:
    meta, _ = _data()
    spec, _ = case(name)
    vision = VisionConfig.from_transformers_dict(meta["vision"])
    config = config_from_ng(spec["ckpt_config"], vision, f"case {name}", use_head=False,
                            num_games=spec["games"] or None)
    return fill_seeded_(build_model(config)).eval()


def sample(name: str, cached: bool = True) -> torch.Tensor:
    spec, v = case(name)
    model = model_for(name)
    return sample_actions(model, v["pixel_values"], noise=v["initial_noise"], game_ids=v.get("game_ids"),
                        frames_present=v["frames_present"], history_guidance=spec["cfg_scale"], cached=cached)


def check_sampling(name: str, assert_close: Any) -> Any:
    _, v = case(name)
    for cached in (True, False):
        assert_close(model_for(name).to_model_layout(sample(name, cached)), v["actions"])
    return model_for(name).config


def check_loss(name: str, assert_close: Any) -> None:
    _, v = case(name)
    batch = {"pixel_values": v["pixel_values"], "actions": v["train_actions"], "noise": v["train_noise"],
             "t": v["train_t"], "frames_present": v["frames_present"]}
    with torch.no_grad():
        assert_close(model_for(name).compute_loss(batch).reshape(1), v["train_loss"])


def test_base_case(assert_close):
    config = check_sampling("base", assert_close)
    assert config.vl_sequence_length is None and config.dit_activation == "gelu-approximate"
    check_loss("base", assert_close)


def test_vl_padding_to_max_sequence_length(assert_close):
    """max_sequence_length 25 over 16 image tokens: 9 unmasked zero vectors before them."""
    config = check_sampling("vl_padding", assert_close)
    assert config.vl_sequence_length == 25 and config.vl_length == 25
    check_loss("vl_padding", assert_close)
    # the padding changes the numbers: the unpadded model is off
    unpadded = fill_seeded_(build_model(config.replace(vl_sequence_length=None))).eval()
    _, v = case("vl_padding")
    other = sample_actions(unpadded, v["pixel_values"], noise=v["initial_noise"])
    assert (other - v["actions"]).abs().max() > 1e-3


def test_exact_gelu_in_the_dit(assert_close):
    config = check_sampling("gelu_dit", assert_close)
    assert (config.dit_activation, config.vl_activation) == ("gelu", "gelu-approximate")


def test_exact_gelu_in_the_vl_stack(assert_close):
    config = check_sampling("gelu_vl", assert_close)
    assert (config.dit_activation, config.vl_activation) == ("gelu-approximate", "gelu")


def test_dit_norm_eps_on_the_feed_forward_norm_only(assert_close):
    config = check_sampling("norm_eps", assert_close)
    assert config.norm_eps == 0.05


def test_old_layout_decoding(assert_close):
    _, v = case("old_layout")
    config = check_sampling("old_layout", assert_close)
    assert config.action_layout == "sticks_first"
    chunks = [ActionChunk.from_model_vectors(a) for a in sample("old_layout").numpy()]
    for b, chunk in enumerate(chunks):
        np.testing.assert_array_equal(chunk.buttons, v["buttons"][b][:, BUTTON_SLOTS].numpy().astype(np.uint8))
        np.testing.assert_allclose(chunk.j_left, v["j_left"][b].numpy(), atol=1e-5)
        np.testing.assert_allclose(chunk.j_right, v["j_right"][b].numpy(), atol=1e-5)
    assert 0 < v["buttons"].mean() < 1  # the decoded buttons are not all alike


def test_game_mapping_checkpoint(assert_close):
    """A game token (first in the VL sequence) from a 3-game vocabulary; id 0 is the embedding's row 0."""
    config = check_sampling("game_mapping", assert_close)
    assert config.num_games == 3 and config.vl_sequence_length is None  # 17 = game token + 16 image tokens


def test_several_context_frames_with_a_frame_not_seen_yet(assert_close):
    config = check_sampling("frames", assert_close)
    assert config.num_frames == 3
    check_loss("frames", assert_close)


def test_sinusoidal_positional_embeddings(assert_close):
    config = check_sampling("sinusoidal", assert_close)
    assert (config.dit_sinusoidal_positions, config.vl_sinusoidal_positions) == (40, 40)
    assert config.vl_sequence_length == 20 and config.num_games == 2
    # the tables Azote builds are the released ones (the vectors were made with the released tables)
    model = model_for("sinusoidal")
    assert any(k.endswith("pos_embed.pe") for k in model.state_dict())


def test_cross_attention_width_and_no_interleaving(assert_close):
    config = check_sampling("cross_width", assert_close)
    assert (config.hidden_size, config.interleave_self_attention, config.add_pos_embed) == (48, False, False)


def test_frame_history_guidance_as_released(assert_close):
    """get_action_with_cfg: v = cond + s (cond - uncond), uncond = the last frame only, game token empty."""
    spec, v = case("history_guidance")
    assert spec["cfg_scale"] == 2.5
    check_sampling("history_guidance", assert_close)


def test_frame_history_guidance_with_one_frame(assert_close):
    check_sampling("history_guidance_one_frame", assert_close)
    # both passes alike: the plain sampler with the game token left empty computes it
    spec, v = case("history_guidance_one_frame")
    model = model_for("history_guidance_one_frame")
    ids = v["game_ids"]
    plain = sample_actions(model, v["pixel_values"], noise=v["initial_noise"], game_ids=ids)
    assert (plain - v["actions"]).abs().max() > 1e-4  # with the game's token the chunk differs


@pytest.mark.parametrize("name", ["base", "game_mapping", "sinusoidal"])
def test_weights_are_a_function_of_names(name):
    """The premise of these vectors: Azote's parameter names are the released ones, so the same weights."""
    model = model_for(name)
    again = fill_seeded_(build_model(model.config)).eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
