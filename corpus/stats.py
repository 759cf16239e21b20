"""Summaries of manifests: hours per split and speaker, sample rates, text coverage."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from corpus.manifest import SPLITS, Utterance


@dataclass(frozen=True)
class ManifestStats:
    utterances: int
    hours: float
    speakers: int
    hours_by_split: dict[str, float]
    speakers_by_split: dict[str, int]
    hours_by_speaker: dict[str, dict[str, float]]  # speaker -> split -> hours
    utterances_by_speaker: dict[str, int]
    sample_rates: dict[int, int]  # rate -> utterances
    sources: dict[str, int]
    with_text: int  # utterances that have a transcript
    mean_seconds: float
    max_seconds: float

    @property
    def text_coverage(self) -> float:
        return self.with_text / self.utterances if self.utterances else 0.0


def manifest_stats(utterances: Sequence[Utterance]) -> ManifestStats:
    by_speaker: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0.0))
    hours_by_split = dict.fromkeys(SPLITS, 0.0)
    speakers_by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for u in utterances:
        hours = u.duration / 3600
        by_speaker[u.speaker][u.split] += hours
        hours_by_split[u.split] += hours
        speakers_by_split[u.split].add(u.speaker)
    total = sum(u.duration for u in utterances)
    return ManifestStats(
        utterances=len(utterances),
        hours=total / 3600,
        speakers=len(by_speaker),
        hours_by_split=hours_by_split,
        speakers_by_split={s: len(v) for s, v in speakers_by_split.items()},
        hours_by_speaker=dict(by_speaker),
        utterances_by_speaker=dict(Counter(u.speaker for u in utterances)),
        sample_rates=dict(sorted(Counter(u.sample_rate for u in utterances).items())),
        sources=dict(Counter(u.source for u in utterances)),
        with_text=sum(1 for u in utterances if u.text),
        mean_seconds=total / len(utterances) if utterances else 0.0,
        max_seconds=max((u.duration for u in utterances), default=0.0),
    )


def format_stats(title: str, stats: ManifestStats, *, max_speakers: int = 20) -> str:
    lines = [
        f"{title}: {stats.utterances} utterances, {stats.hours:.2f} h, {stats.speakers} speakers,"
        f" mean {stats.mean_seconds:.2f} s, max {stats.max_seconds:.2f} s",
        "  splits: "
        + ", ".join(
            f"{s} {stats.hours_by_split[s]:.2f} h / {stats.speakers_by_split[s]} spk"
            for s in SPLITS
        ),
        "  sample rates: " + ", ".join(f"{r} Hz x{n}" for r, n in stats.sample_rates.items()),
        f"  text: {stats.with_text}/{stats.utterances} ({stats.text_coverage:.0%})",
        "  sources: " + ", ".join(f"{k} x{v}" for k, v in stats.sources.items()),
        f"  {'speaker':40s} {'utts':>6s} " + " ".join(f"{s + ' h':>8s}" for s in SPLITS),
    ]
    ranked = sorted(stats.hours_by_speaker.items(), key=lambda kv: -sum(kv[1].values()))
    for speaker, per in ranked[:max_speakers]:
        lines.append(
            f"  {speaker:40s} {stats.utterances_by_speaker[speaker]:6d} "
            + " ".join(f"{per[s]:8.3f}" for s in SPLITS)
        )
    if len(ranked) > max_speakers:
        lines.append(f"  ... and {len(ranked) - max_speakers} more speakers")
    return "\n".join(lines)
