"""Acting from raw frames: preprocessing, batching, seeds, multi-frame observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from azote.gamepad import ActionChunk
from azote.policy import Policy, build_model, get_preset, preprocess_frames, sample_actions


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_preprocess_scales_to_minus_one_one():
    frame = np.full((90, 160, 3), 255, np.uint8)
    frame[..., 1] = 0
    frame[..., 2] = 51
    pixels = preprocess_frames(frame, 64)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    assert torch.allclose(pixels[0], torch.tensor(1.0)) and torch.allclose(pixels[1], torch.tensor(-1.0))
    assert torch.allclose(pixels[2], torch.tensor(51 / 255 * 2 - 1))
    assert preprocess_frames([_frame(30, 40), _frame(64, 64)], 64).shape == (2, 3, 64, 64)
    assert preprocess_frames(np.stack([_frame(30, 40)] * 6).reshape(2, 3, 30, 40, 3), 32).shape == (2, 3, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((8, 8, 3), np.float32), 8)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        preprocess_frames(np.zeros((8, 8, 4), np.uint8), 8)


def test_act_on_frames_of_any_size(tiny_model):
    policy = Policy(tiny_model)
    chunk = policy.act(_frame(210, 160), seed=3)
    assert isinstance(chunk, ActionChunk) and len(chunk) == 18
    assert chunk == policy.act(_frame(210, 160), seed=3)
    assert chunk != policy.act(_frame(210, 160), seed=4)
    chunks = policy.act_batch([_frame(210, 160), _frame(720, 1280, 1), _frame(128, 128, 2)], seed=3)
    assert len(chunks) == 3 and all(len(c) == 18 for c in chunks)
    vectors = policy.predict(np.stack([_frame(100, 100), _frame(100, 100, 1)]), seed=0)
    assert vectors.shape == (2, 18, 25) and vectors.dtype == np.float32


def test_seeded_sequence_is_reproducible(tiny_model):
    a, b = Policy(tiny_model, seed=11), Policy(tiny_model, seed=11)
    frame = _frame(64, 80)
    first = [a.act(frame) for _ in range(2)]
    assert first == [b.act(frame) for _ in range(2)]
    assert first[0] != first[1]  # the generator moves on between calls


def test_matches_the_model_sampler(tiny_model, assert_close):
    policy = Policy(tiny_model, num_steps=4)
    frame = _frame(128, 128)
    vectors = policy.predict(frame, seed=5)
    pixels = preprocess_frames(frame, 128)[None, None]
    noise = torch.randn(1, 18, 25, generator=torch.Generator().manual_seed(5))
    assert_close(torch.from_numpy(vectors), sample_actions(tiny_model, pixels, noise=noise, num_steps=4))


def test_several_context_frames():
    torch.manual_seed(0)
    config = get_preset("tiny").replace(num_frames=2, vision={"num_hidden_layers": 1}, dit_layers=2)
    policy = Policy(build_model(config))
    assert policy.model.image_tokens(torch.zeros(1, 2, 3, 128, 128)).shape == (1, 128, 192)
    assert len(policy.act(np.stack([_frame(50, 60), _frame(50, 60, 1)]), seed=0)) == 18
    assert len(policy.act_batch(np.stack([np.stack([_frame(50, 60)] * 2)] * 3), seed=0)) == 3
    with pytest.raises(ValueError, match="expected 1 to 2 frames, got 3"):
        policy.act_batch([np.stack([_frame(50, 60)] * 3)])


def test_wrong_observation_shape(tiny_model):
    with pytest.raises(ValueError, match=r"observation 0: expected \[H, W, 3\]"):
        Policy(tiny_model).act_batch([np.zeros((2, 8, 8, 3), np.uint8)])


def test_bfloat16_stays_close_to_float32():
    torch.manual_seed(0)
    config = get_preset("tiny").replace(vision={"num_hidden_layers": 1}, dit_layers=2)
    model = build_model(config)
    frame = _frame(96, 96)
    full = Policy(model).predict(frame, seed=0)
    half = Policy(build_model(config).to(torch.float32), dtype=torch.bfloat16)
    half.model.load_state_dict(model.state_dict())
    assert half.model.dtype == torch.bfloat16
    low = half.predict(frame, seed=0)
    assert low.dtype == np.float32 and np.abs(low - full).max() < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(tiny_model):
    cpu = Policy(tiny_model).predict(_frame(96, 96), seed=0)
    model = build_model("tiny")
    model.load_state_dict(tiny_model.state_dict())
    gpu = Policy(model, device="cuda", dtype=torch.float32).predict(_frame(96, 96), seed=0)
    assert np.abs(gpu - cpu).max() < 1e-4
