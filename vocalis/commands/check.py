"""`vocalis check`: exercise the installation end to end on a real clip (the main job until
trained models ship)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check", help="run audio, blocks, trainer and checkpoints end to end")
    p.add_argument(
        "--clip", type=Path, default=None, help="audio file to use (default: LJ001-0001)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/check"), help="folder for the files it writes"
    )
    p.add_argument("--steps", type=int, default=60, help="training steps (default: 60)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from core.errors import VocalisError
    from vocalis.selfcheck import run_check

    if args.steps < 10:
        raise VocalisError(f"--steps must be at least 10, got {args.steps}")
    if args.clip is not None and not args.clip.exists():
        raise VocalisError(f"no such audio file: '{args.clip}'")
    return 0 if run_check(args.clip, args.out, args.steps) else 1
