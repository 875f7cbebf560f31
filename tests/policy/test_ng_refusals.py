"""Released configuration fields that Azote does not compute are refused in one line naming the field and value;
game-mapping checkpoints convert with their game token."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from azote.policy import ConfigError, NitroGenModel, VisionConfig, build_model, convert_ng_checkpoint, from_pretrained
from azote.policy.checkpoint import read_games
from azote.policy.ng_import import IGNORED_FIELDS, config_from_ng
from azote.policy.seeded import fill_seeded_

DATA = Path(__file__).resolve().parents[1] / "data"
DIT, VL, TOK = "model_cfg.diffusion_model_cfg", "model_cfg.vl_self_attention_cfg", "tokenizer_cfg"


def released_case(name: str = "base") -> tuple[dict[str, Any], VisionConfig]:
    meta = json.loads((DATA / "released_cases.json").read_text())
    return copy.deepcopy(meta["cases"][name]["ckpt_config"]), VisionConfig.from_transformers_dict(meta["vision"])


def with_field(cfg: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = cfg
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return cfg


# field, value, words the one-line error must hold (besides the field)
REFUSED = [
    (f"{DIT}.activation_fn", "geglu", "'gelu-approximate' and 'gelu'"),
    (f"{VL}.activation_fn", "swiglu", "'gelu-approximate' and 'gelu'"),
    (f"{DIT}.attention_bias", False, "biased attention"),
    (f"{VL}.attention_bias", False, "biased attention"),
    (f"{DIT}.norm_type", "layer_norm", "'ada_norm'"),
    (f"{DIT}.norm_elementwise_affine", True, "non-affine"),
    (f"{DIT}.output_dim", 26, "hidden_size 32"),
    (f"{DIT}.attention_head_dim", 8, "(16: must equal model_cfg.hidden_size 32)"),
    (f"{VL}.attention_head_dim", 8, "(16: must equal the vision width 32)"),
    (f"{DIT}.cross_attention_dim", 24, "cannot run"),
    ("model_cfg.max_num_embodiments", 2, "one embodiment"),
    ("model_cfg.vision_hidden_size", 768, "32 wide"),
    ("model_cfg.model_type", "nitrogen_ar", "flow-matching"),
    (f"{TOK}.tokenizer_id", "other", "'nitrogen' tokenizer"),
    (f"{TOK}.num_visual_tokens_per_frame", 256, "16 tokens per frame"),
    (f"{TOK}.max_action_dim", 32, "action_dim 25"),
    (f"{TOK}.action_horizon", 16, "action_horizon 8"),
    (f"{TOK}.max_sequence_length", 10, "shorter than the 16 VL tokens"),
]


@pytest.mark.parametrize("field,value,words", REFUSED, ids=[f"{f.rsplit('.', 1)[-1]}={v}" for f, v, _ in REFUSED])
def test_refused_field_is_named_with_its_value(field, value, words):
    cfg, vision = released_case()
    with pytest.raises(ConfigError) as err:
        config_from_ng(with_field(cfg, field, value), vision, "ng.pt", use_head=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("ng.pt: ")
    assert f"{field} = {value!r}" in message or f"{field.rsplit('.', 1)[-1]} = {value!r}" in message
    assert words in message


def test_non_siglip_tower_is_refused():
    cfg, vision = released_case()
    with pytest.raises(ConfigError, match=r"model_cfg.vision_encoder_name = 'facebook/dinov2-base': not a SigLIP"):
        config_from_ng(with_field(cfg, "model_cfg.vision_encoder_name", "facebook/dinov2-base"), vision, "ng.pt")


def test_sinusoidal_table_shorter_than_the_sequence_is_refused():
    cfg, vision = released_case()
    with_field(cfg, f"{VL}.positional_embeddings", "sinusoidal")
    with pytest.raises(ConfigError, match=r"vl_sinusoidal_positions 8 is fewer than the 16 VL tokens"):
        config_from_ng(with_field(cfg, f"{VL}.max_num_positional_embeddings", 8), vision, "ng.pt", use_head=False)
    cfg, vision = released_case()
    with_field(cfg, f"{DIT}.positional_embeddings", "sinusoidal")
    with pytest.raises(ConfigError, match=r"dit_sinusoidal_positions 4 is fewer than action_horizon 8"):
        config_from_ng(with_field(cfg, f"{DIT}.max_num_positional_embeddings", 4), vision, "ng.pt", use_head=False)


def test_fields_left_out_take_the_released_defaults():
    cfg, vision = released_case()
    del cfg[TOK]["max_sequence_length"]  # released default 300
    del cfg["model_cfg"]["diffusion_model_cfg"]["positional_embeddings"]  # released default 'sinusoidal'
    del cfg["model_cfg"]["diffusion_model_cfg"]["max_num_positional_embeddings"]  # 512
    config = config_from_ng(cfg, vision, "ng.pt", use_head=False)
    assert config.vl_sequence_length == 300 and config.dit_sinusoidal_positions == 512


def test_other_positional_embedding_names_mean_none_as_released():
    cfg, vision = released_case()
    config = config_from_ng(with_field(cfg, f"{DIT}.positional_embeddings", "rope"), vision, "ng.pt", use_head=False)
    assert config.dit_sinusoidal_positions == 0


def test_ignored_fields_are_documented():
    assert "modality_cfg.action_interleaving" in IGNORED_FIELDS and "*.upcast_attention" in IGNORED_FIELDS


def test_game_mapping_without_game_weights_is_named(tmp_path):
    cfg, vision = released_case("game_mapping")
    with pytest.raises(ConfigError, match=r"tokenizer_cfg.game_mapping_cfg is set \(a game-ID token\) but the weights "
                                          r"have no game_embedding.weight"):
        config_from_ng(cfg, vision, "ng.pt", use_head=False)


def test_game_weights_without_game_mapping_are_named():
    cfg, vision = released_case("base")
    with pytest.raises(ConfigError, match=r"tokenizer_cfg.game_mapping_cfg = None \(but the weights have a game "
                                          r"embedding \(game_embedding.weight\)\)"):
        config_from_ng(cfg, vision, "ng.pt", use_head=False, num_games=3)


def _game_ng_pt(tmp_path: Path) -> tuple[Path, NitroGenModel, VisionConfig]:
    cfg, vision = released_case("game_mapping")
    config = config_from_ng(cfg, vision, "case", use_head=False, num_games=3)
    model = fill_seeded_(build_model(config)).eval()
    ng = tmp_path / "ng.pt"
    torch.save({"model": model.state_dict(), "step": 1, "epoch": 0, "ckpt_config": cfg}, ng)
    return ng, model, vision


def test_game_mapping_checkpoint_converts_with_its_vocabulary(tmp_path):
    ng, model, vision = _game_ng_pt(tmp_path)
    mapping = tmp_path / "game_mapping.json"  # as the released tokenizer writes it: null -> 0
    mapping.write_text(json.dumps({"null": 0, "Alpha": 1, "Beta": 2, "Gamma": 3}))
    out = convert_ng_checkpoint(ng, tmp_path / "ckpt", vision=vision, game_mapping=mapping)
    assert read_games(out) == ["Alpha", "Beta", "Gamma"]
    loaded = from_pretrained(out)
    assert loaded.config.num_games == 3
    assert torch.equal(loaded.game_embedding.weight, model.game_embedding.weight)
    # without names it still converts (ids 1..3), and a vocabulary of the wrong size is refused
    assert not (convert_ng_checkpoint(ng, tmp_path / "nonames", vision=vision) / "games.json").exists()
    mapping.write_text(json.dumps(["Alpha", "Beta"]))
    with pytest.raises(ConfigError, match="2 games, but the checkpoint's game embedding holds 3"):
        convert_ng_checkpoint(ng, tmp_path / "bad", vision=vision, game_mapping=mapping)


def test_cli_convert_names_the_games(tmp_path):
    from typer.testing import CliRunner

    from azote.cli.main import app

    ng, _, vision = _game_ng_pt(tmp_path)
    tower = tmp_path / "tower.json"
    tower.write_text(json.dumps({"vision": vision.model_dump()}))
    runner = CliRunner()
    result = runner.invoke(app, ["convert-checkpoint", str(ng), str(tmp_path / "a"), "--vision-config", str(tower)])
    assert result.exit_code == 0, result.output
    assert "game token for 3 games (ids 1..3; 0 = no game)" in result.stdout and "--game-mapping" in result.stdout
    mapping = tmp_path / "game_mapping.json"
    mapping.write_text(json.dumps({"null": 0, "A": 1, "B": 2, "C": 3}))
    result = runner.invoke(app, ["convert-checkpoint", str(ng), str(tmp_path / "b"), "--vision-config", str(tower),
                                 "--game-mapping", str(mapping)])
    assert result.exit_code == 0, result.output
    assert read_games(tmp_path / "b") == ["A", "B", "C"]
