"""Makes the released-behaviour test vectors (`tests/data/released_cases.*`) by running the released NitroGen code.

    python scripts/released_vectors.py --released PATH/TO/NitroGen [--extra-path DIR] [--out tests/data]

`--released` is a checkout (or an extracted copy) of the released repository: the directory that holds the
`nitrogen` package. Its model code imports diffusers and einops (not Azote's dependencies): install them
somewhere and pass that folder with `--extra-path`. Nothing here is imported by Azote or run by the tests; the
tests read only the files this writes.

For each case (a released configuration at toy size) this builds the released `NitroGen` model, gives every
parameter the weights `azote.policy.seeded.seeded_tensor(name, shape)` defines (so the tests rebuild the same
weights from the names, and no weights are shipped), tokenizes the inputs with the released
`NitrogenTokenizer`, and records what the released code computes: `get_action` (or `get_action_with_cfg` for
frame-history guidance) from a recorded noise draw, the tokenizer's decoding, and for some cases the training
loss of `forward` with recorded noise and times. All in float32 on the CPU, dropout off.

Three things of the released environment are stood in for, none of which changes a computed number:
- `SiglipVisionModel.from_pretrained(name)` would download the named tower: it is replaced by a tower built from
  the case's small configuration (the released code keeps its `.vision_model`).
- `set_trainable_parameters` freezes layer 11 of the tower (only towers of 12 layers or more have one): it only
  sets `requires_grad`, and is skipped.
- `polars` is imported by the tokenizer module only to read training parquet files for the game mapping: a
  mapping is given to the tokenizer directly, and an empty module stands in for polars when it is absent.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch

IMAGE, PATCH, VISION_WIDTH = 16, 4, 32  # 16 image tokens per frame
BATCH, HORIZON, ACTION_DIM, STEPS = 2, 8, 25, 4


def released_modules(root: Path, extra: list[Path]) -> dict[str, Any]:
    for path in [*extra, root]:
        sys.path.insert(0, str(path))
    if importlib.util.find_spec("polars") is None:
        sys.modules["polars"] = types.ModuleType("polars")
    from nitrogen import cfg, mm_tokenizers
    from nitrogen.flow_matching_transformer import modules, nitrogen

    return {"cfg": cfg, "tok": mm_tokenizers, "modules": modules, "ng": nitrogen}


def vision_config(layers: int = 2) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=VISION_WIDTH, intermediate_size=64, num_hidden_layers=layers,
                              num_attention_heads=2, image_size=IMAGE, patch_size=PATCH, vision_use_head=False)


def base_config(games: int = 0) -> dict[str, Any]:
    """A released `ckpt_config` (plain data) at toy size; cases change some of its fields."""
    block = {"num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "dropout": 0.2,
             "attention_bias": True, "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000,
             "upcast_attention": False, "max_num_positional_embeddings": 512, "compute_dtype": "float32",
             "final_dropout": True, "positional_embeddings": None}
    return {
        "experiment_name": "released-case",
        "model_cfg": {
            "model_type": "nitrogen", "add_pos_embed": True, "model_dtype": "float32",
            "diffusion_model_cfg": {**block, "output_dim": 32, "norm_type": "ada_norm", "norm_elementwise_affine": False,
                                    "norm_eps": 1e-5, "interleave_self_attention": True, "cross_attention_dim": None},
            "vl_self_attention_cfg": {**block, "num_layers": 1, "output_dim": 26, "interleave_self_attention": False},
            "hidden_size": 32, "max_seq_len": 32, "action_dim": ACTION_DIM, "action_horizon": HORIZON,
            "noise_beta_alpha": 1.6, "noise_beta_beta": 0.8, "noise_s": 0.999, "num_timestep_buckets": 1000,
            "num_inference_timesteps": STEPS, "max_num_embodiments": 1,
            "vision_encoder_name": "google/siglip2-large-patch16-256", "vision_hidden_size": VISION_WIDTH,
            "add_view_embed": False, "tune_vision_tower": True, "tune_mm_projector": True,
            "tune_diffusion_model": True, "tune_multi_projector": True, "tune_vl_mixing": True,
        },
        "tokenizer_cfg": {"tokenizer_id": "nitrogen", "training": False, "num_visual_tokens_per_frame": 16,
                          "max_action_dim": ACTION_DIM, "max_sequence_length": 16, "action_horizon": HORIZON,
                          "game_mapping_cfg": {"src_files": ["games.parquet"]} if games else None,
                          "old_layout": False},
        "modality_cfg": {"frame_per_sample": 1, "frame_spacing": HORIZON, "action_per_chunk": HORIZON,
                         "action_shift": 3, "action_interleaving": False, "token_set": "new"},
    }


def case(name: str, changes: dict[str, Any], *, games: int = 0, frames: int = 1, present: list[list[bool]] | None = None,
         game_ids: list[int] | None = None, cfg_scale: float = 1.0, loss: bool = False, decode: bool = False,
         doc: str = "") -> dict[str, Any]:
    config = base_config(games)
    config["modality_cfg"]["frame_per_sample"] = frames
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return {"name": name, "doc": doc, "ckpt_config": config, "games": games, "frames": frames,
            "present": present or [[True] * frames] * BATCH, "game_ids": game_ids, "cfg_scale": cfg_scale,
            "loss": loss, "decode": decode}


DIT, VL, TOK = "model_cfg.diffusion_model_cfg", "model_cfg.vl_self_attention_cfg", "tokenizer_cfg"
CASES = [
    case("base", {}, loss=True, doc="the released layout at toy size, nothing changed"),
    case("vl_padding", {f"{TOK}.max_sequence_length": 25}, loss=True,
         doc="max_sequence_length 25 > 16 image tokens: 9 zero vectors left of them, unmasked"),
    case("gelu_dit", {f"{DIT}.activation_fn": "gelu"}, doc="exact GELU in the DiT, tanh GELU in the VL stack"),
    case("gelu_vl", {f"{VL}.activation_fn": "gelu"}, doc="exact GELU in the VL stack, tanh GELU in the DiT"),
    case("norm_eps", {f"{DIT}.norm_eps": 0.05}, doc="the DiT's norm_eps 0.05 (the released code gives it to the "
         "feed-forward norm only)"),
    case("old_layout", {f"{TOK}.old_layout": True}, decode=True,
         doc="old_layout: the model's vector is [left stick, right stick, buttons]; decoded by the tokenizer"),
    case("game_mapping", {f"{TOK}.max_sequence_length": 17}, games=3, game_ids=[2, 0],
         doc="a game mapping of 3 games (token first); ids 2 and 0 (unconditional: the embedding's row 0)"),
    case("frames", {f"{TOK}.max_sequence_length": 48}, frames=3, present=[[True, True, True], [False, True, True]],
         loss=True, doc="3 context frames; the second observation has not seen its first frame yet (dropped)"),
    case("sinusoidal", {f"{DIT}.positional_embeddings": "sinusoidal", f"{DIT}.max_num_positional_embeddings": 40,
                        f"{VL}.positional_embeddings": "sinusoidal", f"{VL}.max_num_positional_embeddings": 40,
                        f"{TOK}.max_sequence_length": 20}, games=2, game_ids=[1, 2],
         doc="sinusoidal position tables in both stacks, with padding and a game token (their order matters)"),
    case("history_guidance", {f"{TOK}.max_sequence_length": 33}, games=2, frames=2,
         present=[[True, True], [False, True]], game_ids=[2, 1], cfg_scale=2.5,
         doc="get_action_with_cfg, cfg_scale 2.5: with all frames present vs the last frame only"),
    case("history_guidance_one_frame", {f"{TOK}.max_sequence_length": 17}, games=2, game_ids=[1, 2], cfg_scale=3.0,
         doc="get_action_with_cfg with one context frame: both passes alike, the game token left empty"),
    case("cross_width", {"model_cfg.hidden_size": 48, f"{DIT}.num_attention_heads": 3, f"{DIT}.output_dim": 48,
                         f"{DIT}.cross_attention_dim": VISION_WIDTH, f"{DIT}.interleave_self_attention": False,
                         f"{DIT}.num_layers": 3, "model_cfg.add_pos_embed": False},
         doc="DiT 48 wide over 32-wide VL tokens, every block cross-attention, no learned positions"),
]


def build(mods: dict[str, Any], spec: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import SiglipVisionModel

    from azote.policy.seeded import fill_seeded_

    ng, tok = mods["ng"], mods["tok"]
    ckpt = mods["cfg"].CkptConfig.model_validate(copy.deepcopy(spec["ckpt_config"]))
    tokenizer_cfg = ckpt.tokenizer_cfg.model_copy(update={"game_mapping_cfg": None})
    tokenizer = tok.NitrogenTokenizer(tokenizer_cfg)
    mapping = None
    if spec["games"]:
        mapping = {None: 0, **{f"game{i}": i for i in range(1, spec["games"] + 1)}}
        tokenizer.game_mapping = mapping

    class _Tower:
        @staticmethod
        def from_pretrained(name: str) -> Any:
            return types.SimpleNamespace(vision_model=SiglipVisionModel(vision_config()))

    saved = ng.SiglipVisionModel, ng.NitroGen.set_trainable_parameters
    ng.SiglipVisionModel, ng.NitroGen.set_trainable_parameters = _Tower, lambda self, **kw: None
    try:
        model = ng.NitroGen(ckpt.model_cfg, game_mapping=mapping)
    finally:
        ng.SiglipVisionModel, ng.NitroGen.set_trainable_parameters = saved
    fill_seeded_(model)
    tokenizer.eval()
    return model.eval(), tokenizer


def batch_inputs(tokenizer: Any, pixels: torch.Tensor, present: list[list[bool]], games: list[Any]) -> dict[str, Any]:
    rows = []
    for b in range(pixels.shape[0]):
        dropped = torch.tensor([not p for p in present[b]])
        rows.append(tokenizer.encode({"frames": pixels[b], "dropped_frames": dropped, "game": games[b]}))
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif hasattr(values[0], "shape"):
            out[key] = torch.stack([torch.as_tensor(v) for v in values])
        else:
            out[key] = values
    return out


def run_case(mods: dict[str, Any], spec: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
    model, tokenizer = build(mods, spec)
    g = torch.Generator().manual_seed(1000 + index)
    frames = spec["frames"]
    pixels = torch.rand(BATCH, frames, 3, IMAGE, IMAGE, generator=g) * 2 - 1
    present = spec["present"]
    for b in range(BATCH):  # frames not seen yet are zeros, as the released session fills them
        for f in range(frames):
            if not present[b][f]:
                pixels[b, f] = 0
    ids = spec["game_ids"] or [0] * BATCH
    names = [None if i == 0 else f"game{i}" for i in ids]
    data = batch_inputs(tokenizer, pixels, present, names if spec["games"] else [None] * BATCH)
    out = {"pixel_values": pixels, "frames_present": torch.tensor(present)}
    if spec["game_ids"] is not None:
        out["game_ids"] = torch.tensor(ids)
    shape = (BATCH, HORIZON, ACTION_DIM)
    torch.manual_seed(2000 + index)
    out["initial_noise"] = torch.randn(shape)
    torch.manual_seed(2000 + index)
    if spec["cfg_scale"] == 1.0:
        result = model.get_action(data)
    else:
        last_only = [[False] * (frames - 1) + [True]] * BATCH
        uncond = batch_inputs(tokenizer, pixels, last_only, [None] * BATCH)
        result = model.get_action_with_cfg(data, uncond, cfg_scale=spec["cfg_scale"])
    out["actions"] = result["action_tensor"].clone()
    if spec["decode"]:
        decoded = tokenizer.decode({"action_tensor": out["actions"]})
        out.update({k: decoded[k].clone() for k in ("j_left", "j_right", "buttons")})
    if spec["loss"]:
        out.update(released_loss(model, data, g))
    return out


def released_loss(model: Any, data: dict[str, Any], g: torch.Generator) -> dict[str, torch.Tensor]:
    actions = torch.rand(BATCH, HORIZON, ACTION_DIM, generator=g)
    noise = torch.randn(BATCH, HORIZON, ACTION_DIM, generator=g)
    t = torch.tensor([0.2, 0.9])
    batch = {**data, "actions": actions, "actions_mask": torch.ones_like(actions, dtype=torch.bool),
             "has_real_action": torch.ones(BATCH, dtype=torch.bool)}
    saved_randn_like, saved_time = torch.randn_like, model.sample_time
    torch.randn_like = lambda x, *a, **k: noise.clone()
    model.sample_time = lambda batch_size, device, dtype: t.to(device, dtype)
    try:
        with torch.no_grad():
            loss = model(batch)["loss"]
    finally:
        torch.randn_like, model.sample_time = saved_randn_like, saved_time
    return {"train_actions": actions, "train_noise": noise, "train_t": t, "train_loss": loss.reshape(1).detach()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--released", type=Path, required=True, help="directory holding the released `nitrogen` package")
    parser.add_argument("--extra-path", type=Path, action="append", default=[],
                        help="a folder with diffusers and einops (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    args = parser.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    mods = released_modules(args.released, args.extra_path)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"vision": vision_config().to_dict(), "steps": STEPS, "cases": {}}
    for i, spec in enumerate(CASES):
        for key, value in run_case(mods, spec, i).items():
            tensors[f"{spec['name']}.{key}"] = value.contiguous().float() if value.is_floating_point() else value.contiguous()
        meta["cases"][spec["name"]] = {k: spec[k] for k in ("doc", "ckpt_config", "games", "cfg_scale")}
        print(f"{spec['name']}: done", file=sys.stderr)
    meta["vision"] = {k: meta["vision"][k] for k in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                     "num_attention_heads", "image_size", "patch_size", "num_channels",
                                                     "layer_norm_eps", "hidden_act", "vision_use_head")}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "released_cases.safetensors"))
    (args.out / "released_cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(CASES)} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
