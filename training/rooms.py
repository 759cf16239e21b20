"""Rooms and microphones for clean speech: reverberation, colouration and band limits.

The synthetic voices are rendered dry, flat and full band; real recordings are made in
rooms, through microphones, often band-limited on the way (a telephone line, an 8 kHz
recording, a low-bitrate MP3 before LibriSpeech's FLAC). A recogniser trained only on the
former hears the latter as a new kind of sound. `colour` gives a share of the training
items each of:

    reverb    a room's impulse response: the direct sound, then exponentially decaying
              noise (a diffuse tail) with an RT60 and a direct-to-reverberant ratio drawn
              from ranges (`room_response`)
    eq        a smooth random gain curve over log frequency, within +- eq_db: the
              colouration of a microphone and its placement (`mic_gains`)
    lowpass   a steep low-pass at a cutoff drawn in a range: a band-limited channel

all applied as one product in the frequency domain, the level kept. Every draw comes from
the global torch RNG, so a training run that calls it resumes exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_DECAY_60DB = math.log(1000.0)  # amplitude falls by 60 dB when exp(-t * this / rt60)
_EQ_TERMS = 4  # cosines over log frequency in a gain curve: a few broad bumps and dips
_LOWPASS_ORDER = 8  # Butterworth-like magnitude 1 / sqrt(1 + (f / fc)^(2 * order))
_MARGIN = 2048  # zero samples after a clip in the FFT, so that filters do not wrap around


def fast_fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= `n`: an FFT of that size is several times faster than
    one of a size with a large prime factor (a clip's length plus a margin is any number;
    on 30 random sizes of 60 000-300 000 samples, 7x for an rfft and its inverse)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def room_response(rt60: float, drr_db: float, rate: int) -> Tensor:
    """`(N,)` impulse response: 1 at t = 0, then a noise tail from 2.5 ms decaying by 60 dB
    over `rt60` seconds, scaled so that direct / tail energy is `drr_db` dB."""
    n = max(int(rt60 * rate), 2)
    t = torch.arange(n) / rate
    tail = torch.randn(n) * torch.exp(-_DECAY_60DB * t / rt60)  # (N,)
    tail[: max(1, int(0.0025 * rate))] = 0.0  # the first reflection comes after the direct sound
    energy = tail.pow(2).sum().clamp(min=1e-12)
    tail = tail * (10.0 ** (-drr_db / 10.0) / energy).sqrt()
    tail[0] = 1.0
    return tail


def mic_gains(freqs: Tensor, eq_db: float, lowpass_hz: float | None) -> Tensor:
    """Linear gains at `freqs` `(F,)` Hz: a random smooth curve within +- `eq_db` dB over
    log frequency (from 50 Hz up), times a low-pass at `lowpass_hz` if given."""
    x = torch.log2(freqs.clamp(min=50.0) / 50.0)  # octaves above 50 Hz, (F,)
    span = float(x.max()) or 1.0
    periods = 0.5 + 1.5 * torch.rand(_EQ_TERMS)  # cycles over the whole span
    phases = 2 * math.pi * torch.rand(_EQ_TERMS)
    weights = torch.randn(_EQ_TERMS)
    curve = (
        weights[:, None] * torch.cos(2 * math.pi * periods[:, None] * x / span + phases[:, None])
    ).sum(0)
    curve = curve / curve.abs().max().clamp(min=1e-6) * eq_db * float(torch.rand(()))  # (F,) dB
    gains = 10.0 ** (curve / 20.0)
    if lowpass_hz is not None:
        gains = gains / torch.sqrt(1.0 + (freqs / lowpass_hz) ** (2 * _LOWPASS_ORDER))
    return gains


def colour(wav: Tensor, lengths: Tensor, data, rate: int, *, skip: Tensor) -> Tensor:
    """A copy of `wav` `(B, T)` (`lengths` valid samples) with rooms and microphones on the
    shares of items that `data` (training.asr_task.ASRDataConfig) asks for: `reverb_prob`
    (`rt60`, `drr_db`), `eq_prob` (`eq_db`), `lowpass_prob` (`lowpass_hz`). Items where
    `skip` is true stay as they are; each changed item keeps its RMS level and length."""
    probs = (data.reverb_prob, data.eq_prob, data.lowpass_prob)
    if not any(probs):  # off: no draw, so older configs see the same random numbers
        return wav
    b = wav.shape[0]
    drawn = torch.rand(3, b) < torch.tensor(probs)[:, None]  # (3, B): reverb, eq, lowpass
    drawn &= ~skip.cpu()
    if not bool(drawn.any()):
        return wav
    out = wav.clone()
    for row in drawn.any(0).nonzero().flatten().tolist():
        n = int(lengths[row])
        if n == 0:
            continue
        reverb, eq, lowpass = drawn[:, row].tolist()
        room = (_uniform(data.rt60), _uniform(data.drr_db)) if reverb else None
        cutoff = _uniform(data.lowpass_hz) if lowpass else None
        eq_db = data.eq_db if eq else None
        out[row, :n] = filtered(wav[row, :n], rate, room, eq_db, cutoff).to(out.dtype)
    return out


def filtered(
    clip: Tensor,
    rate: int,
    room: tuple[float, float] | None = None,
    eq_db: float | None = None,
    lowpass_hz: float | None = None,
) -> Tensor:
    """`clip` `(T,)` heard in a `room` (rt60 s, drr dB), through a microphone colouring it
    within +- `eq_db` dB and a channel cut at `lowpass_hz`, each only if given; the same
    length and RMS level. Draws from the global torch RNG (the tail, the EQ curve)."""
    n = clip.shape[0]
    response = None if room is None else room_response(room[0], room[1], rate)
    size = fast_fft_size(n + _MARGIN + (0 if response is None else response.shape[0]))
    clip = clip.float()
    spectrum = torch.fft.rfft(clip, size)  # (F,)
    if response is not None:
        spectrum = spectrum * torch.fft.rfft(response, size)
    if eq_db is not None or lowpass_hz is not None:
        freqs = torch.fft.rfftfreq(size, 1.0 / rate)
        spectrum = spectrum * mic_gains(freqs, eq_db or 0.0, lowpass_hz)
    coloured = torch.fft.irfft(spectrum, size)[:n]
    scale = clip.pow(2).mean().sqrt() / coloured.pow(2).mean().sqrt().clamp(min=1e-8)
    return coloured * scale


# Fixed conditions for measuring a recogniser (`vocalis eval asr --condition`): a living
# room heard from across it, a telephone-band channel, and a pause before the first word
# (half a second of a quiet room's hiss, as a recording that starts before its speaker).
CONDITIONS = {
    "room": {"room": (0.6, 3.0)},
    "phone": {"lowpass_hz": 3400.0},
    "pause": {},
}
PAUSE_SECONDS, PAUSE_DBFS = 0.5, -70.0


def hiss(samples: int, generator: torch.Generator | None = None) -> Tensor:
    """`samples` of a quiet room's hiss: white noise at `PAUSE_DBFS` RMS `(samples,)`."""
    return 10 ** (PAUSE_DBFS / 20) * torch.randn(samples, generator=generator)


def under_condition(clip: Tensor, rate: int, condition: str, seed: int) -> Tensor:
    """`clip` `(T,)` under one of `CONDITIONS`, the same for the same `seed` (the global RNG
    is left as it was)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if condition == "pause":
            return torch.cat([hiss(round(PAUSE_SECONDS * rate)), clip])
        return filtered(clip, rate, **CONDITIONS[condition])


def _uniform(bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand(()))
