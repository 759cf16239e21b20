"""Losses of codec training: reconstruction, adversarial, feature matching, and the weights
that combine them. All of it stays in training code; the codec never sees a loss weight.

Conventions follow descript-audio-codec (DAC), the recipe that trains well without a
balancer: reconstruction terms summed over mel scales, adversarial and feature-matching
terms summed over discriminators. EnCodec's gradient balancer is available as an option.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.audio import MelConfig, log_mel

ADVERSARIAL_KINDS = ("hinge", "lsgan")


@dataclass(frozen=True)
class CodecLossWeights:
    """How the generator's losses are combined.

    Defaults are DAC's: mel 15 (a sum over 7 mel scales of log10-mel L1), adversarial 1 and
    feature matching 2 (sums over discriminators), commitment 0.25, codebook 1.

    With `balancer=True` (EnCodec), the weights of the terms that depend on the output audio
    (waveform, mel, adversarial, feature matching) become shares of one gradient of norm
    `balancer_norm` at the output audio, whatever each loss's own scale; EnCodec used
    waveform 0.1, mel 1, adversarial 3, feature matching 3.
    """

    mel: float = 15.0  # multi-scale log-mel L1: the main reconstruction signal
    waveform: float = 0.0  # L1 on samples; DAC does without it, EnCodec used 0.1
    phase: float = 0.0  # compressed complex-spectrum MSE: the only term that sees phase
    si_sdr: float = 0.0  # negative SI-SDR in dB, pooled over the batch: the waveform's match
    spectral: float = 0.0  # spectral convergence of linear magnitudes: the loud bins' match
    adversarial: float = 1.0  # generator's adversarial loss, summed over discriminators
    feature_matching: float = 2.0  # L1 between discriminator activations on real and fake
    commitment: float = 0.25  # pulls encoder outputs towards their codes
    codebook: float = 1.0  # pulls codes towards encoder outputs (0 with EMA codebooks)
    adversarial_kind: str = "hinge"  # one of ADVERSARIAL_KINDS; "lsgan" is HiFi-GAN/DAC's
    mel_n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)  # window sizes, hop n/4
    mel_bands: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)  # mel bands per window
    mel_floor: float = 1e-5  # power floor before log10
    phase_n_ffts: tuple[int, ...] = (256, 512, 1024, 2048)  # windows of the phase term, hop n/4
    phase_power: float = 0.3  # magnitude compression of the phase term (|X|^p with X's phase)
    phase_max_hz: float | None = None  # bins above this are left to the mel loss alone
    spectral_n_ffts: tuple[int, ...] = (512, 1024, 2048)  # windows of the spectral term, hop n/4
    balancer: bool = False
    balancer_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.adversarial_kind not in ADVERSARIAL_KINDS:
            raise ValueError(
                f"adversarial_kind must be one of {ADVERSARIAL_KINDS}, got {self.adversarial_kind!r}"
            )
        if len(self.mel_n_ffts) != len(self.mel_bands) or not self.mel_n_ffts:
            raise ValueError("mel_n_ffts and mel_bands must be non-empty and of equal length")
        if not self.phase_n_ffts or not 0 < self.phase_power <= 1:
            raise ValueError("phase_n_ffts must be non-empty and 0 < phase_power <= 1")
        if self.phase_max_hz is not None and self.phase_max_hz <= 0:
            raise ValueError("phase_max_hz must be positive")
        if not self.spectral_n_ffts:
            raise ValueError("spectral_n_ffts must be non-empty")
        weights = (self.mel, self.waveform, self.phase, self.si_sdr, self.spectral)
        weights += (self.adversarial, self.feature_matching)
        if min(*weights, self.commitment, self.codebook) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.mel_floor <= 0 or self.balancer_norm <= 0:
            raise ValueError("mel_floor and balancer_norm must be positive")

    def mel_configs(self, sample_rate: int) -> tuple[MelConfig, ...]:
        return tuple(
            MelConfig(sample_rate=sample_rate, n_fft=n, hop_length=n // 4, n_mels=m)
            for n, m in zip(self.mel_n_ffts, self.mel_bands)
        )


# ---------------------------------------------------------------------------------------
# Reconstruction


def multiscale_mel_loss(
    fake: torch.Tensor, real: torch.Tensor, configs: Sequence[MelConfig], *, floor: float = 1e-5
) -> torch.Tensor:
    """Sum over mel configurations of mean |log10 mel(fake) - log10 mel(real)|.

    fake, real: (B, 1, T) or (B, T) at the configs' sample rate. Zero iff the mel powers
    agree above the floor. Uses core.audio's one log-mel definition.

    Each item's mean is removed first. A mel filterbank gives no weight to 0 Hz, but a
    windowed offset leaks into the lowest bands of the short windows (750 Hz wide at
    n_fft=32, 24 kHz), so without this a codec learns a large DC offset as a cheap way to
    fill the low bands early in training, which nothing here penalises except the
    waveform loss.
    """
    fake = fake - fake.mean(dim=-1, keepdim=True)
    real = real - real.mean(dim=-1, keepdim=True)
    total = fake.new_zeros(())
    for config in configs:
        a = log_mel(fake, config, floor=floor)  # (B, [1,] M, frames)
        b = log_mel(real, config, floor=floor)
        total = total + F.l1_loss(a, b)
    return total


def _paired_spectra(
    fake: torch.Tensor, real: torch.Tensor, n_ffts: Sequence[int]
) -> Iterator[tuple[int, torch.Tensor]]:
    """(n_fft, STFT of fake and real stacked: (2B, bins, frames)) per size, hop n/4, each
    item's mean removed first. fake, real: (B, 1, T) or (B, T)."""
    fake = fake.reshape(fake.shape[0], -1).float()
    real = real.reshape(real.shape[0], -1).float()
    both = torch.cat([fake, real])
    both = both - both.mean(dim=-1, keepdim=True)
    for n_fft in n_ffts:
        window = torch.hann_window(n_fft, device=both.device)
        yield n_fft, torch.stft(both, n_fft, n_fft // 4, window=window, return_complex=True)


def compressed_spectrum_loss(
    fake: torch.Tensor,
    real: torch.Tensor,
    n_ffts: Sequence[int],
    *,
    power: float = 0.3,
    max_hz: float | None = None,
    sample_rate: int | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Sum over STFT sizes of mean |C(fake) - C(real)|^2, C(X) = |X|^power * X / |X|.

    The power-compressed complex spectrum of speech enhancement: unlike the mel loss it
    sees phase, so it asks for the original's waveform (what SI-SDR and PESQ score), and
    the compression keeps the quiet bins from being drowned by the loud ones. Each item's
    mean is removed first, as in `multiscale_mel_loss`. fake, real: (B, 1, T) or (B, T).
    max_hz (with the sample_rate) keeps only the bins up to it: above the band that a score
    reads, a phase error costs this loss as much as silence would, so it would teach the
    codec to drop energy that the mel loss asks for.
    Zero iff the two spectra agree at every size (up to the eps in the compression).
    """
    if max_hz is not None and sample_rate is None:
        raise ValueError("max_hz needs the sample_rate")
    total = fake.new_zeros(())
    for n_fft, both in _paired_spectra(fake, real, n_ffts):
        if max_hz is not None:
            both = both[:, : int(max_hz * n_fft / sample_rate) + 1]
        scale = (both.real.square() + both.imag.square() + eps).pow((power - 1) / 2)
        compressed = torch.view_as_real(both * scale)  # (2B, bins, frames, 2)
        a, b = compressed.chunk(2)
        total = total + (a - b.detach()).square().sum(-1).mean()
    return total


def spectral_convergence_loss(
    fake: torch.Tensor, real: torch.Tensor, n_ffts: Sequence[int], eps: float = 1e-8
) -> torch.Tensor:
    """Sum over STFT sizes of || |S(fake)| - |S(real)| || / || |S(real)| ||, the norms
    (Frobenius) pooled over the batch: Parallel WaveGAN's spectral convergence.

    The mel loss compares log powers, so a harmonic peak 3 dB off costs it what a valley
    between harmonics 3 dB off costs; PESQ and STOI hear the peaks. On linear magnitudes the
    loud bins, the low harmonics of voiced speech, carry the loss, and being magnitudes it
    leaves the phase to the other terms. Pooled over the batch like `si_sdr_loss`, so a near
    silent crop cannot dominate. Each item's mean is removed first.
    fake, real: (B, 1, T) or (B, T). Zero iff the magnitudes agree at every size.
    """
    total = fake.new_zeros(())
    for _, both in _paired_spectra(fake, real, n_ffts):
        mag = (both.real.square() + both.imag.square() + eps).sqrt()  # (2B, bins, frames)
        a, b = mag.chunk(2)
        b = b.detach()
        total = total + (a - b).square().sum().sqrt() / (b.square().sum().sqrt() + eps)
    return total


def si_sdr_loss(fake: torch.Tensor, real: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative scale-invariant SDR in dB, the energies pooled over the batch:
    -10 log10(sum_i |t_i|^2 / sum_i |fake_i - t_i|^2), t_i = real_i scaled to fit fake_i.

    Where the phase term weighs every bin alike after compression, this one weighs each by
    its energy, as SI-SDR does: most of speech's energy is below 1 kHz, so it asks above
    all for the phase of the low harmonics. Pooled rather than averaged over items in dB,
    so that a nearly silent crop (1 s crops can be) cannot dominate the gradient: a dB
    loss's gradient grows as 1 / |error|. Each item's mean is removed first.
    fake, real: (B, 1, T) or (B, T).
    """
    fake = fake.reshape(fake.shape[0], -1).float()
    real = real.reshape(real.shape[0], -1).float()
    fake = fake - fake.mean(dim=-1, keepdim=True)
    real = real - real.mean(dim=-1, keepdim=True)
    scale = (fake * real).sum(-1, keepdim=True) / (real.square().sum(-1, keepdim=True) + eps)
    target = scale * real
    signal = target.square().sum()
    noise = (fake - target).square().sum()
    return 10 * torch.log10((noise + eps) / (signal + eps))


# ---------------------------------------------------------------------------------------
# Adversarial (each takes a list of logit maps, one per discriminator, and sums them)


def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], kind: str
) -> torch.Tensor:
    """Hinge: mean relu(1 - D(x)) + mean relu(1 + D(G)); LSGAN: mean (1 - D(x))^2 + mean D(G)^2.

    Minimised by the discriminator; zero once every real logit is >= 1 and every fake one
    <= -1 (hinge), or real == 1 and fake == 0 (LSGAN)."""
    total = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        if kind == "hinge":
            total = total + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        elif kind == "lsgan":
            total = total + (1 - real).pow(2).mean() + fake.pow(2).mean()
        else:
            raise ValueError(f"unknown adversarial loss {kind!r}")
    return total


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """Hinge: mean relu(1 - D(G)) (EnCodec); LSGAN: mean (1 - D(G))^2 (HiFi-GAN, DAC)."""
    total = fake_logits[0].new_zeros(())
    for fake in fake_logits:
        if kind == "hinge":
            total = total + F.relu(1 - fake).mean()
        elif kind == "lsgan":
            total = total + (1 - fake).pow(2).mean()
        else:
            raise ValueError(f"unknown adversarial loss {kind!r}")
    return total


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]],
    fake_features: Sequence[Sequence[torch.Tensor]],
) -> torch.Tensor:
    """Sum over discriminators and layers of mean |real - fake| (real features detached)."""
    total = fake_features[0][0].new_zeros(())
    for reals, fakes in zip(real_features, fake_features, strict=True):
        for real, fake in zip(reals, fakes, strict=True):
            total = total + F.l1_loss(fake, real.detach())
    return total


# ---------------------------------------------------------------------------------------
# EnCodec's gradient balancer, without state so that a resumed run stays exact


def balanced_loss(
    losses: dict[str, torch.Tensor],
    weights: dict[str, float],
    output: torch.Tensor,
    *,
    norm: float = 1.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """A scalar whose value is sum(w_i * loss_i) and whose gradient at `output` is
    norm * sum_i (w_i / sum w) * g_i / |g_i|, with g_i = d loss_i / d output and |g_i| the
    per-example L2 norm averaged over the batch. Back-propagating it through the generator
    gives each loss a fixed share of the gradient, independent of its scale.

    output: (B, ...) the generated audio, part of the graph of every loss in `losses`.
    EnCodec keeps an EMA of the norms; this uses the current batch's (EMA decay 0), which
    needs no state in the checkpoint.
    """
    active = {k: v for k, v in losses.items() if weights.get(k, 0.0) > 0}
    if not active:
        return output.new_zeros(())
    total_weight = sum(weights[k] for k in active)
    combined = torch.zeros_like(output)
    for name, loss in active.items():
        (g,) = torch.autograd.grad(loss, output, retain_graph=True)  # (B, ...)
        g_norm = g.flatten(1).norm(dim=1).mean()
        combined = combined + (weights[name] / total_weight) * norm * g / (g_norm + eps)
    value = sum(weights[k] * v.detach() for k, v in active.items())
    surrogate = (output * combined.detach()).sum()
    return value + surrogate - surrogate.detach()
