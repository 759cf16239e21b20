"""core.quantize: weight-only int8 linears, equal to the float ones up to the rounding of
their weights, on both of their paths (the int8 kernel for a few rows, the dense product
for many), and a cached transformer that decodes with them as it does in fp32."""

import pytest
import torch
from torch import nn

from core import quantize
from core.quantize import Int8Linear, quantize_linears_, quantize_weight, use_int8
from core.transformer import Transformer

needs_kernel = pytest.mark.skipif(
    not quantize.int8_kernel_available("cpu"), reason="no weight-only int8 kernel here"
)


def test_weights_round_to_within_half_a_step_per_channel():
    torch.manual_seed(0)
    w = torch.randn(48, 40) * torch.logspace(-3, 0, 48)[:, None]  # channels of very unlike size
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    assert int(q.abs().max()) == 127  # each channel uses the whole range
    err = (q.float() * scale[:, None] - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()
    q0, s0 = quantize_weight(torch.zeros(3, 5))  # an all-zero channel stays zero
    assert (q0 == 0).all() and torch.isfinite(s0).all()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3, quantize.KERNEL_MAX_ROWS + 40])
@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_matches_its_rounded_weights_on_both_paths(rows, bias):
    torch.manual_seed(1)
    linear = nn.Linear(64, 96, bias=bias)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(2, rows, 64)  # (B, T, K)
    y = q(x)
    assert y.shape == (2, rows, 96) and y.dtype == torch.float32
    exact = nn.functional.linear(x, q.dequantized(), linear.bias)
    # The kernel takes bf16 activations (8 bits of mantissa): close, not equal
    tolerance = 0.02 * exact.abs().max() if 2 * rows <= quantize.KERNEL_MAX_ROWS else 1e-5
    assert (y - exact).abs().max() <= tolerance
    with torch.no_grad():  # and the rounded weights are close to the float ones
        assert (y - linear(x)).abs().max() <= 0.03 * linear(x).abs().max()


@needs_kernel
def test_a_quantised_transformer_decodes_step_by_step_as_in_fp32():
    torch.manual_seed(2)
    model = Transformer(64, 2, 4, 2).eval()
    q = Transformer(64, 2, 4, 2).eval()
    q.load_state_dict(model.state_dict())
    n_linears = sum(isinstance(m, nn.Linear) for m in q.modules())
    assert quantize_linears_(q) == n_linears > 0
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    x = torch.randn(1, 24, 64)
    with torch.inference_mode():
        full = model(x, is_causal=True)
        cache = q.new_cache(1, 24)
        steps = torch.cat([q(x[:, t : t + 1], cache=cache) for t in range(24)], dim=1)
    assert (steps - full).abs().max() <= 0.05 * full.abs().max()


def test_quantize_linears_skips_what_it_is_told_to():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)))
    assert quantize_linears_(model, skip=("2",)) == 1
    assert isinstance(model[0], Int8Linear) and isinstance(model[2][0], nn.Linear)
    assert quantize_linears_(nn.Linear(4, 4)) == 0  # a bare linear has no parent to swap it in


def test_use_int8_picks_the_cpu_and_refuses_what_cannot_run():
    assert use_int8("cpu", "fp32") is False
    assert use_int8("cpu", "auto") is quantize.int8_kernel_available("cpu")
    assert use_int8("cuda", "auto") is False
    with pytest.raises(ValueError, match="CPU only"):
        use_int8("cuda", "int8")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        use_int8("cpu", "int4")
