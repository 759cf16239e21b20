"""Time one optimizer step on a ~20 M-parameter model.

    python benchmarks/bench_optim.py [--device cpu|cuda]

Compares torch AdamW with its per-tensor loop (``foreach=False``, the reference) and with
``foreach=True`` (the implementation ScheduleFreeAdamW's foreach ops compare with),
``core.optim.adamw`` (fused where the device has a kernel, else foreach) and
``core.optim.ScheduleFreeAdamW``. Each row is the median over timed steps after warm-up steps,
with the same parameter groups (weight decay on matrices only) and fixed random gradients.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.optim import ScheduleFreeAdamW, adamw, param_groups

WARMUP_STEPS = 3
TIMED_STEPS = 7


def _model(device: str) -> nn.Module:
    """An embedding, a conv and 9 MLP blocks with LayerNorm at width 512: ~20.2 M parameters."""
    dim = 512
    blocks = [
        nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        )
        for _ in range(9)
    ]
    layers = [nn.Embedding(1024, dim), nn.Conv1d(dim, dim, 3), *blocks]
    return nn.ModuleList(layers).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


MakeOpt = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


def _variants() -> list[tuple[str, MakeOpt]]:
    return [
        ("torch AdamW (foreach=False)", lambda g: torch.optim.AdamW(g, lr=1e-3, foreach=False)),
        ("torch AdamW (foreach=True)", lambda g: torch.optim.AdamW(g, lr=1e-3, foreach=True)),
        ("core.optim.adamw", lambda g: adamw(g, lr=1e-3)),
        ("core.optim.ScheduleFreeAdamW", lambda g: ScheduleFreeAdamW(g, lr=1e-3)),
    ]


def optimizer_rows(device: str) -> list[dict[str, Any]]:
    """One row per optimizer: benchmark, variant, device, ms (median step), ratio to torch loop.

    The optimizers take turns step by step, so a change in machine load hits every row alike.
    """
    runs = []
    for name, make in _variants():
        torch.manual_seed(0)
        model = _model(device)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opt = make(param_groups(model, weight_decay=0.1))
        if isinstance(opt, torch.optim.AdamW) and name.startswith("core"):
            name = f"{name} ({'fused' if opt.defaults.get('fused') else 'foreach'})"
        runs.append((name, model, opt, []))
    for i in range(WARMUP_STEPS + TIMED_STEPS):
        for _, _, opt, times in runs:
            _sync(device)
            start = time.perf_counter()
            opt.step()
            _sync(device)
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - start)
    n_params = sum(p.numel() for p in runs[0][1].parameters())
    reference = statistics.median(runs[0][3])
    return [
        {
            "benchmark": f"optimizer step, {n_params / 1e6:.1f} M params",
            "variant": name,
            "device": device,
            "ms": statistics.median(times) * 1e3,
            "ratio": statistics.median(times) / reference,
        }
        for name, _, _, times in runs
    ]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{rows[0]['benchmark']} on {rows[0]['device']}, median of {TIMED_STEPS} steps",
        "",
        "| optimizer | ms / step | vs torch loop |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['variant']} | {r['ms']:.1f} | {r['ratio']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    print(markdown_table(optimizer_rows(args.device)))


if __name__ == "__main__":
    main()
