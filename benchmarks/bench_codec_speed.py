"""Codec speed on CPU: encode + decode of 10 s of 24 kHz audio at 6 kbps, our `Codec` against
EnCodec's 24 kHz architecture (and DAC's, if installed), all with random weights.

    python benchmarks/bench_codec_speed.py [--threads 2] [--rounds 5] [--seconds 10]

The models are timed interleaved (one round runs each model once, in turn), so a machine
shared with other jobs slows them alike; each time is the median over the rounds after a
warm-up. Peak memory is measured per model in a fresh subprocess: the growth of the peak
resident set size over one encode + decode, after the model is built and warm (Linux: the
peak is reset through /proc/self/clear_refs and read back as VmHWM; elsewhere the lifetime
`ru_maxrss`, which can hide a smaller increase). `encodec` (and `descript-audio-codec`) are benchmark-only
dependencies; a model whose package is missing is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

SAMPLE_RATE = 24000


@dataclass
class Runner:
    name: str
    params: int
    encode: Callable[[torch.Tensor], object]
    decode: Callable[[object], torch.Tensor]


def ours(decoder: str = "conv", encoder: str = "conv", bf16: bool = False, **dims) -> Runner:
    from codec import Codec, CodecDims

    model = Codec(CodecDims(decoder=decoder, encoder=encoder, **dims)).eval()
    model.set_matmul_dtype(torch.bfloat16 if bf16 else None)
    n = next(n for n in range(1, model.num_codebooks + 1) if model.bitrate(n) >= 6000)
    return Runner(
        f"vocalis Codec, {encoder} encoder, {decoder} decoder"
        + (", vector phase" if model.dims.istft_phase == "vector" else "")
        + (", bf16 1x1 layers" if bf16 else "")
        + f" ({n} codebooks)",
        sum(p.numel() for p in model.parameters()),
        lambda wav: model.encode(wav, n),
        model.decode,
    )


def encodec() -> Runner:
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(6.0)
    return Runner(
        "EnCodec 24 kHz (6 kbps)",
        sum(p.numel() for p in model.parameters()),
        model.encode,
        model.decode,
    )


def dac() -> Runner:
    import dac as dac_package  # descript-audio-codec

    model = dac_package.DAC(
        encoder_dim=64,
        encoder_rates=[2, 4, 5, 8],
        decoder_dim=1536,
        decoder_rates=[8, 5, 4, 2],
        n_codebooks=32,
        sample_rate=SAMPLE_RATE,
    ).eval()
    return Runner(
        "DAC 24 kHz (8 codebooks)",
        sum(p.numel() for p in model.parameters()),
        lambda wav: model.encode(wav, n_quantizers=8)[1],
        lambda codes: model.decode(model.quantizer.from_codes(codes)[0]),
    )


BUILDERS = {
    "ours": ours,
    "ours_istft": lambda: ours("istft"),
    # the shipped codec's dims (models/codec/codec.json) since 2026-12-03
    "ours_stft": lambda: ours("istft", "stft", stft_dim=384, stft_hidden=1152),
    # codec_spectral's and codec_sisdr's (the compress default since 2026-12-04)
    "ours_vector": lambda: ours(
        "istft", "stft", stft_dim=384, stft_hidden=1152, istft_phase="vector"
    ),
    # the same as `vocalis compress` runs it on a CPU with bf16 units (--precision auto)
    "ours_vector_bf16": lambda: ours(
        "istft", "stft", bf16=True, stft_dim=384, stft_hidden=1152, istft_phase="vector"
    ),
    "encodec": encodec,
    "dac": dac,
}


def test_signal(seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav = sum(torch.sin(2 * torch.pi * 150 * k * t) / k for k in range(1, 6))
    return (0.3 * wav + 0.01 * torch.randn_like(t))[None, None]  # (1, 1, T)


def available() -> dict[str, Runner]:
    runners = {}
    for key, build in BUILDERS.items():
        try:
            runners[key] = build()
        except Exception as e:  # a missing or broken optional package: skip that model
            print(f"skipping {key}: {e}", file=sys.stderr)
    return runners


def time_interleaved(runners: dict[str, Runner], wav: torch.Tensor, rounds: int) -> dict:
    times = {key: {"encode": [], "decode": []} for key in runners}
    with torch.inference_mode():
        for r in range(rounds + 1):  # round 0 warms up
            for key, runner in runners.items():
                start = time.perf_counter()
                codes = runner.encode(wav)
                middle = time.perf_counter()
                runner.decode(codes)
                end = time.perf_counter()
                if r:
                    times[key]["encode"].append(middle - start)
                    times[key]["decode"].append(end - middle)
    return {
        key: {
            "encode": statistics.median(t["encode"]),
            "decode": statistics.median(t["decode"]),
            "total": statistics.median(e + d for e, d in zip(t["encode"], t["decode"])),
        }
        for key, t in times.items()
    }


_MEMORY_PROBE = """
import json, resource, sys, torch
from benchmarks.bench_codec_speed import BUILDERS, test_signal

def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))

key, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
runner = BUILDERS[key]()
with torch.inference_mode():
    runner.decode(runner.encode(test_signal(0.5)))
    wav = test_signal(seconds)
    try:  # writing 5 to clear_refs resets the peak (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = rss_kib("VmRSS:")
    except OSError:  # no procfs: the lifetime peak, which may hide a smaller increase
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runner.decode(runner.encode(wav))
    after = rss_kib("VmHWM:") if before else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps((after - before) / 1024))
"""


def peak_memory_mb(key: str, seconds: float, threads: int) -> float:
    """Peak-RSS growth (MB) over one encode + decode, in a fresh process."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, key, str(seconds), str(threads)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown_table(runners: dict[str, Runner], times: dict, memory: dict, seconds: float) -> str:
    base = times.get("encodec", {}).get("total")
    lines = [
        "| model | params (M) | encode ms | decode ms | total ms | x real time "
        "| speed vs EnCodec | peak RSS increase (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, runner in runners.items():
        t = times[key]
        ratio = f"{base / t['total']:.2f}x" if base else "n/a"
        lines.append(
            f"| {runner.name} | {runner.params / 1e6:.2f} | {t['encode'] * 1e3:.0f} "
            f"| {t['decode'] * 1e3:.0f} | {t['total'] * 1e3:.0f} "
            f"| {seconds / t['total']:.1f} | {ratio} | {memory[key]:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__} on {platform.machine()} CPU, {args.threads} threads "
        f"(load average {load:.1f} on {os.cpu_count()} cores); {args.seconds:g} s of "
        f"{SAMPLE_RATE} Hz audio, median of {args.rounds} interleaved rounds\n"
    )
    runners = available()
    times = time_interleaved(runners, test_signal(args.seconds), args.rounds)
    memory = {key: peak_memory_mb(key, args.seconds, args.threads) for key in runners}
    print(markdown_table(runners, times, memory, args.seconds))


if __name__ == "__main__":
    main()
