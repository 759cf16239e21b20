"""The vocalis neural audio codec: conv encoder -> residual VQ -> conv decoder.

Defaults: 24 kHz audio, hop 320 (75 code frames per second), 8 codebooks of 1024 entries
(750 bit/s each: 1.5, 3 and 6 kbps at 2, 4 and 8 codebooks). The widths are small at the
high-rate stages and large next to the 75 Hz latent, where a parameter costs only 75
multiply-adds per second of audio; see benchmarks/bench_codec_speed.py for the speed
against EnCodec.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.interface import CompressionModel
from codec.modules import PHASE_HEADS, Decoder, Encoder, FrameBlock, IStftDecoder, StftEncoder
from codec.quantize import ResidualVQ
from core.checkpoint import (
    CheckpointError,
    load_model,
    read_model_training,
    save_model,
    weights_sha256,
)
from core.paths import SHIPPED_MODELS

KIND = "codec"
ENCODERS = ("conv", "stft")
DECODERS = ("conv", "istft")
# The codec shipped with the repository (weights + dims JSON beside it).
SHIPPED_CHECKPOINT = SHIPPED_MODELS / "codec" / "codec.safetensors"
# What `vocalis compress` uses without --model (codec.compress.load): the shipped codec that
# beats Opus 6 kbps at 6 kbps on all five metrics of `vocalis eval codec`. The one above
# stays the default for token packs and the TTS (codes with less entropy in the first
# codebook), and decodes the files made with it.
COMPRESS_CHECKPOINT = SHIPPED_MODELS / "codec" / "codec_sisdr.safetensors"


def default_compress_checkpoint() -> Path:
    """COMPRESS_CHECKPOINT, or SHIPPED_CHECKPOINT in a checkout without it."""
    return COMPRESS_CHECKPOINT if COMPRESS_CHECKPOINT.is_file() else SHIPPED_CHECKPOINT


@dataclass(frozen=True)
class CodecDims:
    sample_rate: int = 24000
    # Encoder order; the decoder mirrors them. Large early strides keep only one stage at
    # the full 24 kHz rate (the next runs at 6 kHz), which is where CPU time goes.
    strides: tuple[int, ...] = (4, 4, 4, 5)
    encoder_channels: tuple[int, ...] = (8, 16, 32, 64, 512)  # before each downsampling, last
    decoder_channels: tuple[int, ...] = (768, 128, 64, 32, 16)  # input conv, each upsampling
    latent_dim: int = 128
    n_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 8
    kernel_size: int = 7  # residual units' dilated conv
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation, every stage
    compress: int = 4  # residual-unit bottleneck: hidden width = channels // compress
    causal: bool = False  # left-only padding: streaming, one frame of lookahead at most
    quantizer_dropout: float = 0.5  # probability an item trains with a random n in [1, Q]
    dead_code_steps: int = 100  # re-seed codes unused for this many training steps; 0: never
    # "conv": the transposed-conv decoder above (decoder_channels); "istft": Vocos-style
    # blocks at the frame rate and an inverse STFT (istft_*), non-causal only.
    decoder: str = "conv"
    istft_dim: int = 512
    istft_hidden: int = 1536
    istft_layers: int = 8
    istft_n_fft: int = 1280
    istft_phase: str = "angle"  # the head's phase: a raw "angle" (Vocos) or a (re, im) "vector"
    # "conv": the strided conv encoder above (encoder_channels); "stft": the iSTFT
    # decoder's mirror, an STFT and ConvNeXt blocks at the frame rate (stft_*), non-causal.
    encoder: str = "conv"
    stft_dim: int = 512
    stft_hidden: int = 1536
    stft_layers: int = 8
    stft_n_fft: int = 1280

    def __post_init__(self) -> None:
        n = len(self.strides) + 1
        if len(self.encoder_channels) != n or len(self.decoder_channels) != n:
            raise ValueError(f"encoder and decoder need {n} channel widths for {n - 1} strides")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError("quantizer_dropout is a probability")
        if self.istft_phase not in PHASE_HEADS:
            raise ValueError(f"istft_phase must be one of {PHASE_HEADS}, got {self.istft_phase!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "stft" and self.causal:
            raise ValueError("the stft encoder is non-causal; a causal codec needs encoder 'conv'")
        if self.decoder == "istft" and self.causal:
            raise ValueError("the istft decoder is non-causal; a causal codec needs decoder 'conv'")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    def same_codes(self, other: CodecDims) -> bool:
        """Whether `other` differs from these dims only in its decoder, so that the same
        encoder and codebook weights give the same codes under both."""
        decoder_fields = {"decoder", "decoder_channels"}
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name not in decoder_fields and not f.name.startswith("istft_")
        )


@dataclass
class CodecOutput:
    wav: Tensor  # (B, 1, T) reconstruction, trimmed to the input length
    codes: Tensor  # (B, n, F) int64
    latent: Tensor  # (B, D, F) encoder output
    quantized: Tensor  # (B, D, F) straight-through quantized latent
    commitment_loss: Tensor  # scalar
    codebook_loss: Tensor  # scalar
    n_codebooks: Tensor  # (B,) int64: codebooks each item used (varies under dropout)


def build_encoder(dims: CodecDims) -> nn.Module:
    if dims.encoder == "stft":
        return StftEncoder(
            dims.latent_dim,
            dims.hop_length,
            dim=dims.stft_dim,
            hidden=dims.stft_hidden,
            layers=dims.stft_layers,
            n_fft=dims.stft_n_fft,
            kernel_size=dims.kernel_size,
        )
    return Encoder(
        dims.encoder_channels,
        dims.strides,
        dims.latent_dim,
        kernel_size=dims.kernel_size,
        dilations=dims.dilations,
        compress=dims.compress,
        causal=dims.causal,
    )


def build_decoder(dims: CodecDims) -> nn.Module:
    if dims.decoder == "istft":
        return IStftDecoder(
            dims.latent_dim,
            dims.hop_length,
            dim=dims.istft_dim,
            hidden=dims.istft_hidden,
            layers=dims.istft_layers,
            n_fft=dims.istft_n_fft,
            kernel_size=dims.kernel_size,
            phase=dims.istft_phase,
        )
    return Decoder(
        dims.decoder_channels,
        tuple(reversed(dims.strides)),
        dims.latent_dim,
        kernel_size=dims.kernel_size,
        dilations=dims.dilations,
        compress=dims.compress,
        causal=dims.causal,
    )


def build_quantizer(dims: CodecDims) -> ResidualVQ:
    return ResidualVQ(
        dims.latent_dim,
        dims.n_codebooks,
        dims.codebook_size,
        dims.codebook_dim,
        dropout=dims.quantizer_dropout,
        dead_code_steps=dims.dead_code_steps,
    )


class Codec(CompressionModel):
    """`Codec(dims)` builds every part from the dimensions; tests and experiments may inject
    their own encoder, decoder or quantizer (they must keep the dims' shapes)."""

    def __init__(
        self,
        dims: CodecDims,
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        quantizer: ResidualVQ | None = None,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.encoder = encoder if encoder is not None else build_encoder(dims)
        self.decoder = decoder if decoder is not None else build_decoder(dims)
        self.quantizer = quantizer if quantizer is not None else build_quantizer(dims)
        self.hop_length = dims.hop_length
        self.sample_rate = dims.sample_rate
        self.frame_rate = dims.sample_rate / self.hop_length
        self.num_codebooks = self.quantizer.n_codebooks
        self.cardinality = dims.codebook_size
        self.latent_dim = dims.latent_dim

    def _pad(self, wav: Tensor) -> Tensor:  # (B, 1, T) -> (B, 1, F * hop)
        if wav.dim() != 3 or wav.shape[1] != 1 or wav.shape[-1] == 0:
            raise ValueError(f"expected mono audio (B, 1, T) with T > 0, got {tuple(wav.shape)}")
        extra = -wav.shape[-1] % self.hop_length
        return F.pad(wav, (0, extra)) if extra else wav

    def encode_latent(self, wav: Tensor) -> Tensor:  # (B, 1, T) -> (B, D, F)
        return self.encoder(self._pad(wav))

    def decode_latent(self, latent: Tensor) -> Tensor:  # (B, D, F) -> (B, 1, F * hop)
        return self.decoder(latent)

    def set_matmul_dtype(self, dtype: torch.dtype | None) -> Codec:
        """Run the frame-rate blocks' 1x1 layers in `dtype` (bf16) at inference, or in fp32
        (None); the weights, the state dict and training are unchanged. Set it after the
        weights are loaded: it copies them. See `core.checkpoint.inference_dtype`."""
        for module in self.modules():
            if isinstance(module, FrameBlock):
                module.set_matmul_dtype(dtype)
        return self

    def encode(self, wav: Tensor, n_codebooks: int | None = None) -> Tensor:
        return self.quantizer.encode(self.encode_latent(wav), n_codebooks)  # (B, n, F)

    def decode(self, codes: Tensor) -> Tensor:  # (B, n, F) -> (B, 1, F * hop)
        return self.decoder(self.quantizer.decode(codes))

    def reconstruct(self, wav: Tensor, n_codebooks: int | None = None) -> Tensor:
        """Encode and decode, trimmed to the input length: (B, 1, T) -> (B, 1, T)."""
        return self.decode(self.encode(wav, n_codebooks))[..., : wav.shape[-1]]

    def forward(self, wav: Tensor, n_codebooks: int | None = None) -> CodecOutput:
        """The training pass. With `n_codebooks=None` in training mode, quantizer dropout
        picks how many codebooks each item uses; in eval mode all Q are used."""
        latent = self.encode_latent(wav)  # (B, D, F)
        q = self.quantizer(latent, n_codebooks)
        recon = self.decoder(q.quantized)[..., : wav.shape[-1]]  # (B, 1, T)
        return CodecOutput(
            wav=recon,
            codes=q.codes,
            latent=latent,
            quantized=q.quantized,
            commitment_loss=q.commitment_loss,
            codebook_loss=q.codebook_loss,
            n_codebooks=q.n_codebooks,
        )


def adopt_decoder(codec: Codec, start: Codec) -> bool:
    """Take over `start`'s iSTFT decoder into `codec`'s when they differ only in the phase
    head, "angle" to "vector" (IStftDecoder.head_from_angle); False, untouched, otherwise."""
    new, old = codec.dims, start.dims
    if (old.decoder, old.istft_phase, new.istft_phase) != ("istft", "angle", "vector"):
        return False
    training = dict(quantizer_dropout=new.quantizer_dropout, dead_code_steps=new.dead_code_steps)
    if dataclasses.replace(old, istft_phase="vector", **training) != new:
        return False
    state = {k: v for k, v in start.decoder.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = codec.decoder.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"head.weight", "head.bias"}:
        raise ValueError(f"iSTFT decoders differ beyond the head: {missing + unexpected}")
    codec.decoder.head_from_angle(start.decoder.head)
    return True


def save_codec(
    path: str | os.PathLike,
    model: Codec,
    *,
    training: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Weights (safetensors) + dims (JSON) in the project's checkpoint format."""
    return save_model(path, model, model.dims, kind=KIND, training=training, dtype=dtype)


def load_codec(path: str | os.PathLike, *, device: str = "cpu") -> Codec:
    """Rebuild a `Codec` from a checkpoint (eval mode); the dims come from the file."""
    return load_model(path, Codec, CodecDims, kind=KIND, device=device)


def same_codes(path: str | os.PathLike, *, sha256: str | None = None) -> frozenset[str]:
    """The SHA-256s of every codec file whose codes this checkpoint decodes as their own:
    its own, and those of the codecs it kept the encoder and codebooks of (a decoder
    trained anew with `parts.freeze`, recorded as `training.same_codes_as`). Tokens, `.vcd`
    files and TTS models made with any of them are this codec's too. `sha256`: the file's
    own, where the caller has hashed it already."""
    earlier = read_model_training(path, kind=KIND).get("same_codes_as", [])
    if not isinstance(earlier, list) or not all(isinstance(h, str) for h in earlier):
        earlier = []
    return frozenset([sha256 or weights_sha256(path), *earlier])


def find_codec(sha256: str, root: str | os.PathLike = SHIPPED_MODELS) -> Path | None:
    """The codec checkpoint under `root` whose codes are those of the codec with weights
    hash `sha256` (that codec itself, or one that kept its encoder and codebooks), or None.
    The shipped codec first, then the others in path order: the TTS speaks the tokens of
    the codec it was trained with, and a `.vcd` file needs the codec that made it, which
    need not be the newest."""
    root = Path(root)
    candidates = sorted(root.rglob("*.safetensors"))
    candidates.sort(key=lambda p: p != SHIPPED_CHECKPOINT)
    for weights in candidates:
        try:
            if sha256 in same_codes(weights):
                return weights
        except CheckpointError:  # another kind of model
            continue
    return None
