"""`vocalis audio info|convert`: inspect and convert audio files with the shared audio module."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("audio", help="inspect and convert audio files")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(title="audio commands", metavar="COMMAND")

    info = sub.add_parser("info", help="print rate, channels, duration and loudness of files")
    info.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...)")
    info.set_defaults(handler=run_info)

    convert = sub.add_parser("convert", help="resample, downmix and loudness-normalise a file")
    convert.add_argument("input", help="audio file to read")
    convert.add_argument("output", help="wav or flac file to write (atomically)")
    convert.add_argument("--sample-rate", type=int, default=None, help="resample to this rate (Hz)")
    convert.add_argument("--stereo", action="store_true", help="keep all channels (default: mono)")
    convert.add_argument("--lufs", type=float, default=None, help="normalise to this loudness")
    convert.set_defaults(handler=run_convert)


def run_info(args: argparse.Namespace) -> int:
    from core.audio import audio_info, load_audio, loudness

    for path in args.files:
        info = audio_info(path)
        wav, rate = load_audio(path, mono=False)
        print(
            f"{info.path}: {info.format}/{info.subtype}, {info.sample_rate} Hz, "
            f"{info.channels} ch, {info.duration:.2f} s, {loudness(wav, rate):.1f} LUFS"
        )
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from core.audio import load_audio, normalize_loudness, save_audio
    from core.errors import VocalisError

    if args.sample_rate is not None and args.sample_rate <= 0:
        raise VocalisError(f"--sample-rate must be positive, got {args.sample_rate}")
    wav, rate = load_audio(args.input, args.sample_rate, mono=not args.stereo)
    if args.lufs is not None:
        wav = normalize_loudness(wav, rate, args.lufs)
    save_audio(args.output, wav, rate)
    print(f"wrote {args.output}: {rate} Hz, {wav.shape[0]} ch, {wav.shape[-1] / rate:.2f} s")
    return 0
