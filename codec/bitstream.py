"""The `.vcd` file format: codec codes in a versioned, checksummed container.

Layout (all integers little-endian):

    magic           8 bytes   b"\\x89VCD\\r\\n\\x1a\\n" (catches text-mode and 7-bit mangling)
    version         u16       FORMAT_VERSION
    header length   u32       then that many bytes of UTF-8 JSON (see `Header`)
    header CRC32    u32       of the JSON bytes
    chunk records, each:
        frames      u32       code frames in this chunk, > 0
        length      u32       payload bytes
        CRC32       u32       of the frames and length fields and the payload
        payload               the chunk's codes (C, n, f), bit-packed; in a "range" file, a
                              method byte first (0: bit-packed, 1: range-coded), so a chunk
                              that range coding would grow is sent packed. The range
                              coder starts from the code prior the header names
                              (`prior`, `CodePrior.id`), or uniform
    end record:
        frames = 0, length, CRC32, payload = JSON {"frames": F, "original_length": L}

The end record makes truncation detectable even for a stream whose length was not known
when the header was written (then the header's `frames` and `original_length` are null).
Chunks are coded in order; range-coded chunks share adaptive statistics, so a file is
decoded from the start. Every field is checked before any code reaches a model; every
problem raises `BitstreamError` with a message that says what is wrong.
"""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import BinaryIO

import numpy as np

from codec import entropy
from codec.prior import ID_LENGTH as PRIOR_ID_LENGTH
from codec.prior import CodePrior
from core.errors import VocalisError

MAGIC = b"\x89VCD\r\n\x1a\n"
FORMAT_VERSION = 1
CODINGS = ("packed", "range")
MAX_HEADER_BYTES = 1 << 16
MAX_CHANNELS = 64
MAX_CHUNK_FRAMES = 1 << 16
MAX_CARDINALITY = 1 << 16
MAX_CODEBOOKS = 64

_PREAMBLE = struct.Struct("<8sHI")  # magic, version, header length
_U32 = struct.Struct("<I")
_RECORD = struct.Struct("<III")  # frames, payload length, CRC32


class BitstreamError(VocalisError):
    """A `.vcd` file that is truncated, corrupted, of another format or version, or made
    with another model."""


@dataclass(frozen=True)
class ModelInfo:
    """What a decoder must match: the weights (by SHA-256) and the code layout."""

    id: str  # SHA-256 of the weights file
    sample_rate: int
    hop_length: int
    cardinality: int
    num_codebooks: int


@dataclass(frozen=True)
class Header:
    model: ModelInfo
    channels: int
    n_codebooks: int
    chunk_frames: int  # the most frames one chunk holds
    coding: str  # "packed" or "range"
    original_sample_rate: int
    frames: int | None  # code frames per channel; None while streaming
    original_length: int | None  # samples per channel at the original rate; None: streaming
    loudness: float | None = None  # LUFS of the input (None: unknown or silence)
    # "range" coding only: the id of the code prior (codec/prior.py, `CodePrior.id`) the
    # models started from; None: uniform. Files written before priors have no such field.
    prior: str | None = None

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.model.cardinality)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def to_json(self) -> bytes:
        data = asdict(self)
        if data["loudness"] is not None and not math.isfinite(data["loudness"]):
            data["loudness"] = None
        if data["prior"] is None:
            del data["prior"]  # as before priors: readers that predate them read the file
        return json.dumps(data, sort_keys=True, allow_nan=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Header:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BitstreamError("corrupt header: not JSON") from None
        if not isinstance(data, dict):
            raise BitstreamError("corrupt header: not a JSON object")
        model = _fields(data.get("model"), _MODEL_FIELDS, "model")
        header = _fields(data, _HEADER_FIELDS, "header")
        return cls(model=ModelInfo(**model), **header).validated()

    def validated(self) -> Header:
        """Check ranges and consistency; returns self so calls can chain."""
        m = self.model
        _check(_is_hex(m.id, 64), "model id")
        _check(1 <= m.sample_rate <= 1_000_000, "model sample_rate")
        _check(1 <= m.hop_length <= 1 << 20, "model hop_length")
        _check(2 <= m.cardinality <= MAX_CARDINALITY, "model cardinality")
        _check(1 <= m.num_codebooks <= MAX_CODEBOOKS, "model num_codebooks")
        _check(1 <= self.channels <= MAX_CHANNELS, "channels")
        _check(1 <= self.n_codebooks <= m.num_codebooks, "n_codebooks")
        _check(1 <= self.chunk_frames <= MAX_CHUNK_FRAMES, "chunk_frames")
        _check(self.coding in CODINGS, "coding")
        _check(1 <= self.original_sample_rate <= 1_000_000, "original_sample_rate")
        _check((self.frames is None) == (self.original_length is None), "frames/original_length")
        if self.frames is not None and self.original_length is not None:
            _check(0 <= self.frames < 1 << 40, "frames")
            _check(self.frames == frames_for(self, self.original_length), "frames vs length")
        if self.loudness is not None:
            _check(math.isfinite(self.loudness) and -200 < self.loudness < 100, "loudness")
        if self.prior is not None:
            _check(self.coding == "range" and _is_hex(self.prior, PRIOR_ID_LENGTH), "prior")
        return self

    def payload_limit(self, frames: int) -> int:
        """The most payload bytes a chunk of `frames` frames may hold."""
        packed = packed_size(frames * self.channels * self.n_codebooks, self.bits_per_code)
        return (
            packed if self.coding == "packed" else 1 + max(packed, entropy.max_encoded_size(packed))
        )


_MODEL_FIELDS = {
    "id": str,
    "sample_rate": int,
    "hop_length": int,
    "cardinality": int,
    "num_codebooks": int,
}
_HEADER_FIELDS = {
    "channels": int,
    "n_codebooks": int,
    "chunk_frames": int,
    "coding": str,
    "original_sample_rate": int,
    "frames": (int, None),
    "original_length": (int, None),
    "loudness": (float, int, None),
    "prior": (str, None),
}


_OPTIONAL_FIELDS = {"prior"}  # absent from files written before it: None


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value)


def _fields(data: object, spec: dict, where: str) -> dict:
    if not isinstance(data, dict):
        raise BitstreamError(f"corrupt header: '{where}' is not a JSON object")
    extra = set(data) - set(spec) - ({"model"} if where == "header" else set())
    if extra:
        raise BitstreamError(f"corrupt header: unknown field(s) {', '.join(sorted(extra))}")
    out = {}
    for name, kinds in spec.items():
        if name not in data and name in _OPTIONAL_FIELDS:
            continue
        if name not in data:
            raise BitstreamError(f"corrupt header: '{name}' missing")
        value = data[name]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        ok = (value is None and None in kinds) or any(
            k is not None and isinstance(value, k) and not isinstance(value, bool) for k in kinds
        )
        if not ok:
            raise BitstreamError(f"corrupt header: '{name}' has the wrong type")
        out[name] = float(value) if float in kinds and value is not None else value
    return out


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BitstreamError(f"corrupt header: bad {what}")


def bits_per_code(cardinality: int) -> int:
    return max(1, (cardinality - 1).bit_length())


def packed_size(count: int, width: int) -> int:
    return (count * width + 7) // 8


def frames_for(header: Header, original_length: int) -> int:
    """Code frames for `original_length` samples at the original rate."""
    coded = -(-original_length * header.sample_rate // header.original_sample_rate)
    return -(-coded // header.model.hop_length)


# ---------------------------------------------------------------------------------------
# Bit packing at the codes' true width


def pack_codes(codes: np.ndarray, width: int) -> bytes:
    """Non-negative integers < 2**width -> big-endian bit string, zero-padded to a byte."""
    flat = np.ascontiguousarray(codes, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << width):
        raise ValueError(f"codes must be in [0, 2**{width})")
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((flat[:, None] >> shifts) & 1).astype(np.uint8)  # (N, width)
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack_codes(data: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of `pack_codes`; the length must be exact and the padding bits zero."""
    if len(data) != packed_size(count, width):
        raise BitstreamError(
            f"corrupt chunk: {len(data)} bytes where {packed_size(count, width)} were expected"
        )
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[count * width :].any():
        raise BitstreamError("corrupt chunk: non-zero padding bits")
    bits = bits[: count * width].reshape(count, width).astype(np.int64)
    return bits @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))  # (N,)


# ---------------------------------------------------------------------------------------
# Writing


class ChunkWriter:
    """Turns code chunks (C, n, f) into record bytes; keeps the range coder's statistics."""

    def __init__(self, header: Header, prior: CodePrior | None = None) -> None:
        """`prior`: the code prior the header names (`header.prior`), if it names one."""
        self.header = header.validated()
        self.frames = 0
        self._models = _models(header, prior, ValueError)

    def preamble(self) -> bytes:
        raw = self.header.to_json()
        if len(raw) > MAX_HEADER_BYTES:
            raise BitstreamError("header too large")
        return _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw + _U32.pack(_crc(raw))

    def chunk(self, codes: np.ndarray) -> bytes:
        h = self.header
        c, n, f = codes.shape  # (C, n, f)
        if c != h.channels or n != h.n_codebooks or not 1 <= f <= h.chunk_frames:
            raise ValueError(f"chunk of shape {codes.shape} does not fit the header")
        self.frames += f
        packed = pack_codes(codes, h.bits_per_code)
        if h.coding == "packed":
            return _record(f, packed)
        ordered = np.ascontiguousarray(codes.transpose(2, 0, 1))  # (f, C, n): stream order
        snapshot = copy.deepcopy(self._models)
        coded = self._models.encode(ordered)
        if len(coded) < len(packed):
            return _record(f, b"\x01" + coded)
        self._models = snapshot
        self._models.observe(ordered)
        return _record(f, b"\x00" + packed)

    def end(self, original_length: int) -> bytes:
        if self.header.frames is not None and self.frames != self.header.frames:
            raise ValueError(f"wrote {self.frames} frames, header says {self.header.frames}")
        trailer = {"frames": self.frames, "original_length": original_length}
        return _record(0, json.dumps(trailer).encode("utf-8"))


def _record(frames: int, payload: bytes) -> bytes:
    head = struct.pack("<II", frames, len(payload))
    return head + _U32.pack(_crc(head + payload)) + payload


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_file(
    header: Header, chunks: list[np.ndarray], original_length: int, prior: CodePrior | None = None
) -> bytes:
    """A whole file in memory: the preamble, every chunk, the end record."""
    writer = ChunkWriter(header, prior)
    parts = [writer.preamble(), *(writer.chunk(c) for c in chunks), writer.end(original_length)]
    return b"".join(parts)


# ---------------------------------------------------------------------------------------
# Reading


class _Source:
    """Exact reads from a binary stream; running out is a truncation."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def read(self, n: int, what: str) -> bytes:
        out = bytearray()
        while len(out) < n:
            part = self.stream.read(n - len(out))
            if not part:
                raise BitstreamError(f"truncated file: it ends inside the {what}")
            out += part
        return bytes(out)


def read_header(stream: BinaryIO) -> Header:
    src = _Source(stream)
    try:
        first = src.read(_PREAMBLE.size, "preamble")
    except BitstreamError:
        raise BitstreamError("not a vocalis compressed file (too short)") from None
    magic, version, size = _PREAMBLE.unpack(first)
    if magic != MAGIC:
        raise BitstreamError("not a vocalis compressed file (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"file format version {version}; this vocalis reads version {FORMAT_VERSION}"
        )
    if size > MAX_HEADER_BYTES:
        raise BitstreamError("corrupt header: implausible length")
    raw = src.read(size, "header")
    (crc,) = _U32.unpack(src.read(4, "header checksum"))
    if crc != _crc(raw):
        raise BitstreamError("corrupt header: checksum mismatch")
    return Header.from_json(raw)


class ChunkReader:
    """Iterate over a file's chunks, each (C, n, f) int64, after checking its checksum and
    length. Iteration ends at the end record, which must agree with the frames read (and
    with the header where it has them); anything after it is an error. Afterwards
    `original_length` holds the end record's value."""

    def __init__(self, stream: BinaryIO, header: Header, prior: CodePrior | None = None) -> None:
        """`prior`: the code prior the header names, if it names one (else an error)."""
        self.stream, self.header = stream, header
        self.frames = 0
        self.original_length: int | None = None
        self._models = _models(header, prior, BitstreamError)

    def __iter__(self) -> Iterator[np.ndarray]:
        header, src = self.header, _Source(self.stream)
        models = self._models
        count = header.channels * header.n_codebooks
        while True:
            frames, size, crc = _RECORD.unpack(src.read(_RECORD.size, "chunk header"))
            if frames > header.chunk_frames:
                raise BitstreamError("corrupt chunk: more frames than the header allows")
            if size > (header.payload_limit(frames) if frames else 256):
                raise BitstreamError("corrupt chunk: implausible length")
            payload = src.read(size, "chunk")
            if crc != _crc(struct.pack("<II", frames, size) + payload):
                raise BitstreamError(f"corrupt chunk after frame {self.frames}: checksum mismatch")
            if frames == 0:
                self.original_length = _check_end(payload, header, self.frames)
                if self.stream.read(1):
                    raise BitstreamError("corrupt file: data after the end record")
                return
            if header.frames is not None and self.frames + frames > header.frames:
                raise BitstreamError("corrupt file: more frames than the header says")
            method, body = (0, payload) if header.coding == "packed" else (payload[:1], payload[1:])
            shape = (frames, header.channels, header.n_codebooks)
            if method == b"\x01":
                try:
                    codes = models.decode(body, shape).transpose(1, 2, 0)
                except entropy.EntropyError as e:
                    raise BitstreamError(f"corrupt chunk after frame {self.frames}: {e}") from None
            elif method in (0, b"\x00"):
                flat = unpack_codes(body, frames * count, header.bits_per_code)
                if flat.size and flat.max() >= header.model.cardinality:
                    raise BitstreamError("corrupt chunk: code out of range")
                codes = flat.reshape(header.channels, header.n_codebooks, frames)
                if method:
                    models.observe(np.ascontiguousarray(codes.transpose(2, 0, 1)))
            else:
                raise BitstreamError("corrupt chunk: unknown coding method")
            self.frames += frames
            yield codes


def _models(header: Header, prior: CodePrior | None, error: type[Exception]):
    """The range coder's starting models: from the prior the header names, else uniform."""
    if header.prior is None:
        return entropy.CodebookModels(header.n_codebooks, header.model.cardinality)
    if prior is None or prior.id != header.prior:
        have = "no code prior" if prior is None else f"code prior {prior.id}"
        raise error(
            f"the file is range-coded with code prior {header.prior} and this codec "
            f"has {have}; decompress it with the codec (and its .prior.json) that wrote it"
        )
    if prior.cardinality != header.model.cardinality or prior.n_codebooks < header.n_codebooks:
        raise error("the code prior does not fit the file's codebooks")
    return entropy.CodebookModels(header.n_codebooks, header.model.cardinality, prior.counts)


def _check_end(payload: bytes, header: Header, frames: int) -> int:
    try:
        trailer = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BitstreamError("corrupt end record") from None
    if not isinstance(trailer, dict) or set(trailer) != {"frames", "original_length"}:
        raise BitstreamError("corrupt end record")
    f, length = trailer["frames"], trailer["original_length"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (f, length)):
        raise BitstreamError("corrupt end record")
    if f != frames or (header.frames is not None and f != header.frames):
        raise BitstreamError(f"truncated or corrupt file: {frames} frames read, {f} expected")
    if header.original_length is not None and length != header.original_length:
        raise BitstreamError("corrupt end record: length differs from the header")
    if f != frames_for(header, length):
        raise BitstreamError("corrupt end record: length does not match the frames")
    return length


@dataclass(frozen=True)
class ParsedFile:
    header: Header  # with frames and original_length filled in from the end record
    codes: np.ndarray  # (C, n, F) int64
    chunks: int
    size: int  # bytes


def parse(data: bytes, prior: CodePrior | None = None) -> ParsedFile:
    """Read and check a whole file in memory (every chunk) without any model; a file
    coded with a code prior needs it (`prior`)."""
    stream = io.BytesIO(data)
    header = read_header(stream)
    reader = ChunkReader(stream, header, prior)
    chunks = list(reader)
    c, n = header.channels, header.n_codebooks
    codes = np.concatenate(chunks, axis=-1) if chunks else np.zeros((c, n, 0), np.int64)
    header = replace(header, frames=reader.frames, original_length=reader.original_length)
    return ParsedFile(header, codes, len(chunks), len(data))
