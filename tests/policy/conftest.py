"""Fixtures of the policy tests: the reference data of the released model, and small models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
# The copy shipped with the tests comes first; the shared reference folder next to a checkout is the fallback.
REFERENCE_DIRS = (REPO / "tests" / "data" / "reference", REPO.parent / "shared" / "reference")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread per test process: the models here are small, pytest-xdist runs one process per core,
    and two threads per process on a busy 2-core machine stall at every parallel op."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def reference() -> Callable[[str], Path]:
    """`reference(name)`: the path of a reference file, or a skip saying where it was looked for."""

    def find(name: str) -> Path:
        for folder in REFERENCE_DIRS:
            if (folder / name).is_file():
                return folder / name
        pytest.skip(f"reference file {name} not found in {' or '.join(str(d) for d in REFERENCE_DIRS)}")

    return find


@pytest.fixture(scope="session")
def tiny_reference_config(reference: Callable[[str], Path]) -> Any:
    """Our `PolicyConfig` for the reference's tiny model (`tiny_config.json`)."""
    from azote.policy import PolicyConfig, VisionConfig

    data = json.loads(reference("tiny_config.json").read_text())
    return PolicyConfig(
        name="tiny-reference",
        vision=VisionConfig.from_transformers_dict(data["vision"]),
        hidden_size=data["hidden_size"],
        dit_layers=data["dit_layers"],
        dit_heads=data["dit_heads"],
        vl_layers=data["vl_layers"],
        vl_heads=data["vl_heads"],
        action_horizon=data["action_horizon"],
        action_dim=data["action_dim"],
        num_inference_timesteps=data["num_inference_timesteps"],
        max_seq_len=data["max_seq_len"],
    )


@pytest.fixture(scope="session")
def tiny_reference_model(tiny_reference_config: Any, reference: Callable[[str], Path]) -> Any:
    """The tiny reference model with `tiny_weights.safetensors` loaded strictly, in eval mode (dropout off)."""
    from safetensors.torch import load_file

    from azote.policy import build_model

    model = build_model(tiny_reference_config)
    model.load_state_dict(load_file(str(reference("tiny_weights.safetensors"))), strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_vectors(reference: Callable[[str], Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(reference("tiny_vectors.safetensors")))


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    abs_err = (actual - expected).abs().max().item()
    rel_err = ((actual - expected).norm() / expected.norm()).item()
    assert abs_err <= tol, f"max abs error {abs_err:.3g} > {tol}"
    assert rel_err <= tol, f"relative error {rel_err:.3g} > {tol}"


@pytest.fixture(scope="session")
def assert_close() -> Callable[..., None]:
    """`assert_close(actual, expected, tol=1e-5)`: within tol absolute (elementwise max) and relative (to the
    reference's norm: the reference velocities are small, so an absolute bound alone says little)."""
    return _assert_close


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    """A freshly initialised `tiny` preset model (seeded), in eval mode."""
    from azote.policy import build_model

    torch.manual_seed(0)
    return build_model("tiny").eval()
