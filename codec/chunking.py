"""Chunked coding with any codec model: long or streamed signals in, the same codes and
audio as one pass out, with bounded memory.

Each chunk's window reaches `model_context` frames past both of its ends, more than the
model's receptive field, so chunked codes and audio equal one-pass ones up to float
rounding (no seams, no crossfade needed). The signal is also followed by that many frames
of silence, which makes the codes independent of any padding added after it: windows of
many signals are batched by zero-padding to the longest, with the same codes as one at a
time. Everything here works on tensors at the model's rate; files are codec/compress.py's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.interface import CompressionModel
from core.errors import VocalisError


@dataclass(frozen=True)
class Context:
    """Frames a chunk's window reaches before and after it, for encoding and decoding."""

    encode: tuple[int, int]
    decode: tuple[int, int]


@dataclass(frozen=True)
class StreamLatency:
    """Algorithmic latency of streaming, in seconds (compute time not included): one chunk
    plus the encoder's and decoder's lookahead, which is zero for a causal codec."""

    chunk: float
    encoder_lookahead: float
    decoder_lookahead: float

    @property
    def total(self) -> float:
        return self.chunk + self.encoder_lookahead + self.decoder_lookahead


def model_context(model: CompressionModel) -> Context:
    """From the convolutions' kernels, dilations and strides; a causal model looks back only."""
    parts = [getattr(model, name, None) for name in ("encoder", "decoder")]
    if not all(isinstance(p, nn.Module) for p in parts):
        raise VocalisError("chunked coding needs a convolutional codec (encoder and decoder)")
    hop = model.hop_length
    enc = math.ceil(_conv_span(parts[0], reverse=False) / hop) + 1
    dec = math.ceil(_conv_span(parts[1], reverse=True) / hop) + 1
    causal = bool(getattr(getattr(model, "dims", None), "causal", False))
    return Context((enc, 0 if causal else enc), (dec, 0 if causal else dec))


def _conv_span(module: nn.Module, *, reverse: bool) -> int:
    """Receptive field in samples at the waveform end: the input (encoder, forward) or the
    output (decoder, walked backwards). Residual branches only add to it in parallel. A
    module that knows its own span (`receptive_span()`, the iSTFT decoder) says it."""
    if hasattr(module, "receptive_span"):
        return int(module.receptive_span())
    convs = [m for m in module.modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]
    span, step = 0, 1  # step: waveform samples per position at the current layer
    for m in reversed(convs) if reverse else convs:
        k, d, s = m.kernel_size[0], m.dilation[0], m.stride[0]
        if isinstance(m, nn.ConvTranspose1d):
            span += (math.ceil(((k - 1) * d + 1) / s) - 1) * s * step
        else:
            span += (k - 1) * d * step
        step *= s
    return span


def stream_latency(model: CompressionModel, chunk_seconds: float) -> StreamLatency:
    ctx, hop = model_context(model), model.hop_length / model.sample_rate
    chunk = max(1, round(chunk_seconds / hop)) * hop
    return StreamLatency(chunk, ctx.encode[1] * hop, max(ctx.decode[1], 1) * hop)


def chunk_frames(model: CompressionModel, seconds: float) -> int:
    """Frames per chunk for a chunk length in seconds (at least 1, at most 65536)."""
    if not seconds > 0:
        raise VocalisError(f"chunk length must be positive, got {seconds}")
    return min(max(1, round(seconds * model.frame_rate)), 1 << 16)


@torch.inference_mode()
def _encode_windows(model: CompressionModel, n: int, windows: list[Tensor]) -> list[Tensor]:
    """Mono windows (t_i,) -> codes (n, ceil(t_i / hop)), zero-padded into one batch."""
    longest = max(w.shape[-1] for w in windows)
    batch = torch.stack([F.pad(w, (0, longest - w.shape[-1])) for w in windows])  # (B, L)
    codes = model.encode(batch[:, None].to(_device(model)), n).cpu()  # (B, n, F)
    return [c[:, : math.ceil(w.shape[-1] / model.hop_length)] for c, w in zip(codes, windows)]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class ChunkEncoder:
    """A growing multichannel signal (C, t) at the model's rate in, codes (C, n, f) out,
    one chunk at a time, as soon as its right context has arrived."""

    def __init__(self, model: CompressionModel, n_codebooks: int, chunk_frames: int) -> None:
        self.model, self.n, self.chunk = model, n_codebooks, chunk_frames
        self.left, self.right = model_context(model).encode
        self.hop = model.hop_length
        self.buffer: Tensor | None = None  # (C, L) samples from `start`
        self.start = self.total = self.next = 0

    def push(self, block: Tensor) -> Iterator[np.ndarray]:  # block (C, t)
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], -1)
        self.total += block.shape[-1]
        while (self.next + self.chunk + self.right) * self.hop <= self.total:
            yield self._emit(self.next + self.chunk)

    def finish(self) -> Iterator[np.ndarray]:
        if self.buffer is None:
            return
        frames = math.ceil(self.total / self.hop)
        end = (frames + self.right) * self.hop  # the trailing silence of the module docstring
        self.buffer = F.pad(self.buffer, (0, end - self.start - self.buffer.shape[-1]))
        while self.next < frames:
            yield self._emit(min(self.next + self.chunk, frames))

    def _emit(self, stop: int) -> np.ndarray:
        lo = max(0, self.next - self.left)
        hi = (stop + self.right) * self.hop
        window = self.buffer[:, lo * self.hop - self.start : hi - self.start]  # (C, w)
        codes = _encode_windows(self.model, self.n, list(window))
        out = torch.stack(codes)[:, :, self.next - lo : stop - lo]  # (C, n, f)
        self.next = stop
        keep = max(0, stop - self.left) * self.hop
        self.buffer, self.start = self.buffer[:, keep - self.start :], keep
        return out.numpy()


def encode_batch(
    model: CompressionModel,
    signals: list[Tensor],
    n_codebooks: int,
    chunk_frames: int,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Many signals (C_i, T_i) at the model's rate -> codes (C_i, n, F_i), with every
    chunk window of every channel batched together, `batch_size` windows per forward
    pass; the same codes as `ChunkEncoder`."""
    hop, chunk = model.hop_length, chunk_frames
    left, right = model_context(model).encode
    jobs = []  # (item, channel, first frame, offset in window, frames, window)
    for i, wav in enumerate(signals):
        frames = math.ceil(wav.shape[-1] / hop)
        wav = F.pad(wav, (0, (frames + right) * hop - wav.shape[-1]))
        for a in range(0, frames, chunk):
            lo, stop = max(0, a - left), min(a + chunk, frames)
            for c in range(wav.shape[0]):
                window = wav[c, lo * hop : (stop + right) * hop]
                jobs.append((i, c, a, a - lo, stop - a, window))
    jobs.sort(key=lambda j: j[-1].shape[-1])  # similar lengths together: less padding
    size = max(1, batch_size)
    pieces: dict[tuple[int, int], dict[int, Tensor]] = {}
    for b in range(0, len(jobs), size):
        group = jobs[b : b + size]
        codes = _encode_windows(model, n_codebooks, [j[-1] for j in group])
        for (i, c, a, off, f, _), code in zip(group, codes):
            pieces.setdefault((i, c), {})[a] = code[:, off : off + f]
    out = []
    for i, wav in enumerate(signals):
        rows = [pieces[(i, c)] for c in range(wav.shape[0])]
        out.append(torch.stack([torch.cat([r[a] for a in sorted(r)], -1) for r in rows]).numpy())
    return out


class ChunkDecoder:
    """Codes (C, n, f) in, audio (C, t) at the model's rate out. A chunk of output waits
    for its right context, and always for one more frame, so nothing past the end of the
    signal leaves before `finish` knows the length."""

    def __init__(self, model: CompressionModel, chunk_frames: int) -> None:
        self.model, self.chunk, self.hop = model, chunk_frames, model.hop_length
        self.left, right = model_context(model).decode
        self.right = max(right, 1)
        self.codes: Tensor | None = None  # (C, n, L) frames from `start`
        self.start = self.total = self.next = 0

    def push(self, codes: np.ndarray) -> Iterator[Tensor]:
        codes = torch.from_numpy(codes)
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], -1)
        self.total += codes.shape[-1]
        while self.next + self.chunk + self.right <= self.total:
            yield self._emit(self.next + self.chunk, self.next + self.chunk + self.right)

    def finish(self) -> Iterator[Tensor]:
        while self.next < self.total:
            yield self._emit(min(self.next + self.chunk, self.total), self.total)

    @torch.inference_mode()
    def _emit(self, stop: int, hi: int) -> Tensor:
        lo = max(0, self.next - self.left)
        window = self.codes[:, :, lo - self.start : hi - self.start]  # (C, n, w)
        wav = self.model.decode(window.to(_device(self.model))).float().cpu()  # (C, 1, w*hop)
        out = wav[:, 0, (self.next - lo) * self.hop : (stop - lo) * self.hop]
        self.next = stop
        keep = max(0, stop - self.left)
        self.codes, self.start = self.codes[:, :, keep - self.start :], keep
        return out
