"""Forward + backward time of core.attention.Attention: sdpa path, reference path, torch MHA.

    python benchmarks/bench_attention.py [--device cpu|cuda] [--dtype float32|bfloat16]

Prints a markdown table (median milliseconds over several runs after warm-up, and ratios to
the sdpa path). `torch.nn.MultiheadAttention` has no grouped-query mode, so the GQA case
compares against full multi-head attention of the same width.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.attention import Attention, causal_mask, disable_sdpa, padding_mask


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    seq: int
    dim: int
    n_heads: int
    n_kv_heads: int
    padded: bool  # causal + key padding mask instead of the plain causal flag


CASES = (
    Case("causal MHA", 4, 512, 512, 8, 8, padded=False),
    Case("causal GQA", 4, 512, 512, 8, 2, padded=False),
    Case("causal+padding MHA", 4, 512, 512, 8, 8, padded=True),
)


def _time_ms(step: Callable[[], None], device: torch.device, warmup: int, runs: int) -> float:
    """Median wall time of `step` in milliseconds."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _case_steps(case: Case, device: torch.device, dtype: torch.dtype) -> dict[str, Callable]:
    """Closures running one forward + backward for each implementation."""
    B, T, D = case.batch, case.seq, case.dim
    x = torch.randn(B, T, D, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(B, T, D, device=device, dtype=dtype)
    lengths = torch.randint(T // 2, T + 1, (B,), device=device)
    ours = Attention(D, case.n_heads, case.n_kv_heads).to(device, dtype)
    mha = nn.MultiheadAttention(D, case.n_heads, bias=False, batch_first=True).to(device, dtype)
    mask = padding_mask(lengths, T) if case.padded else None
    blocked = ~causal_mask(T, T, device=device)  # MHA wants True = blocked

    def run_ours(reference: bool) -> None:
        with disable_sdpa() if reference else nullcontext():
            out: Tensor = ours(x, mask=mask, is_causal=True)
        out.backward(grad)

    def run_mha() -> None:
        key_padding = None if mask is None else ~mask[:, 0, 0]  # (B, T), True = blocked
        out, _ = mha(
            x,
            x,
            x,
            attn_mask=blocked,
            key_padding_mask=key_padding,
            need_weights=False,
            is_causal=key_padding is None,
        )
        out.backward(grad)

    return {
        "sdpa": lambda: run_ours(False),
        "reference": lambda: run_ours(True),
        "torch_mha": run_mha,
    }


def attention_rows(device: str | torch.device, dtype: torch.dtype) -> list[dict]:
    """One row per case: median fwd+bwd ms of each implementation and ratios to sdpa."""
    device = torch.device(device)
    warmup, runs = (3, 20) if device.type == "cuda" else (1, 5)
    torch.manual_seed(0)
    rows = []
    for case in CASES:
        steps = _case_steps(case, device, dtype)
        ms = {name: _time_ms(step, device, warmup, runs) for name, step in steps.items()}
        rows.append(
            {
                "case": case.name,
                "shape": f"B={case.batch} T={case.seq} D={case.dim} "
                f"H={case.n_heads} Hkv={case.n_kv_heads}",
                "device": device.type,
                "dtype": str(dtype).removeprefix("torch."),
                "sdpa ms": round(ms["sdpa"], 1),
                "reference ms": round(ms["reference"], 1),
                "torch MHA ms": round(ms["torch_mha"], 1),
                "reference / sdpa": round(ms["reference"] / ms["sdpa"], 2),
                "torch MHA / sdpa": round(ms["torch_mha"] / ms["sdpa"], 2),
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    print("Attention forward + backward (median ms)\n")
    print(markdown_table(attention_rows(args.device, getattr(torch, args.dtype))))


if __name__ == "__main__":
    main()
