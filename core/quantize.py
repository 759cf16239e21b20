"""Weight-only int8 linears for decoding one step at a time on the CPU.

A decoder that steps one token at a time pushes a vector or two through every linear of
the model, so each step reads all the weights for very little arithmetic: on the CPU its
speed is that of memory. `Int8Linear` keeps each weight as int8 with one scale per output
channel (a quarter of the fp32 bytes) and multiplies with PyTorch's weight-only kernel
(`torch._weight_int8pack_mm`), the activations in bf16. Only the weights are rounded; the
activations are not quantised (per-tensor activation quantisation, as in
`torch.ao.quantization.quantize_dynamic`, cost the VALL-E AR 0.17 nats of loss).

Wide inputs (a prompt's prefill) go through a plain matrix product with the same int8
weights scaled back, since the weight-only kernel is slower than the dense one past about
two dozen rows; both paths see the same rounded weights.

    n = quantize_linears_(model.ar)  # in place: every nn.Linear below model.ar
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Rows above which the dense product with the weights scaled back is faster than the
# weight-only kernel (measured on a 2-core AVX-512 CPU: equal near 32 rows, the kernel 2x
# faster at 4 rows and 1.4x slower at 300).
KERNEL_MAX_ROWS = 16

STEP_PRECISIONS = ("auto", "fp32", "int8")


def int8_kernel_available(device: torch.device | str = "cpu") -> bool:
    """Whether the weight-only int8 kernel runs on `device` (the CPU, in this PyTorch)."""
    return torch.device(device).type == "cpu" and hasattr(torch, "_weight_int8pack_mm")


def use_int8(device: torch.device | str, precision: str = "auto") -> bool:
    """Whether a step-by-step decoder on `device` should take int8 weights: precision
    "int8" (an error where the kernel does not run), "fp32", or "auto" (int8 where the
    kernel runs, that is on the CPU)."""
    if precision not in STEP_PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {', '.join(STEP_PRECISIONS)}"
        )
    if precision == "int8" and not int8_kernel_available(device):
        raise ValueError(f"int8 weights run on the CPU only, not on {torch.device(device)}")
    return precision == "int8" or (precision == "auto" and int8_kernel_available(device))


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """`(N, K)` float weight -> int8 `(N, K)` and fp32 scales `(N,)`, symmetric per output
    channel: weight ~ int8 * scale[:, None]."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (N,)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weights (per-channel scales); inputs and outputs stay float."""

    def __init__(self, qweight: Tensor, scale: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]
        self.register_buffer("qweight", qweight)  # (N, K) int8
        self.register_buffer("scale", scale.float())  # (N,)
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16))  # (N,) for the kernel
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        q, scale = quantize_weight(linear.weight)
        return cls(q, scale, linear.bias)

    def dequantized(self) -> Tensor:
        """The weight as the product sees it: `(N, K)` fp32."""
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features)  # (M, K)
        if rows.shape[0] <= KERNEL_MAX_ROWS and int8_kernel_available(x.device):
            # bf16 activations: the kernel in fp32 was 4-5x slower than fp32 F.linear, and
            # in fp16 it changed the AR's greedy output from the sixth frame on
            y = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.qweight, self.scale_bf16)
            y = y.to(x.dtype)
        else:
            y = F.linear(rows, self.dequantized().to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


def quantize_linears_(module: nn.Module, *, skip: tuple[str, ...] = ()) -> int:
    """Replace every `nn.Linear` below `module` (not those whose qualified name starts with
    one of `skip`) by an `Int8Linear`, in place; returns how many were replaced. For
    inference only: the int8 weights take no gradient."""
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if name and isinstance(child, nn.Linear) and not any(name.startswith(s) for s in skip)
    ]
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, Int8Linear.from_linear(linear))
    return len(targets)
