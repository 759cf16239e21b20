"""Non-speech clips for the recogniser's no-speech training: levels, kinds, determinism."""

from __future__ import annotations

import torch

from training.nonspeech import colored_noise, music, non_speech


def _dbfs(x: torch.Tensor) -> torch.Tensor:
    return 20 * torch.log10(x.pow(2).mean(-1).sqrt())


def test_levels_fall_in_the_range_and_draws_repeat_with_the_seed():
    torch.manual_seed(3)
    a = non_speech(12, 8000, 16000, (-50.0, -20.0))
    torch.manual_seed(3)
    b = non_speech(12, 8000, 16000, (-50.0, -20.0))
    assert a.shape == (12, 8000) and torch.equal(a, b)
    levels = _dbfs(a)
    assert bool(((levels > -50.1) & (levels < -19.9)).all())


def test_colored_noise_puts_more_power_low_and_music_is_tonal():
    torch.manual_seed(0)
    brown = torch.fft.rfft(colored_noise(16000, 2.0)).abs().pow(2)
    assert brown[10:200].mean() > 100 * brown[4000:6000].mean()
    tones = music(16000, 16000)
    spectrum = torch.fft.rfft(tones).abs()
    # a few notes: the strongest 2% of bins hold most of the energy, unlike noise
    top = spectrum.pow(2).sort(descending=True).values
    assert top[: len(top) // 50].sum() > 0.6 * top.sum()
    assert torch.isfinite(tones).all() and tones.abs().max() > 0
