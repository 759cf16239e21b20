"""A Dataset over manifest utterances and the collate function that pads a batch.

    dataset = ManifestDataset(read_manifest(path), sample_rate=16000, max_seconds=20.0)
    sampler = BucketBatchSampler(dataset.durations, max_seconds=200.0, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio)

Audio comes from the resampled-audio cache when one is given and fresh, else from the
file (resampled on the fly). It is mono float32 at `sample_rate`; with `max_seconds` a
longer clip is cropped (random offset when `random_crop`, else its start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from core.audio import load_audio
from corpus.cache import FeatureCache
from corpus.manifest import Utterance


@dataclass(frozen=True)
class AudioExample:
    wav: torch.Tensor  # (T,) float32
    sample_rate: int
    text: str | None
    speaker: str
    id: str
    index: int


@dataclass(frozen=True)
class AudioBatch:
    wav: torch.Tensor  # (B, T) float32, zero-padded
    lengths: torch.Tensor  # (B,) int64, valid samples per row
    sample_rate: int
    texts: list[str | None]
    speakers: list[str]
    ids: list[str]
    indices: torch.Tensor  # (B,) dataset indices

    def pin_memory(self) -> AudioBatch:
        return AudioBatch(
            self.wav.pin_memory(),
            self.lengths.pin_memory(),
            self.sample_rate,
            self.texts,
            self.speakers,
            self.ids,
            self.indices,
        )

    def to(self, device: torch.device | str) -> AudioBatch:
        return AudioBatch(
            self.wav.to(device, non_blocking=True),
            self.lengths.to(device, non_blocking=True),
            self.sample_rate,
            self.texts,
            self.speakers,
            self.ids,
            self.indices,
        )


class ManifestDataset(Dataset):
    def __init__(
        self,
        utterances: Sequence[Utterance],
        sample_rate: int,
        *,
        max_seconds: float | None = None,
        random_crop: bool = True,
        cache: FeatureCache | None = None,
    ) -> None:
        if cache is not None and getattr(cache.encoder, "input_rate", None) != sample_rate:
            raise ValueError("the cache holds audio at another rate than sample_rate")
        self.utterances = list(utterances)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.random_crop = random_crop
        self.cache = cache

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        """Seconds per item after cropping (what a batch sampler should budget)."""
        cap = self.max_seconds if self.max_seconds is not None else float("inf")
        return [min(u.duration, cap) for u in self.utterances]

    def _load(self, utt: Utterance) -> torch.Tensor:
        cached = self.cache.get(utt) if self.cache is not None else None
        if cached is not None:
            return cached.to(torch.float32) / 32767.0  # (T,)
        wav, _ = load_audio(utt.audio, self.sample_rate)
        return wav[0]  # (T,)

    def __getitem__(self, index: int) -> AudioExample:
        utt = self.utterances[index]
        wav = self._load(utt)
        if self.max_seconds is not None:
            limit = int(self.max_seconds * self.sample_rate)
            if wav.shape[0] > limit:
                start = 0
                if self.random_crop:
                    start = int(torch.randint(0, wav.shape[0] - limit + 1, ()).item())
                wav = wav[start : start + limit]
        return AudioExample(wav, self.sample_rate, utt.text, utt.speaker, utt.id, index)


def collate_audio(examples: Sequence[AudioExample]) -> AudioBatch:
    """Pad to the longest example: wav (B, T), lengths (B,)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([e.wav.shape[0] for e in examples], dtype=torch.long)
    wav = torch.zeros(len(examples), int(lengths.max()), dtype=torch.float32)  # (B, T)
    for row, e in enumerate(examples):
        wav[row, : e.wav.shape[0]] = e.wav
    return AudioBatch(
        wav=wav,
        lengths=lengths,
        sample_rate=examples[0].sample_rate,
        texts=[e.text for e in examples],
        speakers=[e.speaker for e in examples],
        ids=[e.id for e in examples],
        indices=torch.tensor([e.index for e in examples], dtype=torch.long),
    )
