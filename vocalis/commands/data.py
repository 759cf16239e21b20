"""`vocalis data import|synth|stats|split|cache`: build and inspect speech manifests.

Corpora live outside the repository: under `$VOCALIS_DATA` when set, else
`~/.cache/vocalis/corpus`. Only this module reads flags and that variable.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

LAYOUTS = ("ljspeech", "librispeech", "libritts", "vctk", "folder", "digits")


def default_data_root() -> Path:
    env = os.environ.get("VOCALIS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vocalis" / "corpus"


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "data",
        help="import, synthesise, split and inspect speech corpora",
        description=f"Corpora are written under $VOCALIS_DATA (default {default_data_root()}).",
    )
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(title="data commands", metavar="COMMAND")
    _register_import(sub)
    _register_synth(sub)
    _register_stats(sub)
    _register_split(sub)
    _register_cache(sub)
    _register_pack(sub)


def _register_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a corpus folder into a JSONL manifest",
        description="Read a corpus folder (never modified) and write a manifest; unreadable "
        "or odd files are skipped and listed in a report beside the manifest.",
    )
    p.add_argument("layout", choices=LAYOUTS, help="folder layout")
    p.add_argument("folder", help="corpus folder to read")
    p.add_argument("-o", "--output", default=None, help="manifest to write (.jsonl)")
    p.add_argument("--name", default=None, help="source name and speaker namespace")
    p.add_argument(
        "--split-by",
        choices=("speaker", "utterance", "text", "none"),
        default=None,
        help="how to assign train/valid/test (default: per layout)",
    )
    p.add_argument("--valid", type=float, default=0.05, help="held-out fraction for valid")
    p.add_argument("--test", type=float, default=0.05, help="held-out fraction for test")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.set_defaults(handler=run_import)


def _register_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="render the synthetic multi-speaker corpus",
        description="Render generated sentences with espeak-ng, flite and festival voices. "
        "Parallel, resumable (run the same command again), deterministic for a seed.",
    )
    p.add_argument("-o", "--output", default=None, help="corpus folder (default: DATA/synth)")
    p.add_argument("--utterances", type=int, default=24000, help="utterances to plan")
    p.add_argument("--seed", type=int, default=0, help="seed for text, speakers and jitter")
    p.add_argument("--sample-rate", type=int, default=24000, help="output rate (Hz)")
    p.add_argument("--workers", type=int, default=2, help="parallel render processes")
    p.add_argument(
        "--engines", default="espeak,flite,festival", help="comma-separated engines to use"
    )
    p.add_argument("--held-out-per-speaker", type=int, default=300, help="utts per held-out voice")
    p.add_argument(
        "--text",
        default="generated",
        help="what the voices read: 'generated' (template sentences), 'wordnet' (WordNet's "
        "glosses and examples, natural English), 'gcide' (the 1913 Webster's quotations, "
        "older English prose and verse; Debian dict-gcide) or a UTF-8 text file, one "
        "sentence per line",
    )
    p.add_argument(
        "--revoice",
        default=None,
        metavar="MANIFEST",
        help="instead, read the training text of a synthetic corpus's manifest again, each "
        "row in a new espeak voice (accent x variant pairs, none sharing an accent or a "
        "variant with the corpus's held-out voices; all rows train), at most --utterances "
        "rows (default folder: DATA/<its folder>_voices)",
    )
    p.add_argument("--list-speakers", action="store_true", help="print the speakers and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_synth)


def _register_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="hours per speaker and split, sample rates, text coverage of manifests"
    )
    p.add_argument("manifests", nargs="+", help="JSONL manifests")
    p.add_argument("--speakers", type=int, default=20, help="show at most this many speakers")
    p.set_defaults(handler=run_stats)


def _register_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="(re)assign train/valid/test splits of a manifest",
        description="Held-out speakers and held-out texts: an utterance is train only if "
        "neither its speaker nor its text is held out.",
    )
    p.add_argument("manifest", help="manifest to read")
    p.add_argument("-o", "--output", required=True, help="manifest to write")
    p.add_argument("--by", default="speaker", help="speaker, text, utterance or speaker,text")
    p.add_argument("--valid", type=float, default=0.05, help="held-out fraction for valid")
    p.add_argument("--test", type=float, default=0.05, help="held-out fraction for test")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.set_defaults(handler=run_split)


def _register_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="build the resampled-audio or codec-token cache of a manifest",
        description="Resample every utterance to one rate (or, with --codec, encode it to codec "
        "tokens) into compact shards with their own manifest; entries are rebuilt when the "
        "source file or the encoder (the codec's weights) changes.",
    )
    p.add_argument("manifest", help="manifest to read")
    p.add_argument("--sample-rate", type=int, default=16000, help="target rate (Hz)")
    p.add_argument("-o", "--output", default=None, help="cache folder (default: DATA/cache/...)")
    p.add_argument("--shard-seconds", type=float, default=1800.0, help="audio per shard")
    p.add_argument("--codec", default=None, help="codec checkpoint: cache its tokens instead")
    p.add_argument("--codebooks", type=int, default=None, help="codebooks to keep (default all)")
    p.set_defaults(handler=run_cache)


def _register_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="codec tokens and transcripts of manifests in one small folder (no audio)",
        description="Encode the manifests' transcribed utterances with the codec (through the "
        "token cache) and write a self-contained token pack: what `vocalis train valle` needs, "
        "without the audio (for a machine that has none). Use the folder as a manifest entry "
        "in the config's data.manifests or with --manifest.",
    )
    p.add_argument("manifests", nargs="+", help="manifests to read")
    p.add_argument("-o", "--output", required=True, help="pack folder to write")
    p.add_argument("--codec", default=None, help="codec checkpoint (default: the shipped one)")
    p.add_argument(
        "--max-hours",
        type=float,
        default=None,
        help="keep a seeded random subset of at most this much speech (a pack that must travel)",
    )
    p.set_defaults(handler=run_pack)


def run_import(args: argparse.Namespace) -> int:
    from core.errors import VocalisError
    from corpus.importers import import_corpus

    folder = Path(args.folder)
    if not folder.is_dir():
        raise VocalisError(f"no such folder: '{folder}'")
    name = args.name or args.layout
    output = Path(args.output) if args.output else default_data_root() / "imports" / f"{name}.jsonl"
    result = import_corpus(
        args.layout,
        folder,
        output,
        name=name,
        split_by=args.split_by,
        valid=args.valid,
        test=args.test,
        seed=args.seed,
    )
    print(
        f"imported {len(result.utterances)} utterances ({result.hours:.2f} h, "
        f"{result.speakers} speakers) into {output}; skipped {len(result.skipped)} files"
        + (f", see {result.report}" if result.skipped else "")
    )
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.errors import VocalisError
    from corpus.synth import synthesize
    from corpus.synth_plan import SynthConfig
    from corpus.voices import ENGINE_BINARIES, SPEAKERS

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINE_BINARIES]
    if unknown or not engines:
        raise VocalisError(f"--engines: choose from {', '.join(ENGINE_BINARIES)}")
    if args.utterances <= 0 or args.workers <= 0 or args.sample_rate < 8000:
        raise VocalisError("--utterances and --workers must be positive, --sample-rate >= 8000")
    if args.revoice:
        return _run_revoice(args)
    speakers = tuple(s for s in SPEAKERS if s.engine in engines)
    if args.list_speakers:
        _print_speakers(speakers)
        return 0
    text, id_prefix, folder = args.text, "", "synth"
    if text == "wordnet":
        id_prefix, folder = "wn", "synth_wordnet"
    elif text == "gcide":
        id_prefix, folder = "gc", "synth_gcide"
    elif text != "generated":
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise VocalisError(
                f"--text: no such file '{args.text}' (or use generated, wordnet, gcide)"
            )
        text, id_prefix, folder = str(path), "t", f"synth_{path.stem}"
    config = replace(
        SynthConfig(),
        utterances=args.utterances,
        seed=args.seed,
        sample_rate=args.sample_rate,
        speakers=speakers,
        held_out_per_speaker=args.held_out_per_speaker,
        text=text,
        id_prefix=id_prefix,
    )
    output = Path(args.output) if args.output else default_data_root() / folder
    report = synthesize(output, config, workers=args.workers, progress=not args.no_progress)
    print(
        f"{report.utterances} utterances, {report.hours:.2f} h in {report.manifest} "
        f"({report.rendered} rendered now, {report.resumed} from earlier runs, "
        f"{report.rejected} rejected; {report.wall_seconds / 60:.1f} min)"
    )
    return 0


def _print_speakers(speakers) -> None:
    for s in speakers:
        print(f"{s.id:40s} {s.engine:9s} {s.gender:6s} {s.accent}")


def _run_revoice(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.errors import VocalisError
    from corpus.manifest import read_manifest
    from corpus.synth import synthesize
    from corpus.synth_plan import SynthConfig, plan_revoice, revoice_speakers

    source = Path(args.revoice).expanduser().resolve()
    if not source.is_file():
        raise VocalisError(f"--revoice: no such manifest '{args.revoice}'")
    rows = read_manifest(source)
    base = SynthConfig()
    held_out = {u.speaker for u in rows if u.extra.get("speaker_split", "train") != "train"}
    held_out |= set(base.valid_speakers) | set(base.test_speakers)
    speakers = revoice_speakers(sorted(held_out), args.seed)
    if args.list_speakers:
        _print_speakers(speakers)
        return 0
    config = replace(
        base,
        utterances=args.utterances,
        seed=args.seed,
        sample_rate=args.sample_rate,
        speakers=speakers,
        valid_speakers=(),
        test_speakers=(),
        text="revoice",
        id_prefix="rv",
        revoice=str(source),
    )
    items = plan_revoice(rows, config)
    if not items:
        raise VocalisError(f"--revoice: '{args.revoice}' has no transcribed training rows")
    output = (
        Path(args.output) if args.output else default_data_root() / f"{source.parent.name}_voices"
    )
    report = synthesize(
        output, config, workers=args.workers, progress=not args.no_progress, items=items
    )
    print(
        f"{report.utterances} utterances in {len(speakers)} voices, {report.hours:.2f} h in "
        f"{report.manifest} ({report.rendered} rendered now, {report.resumed} from earlier "
        f"runs, {report.rejected} rejected; {report.wall_seconds / 60:.1f} min)"
    )
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from corpus.manifest import read_manifest
    from corpus.stats import format_stats, manifest_stats

    for path in args.manifests:
        print(format_stats(path, manifest_stats(read_manifest(path)), max_speakers=args.speakers))
    return 0


def run_split(args: argparse.Namespace) -> int:
    from core.errors import VocalisError
    from corpus.manifest import read_manifest, write_manifest
    from corpus.splits import SplitSpec, assign_splits

    keys = tuple(k.strip() for k in args.by.split(",") if k.strip())
    try:
        spec = SplitSpec(by=keys, valid=args.valid, test=args.test, seed=args.seed)
    except ValueError as e:
        raise VocalisError(str(e)) from None
    utterances = assign_splits(read_manifest(args.manifest), spec)
    write_manifest(args.output, utterances)
    counts = {s: sum(u.split == s for u in utterances) for s in ("train", "valid", "test")}
    print(f"wrote {args.output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from core.errors import VocalisError
    from corpus.cache import CodecEncoder, FeatureCache, ResampleEncoder, default_folder
    from corpus.manifest import read_manifest

    if args.sample_rate < 1000 or args.shard_seconds <= 0:
        raise VocalisError("--sample-rate must be >= 1000 and --shard-seconds positive")
    manifest = Path(args.manifest)
    utterances = read_manifest(manifest)
    if args.codec is not None:
        try:
            encoder = CodecEncoder.from_checkpoint(args.codec, args.codebooks)
        except ValueError as e:
            raise VocalisError(f"--codebooks: {e}") from None
    else:
        encoder = ResampleEncoder(args.sample_rate)
    output = (
        Path(args.output) if args.output else default_folder(default_data_root(), manifest, encoder)
    )
    cache = FeatureCache(output, encoder, shard_seconds=args.shard_seconds)
    result = cache.build(utterances, progress=True)
    print(
        f"cache {output}: {result.encoded} encoded, {result.reused} reused, "
        f"{result.failed} failed, {result.shards} shards"
    )
    return 0


def subset_by_hours(durations: list[float], max_hours: float, seed: int = 0) -> list[int]:
    """Indices (in order) of a seeded random subset whose total is at most `max_hours`."""
    from core.errors import VocalisError

    if max_hours <= 0:
        raise VocalisError(f"--max-hours must be positive, got {max_hours:g}")
    order = list(range(len(durations)))
    random.Random(seed).shuffle(order)
    keep, total = [], 0.0
    for i in order:
        if total + durations[i] <= max_hours * 3600:
            keep.append(i)
            total += durations[i]
    return sorted(keep)


def run_pack(args: argparse.Namespace) -> int:
    from codec.model import SHIPPED_CHECKPOINT
    from corpus.cache import CodecEncoder, encoded_manifest
    from corpus.token_pack import write_token_pack

    encoder = CodecEncoder.from_checkpoint(args.codec or SHIPPED_CHECKPOINT)
    utterances, codes, missing = [], [], 0
    for manifest in args.manifests:
        for u, c in encoded_manifest(manifest, encoder, default_data_root(), progress=True):
            if not u.text:
                continue
            if c is None:
                missing += 1
                continue
            utterances.append(u)
            codes.append(c)
    if args.max_hours is not None:
        keep = subset_by_hours([u.duration for u in utterances], args.max_hours)
        utterances, codes = [utterances[i] for i in keep], [codes[i] for i in keep]
    folder = write_token_pack(
        args.output,
        utterances,
        codes,
        codec_sha256=encoder.weights_hash,
        frame_rate=float(encoder.model.frame_rate),
    )
    size = (folder / "tokens.safetensors").stat().st_size
    hours = sum(u.duration for u in utterances) / 3600
    print(
        f"pack {folder}: {len(utterances)} transcribed utterances ({hours:.2f} h), "
        f"{size / 2**20:.1f} MB of tokens"
        + (f", {missing} could not be encoded" if missing else "")
    )
    return 0
