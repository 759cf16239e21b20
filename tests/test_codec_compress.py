"""Compression with tiny random-weight codecs: chunked equals one-pass, batched equals one
at a time, streams equal files, any rate and channel count, and one-line errors."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import Codec, CodecDims, save_codec
from codec import compress as C
from codec.bitstream import BitstreamError, parse
from codec.chunking import (
    ChunkDecoder,
    ChunkEncoder,
    chunk_frames,
    encode_batch,
    model_context,
    stream_latency,
)
from core.audio import load_audio, save_audio
from core.errors import AudioError, VocalisError
from tests.helpers.codec import TINY
from vocalis.cli import main

KBPS = 4 * 600 * 6 / 1000  # 4 codebooks of 64 entries at 600 frames/s


def tiny(seed: int = 0, **changes) -> C.LoadedCodec:
    torch.manual_seed(seed)
    model = Codec(CodecDims(**{**TINY.__dict__, **changes})).eval()
    return C.LoadedCodec(model, f"{seed:064x}")


def opts(**changes) -> C.CompressOptions:
    return C.CompressOptions(**{"kbps": KBPS, "chunk_seconds": 0.05, **changes})


def noise(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(channels, samples, generator=torch.Generator().manual_seed(seed)) * 0.1


pytestmark = pytest.mark.usefixtures("one_thread")


ISTFT = dict(decoder="istft", istft_dim=16, istft_hidden=32, istft_layers=2, istft_n_fft=160)


@pytest.mark.parametrize("dims", [{}, {"causal": True}, ISTFT], ids=["conv", "causal", "istft"])
def test_chunked_codes_and_audio_equal_one_pass(dims):
    codec = tiny(**dims)
    wav = noise(1, 9001)
    one = encode_batch(codec.model, [wav], 4, chunk_frames(codec.model, 100))[0]
    for seconds in (0.01, 0.05, 0.13):
        chunk = chunk_frames(codec.model, seconds)
        np.testing.assert_array_equal(encode_batch(codec.model, [wav], 4, chunk)[0], one)
    with torch.no_grad():
        full = codec.model.decode(torch.from_numpy(one))[:, 0]  # (C, F * hop)
    for chunk in (1, 7, 40):
        decoder = ChunkDecoder(codec.model, chunk)
        pieces = [w for a in range(0, one.shape[-1], 9) for w in decoder.push(one[..., a : a + 9])]
        out = torch.cat(pieces + list(decoder.finish()), -1)
        torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-4)


def test_streaming_encoder_equals_batch_and_bounds_its_buffer():
    codec = tiny()
    wav = noise(2, 24000)
    encoder = ChunkEncoder(codec.model, 4, chunk_frames=6)
    pieces, longest = [], 0
    for a in range(0, wav.shape[-1], 333):
        pieces += encoder.push(wav[:, a : a + 333])
        longest = max(longest, encoder.buffer.shape[-1])
    pieces += encoder.finish()
    np.testing.assert_array_equal(
        np.concatenate(pieces, -1),
        encode_batch(codec.model, [wav], 4, chunk_frames(codec.model, 0.05))[0],
    )
    left, right = model_context(codec.model).encode
    assert longest <= (6 + left + right + 1) * 40 + 333  # a window and a block, not the signal


def test_batched_files_get_the_same_codes_as_one_at_a_time():
    codec = tiny()
    wavs = [noise(1, n, seed=n) for n in (500, 2400, 4001)] + [noise(2, 1234)]
    rates = [24000, 16000, 24000, 44100]
    together = C.compress_many(wavs, rates, codec, opts(batch_size=5))
    for wav, rate, data in zip(wavs, rates, together):
        assert data == C.compress_audio(wav, rate, codec, opts(batch_size=1))


def test_stream_with_unknown_length_equals_the_file():
    codec = tiny()
    wav = noise(2, 7000)
    file = C.compress_audio(wav, 24000, codec, opts())
    blocks = (wav[:, a : a + 999] for a in range(0, 7000, 999))
    stream = b"".join(C.compress_stream(blocks, 24000, 2, codec, opts()))
    a, b = parse(file), parse(stream)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert b.header.original_length == 7000
    decoded = C.decompress_stream(io.BytesIO(stream), codec)
    out = torch.cat(list(decoded), -1)
    ref, _ = C.decompress_bytes(file, codec)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rate,channels", [(24000, 1), (16000, 1), (44100, 2), (8000, 3)])
def test_original_rate_channels_and_length_are_restored(rate, channels):
    codec = tiny()
    wav = noise(channels, rate // 7 + 3)
    out, out_rate = C.decompress_bytes(C.compress_audio(wav, rate, codec, opts()), codec)
    assert out_rate == rate and out.shape == wav.shape


def test_channels_are_coded_independently():
    codec = tiny()
    wav = noise(2, 3000)
    a = parse(C.compress_audio(wav, 24000, codec, opts())).codes
    b = parse(C.compress_audio(wav.flip(0), 24000, codec, opts())).codes
    np.testing.assert_array_equal(a, b[::-1])


def test_files_from_another_model_are_rejected(monkeypatch):
    """The error says which shipped codec decodes the file, or that none does (a file
    made with a codec that a later release replaced)."""
    data = C.compress_audio(noise(1, 2000), 24000, tiny(0), opts())
    with pytest.raises(BitstreamError, match="made with codec model.*no shipped codec has"):
        C.decompress_bytes(data, tiny(1))
    monkeypatch.setattr(C, "find_codec", lambda sha: Path("models/codec/old.safetensors"))
    with pytest.raises(BitstreamError, match="decode it with models/codec/old.safetensors"):
        C.decompress_bytes(data, tiny(1))


def test_stream_latency_is_lower_for_a_causal_codec():
    causal = stream_latency(tiny(causal=True).model, 0.02)
    full = stream_latency(tiny().model, 0.02)
    assert causal.encoder_lookahead == 0 and causal.total < full.total
    assert full.encoder_lookahead > 0 and math.isclose(full.chunk, 0.02, rel_tol=0.1)


def test_bitrate_must_be_one_the_codec_offers():
    assert C.n_codebooks_for(tiny().model, 3.6) == 1
    with pytest.raises(VocalisError, match="choose one of 3.6, 7.2"):
        C.n_codebooks_for(tiny().model, 5)


# ---------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    return str(save_codec(tmp_path / "model" / "tiny", Codec(TINY)))


def test_cli_round_trip_of_a_folder(tmp_path, model_path, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    save_audio(tmp_path / "in" / "a.wav", noise(1, 8000), 16000)
    save_audio(tmp_path / "in" / "sub" / "b.flac", noise(2, 11025), 44100)
    args = ["--model", model_path, "-q", "--precision", "bf16"]  # taken by both commands
    out_dir = str(tmp_path / "out")
    assert main(["compress", str(tmp_path / "in"), "-o", out_dir, "--bitrate", "14.4", *args]) == 0
    assert main(["info", str(tmp_path / "out" / "sub" / "b.vcd")]) == 0
    assert "44100 Hz, 2 ch" in capsys.readouterr().out
    out = tmp_path / "b.flac"
    assert main(["decompress", str(tmp_path / "out" / "sub" / "b.vcd"), "-o", str(out), *args]) == 0
    wav, rate = load_audio(out, mono=False)
    assert rate == 44100 and wav.shape == (2, 11025)
    assert oct(os.stat(out).st_mode & 0o777) != "0o600"


@pytest.fixture
def inputs(tmp_path):
    save_audio(tmp_path / "in.wav", noise(1, 4000), 16000)
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "file").write_text("x")
    return tmp_path


@pytest.mark.parametrize(
    "argv,message",
    [
        (["compress", "{t}/text.wav"], "cannot read audio"),
        (["compress", "{t}/missing.wav"], "no such audio file"),
        (["compress", "{t}/in.wav", "-o", "{t}/file/x.vcd"], "cannot write"),
        (["compress", "{t}/in.wav", "--bitrate", "5"], "not available"),
        (["decompress", "{t}/in.wav"], "not a vocalis compressed file"),
        (["decompress", "{t}/in.vcd", "-o", "{t}/x.mp3"], "use one of .wav, .flac"),
        (["info", "{t}/text.wav"], "not a vocalis compressed file"),
    ],
)
def test_bad_input_gives_one_line_error(inputs, model_path, capsys, argv, message):
    assert (
        main(["compress", str(inputs / "in.wav"), "--model", model_path, "--bitrate", "3.6"]) == 0
    )
    argv = [a.format(t=inputs) for a in argv]
    if argv[0] != "info":
        argv += ["--model", model_path]
    if argv[0] == "compress" and "--bitrate" not in argv:
        argv += ["--bitrate", "3.6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vocalis: error: ") and message in err and err.count("\n") == 1


def test_missing_model_and_empty_audio(tmp_path, capsys):
    import soundfile as sf

    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    assert main(["compress", str(tmp_path / "empty.wav"), "--model", str(tmp_path / "no")]) == 2
    assert "no codec model at" in capsys.readouterr().err
    with pytest.raises(AudioError, match="no samples"):
        C.compress([tmp_path / "empty.wav"], None, tiny(), opts())


def test_corrupt_file_and_full_disk_leave_no_output(inputs, model_path, capsys, monkeypatch):
    args = ["--model", model_path, "-q"]
    assert main(["compress", str(inputs / "in.wav"), "--bitrate", "14.4", *args]) == 0
    data = bytearray((inputs / "in.vcd").read_bytes())
    data[len(data) // 2] ^= 1
    (inputs / "bad.vcd").write_bytes(bytes(data))
    assert main(["decompress", str(inputs / "bad.vcd"), "-o", str(inputs / "bad.wav"), *args]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (inputs / "bad.wav").exists()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # where the atomic writer syncs the file
    before = sorted(p.name for p in inputs.iterdir())
    new = str(inputs / "new.vcd")
    assert main(["compress", str(inputs / "in.wav"), "-o", new, "--bitrate", "3.6", *args]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in inputs.iterdir()) == before  # no partial or temporary file


def test_import_codec_stays_light():
    import subprocess
    import sys

    code = "import codec, sys; print(any(m.startswith(('codec.compress', 'codec.bitstream')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_streams_stdin_to_stdout(tmp_path, model_path):
    import subprocess
    import sys

    save_audio(tmp_path / "in.wav", noise(2, 9000), 22050)
    vocalis = [sys.executable, "-m", "vocalis"]
    model = ["--model", model_path]
    with open(tmp_path / "in.wav", "rb") as f:
        vcd = subprocess.run(
            [*vocalis, "compress", "-", *model, "--bitrate", "3.6", "--chunk-seconds", "0.05"],
            stdin=f,
            capture_output=True,
            check=True,
        ).stdout
    wav = subprocess.run(
        [*vocalis, "decompress", "-", *model], input=vcd, capture_output=True, check=True
    ).stdout
    (tmp_path / "out.wav").write_bytes(wav)
    out, rate = load_audio(tmp_path / "out.wav", mono=False)
    assert rate == 22050 and out.shape == (2, 9000)
    assert parse(vcd).header.original_length == 9000


def test_a_file_finds_the_shipped_codec_that_made_it(tmp_path, monkeypatch, capsys):
    """Once a new codec is shipped, `.vcd` files made with the one before still decompress
    without --model: the models folder is searched for the codec that made them (the
    TTS's codec is found the same way). A decoder retrained on the same codes counts."""
    import functools

    from codec.model import find_codec
    from codec.prior import CodePrior, prior_path
    from core.checkpoint import weights_sha256

    root = tmp_path / "models"
    torch.manual_seed(0)
    old = save_codec(root / "tts" / "codec", Codec(TINY))
    torch.manual_seed(1)
    new = save_codec(root / "codec" / "codec", Codec(CodecDims(**{**TINY.__dict__, **ISTFT})))
    retrained = root / "codec" / "same"
    save_codec(retrained, Codec(TINY), training={"same_codes_as": ["ab" * 32]})
    (root / "tts" / "notes.safetensors").write_bytes(b"not a checkpoint")
    assert find_codec(weights_sha256(old), root) == old
    assert find_codec(weights_sha256(new), root) == new
    assert find_codec("ab" * 32, root) == retrained.with_suffix(".safetensors")
    assert find_codec("cd" * 32, root) is None

    monkeypatch.setattr(C, "find_codec", functools.partial(find_codec, root=root))
    # the old codec range-codes with its own prior, which `info` must find without --model
    flat = np.ones((TINY.n_codebooks, TINY.codebook_size))
    CodePrior.fit(flat, [weights_sha256(old)]).save(prior_path(old))
    save_audio(tmp_path / "a.wav", noise(1, 8000), 16000)
    vcd, back = tmp_path / "a.vcd", tmp_path / "b.wav"
    args = ["compress", str(tmp_path / "a.wav"), "-o", str(vcd), "--model", str(old)]
    assert main([*args, "--bitrate", "3.6", "-q"]) == 0
    assert C.shipped_codec_for(vcd) == old
    assert C.shipped_codec_for("-") is None and C.shipped_codec_for(tmp_path / "a.wav") is None
    assert main(["decompress", str(vcd), "-o", str(back), "-q"]) == 0
    assert load_audio(back)[0].shape == (1, 8000)
    capsys.readouterr()
    assert main(["info", str(vcd)]) == 0
    assert "coding range from code prior" in capsys.readouterr().out
