"""Shared pieces of the ASR tests: a tiny tokenizer and model, two learnable clips, and a
tiny model overfitted on them (trained once per test session)."""

from __future__ import annotations

import functools
import math

import torch

from asr.model import SAMPLE_RATE, ASRDims, ASRModel
from asr.tokenizer import Tokenizer
from corpus.dataset import AudioBatch

TEXTS = ("Hello world.", "Good morning, Anna!")
CORPUS = (*TEXTS, "the quick brown fox jumps over the lazy dog", "one two three four five")
TINY = ASRDims(
    audio_dim=32,
    audio_depth=1,
    audio_heads=2,
    n_text_ctx=48,
    text_dim=32,
    text_depth=1,
    text_heads=2,
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> Tokenizer:
    return Tokenizer.train(list(CORPUS) * 3, 300)


def tiny_model(seed: int = 0, dims: ASRDims = TINY) -> ASRModel:
    torch.manual_seed(seed)
    return ASRModel(dims.with_tokenizer(tiny_tokenizer())).eval()


def clip(kind: int, seconds: float = 1.0) -> torch.Tensor:
    """Two clearly different signals `(T,)` at 16 kHz: a rising chirp, or a pulsed tone."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if kind == 0:
        return 0.3 * torch.sin(2 * math.pi * (300 * t + 300 * t**2))
    return 0.3 * torch.sin(2 * math.pi * 1500 * t) * (torch.sin(2 * math.pi * 4 * t) > 0)


def clip_batch(seconds: tuple[float, float] = (1.0, 0.8)) -> AudioBatch:
    wavs = [clip(0, seconds[0]), clip(1, seconds[1])]
    lengths = torch.tensor([w.shape[0] for w in wavs])
    wav = torch.zeros(2, int(lengths.max()))
    for row, w in enumerate(wavs):
        wav[row, : w.shape[0]] = w
    return AudioBatch(
        wav, lengths, SAMPLE_RATE, list(TEXTS), ["a", "b"], ["a", "b"], torch.arange(2)
    )


def clip_mels() -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel features of `clip_batch()` and their valid frames."""
    from asr.model import log_mel_features

    batch = clip_batch()
    return log_mel_features(batch.wav, batch.lengths)


@functools.lru_cache(maxsize=2)
def overfitted(ctc_units: str = "") -> tuple[ASRModel, list[float]]:
    """The tiny model trained on the two clips until it knows them; and its loss curve.
    With `ctc_units`, a CTC head over them trains beside it (and is in the model)."""
    from training.asr_task import ASRDataConfig, ASRLossConfig, ASRTask, SpecAugment

    model = tiny_model(seed=1).train()
    loss = ASRLossConfig(ctc_weight=0.3, ctc_units=ctc_units) if ctc_units else ASRLossConfig()
    task = ASRTask(
        model,
        ASRDataConfig(timestamp_prob=0.5, no_speech_prob=0.0),
        SpecAugment(freq_masks=0, time_masks=0),
        loss,
    )
    part = task.parts()["model"]
    optimizer = torch.optim.AdamW(part.parameters(), lr=3e-3, weight_decay=0.0)
    batch = clip_batch()
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # may run in a module fixture, before the per-test one
    try:
        torch.manual_seed(0)
        for _ in range(STEPS):
            out = task.loss("model", batch, {"model": part})
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(float(out.loss.detach()))
    finally:
        torch.set_num_threads(threads)
    model = task.export()[0]
    return model.eval(), losses


STEPS = 200


def one_thread():
    """A fixture body: run on one thread (tiny models; the CPUs may be busy), then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
