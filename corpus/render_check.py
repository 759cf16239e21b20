"""Checks that a synthetic render is speech-like before it enters the corpus.

A render is rejected for: no samples or non-finite samples, (near) silence, clipping,
or a duration implausible for the length of its text (flite's `awb_time` voice, asked to
read general text, returns under a second of junk for a long sentence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE_PEAK = 1e-3  # peak below this is silence
MIN_ACTIVE_FRACTION = 0.2  # at least this much of the clip must be above the floor
CLIP_LEVEL = 0.999
MAX_CLIPPED_FRACTION = 1e-3
MIN_SECONDS_PER_CHAR = 0.03  # ~33 characters per second is faster than any voice here
MAX_SECONDS_PER_CHAR = 0.25


@dataclass(frozen=True)
class RenderCheck:
    ok: bool
    reason: str  # '' when ok


def check_render(samples: np.ndarray, sample_rate: int, text: str) -> RenderCheck:
    """Validate a mono float waveform (T,) rendered from `text`."""
    if samples.size == 0:
        return RenderCheck(False, "empty render")
    if not np.isfinite(samples).all():
        return RenderCheck(False, "non-finite samples")
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        return RenderCheck(False, f"silence (peak {peak:.2e})")
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_FRACTION:
        return RenderCheck(False, f"clipping ({clipped:.2%} of samples at full scale)")
    frame = max(1, sample_rate // 50)
    n = samples.size // frame
    if n > 0:
        rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
        active = float(np.mean(rms > peak * 0.02))
        if active < MIN_ACTIVE_FRACTION:
            return RenderCheck(False, f"mostly silence ({active:.0%} active)")
    chars = max(1, len(text.strip()))
    per_char = samples.size / sample_rate / chars
    if not MIN_SECONDS_PER_CHAR <= per_char <= MAX_SECONDS_PER_CHAR:
        return RenderCheck(
            False,
            f"implausible length {samples.size / sample_rate:.2f} s for {chars} characters",
        )
    return RenderCheck(True, "")


def trim_silence(
    samples: np.ndarray, sample_rate: int, *, pad_seconds: float = 0.15, floor_db: float = -45.0
) -> np.ndarray:
    """Cut leading/trailing audio more than `floor_db` below the peak, keeping a pad."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0.0:
        return samples
    frame = max(1, sample_rate // 100)
    n = samples.size // frame
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > peak * 10 ** (floor_db / 20))
    if loud.size == 0:
        return samples
    pad = int(pad_seconds * sample_rate)
    start = max(0, loud[0] * frame - pad)
    end = min(samples.size, (loud[-1] + 1) * frame + pad)
    return samples[start:end]
