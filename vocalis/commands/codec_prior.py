"""`vocalis train codec-prior`: count a codec's codes on training audio for the range coder."""

from __future__ import annotations

import argparse


def register_prior(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "codec-prior",
        help="count the codec's code frequencies on training audio (a prior for .vcd coding)",
        description="Encode the training utterances of manifests with the codec and write how "
        "often each code of each codebook occurs (codec/prior.py) beside the codec's weights, "
        "where compress and decompress find it: range-coded .vcd files then start from these "
        "frequencies instead of uniform ones. Only split 'train' (and, in a synthetic corpus, "
        "training voices) is read, taken in turn from each source.",
    )
    p.add_argument("--manifest", action="append", required=True, help="manifest (repeatable)")
    p.add_argument("--model", default=None, help="codec checkpoint (default: the shipped one)")
    p.add_argument("--max-files", type=int, default=400, help="at most this many utterances")
    p.add_argument(
        "-o", "--output", default=None, help="prior file (default: <model stem>.prior.json)"
    )
    p.set_defaults(handler=run_prior)


def run_prior(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from codec.compress import load
    from codec.model import SHIPPED_CHECKPOINT as SHIPPED
    from codec.prior import CodePrior, code_histograms, prior_path
    from core.audio import load_audio
    from core.checkpoint import checkpoint_paths
    from core.errors import VocalisError
    from vocalis.commands.eval import _by_source, _interleave

    if args.max_files <= 0:
        raise VocalisError(f"--max-files must be positive, got {args.max_files}")
    codec = load(args.model or SHIPPED, precision="fp32")  # the same counts on every machine
    model = codec.model
    by_source = _by_source(
        args.manifest,
        lambda u: u.split == "train" and u.extra.get("speaker_split", "train") == "train",
    )
    utterances = _interleave(list(by_source.values()), args.max_files)
    if not utterances:
        raise VocalisError("no training utterances in the manifests")

    def codes():
        for u in utterances:
            wav = load_audio(u.audio, model.sample_rate)[0].mean(0)  # (T,)
            with torch.inference_mode():
                yield model.encode(wav[None, None]).numpy()  # (1, Q, F)

    counts = code_histograms(codes(), model.num_codebooks, model.cardinality)  # (Q, K)
    prior = CodePrior.fit(counts, codec.same_codes)
    out = prior.save(args.output or prior_path(checkpoint_paths(args.model or SHIPPED)[0]))
    p = counts / counts.sum(axis=1, keepdims=True)
    bits = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)  # (Q,) entropy of each codebook
    width = (model.cardinality - 1).bit_length()
    print(
        f"{len(utterances)} utterances, {int(counts[0].sum())} frames -> {out}\n"
        f"entropy per codebook (bits of {width}): {' '.join(f'{b:.2f}' for b in bits)}\n"
        f"a prior-coded file is about {100 * (1 - bits.mean() / width):.1f} % smaller than packed "
        "(on audio like this)"
    )
    return 0
