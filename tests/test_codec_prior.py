"""The code prior: range coding that starts from a codec's code frequencies (codec/prior.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from codec import Codec, save_codec
from codec import compress as C
from codec.bitstream import BitstreamError, ChunkWriter, Header, encode_file, parse
from codec.entropy import AdaptiveModel
from codec.prior import PRIOR_TOTAL, CodePrior, code_histograms, prior_path
from core.audio import save_audio
from core.errors import CheckpointError
from corpus.manifest import Utterance, write_manifest
from tests.helpers.codec import TINY
from vocalis.cli import main

KBPS = 4 * 600 * 6 / 1000  # 4 codebooks of 64 entries at 600 frames/s

pytestmark = pytest.mark.usefixtures("one_thread")


def tones(seed: int, samples: int = 16000) -> torch.Tensor:
    """(1, T) a few decaying tones: a signal whose codes repeat, like speech's do."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    wav = sum(
        torch.sin(2 * torch.pi * float(100 + 900 * torch.rand((), generator=g)) * t)
        for _ in range(3)
    )
    return (0.1 * wav * torch.exp(-2 * t))[None]


def codec_with_prior() -> tuple[C.LoadedCodec, CodePrior]:
    torch.manual_seed(0)
    model = Codec(TINY).eval()
    plain = C.LoadedCodec(model, "a" * 64)
    with torch.inference_mode():
        codes = [
            model.encode(C.resample(tones(s), 16000, model.sample_rate)[None]) for s in range(6)
        ]
    prior = CodePrior.fit(code_histograms(codes, 4, 64), {plain.model_id})
    return C.LoadedCodec(model, plain.model_id, prior=prior), prior


def test_prior_coded_files_decode_to_the_same_codes_and_are_smaller():
    codec, prior = codec_with_prior()
    plain = C.LoadedCodec(codec.model, codec.model_id)
    options = C.CompressOptions(kbps=KBPS, chunk_seconds=0.05)
    wav = tones(7)  # not one the prior was counted on
    with_prior = C.compress_audio(wav, 16000, codec, options)
    uniform = C.compress_audio(wav, 16000, plain, options)
    packed = C.compress_audio(
        wav, 16000, plain, C.CompressOptions(KBPS, entropy=False, chunk_seconds=0.05)
    )
    assert parse(with_prior, prior).header.prior == prior.id
    np.testing.assert_array_equal(parse(with_prior, prior).codes, parse(packed).codes)
    assert len(with_prior) < 0.95 * len(packed)
    audio, rate = C.decompress_bytes(with_prior, codec)
    torch.testing.assert_close(audio, C.decompress_bytes(packed, plain)[0])
    # files without a prior say nothing of one: readers that predate priors still read them
    assert b'"prior"' not in uniform and parse(uniform).header.prior is None


def test_a_prior_saves_from_the_first_frame_where_uniform_models_must_learn():
    """Codes from a fixed skewed distribution (about 4.4 of 6 bits): started from a prior
    counted on other draws, a short file costs about its entropy; started uniform, more."""
    rng = np.random.default_rng(0)
    p = np.exp(-np.arange(64) / 12.0)
    p /= p.sum()
    bits = float(-(p * np.log2(p)).sum())
    prior = CodePrior.fit(code_histograms([rng.choice(64, (4, 20000), p=p)], 4, 64), {"a" * 64})
    codes = rng.choice(64, (1, 4, 150), p=p)  # (C, n, F): 150 frames
    codec = C.LoadedCodec(Codec(TINY), "a" * 64)
    header = Header(codec.info, 1, 4, 150, "range", 24000, 150, 150 * 40)
    with_prior = replace(header, prior=prior.id)
    uniform = encode_file(header, [codes], 150 * 40)
    coded = encode_file(with_prior, [codes], 150 * 40, prior)
    np.testing.assert_array_equal(parse(coded, prior).codes, codes)
    # the chunks alone (the header names the prior in 28 more bytes)
    uniform_bytes = len(uniform) - len(ChunkWriter(header).preamble())
    coded_bytes = len(coded) - len(ChunkWriter(with_prior, prior).preamble())
    packed = replace(header, coding="packed")
    records = len(encode_file(packed, [codes], 150 * 40)) - len(ChunkWriter(packed).preamble())
    framing = records - 4 * 150 * 6 // 8  # the chunk's and end record's own bytes
    ideal = 4 * 150 * bits / 8  # 374 bytes of codes at their entropy; bit-packed: 450
    assert coded_bytes - framing - 1 < 1.03 * ideal  # (1: the chunk's method byte)
    assert coded_bytes < uniform_bytes - 0.1 * ideal  # the uniform start pays to learn


def test_a_prior_coded_file_needs_its_prior():
    codec, prior = codec_with_prior()
    data = C.compress_audio(tones(7), 16000, codec, C.CompressOptions(KBPS, chunk_seconds=0.05))
    with pytest.raises(BitstreamError, match="range-coded with code prior .* has no code prior"):
        C.decompress_bytes(data, C.LoadedCodec(codec.model, codec.model_id))
    other = CodePrior.fit(np.ones((4, 64)), prior.codes_of)
    with pytest.raises(BitstreamError, match="this codec has code prior"):
        parse(data, other)
    # another model's file is named as such before any prior is looked at
    with pytest.raises(BitstreamError, match="made with codec model"):
        C.decompress_bytes(data, C.LoadedCodec(codec.model, "b" * 64, prior=prior))


def test_headers_before_priors_still_parse_and_a_prior_needs_range_coding():
    codec, prior = codec_with_prior()
    header = Header(codec.info, 1, 4, 8, "range", 24000, 10, 400)
    raw = json.loads(header.to_json())
    assert "prior" not in raw and Header.from_json(json.dumps(raw).encode()).prior is None
    raw["prior"] = prior.id
    assert Header.from_json(json.dumps(raw).encode()).prior == prior.id
    raw["coding"] = "packed"
    with pytest.raises(BitstreamError, match="bad prior"):
        Header.from_json(json.dumps(raw).encode())


def test_prior_files_round_trip_and_bad_ones_are_one_line_errors(tmp_path):
    _, prior = codec_with_prior()
    path = prior.save(tmp_path / "codec.prior.json")
    assert CodePrior.load(path) == prior
    assert all(abs(sum(row) - PRIOR_TOTAL) <= 64 and min(row) >= 1 for row in prior.counts)
    data = json.loads(path.read_text())
    data["counts"][0][0] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        CodePrior.load(path)
    path.write_text("{")
    with pytest.raises(CheckpointError, match="cannot read the code prior"):
        CodePrior.load(path)
    path.write_text(json.dumps({"format": "vocalis-code-prior", "version": 1, "counts": [[0, 1]]}))
    with pytest.raises(CheckpointError, match="corrupt code prior counts"):
        CodePrior.load(path)
    with pytest.raises(ValueError, match="counts need 4 values"):
        AdaptiveModel(4, [1, 1, 1])


def test_cli_fits_a_prior_beside_the_model_and_compress_uses_it(tmp_path, capsys):
    torch.manual_seed(0)
    model = str(save_codec(tmp_path / "model" / "tiny", Codec(TINY)))
    utts = []
    for i in range(4):
        path = save_audio(tmp_path / f"{i}.wav", tones(i)[0], 16000)
        utts.append(Utterance(f"u{i}", str(path), 1.0, 16000, None, "s", "t", "train"))
    utts.append(
        Utterance("held", str(tmp_path / "missing.wav"), 1.0, 16000, None, "s", "t", "test")
    )
    manifest = str(write_manifest(tmp_path / "m.jsonl", utts))
    assert main(["train", "codec-prior", "--manifest", manifest, "--model", model]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 utterances") and "entropy per codebook (bits of 6)" in out
    assert prior_path(model).is_file()  # the test-split file (missing) was never read
    vcd = str(tmp_path / "a.vcd")
    argv = ["--model", model, "-q"]
    assert (
        main(["compress", str(tmp_path / "0.wav"), "-o", vcd, "--bitrate", str(KBPS), *argv]) == 0
    )
    assert main(["info", vcd, "--model", model]) == 0
    assert "coding range from code prior" in capsys.readouterr().out
    assert main(["decompress", vcd, "-o", str(tmp_path / "a.wav"), *argv]) == 0
    assert main(["info", vcd, "--model", str(tmp_path / "elsewhere" / "x")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("vocalis: error: ") and "has no code prior" in err and err.count("\n") == 1
    )
    # a prior counted for another codec is refused when the codec loads
    other = str(save_codec(tmp_path / "other" / "tiny", Codec(TINY)))
    prior_path(other).write_bytes(prior_path(model).read_bytes())
    assert (
        main(
            [
                "compress",
                str(tmp_path / "0.wav"),
                "-o",
                vcd,
                "--model",
                other,
                "--bitrate",
                str(KBPS),
            ]
        )
        == 2
    )
    assert "counts another codec's codes" in capsys.readouterr().err


def _shipped_codecs() -> list:
    from codec.model import SHIPPED_MODELS

    return sorted(p for p in SHIPPED_MODELS.rglob("codec*.safetensors"))


@pytest.mark.parametrize("weights", _shipped_codecs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_shipped_prior_counts_its_codecs_codes(weights):
    # Every shipped codec (the default, the one the TTS speaks, the phase- and
    # spectrum-trained alternatives) comes with the prior of its own codes, which `load`
    # checks.
    codec = C.load(weights)  # refuses a prior of another codec's codes
    assert codec.prior is not None and codec.prior.codes_of & codec.same_codes
    assert (codec.prior.n_codebooks, codec.prior.cardinality) == (
        codec.model.num_codebooks,
        codec.model.cardinality,
    )
