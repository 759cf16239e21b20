"""A tiny codec's dimensions, shared by the codec tests (fast on CPU, same code paths)."""

from __future__ import annotations

from codec import CodecDims

TINY = CodecDims(
    strides=(2, 4, 5),
    encoder_channels=(4, 8, 16, 32),
    decoder_channels=(32, 16, 8, 4),
    latent_dim=16,
    n_codebooks=4,
    codebook_size=64,
    codebook_dim=4,
    dilations=(1, 3),
    compress=2,
)
