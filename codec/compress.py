"""Compress audio to `.vcd` files (codec/bitstream.py) and back, with bounded memory.

Audio of any rate and channel count is resampled to the codec's rate and each channel is
coded on its own; decoding restores the original rate, channels and length. Long inputs
are coded in chunks of `chunk_seconds` (codec/chunking.py), with the same codes as one
pass; many files are batched together, with the same codes as one at a time.

Streaming (stdin/stdout or generators) uses the same windows; its algorithmic latency is
`codec.chunking.stream_latency`: one chunk plus the encoder's and decoder's lookahead,
which is zero for a causal codec (CodecDims(causal=True)).
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from codec.bitstream import (
    BitstreamError,
    ChunkReader,
    ChunkWriter,
    Header,
    ModelInfo,
    ParsedFile,
    encode_file,
    frames_for,
    parse,
    read_header,
)
from codec.chunking import ChunkDecoder, ChunkEncoder, chunk_frames, encode_batch
from codec.interface import CompressionModel
from codec.model import default_compress_checkpoint, find_codec, load_codec, same_codes
from codec.prior import CodePrior, prior_path
from core.audio import (
    AUDIO_SUFFIXES,
    SAVE_FORMATS,
    AudioBlocks,
    StreamResampler,
    audio_info,
    check_audio,
    iter_audio_blocks,
    load_audio,
    loudness,
    resample,
    write_audio_blocks,
    write_wav_stream,
)
from core.checkpoint import checkpoint_paths, inference_dtype, weights_sha256
from core.errors import AudioError, CheckpointError, VocalisError
from core.io import atomic_path

READ_SECONDS = 60.0  # input block; files up to this long are batched in memory


@dataclass(frozen=True)
class LoadedCodec:
    """A codec model and the SHA-256 of its weights file, which names it in `.vcd` files.
    `same_codes` holds the ids of earlier codecs with the same encoder and codebooks (a
    decoder trained anew): their files decode with this one."""

    model: CompressionModel
    model_id: str
    same_codes: frozenset[str] = frozenset()
    prior: CodePrior | None = None  # the range coder's starting counts (codec/prior.py)

    @property
    def info(self) -> ModelInfo:
        m = self.model
        return ModelInfo(self.model_id, m.sample_rate, m.hop_length, m.cardinality, m.num_codebooks)


@dataclass(frozen=True)
class CompressOptions:
    kbps: float = 6.0
    entropy: bool = True  # range-code chunks where that is smaller than bit-packing
    chunk_seconds: float = 10.0
    batch_size: int = 8  # windows per forward pass
    progress: bool = False  # a progress bar on stderr


@dataclass(frozen=True)
class CompressResult:
    input: str
    output: str
    seconds: float  # of audio
    bytes: int

    @property
    def kbps(self) -> float:
        return 8 * self.bytes / self.seconds / 1000 if self.seconds else 0.0


def load(
    path: str | os.PathLike | None = None, *, device: str = "cpu", precision: str = "auto"
) -> LoadedCodec:
    """A codec checkpoint (default: the shipped one for compression,
    `codec.model.COMPRESS_CHECKPOINT`) and the SHA-256 that names it. `precision` "auto"
    (bf16 where `device` has native bf16 units), "bf16" or "fp32": the dtype of the
    frame-rate blocks' 1x1 layers (`Codec.set_matmul_dtype`); everything else runs in fp32."""
    weights, _ = checkpoint_paths(path or default_compress_checkpoint())
    if not weights.is_file():
        raise CheckpointError(f"no codec model at '{weights}'; train one or pass --model")
    dtype = inference_dtype(device, precision)  # checks the name first
    model_id = weights_sha256(weights)
    codes = same_codes(weights, sha256=model_id)
    model = load_codec(weights, device=device)
    model.set_matmul_dtype(dtype)
    return LoadedCodec(model, model_id, codes, load_prior(weights, codes))


def load_prior(weights: str | os.PathLike, codes: frozenset[str] | None = None) -> CodePrior | None:
    """The code prior beside a codec's weights (`<stem>.prior.json`), if there is one. It
    must count the codes of this codec (`codes`: the ids whose codes it shares)."""
    path = prior_path(weights)
    if not path.is_file():
        return None
    prior = CodePrior.load(path)
    if codes is not None and not prior.codes_of & codes:
        raise CheckpointError(f"the code prior '{path}' counts another codec's codes")
    return prior


def n_codebooks_for(model: CompressionModel, kbps: float) -> int:
    per_codebook = model.bitrate(1) / 1000
    n = round(kbps / per_codebook)
    if not 1 <= n <= model.num_codebooks or not math.isclose(n * per_codebook, kbps, rel_tol=1e-3):
        options = ", ".join(f"{k * per_codebook:g}" for k in range(1, model.num_codebooks + 1))
        raise VocalisError(f"bitrate {kbps:g} kbps is not available; choose one of {options}")
    return n


# ---------------------------------------------------------------------------------------
# Pipelines: audio blocks -> file bytes -> audio blocks


def compress_stream(
    blocks: Iterable[Tensor],
    sample_rate: int,
    channels: int,
    codec: LoadedCodec,
    options: CompressOptions = CompressOptions(),
    *,
    length: int | None = None,
    loudness_lufs: float | None = None,
) -> Iterator[bytes]:
    """Audio blocks (C, t) at `sample_rate` -> the bytes of a `.vcd` file, piece by piece.

    With `length` (samples per channel) unknown, the header leaves it and the frame count
    to the end record. Empty or non-finite audio raises AudioError."""
    model = codec.model
    n = n_codebooks_for(model, options.kbps)
    chunk = chunk_frames(model, options.chunk_seconds)
    header = Header(
        model=codec.info,
        channels=channels,
        n_codebooks=n,
        chunk_frames=chunk,
        coding="range" if options.entropy else "packed",
        original_sample_rate=sample_rate,
        frames=None,
        original_length=None,
        loudness=loudness_lufs if loudness_lufs is None or math.isfinite(loudness_lufs) else None,
        prior=_prior_id(codec, options),
    )
    if length is not None:
        header = replace(header, frames=frames_for(header, length), original_length=length)
    _check_shape(channels, sample_rate)
    writer = ChunkWriter(header, codec.prior)
    resampler = StreamResampler(sample_rate, model.sample_rate)
    encoder = ChunkEncoder(model, n, chunk)
    yield writer.preamble()
    seen = 0
    for block in blocks:
        if block.dim() != 2 or block.shape[0] != channels:
            raise AudioError(f"expected audio blocks of {channels} channel(s)")
        if block.shape[-1] == 0:
            continue
        check_audio(block, sample_rate, name="input audio")
        seen += block.shape[-1]
        for codes in encoder.push(resampler.push(block.float())):
            yield writer.chunk(codes)
    if seen == 0:
        raise AudioError("input audio contains no samples")
    if length is not None and seen != length:
        raise AudioError(f"input audio has {seen} samples, its header said {length}")
    for codes in [*encoder.push(resampler.finish()), *encoder.finish()]:
        yield writer.chunk(codes)
    yield writer.end(seen)


def _check_shape(channels: int, sample_rate: int) -> None:
    if not 1 <= channels <= 64:
        raise AudioError(f"{channels} channels; vocalis codes 1 to 64")
    if not 1 <= sample_rate <= 1_000_000:
        raise AudioError(f"sample rate {sample_rate} Hz is out of range")


def compress_audio(
    wav: Tensor, sample_rate: int, codec: LoadedCodec, options: CompressOptions = CompressOptions()
) -> bytes:
    """(C, T) audio in memory -> `.vcd` bytes (batched path, exact loudness)."""
    return compress_many([wav], [sample_rate], codec, options)[0]


def compress_many(
    wavs: list[Tensor], rates: list[int], codec: LoadedCodec, options: CompressOptions
) -> list[bytes]:
    """Several clips (C_i, T_i) at once: every chunk of every channel in shared batches."""
    model = codec.model
    n = n_codebooks_for(model, options.kbps)
    chunk = chunk_frames(model, options.chunk_seconds)
    for wav, rate in zip(wavs, rates):
        _check_shape(wav.shape[0], rate)
        check_audio(wav, rate, name="input audio")
    signals = [resample(w.float(), r, model.sample_rate) for w, r in zip(wavs, rates)]
    all_codes = encode_batch(model, signals, n, chunk, options.batch_size)  # (C_i, n, F_i)
    out = []
    for wav, rate, codes in zip(wavs, rates, all_codes):
        lufs = loudness(wav, rate)
        header = Header(
            model=codec.info,
            channels=wav.shape[0],
            n_codebooks=n,
            chunk_frames=chunk,
            coding="range" if options.entropy else "packed",
            original_sample_rate=rate,
            frames=codes.shape[-1],
            original_length=wav.shape[-1],
            loudness=lufs if math.isfinite(lufs) else None,
            prior=_prior_id(codec, options),
        )
        out.append(encode_file(header, _split(codes, chunk), wav.shape[-1], codec.prior))
    return out


def _prior_id(codec: LoadedCodec, options: CompressOptions) -> str | None:
    return codec.prior.id if options.entropy and codec.prior is not None else None


def _parse_for(data: bytes, codec: LoadedCodec) -> ParsedFile:
    """`parse` with the codec's prior, after checking that the file is this codec's."""
    _check_model(read_header(io.BytesIO(data)), codec)
    return parse(data, codec.prior)


def _check_model(header: Header, codec: LoadedCodec) -> None:
    if header.model.id != codec.model_id and header.model.id not in codec.same_codes:
        shipped = find_codec(header.model.id)
        hint = (
            f"decode it with {shipped}"
            if shipped is not None
            else "no shipped codec has its codes (an earlier release's weights?); "
            "decode it with the weights that made it"
        )
        raise BitstreamError(
            f"file was made with codec model {header.model.id[:12]}..., "
            f"but the loaded model is {codec.model_id[:12]}...; {hint}"
        )
    if replace(header.model, id=codec.model_id) != codec.info:
        raise BitstreamError("file's codec layout differs from the loaded model's")


def decode_chunks(
    chunks: Iterable[np.ndarray],
    header: Header,
    codec: LoadedCodec,
    length: Callable[[], int | None],
) -> Iterator[Tensor]:
    """Code chunks -> audio blocks (C, t) at the original rate; `length()` gives the
    original length once the chunks are exhausted (streams learn it from the end record)."""
    _check_model(header, codec)
    decoder = ChunkDecoder(codec.model, header.chunk_frames)
    resampler = StreamResampler(header.sample_rate, header.original_sample_rate)
    pushed = 0  # model-rate samples handed to the resampler
    for codes in chunks:
        for wav in decoder.push(codes):  # never past the signal's end (see ChunkDecoder)
            pushed += wav.shape[-1]
            yield resampler.push(wav)
    total = length()
    valid = -(-total * header.sample_rate // header.original_sample_rate)
    tail: list[Tensor] = []
    for wav in decoder.finish():
        wav = wav[..., : max(0, valid - pushed)]
        pushed += wav.shape[-1]
        tail.append(resampler.push(wav))
    tail.append(resampler.finish())
    # The resampler's output before `finish` stops short of `total`: only the tail is cut.
    written = resampler.emitted - sum(t.shape[-1] for t in tail)
    for block in tail:
        block = block[..., : max(0, total - written)]
        written += block.shape[-1]
        yield block


def decompress_bytes(data: bytes, codec: LoadedCodec) -> tuple[Tensor, int]:
    """`.vcd` bytes -> ((C, T) audio, original sample rate); checks everything first."""
    parsed = _parse_for(data, codec)
    header = parsed.header
    chunks = _split(parsed.codes, header.chunk_frames)
    blocks = list(decode_chunks(chunks, header, codec, lambda: header.original_length))
    return torch.cat(blocks, -1) if blocks else torch.zeros(
        header.channels, 0
    ), header.original_sample_rate


def _split(codes: np.ndarray, chunk: int) -> list[np.ndarray]:
    return [codes[..., a : a + chunk] for a in range(0, codes.shape[-1], chunk)]


@dataclass
class DecodedStream:
    """`iter(stream)` yields (C, t) audio at `header.original_sample_rate`; each chunk is
    checked (checksum, length) as it arrives, the end record at the end."""

    header: Header
    blocks: Iterator[Tensor]

    def __iter__(self) -> Iterator[Tensor]:
        return self.blocks


def shipped_codec_for(path: str | os.PathLike) -> Path | None:
    """The shipped codec that made the `.vcd` file at `path` (an earlier one, once the
    shipped codec is replaced), or None: a stream ("-"), an unreadable file or an unknown
    codec, which `load` and the decoder then report."""
    if str(path) == "-":
        return None
    try:
        with open(path, "rb") as f:
            header = read_header(f)
    except (OSError, BitstreamError):
        return None
    return find_codec(header.model.id)


def decompress_stream(stream: BinaryIO, codec: LoadedCodec) -> DecodedStream:
    header = read_header(stream)
    _check_model(header, codec)
    reader = ChunkReader(stream, header, codec.prior)
    return DecodedStream(
        header, decode_chunks(reader, header, codec, lambda: reader.original_length)
    )


def info(path: str | os.PathLike, prior: CodePrior | None = None) -> tuple[Header, int, int]:
    """Check a whole file without a model: (header, chunks, bytes); raises BitstreamError.
    A file range-coded with a code prior needs it (`load_prior` of the codec's weights)."""
    parsed = parse(_read_file(path), prior)
    return parsed.header, parsed.chunks, parsed.size


# ---------------------------------------------------------------------------------------
# Files and standard streams. ("-" is stdin or stdout.)


def compress(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike | None,
    codec: LoadedCodec,
    options: CompressOptions = CompressOptions(),
) -> list[CompressResult]:
    """Audio files or folders -> `.vcd` files, written atomically. `output` is a file for
    one input file, else a folder (None: beside each input). Clips up to READ_SECONDS long
    are batched together; longer ones are streamed in blocks with bounded memory."""
    if [str(i) for i in inputs] == ["-"]:
        return [_compress_stdin(output, codec, options)]
    pairs = _output_paths(inputs, output, ".vcd")
    short, results = [], []
    for src, dst in pairs:
        meta = audio_info(src)
        if meta.frames <= 0 and meta.frames_exact:
            raise AudioError(f"'{src}' contains no samples")
        if meta.duration <= READ_SECONDS:
            short.append((src, dst))
        else:
            results.append(_compress_long(src, dst, codec, options))
    for b in range(0, len(short), max(1, options.batch_size)):
        group = short[b : b + max(1, options.batch_size)]
        loaded = [load_audio(src, mono=False) for src, _ in group]
        datas = compress_many([w for w, _ in loaded], [r for _, r in loaded], codec, options)
        for (src, dst), (wav, rate), data in zip(group, loaded, datas):
            _write_bytes(dst, [data])
            results.append(CompressResult(str(src), str(dst), wav.shape[-1] / rate, len(data)))
    order = {str(src): i for i, (src, _) in enumerate(pairs)}
    return sorted(results, key=lambda r: order[r.input])


def _compress_long(src: Path, dst: Path, codec: LoadedCodec, options: CompressOptions):
    meta = audio_info(src)
    # Loudness per block, power-averaged: exact for one block, close for long files.
    powers = [
        (10 ** (lufs / 10), block.shape[-1])
        for block in iter_audio_blocks(src, READ_SECONDS)
        if math.isfinite(lufs := loudness(block, meta.sample_rate))
    ]
    lufs = (
        10 * math.log10(sum(p * n for p, n in powers) / sum(n for _, n in powers))
        if powers
        else None
    )
    blocks = iter_audio_blocks(src, READ_SECONDS)
    blocks = _progress(blocks, meta.sample_rate, meta.duration, options.progress)
    stream = compress_stream(
        blocks,
        meta.sample_rate,
        meta.channels,
        codec,
        options,
        length=meta.frames if meta.frames_exact else None,  # else known at the end
        loudness_lufs=lufs,
    )
    size = _write_bytes(dst, stream)
    return CompressResult(str(src), str(dst), meta.duration, size)


def _compress_stdin(output, codec: LoadedCodec, options: CompressOptions) -> CompressResult:
    dst = "-" if output is None else output
    with AudioBlocks(sys.stdin.buffer, options.chunk_seconds) as blocks:  # small reads: low latency
        stream = compress_stream(blocks, blocks.sample_rate, blocks.channels, codec, options)
        size = _write_bytes(dst, stream)
    return CompressResult("-", str(dst), 0.0, size)


def decompress(
    input: str | os.PathLike,
    output: str | os.PathLike | None,
    codec: LoadedCodec,
    *,
    progress: bool = False,
) -> Path | str:
    """A `.vcd` file (or "-") -> a wav or flac file (or WAV on stdout), written atomically.
    A file is checked completely before any code is decoded."""
    if output is None:
        output = "-" if str(input) == "-" else Path(input).with_suffix(".wav")
    if str(output) != "-" and Path(output).suffix.lower() not in SAVE_FORMATS:  # before decoding
        raise AudioError(f"cannot write '{output}': use one of {', '.join(SAVE_FORMATS)}")
    if str(input) == "-":
        decoded = decompress_stream(sys.stdin.buffer, codec)
        header, blocks = decoded.header, iter(decoded)
    else:
        parsed = _parse_for(_read_file(input), codec)
        header = parsed.header
        chunks = _split(parsed.codes, header.chunk_frames)
        blocks = decode_chunks(chunks, header, codec, lambda: header.original_length)
        seconds = header.original_length / header.original_sample_rate
        blocks = _progress(blocks, header.original_sample_rate, seconds, progress)
    rate, channels = header.original_sample_rate, header.channels
    if str(output) == "-":
        write_wav_stream(sys.stdout.buffer, blocks, rate, channels)
        return "-"
    return write_audio_blocks(output, blocks, rate, channels)


def _output_paths(inputs, output, suffix: str) -> list[tuple[Path, Path]]:
    sources: list[tuple[Path, Path]] = []  # (file, the folder it was found under or None)
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise AudioError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in '{item}'")
            sources += [(p, item) for p in found]
        elif item.exists():
            sources.append((item, None))
        else:
            raise AudioError(f"no such audio file: '{item}'")
    single = len(inputs) == 1 and sources[0][1] is None
    out = None if output is None else Path(output)
    to_file = single and out is not None and not out.is_dir() and not str(output).endswith("/")
    pairs = []
    for src, root in sources:
        if to_file:
            dst = out
        else:
            rel = src.relative_to(root) if root is not None else Path(src.name)
            dst = (src.parent / src.name if out is None else out / rel).with_suffix(suffix)
        pairs.append((src, dst))
    dsts = [d for _, d in pairs]
    if len(set(dsts)) != len(dsts):
        raise VocalisError("two inputs would write the same output file; compress them apart")
    return pairs


def _progress(blocks: Iterator[Tensor], rate: int, seconds: float, on: bool) -> Iterator[Tensor]:
    if not on:
        yield from blocks
        return
    from tqdm import tqdm

    with tqdm(total=round(seconds, 1), unit="s", desc="audio", file=sys.stderr) as bar:
        for block in blocks:
            bar.update(round(block.shape[-1] / rate, 3))
            yield block


def _read_file(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise VocalisError(f"cannot read '{path}': {e.strerror or e}") from None


def _write_bytes(dst: str | os.PathLike, parts: Iterable[bytes]) -> int:
    """Write pieces to a file atomically (or to stdout for "-"); returns the byte count."""
    size = 0
    if str(dst) == "-":
        for part in parts:
            sys.stdout.buffer.write(part)
            sys.stdout.buffer.flush()
            size += len(part)
        return size
    try:
        with atomic_path(dst) as tmp, open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
                size += len(part)
    except OSError as e:
        raise VocalisError(f"cannot write '{dst}': {e.strerror or e}") from None
    return size
