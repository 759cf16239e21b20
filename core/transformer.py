"""Pre-norm transformer blocks shared by every vocalis model.

`Transformer` is a stack of `TransformerBlock`s (self-attention, optional cross-attention,
SwiGLU feed-forward, RMSNorm or adaptive RMSNorm) with one shared `RotaryEmbedding` and a
final norm. Incremental decoding goes through `Transformer.new_cache(...)`.

Weight init (`init_weights`): every linear ~ N(0, 0.02) with zero bias (GPT-2 / nanoGPT);
the projections that write into the residual stream (attention `out`, feed-forward `w_out`)
use std 0.02 / sqrt(2 * depth) so the residual variance does not grow with depth; the
adaptive-norm projections are zero so conditioning starts as a no-op; norm weights are 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention import (
    Attention,
    CrossKVCache,
    KVCache,
    RotaryEmbedding,
    default_positions,
)

# ---------------------------------------------------------------------------------------------
# Norms and feed-forward
# ---------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)  # (..., D)


class AdaptiveRMSNorm(nn.Module):
    """RMSNorm whose scale and shift come from a conditioning vector (DiT-style adaLN).

    `out = rmsnorm(x) * (1 + scale) + shift` with `[scale | shift] = proj(cond)`. `proj` is
    zero-initialised, so the layer starts out as a plain RMSNorm (unit weight).
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x `(B, T, D)`; cond `(B, Dc)` (one vector per item) or `(B, T, Dc)` (per step)."""
        if cond.dim() == 2:
            cond = cond.unsqueeze(1)  # (B, 1, Dc)
        scale, shift = self.proj(cond).chunk(2, dim=-1)  # (B, T|1, D) each
        return F.rms_norm(x, (self.dim,), eps=self.eps) * (1 + scale) + shift  # (B, T, D)


def swiglu_hidden(dim: int) -> int:
    """Default SwiGLU width: 8/3 * dim (same parameters as a 4x GELU MLP), rounded up to 64."""
    return 64 * math.ceil(8 * dim / 3 / 64)


class SwiGLU(nn.Module):
    """w_out(silu(x W_gate) * x W_up); the gate and up projections are one fused linear."""

    def __init__(self, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or swiglu_hidden(dim)
        self.w_in = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.w_out = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w_in(x).chunk(2, dim=-1)  # (B, T, hidden) each
        return self.w_out(F.silu(gate) * up)  # (B, T, D)


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerCache:
    """Decoding state of one block: its self-attention keys/values and, if any, cross ones."""

    self_kv: KVCache
    cross_kv: CrossKVCache | None = None


class TransformerCache:
    """Per-layer caches of a `Transformer`, made by `Transformer.new_cache`."""

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers

    @property
    def length(self) -> int:
        """Number of steps cached so far."""
        return self.layers[0].self_kv.length

    @property
    def max_len(self) -> int:
        return self.layers[0].self_kv.max_len

    def reset(self) -> None:
        """Forget every cached step and every cached context."""
        for layer in self.layers:
            layer.self_kv.reset()
            if layer.cross_kv is not None:
                layer.cross_kv.reset()

    def reorder(self, indices: Tensor, *, cross: bool = True) -> None:
        """Reorder the batch (beam search); `indices` is `(B,)` of batch indices. With
        `cross=False` the cross-attention keys/values stay: right when every row moves
        to a row with the same context (the beams of one utterance), and much cheaper."""
        for layer in self.layers:
            layer.self_kv.reorder(indices)
            if cross and layer.cross_kv is not None:
                layer.cross_kv.reorder(indices)

    def select(self, rows: Tensor, contexts: Tensor | None = None) -> None:
        """Keep only the batch rows `rows` (any number, in that order): beam search drops
        the rows of items that have finished. `contexts` are the cross-attention rows to
        keep when they differ from `rows` (a context shared by several rows); None: the
        same as `rows`."""
        for layer in self.layers:
            layer.self_kv.select(rows)
            if layer.cross_kv is not None:
                layer.cross_kv.reorder(rows if contexts is None else contexts)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


def _make_norm(dim: int, cond_dim: int | None) -> RMSNorm | AdaptiveRMSNorm:
    return RMSNorm(dim) if cond_dim is None else AdaptiveRMSNorm(dim, cond_dim)


def _apply_norm(norm: nn.Module, x: Tensor, cond: Tensor | None) -> Tensor:
    if isinstance(norm, AdaptiveRMSNorm):
        if cond is None:
            raise ValueError("this model was built with cond_dim: pass cond=")
        return norm(x, cond)
    return norm(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: x += attn(norm(x)); x += cross(norm(x), context); x += ffn(norm(x)).

    `rotary`: True (own RotaryEmbedding), False, or a shared `RotaryEmbedding`. With
    `cond_dim`, every norm is an `AdaptiveRMSNorm` driven by `cond`. `dropout` applies to
    the residual branches and, unless `attn_dropout` says otherwise, to the attention
    weights; attention dropout forces PyTorch's unfused attention on the CPU (about 4x
    slower forward and backward at 800 frames), so CPU recipes turn it off.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        ffn_hidden: int | None = None,
        cross_attention: bool = False,
        context_dim: int | None = None,
        cond_dim: int | None = None,
        rotary: RotaryEmbedding | bool = True,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.attn_norm = _make_norm(dim, cond_dim)
        self.attn = Attention(dim, n_heads, n_kv_heads, rotary=rotary, dropout=attn_dropout)
        self.cross_norm: nn.Module | None = None
        self.cross: Attention | None = None
        if cross_attention:
            self.cross_norm = _make_norm(dim, cond_dim)
            self.cross = Attention(
                dim,
                n_heads,
                n_kv_heads,
                context_dim=context_dim,
                cross=True,
                dropout=attn_dropout,
            )
        self.ffn_norm = _make_norm(dim, cond_dim)
        self.ffn = SwiGLU(dim, ffn_hidden)
        self.drop = nn.Dropout(dropout)
        self.init_weights(depth=1)

    def init_weights(self, depth: int) -> None:
        """See the module docstring; `depth` is the number of blocks in the stack."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        residual_std = 0.02 / math.sqrt(2 * depth)
        for attn in (self.attn, self.cross):
            if attn is not None:
                nn.init.normal_(attn.out.weight, std=residual_std)
        nn.init.normal_(self.ffn.w_out.weight, std=residual_std)
        for module in self.modules():
            if isinstance(module, AdaptiveRMSNorm):
                nn.init.zeros_(module.proj.weight)
                nn.init.zeros_(module.proj.bias)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
        cache: LayerCache | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x `(B, T, D)` -> `(B, T, D)`; arguments as in `Attention.forward`.

        context_mask: bool, True = attend, broadcastable to `(B, H, T, S)`, e.g.
            `padding_mask(context_lengths, S)`.
        """
        h = _apply_norm(self.attn_norm, x, cond)
        self_cache = None if cache is None else cache.self_kv
        h = self.attn(
            h, mask=mask, is_causal=is_causal, positions=positions, cache=self_cache, rope=rope
        )
        x = x + self.drop(h)  # (B, T, D)
        if self.cross is not None:
            h = _apply_norm(self.cross_norm, x, cond)
            cross_cache = None if cache is None else cache.cross_kv
            h = self.cross(h, context=context, mask=context_mask, cache=cross_cache)
            x = x + self.drop(h)
        elif context is not None:
            raise ValueError("context given to a block built without cross_attention")
        h = self.ffn(_apply_norm(self.ffn_norm, x, cond))
        return x + self.drop(h)  # (B, T, D)


class Transformer(nn.Module):
    """`depth` pre-norm blocks sharing one RotaryEmbedding, then a final norm."""

    def __init__(
        self,
        dim: int,
        depth: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        ffn_hidden: int | None = None,
        cross_attention: bool = False,
        context_dim: int | None = None,
        cond_dim: int | None = None,
        rotary: bool = True,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.depth = dim, depth
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = dim // n_heads
        self.cross_attention = cross_attention
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                n_heads,
                n_kv_heads,
                ffn_hidden=ffn_hidden,
                cross_attention=cross_attention,
                context_dim=context_dim,
                cond_dim=cond_dim,
                rotary=self.rotary or False,
                dropout=dropout,
                attn_dropout=attn_dropout,
            )
            for _ in range(depth)
        )
        self.norm = _make_norm(dim, cond_dim)
        for block in self.blocks:
            block.init_weights(depth)

    def new_cache(
        self,
        batch: int,
        max_len: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> TransformerCache:
        """Empty caches for decoding up to `max_len` steps (default dtype/device: the model's)."""
        param = next(self.parameters())
        dtype = dtype or param.dtype
        device = device or param.device
        layers = [
            LayerCache(
                self_kv=KVCache(
                    batch, max_len, self.n_kv_heads, self.head_dim, dtype=dtype, device=device
                ),
                cross_kv=CrossKVCache() if self.cross_attention else None,
            )
            for _ in self.blocks
        ]
        return TransformerCache(layers)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
        cache: TransformerCache | None = None,
    ) -> Tensor:
        """x `(B, T, D)` -> `(B, T, D)`; see `TransformerBlock.forward`.

        With `cache`, x holds the next T steps (a prompt chunk or one token); the cache
        advances by T. Once the cross caches are filled, `context` may be None.
        """
        if cache is not None and len(cache.layers) != len(self.blocks):
            raise ValueError(f"cache has {len(cache.layers)} layers, model {len(self.blocks)}")
        rope = None
        if self.rotary is not None:  # shared by every block: look the angles up once
            offset = 0 if cache is None else cache.length
            pos, top = default_positions(positions, offset, x)
            rope = self.rotary.angles(pos, x.dtype, top)
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                mask=mask,
                is_causal=is_causal,
                positions=positions,
                context=context,
                context_mask=context_mask,
                cond=cond,
                cache=None if cache is None else cache.layers[i],
                rope=rope,
            )
        return _apply_norm(self.norm, x, cond)  # (B, T, D)
