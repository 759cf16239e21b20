"""The one codec interface that language models and the TTS depend on.

Code against `CompressionModel`, never a concrete codec class, so that any codec (this
project's `Codec` or a future one) plugs in.
"""

from __future__ import annotations

import abc
import math

from torch import Tensor, nn


class CompressionModel(nn.Module, abc.ABC):
    """Waveform <-> discrete codes (Q parallel streams of `cardinality` symbols at
    `frame_rate`), plus the continuous latent the codes quantize."""

    sample_rate: int  # Hz
    frame_rate: float  # code frames per second
    num_codebooks: int  # the maximum Q
    cardinality: int  # entries per codebook
    latent_dim: int  # channels of the continuous latent

    @abc.abstractmethod
    def encode(self, wav: Tensor, n_codebooks: int | None = None) -> Tensor:
        """(B, 1, T) float -> (B, n, F) int64 codes, F = ceil(T / hop); n defaults to Q."""

    @abc.abstractmethod
    def decode(self, codes: Tensor) -> Tensor:
        """(B, n, F) int64 codes, any n <= Q -> (B, 1, F * hop) float."""

    @abc.abstractmethod
    def encode_latent(self, wav: Tensor) -> Tensor:
        """(B, 1, T) -> (B, latent_dim, F): the latent before quantization."""

    @abc.abstractmethod
    def decode_latent(self, latent: Tensor) -> Tensor:
        """(B, latent_dim, F) -> (B, 1, F * hop)."""

    def bitrate(self, n_codebooks: int) -> float:
        """Bits per second when `n_codebooks` streams are sent."""
        if not 1 <= n_codebooks <= self.num_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {self.num_codebooks}], got {n_codebooks}")
        return n_codebooks * self.frame_rate * math.log2(self.cardinality)
