"""`vocalis transcribe` (audio files -> text, subtitles or JSON) and `vocalis label` (a folder
of audio -> a manifest of confident transcripts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files with the speech recogniser",
        description="Transcribe audio files of any length and rate (30-second windows with "
        "seek, several files decoded in one batch). Silence gives empty text. Without -o "
        "the result goes to stdout.",
    )
    transcribe.add_argument("files", nargs="+", help="audio files")
    transcribe.add_argument(
        "--format", choices=("txt", "srt", "vtt", "json"), default="txt", help="output format"
    )
    transcribe.add_argument(
        "-o", "--output", default=None, help="folder for one <name>.<format> per input"
    )
    _common(transcribe, beam_size=5)
    transcribe.set_defaults(handler=run_transcribe)

    label = subparsers.add_parser(
        "label",
        help="transcribe a folder of audio into a manifest, keeping confident transcripts",
        description="Transcribe every audio file under DIR and write a JSONL manifest with "
        "the text and its confidence (avg_logprob, no_speech_prob) per utterance. "
        "Utterances with empty text, avg_logprob below --min-logprob or no_speech_prob "
        "above --max-no-speech are dropped as doubtful. Unreadable files are skipped "
        "with a warning.",
    )
    label.add_argument("dir", help="folder of audio files (searched recursively)")
    label.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    label.add_argument("--min-logprob", type=float, default=-0.8, help="default -0.8")
    label.add_argument("--max-no-speech", type=float, default=0.5, help="default 0.5")
    label.add_argument("--source", default="label", help="the manifest's source name")
    _common(label, beam_size=1)
    label.set_defaults(handler=run_label)


def _common(parser: argparse.ArgumentParser, *, beam_size: int) -> None:
    parser.add_argument("--model", default=None, help="ASR checkpoint (default: the shipped one)")
    parser.add_argument(
        "--beam-size", type=int, default=beam_size, help=f"1 = greedy (default {beam_size})"
    )
    parser.add_argument("--no-timestamps", action="store_true", help="decode without timestamps")
    parser.add_argument("--no-fallback", action="store_true", help="no temperature fallback")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _options(args: argparse.Namespace, *, timestamps: bool):
    from asr.decoding import DecodingOptions, FallbackOptions
    from asr.transcribe import TranscribeOptions
    from core.errors import VocalisError

    if args.beam_size < 1:
        raise VocalisError(f"--beam-size must be at least 1, got {args.beam_size}")
    if args.batch_size < 1:
        raise VocalisError(f"--batch-size must be at least 1, got {args.batch_size}")
    fallback = FallbackOptions(temperatures=(0.0,)) if args.no_fallback else FallbackOptions()
    return TranscribeOptions(
        decoding=DecodingOptions(beam_size=args.beam_size, timestamps=timestamps),
        fallback=fallback,
        batch_size=args.batch_size,
    )


def run_transcribe(args: argparse.Namespace) -> int:
    from asr.formats import FORMATS
    from asr.model import load_asr
    from asr.transcribe import transcribe
    from core.audio import audio_info

    options = _options(args, timestamps=not args.no_timestamps)
    for f in args.files:
        audio_info(f)  # a missing or unreadable file fails here, before any decoding
    model = load_asr(args.model, device=args.device)
    write = FORMATS[args.format]
    out_dir = Path(args.output) if args.output else None
    for path, transcript in zip(args.files, transcribe(model, args.files, options)):
        text = write(transcript, path) if args.format == "json" else write(transcript)
        if out_dir is None:
            if len(args.files) > 1 and args.format != "json":
                print(f"# {path}")
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from core.io import write_bytes_atomic

            target = out_dir / f"{Path(path).stem}.{args.format}"
            write_bytes_atomic(target, text.encode("utf-8"))
            print(f"{path} -> {target}", file=sys.stderr)
    return 0


def run_label(args: argparse.Namespace) -> int:
    from asr.model import load_asr
    from asr.transcribe import transcribe
    from core.audio import AUDIO_SUFFIXES, audio_info
    from core.errors import AudioError, VocalisError
    from corpus.manifest import Utterance, write_manifest
    from corpus.text import normalize_text

    folder = Path(args.dir)
    if not folder.is_dir():
        raise VocalisError(f"no such folder: '{folder}'")
    options = _options(args, timestamps=not args.no_timestamps)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    infos = []
    for path in files:
        try:
            infos.append(audio_info(path))
        except AudioError as e:
            print(f"vocalis: warning: skipped: {e}", file=sys.stderr)
    if not infos:
        raise VocalisError(f"no readable audio files under '{folder}'")
    model = load_asr(args.model, device=args.device)
    kept, doubtful = [], 0
    for info, transcript in zip(infos, transcribe(model, [i.path for i in infos], options)):
        text = normalize_text(transcript.text)
        if (
            not text
            or transcript.avg_logprob < args.min_logprob
            or transcript.no_speech_prob > args.max_no_speech
        ):
            doubtful += 1
            continue
        relative = Path(info.path).relative_to(folder)
        group = relative.parent.as_posix() if relative.parent.parts else "unknown"
        kept.append(
            Utterance(
                id=relative.with_suffix("").as_posix().replace("/", "_"),
                audio=str(Path(info.path).resolve()),
                duration=round(info.duration, 4),
                sample_rate=info.sample_rate,
                text=text,
                speaker=f"{args.source}/{group}",
                source=args.source,
                extra={
                    "avg_logprob": round(transcript.avg_logprob, 4),
                    "no_speech_prob": round(transcript.no_speech_prob, 4),
                },
            )
        )
    write_manifest(args.output, kept)
    skipped = len(files) - len(infos)
    note = f", {skipped} unreadable skipped" if skipped else ""
    print(
        f"labelled {len(kept)} of {len(infos)} files ({doubtful} dropped as doubtful{note}) "
        f"-> {args.output}"
    )
    return 0
