"""How good is a TTS system: intelligibility, voice likeness and speed, each measured against
real recordings so the numbers mean the same on any corpus.

For held-out sentences, in two groups of voices (seen in training; held out of it):

- WER ratio, per ASR judge (pocketsphinx, the project's ASR): the word error rate of the
  synthesised speech over the word error rate of the real recording of the same text by the
  same speaker. Defined as `(WER_out + WER_EPSILON) / (WER_ref + WER_EPSILON)`, so that a
  perfect reference (WER 0) still gives a finite, comparable ratio: with it, 1% more word
  errors than a perfect reference reads as a ratio of 2. Both WERs are reported beside it.
- Similarity ratio: mean cosine similarity of speaker embeddings (resemblyzer) of the prompt
  and the output, over the same mean for the prompt and another real clip of that speaker.
  A ratio of means, not a mean of ratios, so one hard clip cannot dominate.
- RTF: seconds spent synthesising over seconds of audio produced.

The harness sees the TTS only as a `SynthesizeFn`, the judges only as `ASRSystem`s and a
`SpeakerEncoder`, so any system (and fakes, in tests) plug in.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from asr.evaluate import ASRSystem, normalize_for_wer, pocketsphinx_system, word_errors
from core.audio import load_audio, save_audio
from corpus.manifest import Utterance
from tts.text_gain import TextGain, text_gain_markdown

# (target text, prompt audio path, prompt transcript) -> (wav (T,), sample rate, seconds taken)
SynthesizeFn = Callable[[str, str, str], tuple[torch.Tensor, int, float]]
# audio path -> utterance embedding (D,); silence may embed as zeros (similarity 0)
SpeakerEncoder = Callable[[str], torch.Tensor]

SEEN, HELD_OUT, ALL = "seen voices", "held-out voices", "all"
WER_EPSILON = 0.01  # added to both WERs of a ratio; see the module docstring


@dataclass(frozen=True)
class Targets:
    wer_ratio: float  # at most, per ASR judge, on seen voices
    similarity_ratio: float  # at least, on seen voices
    rtf: float  # at most, over all items


FIRST_TARGETS = Targets(wer_ratio=1.5, similarity_ratio=0.85, rtf=0.5)
GOAL = Targets(wer_ratio=1.1, similarity_ratio=0.95, rtf=0.5)


# ---------------------------------------------------------------------------------------
# Evaluation items


@dataclass(frozen=True)
class TTSEvalItem:
    group: str  # SEEN or HELD_OUT
    target: Utterance  # its text is synthesised; its recording is the reference
    prompt: Utterance  # same speaker: the voice to clone, with its transcript
    other: Utterance  # a third real clip of the speaker: the similarity baseline

    @property
    def speaker(self) -> str:
        return self.target.speaker


def build_eval_items(
    utterances: Sequence[Utterance],
    *,
    seen_speakers: Collection[str] | None = None,
    n_speakers: int = 4,
    per_speaker: int = 5,
    prompt_seconds: tuple[float, float] = (3.0, 6.0),
    seed: int = 0,
) -> list[TTSEvalItem]:
    """Up to `n_speakers` speakers per group, `per_speaker` items each, deterministic in `seed`.

    Seen voices: the speakers the TTS was trained on (`seen_speakers`; default: those whose
    `speaker_split` extra is train, or, without that extra, who have train utterances); their
    valid/test utterances are the targets. Held-out voices: every other speaker, any utterance
    a target. Prompt and other clip: two further utterances of the speaker lasting
    `prompt_seconds` (min, max), whose text differs from the target's. Speakers are drawn
    round-robin over sources, so every corpus is represented. Utterances without text are
    left out.
    """
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: (u.speaker, u.id)):
        if u.text and u.text.strip():
            by_speaker[u.speaker].append(u)
    items: list[TTSEvalItem] = []
    for group in (SEEN, HELD_OUT):
        rng = random.Random(f"{seed}:{group}")
        speakers = [s for s in by_speaker if _group_of(by_speaker[s], seen_speakers) == group]
        taken = 0
        for speaker in _round_robin_by_source(speakers, by_speaker, rng):
            if taken == n_speakers:
                break
            mine = _speaker_items(by_speaker[speaker], group, per_speaker, prompt_seconds, rng)
            items += mine
            taken += bool(mine)
    return items


def _group_of(utterances: Sequence[Utterance], seen_speakers: Collection[str] | None) -> str:
    if seen_speakers is not None:
        return SEEN if utterances[0].speaker in seen_speakers else HELD_OUT
    recorded = [u.extra["speaker_split"] for u in utterances if "speaker_split" in u.extra]
    if recorded:
        return SEEN if recorded[0] == "train" else HELD_OUT
    return SEEN if any(u.split == "train" for u in utterances) else HELD_OUT


def _round_robin_by_source(
    speakers: Sequence[str], by_speaker: Mapping[str, Sequence[Utterance]], rng: random.Random
) -> list[str]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for s in speakers:
        by_source[by_speaker[s][0].source].append(s)
    queues = [by_source[source] for source in sorted(by_source)]
    for q in queues:
        rng.shuffle(q)
    order = []
    for i in range(max((len(q) for q in queues), default=0)):
        order += [q[i] for q in queues if i < len(q)]
    return order


def _speaker_items(
    utterances: Sequence[Utterance],
    group: str,
    per_speaker: int,
    prompt_seconds: tuple[float, float],
    rng: random.Random,
) -> list[TTSEvalItem]:
    lo, hi = prompt_seconds
    texts = {u.id: normalize_for_wer(u.text or "") for u in utterances}
    targets = [u for u in utterances if group == HELD_OUT or u.split != "train"]
    rng.shuffle(targets)
    items = []
    for target in targets:
        if len(items) == per_speaker:
            break
        clips = [
            u
            for u in utterances
            if u.id != target.id and lo <= u.duration <= hi and texts[u.id] != texts[target.id]
        ]
        if len(clips) >= 2:
            prompt, other = rng.sample(clips, 2)
            items.append(TTSEvalItem(group, target, prompt, other))
    return items


# ---------------------------------------------------------------------------------------
# Judges


def judge_systems(
    asr_checkpoint: str | Path | None = None, *, pocketsphinx: bool = True
) -> tuple[list[ASRSystem], list[str]]:
    """The ASR judges that are available (pocketsphinx, the project's ASR from
    `asr_checkpoint`, default the shipped one) and notes naming any that is not."""
    from asr.decoding import DecodingOptions
    from asr.evaluate import vocalis_system
    from asr.model import load_asr
    from asr.transcribe import TranscribeOptions
    from core.errors import CheckpointError

    systems, notes = [], []
    baseline = pocketsphinx_system() if pocketsphinx else None
    if baseline is not None:
        systems.append(baseline)
    elif pocketsphinx:
        notes.append("pocketsphinx is not installed: its WER columns are skipped")
    try:
        model = load_asr(asr_checkpoint)
    except CheckpointError as e:
        notes.append(f"vocalis ASR unavailable ({e}): its WER columns are skipped")
    else:
        # Each clip decoded whole, as before pieces were cut at pauses (2026-12-07), so the
        # judge's figures stay comparable across sessions.
        options = TranscribeOptions(
            decoding=DecodingOptions(beam_size=5, timestamps=False), chunk_seconds=None
        )
        systems.append(vocalis_system(model, options, name="vocalis ASR"))
    return systems, notes


@functools.cache
def _voice_encoder():
    with warnings.catch_warnings():  # pkg_resources and scipy deprecation notices
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def resemblyzer_encoder() -> SpeakerEncoder | None:
    """Utterance embeddings (256,) from resemblyzer's bundled weights, on CPU, or None when
    resemblyzer is not installed. The model is loaded on first use, once per process."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import preprocess_wav
            from resemblyzer.hparams import sampling_rate
    except ImportError:
        return None

    def embed(path: str) -> torch.Tensor:
        wav, _ = load_audio(path, sampling_rate)  # (1, T)
        wav = wav[0].numpy()
        if abs(wav).max() < 1e-4:
            return torch.zeros(256)  # no voice to embed
        trimmed = preprocess_wav(wav)  # loudness-normalised, long pauses cut
        if len(trimmed) < sampling_rate // 10:  # the voice detector found (almost) nothing
            trimmed = wav
        return torch.from_numpy(_voice_encoder().embed_utterance(trimmed)).float()

    return embed


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two (D,) vectors; 0 when either is zero."""
    norms = float(a.norm() * b.norm())
    return float(a @ b) / norms if norms > 0 else 0.0


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class WERScore:
    system: str
    output: float  # WER of the synthesised speech
    reference: float  # WER of the real recording of the same text by the same speaker
    words: int  # reference words scored

    @property
    def ratio(self) -> float:
        return (self.output + WER_EPSILON) / (self.reference + WER_EPSILON)


@dataclass(frozen=True)
class GroupScore:
    group: str
    items: int
    wer: tuple[WERScore, ...]  # one per ASR judge
    similarity_output: float  # mean cos(prompt, output)
    similarity_real: float  # mean cos(prompt, another real clip)
    synthesis_seconds: float
    output_seconds: float

    @property
    def similarity_ratio(self) -> float:
        if self.similarity_real > 0:
            return self.similarity_output / self.similarity_real
        return math.nan

    @property
    def rtf(self) -> float:
        return self.synthesis_seconds / self.output_seconds if self.output_seconds > 0 else math.inf


@dataclass(frozen=True)
class ItemResult:
    group: str
    target: str  # utterance id
    speaker: str
    text: str
    output_audio: str
    output_seconds: float
    synthesis_seconds: float
    transcripts: Mapping[str, tuple[str, str]]  # judge -> (of the output, of the reference)
    similarity_output: float
    similarity_real: float


@dataclass(frozen=True)
class TTSEvalReport:
    groups: tuple[GroupScore, ...]  # seen voices, held-out voices (those present), then all
    items: tuple[ItemResult, ...]
    notes: tuple[str, ...] = ()
    text_gain: tuple[TextGain, ...] = ()  # the AR's, on the same items (tts.text_gain)

    def group(self, name: str) -> GroupScore | None:
        return next((g for g in self.groups if g.group == name), None)

    def with_audio_in(self, folder: str | os.PathLike | None) -> TTSEvalReport:
        """This report with every output clip named in `folder` (where the clips were moved
        from the working folder), or "" for each where the clips were not kept (None)."""
        items = tuple(
            replace(
                i,
                output_audio=""
                if folder is None
                else str(Path(folder) / Path(i.output_audio).name),
            )
            for i in self.items
        )
        return replace(self, items=items)

    def check(self, targets: Targets = FIRST_TARGETS) -> dict[str, bool | None]:
        """Each target -> met, or None when it could not be measured (no such group, or a
        NaN). WER and similarity are judged on seen voices, RTF over all items."""
        seen, every = self.group(SEEN), self.group(ALL)

        def within(value: float | None, ok: Callable[[float], bool]) -> bool | None:
            return None if value is None or math.isnan(value) else ok(value)

        result = {}
        for score in seen.wer if seen else ():
            result[f"{score.system} WER ratio"] = within(
                score.ratio, lambda r: r <= targets.wer_ratio
            )
        sim = seen.similarity_ratio if seen else None
        result["similarity ratio"] = within(sim, lambda r: r >= targets.similarity_ratio)
        result["RTF"] = within(every.rtf if every else None, lambda r: r <= targets.rtf)
        return result

    def meets(self, targets: Targets) -> bool:
        """All targets measured and met, with at least one ASR judge."""
        checks = self.check(targets)
        judged = any(key.endswith("WER ratio") for key in checks)
        return judged and all(v is True for v in checks.values())

    @property
    def targets_met(self) -> bool:
        return self.meets(FIRST_TARGETS)

    def to_markdown(self) -> str:
        systems = [s.system for s in self.groups[0].wer] if self.groups else []
        head = ["group", "items"]
        for name in systems:
            head += [f"{name} WER out", f"{name} WER ref", f"{name} WER ratio"]
        head += ["similarity out", "similarity real", "similarity ratio", "RTF"]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for g in self.groups:
            cells = [g.group, str(g.items)]
            for s in g.wer:
                cells += [_pct(s.output), _pct(s.reference), _num(s.ratio, 2)]
            cells += [_num(g.similarity_output, 3), _num(g.similarity_real, 3)]
            cells += [_num(g.similarity_ratio, 2), _num(g.rtf, 3)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", self._targets_line("First targets", FIRST_TARGETS)]
        lines.append(self._targets_line("Goal", GOAL))
        lines += [
            "",
            f"WER ratio = (WER out + {WER_EPSILON:g}) / (WER ref + {WER_EPSILON:g}); similarity "
            "ratio = mean cos(prompt, output) / mean cos(prompt, other real clip); "
            "RTF = synthesis seconds / output seconds.",
        ]
        lines += [f"Note: {n}" for n in self.notes]
        if self.text_gain:
            lines += ["", text_gain_markdown(self.text_gain).rstrip("\n")]
        return "\n".join(lines) + "\n"

    def _targets_line(self, title: str, targets: Targets) -> str:
        checks = self.check(targets)
        line = (
            f"{title} (seen voices: WER ratio ≤ {targets.wer_ratio:g}, similarity ratio ≥ "
            f"{targets.similarity_ratio:g}; RTF ≤ {targets.rtf:g}): "
            f"**{'met' if self.meets(targets) else 'not met'}**"
        )
        failing = [k for k, v in checks.items() if v is False]
        unmeasured = [k for k, v in checks.items() if v is None]
        if not any(k.endswith("WER ratio") for k in checks):
            unmeasured.insert(0, "WER ratio")
        if failing:
            line += f"; failing: {', '.join(failing)}"
        if unmeasured:
            line += f"; not measured: {', '.join(unmeasured)}"
        return line

    def to_json(self) -> str:
        groups = [
            asdict(g)
            | {"similarity_ratio": g.similarity_ratio, "rtf": g.rtf}
            | {"wer": [asdict(s) | {"ratio": s.ratio} for s in g.wer]}
            for g in self.groups
        ]
        doc = {
            "groups": groups,
            "targets": {"first": self.check(FIRST_TARGETS), "goal": self.check(GOAL)},
            "targets_met": self.targets_met,
            "wer_epsilon": WER_EPSILON,
            "notes": list(self.notes),
            "text_gain": [asdict(g) | {"gain": g.gain} for g in self.text_gain],
            "items": [asdict(i) for i in self.items],
        }
        return json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float, digits: int) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def _finite(obj: object) -> object:
    """NaN and infinities as JSON null, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------
# The evaluation


@dataclass(frozen=True)
class _Synthesised:
    path: str
    seconds: float  # of audio
    synthesis_seconds: float


def evaluate_tts(
    items: Sequence[TTSEvalItem],
    synthesize: SynthesizeFn,
    *,
    asr_systems: Sequence[ASRSystem],
    speaker_encoder: SpeakerEncoder | None,
    work_dir: str | Path,
    notes: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> TTSEvalReport:
    """Synthesise every item (outputs kept as wav files in `work_dir`), judge outputs and
    references with every ASR system and the speaker encoder, and score each group and all
    items together. Without a speaker encoder the similarity columns are NaN."""
    if not items:
        raise ValueError("no items to evaluate")
    outputs = []
    for i, item in enumerate(items):
        outputs.append(_synthesise(i, item, synthesize, Path(work_dir)))
        if progress is not None:
            progress(f"synthesised {i + 1}/{len(items)}: {item.target.id}")
    transcripts: dict[str, tuple[list[str], list[str]]] = {}
    for system in asr_systems:
        out = system.run([o.path for o in outputs])
        ref = system.run([item.target.audio for item in items])
        transcripts[system.name] = (out, ref)
        if progress is not None:
            progress(f"transcribed outputs and references with {system.name}")
    sim_out, sim_real = _similarities(items, outputs, speaker_encoder)
    results = tuple(
        ItemResult(
            group=item.group,
            target=item.target.id,
            speaker=item.speaker,
            text=item.target.text or "",
            output_audio=o.path,
            output_seconds=o.seconds,
            synthesis_seconds=o.synthesis_seconds,
            transcripts={name: (out[i], ref[i]) for name, (out, ref) in transcripts.items()},
            similarity_output=sim_out[i],
            similarity_real=sim_real[i],
        )
        for i, (item, o) in enumerate(zip(items, outputs))
    )
    names = [g for g in (SEEN, HELD_OUT) if any(r.group == g for r in results)]
    groups = [_group_score(g, [r for r in results if r.group == g], transcripts) for g in names]
    groups.append(_group_score(ALL, list(results), transcripts))
    return TTSEvalReport(tuple(groups), results, tuple(notes))


def _synthesise(
    index: int, item: TTSEvalItem, synthesize: SynthesizeFn, work_dir: Path
) -> _Synthesised:
    wav, rate, seconds = synthesize(item.target.text or "", item.prompt.audio, item.prompt.text)
    if wav.dim() == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.dim() != 1:
        raise ValueError(f"synthesize must return a mono (T,) waveform, got {tuple(wav.shape)}")
    name = re.sub(r"[^\w.+-]", "_", item.target.id)
    path = work_dir / f"{index:04d}_{name}.wav"
    # An empty output (the model stopped at once) is scored as 10 ms of silence.
    save_audio(path, wav if wav.numel() else torch.zeros(max(1, rate // 100)), rate)
    return _Synthesised(str(path), wav.numel() / rate, float(seconds))


def _similarities(
    items: Sequence[TTSEvalItem], outputs: Sequence[_Synthesised], encoder: SpeakerEncoder | None
) -> tuple[list[float], list[float]]:
    """cos(prompt, output) and cos(prompt, other real clip) per item."""
    if encoder is None:
        return [math.nan] * len(items), [math.nan] * len(items)
    cache: dict[str, torch.Tensor] = {}

    def embed(path: str) -> torch.Tensor:
        if path not in cache:
            cache[path] = encoder(path).reshape(-1).float()
        return cache[path]

    sim_out = [cosine(embed(i.prompt.audio), embed(o.path)) for i, o in zip(items, outputs)]
    sim_real = [cosine(embed(i.prompt.audio), embed(i.other.audio)) for i in items]
    return sim_out, sim_real


def _group_score(
    name: str,
    results: Sequence[ItemResult],
    transcripts: Mapping[str, tuple[list[str], list[str]]],
) -> GroupScore:
    texts = [r.text for r in results]
    wer = []
    for system in transcripts:
        out = [r.transcripts[system][0] for r in results]
        ref = [r.transcripts[system][1] for r in results]
        wer_out, words = word_errors(texts, out)
        wer_ref, _ = word_errors(texts, ref)
        wer.append(WERScore(system, wer_out, wer_ref, words))
    return GroupScore(
        group=name,
        items=len(results),
        wer=tuple(wer),
        similarity_output=_mean([r.similarity_output for r in results]),
        similarity_real=_mean([r.similarity_real for r in results]),
        synthesis_seconds=sum(r.synthesis_seconds for r in results),
        output_seconds=sum(r.output_seconds for r in results),
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
