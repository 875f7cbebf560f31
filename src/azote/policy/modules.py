"""Building blocks of the policy, named so that `state_dict()` matches the released checkpoint.

Every attention here is multi-head scaled dot-product attention with scale 1/sqrt(head_dim). Cross-attention
keys and values can be computed once (`Attention.project_kv`) and passed back in, which is what the cached
sampler does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]


def dit_timestep_features(buckets: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """[B] integer buckets -> [B, dim] features: frequencies exp(-ln(P) * i / (dim/2 - 1)), laid out [cos, sin]."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=buckets.device) / (half - 1)
    args = buckets[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def action_timestep_features(buckets: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[B, H] buckets -> [B, H, dim]: frequencies exp(-ln(P) * i / (dim/2)), laid out [sin, cos]."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=buckets.device) / half
    args = buckets[..., None].float() * torch.exp(exponent)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections (`to_q`, `to_k`, `to_v`, `to_out.0`)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(context_dim or query_dim, inner)
        self.to_v = nn.Linear(context_dim or query_dim, inner)
        # Index 1 is the dropout applied to the attention output (the released layout keeps `to_out.0` as the linear).
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(dropout)])

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, context: Tensor) -> KV:
        """Keys and values of a context [B, N, C], split into heads: two [B, heads, N, head_dim]."""
        return self._split(self.to_k(context)), self._split(self.to_v(context))

    def forward(self, x: Tensor, context: Tensor | None = None, kv: KV | None = None) -> Tensor:
        q = self._split(self.to_q(x))
        k, v = kv if kv is not None else self.project_kv(x if context is None else context)
        out = F.scaled_dot_product_attention(q, k, v)
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.to_out[1](self.to_out[0](out))


# The epsilon of every LayerNorm that the released configuration does not reach (its blocks build their adaptive
# norm and the VL stack's norms with the default 1e-5; the DiT's output norm has 1e-6).
DEFAULT_NORM_EPS = 1e-5
OUTPUT_NORM_EPS = 1e-6
GELU_APPROXIMATION = {"gelu-approximate": "tanh", "gelu": "none"}


def sinusoidal_table(rows: int, dim: int) -> Tensor:
    """[1, rows, dim]: position p, channel 2i holds sin(p * w_i) and channel 2i + 1 cos(p * w_i), with
    w_i = exp(-ln(10000) * 2i / dim) (the fixed table the released blocks add when positional_embeddings is
    'sinusoidal')."""
    position = torch.arange(rows, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, rows, dim)
    table[0, :, 0::2] = torch.sin(position * freq)
    table[0, :, 1::2] = torch.cos(position * freq)
    return table


class SinusoidalPositions(nn.Module):
    """Adds the first N rows of a fixed table to a sequence [B, N, D]. The table is a persistent buffer (`pe`), as
    in the released checkpoint layout, so a loaded checkpoint's table is the one used."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(rows, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pe[:, : x.shape[1]]


class GELUProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, activation: str = "gelu-approximate"):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = GELU_APPROXIMATION[activation]

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    """`net.0.proj` D->4D, GELU (tanh-approximated or exact), dropout, `net.2` 4D->D, dropout."""

    def __init__(self, dim: int, dropout: float, mult: int = 4, activation: str = "gelu-approximate"):
        super().__init__()
        self.net = nn.ModuleList([
            GELUProj(dim, dim * mult, activation), nn.Dropout(dropout), nn.Linear(dim * mult, dim), nn.Dropout(dropout),
        ])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class VLBlock(nn.Module):
    """Pre-norm self-attention block over the VL tokens (affine LayerNorms `norm1`, `norm3`, eps 1e-5), with the
    sinusoidal table added to the normalised input when `positions` rows are given."""

    def __init__(self, dim: int, heads: int, dropout: float, activation: str = "gelu-approximate", positions: int = 0):
        super().__init__()
        self.pos_embed = SinusoidalPositions(positions, dim) if positions else None
        self.norm1 = nn.LayerNorm(dim, eps=DEFAULT_NORM_EPS)
        self.attn1 = Attention(dim, heads, dim // heads, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim, eps=DEFAULT_NORM_EPS)
        self.ff = FeedForward(dim, dropout, activation=activation)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        if self.pos_embed is not None:
            h = self.pos_embed(h)
        x = x + self.attn1(h)
        return x + self.ff(self.norm3(x))


class VLSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, dropout: float, activation: str = "gelu-approximate",
                 positions: int = 0):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(
            [VLBlock(dim, heads, dropout, activation, positions) for _ in range(layers)]
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


class AdaLayerNorm(nn.Module):
    """`LN(x) * (1 + scale) + shift` with `scale, shift = linear(SiLU(temb)).chunk(2)` (scale first, no affine LN)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.eps = eps

    def modulation(self, temb: Tensor) -> Tensor:
        """[B, 2 * dim]: scale and shift for the timestep embeddings `temb` [B, dim]."""
        return self.linear(F.silu(temb))

    def forward(self, x: Tensor, modulation: Tensor) -> Tensor:
        scale, shift = modulation.chunk(2, dim=-1)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Adaptive-LayerNorm attention block (no gates); cross-attention to the VL tokens when `cross`. The adaptive
    norm has eps 1e-5 and the feed-forward's norm `ff_eps` (the released norm_eps); with `positions` rows the
    sinusoidal table is added to the normalised input (the queries of a cross-attention block)."""

    def __init__(self, dim: int, heads: int, context_dim: int, cross: bool, dropout: float, ff_eps: float,
                 activation: str = "gelu-approximate", positions: int = 0):
        super().__init__()
        self.cross = cross
        self.eps = ff_eps
        self.pos_embed = SinusoidalPositions(positions, dim) if positions else None
        self.norm1 = AdaLayerNorm(dim, DEFAULT_NORM_EPS)
        self.attn1 = Attention(dim, heads, dim // heads, context_dim=context_dim if cross else None, dropout=dropout)
        self.ff = FeedForward(dim, dropout, activation=activation)

    def forward(self, x: Tensor, modulation: Tensor, context: Tensor | None = None, kv: KV | None = None) -> Tensor:
        h = self.norm1(x, modulation)
        if self.pos_embed is not None:
            h = self.pos_embed(h)
        if self.cross:
            if context is None and kv is None:
                raise ValueError("a cross-attention DiT block needs the VL tokens or their cached keys/values")
            x = x + self.attn1(h, context=context, kv=kv)
        else:
            x = x + self.attn1(h)
        return x + self.ff(F.layer_norm(x, x.shape[-1:], eps=self.eps))


class TimestepEmbedder(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    FEATURES = 256

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(self.FEATURES, dim)

    def forward(self, buckets: Tensor) -> Tensor:
        feats = dit_timestep_features(buckets, self.FEATURES)
        return self.timestep_embedder(feats.to(self.timestep_embedder.linear_1.weight.dtype))


class DiT(nn.Module):
    """The flow-matching transformer over the H action tokens, conditioned on the VL tokens and the timestep."""

    def __init__(self, dim: int, heads: int, layers: int, context_dim: int, interleave: bool, dropout: float,
                 ff_eps: float, activation: str = "gelu-approximate", positions: int = 0):
        super().__init__()
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList([
            DiTBlock(dim, heads, context_dim, (i % 2 == 0) or not interleave, dropout, ff_eps, activation, positions)
            for i in range(layers)
        ])
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, dim)

    def context_kv(self, context: Tensor) -> list[KV | None]:
        """Keys/values of every cross-attention block for a context (None for self-attention blocks)."""
        return [b.attn1.project_kv(context) if b.cross else None for b in self.transformer_blocks]

    def timestep_modulation(self, buckets: Tensor) -> list[Tensor]:
        """Every block's adaptive-LayerNorm scale/shift and the output's shift/scale for timestep buckets [B]:
        depends on the timestep only, so a sampler computes it for all its steps in one pass over the weights."""
        temb = self.timestep_encoder(buckets)
        return [b.norm1.modulation(temb) for b in self.transformer_blocks] + [self.proj_out_1(F.silu(temb))]

    def forward(
        self, x: Tensor, buckets: Tensor, context: Tensor | None = None, kv: list[KV | None] | None = None,
        modulation: list[Tensor] | None = None,
    ) -> Tensor:
        mods = self.timestep_modulation(buckets) if modulation is None else modulation
        for i, block in enumerate(self.transformer_blocks):
            x = block(x, mods[i], context=context, kv=None if kv is None else kv[i])
        shift, scale = mods[-1].chunk(2, dim=-1)
        x = F.layer_norm(x, x.shape[-1:], eps=OUTPUT_NORM_EPS) * (1 + scale[:, None]) + shift[:, None]
        return self.proj_out_2(x)


class EmbodimentLinear(nn.Module):
    """`y = x @ W[0] + b[0]`, stored as the released per-embodiment layout `W [1, in, out]`, `b [1, out]`."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.W = nn.Parameter(0.02 * torch.randn(1, dim_in, dim_out))
        self.b = nn.Parameter(torch.zeros(1, dim_out))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.W[0] + self.b[0]


class ActionEncoder(nn.Module):
    """`W3(swish(W2(concat(W1(x_t), tau(t)))))` with tau the [sin, cos] encoding of the timestep bucket."""

    def __init__(self, action_dim: int, dim: int):
        super().__init__()
        self.dim = dim
        self.W1 = EmbodimentLinear(action_dim, dim)
        self.W2 = EmbodimentLinear(2 * dim, dim)
        self.W3 = EmbodimentLinear(dim, dim)

    def forward(self, actions: Tensor, buckets: Tensor) -> Tensor:
        a = self.W1(actions)
        tau = action_timestep_features(buckets[:, None].expand(-1, actions.shape[1]), self.dim).to(a.dtype)
        return self.W3(F.silu(self.W2(torch.cat([a, tau], dim=-1))))


class ActionDecoder(nn.Module):
    def __init__(self, dim: int, action_dim: int):
        super().__init__()
        self.layer1 = EmbodimentLinear(dim, dim)
        self.layer2 = EmbodimentLinear(dim, action_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer2(F.relu(self.layer1(x)))
