import numpy as np
import pytest

from azote.gamepad import (
    BUTTONS,
    LEGACY_SLOTS,
    MODEL_SLOTS,
    ActionChunk,
    Gamepad,
    GamepadError,
    as_gamepad,
    direction,
    gym_space,
)


def random_chunk(rng: np.random.Generator, n: int) -> ActionChunk:
    return ActionChunk.from_arrays(
        rng.integers(0, 2, (n, 17)), rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (n, 2))
    )


def test_button_names_match_released_dataset_order():
    assert BUTTONS == tuple(sorted(BUTTONS))  # the released columns are alphabetical
    assert len(BUTTONS) == 17 and len(MODEL_SLOTS) == 21


def test_model_vector_layout_is_the_released_one():
    pad = Gamepad.make(["south", "west", "back", "right_trigger"], j_left=(1.0, -1.0), j_right=(0.0, 0.5))
    v = pad.to_model_vector()
    assert v.shape == (25,) and v.dtype == np.float32
    assert v[MODEL_SLOTS.index("south")] == 1 and v[18] == 1  # SOUTH is slot 18
    assert v[20] == 1 and v[0] == 1 and v[16] == 1  # WEST, BACK, RIGHT_TRIGGER
    assert v[[i for i in range(21) if i not in (0, 16, 18, 20)]].sum() == 0
    np.testing.assert_array_equal(v[21:25], [1.0, 0.0, 0.5, 0.75])
    assert all(v[i] == 0 for i in LEGACY_SLOTS)
    assert Gamepad.from_model_vector(v) == pad


def test_model_vector_round_trip_every_button_and_random_sticks():
    rng = np.random.default_rng(0)
    chunk = random_chunk(rng, 200)
    back = ActionChunk.from_model_vectors(chunk.to_model_vectors())
    np.testing.assert_array_equal(back.buttons, chunk.buttons)
    np.testing.assert_allclose(back.j_left, chunk.j_left, atol=1e-6)
    np.testing.assert_allclose(back.j_right, chunk.j_right, atol=1e-6)


def test_model_decode_thresholds_and_clamps():
    v = np.zeros((1, 25), np.float32)
    v[0, 18] = 0.51  # south pressed
    v[0, 20] = 0.5  # west not pressed (strictly greater than 0.5)
    v[0, 11] = 0.9  # legacy slot ignored
    v[0, 21:25] = [1.7, -0.4, 0.5, 0.25]
    a = ActionChunk.from_model_vectors(v)[0]
    assert a.pressed == ("south",)
    np.testing.assert_allclose(a.j_left, [1.0, -1.0])
    np.testing.assert_allclose(a.j_right, [0.0, -0.5])


def test_rows_and_columns_round_trip():
    rng = np.random.default_rng(1)
    chunk = random_chunk(rng, 30)
    assert ActionChunk.from_rows(chunk.to_rows()) == chunk
    assert ActionChunk.from_columns(chunk.to_columns()) == chunk
    row = chunk[3].to_row()
    assert list(row)[:17] == list(BUTTONS) and list(row)[17:] == ["j_left", "j_right"]


def test_gym_space_contains_converted_actions():
    space = gym_space(seed=0)
    for _ in range(20):
        sample = space.sample()
        pad = Gamepad.from_gym(sample)
        assert space.contains(pad.to_gym())
        assert as_gamepad(sample) == pad


def test_bad_input_is_rejected_or_clipped_never_wrapped():
    with pytest.raises(GamepadError, match="unknown button"):
        Gamepad.make(["jump"])
    with pytest.raises(GamepadError, match=r"\[-1, 1\]"):
        Gamepad.make(j_left=(1.5, 0), clip=False)
    assert Gamepad.make(j_left=(1.5, -3)).j_left.tolist() == [1.0, -1.0]
    with pytest.raises(GamepadError, match="finite"):
        Gamepad.make(j_right=(float("nan"), 0))
    with pytest.raises(GamepadError, match="0 or 1"):
        ActionChunk.from_arrays(np.full((2, 17), 2), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(GamepadError, match="0 or 1"):
        ActionChunk.from_arrays(np.full((2, 17), 256), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(GamepadError, match="shape"):
        ActionChunk.from_model_vectors(np.zeros((3, 24)))
    with pytest.raises(GamepadError, match="missing"):
        Gamepad.from_gym({"buttons": np.zeros(17)})
    with pytest.raises(GamepadError):
        as_gamepad("south")


def test_chunk_helpers():
    pads = [Gamepad.make(["east"]), Gamepad.neutral(), Gamepad.make(j_right=(0.2, 0))]
    chunk = ActionChunk.stack(pads)
    assert len(chunk) == 3 and list(chunk) == pads
    assert chunk.nonzero_mask().tolist() == [True, False, True]
    both = ActionChunk.concat([chunk, chunk[1:]])
    assert len(both) == 5 and both[3] == pads[1]


def test_direction_prefers_dpad_then_stick_past_dead_zone():
    assert direction(Gamepad.make(["dpad_left", "dpad_up"])) == (-1, -1)
    assert direction(Gamepad.make(j_left=(0.9, 0.1))) == (1, 0)
    assert direction(Gamepad.make(j_left=(0.2, 0.2))) == (0, 0)
    assert direction(Gamepad.make(["dpad_down"], j_left=(-1, 0))) == (-1, 1)
