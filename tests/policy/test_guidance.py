"""The two guidance modes (in the released convention v = v_cond + s (v_cond - v_uncond)), frames not seen yet,
and the fast inference paths (packed CPU weights, graphed steps, the default dtype)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from azote.policy import Policy, build_model, fast, get_preset, sample_actions
from azote.policy.sampling import last_frame_only
from azote.policy.seeded import fill_seeded_


def _micro(**changes):
    config = get_preset("tiny").replace(vision={"num_hidden_layers": 1, "image_size": 32, "hidden_size": 48,
                                                "intermediate_size": 96}, vl_heads=3, dit_layers=2, **changes)
    return fill_seeded_(build_model(config)).eval()


def _inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    s = c.vision.image_size
    return (torch.rand(batch, c.num_frames, 3, s, s, generator=g) * 2 - 1,
            torch.randn(batch, c.action_horizon, c.action_dim, generator=g))


def _one_step_velocity(model, pixels, noise, **kw):
    """With one Euler step from bucket 0, x1 = x0 + v: the (guided) velocity the sampler used."""
    return sample_actions(model, pixels, noise=noise, num_steps=1, **kw) - noise


def test_game_guidance_is_cond_plus_s_times_cond_minus_uncond(assert_close):
    model = _micro(num_games=3)
    pixels, noise = _inputs(model)
    ids = torch.tensor([2, 3])
    v_cond = _one_step_velocity(model, pixels, noise, game_ids=ids)
    v_uncond = _one_step_velocity(model, pixels, noise, game_ids=torch.zeros(2, dtype=torch.long))
    for s in (0.5, 2.0):
        for cached in (True, False):
            guided = _one_step_velocity(model, pixels, noise, game_ids=ids, game_guidance=s, cached=cached)
            assert_close(guided, v_cond + s * (v_cond - v_uncond))
    # 0 is no guidance; the old classic weight w is s = w - 1
    assert torch.equal(_one_step_velocity(model, pixels, noise, game_ids=ids, game_guidance=0.0), v_cond)
    assert_close(_one_step_velocity(model, pixels, noise, game_ids=ids, guidance_scale=3.0),
                 _one_step_velocity(model, pixels, noise, game_ids=ids, game_guidance=2.0))


def test_history_guidance_is_cond_plus_s_times_cond_minus_last_frame_only(assert_close):
    model = _micro(num_frames=3, num_games=2)
    pixels, noise = _inputs(model)
    present = torch.tensor([[True, True, True], [False, True, True]])
    model_cond = dict(frames_present=present)
    # both passes have the game token empty (a zero vector), as the released guided sampler leaves it
    with torch.no_grad():
        tokens = model.image_tokens(pixels)
        x, buckets = noise, torch.zeros(2, dtype=torch.long)

        def velocity(mask):
            vl = model.vl_tokens(tokens, None, mask, empty_game_token=True)
            return model.velocity(x, buckets, vl_tokens=vl)

        v_cond, v_uncond = velocity(present), velocity(last_frame_only(2, 3))
    for s in (0.0, 2.5):
        guided = _one_step_velocity(model, pixels, noise, history_guidance=s, **model_cond)
        assert_close(guided, v_cond + s * (v_cond - v_uncond))
    # 1.0 is no guidance (the released session then runs the plain sampler, game token included)
    plain = _one_step_velocity(model, pixels, noise, game_ids=torch.tensor([1, 2]), **model_cond)
    assert torch.equal(_one_step_velocity(model, pixels, noise, history_guidance=1.0, game_ids=torch.tensor([1, 2]),
                                          **model_cond), plain)
    with pytest.raises(ValueError, match="cannot be combined"):
        sample_actions(model, pixels, noise=noise, game_ids=torch.tensor([1, 2]), game_guidance=1.0, history_guidance=2.0)


def test_padding_and_frames_present_layout():
    """Zero vectors, then the game token, then the present frames' tokens (the released tokenizer's order)."""
    model = _micro(num_frames=2, num_games=2, vl_sequence_length=40)
    n = model.config.vision.num_patches
    tokens = torch.randn(2, 2 * n, model.config.vision.hidden_size)
    present = torch.tensor([[True, True], [False, True]])
    seq = model.vl_sequence(tokens, torch.tensor([1, 2]), present)
    assert seq.shape == (2, 40, 48)
    game = model.game_embedding.weight
    assert torch.equal(seq[0, 40 - 2 * n - 1], game[1]) and torch.equal(seq[0, 40 - 2 * n:], tokens[0])
    assert torch.equal(seq[1, 40 - n - 1], game[2]) and torch.equal(seq[1, 40 - n:], tokens[1, n:])
    assert not seq[0, :40 - 2 * n - 1].any() and not seq[1, :40 - n - 1].any()
    empty = model.vl_sequence(tokens, None, present, empty_game_token=True)
    assert not empty[1, 40 - n - 1].any()


def test_policy_with_fewer_frames_than_context_and_guidance():
    model = _micro(num_frames=2)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    policy = Policy(model, history_guidance=2.0)
    pixels, present = policy.observations([frames[1:]])  # one frame seen so far
    assert present.tolist() == [[False, True]] and not pixels[0, 0].any()
    a = policy.predict([frames[1:]], seed=0)
    b = Policy(model).predict([frames[1:]], seed=0)
    # one frame seen: conditional and unconditional alike, so guidance changes nothing but the empty game token
    np.testing.assert_allclose(a, b, atol=1e-5)
    full = policy.predict([frames], seed=0)
    assert np.abs(full - a).max() > 1e-4
    with pytest.raises(ValueError, match="cannot be combined"):
        Policy(model, game_guidance=1.0, history_guidance=2.0)
    assert Policy(model, guidance_scale=2.5).game_guidance == 1.5 and Policy(model).guidance_scale == 1.0


def test_sticks_first_model_returns_the_standard_layout(assert_close):
    model = _micro(action_layout="sticks_first")
    pixels, noise = _inputs(model)
    out = sample_actions(model, pixels, noise=noise)
    raw = noise.clone()
    cache = model.encode_observation(pixels)
    buckets = [int(k / 16 * 1000) for k in range(16)]
    with torch.no_grad():
        for b in buckets:
            raw = raw + model.velocity(raw, torch.full((2,), b), cache=cache) / 16
    assert_close(out, torch.cat([raw[..., 4:], raw[..., :4]], dim=-1))
    assert_close(model.to_model_layout(out), raw)


def test_packed_cpu_weights_compute_the_same(assert_close):
    model = _micro()
    pixels, noise = _inputs(model)
    before = sample_actions(model, pixels, noise=noise)
    assert fast.pack_for_cpu(model) == 0  # too small to pay
    assert fast.pack_for_cpu(model, min_elements=0) > 0 and fast.is_packed(model)
    assert_close(sample_actions(model, pixels, noise=noise), before)
    assert_close(sample_actions(model, pixels, noise=noise, cached=False), before)
    # weights changed in place: the stale packed copy is not used
    with torch.no_grad():
        model.model.proj_out_2.weight.mul_(2.0)
        model.action_decoder.layer2.W.mul_(2.0)
    changed = sample_actions(model, pixels, noise=noise)
    fast.unpack(model)
    assert not fast.is_packed(model)
    assert_close(sample_actions(model, pixels, noise=noise), changed)
    assert not torch.allclose(changed, before)


def test_graphed_steps_run_eagerly_on_cpu(assert_close):
    model = _micro()
    pixels, noise = _inputs(model)
    steps = fast.GraphedSteps(model, batch=2, graph=False)
    assert_close(steps.run(model.encode_observation(pixels), noise), sample_actions(model, pixels, noise=noise))
    with pytest.raises(ValueError, match="CUDA"):
        fast.GraphedSteps(model, batch=2, graph=True)


def test_default_dtype(monkeypatch):
    assert fast.default_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(fast, "cpu_has_native_bf16", lambda: False)
    assert fast.default_dtype("cpu") == torch.float32
    monkeypatch.setattr(fast, "cpu_has_native_bf16", lambda: True)
    assert fast.default_dtype("cpu") == torch.bfloat16


def test_bfloat16_within_the_documented_tolerance():
    """README: a bfloat16 chunk within 0.05 of float32's (same frame and noise), at most 1% of buttons changed."""
    from azote.gamepad import ActionChunk

    model = _micro()
    pixels, noise = _inputs(model, batch=4)
    full = sample_actions(model, pixels, noise=noise)
    low = sample_actions(fill_seeded_(build_model(model.config)).to(torch.bfloat16).eval(), pixels.bfloat16(), noise=noise)
    assert low.dtype == torch.float32 and (low - full).abs().max() < 0.05
    flips = sum(int((ActionChunk.from_model_vectors(a).buttons != ActionChunk.from_model_vectors(b).buttons).sum())
                for a, b in zip(low.numpy(), full.numpy()))
    assert flips <= 0.01 * 4 * 18 * 17
