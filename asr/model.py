"""The Whisper-style speech recogniser: an audio encoder and a text decoder on the shared
transformer blocks (`core.transformer`).

Encoder: 80-bin normalised log-mel at 100 frames/s (`core.audio.ASR_MEL`), a conv stem
(kernel 3, then kernel 3 with stride 2) that halves the rate to 50 frames/s, fixed
sinusoidal positions, pre-norm transformer layers. Clips need not be padded to 30 s: a
batch carries its frame lengths and every padded frame is masked (zeroed in the stem,
hidden from attention), so an item gives the same output alone or in a padded batch.

Decoder: token embedding plus learned positions, causal self-attention, cross-attention
to the encoder output, a KV cache for incremental decoding, and output logits tied to the
token embedding.

Optionally a CTC head (`ASRDims.ctc_units`, trained with `loss.ctc_weight`): a linear layer
on the encoder output that spells BPE pieces or letters (`asr.ctc`); beam search can let it
vote (`DecodingOptions.ctc_weight`).

`ASRDims` holds the dimensions and the tokenizer's JSON, so a checkpoint alone is enough
to transcribe.
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

from asr.ctc import n_ctc_units
from asr.tokenizer import Tokenizer
from core.attention import padding_mask
from core.audio import ASR_MEL, log_mel, normalize_log_mel
from core.checkpoint import checkpoint_paths, load_model, save_model
from core.errors import CheckpointError
from core.paths import SHIPPED_MODELS
from core.transformer import Transformer, TransformerCache

KIND = "asr"
# The trained recogniser shipped with the repository (weights + dims JSON beside it).
SHIPPED_CHECKPOINT = SHIPPED_MODELS / "asr" / "asr.safetensors"
# Not shipped: the best weights so far, kept to train on from (README, Speech recognition).
WARM_START_CHECKPOINT = SHIPPED_CHECKPOINT.with_name("warm_start.safetensors")
SAMPLE_RATE = ASR_MEL.sample_rate
HOP_LENGTH = ASR_MEL.hop_length
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # mel frames: 100 per second


@dataclass(frozen=True)
class ASRDims:
    n_mels: int = 80
    n_audio_ctx: int = 1500  # encoder frames after the stem: 30 s at 50 per second
    audio_dim: int = 384
    audio_depth: int = 6
    audio_heads: int = 6
    n_text_ctx: int = 224  # decoder positions (prompt + text + timestamps)
    text_dim: int = 384
    text_depth: int = 4
    text_heads: int = 6
    dropout: float = 0.0
    attn_dropout: float | None = None  # dropout on attention weights; None: `dropout`
    n_vocab: int = 0  # set from the tokenizer (`with_tokenizer`)
    ctc_units: str = ""  # "": no CTC head; "pieces" or "chars" (asr.ctc.CTC_UNITS)
    tokenizer: str = dataclasses.field(default="", repr=False)  # the tokenizer's JSON

    def with_tokenizer(self, tokenizer: Tokenizer) -> ASRDims:
        return dataclasses.replace(self, n_vocab=tokenizer.n_vocab, tokenizer=tokenizer.to_json())


@dataclass(frozen=True)
class AudioFeatures:
    """Encoder output of a batch: `x` (B, S, D), `lengths` (B,) valid frames, `mask` the
    cross-attention mask `(B, 1, 1, S)` (None when no frame is padded)."""

    x: Tensor
    lengths: Tensor
    mask: Tensor | None


def sinusoids(length: int, dim: int, max_timescale: float = 10000.0) -> Tensor:
    """Fixed positions `(length, dim)`: sines in the first half, cosines in the second."""
    half = dim // 2
    inv = torch.exp(-math.log(max_timescale) * torch.arange(half) / max(half - 1, 1))  # (D/2,)
    angles = torch.arange(length).unsqueeze(1) * inv.unsqueeze(0)  # (T, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (T, D)


def log_mel_features(wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Normalised log-mel of 16 kHz audio `(B, T)` (zero-padded, `lengths` valid samples).

    Each item is computed on its own samples only, so padding never changes it. Returns
    mel `(B, n_mels, F)`, padded with 0, and the frame counts `(B,)` (`samples // hop`).
    """
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long)
    frames = [int(n) // HOP_LENGTH for n in lengths.tolist()]
    mel = wav.new_zeros(wav.shape[0], ASR_MEL.n_mels, max(max(frames), 1))  # (B, M, F)
    for row, n in enumerate(lengths.tolist()):
        if frames[row] > 0:
            mel[row, :, : frames[row]] = normalize_log_mel(log_mel(wav[row, :n]))
    return mel, torch.tensor(frames, dtype=torch.long, device=wav.device)


def _time_mask(lengths: Tensor, t: int) -> Tensor:
    return (torch.arange(t, device=lengths.device) < lengths.unsqueeze(1)).unsqueeze(1)  # (B,1,T)


class AudioEncoder(nn.Module):
    def __init__(self, dims: ASRDims) -> None:
        super().__init__()
        d = dims.audio_dim
        self.n_ctx = dims.n_audio_ctx
        self.conv1 = nn.Conv1d(dims.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", sinusoids(dims.n_audio_ctx, d), persistent=False)
        self.transformer = Transformer(
            d,
            dims.audio_depth,
            dims.audio_heads,
            rotary=False,
            dropout=dims.dropout,
            attn_dropout=dims.attn_dropout,
        )

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """mel `(B, n_mels, F)` with `lengths` valid frames -> features at half the rate."""
        b, _, f = mel.shape
        if lengths is None:
            lengths = torch.full((b,), f, dtype=torch.long, device=mel.device)
        x = F.gelu(self.conv1(mel)) * _time_mask(lengths, f)  # (B, D, F)
        x = F.gelu(self.conv2(x))  # (B, D, S), S = ceil(F / 2)
        s = x.shape[-1]
        if s > self.n_ctx:
            raise ValueError(f"{f} mel frames exceed the encoder's {self.n_ctx} positions")
        out_lengths = (lengths + 1) // 2
        x = (x * _time_mask(out_lengths, s)).transpose(1, 2)  # (B, S, D)
        x = x + self.positions[:s]  # fp32 under autocast: the residual stream stays fp32
        mask = None if bool((out_lengths == s).all()) else padding_mask(out_lengths, s)
        return AudioFeatures(self.transformer(x, mask=mask), out_lengths, mask)


class TextDecoder(nn.Module):
    def __init__(self, dims: ASRDims) -> None:
        super().__init__()
        d = dims.text_dim
        self.n_ctx = dims.n_text_ctx
        self.token_embedding = nn.Embedding(dims.n_vocab, d)
        self.positional_embedding = nn.Parameter(torch.empty(dims.n_text_ctx, d))
        self.positional_embedding.no_weight_decay = True
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer = Transformer(
            d,
            dims.text_depth,
            dims.text_heads,
            cross_attention=True,
            context_dim=dims.audio_dim,
            rotary=False,
            dropout=dims.dropout,
            attn_dropout=dims.attn_dropout,
        )

    def forward(
        self, tokens: Tensor, audio: AudioFeatures, cache: TransformerCache | None = None
    ) -> Tensor:
        """tokens `(B, L)` (the next L after whatever the cache holds) -> logits `(B, L, V)`."""
        offset = 0 if cache is None else cache.length
        end = offset + tokens.shape[1]
        if end > self.n_ctx:
            raise ValueError(f"{end} tokens exceed the decoder's {self.n_ctx} positions")
        x = self.token_embedding(tokens) + self.positional_embedding[offset:end]  # (B, L, D)
        x = self.transformer(
            x, is_causal=True, context=audio.x, context_mask=audio.mask, cache=cache
        )
        return x @ self.token_embedding.weight.T.to(x.dtype)  # (B, L, V)


class ASRModel(nn.Module):
    """Encoder-decoder recogniser; `tokenizer` comes from `dims` when it holds one."""

    def __init__(self, dims: ASRDims) -> None:
        super().__init__()
        if dims.n_vocab <= 0:
            raise ValueError("ASRDims.n_vocab is unset: build the dims with `with_tokenizer`")
        self.dims = dims
        self.encoder = AudioEncoder(dims)
        self.decoder = TextDecoder(dims)
        self.tokenizer = Tokenizer.from_json(dims.tokenizer) if dims.tokenizer else None
        if self.tokenizer is not None and self.tokenizer.n_vocab != dims.n_vocab:
            raise CheckpointError(
                f"the tokenizer has {self.tokenizer.n_vocab} tokens, the model {dims.n_vocab}"
            )
        self.ctc: nn.Linear | None = None
        if dims.ctc_units:
            if self.tokenizer is None:
                raise ValueError("a CTC head needs the tokenizer in the dims")
            n_units = n_ctc_units(dims.ctc_units, self.tokenizer)
            self.ctc = nn.Linear(dims.audio_dim, n_units + 1)  # the blank is the last unit

    def embed_audio(self, mel: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        return self.encoder(mel, lengths)

    def ctc_log_probs(self, audio: AudioFeatures) -> Tensor:
        """The CTC head's log-probabilities `(B, S, units + 1)` (fp32; blank last)."""
        if self.ctc is None:
            raise ValueError("this model has no CTC head")
        return self.ctc(audio.x).float().log_softmax(-1)

    def forward(self, mel: Tensor, mel_lengths: Tensor | None, tokens: Tensor) -> Tensor:
        """Teacher-forced logits `(B, L, V)` for mel `(B, M, F)` and tokens `(B, L)`."""
        return self.decoder(tokens, self.embed_audio(mel, mel_lengths))

    def new_cache(self, batch: int, max_len: int | None = None) -> TransformerCache:
        return self.decoder.transformer.new_cache(batch, max_len or self.dims.n_text_ctx)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


def save_asr(path: str | os.PathLike, model: ASRModel, *, training: dict | None = None) -> Path:
    return save_model(path, model, model.dims, kind=KIND, training=training)


def load_asr(
    path: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ASRModel:
    """An ASR checkpoint (default: the shipped one) in eval mode, with its tokenizer, its
    weights in `dtype` (bf16 decodes about 2x faster on a CPU with AMX; see
    `core.checkpoint.inference_dtype`)."""
    weights, _ = checkpoint_paths(path or SHIPPED_CHECKPOINT)
    if not weights.is_file():
        hint = "train one: 'vocalis train asr'"
        if path is None and WARM_START_CHECKPOINT.is_file():  # nothing shipped yet
            hint += f", or name the unfinished warm start, '{WARM_START_CHECKPOINT}'"
        raise CheckpointError(f"no ASR model at '{weights}' ({hint})")
    model = load_model(weights, ASRModel, ASRDims, kind=KIND, device=device).to(dtype)
    if model.tokenizer is None:
        raise CheckpointError(f"'{weights}' holds no tokenizer")
    return model
