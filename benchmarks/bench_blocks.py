"""Shared blocks against the torch references, in one run: attention forward+backward
(sdpa path, reference path, torch.nn.MultiheadAttention) and one optimizer step (torch's
AdamW loop, our fused/foreach AdamW, Schedule-Free AdamW). Prints markdown tables.

    python benchmarks/bench_blocks.py [--device cpu|cuda] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import platform

import torch

from benchmarks.bench_attention import attention_rows
from benchmarks.bench_attention import markdown_table as attention_table
from benchmarks.bench_optim import markdown_table as optimizer_table
from benchmarks.bench_optim import optimizer_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    if args.device == "cuda":
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {machine}\n")
    print("## Attention, forward + backward\n")
    print(attention_table(attention_rows(args.device, getattr(torch, args.dtype))))
    print("\n## One optimizer step\n")
    print(optimizer_table(optimizer_rows(args.device)))


if __name__ == "__main__":
    main()
