"""`vocalis say`: text -> speech in the voice of a short prompt (VALL-E + the codec)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vocalis.commands.transcribe import add_precision_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "say",
        help="speak text in the voice of a short recording",
        description="Synthesise TEXT (or a text file, or stdin with '-') in the voice of "
        "--voice (a few seconds of speech, any rate). Without --prompt-text the prompt's "
        "transcript is read from a .txt file of the same name beside it (voice.wav -> "
        "voice.txt), or else made by the speech recogniser. Long text is split into "
        "sentences, spoken in one voice. Prints the real-time factor.",
    )
    p.add_argument("text", help="text to speak; '-' reads stdin")
    p.add_argument("-o", "--output", required=True, help="output audio (.wav or .flac)")
    p.add_argument(
        "--voice", default=None, help="voice prompt audio (default: the shipped example voice)"
    )
    p.add_argument(
        "--prompt-text",
        default=None,
        help="transcript of the voice prompt (default: the .txt file beside it, else the ASR's)",
    )
    p.add_argument("--text-file", action="store_true", help="TEXT is a path to a text file")
    p.add_argument("--model", default=None, help="TTS checkpoint (default: the shipped one)")
    p.add_argument("--codec", default=None, help="codec checkpoint (default: the shipped one)")
    p.add_argument("--asr", default=None, help="ASR checkpoint for the prompt's transcript")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--batch-size", type=int, default=4, help="sentences per batch (default 4)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_precision_argument(p, "the non-autoregressive stage")
    add_ar_precision_argument(p)
    p.set_defaults(handler=run_say)


def add_ar_precision_argument(p: argparse.ArgumentParser) -> None:
    """--ar-precision auto|fp32|int8, for `core.quantize.use_int8`."""
    p.add_argument(
        "--ar-precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="weights of the autoregressive stage's linears; auto (the default) is int8 on "
        "the CPU (weight-only, with bf16 activations: twice as fast a step), fp32 elsewhere",
    )


def _read_text(args: argparse.Namespace) -> str:
    from core.errors import VocalisError

    if args.text == "-":
        return sys.stdin.read()
    if args.text_file:
        path = Path(args.text)
        if not path.is_file():
            raise VocalisError(f"no such text file: '{path}'")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise VocalisError(f"'{path}' is not UTF-8 text") from None
    return args.text


def run_say(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from core.audio import save_audio
    from core.errors import VocalisError
    from core.paths import EXAMPLE_VOICE
    from tts.synthesize import Synthesizer

    if args.batch_size < 1:
        raise VocalisError(f"--batch-size must be at least 1, got {args.batch_size}")
    if Path(args.output).suffix.lower() not in (".wav", ".flac"):
        raise VocalisError(f"-o {args.output}: the output must be a .wav or .flac file")
    options = sampling_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    text = _read_text(args)
    if not text.strip():  # said before the models load or the prompt is transcribed
        raise VocalisError("there is nothing to say: the text is empty")
    voice, prompt_text = args.voice or EXAMPLE_VOICE, args.prompt_text
    synth = Synthesizer.load(
        args.model,
        args.codec,
        asr_path=args.asr,
        device=args.device,
        precision=args.precision,
        ar_precision=args.ar_precision,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompt = synth.prompt_from_file(voice, prompt_text)
        speech = synth.synthesize(
            text, prompt, options=options, seed=args.seed, batch_size=args.batch_size
        )
    for w in caught:
        print(f"vocalis: warning: {w.message}", file=sys.stderr)
    save_audio(args.output, speech.wav, speech.sample_rate)
    given = f" (prompt heard as: {prompt.text!r})" if prompt.transcribed else ""
    print(
        f"{args.output}: {speech.seconds:.2f} s, {len(speech.sentences)} sentence(s), "
        f"computed in {speech.compute_seconds:.2f} s, real-time factor {speech.rtf:.2f}{given}"
    )
    return 0


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """The AR sampling options, shared by `vocalis say` and `vocalis eval tts`."""
    p.add_argument("--temperature", type=float, default=0.9, help="0 = greedy (default 0.9)")
    p.add_argument("--top-k", type=int, default=50, help="0 = off (default 50)")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off (default 1)")


def sampling_options(args: argparse.Namespace):
    """`tts.generate.SamplingOptions` from those arguments; a bad value is a one-line error."""
    from core.errors import VocalisError
    from tts.generate import SamplingOptions

    try:
        return SamplingOptions(args.temperature, args.top_k, args.top_p)
    except ValueError as e:
        raise VocalisError(str(e)) from None
