"""Carry a model checkpoint to a lent GPU in int8, half the bytes of fp16.

One device call carries at most 64 MiB, the tracked tree included. The shipped VALL-E is
47.6 MB in fp16, so continuing it on a lease left about 11 MB for the token packs. In int8
it is about 24 MB, which leaves room for two to three times the speech.

    python -m training.gpu_lease.transport pack models/tts/valle.safetensors .lease/valle_init.q8.safetensors
    python -m training.gpu_lease.transport unpack .lease/valle_init.q8.safetensors /tmp/valle_init

Every float matrix (2-D or more, at least 4096 values) is stored as int8 with one fp32
scale per output row (the row's largest magnitude / 127); everything else keeps its dtype.
The rounding error is at most half a step, 1/254 of each row's largest weight: a small
perturbation of an initialisation that training goes on from. It is a transport format
only, never a shipped one: `unpack` writes an ordinary fp32 checkpoint with the original
metadata, which `--init` reads as usual.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from core.checkpoint import META_KEY, checkpoint_paths, read_safetensors, write_model_files
from core.errors import CheckpointError
from core.io import write_bytes_atomic

TRANSPORT_KEY = "vocalis-int8-transport"  # header entry listing the quantised tensors
MIN_NUMEL = 4096


def quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values and fp32 per-row scales of a float tensor `(rows, ...)`."""
    rows = t.detach().float().reshape(t.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (rows,)
    q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(t.shape), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (q.float().reshape(q.shape[0], -1) * scale[:, None]).reshape(q.shape)


def pack(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write `dst` (.safetensors): the checkpoint `src` with its matrices in int8."""
    weights, _ = checkpoint_paths(src)
    if not weights.is_file():
        raise CheckpointError(f"no checkpoint at '{weights}'")
    meta, tensors = read_safetensors(weights)
    if META_KEY not in meta:
        raise CheckpointError(f"'{weights}' is not a vocalis checkpoint")
    out: dict[str, torch.Tensor] = {}
    quantised = []
    for name, t in tensors.items():
        if t.is_floating_point() and t.dim() >= 2 and t.numel() >= MIN_NUMEL:
            out[name + ".q8"], out[name + ".scale"] = quantize(t)
            quantised.append(name)
        else:
            out[name] = t.contiguous()
    header = {**meta, TRANSPORT_KEY: json.dumps(sorted(quantised))}
    dst = Path(dst)
    write_bytes_atomic(dst, safetensors_bytes(out, metadata=header))
    return dst


def unpack(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write the fp32 checkpoint `dst` (.safetensors + .json) from a `pack` file."""
    meta, tensors = read_safetensors(src)
    if TRANSPORT_KEY not in meta:
        raise CheckpointError(f"'{src}' is not an int8 transport file (transport.pack)")
    quantised = json.loads(meta.pop(TRANSPORT_KEY))
    out = {k: v for k, v in tensors.items() if not k.endswith((".q8", ".scale"))}
    for name in quantised:
        out[name] = dequantize(tensors[name + ".q8"], tensors[name + ".scale"])
    out = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in out.items()}
    return write_model_files(dst, out, json.loads(meta[META_KEY]))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("pack", "unpack"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        path = (pack if argv[0] == "pack" else unpack)(argv[1], argv[2])
    except CheckpointError as e:
        print(f"transport: error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
