"""core.transformer: norms, feed-forward, init, and cached decoding equal to the full pass."""

import math
from contextlib import nullcontext

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attention import Attention, disable_sdpa, padding_mask
from core.transformer import (
    AdaptiveRMSNorm,
    RMSNorm,
    SwiGLU,
    Transformer,
    TransformerBlock,
    swiglu_hidden,
)

PATHS = ["sdpa", "reference"]


def path_ctx(path: str):
    return disable_sdpa() if path == "reference" else nullcontext()


def perturb_adaptive_norms(model: torch.nn.Module, std: float = 0.2) -> None:
    """Give the zero-initialised conditioning projections something to do."""
    for module in model.modules():
        if isinstance(module, AdaptiveRMSNorm):
            torch.nn.init.normal_(module.proj.weight, std=std)
            torch.nn.init.normal_(module.proj.bias, std=std)


# ---------------------------------------------------------------------------------------------
# Norms and feed-forward
# ---------------------------------------------------------------------------------------------


def test_rms_norm_matches_formula():
    torch.manual_seed(0)
    norm = RMSNorm(8)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    norm = norm.double()
    want = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), want)


def test_adaptive_norm_starts_as_rms_norm_then_follows_cond():
    torch.manual_seed(1)
    ada, plain = AdaptiveRMSNorm(16, 4), RMSNorm(16)
    x = torch.randn(2, 5, 16)
    cond_a, cond_b = torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(ada(x, cond_a), plain(x))
    torch.testing.assert_close(ada(x, cond_b), plain(x))
    perturb_adaptive_norms(ada)
    assert not torch.allclose(ada(x, cond_a), ada(x, cond_b))
    # A per-step cond equal to the broadcast vector gives the same result.
    per_step = cond_a[:, None, :].expand(2, 5, 4)
    torch.testing.assert_close(ada(x, per_step), ada(x, cond_a))
    scale, shift = ada.proj(cond_a).chunk(2, dim=-1)
    torch.testing.assert_close(ada(x, cond_a), plain(x) * (1 + scale[:, None]) + shift[:, None])


def test_swiglu_width_and_formula():
    assert swiglu_hidden(512) == 1408 and swiglu_hidden(384) == 1024
    assert swiglu_hidden(32) % 64 == 0 and swiglu_hidden(32) >= 8 * 32 / 3
    torch.manual_seed(2)
    ffn = SwiGLU(16, hidden_dim=24)
    x = torch.randn(2, 3, 16)
    gate, up = ffn.w_in.weight[:24], ffn.w_in.weight[24:]
    want = (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ ffn.w_out.weight.T
    torch.testing.assert_close(ffn(x), want)


def test_init():
    torch.manual_seed(3)
    model = Transformer(256, 8, 4, cross_attention=True, cond_dim=8)
    block = model.blocks[0]
    assert abs(block.attn.qkv.weight.std().item() - 0.02) < 2e-3
    residual = 0.02 / math.sqrt(16)
    for w in (block.attn.out.weight, block.cross.out.weight, block.ffn.w_out.weight):
        assert abs(w.std().item() - residual) < 1e-3
    for module in model.modules():
        if isinstance(module, AdaptiveRMSNorm):
            assert not module.proj.weight.any() and not module.proj.bias.any()
    assert model.blocks[3].attn.rotary is model.rotary
    assert not any("rotary" in name for name in model.state_dict())


# ---------------------------------------------------------------------------------------------
# Forward, paths and gradients
# ---------------------------------------------------------------------------------------------


def test_forward_shapes_and_paths_agree():
    torch.manual_seed(4)
    model = Transformer(32, 2, 4, 2, cross_attention=True, context_dim=12, cond_dim=6).eval()
    perturb_adaptive_norms(model)
    x, context, cond = torch.randn(2, 7, 32), torch.randn(2, 5, 12), torch.randn(2, 7, 6)
    kwargs = dict(
        is_causal=True,
        mask=padding_mask(torch.tensor([7, 4]), 7),
        context=context,
        context_mask=padding_mask(torch.tensor([5, 2]), 5),
        cond=cond,
    )
    fast = model(x, **kwargs)
    with disable_sdpa():
        slow = model(x, **kwargs)
    assert fast.shape == (2, 7, 32)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_gradients_flow_and_agree_between_paths():
    torch.manual_seed(5)
    model = Transformer(32, 2, 4, 1, cross_attention=True, cond_dim=6).double()
    perturb_adaptive_norms(model)
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    context = torch.randn(2, 4, 32, dtype=torch.float64)
    cond = torch.randn(2, 6, dtype=torch.float64)
    mask = padding_mask(torch.tensor([6, 0]), 6)  # item 1: every row fully masked
    grads = []
    for path in PATHS:
        model.zero_grad()
        with path_ctx(path):
            out = model(x, is_causal=True, mask=mask, context=context, cond=cond)
        out.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, grads[1][name], rtol=1e-9, atol=1e-12)
    assert grads[0]["blocks.0.attn.qkv.weight"].abs().sum() > 0
    assert grads[0]["blocks.1.cross.kv.weight"].abs().sum() > 0


def test_missing_inputs_are_reported():
    model = Transformer(16, 1, 2, cond_dim=4)
    with pytest.raises(ValueError, match="cond"):
        model(torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="cross_attention"):
        model(torch.randn(1, 3, 16), cond=torch.randn(1, 4), context=torch.randn(1, 2, 16))
    block = TransformerBlock(16, 2, cross_attention=True)
    with pytest.raises(ValueError, match="context"):
        block(torch.randn(1, 3, 16))


# ---------------------------------------------------------------------------------------------
# Cached decoding
# ---------------------------------------------------------------------------------------------


def decode(model: Transformer, x: torch.Tensor, chunks: list[int], **kwargs) -> torch.Tensor:
    """Run x through the model chunk by chunk; per-step `cond` (B, T, Dc) is sliced."""
    cache = model.new_cache(x.shape[0], x.shape[1])
    cond = kwargs.pop("cond", None)
    outs, start = [], 0
    for size in chunks:
        end = start + size
        step_cond = cond[:, start:end] if cond is not None and cond.dim() == 3 else cond
        outs.append(model(x[:, start:end], is_causal=True, cond=step_cond, cache=cache, **kwargs))
        if start == 0:
            kwargs.pop("context", None)  # the cross caches hold it from now on
        start = end
    assert cache.length == x.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 1, 1, 2]])
@pytest.mark.parametrize("variant", ["gqa", "cross", "cond", "cross+cond+mqa"])
def test_cached_decoding_equals_full_pass(path, chunks, variant):
    torch.manual_seed(6)
    cross, cond_dim = "cross" in variant, 6 if "cond" in variant else None
    n_kv = 1 if "mqa" in variant else 2
    model = Transformer(32, 2, 4, n_kv, cross_attention=cross, context_dim=12, cond_dim=cond_dim)
    model.eval()
    perturb_adaptive_norms(model)
    x = torch.randn(2, 9, 32)
    kwargs = {}
    if cross:
        kwargs["context"] = torch.randn(2, 5, 12)
        kwargs["context_mask"] = padding_mask(torch.tensor([5, 3]), 5)
    if cond_dim:
        kwargs["cond"] = torch.randn(2, 9, cond_dim) if cross else torch.randn(2, cond_dim)
    with torch.no_grad(), path_ctx(path):
        full = model(x, is_causal=True, **kwargs)
        inc = decode(model, x, chunks, **kwargs)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    B=st.integers(1, 3),
    T=st.integers(1, 9),
    n_kv_heads=st.sampled_from([1, 2, 4]),
    rotary=st.booleans(),
    cross=st.booleans(),
    reference=st.booleans(),
    data=st.data(),
)
def test_cached_decoding_property(B, T, n_kv_heads, rotary, cross, reference, data):
    torch.manual_seed(B * 31 + T)
    chunks, left = [], T
    while left:
        chunks.append(data.draw(st.integers(1, left)))
        left -= chunks[-1]
    model = Transformer(16, 2, 4, n_kv_heads, rotary=rotary, cross_attention=cross, cond_dim=4)
    model = model.double().eval()
    perturb_adaptive_norms(model)
    x = torch.randn(B, T, 16, dtype=torch.float64)
    kwargs = {"cond": torch.randn(B, 4, dtype=torch.float64)}
    if cross:
        kwargs["context"] = torch.randn(B, 3, 16, dtype=torch.float64)
    with torch.no_grad(), disable_sdpa() if reference else nullcontext():
        full = model(x, is_causal=True, **kwargs)
        inc = decode(model, x, chunks, **kwargs)
    torch.testing.assert_close(inc, full, rtol=1e-10, atol=1e-10)


def test_cache_limits_reset_and_reorder():
    torch.manual_seed(7)
    model = Transformer(16, 2, 2, cross_attention=True).eval()
    x, context = torch.randn(3, 4, 16), torch.randn(3, 2, 16)
    cache = model.new_cache(3, 4)
    assert cache.max_len == 4 and len(cache.layers) == 2
    assert cache.layers[0].self_kv.k.dtype == torch.float32
    with torch.no_grad():
        model(x, is_causal=True, context=context, cache=cache)
        with pytest.raises(ValueError, match="max_len=4"):
            model(x[:, :1], is_causal=True, cache=cache)
        cache.reset()
        assert cache.length == 0 and not cache.layers[0].cross_kv.filled
        # Reordering the batch after a prefix equals decoding the reordered batch.
        order = torch.tensor([2, 0, 0])
        model(x[:, :3], is_causal=True, context=context, cache=cache)
        cache.reorder(order)
        step = model(x[order, 3:], is_causal=True, cache=cache)
        full = model(x[order], is_causal=True, context=context[order])
    torch.testing.assert_close(step, full[:, 3:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layers"):
        Transformer(16, 3, 2)(x, cache=cache)


def test_selecting_fewer_rows_equals_decoding_only_those():
    # Beam search drops finished items: a cache cut to some rows (with their contexts,
    # here shared by two rows each) goes on exactly as a batch of only those rows.
    torch.manual_seed(7)
    model = Transformer(16, 2, 2, cross_attention=True).eval()
    x, context = torch.randn(6, 4, 16), torch.randn(3, 2, 16)
    cache = model.new_cache(6, 4)
    with torch.no_grad():
        model(x[:, :3], is_causal=True, context=context, cache=cache)
        rows, contexts = torch.tensor([5, 4, 0, 1]), torch.tensor([2, 0])
        cache.select(rows, contexts=contexts)
        assert cache.length == 3 and cache.layers[0].self_kv.k.shape[0] == 4
        step = model(x[rows, 3:], is_causal=True, context=context[contexts], cache=cache)
        full = model(x[rows], is_causal=True, context=context[[2, 2, 0, 0]])
    torch.testing.assert_close(step, full[:, 3:], rtol=1e-5, atol=1e-6)


def test_bfloat16_decoding_runs():
    torch.manual_seed(8)
    model = Transformer(32, 2, 4, 2).to(torch.bfloat16).eval()
    x = torch.randn(1, 5, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        full = model(x, is_causal=True)
        inc = decode(model, x, [2, 1, 1, 1])
    assert inc.dtype == torch.bfloat16
    torch.testing.assert_close(inc.float(), full.float(), rtol=5e-2, atol=5e-2)


def test_rotary_angles_are_looked_up_once_per_pass_for_all_layers(monkeypatch):
    torch.manual_seed(7)
    model = Transformer(32, 3, 4, 2).eval()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        want = model(x, is_causal=True)
        h = x  # the same pass with every layer looking its angles up on its own
        for block in model.blocks:
            h = block(h, is_causal=True)
        per_layer = model.norm(h)
    torch.testing.assert_close(want, per_layer, rtol=0, atol=0)
    calls = []
    angles = model.rotary.angles
    monkeypatch.setattr(model.rotary, "angles", lambda *a: calls.append(a) or angles(*a))
    cache = model.new_cache(2, 6)
    with torch.no_grad():
        model(x, is_causal=True, cache=cache)
        model(x[:, :1], is_causal=True, cache=cache)
    assert len(calls) == 2  # one per forward pass, not one per layer (or two: q and k)
    assert calls[1][0].tolist() == [5] and calls[1][2] == 5  # after the 5 cached steps


def test_attention_dropout_is_set_apart_from_residual_dropout():
    """`attn_dropout` defaults to `dropout`; set to 0 it leaves the attention weights alone
    (the fused CPU kernel) while the residual branches still drop."""
    torch.manual_seed(0)
    x, context = torch.randn(2, 12, 32), torch.randn(2, 7, 32)

    def built(**kwargs):
        model = Transformer(32, 2, 4, cross_attention=True, context_dim=32, **kwargs).train()
        return [m.dropout for m in model.modules() if isinstance(m, Attention)], model

    def varies(model):
        return not torch.equal(model(x, context=context), model(x, context=context))

    rates, default = built(dropout=0.2)
    assert rates == [0.2] * 4 and varies(default)
    rates, split = built(dropout=0.0, attn_dropout=0.5)
    assert rates == [0.5] * 4 and varies(split)
    rates, residual_only = built(dropout=0.3, attn_dropout=0.0)
    assert rates == [0.0] * 4 and varies(residual_only)
    _, none = built(dropout=0.0, attn_dropout=0.0)
    assert not varies(none)
