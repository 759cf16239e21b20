"""Sounds that are not speech, for teaching a recogniser to answer "no speech".

`non_speech(n, samples, rate, levels)` draws `n` clips `(n, T)`, each one of:

    white    flat-spectrum noise
    colored  noise with a 1/f^a power spectrum, a in [0.5, 2] (pink to brown: hum, rumble,
             wind, fans)
    music    notes of random pitch, 1-3 voices with harmonics and decaying envelopes,
             changing every 0.15-0.8 s (instrument-like tones, melodies and chords)

at an RMS level drawn in `levels` dBFS. Every draw comes from the global torch RNG, so a
training run that calls it resumes exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

KINDS = ("white", "colored", "music")


def non_speech(n: int, samples: int, rate: int, levels: tuple[float, float]) -> Tensor:
    """`(n, samples)` clips of noise or music at random RMS levels in `levels` dBFS."""
    kinds = torch.randint(len(KINDS), (n,)).tolist()
    low, high = levels
    level_db = low + (high - low) * torch.rand(n)
    out = torch.zeros(n, samples)
    for i, kind in enumerate(kinds):
        if KINDS[kind] == "white":
            clip = torch.randn(samples)
        elif KINDS[kind] == "colored":
            clip = colored_noise(samples, 0.5 + 1.5 * float(torch.rand(())))
        else:
            clip = music(samples, rate)
        rms = clip.pow(2).mean().sqrt().clamp(min=1e-8)
        out[i] = clip / rms * 10.0 ** (float(level_db[i]) / 20.0)
    return out


def colored_noise(samples: int, exponent: float) -> Tensor:
    """Noise `(samples,)` whose power falls as 1/f^exponent (DC removed)."""
    spectrum = torch.fft.rfft(torch.randn(samples))
    freqs = torch.arange(spectrum.shape[0], dtype=torch.float32).clamp(min=1.0)
    spectrum = spectrum * freqs.pow(-exponent / 2)
    spectrum[0] = 0
    return torch.fft.irfft(spectrum, n=samples)


def music(samples: int, rate: int) -> Tensor:
    """Notes `(samples,)`: 1-3 voices of harmonic tones on a random scale, decaying envelopes."""
    t = torch.arange(samples) / rate
    out = torch.zeros(samples)
    voices = int(torch.randint(1, 4, ()))
    for _ in range(voices):
        start = 0
        while start < samples:
            length = int(rate * (0.15 + 0.65 * float(torch.rand(()))))
            end = min(samples, start + length)
            semitone = int(torch.randint(-24, 16, ()))
            f0 = 220.0 * 2 ** (semitone / 12)
            local = t[: end - start]
            decay = 1.0 + 6.0 * float(torch.rand(()))
            envelope = torch.exp(-decay * local) * (1 - torch.exp(-200 * local))
            harmonics = int(torch.randint(1, 6, ()))
            note = sum(
                torch.sin(2 * math.pi * f0 * h * local + 6.283 * float(torch.rand(()))) / h
                for h in range(1, harmonics + 1)
                if f0 * h < rate / 2
            )
            out[start:end] += envelope * note
            start = end
    return out
