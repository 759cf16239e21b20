"""`vocalis compress|decompress|info`: audio files <-> `.vcd` files with the neural codec."""

from __future__ import annotations

import argparse
import sys

from vocalis.commands.transcribe import add_precision_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    compress = subparsers.add_parser(
        "compress",
        help="compress audio files with the neural codec (.vcd)",
        description="Compress wav, flac, ogg or mp3 files (or folders of them) to .vcd files. "
        "Any rate and channel count; each channel is coded on its own. '-' reads WAV from "
        "stdin and writes the .vcd to stdout as it goes.",
    )
    compress.add_argument("inputs", nargs="+", help="audio files or folders, or - for stdin")
    compress.add_argument("-o", "--output", default=None, help="output file or folder")
    compress.add_argument("--bitrate", type=float, default=6.0, help="kbps (default 6)")
    compress.add_argument("--no-entropy", action="store_true", help="bit-packing only")
    compress.add_argument("--chunk-seconds", type=float, default=10.0, help="chunk length")
    compress.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    _common(compress)
    compress.set_defaults(handler=run_compress)

    decompress = subparsers.add_parser(
        "decompress",
        help="decode .vcd files back to wav or flac",
        description="Decode a .vcd file at its original rate, channels and length. The file "
        "is checked completely before decoding; '-' reads stdin and writes WAV to stdout.",
    )
    decompress.add_argument("input", help=".vcd file, or - for stdin")
    decompress.add_argument("-o", "--output", default=None, help="wav or flac file, or -")
    _common(decompress)
    decompress.set_defaults(handler=run_decompress)

    info = subparsers.add_parser("info", help="check a .vcd file and print its header")
    info.add_argument("files", nargs="+", help=".vcd files")
    info.add_argument(
        "--model",
        default=None,
        help="codec checkpoint whose code prior (<stem>.prior.json) reads range-coded files "
        "(default: the shipped codec that made each file); the model itself is not loaded",
    )
    info.set_defaults(handler=run_info)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="codec checkpoint (default: models/codec/codec_sisdr.safetensors; decompress: "
        "the shipped codec that made the file)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_precision_argument(parser, "the codec's frame-rate 1x1 layers (the rest is fp32)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")


def run_compress(args: argparse.Namespace) -> int:
    from codec.compress import CompressOptions, compress, load
    from core.errors import VocalisError

    if args.batch_size < 1:
        raise VocalisError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.chunk_seconds > 0:
        raise VocalisError(f"--chunk-seconds must be positive, got {args.chunk_seconds}")
    streaming = args.inputs == ["-"] or args.output == "-"
    if args.output == "-" and args.inputs != ["-"]:
        raise VocalisError("-o - (stdout) needs - (stdin) as the input")
    options = CompressOptions(
        kbps=args.bitrate,
        entropy=not args.no_entropy,
        chunk_seconds=args.chunk_seconds,
        batch_size=args.batch_size,
        progress=not args.quiet and not streaming and sys.stderr.isatty(),
    )
    codec = load(args.model, device=args.device, precision=args.precision)
    for r in compress(args.inputs, args.output, codec, options):
        if not args.quiet and not streaming:
            print(f"{r.input} -> {r.output}: {r.seconds:.2f} s, {r.bytes} bytes, {r.kbps:.2f} kbps")
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from codec.compress import decompress, load, shipped_codec_for

    model = args.model if args.model is not None else shipped_codec_for(args.input)
    codec = load(model, device=args.device, precision=args.precision)
    progress = not args.quiet and args.output != "-" and sys.stderr.isatty()
    out = decompress(args.input, args.output, codec, progress=progress)
    if not args.quiet and out != "-":
        print(f"{args.input} -> {out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from codec.compress import info, load_prior, shipped_codec_for
    from codec.model import default_compress_checkpoint
    from core.checkpoint import checkpoint_paths

    priors = {}  # weights path -> its code prior (or None), each read once
    for path in args.files:
        # as decompress: without --model, the shipped codec that made the file
        model = args.model or shipped_codec_for(path) or default_compress_checkpoint()
        weights = checkpoint_paths(model)[0]
        if weights not in priors:
            priors[weights] = load_prior(weights)
        header, chunks, size = info(path, priors[weights])
        seconds = header.original_length / header.original_sample_rate
        kbps = 8 * size / seconds / 1000 if seconds else 0.0
        lufs = "unknown" if header.loudness is None else f"{header.loudness:.1f} LUFS"
        print(
            f"{path}: ok, {seconds:.2f} s, {header.original_sample_rate} Hz, "
            f"{header.channels} ch, {lufs}\n"
            f"  codec {header.model.id[:12]}... at {header.sample_rate} Hz, "
            f"{header.n_codebooks} codebooks x {header.bits_per_code} bits, "
            f"{header.frames} frames in {chunks} chunk(s), coding {header.coding}"
            f"{'' if header.prior is None else f' from code prior {header.prior}'}\n"
            f"  {size} bytes, {kbps:.2f} kbps"
        )
    return 0
