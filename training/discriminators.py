"""Discriminators for adversarial codec training. They live here, in training code, and are
never part of a released codec checkpoint.

- `STFTDiscriminator` (EnCodec's MS-STFT): 2-D convolutions over the real and imaginary
  parts of one complex STFT; `MultiScaleSTFTDiscriminator` runs several window sizes, so
  both fine time and fine frequency structure (phase included) are judged.
- `PeriodDiscriminator` (HiFi-GAN's MPD): the waveform folded into a (T / p, p) image and
  convolved along time only, so each column sees samples exactly p apart; periods 2, 3, 5,
  7, 11 (primes) together cover the periodic structure of voiced speech.

`Discriminators` holds both families behind one call that returns a named result: one
logit map per discriminator and the hidden feature maps used by feature matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class DiscriminatorDims:
    """Sizes of the discriminator set; an empty tuple switches a family off."""

    stft_n_ffts: tuple[int, ...] = (2048, 1024, 512)  # one MS-STFT discriminator per window
    stft_filters: int = 32
    stft_max_filters: int = 256
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)  # one MPD discriminator per period
    period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)  # HiFi-GAN's widths

    def __post_init__(self) -> None:
        if not self.stft_n_ffts and not self.periods:
            raise ValueError("at least one discriminator is needed (stft_n_ffts or periods)")
        if any(n < 16 for n in self.stft_n_ffts):
            raise ValueError(f"stft_n_ffts must be >= 16, got {self.stft_n_ffts}")
        if any(p < 1 for p in self.periods):
            raise ValueError(f"periods must be positive, got {self.periods}")
        if self.periods and not self.period_channels:
            raise ValueError("period_channels must not be empty when periods are used")
        if self.stft_filters <= 0 or self.stft_max_filters < self.stft_filters:
            raise ValueError("need 0 < stft_filters <= stft_max_filters")


@dataclass(frozen=True)
class DiscriminatorOutput:
    logits: list[torch.Tensor]  # one (B, ...) map of real/fake scores per discriminator
    features: list[list[torch.Tensor]]  # per discriminator, its hidden activations

    def split(self, sizes: tuple[int, int]) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
        """Cut a batch made by concatenating two batches (e.g. real then fake) back apart."""
        first = DiscriminatorOutput(
            [x[: sizes[0]] for x in self.logits],
            [[f[: sizes[0]] for f in fs] for fs in self.features],
        )
        second = DiscriminatorOutput(
            [x[sizes[0] :] for x in self.logits],
            [[f[sizes[0] :] for f in fs] for fs in self.features],
        )
        return first, second


def _conv2d(c_in: int, c_out: int, kernel, stride=1, dilation=1, padding=None) -> nn.Module:
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    dilation = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    if padding is None:  # "same" padding for odd kernels
        padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
    return weight_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation))


class STFTDiscriminator(nn.Module):
    """One resolution of EnCodec's MS-STFT discriminator.

    Input (B, 1, T) -> normalised complex STFT as a 2-channel image (B, 2, frames, freqs),
    then a 3x9 conv, three 3x9 convs strided by 2 along frequency with time dilations
    1, 2, 4, a 3x3 conv, and a 3x3 conv to one logit channel.
    """

    def __init__(self, n_fft: int, filters: int = 32, max_filters: int = 256):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        widths = [min(filters * 2**i, max_filters) for i in range(4)]  # 32, 64, 128, 256
        layers = [_conv2d(2, widths[0], (3, 9))]
        for i, dilation in enumerate((1, 2, 4)):
            layers.append(
                _conv2d(widths[i], widths[i + 1], (3, 9), stride=(1, 2), dilation=(dilation, 1))
            )
        layers.append(_conv2d(widths[-1], widths[-1], (3, 3)))
        self.layers = nn.ModuleList(layers)
        self.out = _conv2d(widths[-1], 1, (3, 3))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(
            wav.squeeze(1).float(),
            self.n_fft,
            self.hop,
            window=self.window,
            normalized=True,
            center=True,
            return_complex=True,
        )  # (B, F, frames)
        x = torch.stack([spec.real, spec.imag], dim=1)  # (B, 2, F, frames)
        x = x.transpose(2, 3)  # (B, 2, frames, F): time is the first image axis
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE)
            features.append(x)
        return self.out(x), features  # (B, 1, frames, F')


class PeriodDiscriminator(nn.Module):
    """One period of HiFi-GAN's multi-period discriminator.

    Input (B, 1, T) is right-padded (reflect) to a multiple of `period` and folded to
    (B, 1, T / period, period); 5x1 convs strided 3 along time, then 5x1 and 3x1 convs.
    """

    def __init__(self, period: int, channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for i, c_out in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            layers.append(_conv2d(c_in, c_out, (5, 1), stride=stride, padding=(2, 0)))
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.out = _conv2d(c_in, 1, (3, 1), padding=(1, 0))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        pad = (-t) % self.period
        if pad:
            mode = "reflect" if pad < t else "constant"
            wav = F.pad(wav, (0, pad), mode=mode)
        x = wav.reshape(b, c, (t + pad) // self.period, self.period)  # (B, 1, T/p, p)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE)
            features.append(x)
        return self.out(x), features  # (B, 1, T', p)


class Discriminators(nn.Module):
    """All discriminators of one codec training run, called as one module."""

    def __init__(self, dims: DiscriminatorDims = DiscriminatorDims()):
        super().__init__()
        self.dims = dims
        stft = [
            STFTDiscriminator(n, dims.stft_filters, dims.stft_max_filters) for n in dims.stft_n_ffts
        ]
        mpd = [PeriodDiscriminator(p, dims.period_channels) for p in dims.periods]
        self.discriminators = nn.ModuleList(stft + mpd)
        self.names = [f"stft{n}" for n in dims.stft_n_ffts] + [f"period{p}" for p in dims.periods]

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """wav (B, 1, T) -> one logit map and a list of feature maps per discriminator."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected mono audio (B, 1, T), got {tuple(wav.shape)}")
        logits, features = [], []
        for disc in self.discriminators:
            logit, feats = disc(wav)
            logits.append(logit)
            features.append(feats)
        return DiscriminatorOutput(logits, features)
