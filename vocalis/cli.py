"""The `vocalis` command line: the one place that reads command-line flags.

Each command group lives in a module of `vocalis.commands` exposing
`register(subparsers)`; the module defines only arguments at import time and imports
torch and the models inside its handlers, so `vocalis --help` stays fast.

Errors the user can fix (`core.errors.VocalisError`, missing files, bad values) are
printed as one line, `vocalis: error: ...`, with exit status 2; anything else is a bug
and keeps its traceback. Warnings are one line too, `vocalis: warning: ...`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from vocalis import __version__

# Command groups, in the order `vocalis --help` lists them. Later issues append theirs.
COMMAND_MODULES = (
    "vocalis.commands.audio",
    "vocalis.commands.data",
    "vocalis.commands.check",
    "vocalis.commands.train",
    "vocalis.commands.eval",
    "vocalis.commands.compress",
    "vocalis.commands.transcribe",
    "vocalis.commands.say",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocalis",
        description="Offline speech toolkit: codec, text-to-speech, speech recognition.",
    )
    parser.add_argument("--version", action="version", version=f"vocalis {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.errors import VocalisError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        # A group named without its subcommand, or nothing at all: show what exists.
        (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            result = args.handler(args)
    except (VocalisError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"vocalis: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vocalis: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"vocalis: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.strerror or type(e).__name__}: {e.filename}"
    return " ".join(str(e).split()) or type(e).__name__
