import io
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio import (
    ASR_MEL,
    AudioBlocks,
    MelConfig,
    StreamResampler,
    audio_info,
    iter_audio_blocks,
    load_audio,
    log_mel,
    loudness,
    mel_spectrogram,
    normalize_log_mel,
    normalize_loudness,
    resample,
    save_audio,
    write_audio_blocks,
    write_wav_stream,
)
from core.errors import AudioError
from vocalis import cli

LJ_CLIP = Path(__file__).resolve().parents[2] / "shared/data/ljspeech/wavs/LJ001-0001.flac"


def _tone(seconds=1.0, rate=16000, freq=440.0, amp=0.3, channels=1):
    t = torch.arange(int(seconds * rate)) / rate
    wav = amp * torch.sin(2 * math.pi * freq * t)
    return wav.repeat(channels, 1)


@pytest.mark.parametrize(
    "fmt,subtype",
    [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")],
)
def test_load_formats_downmix_and_resample(tmp_path, fmt, subtype):
    stereo = _tone(0.5, 22050, channels=2)
    stereo[1] *= 0.5
    path = tmp_path / f"x.{fmt}"
    sf.write(
        path,
        stereo.T.numpy(),
        22050,
        format=fmt.upper() if fmt != "mp3" else "MP3",
        subtype=subtype,
    )
    wav, rate = load_audio(path, mono=False)
    assert rate == 22050 and wav.shape[0] == 2 and wav.dtype == torch.float32
    mono, rate = load_audio(path, 16000)
    assert rate == 16000 and mono.shape[0] == 1
    assert abs(mono.shape[1] - wav.shape[1] * 16000 / 22050) <= 2
    # Downmix averages the channels: the tone's amplitude is (0.3 + 0.15) / 2.
    assert mono.abs().max().item() == pytest.approx(0.225, abs=0.03)


def test_resample_keeps_a_tone_and_removes_what_cannot_be_represented():
    rate = 48000
    wav = _tone(1.0, rate, 1000.0) + _tone(1.0, rate, 12000.0)  # 12 kHz is above 16 kHz Nyquist
    out = resample(wav, rate, 16000)
    spectrum = torch.fft.rfft(out[0]).abs()
    freqs = torch.fft.rfftfreq(out.shape[-1], 1 / 16000)
    assert freqs[spectrum.argmax()].item() == pytest.approx(1000.0, abs=2.0)
    assert spectrum[(freqs > 3000)].max() < 0.02 * spectrum.max()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "no such audio file"),
        (lambda p: p.write_bytes(b"this is not audio at all"), "cannot read audio"),
        (
            lambda p: sf.write(p, np.zeros((0, 1), dtype="float32"), 16000, format="WAV"),
            "no samples",
        ),
        (
            lambda p: sf.write(
                p, np.full((100, 1), np.nan, dtype="float32"), 16000, format="WAV", subtype="FLOAT"
            ),
            "NaN or infinite",
        ),
    ],
    ids=["missing", "corrupt", "empty", "nan"],
)
def test_bad_audio_gets_a_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as e:
        load_audio(path)
    assert f"'{path}'" in str(e.value)  # every message names the file the same way


def test_too_short_and_directory_errors(tmp_path):
    save_audio(tmp_path / "short.wav", _tone(0.05), 16000)
    with pytest.raises(AudioError, match="0.050 s long; at least 0.1 s"):
        load_audio(tmp_path / "short.wav", min_seconds=0.1)
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


def test_save_is_atomic_and_round_trips(tmp_path, monkeypatch):
    wav = _tone(0.5, 24000)
    path = save_audio(tmp_path / "out.flac", wav, 24000)
    back, rate = load_audio(path)
    assert rate == 24000 and (back - wav).abs().max() < 1e-4
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.format) == (24000, 1, 12000, "FLAC")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", fail)
    with pytest.raises(OSError):
        save_audio(path, torch.zeros(1, 100), 24000)
    assert (load_audio(path)[0] - wav).abs().max() < 1e-4  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]  # no temporary left behind
    with pytest.raises(AudioError, match="use one of"):
        save_audio(tmp_path / "out.mp3", wav, 24000)


def _noise(channels, samples, seed=0):
    return torch.randn(channels, samples, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_block_reading_equals_whole_file_loading(tmp_path, suffix):
    path = save_audio(tmp_path / f"x{suffix}", _noise(2, 22050 + 37), 22050)
    whole, _ = load_audio(path, mono=False)
    blocks = list(iter_audio_blocks(path, 0.1))
    assert [b.shape for b in blocks[:-1]] == [(2, 2205)] * 10 and blocks[-1].shape == (2, 37)
    assert torch.equal(torch.cat(blocks, -1), whole)
    with AudioBlocks(io.BytesIO(path.read_bytes()), 0.25) as stream:  # a stream, not a path
        assert (stream.sample_rate, stream.channels) == (22050, 2)
        assert torch.equal(torch.cat(list(stream), -1), whole)


def test_block_reading_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        next(iter_audio_blocks(tmp_path / "missing.wav", 1.0))
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioError, match="cannot read audio '.*text.wav'"):
        AudioBlocks(tmp_path / "text.wav", 1.0)
    with pytest.raises(AudioError, match="cannot read audio from stream"):
        AudioBlocks(io.BytesIO(b"not audio at all"), 1.0)
    data = np.zeros((3000, 1), dtype="float32")
    data[2500] = np.nan
    sf.write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    blocks = iter_audio_blocks(tmp_path / "nan.wav", 0.1)
    assert next(blocks).shape == (1, 1600)  # the bad sample is in the second block
    with pytest.raises(AudioError, match="NaN or infinite"):
        next(blocks)


needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="no ffmpeg"
)


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


@needs_ffmpeg
def test_formats_libsndfile_cannot_read_are_decoded_by_ffmpeg(tmp_path, monkeypatch):
    """AAC in .m4a (a phone's voice memo) and the sound of a video: read, in blocks too."""
    stereo = _tone(1.0, 22050, channels=2)
    stereo[1] *= 0.5
    src = save_audio(tmp_path / "src.wav", stereo, 22050)
    memo = tmp_path / "memo.m4a"
    _ffmpeg("-i", src, "-c:a", "aac", "-b:a", "128k", memo)
    info = audio_info(memo)
    assert (info.sample_rate, info.channels, info.subtype) == (22050, 2, "aac")
    assert not info.frames_exact and abs(info.frames - 22050) < 2048
    wav, rate = load_audio(memo, mono=False)
    assert rate == 22050 and wav.shape[0] == 2 and abs(wav.shape[1] - 22050) < 2048
    middle = wav[:, 2000:-2000].abs().amax(dim=1)  # the tone, each channel at its level
    assert middle.tolist() == pytest.approx([0.3, 0.15], abs=0.03)
    blocks = list(iter_audio_blocks(memo, 0.1))
    assert blocks[0].shape == (2, 2205) and torch.equal(torch.cat(blocks, -1), wav)

    video = tmp_path / "talk.mp4"
    picture = ("-f", "lavfi", "-i", "color=c=black:s=32x32:d=1")
    _ffmpeg(*picture, "-i", src, "-c:v", "mpeg4", "-c:a", "aac", "-shortest", video)
    mono, rate = load_audio(video, 16000)
    assert rate == 16000 and abs(mono.shape[1] - 16000) < 1600
    mute = tmp_path / "mute.mp4"
    _ffmpeg(*picture, "-c:v", "mpeg4", mute)
    with pytest.raises(AudioError, match="'.*mute.mp4': it has no audio stream"):
        load_audio(mute)
    (tmp_path / "junk.m4a").write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioError, match="cannot read audio '.*junk.m4a'"):
        AudioBlocks(tmp_path / "junk.m4a", 1.0)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no ffmpeg: libsndfile's error
    with pytest.raises(AudioError, match="cannot read audio '.*memo.m4a'"):
        load_audio(memo)


@needs_ffmpeg
def test_a_cut_short_file_is_decoded_as_far_as_it_goes_with_a_warning(tmp_path, capsys):
    """A voice memo cut off in the middle of a copy: what is there is read, ffmpeg's
    complaint comes out as a one-line warning, and ffprobe runs once per file."""
    src = save_audio(tmp_path / "src.wav", _tone(3.0, 16000), 16000)
    memo = tmp_path / "memo.m4a"
    _ffmpeg("-i", src, "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", memo)
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(memo.read_bytes()[: memo.stat().st_size * 6 // 10])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file decodes without one
        whole = load_audio(memo)[0]
    with pytest.warns(UserWarning, match="cut.m4a' may be cut short or damaged: ffmpeg"):
        part = load_audio(cut)[0]
    assert 0.3 * whole.shape[-1] < part.shape[-1] < 0.9 * whole.shape[-1]
    torch.testing.assert_close(part, whole[:, : part.shape[-1]], atol=0.02, rtol=0)

    calls = []
    real_run = subprocess.run

    def counting_run(command, *args, **kwargs):
        calls.append(Path(command[0]).name)
        return real_run(command, *args, **kwargs)

    other = tmp_path / "other.m4a"  # a file not probed yet
    other.write_bytes(memo.read_bytes())
    with pytest.MonkeyPatch.context() as m:
        m.setattr(subprocess, "run", counting_run)
        info = audio_info(other)
        blocks = list(iter_audio_blocks(other, 1.0))
    assert calls == ["ffprobe"] and info.sample_rate == 16000 and blocks[0].shape == (1, 16000)

    assert cli.main(["audio", "convert", str(cut), str(tmp_path / "out.wav")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vocalis: warning: '"), err


def test_block_writing_round_trips_and_is_atomic(tmp_path):
    wav = _noise(3, 10001)
    path = write_audio_blocks(tmp_path / "out.flac", wav.split(999, -1), 16000, 3)
    back, rate = load_audio(path, mono=False)
    assert rate == 16000 and back.shape == (3, 10001) and (back - wav).abs().max() < 1e-4

    def failing():
        yield wav[:, :500]
        raise AudioError("corrupt input")

    with pytest.raises(AudioError, match="corrupt input"):
        write_audio_blocks(path, failing(), 16000, 3)
    assert torch.equal(load_audio(path, mono=False)[0], back)  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]  # no temporary left behind
    with pytest.raises(AudioError, match="cannot write '.*x.mp3': use one of"):
        write_audio_blocks(tmp_path / "x.mp3", [wav], 16000, 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(AudioError, match="cannot write '.*file/y.wav'"):
        write_audio_blocks(tmp_path / "file" / "y.wav", [wav], 16000, 3)


def test_wav_stream_is_readable_as_it_goes(tmp_path):
    wav = _noise(2, 5000).clamp(-1, 1)
    out = io.BytesIO()
    write_wav_stream(out, wav.split(1234, -1), 24000, 2)
    path = tmp_path / "piped.wav"
    path.write_bytes(out.getvalue())  # sizes say 0xFFFFFFFF: "until the end of the stream"
    back, rate = load_audio(path, mono=False)
    assert rate == 24000 and back.shape == (2, 5000) and (back - wav).abs().max() < 1e-4


def test_stream_resampler_equals_one_pass():
    x = _noise(2, 30001)
    for orig, new in ((44100, 24000), (16000, 24000), (22050, 24000), (24000, 24000)):
        resampler = StreamResampler(orig, new)
        pieces = [resampler.push(x[:, a : a + 4321]) for a in range(0, x.shape[-1], 4321)]
        out = torch.cat([*pieces, resampler.finish()], -1)
        torch.testing.assert_close(out, resample(x, orig, new), atol=1e-5, rtol=1e-4)
        assert resampler.emitted == out.shape[-1]


def test_loudness_normalisation_hits_the_target_and_respects_the_peak():
    wav = _tone(2.0, 16000, amp=0.05)
    out = normalize_loudness(wav, 16000, -20.0)
    assert loudness(out, 16000) == pytest.approx(-20.0, abs=0.05)
    loud = normalize_loudness(wav, 16000, 0.0, peak=0.5)
    assert loud.abs().max().item() == pytest.approx(0.5, abs=1e-4)
    silence = torch.zeros(1, 16000)
    assert torch.equal(normalize_loudness(silence, 16000), silence)


def test_log_mel_matches_librosa_and_has_one_frame_per_hop():
    wav = torch.randn(1, 16000 + 77, generator=torch.Generator().manual_seed(0)) * 0.1
    mel = mel_spectrogram(wav)
    assert mel.shape == (1, 80, (16000 + 77) // 160)
    ref = librosa.feature.melspectrogram(
        y=wav[0].numpy(),
        sr=16000,
        n_fft=400,
        hop_length=160,
        n_mels=80,
        power=2.0,
        center=True,
        pad_mode="reflect",
    )
    np.testing.assert_allclose(mel[0].numpy(), ref[:, : mel.shape[-1]], rtol=1e-3, atol=1e-6)
    batch = torch.stack([wav[0], 0.5 * wav[0]])  # (B, T)
    logmel = log_mel(batch)
    assert logmel.shape == (2, 80, mel.shape[-1])
    torch.testing.assert_close(
        logmel[1] - logmel[0], torch.full_like(logmel[0], math.log10(0.25)), atol=1e-4, rtol=0
    )
    normed = normalize_log_mel(logmel)
    assert normed.amax(dim=(-2, -1)).tolist() == pytest.approx(
        [(logmel[0].max().item() + 4) / 4] * 1 + [(logmel[1].max().item() + 4) / 4]
    )
    assert (normed >= normed.amax(dim=(-2, -1), keepdim=True) - 2.0 - 1e-6).all()


def test_mel_config_is_used_for_other_resolutions():
    cfg = MelConfig(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100)
    assert log_mel(torch.zeros(24000) + 1e-3, cfg).shape == (100, 24000 // 256)
    assert ASR_MEL.sample_rate == 16000 and ASR_MEL.hop_length == 160


@pytest.mark.skipif(not LJ_CLIP.exists(), reason="shared data not present")
def test_golden_real_clip():
    wav, rate = load_audio(LJ_CLIP, 16000)
    assert rate == 16000 and wav.shape == (1, 154481)
    assert loudness(wav, rate) == pytest.approx(-20.57, abs=0.05)
    mel = normalize_log_mel(log_mel(wav))
    assert mel.shape == (1, 80, 965)
    assert mel.mean().item() == pytest.approx(0.048, abs=0.005)
    assert mel.std().item() == pytest.approx(0.427, abs=0.005)
