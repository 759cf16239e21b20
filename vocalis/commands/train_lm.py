"""`vocalis train asr-lm`: count the token n-gram language model that the recogniser's
beam search can fuse (asr.lm), over text that needs no audio."""

from __future__ import annotations

import argparse
import sys
import time


def register_asr_lm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "asr-lm",
        help="count the n-gram language model for the recogniser's beam search",
        description="Count an interpolated Kneser-Ney n-gram model over the BPE pieces of an "
        "ASR checkpoint's tokenizer, for shallow fusion (vocalis transcribe/eval asr --lm). "
        "Text: the train-split transcripts of --manifest, the text sources of --text "
        "('wordnet', 'gcide' or a text file, one sentence or paragraph per line) and --templates "
        "sentences of the project's grammar. Every sentence of the valid and test splits of "
        "--manifest is held out of all of them.",
    )
    p.add_argument("-o", "--output", required=True, help="the LM checkpoint to write")
    p.add_argument("--model", default=None, help="the ASR checkpoint whose tokenizer to use")
    p.add_argument(
        "--manifest",
        action="append",
        default=[],
        help="manifest (repeatable): train text in, valid and test text held out",
    )
    p.add_argument(
        "--text", action="append", default=[], help="'wordnet', 'gcide' or a text file (repeatable)"
    )
    p.add_argument("--templates", type=int, default=0, help="template sentences (default 0)")
    p.add_argument("--order", type=int, default=4, help="longest n-gram (default 4)")
    p.add_argument(
        "--prune",
        type=int,
        default=1,
        help="drop n-grams of order 3 and above seen this many times or fewer (default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="composes the text sources (default 0)")
    p.set_defaults(handler=run_asr_lm)


def run_asr_lm(args: argparse.Namespace) -> int:
    from asr.lm import build_lm, corpus_text, save_lm
    from asr.model import load_asr
    from core.errors import VocalisError

    if not 1 <= args.order <= 5:
        raise VocalisError(f"--order must be 1 to 5, got {args.order}")
    if args.prune < 0 or args.templates < 0:
        raise VocalisError("--prune and --templates must not be negative")
    if not (args.manifest or args.text or args.templates):
        raise VocalisError("no text: give --manifest, --text or --templates")
    start = time.perf_counter()
    tokenizer = load_asr(args.model).tokenizer
    try:
        lines, record = corpus_text(args.manifest, args.text, args.templates, args.seed)
        dims, tables, counts = build_lm(lines, tokenizer, order=args.order, prune=args.prune)
    except ValueError as e:
        raise VocalisError(str(e)) from None
    record.update(counts)
    record["seconds"] = round(time.perf_counter() - start, 1)
    save_lm(args.output, dims, tables, record)
    n_grams = " / ".join(str(n) for n in counts["n_grams"])
    print(
        f"asr-lm: {counts['lines']} lines, {counts['tokens']} tokens, order {args.order}, "
        f"n-grams {n_grams} -> {args.output} ({record['seconds']:.0f} s)",
        file=sys.stderr,
    )
    return 0
