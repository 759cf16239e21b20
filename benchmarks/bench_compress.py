"""File size, quality and speed of `vocalis compress` against WAV, FLAC and Opus.

    python -m benchmarks.bench_compress [--model PATH | --tiny] [--clips 10] [--kbps 6]
                                        [--manifest M ...]

For each LJ Speech clip (or, with --manifest, each test-split clip of the manifests, taken
in turn from each source: held out of the code prior, which counts training clips): the
bytes of 16-bit WAV, FLAC, the `.vcd` file (bit-packed, range-coded from the codec's code
prior, and range-coded from uniform models) and Opus at several bitrates; quality (PESQ-wb where installed, mel distance,
at 16 kHz, aligned, via codec/evaluate.py) of the codec and of each Opus rate, and the
lowest Opus bitrate whose mel distance matches the codec's ("Opus at matched quality");
compress and decompress throughput as a real-time factor. `--tiny` uses a random-weight
tiny codec: it checks that the script runs, its quality figures mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

OPUS_KBPS = (6, 8, 12, 16, 24)
LJSPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech" / "wavs"


def tiny_codec():
    from codec import Codec, CodecDims
    from codec.compress import LoadedCodec

    dims = CodecDims(
        strides=(2, 4, 5),
        encoder_channels=(4, 8, 16, 32),
        decoder_channels=(32, 16, 8, 4),
        latent_dim=16,
        n_codebooks=4,
        codebook_size=1024,
        codebook_dim=4,
        dilations=(1, 3),
    )
    torch.manual_seed(0)
    return LoadedCodec(Codec(dims).eval(), "0" * 64)


def file_sizes(path: Path, tmp: Path) -> dict[str, int]:
    import soundfile as sf

    wav, rate = sf.read(str(path), dtype="int16")
    sf.write(tmp / "x.wav", wav, rate, subtype="PCM_16")
    sf.write(tmp / "x.flac", wav, rate, subtype="PCM_16")
    return {"WAV": (tmp / "x.wav").stat().st_size, "FLAC": (tmp / "x.flac").stat().st_size}


def opus(path: Path, kbps: float, tmp: Path) -> tuple[int, torch.Tensor]:
    """(bytes, decoded audio (T,) at 16 kHz) of Opus at `kbps`."""
    from core.audio import load_audio

    out = tmp / f"x{kbps}.opus"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c:a", "libopus"]
        + ["-b:a", f"{kbps * 1000:g}", str(out)],
        check=True,
    )
    dec = tmp / "dec.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(out), str(dec)], check=True)
    return out.stat().st_size, load_audio(dec, 16000)[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="codec checkpoint (default: shipped)")
    parser.add_argument("--tiny", action="store_true", help="random tiny codec (smoke run)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--kbps", type=float, default=None, help="codec bitrate (default 6)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--manifest", action="append", default=None, help="test clips from here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from codec.compress import CompressOptions, compress_audio, decompress_bytes, load
    from codec.evaluate import Scorer, align
    from core.audio import load_audio, resample

    codec = tiny_codec() if args.tiny else load(args.model)
    kbps = args.kbps or (codec.model.bitrate(4 if args.tiny else 8) / 1000)
    clips = sorted(LJSPEECH.glob("*.flac"))[: args.clips]
    if args.manifest:
        from vocalis.commands.eval import _clips

        clips = [Path(p) for p in _clips(argparse.Namespace(
            max_clips=args.clips, audio=None, manifest=args.manifest, split="test"
        ))]  # fmt: skip
    uniform = replace(codec, prior=None)
    scorer = Scorer(use_visqol=False)
    has_opus = shutil.which("ffmpeg") is not None
    totals: dict[str, float] = {}
    quality: dict[str, list[float]] = {}
    seconds = enc_time = dec_time = 0.0

    def add(key: str, value: float) -> None:
        totals[key] = totals.get(key, 0.0) + value

    def score(name: str, ref: torch.Tensor, est: torch.Tensor) -> None:
        ref, est, _ = align(ref, est)
        quality.setdefault(name, []).append(scorer.score(ref, est)["mel_distance"])
        pesq = scorer.score(ref, est)["pesq_wb"]
        if pesq is not None:
            quality.setdefault(name + " PESQ", []).append(pesq)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for path in clips:
            wav, rate = load_audio(path, mono=False)
            ref16 = resample(wav.mean(0, keepdim=True), rate, 16000)[0]
            seconds += wav.shape[-1] / rate
            for name, size in file_sizes(path, tmp).items():
                add(name, size)
            if codec.prior is not None:
                options = CompressOptions(kbps=kbps, entropy=True)
                add(
                    "vocalis range-coded, uniform start",
                    len(compress_audio(wav, rate, uniform, options)),
                )
            for entropy in (False, True):
                t = time.perf_counter()
                data = compress_audio(wav, rate, codec, CompressOptions(kbps=kbps, entropy=entropy))
                enc_time += (time.perf_counter() - t) if entropy else 0.0
                name = "range-coded" + (", code prior" if codec.prior is not None else "")
                add(f"vocalis {name}" if entropy else "vocalis bit-packed", len(data))
            t = time.perf_counter()
            out, out_rate = decompress_bytes(data, codec)
            dec_time += time.perf_counter() - t
            score("vocalis", ref16, resample(out.mean(0, keepdim=True), out_rate, 16000)[0])
            for k in OPUS_KBPS if has_opus else ():
                size, dec = opus(path, k, tmp)
                add(f"Opus {k} kbps", size)
                score(f"Opus {k} kbps", ref16, dec)

    print(f"{len(clips)} clips, {seconds:.1f} s; codec at {kbps:g} kbps\n")

    def mean(key: str) -> float | None:
        values = quality.get(key)
        return sum(values) / len(values) if values else None

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    print("| format | kbps | size vs WAV | mel dist | PESQ-wb |\n|---|---|---|---|---|")
    for name, size in totals.items():
        key = "vocalis" if name.startswith("vocalis") else name
        print(
            f"| {name} | {8 * size / seconds / 1000:.2f} | {size / totals['WAV']:.4f} | "
            f"{fmt(mean(key), '.3f')} | {fmt(mean(key + ' PESQ'), '.2f')} |"
        )
    packed = totals["vocalis bit-packed"]
    for name in (n for n in totals if n.startswith("vocalis range")):
        saved = 100 * (1 - totals[name] / packed)
        print(f"\n{name.removeprefix('vocalis ')} saves {saved:.1f}% over bit-packing", end="")
    print()
    if has_opus:
        ours = mean("vocalis")
        matched = [k for k in OPUS_KBPS if mean(f"Opus {k} kbps") <= ours]
        print(
            f"Opus at matched quality (mel distance <= {ours:.3f}): "
            + (f"{matched[0]} kbps" if matched else f"none up to {OPUS_KBPS[-1]} kbps")
        )
    print(
        f"throughput: compress {seconds / enc_time:.1f}x real time, "
        f"decompress {seconds / dec_time:.1f}x real time ({args.threads} threads)"
    )


if __name__ == "__main__":
    main()
