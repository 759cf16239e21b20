"""Word error rate of speech recognisers on the same clips: the vocalis model beside the
`pocketsphinx` baseline (its bundled US English model), on held-out synthetic voices and
held-out real speech. Both sides are scored on normalised text: digits spelled out,
lower case, punctuation removed (`corpus.text`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from asr.model import SAMPLE_RATE, ASRModel
from asr.transcribe import TranscribeOptions, transcribe
from core.audio import audio_info, load_audio
from corpus.text import normalize_text, words_of


@dataclass(frozen=True)
class Clip:
    audio: str
    text: str
    speaker: str = ""


@dataclass(frozen=True)
class ASRSystem:
    name: str
    run: Callable[[Sequence[str]], list[str]]  # audio paths -> transcripts


@dataclass(frozen=True)
class WERRow:
    system: str
    test_set: str
    wer: float  # word errors / reference words
    clips: int
    words: int
    rtf: float  # decoding seconds per second of audio


@dataclass(frozen=True)
class ASREvalReport:
    rows: list[WERRow]
    # one per clip and system: set, system, audio, speaker, reference, hypothesis, the
    # normalised words the WER compares and the clip's word errors
    transcripts: list[dict] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [
            "| system | test set | WER | clips | words | RTF |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.system} | {r.test_set} | {100 * r.wer:.1f}% | {r.clips} | {r.words} "
                f"| {r.rtf:.3f} |"
            )
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.rows], indent=2) + "\n"


def normalize_for_wer(text: str) -> str:
    return " ".join(words_of(normalize_text(text)))


def _error_count(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word errors, reference words) of one normalised pair; with no reference words every
    hypothesis word is an error."""
    import jiwer

    if not reference:
        return len(hypothesis.split()), 0
    out = jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions, len(reference.split())


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, int]:
    """(WER, reference words) over normalised text; clips with no reference words are left out."""
    import jiwer

    pairs = [(normalize_for_wer(r), normalize_for_wer(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan"), 0
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    words = out.hits + out.substitutions + out.deletions
    return (out.substitutions + out.deletions + out.insertions) / words, words


def vocalis_system(model: ASRModel, options: TranscribeOptions, name: str = "vocalis") -> ASRSystem:
    def run(paths: Sequence[str]) -> list[str]:
        return [t.text for t in transcribe(model, list(paths), options)]

    return ASRSystem(name, run)


def pocketsphinx_system() -> ASRSystem | None:
    """The pocketsphinx baseline, or None when the package is not installed."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        return None
    decoder = Decoder(loglevel="FATAL")

    def run(paths: Sequence[str]) -> list[str]:
        texts = []
        for path in paths:
            wav, _ = load_audio(path, SAMPLE_RATE)  # (1, T)
            pcm = (wav[0].clamp(-1, 1) * 32767).round().short().numpy().tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            texts.append(hyp.hypstr if hyp is not None else "")
        return texts

    return ASRSystem("pocketsphinx", run)


def evaluate(
    test_sets: dict[str, Sequence[Clip]],
    systems: Sequence[ASRSystem],
    progress: Callable[[str], None] | None = None,
    by_speaker: bool = False,
) -> ASREvalReport:
    """WER of every system on every test set, systems side by side per set; with
    `by_speaker`, each set's row is followed by one per speaker of its clips, from the same
    transcripts (test set "<set>: <speaker>"; RTF is the whole set's)."""
    rows, transcripts = [], []
    for set_name, clips in test_sets.items():
        seconds = sum(audio_info(c.audio).duration for c in clips)
        for system in systems:
            start = time.perf_counter()
            hypotheses = system.run([c.audio for c in clips])
            elapsed = time.perf_counter() - start
            wer, words = word_errors([c.text for c in clips], hypotheses)
            for clip, hyp in zip(clips, hypotheses):
                ref_words, hyp_words = normalize_for_wer(clip.text), normalize_for_wer(hyp)
                errors, clip_words = _error_count(ref_words, hyp_words)
                transcripts.append(
                    {
                        "system": system.name,
                        "test_set": set_name,
                        "audio": str(clip.audio),
                        "speaker": clip.speaker,
                        "reference": clip.text,
                        "hypothesis": hyp,
                        "reference_normalised": ref_words,
                        "hypothesis_normalised": hyp_words,
                        "errors": errors,
                        "words": clip_words,
                    }
                )
            rtf = elapsed / seconds
            rows.append(WERRow(system.name, set_name, wer, len(clips), words, rtf))
            if by_speaker:
                for speaker in sorted({c.speaker for c in clips}):
                    mine = [i for i, c in enumerate(clips) if c.speaker == speaker]
                    refs, hyps = [clips[i].text for i in mine], [hypotheses[i] for i in mine]
                    wer_s, words_s = word_errors(refs, hyps)
                    name = f"{set_name}: {speaker}"
                    rows.append(WERRow(system.name, name, wer_s, len(mine), words_s, rtf))
            if progress is not None:
                progress(f"{system.name} on {set_name}: WER {100 * wer:.1f}%")
    return ASREvalReport(rows, transcripts)
