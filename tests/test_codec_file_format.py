"""The `.vcd` format without a model: header round trip, bit packing, range coding, and a
decoder that rejects every corrupted, truncated or foreign file with its own error."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.bitstream import (
    MAGIC,
    BitstreamError,
    Header,
    ModelInfo,
    encode_file,
    pack_codes,
    packed_size,
    parse,
    unpack_codes,
)
from codec.entropy import CodebookModels

MODEL = ModelInfo("ab" * 32, 24000, 320, 1024, 8)
HEADER = Header(
    model=MODEL,
    channels=2,
    n_codebooks=4,
    chunk_frames=5,
    coding="range",
    original_sample_rate=44100,
    frames=12,
    original_length=7000,
    loudness=-23.5,
)


def _header(**changes) -> Header:
    header = replace(HEADER, **changes)
    length = header.original_length
    coded = -(-length * 24000 // header.original_sample_rate)  # ceil
    frames = -(-coded // 320)
    return replace(header, frames=frames)


def _codes(header: Header, seed: int = 0, skew: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (header.channels, header.n_codebooks, header.frames)
    if skew:
        return np.minimum(rng.geometric(0.05, shape) - 1, header.model.cardinality - 1)
    return rng.integers(0, header.model.cardinality, shape)


def _file(header: Header, codes: np.ndarray) -> bytes:
    chunks = [
        codes[..., a : a + header.chunk_frames]
        for a in range(0, codes.shape[-1], header.chunk_frames)
    ]
    return encode_file(header, chunks, header.original_length)


@pytest.mark.parametrize("coding", ["packed", "range"])
def test_header_and_codes_round_trip(coding):
    header = _header(coding=coding)
    codes = _codes(header)
    parsed = parse(_file(header, codes))
    assert parsed.header == header
    assert Header.from_json(header.to_json()) == header
    np.testing.assert_array_equal(parsed.codes, codes)
    assert parsed.chunks == 3


def test_codes_are_packed_at_their_true_width():
    rng = np.random.default_rng(0)
    for width in (1, 3, 10, 16):
        codes = rng.integers(0, 1 << width, 101)
        data = pack_codes(codes, width)
        assert len(data) == packed_size(101, width) == (101 * width + 7) // 8
        np.testing.assert_array_equal(unpack_codes(data, 101, width), codes)
    header = _header(coding="packed")
    size = len(_file(header, _codes(header)))
    per_frame = header.channels * header.n_codebooks
    chunks = sum(12 + packed_size(per_frame * f, 10) for f in (5, 5, 2))  # record + payload
    trailer = 12 + len(json.dumps({"frames": 12, "original_length": header.original_length}))
    assert size == 14 + len(header.to_json()) + 4 + chunks + trailer


def test_range_coding_shrinks_skewed_codes_and_never_grows_a_chunk_much():
    header = _header(original_length=44100 * 4, chunk_frames=100)  # 300 frames
    skewed = len(_file(header, _codes(header, skew=True)))
    packed = len(_file(replace(header, coding="packed"), _codes(header, skew=True)))
    assert skewed < 0.8 * packed
    uniform = len(_file(header, _codes(header, skew=False)))
    uniform_packed = len(_file(replace(header, coding="packed"), _codes(header, skew=False)))
    assert uniform <= uniform_packed + 3  # packed fallback: one method byte per chunk


def test_range_coder_round_trips_odd_alphabets():
    rng = np.random.default_rng(1)
    for size in (2, 3, 1000):
        codes = rng.integers(0, size, (40, 2, 3))
        data = CodebookModels(3, size).encode(codes)
        np.testing.assert_array_equal(CodebookModels(3, size).decode(data, codes.shape), codes)


VALID = _file(_header(), _codes(_header()))


def test_every_corrupted_byte_is_detected():
    for i in range(len(VALID)):
        data = bytearray(VALID)
        data[i] ^= 0x5A
        with pytest.raises(BitstreamError):
            parse(bytes(data))


def test_every_truncation_and_any_trailing_data_is_detected():
    for n in range(len(VALID)):
        with pytest.raises(BitstreamError, match="truncated|not a vocalis"):
            parse(VALID[:n])
    with pytest.raises(BitstreamError, match="after the end record"):
        parse(VALID + b"\0")


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "not a vocalis compressed file"),
        (b"RIFF\x24\0\0\0WAVEfmt " + bytes(40), "bad magic"),
        (b"hello, world\n" * 3, "bad magic"),
        (MAGIC + struct.pack("<HI", 2, 0), "format version 2"),
    ],
)
def test_foreign_files_are_rejected_with_a_clear_message(data, message):
    with pytest.raises(BitstreamError, match=message):
        parse(data)


def _with_header(obj: object) -> bytes:
    """A file whose header is `obj`, with a correct checksum, followed by VALID's chunks."""
    raw = json.dumps(obj).encode()
    rest = VALID[14 + len(_header().to_json()) + 4 :]
    return MAGIC + struct.pack("<HI", 1, len(raw)) + raw + struct.pack("<I", zlib.crc32(raw)) + rest


@pytest.mark.parametrize(
    "change",
    [
        {"channels": 0},
        {"n_codebooks": 9},
        {"coding": "zip"},
        {"frames": 99},
        {"loudness": "loud"},
        {"chunk_frames": True},
        {"extra": 1},
        {"model": {"id": "x"}},
    ],
)
def test_bad_header_fields_are_rejected(change):
    obj = json.loads(_header().to_json())
    obj.update(change)
    with pytest.raises(BitstreamError, match="corrupt header"):
        parse(_with_header(obj))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_own_error(data: bytes) -> None:
    try:
        parse(data)
    except BitstreamError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _parse_or_own_error(data)
    _parse_or_own_error(MAGIC + data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID)), st.binary(max_size=4)), max_size=4))
def test_fuzz_mutated_files(edits):
    data = bytearray(VALID)
    for pos, new in edits:
        data[pos : pos + len(new) // 2] = new  # replaces, inserts or deletes bytes
    _parse_or_own_error(bytes(data))


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(json.loads(HEADER.to_json()))), json_values))
def test_fuzz_header_values_with_valid_checksums(change):
    obj = json.loads(_header().to_json())
    obj.update(change)
    _parse_or_own_error(_with_header(obj))


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(1, 6))
def test_fuzz_range_payloads_with_valid_checksums(payload, frames):
    """A chunk whose checksum is right but whose range-coded bytes are garbage decodes to
    codes in range (or is rejected), never a crash."""
    header = _header()
    head = _file(header, _codes(header))[: 14 + len(header.to_json()) + 4]
    body = b"\x01" + payload
    rec = struct.pack("<II", frames, len(body))
    chunk = rec + struct.pack("<I", zlib.crc32(rec + body)) + body
    try:
        parse(head + chunk)
    except BitstreamError:
        pass
