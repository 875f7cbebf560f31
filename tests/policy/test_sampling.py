"""The cached sampler computes what the straightforward one does; options: batching, steps, guidance, seeds."""

from __future__ import annotations

import pytest
import torch

from azote.policy import ShapeError, build_model, get_preset, sample_actions
from azote.policy.sampling import euler_buckets


def _pixels(model, batch: int, seed: int = 0) -> torch.Tensor:
    s = model.config.vision.image_size
    return torch.rand(batch, 1, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("steps", [16, 4])
def test_cached_equals_straightforward(tiny_model, assert_close, steps):
    pixels = _pixels(tiny_model, 3)
    noise = torch.randn(3, 18, 25, generator=torch.Generator().manual_seed(1))
    cached = sample_actions(tiny_model, pixels, noise=noise, num_steps=steps, cached=True)
    straight = sample_actions(tiny_model, pixels, noise=noise, num_steps=steps, cached=False)
    assert_close(cached, straight)
    assert not torch.allclose(cached, noise)


def test_batch_rows_are_independent(tiny_model, assert_close):
    pixels = _pixels(tiny_model, 4)
    noise = torch.randn(4, 18, 25, generator=torch.Generator().manual_seed(2))
    together = sample_actions(tiny_model, pixels, noise=noise)
    alone = torch.cat([sample_actions(tiny_model, pixels[i : i + 1], noise=noise[i : i + 1]) for i in range(4)])
    assert_close(together, alone)


def test_seeded_generator_is_deterministic(tiny_model):
    pixels = _pixels(tiny_model, 2)
    a = sample_actions(tiny_model, pixels, generator=torch.Generator().manual_seed(7))
    b = sample_actions(tiny_model, pixels, generator=torch.Generator().manual_seed(7))
    c = sample_actions(tiny_model, pixels, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_euler_buckets():
    assert euler_buckets(16) == [int(k / 16 * 1000) for k in range(16)]
    assert euler_buckets(4) == [0, 250, 500, 750]
    with pytest.raises(ValueError, match="num_steps"):
        euler_buckets(0)


def test_game_token_and_guidance(assert_close):
    torch.manual_seed(0)
    config = get_preset("tiny").replace(num_games=3, vision={"num_hidden_layers": 1}, dit_layers=2)
    model = build_model(config).eval()
    assert model.game_embedding is not None and model.game_embedding.weight.shape == (4, 192)
    pixels = _pixels(model, 2)
    noise = torch.randn(2, 18, 25)
    ids = torch.tensor([1, 3])
    for scale in (1.0, 2.5):
        cached = sample_actions(model, pixels, noise=noise, game_ids=ids, guidance_scale=scale)
        straight = sample_actions(model, pixels, noise=noise, game_ids=ids, guidance_scale=scale, cached=False)
        assert_close(cached, straight)
    # No id means the "no game" token (0); guidance 0 is the unconditional velocity.
    assert_close(sample_actions(model, pixels, noise=noise), sample_actions(model, pixels, noise=noise, game_ids=torch.zeros(2, dtype=torch.long)))
    assert_close(
        sample_actions(model, pixels, noise=noise, game_ids=ids, guidance_scale=0.0),
        sample_actions(model, pixels, noise=noise, game_ids=torch.zeros(2, dtype=torch.long)),
    )
    with pytest.raises(ValueError, match=r"game_ids must lie in \[0, 3\]"):
        sample_actions(model, pixels, noise=noise, game_ids=torch.tensor([1, 4]))


def test_game_ids_without_game_token_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="no game token"):
        sample_actions(tiny_model, _pixels(tiny_model, 1), game_ids=torch.tensor([1]))


def test_shape_errors_name_the_input(tiny_model):
    with pytest.raises(ShapeError, match=r"pixel_values: expected \[B, 1, 3, 128, 128\]"):
        sample_actions(tiny_model, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ShapeError, match="noise"):
        sample_actions(tiny_model, _pixels(tiny_model, 1), noise=torch.zeros(1, 16, 25))


def test_encode_observation_gives_the_straightforward_velocity(tiny_model, assert_close):
    pixels = _pixels(tiny_model, 2)
    x = torch.randn(2, 18, 25)
    buckets = torch.tensor([0, 625])
    with torch.no_grad():
        cache = tiny_model.encode_observation(pixels)
        assert len(cache.cross_kv) == 4 and cache.cross_kv[1] is None  # odd blocks are self-attention
        assert_close(tiny_model.velocity(x, buckets, cache=cache), tiny_model(pixels, x, buckets))
        with pytest.raises(ValueError, match="cross-attention DiT block needs"):
            tiny_model.velocity(x, buckets)
