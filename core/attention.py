"""Multi-head attention shared by every vocalis model.

Everything attention-related lives here: the fast-path switch, rotary position embedding,
boolean mask helpers, key/value caches for incremental decoding and the `Attention` module
(self- or cross-attention, grouped-query, optional rotary).

Conventions
- Tensors inside attention are laid out `(B, H, T, Dh)`.
- Masks are boolean, True = may attend, broadcastable to `(B, H, Tq, Tk)`.
- A query row whose mask allows no key at all outputs exactly 0 (no NaN) in both paths,
  and its gradient is 0.
- Two numerically equivalent paths: the fast one calls
  `torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels on
  GPU); the reference one is a plain matmul + softmax in the input dtype, used inside
  `with disable_sdpa():` (for debugging, tests and exporting).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------
# Fast-path switch
# ---------------------------------------------------------------------------------------------

_USE_SDPA = True


def sdpa_enabled() -> bool:
    """Whether attention currently runs through `F.scaled_dot_product_attention`."""
    return _USE_SDPA


@contextmanager
def disable_sdpa() -> Iterator[None]:
    """Run attention on the reference matmul + softmax path inside this block (nestable)."""
    global _USE_SDPA
    previous = _USE_SDPA
    _USE_SDPA = False
    try:
        yield
    finally:
        _USE_SDPA = previous


# ---------------------------------------------------------------------------------------------
# Masks (True = may attend)
# ---------------------------------------------------------------------------------------------


def causal_mask(
    t_q: int, t_k: int, offset: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """`(Tq, Tk)` mask: query i sits at absolute position offset + i and sees keys 0..offset+i."""
    q_pos = torch.arange(t_q, device=device).unsqueeze(1) + offset  # (Tq, 1)
    k_pos = torch.arange(t_k, device=device).unsqueeze(0)  # (1, Tk)
    return k_pos <= q_pos  # (Tq, Tk)


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """`(B, 1, 1, Tk)` mask: key j of item b is visible when j < lengths[b]."""
    keys = torch.arange(max_len, device=lengths.device)  # (Tk,)
    return (keys < lengths.unsqueeze(1)).view(-1, 1, 1, max_len)  # (B, 1, 1, Tk)


def prefix_mask(prefix_lengths: Tensor, total_len: int) -> Tensor:
    """`(B, 1, T, T)` prefix-LM mask.

    Every position sees the whole prefix `0..prefix_lengths[b]-1` (so the prefix attends
    bidirectionally to itself); positions after the prefix additionally see themselves and
    the positions before them (causal).
    """
    pos = torch.arange(total_len, device=prefix_lengths.device)
    in_prefix = pos.view(1, 1, total_len) < prefix_lengths.view(-1, 1, 1)  # (B, 1, Tk)
    causal = causal_mask(total_len, total_len, device=prefix_lengths.device)  # (T, T)
    return (causal.unsqueeze(0) | in_prefix).unsqueeze(1)  # (B, 1, T, T)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of the given masks (broadcasting); `None` entries are ignored."""
    result: Tensor | None = None
    for mask in masks:
        if mask is None:
            continue
        result = mask if result is None else result & mask
    return result


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention, both paths
# ---------------------------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout: float = 0.0,
) -> Tensor:
    """softmax(q kᵀ / √Dh) v with grouped-query support.

    q: (B, H, Tq, Dh); k, v: (B, Hkv, Tk, Dh) with H % Hkv == 0 (query head h reads kv head
    h // (H / Hkv)). `mask`: bool, True = attend, broadcastable to (B, H, Tq, Tk).
    `is_causal` is top-left aligned (query i sees keys 0..i) and must not be combined with a
    mask; callers with an offset build a `causal_mask` instead. Returns (B, H, Tq, Dh).
    """
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"attention masks must be boolean (True = attend), got {mask.dtype}")
        if is_causal:
            raise ValueError("pass either mask or is_causal=True, not both")
        # A row that sees no key would give softmax over nothing (NaN). Let such rows see
        # every key to keep the arithmetic finite, then zero their output below.
        row_ok = mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq|1, 1)
        mask = mask | ~row_ok
    if _USE_SDPA:
        out = _sdpa(q, k, v, mask, is_causal, dropout)
    else:
        out = _reference(q, k, v, mask, is_causal, dropout)
    if mask is not None:
        out = out * row_ok  # (B, H, Tq, Dh)
    return out


def _sdpa(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, dropout: float
) -> Tensor:
    group = q.shape[1] // k.shape[1]
    if group > 1 and mask is not None and q.device.type != "cpu":
        # The GPU kernels that accept a mask (memory-efficient) do not take enable_gqa and
        # would fall back to the slow math kernel: expand the kv heads instead.
        k = k.repeat_interleave(group, dim=1)  # (B, H, Tk, Dh)
        v = v.repeat_interleave(group, dim=1)  # (B, H, Tk, Dh)
        group = 1
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, enable_gqa=group > 1
    )  # (B, H, Tq, Dh)


def _reference(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, dropout: float
) -> Tensor:
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k = k.repeat_interleave(group, dim=1)  # (B, H, Tk, Dh)
        v = v.repeat_interleave(group, dim=1)  # (B, H, Tk, Dh)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, H, Tq, Tk)
    if is_causal:
        mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
    if dropout > 0.0:
        weights = F.dropout(weights, p=dropout)
    return weights @ v  # (B, H, Tq, Dh)


# ---------------------------------------------------------------------------------------------
# Rotary position embedding
# ---------------------------------------------------------------------------------------------


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer), "rotate-half" layout (GPT-NeoX / LLaMA style).

    Channel j of the first half is paired with channel j + Dh/2; the pair is rotated by the
    angle `position * base^(-2j/Dh)`. Dot products between a rotated query at position m and
    a rotated key at position n then depend only on m - n, and norms are preserved.

    The cos/sin tables are computed in float64 for positions 0..N-1 on the input's device and
    grown (doubling) when a larger position arrives. They are plain attributes, not buffers,
    so `.half()` can never round them and checkpoints never contain them. The rotation runs in
    float32 (float64 for float64 input) and is cast back to the input dtype.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self._cos = torch.empty(0, head_dim // 2, dtype=torch.float64)  # (N, Dh/2)
        self._sin = torch.empty(0, head_dim // 2, dtype=torch.float64)  # (N, Dh/2)

    def _inv_freq(self, device: torch.device) -> Tensor:
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device)
        return self.base ** (-exponent / self.head_dim)  # (Dh/2,) float64

    def _tables(self, n_positions: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos/sin tables covering positions 0..n_positions-1 on `device`."""
        if n_positions > self._cos.shape[0] or self._cos.device != device:
            n = max(n_positions, 2 * self._cos.shape[0], 64)
            pos = torch.arange(n, dtype=torch.float64, device=device)  # (N,)
            angles = torch.outer(pos, self._inv_freq(device))  # (N, Dh/2)
            self._cos, self._sin = angles.cos(), angles.sin()
        return self._cos, self._sin

    def forward(self, x: Tensor, positions: Tensor, max_position: int | None = None) -> Tensor:
        """Rotate x `(B, H, T, Dh)` by `positions` `(T,)` or `(B, T)`: integers index the
        tables; floating-point positions (fractional, as VALL-E's aligned layout) are rotated
        by angles computed for them in float64.

        `max_position` (the largest entry of `positions`) may be given when known; it saves
        reading the positions back from the device to size the tables.
        """
        cos, sin = self.angles(positions, x.dtype, max_position)
        return self.rotate(x, cos, sin)

    def angles(
        self, positions: Tensor, dtype: torch.dtype, max_position: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """cos, sin `(T, Dh/2)` or `(B, 1, T, Dh/2)` for `positions`, in the compute dtype
        (float32, or float64 for float64 input). A model whose layers share one rotary
        embedding looks them up once per forward pass (`Transformer`), not in every layer.
        """
        compute = torch.promote_types(dtype, torch.float32)
        if positions.is_floating_point():  # fractional positions: no table, angles directly
            angles = positions.double().unsqueeze(-1) * self._inv_freq(positions.device)
            cos, sin = angles.cos().to(compute), angles.sin().to(compute)
            if positions.dim() == 2:
                cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, Dh/2)
            return cos, sin
        if max_position is None:
            max_position = int(positions.max()) if positions.numel() else 0
        cos_table, sin_table = self._tables(max_position + 1, positions.device)
        cos = cos_table[positions].to(compute)  # (T, Dh/2) or (B, T, Dh/2)
        sin = sin_table[positions].to(compute)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, Dh/2)
        return cos, sin

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x `(B, H, T, Dh)` rotated by angles from `angles` (computed in their dtype)."""
        x1, x2 = x.to(cos.dtype).chunk(2, dim=-1)  # (B, H, T, Dh/2) each
        rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return rotated.to(x.dtype)  # (B, H, T, Dh)


def default_positions(
    positions: Tensor | None, offset: int, x: Tensor
) -> tuple[Tensor, int | None]:
    """(positions, their maximum when known without a device read) for the T = x.shape[1]
    new steps after `offset` cached ones: `positions` if given, else `offset + arange(T)`."""
    if positions is not None:
        return positions, None
    t = x.shape[1]
    return torch.arange(offset, offset + t, device=x.device), offset + t - 1  # (T,)


# ---------------------------------------------------------------------------------------------
# Key/value caches
# ---------------------------------------------------------------------------------------------


class KVCache:
    """Preallocated self-attention keys/values of ONE layer for incremental decoding.

    Buffers `k`, `v` are `(B, Hkv, max_len, Dh)`; `append` writes the new steps in place
    (no reallocation, no torch.cat) and returns views of everything cached so far. Meant for
    inference (`torch.no_grad()` / `torch.inference_mode()`).
    """

    def __init__(
        self,
        batch: int,
        max_len: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> None:
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (B, Hkv, max_len, Dh)
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # (B, Hkv, max_len, Dh)
        self.max_len = max_len
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v `(B, Hkv, Tnew, Dh)` after the cached steps; return all `(B, Hkv, L, Dh)`."""
        b, hkv, _, dh = self.k.shape
        fits = k.dim() == 4 and (k.shape[0], k.shape[1], k.shape[3]) == (b, hkv, dh)
        if not fits or k.shape != v.shape:
            raise ValueError(
                f"cache holds (B, Hkv, T, Dh) = {tuple(self.k.shape)}, got k {tuple(k.shape)} "
                f"and v {tuple(v.shape)}"
            )
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: {self.length} cached + {k.shape[2]} new steps exceeds "
                f"max_len={self.max_len}"
            )
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reset(self) -> None:
        """Forget the cached steps (the buffers are kept)."""
        self.length = 0

    def reorder(self, indices: Tensor) -> None:
        """Reorder the batch in place, e.g. to follow the surviving beams in beam search
        (only the steps cached so far are moved)."""
        n = self.length
        self.k[:, :, :n].copy_(self.k[:, :, :n].index_select(0, indices))
        self.v[:, :, :n].copy_(self.v[:, :, :n].index_select(0, indices))

    def select(self, indices: Tensor) -> None:
        """Keep only the rows `indices` (any number, in that order): new buffers of
        `len(indices)` rows, with the steps cached so far copied."""
        n = self.length
        k = self.k.new_zeros((len(indices), *self.k.shape[1:]))
        v = self.v.new_zeros((len(indices), *self.v.shape[1:]))
        k[:, :, :n] = self.k[:, :, :n].index_select(0, indices)
        v[:, :, :n] = self.v[:, :, :n].index_select(0, indices)
        self.k, self.v = k, v


class CrossKVCache:
    """Cross-attention keys/values of ONE layer, computed from the context once and reused.

    The first forward call with this cache projects the context and stores k, v
    `(B, Hkv, S, Dh)`; later calls reuse them and may pass `context=None`. `reset()` forgets
    them (for a new context).
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def filled(self) -> bool:
        return self.k is not None

    def store(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def reset(self) -> None:
        self.k = self.v = None

    def reorder(self, indices: Tensor) -> None:
        if self.k is not None and self.v is not None:
            self.k, self.v = self.k.index_select(0, indices), self.v.index_select(0, indices)


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head (optionally grouped-query) self- or cross-attention.

    Self-attention projects q, k, v with one fused `qkv` linear laid out `[q | k | v]`;
    cross-attention (`cross=True`) has a `q` linear on x and a fused `kv` linear `[k | v]`
    on the context (`context_dim`, default `dim`). `out` maps the heads back to `dim`.
    `rotary`: a shared `RotaryEmbedding`, True to create one, or None/False; self-attention
    only. Linear layers keep PyTorch's default init; `Transformer` re-initialises them.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        context_dim: int | None = None,
        cross: bool = False,
        rotary: RotaryEmbedding | bool | None = None,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if dim % n_heads != 0:
            raise ValueError(f"dim={dim} is not divisible by n_heads={n_heads}")
        if n_kv_heads < 1 or n_heads % n_kv_heads != 0:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        if cross and rotary not in (None, False):
            raise ValueError("rotary embedding applies to self-attention only, not cross=True")
        if not cross and context_dim is not None:
            raise ValueError("context_dim is only meaningful with cross=True")
        self.dim, self.n_heads, self.n_kv_heads = dim, n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.cross = cross
        self.dropout = dropout
        q_width, kv_width = n_heads * self.head_dim, n_kv_heads * self.head_dim
        if cross:
            self.q = nn.Linear(dim, q_width, bias=bias)
            self.kv = nn.Linear(context_dim or dim, 2 * kv_width, bias=bias)
        else:
            self.qkv = nn.Linear(dim, q_width + 2 * kv_width, bias=bias)
        self.out = nn.Linear(q_width, dim, bias=bias)
        if rotary is True:
            rotary = RotaryEmbedding(self.head_dim)
        if isinstance(rotary, RotaryEmbedding) and rotary.head_dim != self.head_dim:
            raise ValueError(f"rotary head_dim={rotary.head_dim} != head_dim={self.head_dim}")
        self.rotary: RotaryEmbedding | None = rotary or None

    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        cache: KVCache | CrossKVCache | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x `(B, T, D)` -> `(B, T, D)`.

        context: `(B, S, Dc)` for cross-attention (optional once a `CrossKVCache` is filled),
            or `(C, S, Dc)` with B = C*g: then rows `c*g .. c*g + g - 1` all read context
            `c` (the beams of one utterance), whose keys and values are computed and read
            once; a mask is then given per context, `(C|1, H|1, T|1, S)`.
        mask: bool, True = attend, broadcastable to `(B, H, T, Tk)`; with a `KVCache`, Tk
            counts the cached steps plus the new ones.
        is_causal: causal self-attention; with a cache the new queries sit at positions
            `cache.length + arange(T)` and see every earlier key.
        positions: rotary positions `(T,)` or `(B, T)`; default `cache.length + arange(T)`.
        cache: `KVCache` (self-attention) or `CrossKVCache` (cross-attention), advanced in place.
        rope: the rotary (cos, sin) of these positions from `RotaryEmbedding.angles`, when the
            caller has them already (then `positions` is not read).
        """
        if self.cross:
            if is_causal:
                raise ValueError("is_causal is meaningless for cross-attention")
            q, k, v = self._project_cross(x, context, cache)
            q, mask = self._fold_shared_context(q, k.shape[0], mask)
            offset = 0
        else:
            if context is not None:
                raise ValueError("context given to a self-attention layer (use cross=True)")
            q, k, v, offset = self._project_self(x, positions, cache, rope)

        t_q, t_k = q.shape[2], k.shape[2]
        use_causal_flag = False
        if is_causal:
            if mask is None and offset == 0 and t_q == t_k:
                use_causal_flag = True  # lets sdpa pick its causal kernels
            elif not (mask is None and t_q == 1 and offset + 1 == t_k):
                mask = combine_masks(mask, causal_mask(t_q, t_k, offset, device=x.device))
        dropout = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(
            q, k, v, mask=mask, is_causal=use_causal_flag, dropout=dropout
        )  # (B, H, T, Dh), or (C, H, g*T, Dh) for a shared context
        out = rearrange(out, "c h (g t) d -> (c g) t (h d)", g=x.shape[0] // out.shape[0])
        return self.out(out)  # (B, T, D)

    @staticmethod
    def _fold_shared_context(
        q: Tensor, contexts: int, mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """q `(C*g, H, T, Dh)` for cross-attention where each run of g consecutive query rows
        reads one of `contexts` = C context rows (the beams of one utterance) -> q
        `(C, H, g*T, Dh)` and its mask: the g rows' queries become one row, so each
        context's keys and values are read once, not g times (cross-attention has no mask
        among queries, so this is exact). `mask` broadcasts to `(C, H, T, S)` over the
        contexts. With one query row per context (g = 1) nothing changes."""
        rows = q.shape[0]
        if rows == contexts:
            return q, mask
        if rows % contexts != 0:
            raise ValueError(f"{rows} query rows cannot share {contexts} contexts evenly")
        if mask is not None and mask.dim() != 4:
            raise ValueError(f"a mask over shared contexts must be 4-D, got {mask.dim()}-D")
        if mask is not None and mask.shape[0] not in (1, contexts):
            raise ValueError(
                f"a mask over {mask.shape[0]} rows given to {rows} query rows on {contexts} "
                "shared contexts: pass it per context"
            )
        if mask is not None and mask.shape[2] != 1:
            mask = mask.repeat(1, 1, rows // contexts, 1)  # (C|1, H|1, g*T, S)
        return rearrange(q, "(c g) h t d -> c h (g t) d", c=contexts), mask

    def _project_self(
        self,
        x: Tensor,
        positions: Tensor | None,
        cache: KVCache | CrossKVCache | None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"self-attention takes a KVCache, got {type(cache).__name__}")
        h, hkv = self.n_heads, self.n_kv_heads
        widths = [h * self.head_dim, hkv * self.head_dim, hkv * self.head_dim]
        q, k, v = self.qkv(x).split(widths, dim=-1)  # (B, T, H*Dh), (B, T, Hkv*Dh) x2
        q = rearrange(q, "b t (h d) -> b h t d", h=h)  # (B, H, T, Dh)
        k = rearrange(k, "b t (h d) -> b h t d", h=hkv)  # (B, Hkv, T, Dh)
        v = rearrange(v, "b t (h d) -> b h t d", h=hkv)  # (B, Hkv, T, Dh)
        offset = 0 if cache is None else cache.length
        if self.rotary is not None:
            if rope is None:
                pos, top = default_positions(positions, offset, x)
                rope = self.rotary.angles(pos, q.dtype, top)
            q, k = self.rotary.rotate(q, *rope), self.rotary.rotate(k, *rope)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, L, Dh) each
        return q, k, v, offset

    def _project_cross(
        self, x: Tensor, context: Tensor | None, cache: KVCache | CrossKVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if cache is not None and not isinstance(cache, CrossKVCache):
            raise TypeError(f"cross-attention takes a CrossKVCache, got {type(cache).__name__}")
        q = rearrange(self.q(x), "b t (h d) -> b h t d", h=self.n_heads)  # (B, H, T, Dh)
        if cache is not None and cache.filled:
            return q, cache.k, cache.v
        if context is None:
            raise ValueError("cross-attention needs a context (or a filled CrossKVCache)")
        k, v = self.kv(context).chunk(2, dim=-1)  # (B, S, Hkv*Dh) each
        k = rearrange(k, "b s (h d) -> b h s d", h=self.n_kv_heads)  # (B, Hkv, S, Dh)
        v = rearrange(v, "b s (h d) -> b h s d", h=self.n_kv_heads)  # (B, Hkv, S, Dh)
        if cache is not None:
            cache.store(k, v)
        return q, k, v
