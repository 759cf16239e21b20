"""`vocalis eval codec`: score a codec checkpoint against Opus and codec2 on real speech."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_MANIFESTS = ("imports/ljspeech.jsonl", "imports/librispeech.jsonl")  # under the data root


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("eval", help="evaluate models on held-out data")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(title="eval commands", metavar="COMMAND")

    codec = sub.add_parser(
        "codec",
        help="PESQ-wb, STOI, ViSQOL, mel distance, SI-SDR per bitrate, beside Opus and codec2",
        description="Scores the codec at 1.5, 3 and 6 kbps and the baselines Opus 6/12 kbps and "
        "codec2 3200 on the same clips, at 16 kHz; prints one markdown table. Clips come from "
        "--audio files, else the held-out split of --manifest (default: the real-speech "
        "imports, ljspeech and librispeech, under $VOCALIS_DATA).",
    )
    codec.add_argument("--checkpoint", default=None, help="codec checkpoint (none: baselines only)")
    codec.add_argument("--manifest", action="append", default=None, help="manifest (repeatable)")
    codec.add_argument("--split", default="test", help="manifest split to use (default: test)")
    codec.add_argument("--audio", action="append", default=None, help="audio file (repeatable)")
    codec.add_argument("--max-clips", type=int, default=10, help="at most this many clips")
    codec.add_argument(
        "--kbps", type=float, nargs="+", default=None, help="codec bitrates (default 1.5 3 6)"
    )
    codec.add_argument("--no-baselines", action="store_true", help="skip Opus and codec2")
    codec.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (the slowest)")
    codec.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    codec.set_defaults(handler=run_codec)


def _clips(args: argparse.Namespace) -> list[str]:
    from core.errors import VocalisError
    from corpus.manifest import read_manifest
    from vocalis.commands.data import default_data_root

    if args.max_clips <= 0:
        raise VocalisError(f"--max-clips must be positive, got {args.max_clips}")
    if args.audio:
        return list(args.audio)[: args.max_clips]
    if args.manifest:
        paths = [Path(m) for m in args.manifest]
    else:
        paths = [default_data_root() / m for m in DEFAULT_MANIFESTS]
        paths = [p for p in paths if p.is_file()]
        if not paths:
            raise VocalisError(
                "no real-speech manifest found; import one (`vocalis data import ...`) or pass "
                "--manifest or --audio"
            )
    # Round-robin over sources so that every corpus is represented within --max-clips.
    by_source: dict[str, list[str]] = {}
    for path in paths:
        for u in read_manifest(path):
            if u.split == args.split:
                by_source.setdefault(u.source, []).append(u.audio)
    clips: list[str] = []
    queues = [sorted(v) for v in by_source.values()]
    while len(clips) < args.max_clips and any(queues):
        for q in queues:
            if q and len(clips) < args.max_clips:
                clips.append(q.pop(0))
    if not clips:
        raise VocalisError(f"no utterances of split '{args.split}' in {', '.join(map(str, paths))}")
    return clips


def run_codec(args: argparse.Namespace) -> int:
    from codec.evaluate import (
        CODEC_KBPS,
        Scorer,
        baseline_systems,
        codec_systems,
        evaluate,
    )
    from core.errors import VocalisError

    clips = _clips(args)
    systems, codec_rate = [], 24000
    if args.checkpoint is not None:
        from codec.model import load_codec

        model = load_codec(args.checkpoint).eval()
        codec_rate = model.sample_rate
        kbps = tuple(args.kbps) if args.kbps else CODEC_KBPS
        if any(k <= 0 for k in kbps):
            raise VocalisError(f"--kbps must be positive, got {list(kbps)}")
        systems += codec_systems(model, kbps, name=Path(args.checkpoint).stem)
    if not args.no_baselines:
        systems += baseline_systems()
    if not systems:
        raise VocalisError("nothing to evaluate: give --checkpoint or drop --no-baselines")
    report = evaluate(
        clips,
        systems,
        codec_rate=codec_rate,
        scorer=Scorer(use_visqol=not args.no_visqol),
        progress=lambda clip: print(f"scored {clip}", file=sys.stderr),
    )
    print(report.to_json() if args.json else report.to_markdown(), end="")
    return 0
