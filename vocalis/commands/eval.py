"""`vocalis eval codec`: score a codec checkpoint against Opus and codec2 on real speech.
`vocalis eval asr`: word error rate of an ASR checkpoint beside pocketsphinx.
`vocalis eval tts`: intelligibility, voice likeness and speed of a TTS checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vocalis.commands.say import (
    add_ar_precision_argument,
    add_sampling_arguments,
    sampling_options,
)
from vocalis.commands.transcribe import (
    add_chunk_argument,
    add_ctc_weight_argument,
    add_lm_arguments,
    add_pause_argument,
    add_precision_argument,
    add_workers_argument,
)

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
    codec.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="codec checkpoint (repeatable: codecs side by side in one table; none: baselines only)",
    )
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
    add_precision_argument(codec, "the codec's frame-rate 1x1 layers, as `compress` runs them")
    codec.set_defaults(handler=run_codec)
    _register_asr(sub)
    _register_tts(sub)


def _manifest_paths(given: list[str] | None, defaults: tuple[str, ...], missing: str) -> list[Path]:
    """The --manifest paths, else those of `defaults` (under the data root) that exist;
    `missing` is the one-line error when there are none."""
    from core.errors import VocalisError
    from vocalis.commands.data import default_data_root

    if given:
        return [Path(m) for m in given]
    paths = [default_data_root() / m for m in defaults]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise VocalisError(missing)
    return paths


def _clips(args: argparse.Namespace) -> list[str]:
    from core.errors import VocalisError

    if args.max_clips <= 0:
        raise VocalisError(f"--max-clips must be positive, got {args.max_clips}")
    if args.audio:
        return list(args.audio)[: args.max_clips]
    paths = _manifest_paths(
        args.manifest,
        DEFAULT_MANIFESTS,
        "no real-speech manifest found; import one (`vocalis data import ...`) or pass "
        "--manifest or --audio",
    )
    # Round-robin over sources so that every corpus is represented within --max-clips.
    by_source = _by_source(paths, lambda u: u.split == args.split)
    clips = _interleave([[u.audio for u in us] for us in by_source.values()], args.max_clips)
    if not clips:
        raise VocalisError(f"no utterances of split '{args.split}' in {', '.join(map(str, paths))}")
    return clips


def _system_names(paths: list[str]) -> list[str]:
    """A row name per checkpoint: its file stem, or folder/stem where stems repeat."""
    stems = [Path(p).with_suffix("").name for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{stem}" for p, stem in zip(paths, stems)]


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
    kbps = tuple(args.kbps) if args.kbps else CODEC_KBPS
    if any(k <= 0 for k in kbps):
        raise VocalisError(f"--kbps must be positive, got {list(kbps)}")
    if args.checkpoint:
        from codec.model import load_codec
        from core.checkpoint import inference_dtype

        rates, dtype = set(), inference_dtype("cpu", args.precision)
        for path, name in zip(args.checkpoint, _system_names(args.checkpoint)):
            model = load_codec(path).eval().set_matmul_dtype(dtype)
            rates.add(codec_rate := model.sample_rate)
            systems += codec_systems(model, kbps, name=name)
        if len(rates) > 1:
            raise VocalisError(f"the checkpoints run at different sample rates {sorted(rates)}")
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


# ---------------------------------------------------------------------------------------
# ASR

# under the data root: template sentences, and natural text (`data synth --text wordnet`)
ASR_SYNTH_MANIFESTS = ("synth/manifest.jsonl", "synth_wordnet/manifest.jsonl")
ASR_REAL_MANIFESTS = ("imports/librispeech.jsonl", "imports/ljspeech.jsonl")
ASR_CONDITIONS = ("room", "phone", "pause")  # training.rooms.CONDITIONS, named here without torch


def _register_asr(sub: argparse._SubParsersAction) -> None:
    asr = sub.add_parser(
        "asr",
        help="word error rate on held-out synthetic voices and real speech, beside pocketsphinx",
        description="Transcribes held-out clips with the ASR checkpoint and with pocketsphinx "
        "(if installed) and prints the WER of each on normalised text, as one markdown table. "
        "Synthetic: the test split of voices held out of training (--synth, repeatable; default "
        "the synthetic corpora that exist, one row each). Real: the test split of --real manifests (default the "
        "librispeech and ljspeech imports), every source represented within --max-clips.",
    )
    asr.add_argument("--checkpoint", default=None, help="ASR checkpoint (default: the shipped one)")
    asr.add_argument(
        "--synth", action="append", default=None, help="synthetic-speech manifest (repeatable)"
    )
    asr.add_argument("--real", action="append", default=None, help="real-speech manifest")
    asr.add_argument("--split", default="test", help="manifest split to use (default: test)")
    asr.add_argument(
        "--max-clips",
        type=int,
        default=50,
        help="at most this many clips per set: synthetic sets take each held-out voice in "
        "turn, real ones clips evenly spaced over the set (default 50)",
    )
    asr.add_argument("--beam-size", type=int, default=5, help="1 = greedy (default 5)")
    add_ctc_weight_argument(asr, repeatable=True)
    add_lm_arguments(asr, repeatable=True)
    add_precision_argument(asr)
    asr.add_argument(
        "--batch-size", type=int, default=8, help="pieces or windows per batch (default 8)"
    )
    add_chunk_argument(asr, repeatable=True)
    add_pause_argument(asr, repeatable=True)
    add_workers_argument(asr)
    asr.add_argument("--device", default="cpu", help="torch device (default cpu)")
    asr.add_argument("--no-baselines", action="store_true", help="skip pocketsphinx")
    asr.add_argument(
        "--by-speaker",
        action="store_true",
        help="after each set's row, one row per speaker in it (the same transcripts)",
    )
    asr.add_argument(
        "--condition",
        action="append",
        choices=ASR_CONDITIONS,
        default=None,
        help="also score every set heard under this condition (repeatable): 'room', a "
        "reverberant room (RT60 0.6 s, direct-to-reverberant ratio 3 dB); 'phone', a 3.4 kHz "
        "band limit; 'pause', half a second of quiet hiss (-70 dBFS) before the clip "
        "(training.rooms.CONDITIONS; seeded per clip, the same every run)",
    )
    asr.add_argument(
        "--long-form",
        action="store_true",
        help="also score every set as long recordings: each speaker's clips of the set joined "
        "into one, 0.4 s of quiet hiss (-70 dBFS) between clips, the references joined alike",
    )
    asr.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    asr.add_argument(
        "--transcripts",
        default=None,
        help="also write every clip's reference, hypothesis and word errors, per system and "
        "set, to this JSON Lines file (for reading the errors)",
    )
    asr.set_defaults(handler=run_asr)


def _by_source(paths: list[Path], keep: Callable) -> dict[str, list]:
    """The utterances of the manifests that `keep` accepts, per corpus source, each
    source's sorted by audio path."""
    from corpus.manifest import read_manifest

    by_source: dict[str, list] = {}
    for path in paths:
        for u in read_manifest(path):
            if keep(u):
                by_source.setdefault(u.source, []).append(u)
    return {k: sorted(v, key=lambda u: u.audio) for k, v in by_source.items()}


def _asr_clips_by_source(paths: list[Path], split: str, held_out_voices: bool) -> dict:
    """Transcribed clips of `split` per corpus source, each source's clips sorted by path."""
    from asr.evaluate import Clip

    def keep(u) -> bool:
        if u.split != split or not u.text:
            return False
        return not held_out_voices or u.extra.get("speaker_split", split) == split

    by_source = _by_source(paths, keep)
    return {k: [Clip(u.audio, u.text, u.speaker) for u in us] for k, us in by_source.items()}


def _interleave(queues: list[list], max_clips: int) -> list:
    """Up to `max_clips` items taken round-robin from the queues, so no source dominates."""
    queues = [list(q) for q in queues]
    out: list = []
    while len(out) < max_clips and any(queues):
        for q in queues:
            if q and len(out) < max_clips:
                out.append(q.pop(0))
    return out


def _spread(items: list, max_clips: int) -> list:
    """Up to `max_clips` items evenly spaced over the list, first one included: a cut of a
    set sorted by path (the spoken digits: all the zeros, then all the ones...) still covers
    all of it."""
    if len(items) <= max_clips:
        return list(items)
    return [items[i * len(items) // max_clips] for i in range(max_clips)]


def run_asr(args: argparse.Namespace) -> int:
    import torch

    from asr.decoding import DecodingOptions
    from asr.evaluate import evaluate, pocketsphinx_system, vocalis_system
    from asr.lm import DEFAULT_LEXICON_PENALTY, DEFAULT_LM_WEIGHT
    from asr.model import load_asr
    from asr.transcribe import TranscribeOptions
    from core.checkpoint import inference_dtype
    from core.errors import VocalisError
    from vocalis.commands.data import default_data_root
    from vocalis.commands.transcribe import (
        check_ctc_weight,
        check_not_negative,
        check_workers,
        checked_for_model,
        chunk_seconds,
        load_fusion_lm,
        pause_seconds,
    )

    if args.max_clips <= 0:
        raise VocalisError(f"--max-clips must be positive, got {args.max_clips}")
    if args.beam_size < 1 or args.batch_size < 1:
        raise VocalisError("--beam-size and --batch-size must be at least 1")
    check_workers(args.workers)
    for weight in args.ctc_weight or []:
        check_ctc_weight(weight)
    for weight in args.lm_weight or []:
        check_not_negative("--lm-weight", weight)
    for penalty in args.lexicon_penalty or []:
        check_not_negative("--lexicon-penalty", penalty)
    for value in args.chunk_seconds or []:
        chunk_seconds(value)
    for value in args.pause_seconds or []:
        pause_seconds(value)
    root = default_data_root()
    synths = (
        [Path(p) for p in args.synth] if args.synth else [root / m for m in ASR_SYNTH_MANIFESTS]
    )
    real = [Path(p) for p in args.real] if args.real else [root / m for m in ASR_REAL_MANIFESTS]
    test_sets = {}
    for synth in synths if args.synth else [p for p in synths if p.is_file()]:
        sources = _asr_clips_by_source([synth], args.split, held_out_voices=True)
        # cut to --max-clips voice by voice: the first clips by path are all one voice's
        by_voice: dict[str, list] = {}
        for clip in (c for source in sources.values() for c in source):
            by_voice.setdefault(clip.speaker, []).append(clip)
        clips = _interleave(list(by_voice.values()), args.max_clips)
        # the first corpus keeps the plain name; others are told apart by their folder
        label = "synthetic" if synth == synths[0] else f"synthetic ({synth.parent.name})"
        if clips:
            test_sets[f"{label}, held-out voices"] = clips
    real = real if args.real else [p for p in real if p.is_file()]
    if real:
        # one row per real source: the sets differ too much (read books vs single digits)
        # for a pooled figure to say anything
        for source, clips in _asr_clips_by_source(real, args.split, held_out_voices=False).items():
            test_sets[f"real: {source}"] = _spread(clips, args.max_clips)
    if not test_sets:
        raise VocalisError(
            f"no transcribed utterances of split '{args.split}' found; pass --synth or --real"
        )
    dtype = inference_dtype(args.device, args.precision)
    model = load_asr(args.checkpoint, device=args.device, dtype=dtype)
    name = Path(args.checkpoint).stem if args.checkpoint else "vocalis"
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    lm = load_fusion_lm(args.lm, model)
    lm_weights = (args.lm_weight or [DEFAULT_LM_WEIGHT]) if lm is not None else [0.0]
    judged = lm is not None and lm.lexicon is not None
    penalties = (args.lexicon_penalty or [DEFAULT_LEXICON_PENALTY]) if judged else [0.0]
    systems = []
    chunks, pauses = args.chunk_seconds or [None], args.pause_seconds or [None]
    grid = itertools.product(args.ctc_weight or [None], lm_weights, penalties, chunks, pauses)
    for weight, lm_weight, penalty, chunk, pause in grid:
        decoding = DecodingOptions(
            beam_size=args.beam_size,
            timestamps=False,
            ctc_weight=weight,
            lm=lm,
            lm_weight=lm_weight,
            lexicon_penalty=penalty,
        )
        decoding = checked_for_model(decoding, model)
        options = TranscribeOptions(
            decoding=decoding,
            batch_size=args.batch_size,
            workers=args.workers,
            chunk_seconds=chunk_seconds(chunk),
            pause_seconds=pause_seconds(pause),
        )
        ctc = f", CTC {decoding.ctc_weight:g}" if model.ctc is not None else ""
        fused = f", LM {lm_weight:g}" if lm is not None else ""
        if judged:
            fused += f", lexicon {penalty:g}"
        pieces = ""
        if args.chunk_seconds:
            secs = options.chunk_seconds
            pieces = ", 30 s windows" if secs is None else f", pieces {secs:g} s"
        if args.pause_seconds and options.chunk_seconds is not None:
            secs = options.pause_seconds
            pieces += ", no pause cuts" if secs is None else f", pauses {secs:g} s"
        label = f"vocalis ({name}, {precision}{ctc}{fused}{pieces})"
        systems.append(vocalis_system(model, options, name=label))
    baseline = None if args.no_baselines else pocketsphinx_system()
    if baseline is not None:
        systems.append(baseline)
    elif not args.no_baselines:
        print("pocketsphinx is not installed: no baseline row", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="vocalis-eval-asr-") as folder:
        clean = list(test_sets.items())
        for condition in args.condition or []:
            for set_name, clips in clean:
                here = Path(folder) / f"{len(test_sets):02d}"
                test_sets[f"{set_name}, {condition}"] = _under_condition(clips, condition, here)
        if args.long_form:
            for set_name, clips in clean:
                here = Path(folder) / f"{len(test_sets):02d}"
                test_sets[f"{set_name}, long-form"] = _joined(clips, here)
        report = evaluate(
            test_sets,
            systems,
            progress=lambda line: print(line, file=sys.stderr),
            by_speaker=args.by_speaker,
        )
    if args.transcripts:
        from core.io import write_bytes_atomic

        lines = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in report.transcripts)
        write_bytes_atomic(Path(args.transcripts), lines.encode("utf-8"))
    print(report.to_json() if args.json else report.to_markdown(), end="")
    return 0


def _joined(clips: list, folder: Path, gap_seconds: float = 0.4) -> list:
    """One clip per speaker of `clips`: that speaker's clips in their order, joined by
    `gap_seconds` of a quiet room's hiss (`training.rooms.hiss`, -70 dBFS; seeded, the same
    every run) and written to `folder` as 16 kHz wav, with their references joined by spaces."""
    import torch

    from asr.evaluate import Clip
    from asr.model import SAMPLE_RATE
    from core.audio import load_audio, save_audio
    from training.rooms import hiss

    folder.mkdir(parents=True)
    by_speaker: dict[str, list] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    out = []
    for n, (speaker, mine) in enumerate(by_speaker.items()):
        g = torch.Generator().manual_seed(n)
        gap = int(gap_seconds * SAMPLE_RATE)
        parts = []
        for clip in mine:
            parts.append(load_audio(clip.audio, SAMPLE_RATE)[0].mean(0))  # (T,)
            parts.append(hiss(gap, g))
        path = save_audio(folder / f"{n:03d}.wav", torch.cat(parts[:-1]), SAMPLE_RATE)
        out.append(Clip(str(path), " ".join(c.text for c in mine), speaker))
    return out


def _under_condition(clips: list, condition: str, folder: Path) -> list:
    """Copies of `clips` heard under `condition` (training.rooms), written to `folder` as
    16 kHz wav files; clip i of a set is seeded with i, so every run hears the same."""
    import dataclasses

    from asr.model import SAMPLE_RATE
    from core.audio import load_audio, save_audio
    from training.rooms import under_condition

    folder.mkdir(parents=True)
    out = []
    for i, clip in enumerate(clips):
        wav = load_audio(clip.audio, SAMPLE_RATE)[0].mean(0)  # (T,)
        path = save_audio(
            folder / f"{i:05d}.wav", under_condition(wav, SAMPLE_RATE, condition, i), SAMPLE_RATE
        )
        out.append(dataclasses.replace(clip, audio=str(path)))
    return out


# ---------------------------------------------------------------------------------------
# TTS

TTS_MANIFESTS = ("synth/manifest.jsonl", "imports/ljspeech.jsonl")  # under the data root


def _register_tts(sub: argparse._SubParsersAction) -> None:
    tts = sub.add_parser(
        "tts",
        help="WER ratio, speaker similarity ratio and real-time factor of a TTS checkpoint",
        description="Synthesises held-out sentences for voices seen in training and voices "
        "held out of it, each cloned from a 3-6 s prompt of the speaker, and compares with the "
        "real recordings: WER by pocketsphinx and by the project's ASR over the WER of the "
        "real recording, resemblyzer similarity to the prompt over that of another real clip, "
        "and the real-time factor. Prints one markdown table. Clips come from --manifest "
        "(default: the synthetic corpus and the ljspeech import under $VOCALIS_DATA).",
    )
    tts.add_argument("--checkpoint", default=None, help="TTS checkpoint (default: the shipped one)")
    tts.add_argument("--manifest", action="append", default=None, help="manifest (repeatable)")
    tts.add_argument("--speakers", type=int, default=4, help="speakers per group (default 4)")
    tts.add_argument("--per-speaker", type=int, default=5, help="sentences per speaker (default 5)")
    tts.add_argument(
        "--prompt-seconds",
        type=float,
        nargs=2,
        default=(3.0, 6.0),
        metavar=("MIN", "MAX"),
        help="length of prompt clips (default 3 6)",
    )
    tts.add_argument("--seed", type=int, default=0, help="seed for choosing items (default 0)")
    tts.add_argument(
        "--asr-checkpoint", default=None, help="the ASR judge (default: the shipped one)"
    )
    tts.add_argument(
        "--out", default=None, help="folder for report.json, report.md and the synthesised audio"
    )
    tts.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    add_precision_argument(tts, "the TTS's non-autoregressive stage")
    add_ar_precision_argument(tts)
    add_sampling_arguments(tts)
    tts.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    tts.add_argument(
        "--text-gain-only",
        action="store_true",
        help="only the AR's text gain on the items: its loss on the real recordings with their "
        "own text against another item's (seconds; no synthesis, judges or --out)",
    )
    tts.set_defaults(handler=run_tts)


def _tts_items(args: argparse.Namespace) -> list:
    from core.errors import VocalisError
    from corpus.manifest import read_manifest
    from tts.evaluate import build_eval_items

    paths = _manifest_paths(
        args.manifest,
        TTS_MANIFESTS,
        "no manifest found; synthesise or import a corpus (`vocalis data ...`) or pass --manifest",
    )
    utterances = [u for path in paths for u in read_manifest(path)]
    lo, hi = args.prompt_seconds
    items = build_eval_items(
        utterances,
        n_speakers=args.speakers,
        per_speaker=args.per_speaker,
        prompt_seconds=(lo, hi),
        seed=args.seed,
    )
    if not items:
        raise VocalisError(
            f"no usable items in {', '.join(map(str, paths))}: each needs a transcribed "
            f"held-out sentence and two more transcribed {lo:g}-{hi:g} s clips of its speaker"
        )
    return items


def _replace_folder(new: Path, target: Path) -> None:
    """Move the folder `new` (beside `target`) to `target`, replacing what is there; an empty
    `new` is left behind for the temporary directory's own cleanup."""
    import shutil

    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    new.mkdir()
    shutil.rmtree(old, ignore_errors=True)


def run_tts(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from core.errors import VocalisError
    from core.io import write_bytes_atomic
    from tts.evaluate import evaluate_tts, judge_systems, resemblyzer_encoder

    if args.speakers <= 0 or args.per_speaker <= 0 or args.threads <= 0:
        raise VocalisError("--speakers, --per-speaker and --threads must be positive")
    if not 0 <= args.prompt_seconds[0] <= args.prompt_seconds[1]:
        raise VocalisError(f"--prompt-seconds needs 0 <= MIN <= MAX, got {args.prompt_seconds}")
    options = sampling_options(args)
    torch.set_num_threads(args.threads)
    items = _tts_items(args)
    from core.checkpoint import inference_dtype
    from core.quantize import use_int8
    from tts.synthesize import load_synthesizer

    synthesizer = load_synthesizer(
        args.checkpoint, precision=args.precision, ar_precision=args.ar_precision
    )
    from tts.text_gain import measure_text_gain, text_gain_markdown

    gains = measure_text_gain(synthesizer, items)
    if args.text_gain_only:
        doc = [dataclasses.asdict(g) | {"gain": g.gain} for g in gains]
        print(json.dumps(doc, indent=2) if args.json else text_gain_markdown(gains), end="\n")
        return 0
    systems, notes = judge_systems(args.asr_checkpoint)
    encoder = resemblyzer_encoder()
    if encoder is None:
        notes.append("resemblyzer is not installed: speaker similarity is skipped")
    notes.append(f"torch CPU threads: {args.threads}")
    nar = "bf16" if inference_dtype("cpu", args.precision) == torch.bfloat16 else "fp32"
    ar = "int8" if use_int8("cpu", args.ar_precision) else "fp32"
    notes.append(f"NAR precision: {nar} (--precision {args.precision})")
    notes.append(f"AR linears: {ar} (--ar-precision {args.ar_precision})")
    notes.append(
        f"sampling: temperature {options.temperature:g}, top-k {options.top_k}, "
        f"top-p {options.top_p:g}, seed {args.seed}"
    )
    for note in notes:
        print(note, file=sys.stderr)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    # The audio is written to a fresh folder (inside --out, so the final rename stays on one
    # file system) that replaces --out/audio only once the run succeeds: the folder then holds
    # exactly the clips report.json describes, never a previous run's leftovers.
    with tempfile.TemporaryDirectory(prefix=".vocalis-eval-tts-", dir=out) as tmp:
        report = evaluate_tts(
            items,
            functools.partial(synthesizer.synthesize_file, options=options, seed=args.seed),
            asr_systems=systems,
            speaker_encoder=encoder,
            work_dir=tmp,
            notes=notes,
            progress=lambda line: print(line, file=sys.stderr),
        )
        # the clips end up in --out/audio, or nowhere without --out
        report = dataclasses.replace(report, text_gain=tuple(gains))
        report = report.with_audio_in(None if out is None else out / "audio")
        if out is not None:
            _replace_folder(Path(tmp), out / "audio")
            write_bytes_atomic(out / "report.json", report.to_json().encode("utf-8"))
            write_bytes_atomic(out / "report.md", report.to_markdown().encode("utf-8"))
    print(report.to_json() if args.json else report.to_markdown(), end="")
    return 0
