"""Codec evaluation: the metrics on synthetic signals, the baseline codecs (when their
binaries are installed), and `vocalis eval codec` on a tiny checkpoint."""

import json
import math
import shutil

import pytest
import soundfile as sf
import torch

from codec.evaluate import (
    BAND_EDGES_HZ,
    METRIC_TITLES,
    METRICS,
    Scorer,
    align,
    band_coherence,
    band_distance,
    codec2_system,
    codec_systems,
    evaluate,
    mel_distance,
    opus_system,
    si_sdr,
)
from vocalis.cli import main


def _speechlike(seconds=1.0, rate=16000, seed=0):
    """A voiced, syllable-rate modulated harmonic signal with a little noise: (T,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    f0 = 120 + 20 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 - torch.cos(2 * math.pi * 4 * t)).clamp(min=0)
    return 0.2 * voiced * envelope + 0.003 * torch.randn(t.shape, generator=g)


def test_si_sdr_is_scale_invariant_and_low_for_noise():
    x = _speechlike()
    assert si_sdr(x, x) > 100
    noisy = x + 0.1 * x.std() * torch.randn_like(x)
    assert si_sdr(x, noisy) == pytest.approx(20.0, abs=0.5)
    assert si_sdr(x, 0.3 * noisy) == pytest.approx(si_sdr(x, noisy), abs=1e-6)
    assert si_sdr(x, torch.randn_like(x)) < -10


def test_mel_distance_and_alignment():
    x = _speechlike()
    assert mel_distance(x, x) == 0.0
    assert mel_distance(x, 0.5 * x) == pytest.approx(math.log10(4), rel=0.05)  # power ratio
    late = torch.cat([torch.zeros(275), x])[: x.shape[0]]
    r, d, lag = align(x, late)
    assert lag == 275 and torch.equal(d, x[: r.shape[0]])
    early = x[40:]
    r, d, lag = align(x, early)
    assert lag == -40 and torch.equal(r[40:], d[40:])


def test_band_distance_says_which_band_is_lost():
    g = torch.Generator().manual_seed(1)
    x = _speechlike() + 0.02 * torch.randn(16000, generator=g)  # energy in every band
    assert band_distance(x, x) == [0.0] * (len(BAND_EDGES_HZ) - 1)
    spec = torch.fft.rfft(x)
    spec[torch.fft.rfftfreq(x.shape[0], 1 / 16000) >= 4000] = 0  # Opus 6 kbps's cut
    lowpassed = torch.fft.irfft(spec, x.shape[0])
    *below, above = band_distance(x, lowpassed)
    assert max(below[:-1]) < 1.0 and above > 20.0  # the 2-4 kHz band holds the filter edge
    half = band_distance(x, 0.5 * x)  # -6.02 dB everywhere
    assert half == pytest.approx([20 * math.log10(2)] * len(half), abs=0.01)


def test_band_coherence_sees_phase_not_gain():
    g = torch.Generator().manual_seed(2)
    x = _speechlike() + 0.02 * torch.randn(16000, generator=g)
    assert band_coherence(x, 0.3 * x) == pytest.approx([1.0] * (len(BAND_EDGES_HZ) - 1))
    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[0], 1 / 16000)
    band = (freqs >= 500) & (freqs < 1000)
    angle = 2 * math.pi * torch.rand(int(band.sum()), generator=g, dtype=torch.float64)
    spec[band] = spec[band] * torch.polar(torch.ones_like(angle), angle).to(spec.dtype)
    scrambled = torch.fft.irfft(spec, x.shape[0])  # the same magnitudes, random phase there
    low, mid, *rest = band_coherence(x, scrambled)
    assert low == pytest.approx(1.0) and min(rest) == pytest.approx(1.0) and mid < 0.2


def test_scorer_on_a_copy_and_on_noise():
    x = _speechlike(2.0)
    scorer = Scorer(use_visqol=False)
    same = scorer.score(x, x)
    noise = scorer.score(x, 0.05 * torch.randn_like(x))
    assert "visqol" in scorer.unavailable and same["visqol"] is None
    assert same["pesq_wb"] > 4.0 and same["stoi"] > 0.99
    assert noise["stoi"] < same["stoi"] and noise["si_sdr"] < 0


@pytest.mark.parametrize(
    "make, tool",
    [(lambda: opus_system(6), "ffmpeg"), (lambda: codec2_system(3200), "c2enc")],
    ids=["opus", "codec2"],
)
def test_baseline_codecs_transcode_when_installed(make, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: see apt-packages.txt)")
    x = _speechlike(1.0)
    system = make()
    y = system.transcode(x, x[None])
    r, d, lag = align(x, y)
    assert abs(y.shape[0] - x.shape[0]) < 800 and abs(lag) < 800
    assert mel_distance(r, d) < 1.0


class _TinyModel:
    """Just enough of CompressionModel for `codec_systems`: a lossless identity 'codec'."""

    sample_rate, num_codebooks, frame_rate = 24000, 8, 75.0

    def bitrate(self, n):
        return n * 750.0

    def encode(self, wav, n_codebooks=None):
        self.wav = wav
        return torch.zeros(1, n_codebooks, wav.shape[-1] // 320, dtype=torch.long)

    def decode(self, codes):
        return self.wav


def test_codec_rows_per_bitrate_and_the_report(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, _speechlike(1.0, 24000).numpy(), 24000)
    systems = codec_systems(_TinyModel(), (1.5, 3.0, 6.0, 12.0), name="tiny")
    assert [s.name for s in systems[:3]] == ["tiny 1.5 kbps (2 cb)", "tiny 3 kbps (4 cb)", "tiny 6 kbps (8 cb)"]  # fmt: skip
    assert systems[3].transcode is None and "16 > 8" in systems[3].note
    report = evaluate([clip], systems, scorer=Scorer(use_visqol=False))
    first = report.systems[0]
    assert first.clips == 1 and first.scores["si_sdr"] > 25 and first.kbps == 1.5
    table = report.to_markdown()
    assert all(METRIC_TITLES[m] in table for m in METRICS) and "needs 16 > 8" in table
    assert json.loads(report.to_json())["systems"][0]["name"] == first.name


def test_vocalis_eval_codec_on_a_tiny_checkpoint(tmp_path, capsys):
    model_mod = pytest.importorskip("codec.model")
    from core.checkpoint import save_model

    dims = _tiny_dims(model_mod)
    torch.manual_seed(0)
    path = save_model(tmp_path / "tiny", model_mod.Codec(dims), dims, kind="codec")
    clip = tmp_path / "clip.wav"
    sf.write(clip, _speechlike(1.0, 24000).numpy(), 24000)
    args = ["eval", "codec", "--checkpoint", str(path), "--audio", str(clip)]
    assert main(args) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    names = ["tiny 1.5 kbps", "tiny 3 kbps", "tiny 6 kbps", "Opus 6", "Opus 12", "codec2 3200"]
    for name in names:
        assert any(name in row for row in rows), (name, table)
    header = table.splitlines()[0]
    assert all(METRIC_TITLES[m] in header for m in METRICS)
    if shutil.which("ffmpeg") and shutil.which("c2enc"):
        assert "—" not in table  # every system ran
    assert main([*args, "--json", "--no-baselines", "--no-visqol"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["systems"]) == 3 and report["notes"]["visqol"].startswith("skipped")
    # Two checkpoints side by side; equal file names are told apart by their folders.
    (tmp_path / "b").mkdir()
    other = save_model(tmp_path / "b" / "tiny", model_mod.Codec(dims), dims, kind="codec")
    both = [*args, "--checkpoint", str(other), "--kbps", "6", "--json", "--no-baselines"]
    assert main([*both, "--no-visqol"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["systems"]]
    assert names == [f"{tmp_path.name}/tiny 6 kbps (8 cb)", "b/tiny 6 kbps (8 cb)"]


def test_vocalis_eval_codec_errors(tmp_path, capsys):
    assert main(["eval", "codec", "--audio", str(tmp_path / "x.wav"), "--max-clips", "0"]) == 2
    assert "--max-clips" in capsys.readouterr().err
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    assert main(["eval", "codec", "--manifest", str(manifest)]) == 2
    assert "no utterances of split 'test'" in capsys.readouterr().err


def _tiny_dims(model_mod):
    """A 40 k-parameter codec with the default 8 x 1024 codebooks (1.5, 3 and 6 kbps)."""
    return model_mod.CodecDims(
        encoder_channels=(2, 4, 4, 8, 16),
        decoder_channels=(16, 8, 4, 4, 2),
        latent_dim=16,
        codebook_dim=4,
        dilations=(1, 3),
    )


def test_alignment_finds_the_delay_of_audio_whose_phase_differs():
    """A decoder may keep the envelope and lose the waveform (other noise under the same
    envelope, as a vocoder's phase): the lag comes from the envelopes, not a chance peak of
    the waveform cross-correlation."""
    g = torch.Generator().manual_seed(3)
    # syllables: 40 ms segments of random loudness, silent a third of the time
    levels = torch.rand(50, generator=g) * (torch.rand(50, generator=g) > 0.33)
    envelope = levels.repeat_interleave(640)  # (32000,)
    x = envelope * torch.randn(32000, generator=g)
    for delay in (0, 120, -300, 1000):
        shifted = torch.roll(envelope, delay) * torch.randn(32000, generator=g)
        _, _, lag = align(x, shifted)
        assert abs(lag - delay) <= 32, (delay, lag)
