"""core.attention against a float64 reference written here from the definitions."""

import functools
import math
from contextlib import nullcontext

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attention import (
    Attention,
    CrossKVCache,
    KVCache,
    RotaryEmbedding,
    causal_mask,
    combine_masks,
    disable_sdpa,
    padding_mask,
    prefix_mask,
    scaled_dot_product_attention,
    sdpa_enabled,
)

PATHS = ["sdpa", "reference"]


def path_ctx(path: str):
    return disable_sdpa() if path == "reference" else nullcontext()


# ---------------------------------------------------------------------------------------------
# Naive float64 reference: loops over batch and heads, explicit softmax(q kᵀ / √d) v
# ---------------------------------------------------------------------------------------------


def naive_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x (T, Dh) at positions (T,): channel j and j + Dh/2 form the complex number rotated."""
    half = x.shape[-1] // 2
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / x.shape[-1])
    z = torch.complex(x[:, :half], x[:, half:])
    z = z * torch.polar(torch.ones_like(theta), positions.double()[:, None] * theta)
    return torch.cat([z.real, z.imag], dim=-1)


def naive_attention(
    attn: Attention,
    x: torch.Tensor,
    *,
    context: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    rope: bool = False,
) -> torch.Tensor:
    """Reference output for an `Attention` module; mask is bool (B|1, H|1, Tq|1, Tk)."""
    H, Hkv, Dh = attn.n_heads, attn.n_kv_heads, attn.head_dim

    def linear(layer: torch.nn.Linear, rows: slice, inp: torch.Tensor) -> torch.Tensor:
        out = inp @ layer.weight[rows].T
        return out if layer.bias is None else out + layer.bias[rows]

    if attn.cross:
        q_layer, q_rows = attn.q, slice(0, H * Dh)
        kv_layer, kv_in = attn.kv, context
        k_rows, v_rows = slice(0, Hkv * Dh), slice(Hkv * Dh, 2 * Hkv * Dh)
    else:
        q_layer, q_rows = attn.qkv, slice(0, H * Dh)
        kv_layer, kv_in = attn.qkv, x
        k_rows = slice(H * Dh, (H + Hkv) * Dh)
        v_rows = slice((H + Hkv) * Dh, (H + 2 * Hkv) * Dh)
    B, T, _ = x.shape
    S = kv_in.shape[1]
    out = torch.zeros(B, T, H * Dh, dtype=torch.float64)
    for b in range(B):
        q_all = linear(q_layer, q_rows, x[b])  # (T, H*Dh)
        k_all = linear(kv_layer, k_rows, kv_in[b])  # (S, Hkv*Dh)
        v_all = linear(kv_layer, v_rows, kv_in[b])
        for h in range(H):
            g = h // (H // Hkv)
            q = q_all[:, h * Dh : (h + 1) * Dh]
            k = k_all[:, g * Dh : (g + 1) * Dh]
            v = v_all[:, g * Dh : (g + 1) * Dh]
            if rope:
                q, k = naive_rope(q, torch.arange(T)), naive_rope(k, torch.arange(S))
            scores = q @ k.T / math.sqrt(Dh)  # (T, S)
            allowed = torch.ones(T, S, dtype=torch.bool)
            if mask is not None:
                m = mask.expand(B, H, T, S)
                allowed = m[b, h]
            for i in range(T):
                if allowed[i].any():
                    w = torch.exp(scores[i] - scores[i][allowed[i]].max()) * allowed[i]
                    out[b, i, h * Dh : (h + 1) * Dh] = (w / w.sum()) @ v
    return linear(attn.out, slice(None), out)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def test_causal_mask_with_offset():
    m = causal_mask(3, 7, offset=4)
    assert m.shape == (3, 7) and m.dtype == torch.bool
    for i in range(3):
        for j in range(7):
            assert m[i, j] == (j <= 4 + i)


def test_padding_mask():
    m = padding_mask(torch.tensor([2, 0, 4]), 4)
    assert m.shape == (3, 1, 1, 4)
    assert m[:, 0, 0].tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]


def test_prefix_mask():
    T = 6
    m = prefix_mask(torch.tensor([3, 0]), T)
    assert m.shape == (2, 1, T, T)
    for b, p in enumerate([3, 0]):
        for i in range(T):
            for j in range(T):
                assert m[b, 0, i, j] == (j < p or j <= i)


def test_combine_masks():
    a = causal_mask(4, 4)
    b = padding_mask(torch.tensor([3, 4]), 4)
    assert combine_masks(None, None) is None
    assert combine_masks(None, a) is a
    both = combine_masks(a, None, b)
    assert both.shape == (2, 1, 4, 4)
    assert torch.equal(both, a & b)


# ---------------------------------------------------------------------------------------------
# Attention equals the naive reference
# ---------------------------------------------------------------------------------------------

MASKS = ["none", "causal", "causal_mask", "padding", "prefix", "causal+padding"]


def make_mask(kind: str, B: int, T: int) -> tuple[torch.Tensor | None, bool]:
    lengths = torch.tensor([T, T - 3][:B])
    if kind == "none":
        return None, False
    if kind == "causal":
        return None, True
    if kind == "causal_mask":
        return causal_mask(T, T), False
    if kind == "padding":
        return padding_mask(lengths, T), False
    if kind == "prefix":
        return prefix_mask(torch.tensor([3, 5][:B]), T), False
    if kind == "causal+padding":
        return padding_mask(lengths, T), True
    raise AssertionError(kind)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("kind", MASKS)
def test_self_attention_matches_naive(path, rope, n_kv_heads, kind):
    torch.manual_seed(0)
    B, T, D = 2, 7, 32
    attn = Attention(D, 4, n_kv_heads, rotary=rope, bias=kind == "prefix").double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask, is_causal = make_mask(kind, B, T)
    with path_ctx(path):
        got = attn(x, mask=mask, is_causal=is_causal)
    ref_mask = combine_masks(mask, causal_mask(T, T) if is_causal else None)
    want = naive_attention(attn, x, mask=ref_mask, rope=rope)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cross_attention_with_context_padding_matches_naive(path, n_kv_heads):
    torch.manual_seed(1)
    B, T, S, D, Dc = 2, 5, 6, 32, 24
    attn = Attention(D, 4, n_kv_heads, context_dim=Dc, cross=True, bias=True).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    context = torch.randn(B, S, Dc, dtype=torch.float64)
    mask = padding_mask(torch.tensor([S, 2]), S)
    with path_ctx(path):
        got = attn(x, context=context, mask=mask)
    want = naive_attention(attn, x, context=context, mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("n_kv_heads", [4, 1])
def test_sdpa_and_reference_agree_in_float32(kind, n_kv_heads):
    torch.manual_seed(2)
    B, T, D = 2, 9, 64
    attn = Attention(D, 4, n_kv_heads, rotary=True)
    x = torch.randn(B, T, D)
    mask, is_causal = make_mask(kind, B, T)
    fast = attn(x, mask=mask, is_causal=is_causal)
    with disable_sdpa():
        slow = attn(x, mask=mask, is_causal=is_causal)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_gradients_match_naive(path):
    torch.manual_seed(3)
    B, T, D = 2, 6, 32
    attn = Attention(D, 4, 2, rotary=True).double()
    mask = padding_mask(torch.tensor([6, 4]), T)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    with path_ctx(path):
        attn(x, mask=mask, is_causal=True).square().sum().backward()
    got_x, got_w = x.grad.clone(), attn.qkv.weight.grad.clone()
    x.grad = None
    attn.zero_grad()
    ref_mask = combine_masks(mask, causal_mask(T, T))
    naive_attention(attn, x, mask=ref_mask, rope=True).square().sum().backward()
    torch.testing.assert_close(got_x, x.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got_w, attn.qkv.weight.grad, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Fully masked rows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_fully_masked_rows_are_zero_and_finite(path, n_kv_heads):
    torch.manual_seed(4)
    B, H, T, Dh = 2, 4, 5, 8
    q = torch.randn(B, H, T, Dh, requires_grad=True)
    k = torch.randn(B, n_kv_heads, T, Dh, requires_grad=True)
    v = torch.randn(B, n_kv_heads, T, Dh, requires_grad=True)
    # Item 1 has no valid key at all; in item 0, queries 3 and 4 are padding and see nothing.
    keys = padding_mask(torch.tensor([5, 0]), T)  # (B, 1, 1, T)
    queries = padding_mask(torch.tensor([3, 5]), T).transpose(-1, -2)  # (B, 1, T, 1)
    mask = combine_masks(keys, queries, causal_mask(T, T))
    with path_ctx(path):
        out = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all() and (out[0, :, 3:] == 0).all()
    assert out[0, :, :3].abs().sum() > 0
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[1] == 0).all() and (q.grad[0, :, 3:] == 0).all()


@pytest.mark.parametrize("path", PATHS)
def test_module_with_empty_padding_gives_zero_then_output_bias(path):
    torch.manual_seed(5)
    attn = Attention(16, 2, bias=True)
    x = torch.randn(2, 4, 16)
    with path_ctx(path):
        out = attn(x, mask=padding_mask(torch.tensor([4, 0]), 4), is_causal=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], attn.out.bias.expand(4, 16))


def test_non_boolean_mask_is_rejected():
    attn = Attention(16, 2)
    with pytest.raises(TypeError, match="boolean"):
        attn(torch.randn(1, 3, 16), mask=torch.zeros(3, 3))


# ---------------------------------------------------------------------------------------------
# Rotary embedding
# ---------------------------------------------------------------------------------------------


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(6)
    rope = RotaryEmbedding(16)
    q = torch.randn(1, 1, 1, 16, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 16, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        qm = rope(q, torch.tensor([m]))
        kn = rope(k, torch.tensor([n]))
        return float((qm * kn).sum())

    for delta in (-5, 0, 3, 40):
        scores = [score(m, m - delta) for m in (50, 60, 97, 300)]
        assert max(scores) - min(scores) < 1e-10
    assert abs(score(10, 7) - score(10, 3)) > 1e-6  # it does depend on the distance


def test_rope_preserves_norms_and_matches_complex_rotation():
    torch.manual_seed(7)
    rope = RotaryEmbedding(32)
    x = torch.randn(2, 3, 5, 32, dtype=torch.float64)
    pos = torch.tensor([0, 1, 7, 100, 5000])
    y = rope(x, pos)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[1, 2], naive_rope(x[1, 2], pos))
    torch.testing.assert_close(rope(x, torch.zeros(5, dtype=torch.long)), x)


def test_rope_batched_positions_and_cache_growth():
    torch.manual_seed(8)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 2, 4, 8)
    rope(x, torch.arange(4))
    small = rope._cos.shape[0]
    pos = torch.tensor([[0, 1, 2, 3], [996, 997, 998, 999]])
    y = rope(x, pos)
    assert rope._cos.shape[0] >= 1000 > small
    torch.testing.assert_close(y[0], rope(x[:1], pos[0])[0])
    torch.testing.assert_close(y[1], rope(x[1:], pos[1])[0])
    assert y.dtype == x.dtype
    half = rope(x.half(), pos)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), y, rtol=1e-2, atol=1e-2)


def test_rope_fractional_positions_match_the_tables_and_stay_relative():
    torch.manual_seed(9)
    rope = RotaryEmbedding(16)
    x = torch.randn(2, 2, 4, 16, dtype=torch.float64)
    pos = torch.tensor([[0, 3, 8, 41], [5, 6, 7, 900]])
    torch.testing.assert_close(rope(x, pos.double()), rope(x, pos))  # whole numbers: same
    torch.testing.assert_close(rope(x.float(), pos.float()), rope(x.float(), pos))
    q, k = x[:1, :1, :1], x[1:, 1:, 1:]

    def score(m: float, n: float) -> float:
        at = functools.partial(torch.tensor, dtype=torch.float64)
        return float((rope(q, at([m])) * rope(k, at([n]))).sum())

    scores = [score(m, m - 0.37) for m in (0.0, 2.5, 13.25, 400.125)]
    assert max(scores) - min(scores) < 1e-10
    assert abs(score(1.0, 0.5) - score(1.0, 0.75)) > 1e-6


def test_rope_is_not_in_state_dict():
    attn = Attention(16, 2, rotary=True)
    assert set(attn.state_dict()) == {"qkv.weight", "out.weight"}


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------


def test_kv_cache_appends_in_place_and_checks_bounds():
    cache = KVCache(2, 6, 2, 4, dtype=torch.float32, device="cpu")
    ptr_k, ptr_v = cache.k.data_ptr(), cache.v.data_ptr()
    k1, v1 = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    k_all, v_all = cache.append(k1, v1)
    assert cache.length == 4 and k_all.shape == (2, 2, 4, 4)
    k2, v2 = torch.randn(2, 2, 2, 4), torch.randn(2, 2, 2, 4)
    k_all, v_all = cache.append(k2, v2)
    assert cache.length == 6
    torch.testing.assert_close(k_all, torch.cat([k1, k2], dim=2))
    torch.testing.assert_close(v_all, torch.cat([v1, v2], dim=2))
    assert cache.k.data_ptr() == ptr_k and cache.v.data_ptr() == ptr_v
    assert k_all.data_ptr() == ptr_k and v_all.data_ptr() == ptr_v
    with pytest.raises(ValueError, match="max_len=6"):
        cache.append(k2[:, :, :1], v2[:, :, :1])
    assert cache.length == 6
    with pytest.raises(ValueError, match="cache holds"):
        KVCache(2, 6, 2, 4, dtype=torch.float32, device="cpu").append(k1[:, :1], v1[:, :1])
    cache.reset()
    assert cache.length == 0
    cache.append(k2, v2)
    assert cache.k.data_ptr() == ptr_k


def test_kv_cache_reorder():
    cache = KVCache(3, 4, 1, 2, dtype=torch.float32, device="cpu")
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    cache.append(k, k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]


def decode(attn: Attention, x: torch.Tensor, chunks: list[int], mask=None) -> torch.Tensor:
    """Run x through attn chunk by chunk with a KVCache; mask covers all T keys."""
    B, T, _ = x.shape
    cache = KVCache(B, T + 2, attn.n_kv_heads, attn.head_dim, dtype=x.dtype, device=x.device)
    outs, start = [], 0
    for size in chunks:
        end = start + size
        step_mask = None if mask is None else mask[..., start:end, :end]
        outs.append(attn(x[:, start:end], mask=step_mask, is_causal=True, cache=cache))
        start = end
    assert cache.length == T
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("chunks", [[1] * 8, [5, 1, 1, 1], [3, 2, 3]])
def test_cached_decoding_equals_full_causal_pass(path, n_kv_heads, chunks):
    torch.manual_seed(9)
    attn = Attention(32, 4, n_kv_heads, rotary=True).eval()
    x = torch.randn(2, 8, 32)
    with torch.no_grad(), path_ctx(path):
        full = attn(x, is_causal=True)
        inc = decode(attn, x, chunks)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(
    B=st.integers(1, 3),
    T=st.integers(1, 10),
    n_kv_heads=st.sampled_from([1, 2, 4]),
    rope=st.booleans(),
    reference=st.booleans(),
    data=st.data(),
)
def test_cached_decoding_with_padding_property(B, T, n_kv_heads, rope, reference, data):
    """Any chunking of any (left-padded) batch decodes exactly like the full pass."""
    torch.manual_seed(T * 7 + B)
    chunks, left = [], T
    while left:
        chunks.append(data.draw(st.integers(1, left)))
        left -= chunks[-1]
    pads = data.draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B))
    keys = torch.arange(T)[None, :] >= torch.tensor(pads)[:, None]  # (B, T) left padding
    mask = keys[:, None, None, :].expand(B, 1, T, T)  # (B, 1, T, T)
    attn = Attention(16, 4, n_kv_heads, rotary=rope).double().eval()
    x = torch.randn(B, T, 16, dtype=torch.float64)
    with torch.no_grad(), disable_sdpa() if reference else nullcontext():
        full = attn(x, mask=mask, is_causal=True)
        inc = decode(attn, x, chunks, mask=mask)
    torch.testing.assert_close(inc, full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_cross_cache_projects_context_once(path):
    torch.manual_seed(10)
    attn = Attention(32, 4, 2, context_dim=12, cross=True).eval()
    x, context = torch.randn(2, 5, 32), torch.randn(2, 7, 12)
    mask = padding_mask(torch.tensor([7, 3]), 7)
    calls = []
    attn.kv.register_forward_hook(lambda *_: calls.append(1))
    cache = CrossKVCache()
    with torch.no_grad(), path_ctx(path):
        full = attn(x, context=context, mask=mask)
        first = attn(x[:, :2], context=context, mask=mask, cache=cache)
        rest = attn(x[:, 2:], mask=mask, cache=cache)  # context no longer needed
    assert len(calls) == 2 and cache.filled
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full)
    cache.reset()
    assert not cache.filled
    with pytest.raises(ValueError, match="context"):
        attn(x, cache=cache)


def test_wrong_cache_kind_is_rejected():
    self_attn, cross = Attention(16, 2), Attention(16, 2, cross=True)
    x = torch.randn(1, 2, 16)
    with pytest.raises(TypeError, match="KVCache"):
        self_attn(x, cache=CrossKVCache())
    with pytest.raises(TypeError, match="CrossKVCache"):
        cross(x, context=x, cache=KVCache(1, 4, 2, 8, dtype=torch.float32, device="cpu"))


# ---------------------------------------------------------------------------------------------
# Switch, configuration errors, training behaviour
# ---------------------------------------------------------------------------------------------


def test_disable_sdpa_is_scoped_and_nestable():
    assert sdpa_enabled()
    with disable_sdpa():
        assert not sdpa_enabled()
        with disable_sdpa():
            assert not sdpa_enabled()
        assert not sdpa_enabled()
    assert sdpa_enabled()
    with pytest.raises(RuntimeError), disable_sdpa():
        raise RuntimeError
    assert sdpa_enabled()


def test_configuration_errors():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        Attention(32, 4, 3)
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, 4)
    with pytest.raises(ValueError, match="self-attention only"):
        Attention(32, 4, cross=True, rotary=True)
    with pytest.raises(ValueError, match="rotary head_dim"):
        Attention(32, 4, rotary=RotaryEmbedding(16))
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(7)


@pytest.mark.parametrize("path", PATHS)
def test_dropout_only_in_training_and_backward_works(path):
    torch.manual_seed(11)
    attn = Attention(16, 2, dropout=0.5)
    x = torch.randn(2, 6, 16, requires_grad=True)
    with path_ctx(path):
        a, b = attn(x, is_causal=True), attn(x, is_causal=True)
        assert not torch.allclose(a, b)
        (a.sum() + b.sum()).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        attn.eval()
        torch.testing.assert_close(attn(x, is_causal=True), attn(x, is_causal=True))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_kv_heads", [4, 2])
@pytest.mark.parametrize("per_query_mask", [False, True])
def test_rows_sharing_a_context_match_the_context_repeated(path, n_kv_heads, per_query_mask):
    # Beam search: g rows per utterance read one context, given once; the result must be
    # the same as handing each row its own copy, and the keys/values are projected once
    # per context, with or without a cache.
    torch.manual_seed(11)
    C, g, T, S, D, Dc = 3, 4, 2, 7, 32, 12
    attn = Attention(D, 4, n_kv_heads, context_dim=Dc, cross=True).double().eval()
    x = torch.randn(C * g, T, D, dtype=torch.float64)
    context = torch.randn(C, S, Dc, dtype=torch.float64)
    mask = padding_mask(torch.tensor([7, 3, 5]), S)  # (C, 1, 1, S)
    if per_query_mask:
        mask = mask.expand(C, 1, T, S).clone()
        mask[:, :, 1, 0] = False  # the second query of every row may not see frame 0
    rows = []
    attn.kv.register_forward_hook(lambda _m, inp, _o: rows.append(inp[0].shape[0]))
    with torch.no_grad(), path_ctx(path):
        want = attn(x, context=context.repeat_interleave(g, 0), mask=mask.repeat_interleave(g, 0))
        shared = attn(x, context=context, mask=mask)
        cache = CrossKVCache()
        early, late = (mask[:, :, :1], mask[:, :, 1:]) if per_query_mask else (mask, mask)
        first = attn(x[:, :1], context=context, mask=early, cache=cache)
        rest = attn(x[:, 1:], mask=late, cache=cache)
    assert rows == [C * g, C, C]
    torch.testing.assert_close(shared, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), want, rtol=1e-10, atol=1e-10)


def test_rows_that_cannot_share_contexts_evenly_are_rejected():
    attn = Attention(16, 2, cross=True)
    with pytest.raises(ValueError, match="evenly"):
        attn(torch.randn(5, 1, 16), context=torch.randn(2, 3, 16))
    per_row = padding_mask(torch.tensor([3, 2, 1, 3]), 3)  # (4, 1, 1, 3): one per query row
    with pytest.raises(ValueError, match="per context"):
        attn(torch.randn(4, 1, 16), context=torch.randn(2, 3, 16), mask=per_row)
