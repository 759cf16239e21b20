"""`vocalis transcribe` (audio files -> text, subtitles or JSON) and `vocalis label` (a folder
of audio -> a manifest of confident transcripts)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files with the speech recogniser",
        description="Transcribe audio files of any length and rate: audio longer than "
        "--chunk-seconds is cut at pauses into pieces (one segment each), and pieces of one "
        "file or of several are decoded in one batch. Silence gives empty text. Without -o "
        "the result goes to stdout.",
    )
    transcribe.add_argument("files", nargs="+", help="audio files")
    transcribe.add_argument(
        "--format", choices=("txt", "srt", "vtt", "json"), default="txt", help="output format"
    )
    transcribe.add_argument(
        "-o", "--output", default=None, help="folder for one <name>.<format> per input"
    )
    transcribe.add_argument(
        "--word-timestamps",
        action="store_true",
        help="time every word from the model's CTC head: word times in json, and srt/vtt "
        "cues of at most 84 characters and 7 s (needs a model with a CTC head and pieces)",
    )
    _common(transcribe, beam_size=5, lm="auto")
    transcribe.set_defaults(handler=run_transcribe)

    label = subparsers.add_parser(
        "label",
        help="transcribe a folder or manifest of audio into a manifest, keeping confident "
        "transcripts",
        description="Transcribe every audio file in PATH (a folder, searched "
        "recursively, or a JSONL manifest whose ids, speakers and splits are kept) and write "
        "a JSONL manifest with the text and its confidence per utterance. With the vocalis "
        "recogniser (the default teacher) the confidence is avg_logprob and no_speech_prob; "
        "utterances with empty text, avg_logprob below --min-logprob or no_speech_prob above "
        "--max-no-speech are dropped as doubtful. --teacher pocketsphinx labels with "
        "pocketsphinx's bundled US English model instead (no confidence of its own: empty "
        "text and --min-words-per-second decide). Unreadable files are skipped with a warning.",
    )
    label.add_argument("path", help="folder of audio files, or a .jsonl manifest")
    label.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    label.add_argument(
        "--teacher",
        choices=("vocalis", "pocketsphinx"),
        default="vocalis",
        help="the recogniser that labels (default vocalis)",
    )
    label.add_argument("--min-logprob", type=float, default=-0.8, help="default -0.8")
    label.add_argument("--max-no-speech", type=float, default=0.5, help="default 0.5")
    label.add_argument(
        "--min-words-per-second",
        type=float,
        default=0.0,
        help="drop transcripts with fewer words per second of audio (missed words; default 0)",
    )
    label.add_argument("--source", default="label", help="the source name of a folder's utterances")
    label.add_argument(
        "--segments",
        default=None,
        metavar="DIR",
        help="label each segment (a piece of at most --chunk-seconds, cut at a pause) as an "
        "utterance of its own, its audio written to DIR as 16 kHz wav, each with its own "
        "confidence: long recordings become clips a TTS can train on (the vocalis teacher only)",
    )
    # Without the LM by default: its thresholds are calibrated on the decoder's own choices
    # (fused, the decoder's confidence in the LM's text is lower: 141 of 251 LibriSpeech
    # files kept against 211 with the kept weights).
    _common(label, beam_size=1, lm="none")
    label.set_defaults(handler=run_label)


def _common(parser: argparse.ArgumentParser, *, beam_size: int, lm: str) -> None:
    parser.add_argument("--model", default=None, help="ASR checkpoint (default: the shipped one)")
    parser.add_argument(
        "--beam-size", type=int, default=beam_size, help=f"1 = greedy (default {beam_size})"
    )
    add_ctc_weight_argument(parser)
    add_lm_arguments(parser, default=lm)
    add_chunk_argument(parser)
    add_pause_argument(parser)
    parser.add_argument(
        "--no-timestamps",
        action="store_true",
        help="decode without timestamp tokens (with --chunk-seconds 0; pieces never use them)",
    )
    parser.add_argument("--no-fallback", action="store_true", help="no temperature fallback")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="pieces or windows per batch (default 8)"
    )
    add_workers_argument(parser)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_precision_argument(parser)


def add_ctc_weight_argument(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    # The help names the default without importing it: asr.decoding loads torch, which
    # `vocalis --help` and every command's start-up need not wait for.
    _float_option(
        parser,
        "--ctc-weight",
        "weight of the model's CTC head in the search, 0 to 1 (0: the decoder alone; "
        "default asr.decoding.DEFAULT_CTC_WEIGHT if the model has a head, else 0)",
        repeatable,
    )


def add_lm_arguments(
    parser: argparse.ArgumentParser, *, repeatable: bool = False, default: str = "auto"
) -> None:
    parser.add_argument(
        "--lm",
        default=default,
        help="n-gram language model fused into the beam search (vocalis train asr-lm): a "
        "checkpoint, 'none', or 'auto' (the shipped one, models/asr/lm, when it was counted "
        f"with the model's tokenizer); default {default}",
    )
    _float_option(
        parser,
        "--lm-weight",
        "weight of the LM's log-probabilities in the search (0: none; default "
        "asr.lm.DEFAULT_LM_WEIGHT)",
        repeatable,
    )
    _float_option(
        parser,
        "--lexicon-penalty",
        "subtracted from a beam's score per word it writes outside the LM's lexicon "
        "(0: none; default asr.lm.DEFAULT_LEXICON_PENALTY)",
        repeatable,
    )


def _float_option(parser: argparse.ArgumentParser, flag: str, help: str, repeatable: bool) -> None:
    """A float option, unset by default; with `repeatable`, a list of values."""
    parser.add_argument(
        flag,
        type=float,
        default=None,
        action="append" if repeatable else "store",
        help=help + ("; repeatable: one row each" if repeatable else ""),
    )


def check_not_negative(flag: str, value: float | None) -> None:
    """A one-line error for a negative (or NaN) value of `flag`; unset (None) passes."""
    from core.errors import VocalisError

    if value is not None and not value >= 0:
        raise VocalisError(f"{flag} must be >= 0, got {value:g}")


def load_fusion_lm(choice: str, model):
    """The LM named by --lm for `model`, or None ('none', or 'auto' with no shipped LM that
    fits the model's tokenizer). A named LM that does not fit is a one-line error."""
    from asr.lm import load_lm, shipped_lm

    if choice == "none":
        return None
    if choice == "auto":
        return shipped_lm(model.tokenizer)
    lm = load_lm(choice)
    lm.check_tokenizer(model.tokenizer)
    return lm


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding threads, each with its own batches (default: on a CPU one per torch "
        "thread, at most 4 and at most one per full batch of inputs)",
    )


def check_workers(workers: int | None) -> None:
    """A one-line error for --workers below 1."""
    from core.errors import VocalisError

    if workers is not None and workers < 1:
        raise VocalisError(f"--workers must be at least 1, got {workers}")


def check_ctc_weight(weight: float | None) -> None:
    """A one-line error for a --ctc-weight outside [0, 1)."""
    from core.errors import VocalisError

    if weight is not None and not 0 <= weight < 1:
        raise VocalisError(f"--ctc-weight must be in [0, 1), got {weight:g}")


def checked_for_model(decoding, model):
    """`decoding.for_model(model)`, a one-line error when the model cannot do it."""
    from core.errors import VocalisError

    try:
        return decoding.for_model(model)
    except ValueError as e:
        raise VocalisError(f"--ctc-weight: {e}") from None


def add_precision_argument(parser: argparse.ArgumentParser, what: str = "the weights") -> None:
    """--precision auto|fp32|bf16, for `core.checkpoint.inference_dtype`."""
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help=f"precision of {what}; auto (the default) is bf16 where the device has native "
        "bf16 units (AMX or AVX-512 BF16 CPUs, most GPUs), else fp32",
    )


# `asr.transcribe`'s defaults, named in the help without importing it: it loads torch, which
# `vocalis --help` and every command's start-up need not wait for (a test keeps them equal).
HELP_CHUNK_SECONDS = 15.0
HELP_PAUSE_SECONDS = 0.4


def _add_seconds_argument(
    parser: argparse.ArgumentParser, flag: str, what: str, default: float, repeatable: bool
) -> None:
    parser.add_argument(
        flag,
        type=float,
        action="append" if repeatable else "store",
        default=None,
        help=f"{what} (default {default:g}"
        + ("; repeatable: one row per value)" if repeatable else ")"),
    )


def add_chunk_argument(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    what = (
        "cut longer audio at pauses into pieces of at most this many seconds, decoded "
        "independently and in batches, one segment each; 0: 30 s windows moved by the decoded "
        "timestamps instead"
    )
    _add_seconds_argument(parser, "--chunk-seconds", what, HELP_CHUNK_SECONDS, repeatable)


def add_pause_argument(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    what = (
        "audio longer than --chunk-seconds is cut at the first pause at least this long "
        "once a piece holds 1 s, so each piece is about one utterance; 0: at the quietest "
        "point of the piece's second half"
    )
    _add_seconds_argument(parser, "--pause-seconds", what, HELP_PAUSE_SECONDS, repeatable)


def _seconds_option(
    value: float | None, flag: str, default: float, valid: Callable[[float], bool], span: str
) -> float | None:
    """A seconds flag as its option: None -> `default`, 0 -> None (off), else `valid` or a
    one-line error naming `span`."""
    from core.errors import VocalisError

    if value is None:
        return default
    if value == 0:
        return None
    if not valid(value):
        raise VocalisError(f"{flag} must be 0 or in {span}, got {value:g}")
    return value


def pause_seconds(value: float | None) -> float | None:
    """--pause-seconds as `TranscribeOptions.pause_seconds` (0 -> None: no pause cuts)."""
    from asr.transcribe import DEFAULT_PAUSE_SECONDS

    valid = lambda v: 0 < v <= 5  # noqa: E731
    return _seconds_option(value, "--pause-seconds", DEFAULT_PAUSE_SECONDS, valid, "(0, 5]")


def chunk_seconds(value: float | None) -> float | None:
    """--chunk-seconds as `TranscribeOptions.chunk_seconds` (0 -> None: windows)."""
    from asr.transcribe import DEFAULT_CHUNK_SECONDS, WINDOW_SECONDS

    valid = lambda v: 1 <= v <= WINDOW_SECONDS  # noqa: E731
    span = f"[1, {WINDOW_SECONDS:g}]"
    return _seconds_option(value, "--chunk-seconds", DEFAULT_CHUNK_SECONDS, valid, span)


def load_recogniser(args: argparse.Namespace):
    """The ASR of --model (or the shipped one) on --device in --precision."""
    from asr.model import load_asr
    from core.checkpoint import inference_dtype

    return load_asr(
        args.model, device=args.device, dtype=inference_dtype(args.device, args.precision)
    )


def _options(args: argparse.Namespace, *, timestamps: bool):
    from asr.decoding import DecodingOptions, FallbackOptions
    from asr.transcribe import TranscribeOptions
    from core.errors import VocalisError

    if args.beam_size < 1:
        raise VocalisError(f"--beam-size must be at least 1, got {args.beam_size}")
    if args.batch_size < 1:
        raise VocalisError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_workers(args.workers)
    check_ctc_weight(args.ctc_weight)
    check_not_negative("--lm-weight", args.lm_weight)
    check_not_negative("--lexicon-penalty", args.lexicon_penalty)
    fallback = FallbackOptions(temperatures=(0.0,)) if args.no_fallback else FallbackOptions()
    decoding = DecodingOptions(
        beam_size=args.beam_size, timestamps=timestamps, ctc_weight=args.ctc_weight
    )
    return TranscribeOptions(
        decoding=decoding,
        fallback=fallback,
        batch_size=args.batch_size,
        workers=args.workers,
        chunk_seconds=chunk_seconds(args.chunk_seconds),
        pause_seconds=pause_seconds(args.pause_seconds),
    )


def with_lm(options, args: argparse.Namespace, model):
    """`options` with the LM of --lm, its --lm-weight and --lexicon-penalty (the defaults
    if unset)."""
    from asr.lm import DEFAULT_LEXICON_PENALTY, DEFAULT_LM_WEIGHT

    lm = load_fusion_lm(args.lm, model)
    weight = DEFAULT_LM_WEIGHT if args.lm_weight is None else args.lm_weight
    penalty = DEFAULT_LEXICON_PENALTY if args.lexicon_penalty is None else args.lexicon_penalty
    decoding = dataclasses.replace(
        options.decoding, lm=lm, lm_weight=weight, lexicon_penalty=penalty
    )
    return dataclasses.replace(options, decoding=decoding)


def run_transcribe(args: argparse.Namespace) -> int:
    from asr.formats import FORMATS
    from asr.transcribe import transcribe
    from core.audio import audio_info
    from core.errors import VocalisError

    options = _options(args, timestamps=not args.no_timestamps)
    for f in args.files:
        audio_info(f)  # a missing or unreadable file fails here, before any decoding
    if args.word_timestamps and options.chunk_seconds is None:
        raise VocalisError("--word-timestamps needs pieces, not --chunk-seconds 0")
    model = load_recogniser(args)
    if args.word_timestamps and model.ctc is None:
        raise VocalisError("--word-timestamps needs a model with a CTC head; this one has none")
    options = with_lm(options, args, model)
    options = dataclasses.replace(
        options,
        decoding=checked_for_model(options.decoding, model),
        word_timestamps=args.word_timestamps,
    )
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


def _label_inputs(source: Path, source_name: str) -> tuple[list, int]:
    """The utterances to label (text None) from a folder or a manifest, and how many files
    were skipped as unreadable."""
    from core.audio import AUDIO_SUFFIXES, audio_info
    from core.errors import AudioError, VocalisError
    from corpus.manifest import Utterance, read_manifest

    if source.is_file() and source.suffix == ".jsonl":
        utterances = read_manifest(source)
        candidates = [(u, u.audio) for u in utterances]
    elif source.is_dir():
        candidates = [
            (None, str(p)) for p in sorted(source.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES
        ]
    else:
        raise VocalisError(f"no such folder or .jsonl manifest: '{source}'")
    inputs, skipped = [], 0
    for utt, path in candidates:
        try:
            info = audio_info(path)
        except AudioError as e:
            print(f"vocalis: warning: skipped: {e}", file=sys.stderr)
            skipped += 1
            continue
        if utt is None:
            relative = Path(info.path).relative_to(source)
            group = relative.parent.as_posix() if relative.parent.parts else "unknown"
            utt = Utterance(
                id=relative.with_suffix("").as_posix().replace("/", "_"),
                audio=str(Path(info.path).resolve()),
                duration=round(info.duration, 4),
                sample_rate=info.sample_rate,
                text=None,
                speaker=f"{source_name}/{group}",
                source=source_name,
            )
        inputs.append(utt)
    if not inputs:
        raise VocalisError(f"no readable audio files in '{source}'")
    return inputs, skipped


def run_label(args: argparse.Namespace) -> int:
    from corpus.manifest import write_manifest
    from corpus.text import normalize_text

    options = _options(args, timestamps=not args.no_timestamps)
    inputs, skipped = _label_inputs(Path(args.path), args.source)
    paths = [u.audio for u in inputs]
    if args.teacher == "pocketsphinx":
        from asr.evaluate import pocketsphinx_system
        from core.errors import VocalisError

        if args.segments:
            raise VocalisError("--segments needs the vocalis teacher (pocketsphinx gives no times)")
        system = pocketsphinx_system()
        if system is None:
            raise VocalisError("--teacher pocketsphinx needs the pocketsphinx package")
        results = [(text, {"teacher": "pocketsphinx"}) for text in system.run(paths)]
    else:
        from asr.transcribe import transcribe

        model = load_recogniser(args)
        options = with_lm(options, args, model)
        options = dataclasses.replace(options, decoding=checked_for_model(options.decoding, model))
        transcripts = transcribe(model, paths, options)
        if args.segments:
            inputs, transcripts = _segments_as_utterances(inputs, transcripts, Path(args.segments))
        results = [
            (
                t.text,
                {
                    "avg_logprob": round(t.avg_logprob, 4),
                    "no_speech_prob": round(t.no_speech_prob, 4),
                },
            )
            for t in transcripts
        ]
    kept, doubtful = [], 0
    for utt, (raw, confidence) in zip(inputs, results):
        text = normalize_text(raw)
        words_per_second = len(text.split()) / max(utt.duration, 1e-3)
        if (
            not text
            or confidence.get("avg_logprob", 0.0) < args.min_logprob
            or confidence.get("no_speech_prob", 0.0) > args.max_no_speech
            or words_per_second < args.min_words_per_second
        ):
            doubtful += 1
            continue
        extra = {**utt.extra, **confidence, "words_per_second": round(words_per_second, 3)}
        kept.append(dataclasses.replace(utt, text=text, extra=extra))
    write_manifest(args.output, kept)
    note = f", {skipped} unreadable skipped" if skipped else ""
    what = "segments" if args.segments and args.teacher == "vocalis" else "files"
    print(
        f"labelled {len(kept)} of {len(inputs)} {what} ({doubtful} dropped as doubtful{note}) "
        f"-> {args.output}"
    )
    return 0


SEGMENT_MARGIN = 0.1  # seconds of audio kept either side of a segment's sound


def _segments_as_utterances(inputs: list, transcripts, folder: Path) -> tuple[list, list]:
    """Each segment of each transcript as an utterance of its own: its audio (the segment's
    sound and up to `SEGMENT_MARGIN` s either side, never into the next segment) written to
    `folder` as 16 kHz wav named after the input's id and the segment's number, and a
    one-segment transcript carrying the segment's own confidence."""
    from asr.model import SAMPLE_RATE
    from asr.transcribe import Transcript, file_blocks
    from core.audio import save_audio

    folder.mkdir(parents=True, exist_ok=True)
    utterances, pieces = [], []
    for utt, transcript in zip(inputs, transcripts):
        segments = [s for s in transcript.segments if s.text]
        bounds = [0.0] + [(a.end + b.start) / 2 for a, b in zip(segments, segments[1:])]
        bounds.append(transcript.duration)
        spans = [
            (
                max(bounds[k], seg.start - SEGMENT_MARGIN),
                min(bounds[k + 1], seg.end + SEGMENT_MARGIN),
            )
            for k, seg in enumerate(segments)
        ]
        for k, ((start, end), audio) in enumerate(zip(spans, _cut(file_blocks(utt.audio), spans))):
            path = save_audio(folder / f"{utt.id}_{k:04d}.wav", audio, SAMPLE_RATE)
            seg = segments[k]
            extra = {**utt.extra, "from": utt.audio, "start": round(start, 3), "end": round(end, 3)}
            utterances.append(
                dataclasses.replace(
                    utt,
                    id=f"{utt.id}_{k:04d}",
                    audio=str(path.resolve()),
                    duration=round(audio.shape[-1] / SAMPLE_RATE, 4),
                    sample_rate=SAMPLE_RATE,
                    extra=extra,
                )
            )
            pieces.append(Transcript((seg,), end - start, seg.avg_logprob, seg.no_speech_prob))
    return utterances, pieces


def _cut(blocks, spans: list[tuple[float, float]]):
    """The audio of each (start, end) span in seconds, in order, from 16 kHz blocks read once
    (only the current span is held)."""
    import torch

    from asr.model import SAMPLE_RATE

    position, held = 0, []  # samples before the held blocks; the held blocks
    blocks = iter(blocks)
    for start, end in spans:
        a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        while position + sum(x.shape[0] for x in held) < b:
            block = next(blocks, None)
            if block is None:
                break
            held.append(block)
        audio = torch.cat(held) if held else torch.zeros(0)
        yield audio[max(0, a - position) : b - position]
        drop = min(max(0, b - position), audio.shape[0])  # spans do not overlap
        position += drop
        held = [audio[drop:]] if drop < audio.shape[0] else []
