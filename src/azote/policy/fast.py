"""Faster inference without changing what is computed: the dtype a device runs best, pre-packed CPU matmuls for
the denoising steps, and a CUDA-graph replay of the 16 DiT steps.

- `default_dtype(device)`: bfloat16 on CUDA and on CPUs that compute it natively (AVX512 / AMX; oneDNN's own
  check); float32 elsewhere, where bfloat16 is converted in software and runs several times slower (measured:
  README, policy latency).
- `pack_for_cpu(model)`: a denoising step multiplies the 18 action tokens by every DiT weight matrix, a
  matrix-vector-like product bound by reading the weights from memory. oneDNN's pre-packed ("reordered")
  float32 weights read faster than the plain layout; `pack_for_cpu` gives every linear layer that a denoising
  step runs (DiT blocks, output projection, action encoder and decoder) a packed copy, used only for float32 CPU
  inference without gradients; anywhere else, or once its weights have changed, the layer computes as before.
  Results agree with the unpacked layers to float32 rounding (a few 1e-7 relative).
- `GraphedSteps`: the Euler steps of the cached sampler for one batch size, captured once as a CUDA graph and
  replayed per chunk (one launch for all steps instead of ~50 kernels per step); the same code runs eagerly on
  the CPU, which is how it is tested here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from azote.policy.model import NitroGenModel, ObservationCache
from azote.policy.modules import EmbodimentLinear
from azote.policy.sampling import check_num_steps, euler_buckets

# The modules a denoising step runs (the vision tower and the VL stack run once per observation).
STEP_MODULES = ("model.transformer_blocks", "model.proj_out_2", "action_encoder", "action_decoder")
# Smaller matrices are left as they are: measured on 2 AVX2 cores, packing made the 1024-wide DiT step of
# nitrogen-500m ~20% faster (130 -> 101 ms, best of 8, one thread) but the 384-wide one of `small` ~20% slower.
MIN_PACKED_ELEMENTS = 1 << 20


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (oneDNN's check: AVX512 with BF16, or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on CUDA and on CPUs with native bfloat16, else float32."""
    dev = torch.device(device)
    if dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def _can_pack() -> bool:
    return hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.backends.mkldnn.is_available()


class _Packed:
    """A packed copy of a weight [out, in], valid while the weight's version, dtype and device are unchanged."""

    def __init__(self, weight: Tensor, tokens: int):
        self.source = weight
        self.version = weight._version
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), tokens)

    def usable(self, x: Tensor, weight: Tensor) -> bool:
        return (
            weight is self.source and weight._version == self.version and x.dtype == torch.float32
            and x.device.type == "cpu" and weight.dtype == torch.float32 and weight.device.type == "cpu"
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        )


def _packed_linear(packed: _Packed, x: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed.packed, bias, "none", [], "")


def _linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    packed: _Packed | None = getattr(self, "_azote_packed", None)
    if packed is not None and packed.usable(x, self.weight):
        return _packed_linear(packed, x, self.bias)
    return F.linear(x, self.weight, self.bias)


def _embodiment_forward(self: EmbodimentLinear, x: Tensor) -> Tensor:
    packed: _Packed | None = getattr(self, "_azote_packed", None)
    if packed is not None and packed.usable(x, self.W) and self.W._version == packed.version:
        return _packed_linear(packed, x, self.b[0])
    return x @ self.W[0] + self.b[0]


class _PackedEmbodiment(_Packed):
    def __init__(self, W: Tensor, tokens: int):
        self.source = W
        self.version = W._version
        self.packed = torch.ops.mkldnn._reorder_linear_weight(W.detach()[0].t().contiguous(), tokens)


def pack_for_cpu(model: NitroGenModel, tokens: int | None = None, min_elements: int = MIN_PACKED_ELEMENTS) -> int:
    """Gives each linear layer of the denoising step a pre-packed float32 copy of its weight (in place; the
    parameters stay as they are, so saving, training and `.to()` work as before and fall back to the plain
    layers). Only matrices of at least `min_elements` are packed (smaller ones ran slower packed). Returns how
    many layers were packed (0 where oneDNN's packing is unavailable or the model is not float32 on the CPU)."""
    if not _can_pack() or model.device.type != "cpu" or model.dtype != torch.float32:
        return 0
    tokens = tokens or model.config.action_horizon
    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not name.startswith(STEP_MODULES):
                continue
            weight = module.weight if isinstance(module, nn.Linear) else getattr(module, "W", None)
            if weight is None or weight.numel() < min_elements:
                continue
            if isinstance(module, nn.Linear):
                module._azote_packed = _Packed(module.weight, tokens)  # type: ignore[attr-defined]
                module.forward = _linear_forward.__get__(module)  # type: ignore[method-assign]
                count += 1
            elif isinstance(module, EmbodimentLinear) and module.W.shape[0] == 1:
                module._azote_packed = _PackedEmbodiment(module.W, tokens)  # type: ignore[attr-defined]
                module.forward = _embodiment_forward.__get__(module)  # type: ignore[method-assign]
                count += 1
    return count


def unpack(model: NitroGenModel) -> None:
    """Removes the packed copies `pack_for_cpu` made."""
    for module in model.modules():
        if hasattr(module, "_azote_packed"):
            del module._azote_packed
            del module.forward


def is_packed(model: NitroGenModel) -> bool:
    return any(hasattr(m, "_azote_packed") for m in model.modules())


class GraphedSteps:
    """The Euler steps of the cached sampler for a fixed batch size, replayed from static buffers.

    On CUDA (`graph=True`) the steps are captured once as a CUDA graph; `run(cache, noise)` copies the
    observation's cross-attention keys/values and the noise into the static buffers and replays the graph. With
    `graph=False` (any device) the same buffers and steps run eagerly. Unguided sampling only.
    """

    def __init__(self, model: NitroGenModel, batch: int, num_steps: int | None = None, graph: bool | None = None):
        c = model.config
        self.model, self.batch = model, batch
        self.steps = check_num_steps(num_steps or c.num_inference_timesteps)
        self.graph_enabled = model.device.type == "cuda" if graph is None else graph
        if self.graph_enabled and model.device.type != "cuda":
            raise ValueError("a CUDA graph needs the model on a CUDA device")
        dev, dtype = model.device, model.dtype
        schedule = euler_buckets(self.steps, c.num_timestep_buckets)
        with torch.no_grad():
            mods = model.model.timestep_modulation(torch.tensor(schedule, dtype=torch.long, device=dev))
        self.mods = [[m[k:k + 1].expand(batch, -1).contiguous() for m in mods] for k in range(self.steps)]
        self.buckets = [torch.full((batch,), b, dtype=torch.long, device=dev) for b in schedule]
        self.x = torch.zeros(batch, c.action_horizon, c.action_dim, device=dev, dtype=torch.float32)
        self.out = torch.zeros_like(self.x)
        heads, head_dim, length = c.dit_heads, c.hidden_size // c.dit_heads, c.vl_length
        self.kv: list[tuple[Tensor, Tensor] | None] = [
            (torch.zeros(batch, heads, length, head_dim, device=dev, dtype=dtype),
             torch.zeros(batch, heads, length, head_dim, device=dev, dtype=dtype)) if block.cross else None
            for block in model.model.transformer_blocks
        ]
        self._graph: Any = None
        if self.graph_enabled:
            self._capture()

    def _steps(self) -> None:
        model, x, dt = self.model, self.x, 1.0 / self.steps
        for k in range(self.steps):
            v = model.velocity(x.to(model.dtype), self.buckets[k], cache=self._cache(), modulation=self.mods[k])
            x = x + dt * v.float()
        self.out.copy_(x)

    def _cache(self) -> ObservationCache:
        return ObservationCache(vl_tokens=torch.empty(0), cross_kv=self.kv)

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph (allocator, kernel selection)
                self._steps()
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self._graph):
            self._steps()
        torch.cuda.synchronize()

    @torch.no_grad()
    def run(self, cache: ObservationCache, noise: Tensor) -> Tensor:
        """Chunks [batch, H, A] (float32, the model's layout) from an observation cache and the starting noise."""
        if noise.shape != self.x.shape:
            raise ValueError(f"noise: expected {tuple(self.x.shape)}, got {tuple(noise.shape)}")
        for static, given in zip(self.kv, cache.cross_kv):
            if static is not None:
                assert given is not None
                static[0].copy_(given[0])
                static[1].copy_(given[1])
        self.x.copy_(noise)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._steps()
        return self.out.clone()
