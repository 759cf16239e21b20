"""Codec training: discriminators, losses, the crop dataset, CodecTask through the real
Trainer (with a tiny stand-in codec, so these run without the real model), and
`vocalis train codec` through the CLI with the real codec at tiny size."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from codec.evaluate import si_sdr
from core.checkpoint import read_model_checkpoint
from corpus.manifest import Utterance
from training.codec_losses import (
    CodecLossWeights,
    balanced_loss,
    compressed_spectrum_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multiscale_mel_loss,
    si_sdr_loss,
    spectral_convergence_loss,
)
from training.codec_task import (
    CodecTask,
    CropConfig,
    CropDataset,
    collate_crops,
    crop_sampler_factory,
)
from training.discriminators import DiscriminatorDims, Discriminators
from training.trainer import LossOutput, TrainConfig, Trainer
from vocalis.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training/configs/codec_tiny.json"

RATE = 8000
TINY_DISCS = DiscriminatorDims(
    stft_n_ffts=(128, 64),
    stft_filters=4,
    stft_max_filters=8,
    periods=(2, 3),
    period_channels=(4, 8),
)
TINY_WEIGHTS = CodecLossWeights(mel_n_ffts=(64, 256), mel_bands=(8, 24))


# ---------------------------------------------------------------------------------------
# A stand-in codec with the real one's forward contract


@dataclass(frozen=True)
class StandInDims:
    hop: int = 8
    channels: int = 4
    num_codebooks: int = 2


@dataclass(frozen=True)
class StandInOutput:
    wav: torch.Tensor  # (B, 1, T)
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    n_codebooks: int


class StandInCodec(nn.Module):
    sample_rate = RATE

    def __init__(self, dims: StandInDims = StandInDims()):
        super().__init__()
        self.dims = dims
        self.enc = nn.Conv1d(1, dims.channels, dims.hop, dims.hop)
        self.dec = nn.ConvTranspose1d(dims.channels, 1, dims.hop, dims.hop)

    def forward(self, wav, n_codebooks=None):
        t = wav.shape[-1]
        z = self.enc(nn.functional.pad(wav, (0, (-t) % self.dims.hop)))  # (B, D, F)
        if n_codebooks is None:  # quantizer dropout draws from the global RNG, like the real one
            n_codebooks = int(torch.randint(1, self.dims.num_codebooks + 1, ()))
        step = 1.0 / (4 * n_codebooks)
        q = z + (torch.round(z / step) * step - z).detach()  # straight-through rounding
        commitment = (z - q.detach()).pow(2).mean()
        return StandInOutput(self.dec(q)[..., :t], commitment, commitment * 0.5, n_codebooks)


def _write_clips(folder, n=6, seconds=0.3, rate=RATE, split="train"):
    folder.mkdir(parents=True, exist_ok=True)
    utts, rng = [], np.random.default_rng(0)
    for i in range(n):
        t = np.arange(int(seconds * rate)) / rate
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"clip{i}.wav"
        sf.write(path, wav.astype(np.float32), rate)
        utts.append(Utterance(f"clip{i}", str(path), seconds, rate, "x", f"s{i % 2}", "t", split))
    return utts


# ---------------------------------------------------------------------------------------
# Discriminators


def test_discriminators_give_one_logit_map_and_features_per_discriminator():
    discs = Discriminators(TINY_DISCS)
    wav = torch.randn(3, 1, 800)  # (B, 1, T); 800 is not a multiple of 3: padding is exercised
    out = discs(wav)
    assert len(out.logits) == len(out.features) == 4 == len(discs.names)
    for logit, feats in zip(out.logits, out.features):
        assert logit.shape[0] == 3 and logit.shape[1] == 1 and len(feats) >= 2
    stft = out.logits[0]  # (B, 1, frames, F'): 800 / 32 hops + 1 frames
    assert stft.shape[2] == 800 // 32 + 1
    period3 = out.logits[3]  # (B, 1, T', 3)
    assert period3.shape[-1] == 3
    real, fake = discs(torch.cat([wav, wav])).split((3, 3))
    for a, b in zip(real.logits, fake.logits):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="mono"):
        discs(torch.randn(2, 800))


def test_discriminator_dims_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        DiscriminatorDims(stft_n_ffts=(), periods=())


# ---------------------------------------------------------------------------------------
# Losses


def test_mel_and_feature_matching_are_zero_at_equality_and_positive_otherwise():
    configs = TINY_WEIGHTS.mel_configs(RATE)
    real = torch.randn(2, 1, 1600) * 0.1
    assert float(multiscale_mel_loss(real, real.clone(), configs)) == 0.0
    other = real + 0.05 * torch.randn_like(real)
    assert float(multiscale_mel_loss(other, real, configs)) > 0.01
    feats = [[torch.randn(2, 4, 5), torch.randn(2, 8, 3)], [torch.randn(2, 3)]]
    copy = [[f.clone().requires_grad_() for f in fs] for fs in feats]
    assert float(feature_matching_loss(feats, copy).detach()) == 0.0
    fake = [[(f + 1).requires_grad_() for f in fs] for fs in feats]
    real_grad = [[f.clone().requires_grad_() for f in fs] for fs in feats]
    loss = feature_matching_loss(real_grad, fake)
    assert float(loss.detach()) == pytest.approx(3.0)  # three layers, each off by exactly 1
    loss.backward()
    assert real_grad[0][0].grad is None and fake[0][0].grad is not None


def test_mel_loss_ignores_a_dc_offset_that_the_waveform_loss_sees():
    # A codec once learned a -0.8 offset to fill the short windows' low bands: the mel
    # loss must neither reward nor punish an offset, leaving it to the waveform loss.
    configs = TINY_WEIGHTS.mel_configs(RATE)
    real = torch.randn(2, 1, 1600) * 0.1
    other = real + 0.05 * torch.randn_like(real)
    shifted = (other - 0.8).requires_grad_()
    assert float(multiscale_mel_loss(shifted.detach(), real, configs)) == pytest.approx(
        float(multiscale_mel_loss(other, real, configs)), rel=1e-4
    )
    multiscale_mel_loss(shifted, real, configs).backward()
    assert abs(float(shifted.grad.sum())) < 1e-4  # no pull along the offset direction


def test_phase_loss_sees_what_the_mel_loss_cannot():
    # A sign flip or a half-period shift keeps every mel band's power and moves every phase:
    # the mel loss calls it perfect, the compressed complex-spectrum loss does not.
    configs = TINY_WEIGHTS.mel_configs(RATE)
    t = torch.arange(4000) / RATE
    real = 0.3 * torch.sin(2 * math.pi * 200 * t) + 0.1 * torch.sin(2 * math.pi * 700 * t)
    real = real.reshape(1, 1, -1)
    flipped = -real
    assert float(multiscale_mel_loss(flipped, real, configs)) < 1e-4
    assert float(compressed_spectrum_loss(real, real, (64, 256))) < 1e-6
    assert float(compressed_spectrum_loss(flipped, real, (64, 256))) > 0.1
    # It falls as a delayed copy comes back into line, so its gradient leads there.
    errors = [float(compressed_spectrum_loss(real.roll(k, -1), real, (256,))) for k in (8, 4, 1)]
    assert errors[0] > errors[1] > errors[2]
    fake = (real.roll(3, -1) * 0.8).requires_grad_()
    compressed_spectrum_loss(fake, real, (64, 256)).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_phase_loss_leaves_the_band_above_its_limit_alone():
    t = torch.arange(4000) / RATE
    real = torch.sin(2 * math.pi * 300 * t).reshape(1, 1, -1)
    high = 0.2 * torch.sin(2 * math.pi * 3000 * t).reshape(1, 1, -1)
    limit = dict(max_hz=1500.0, sample_rate=RATE)
    # A wrong 3 kHz component costs nothing under a 1.5 kHz limit, a wrong 300 Hz one does.
    assert float(compressed_spectrum_loss(real + high, real, (256,), **limit)) < 0.01
    assert float(compressed_spectrum_loss(real + high, real, (256,))) > 0.1
    assert float(compressed_spectrum_loss(-real, real, (256,), **limit)) > 0.1
    with pytest.raises(ValueError, match="sample_rate"):
        compressed_spectrum_loss(real, real, (256,), max_hz=1500.0)
    with pytest.raises(ValueError, match="phase"):
        CodecLossWeights(phase_power=0.0)
    with pytest.raises(ValueError, match="phase_max_hz"):
        CodecLossWeights(phase_max_hz=-1.0)


def test_si_sdr_loss_is_the_metric_pooled_and_scale_free():
    torch.manual_seed(0)
    real = torch.randn(1, 1, 4000)
    fake = 0.5 * real + 0.3 * torch.randn(1, 1, 4000)
    # One item: exactly the negative of the metric the evaluation reports.
    assert float(si_sdr_loss(fake, real)) == pytest.approx(
        -si_sdr(real[0, 0], fake[0, 0]), abs=1e-3
    )
    assert float(si_sdr_loss(3 * fake, real)) == pytest.approx(
        float(si_sdr_loss(fake, real)), abs=1e-3
    )
    assert float(si_sdr_loss(real, real)) < -50
    # Pooled over the batch: a near-silent item with a large relative error barely moves it,
    # where a mean of per-item dB would be dragged by it.
    quiet = 1e-4 * torch.randn(1, 1, 4000)
    both = si_sdr_loss(torch.cat([fake, quiet.roll(7, -1)]), torch.cat([real, quiet]))
    assert float(both) == pytest.approx(float(si_sdr_loss(fake, real)), abs=0.01)
    # Energy-weighted: an error in the loud low band costs more than the same relative error
    # in a quiet high band, as in the metric.
    t = torch.arange(4000) / RATE
    low, high = torch.sin(2 * math.pi * 200 * t), 0.1 * torch.sin(2 * math.pi * 3000 * t)
    low_late, high_late = torch.cos(2 * math.pi * 200 * t), 0.1 * torch.cos(2 * math.pi * 3000 * t)
    ref = (low + high).reshape(1, 1, -1)  # each band a quarter period out of phase in turn:
    assert si_sdr_loss((low_late + high).reshape(1, 1, -1), ref) > si_sdr_loss(
        (low + high_late).reshape(1, 1, -1), ref
    )
    fake = fake.clone().requires_grad_()
    si_sdr_loss(fake, real).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=">= 0"):
        CodecLossWeights(si_sdr=-1.0)


def test_spectral_convergence_weighs_loud_bins_and_ignores_phase():
    t = torch.arange(4000) / RATE
    fade = torch.hann_window(4000, periodic=False)  # no edges for the STFT's padding to tell
    loud, quiet = torch.sin(2 * math.pi * 200 * t), 0.03 * torch.sin(2 * math.pi * 3000 * t)
    loud, quiet = fade * loud, fade * quiet
    real = (loud + quiet).reshape(1, 1, -1)
    sizes = (256, 512)
    assert float(spectral_convergence_loss(real, real, sizes)) < 1e-3
    # Magnitudes only: the same spectrum a quarter period later or upside down costs nothing.
    late = fade * (torch.cos(2 * math.pi * 200 * t) + 0.03 * torch.cos(2 * math.pi * 3000 * t))
    assert float(spectral_convergence_loss(late.reshape(1, 1, -1), real, sizes)) < 0.05
    assert float(spectral_convergence_loss(-real, real, sizes)) < 1e-3
    # Twice the magnitude is exactly 1 per size.
    assert float(spectral_convergence_loss(2 * real, real, sizes)) == pytest.approx(2.0, abs=1e-3)
    # The same relative error (-3 dB) costs far more at the loud harmonic than at the quiet
    # one; the log-mel loss charges both about alike.
    at_loud = (0.7 * loud + quiet).reshape(1, 1, -1)
    at_quiet = (loud + 0.7 * quiet).reshape(1, 1, -1)
    assert spectral_convergence_loss(at_loud, real, sizes) > 10 * spectral_convergence_loss(
        at_quiet, real, sizes
    )
    configs = CodecLossWeights(mel_n_ffts=(256, 512), mel_bands=(20, 40)).mel_configs(RATE)
    mel_ratio = multiscale_mel_loss(at_loud, real, configs) / multiscale_mel_loss(
        at_quiet, real, configs
    )
    assert float(mel_ratio) < 3
    # Pooled over the batch: a near-silent item with a large relative error barely moves it.
    hush = 1e-4 * torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0))
    both = spectral_convergence_loss(torch.cat([at_loud, 3 * hush]), torch.cat([real, hush]), sizes)
    assert float(both) == pytest.approx(
        float(spectral_convergence_loss(at_loud, real, sizes)), abs=0.01
    )
    fake = at_loud.clone().requires_grad_()
    spectral_convergence_loss(fake, real, sizes).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=">= 0"):
        CodecLossWeights(spectral=-1.0)
    with pytest.raises(ValueError, match="spectral_n_ffts"):
        CodecLossWeights(spectral_n_ffts=())


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_adversarial_losses_reward_the_right_side(kind):
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    target_real = [torch.full((2, 5), 1.0 if kind == "lsgan" else 2.0)]
    target_fake = [torch.full((2, 5), 0.0 if kind == "lsgan" else -2.0)]
    assert float(discriminator_loss(target_real, target_fake, kind)) == 0.0
    assert float(discriminator_loss(zeros, ones, kind)) > 1.0
    assert float(generator_adversarial_loss(target_real, kind)) == 0.0
    fake = torch.zeros(2, 5, requires_grad=True)
    generator_adversarial_loss([fake], kind).backward()
    assert (fake.grad < 0).all()  # descending raises the fake's score
    # Summed over discriminators.
    assert float(generator_adversarial_loss(zeros * 2, kind)) == pytest.approx(2.0)


def test_hinge_saturates_where_lsgan_keeps_pushing():
    real = [torch.full((4,), 3.0)]
    fake = [torch.full((4,), -3.0)]
    assert float(discriminator_loss(real, fake, "hinge")) == 0.0
    assert float(discriminator_loss(real, fake, "lsgan")) > 0.0
    with pytest.raises(ValueError):
        CodecLossWeights(adversarial_kind="wasserstein")


def test_balancer_keeps_the_value_and_fixes_the_gradient_share():
    out = torch.randn(2, 1, 64, requires_grad=True)
    big = (out * 100).pow(2).mean()  # huge gradient
    small = out.abs().mean() * 1e-3  # tiny gradient
    loss = balanced_loss({"a": big, "b": small}, {"a": 1.0, "b": 3.0}, out, norm=2.0)
    assert float(loss.detach()) == pytest.approx(float((big + 3 * small).detach()), rel=1e-5)
    loss.backward()
    (ga,) = torch.autograd.grad((out * 100).pow(2).mean(), out)
    (gb,) = torch.autograd.grad(out.abs().mean(), out)
    per_norm = lambda g: g.flatten(1).norm(dim=1).mean()  # noqa: E731
    expected = 2.0 * (0.25 * ga / per_norm(ga) + 0.75 * gb / per_norm(gb))
    torch.testing.assert_close(out.grad, expected)


# ---------------------------------------------------------------------------------------
# Data


def test_crop_dataset_is_seeded_per_item_and_epoch(tmp_path):
    utts = _write_clips(tmp_path, n=2, seconds=0.3, rate=16000)
    utts.append(_write_clips(tmp_path / "short", n=1, seconds=0.05, rate=RATE)[0])
    data = CropDataset(utts, CropConfig(sample_rate=RATE, crop_seconds=0.1, noise_prob=0.5))
    a, b = data[(0, 0)], data[(0, 0)]
    assert a.shape == (1, 800) and torch.equal(a, b)
    assert not torch.equal(data[(0, 0)], data[(0, 1)])
    short = data[(2, 0)]  # 0.05 s clip: zero-padded to the crop
    assert short.shape == (1, 800) and float(short[0, 500:].abs().max()) < 1e-2
    assert float(a.abs().max()) <= 0.99 + 1e-6
    sampler = crop_sampler_factory(len(data), 2, seed=0)(0, 1)
    sampler.set_epoch(3)
    batch = next(iter(sampler))
    assert all(epoch == 3 for _, epoch in batch)
    assert collate_crops([data[k] for k in batch]).shape == (2, 1, 800)


def test_crop_speed_moves_the_pitch_and_keeps_the_length(tmp_path):
    utts = _write_clips(tmp_path, n=1, seconds=1.0, rate=16000)  # a 150 Hz sine
    quiet = dict(sample_rate=RATE, crop_seconds=0.5, gain_db=0.0, noise_prob=0.0)
    for speed, hz in [((1.0, 1.0), 150.0), ((1.2, 1.2), 180.0), ((0.8, 0.8), 120.0)]:
        crop = CropDataset(utts, CropConfig(**quiet, speed=speed))[(0, 0)]
        assert crop.shape == (1, 4000)
        peak = torch.fft.rfft(crop[0]).abs().argmax().item() * RATE / crop.shape[-1]
        assert abs(peak - hz) <= 2.0, (speed, peak)
    # a config's JSON list [1, 1] is off as the default is: no draw, the same crop
    as_json = CropDataset(utts, CropConfig(**quiet, speed=[1.0, 1.0], noise_dbfs=[-60, -50]))
    default = CropDataset(utts, CropConfig(**quiet, noise_dbfs=(-60, -50)))
    assert torch.equal(as_json[(0, 3)], default[(0, 3)])
    with pytest.raises(ValueError, match="speed"):
        CropConfig(speed=(1.1, 0.9))


# ---------------------------------------------------------------------------------------
# CodecTask through the real trainer


class _Crash(Exception):
    pass


class _CrashingTask(CodecTask):
    def __init__(self, *args, crash_at: int):
        super().__init__(*args)
        self.calls, self.crash_at = 0, crash_at

    def loss(self, part, batch, modules) -> LossOutput:
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash
        return super().loss(part, batch, modules)


def _task(cls=CodecTask, seed=0, **kw):
    torch.manual_seed(seed)
    codec = StandInCodec()
    return cls(codec, codec.dims, Discriminators(TINY_DISCS), TINY_WEIGHTS, **kw)


def _run(task, utts, out, steps=4, **overrides):
    config = TrainConfig(
        out_dir=str(out), max_steps=steps, batch_size=2, lr=1e-3, checkpoint_every=2,
        log_every=1, progress=False, **overrides,
    )  # fmt: skip
    data = CropDataset(utts, CropConfig(sample_rate=RATE, crop_seconds=0.1, noise_prob=0.5))
    factory = crop_sampler_factory(len(data), config.batch_size, config.seed)
    trainer = Trainer(task, config, data, collate_fn=collate_crops, sampler_factory=factory)
    return trainer.fit()


def test_codec_task_steps_reuse_the_generator_output_and_resume_exactly(tmp_path):
    utts = _write_clips(tmp_path / "clips")
    straight_task = _task()
    calls = []
    forward = straight_task.codec.forward
    straight_task.codec.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    straight = _run(straight_task, utts, tmp_path / "a", grad_accum=2)
    assert len(calls) == 4 * 2  # one codec forward per micro-batch: the fake is reused
    assert not straight_task._fakes
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    keys = ("generator/mel", "generator/adversarial", "generator/feature_matching")
    assert all(k in log[-1] for k in keys + ("discriminator/loss", "discriminator/real_logit"))
    assert all(math.isfinite(r["loss"]) for r in log)

    with pytest.raises(_Crash):  # dies in step 4's generator step, after the step-2 checkpoint
        _run(_task(_CrashingTask, crash_at=3 * 2 * 2 + 1), utts, tmp_path / "b", grad_accum=2)
    resumed = _run(_task(seed=5), utts, tmp_path / "b", grad_accum=2)
    assert resumed.step == straight.step == 4
    a = read_model_checkpoint(straight.model_path, kind="codec", dims_cls=StandInDims)
    b = read_model_checkpoint(resumed.model_path, kind="codec", dims_cls=StandInDims)
    for name, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[name]), name


def test_discriminator_step_without_a_queued_fake_runs_the_codec(tmp_path):
    task = _task()
    wav = torch.randn(2, 1, 800) * 0.1
    out = task.loss("discriminator", wav, task.parts())
    assert out.loss.requires_grad and float(out.loss.detach()) > 0
    task.loss("generator", wav, task.parts()).loss.backward()
    assert len(task._fakes) == 1
    assert all(p.grad is None for p in task.discriminators.parameters())  # frozen in G's step
    assert all(p.requires_grad for p in task.discriminators.parameters())
    task.loss("discriminator", wav + 1, task.parts())  # a mismatched batch drops stale fakes
    assert not task._fakes
    with pytest.raises(ValueError, match="unknown part"):
        task.loss("critic", wav, task.parts())


def test_reconstruction_only_training_leaves_the_discriminators_out(tmp_path):
    utts = _write_clips(tmp_path / "clips")
    torch.manual_seed(0)
    codec = StandInCodec()
    weights = CodecLossWeights(
        mel_n_ffts=(64, 256), mel_bands=(8, 24), waveform=1.0, phase=1.0, phase_n_ffts=(64,),
        si_sdr=1.0, spectral=1.0, spectral_n_ffts=(64,), adversarial=0.0, feature_matching=0.0,
    )  # fmt: skip
    task = CodecTask(codec, codec.dims, Discriminators(TINY_DISCS), weights)
    assert list(task.parts()) == ["generator"]
    before = [p.clone() for p in task.discriminators.parameters()]
    _run(task, utts, tmp_path / "run", steps=3)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "generator/waveform" in log[-1] and "generator/adversarial" not in log[-1]
    assert "generator/phase" in log[-1] and "generator/si_sdr" in log[-1]
    assert "generator/spectral" in log[-1]
    assert not any(k.startswith("discriminator/") for k in log[-1])
    assert not task._fakes  # nothing queued for a discriminator step that never comes
    assert all(torch.equal(a, b) for a, b in zip(before, task.discriminators.parameters()))


# ---------------------------------------------------------------------------------------
# The command line (needs the real codec model)


def _manifest(tmp_path):
    utts = _write_clips(tmp_path / "clips", n=4, seconds=0.6, rate=24000)
    held = _write_clips(tmp_path / "held", n=1, seconds=0.6, rate=24000, split="test")
    path = tmp_path / "m.jsonl"
    from corpus.manifest import write_manifest

    write_manifest(path, utts + held)
    return path


def test_vocalis_train_codec_tiny_config_runs_and_resumes(tmp_path, capsys):
    pytest.importorskip("codec.model")
    manifest, out = _manifest(tmp_path), tmp_path / "run"
    args = ["train", "codec", "--config", str(TINY_CONFIG), "--out", str(out)]
    assert main([*args, "--steps", "3", "--manifest", str(manifest)]) == 0
    assert "done: step 3" in (out_text := capsys.readouterr().out) and "mel loss" in out_text
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert main([*args, "--steps", "4", "--manifest", str(manifest)]) == 0  # resumes at 3
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    from codec.model import load_codec

    assert load_codec(out / "model").sample_rate == 24000


def test_vocalis_train_minutes_bounds_the_run_by_time(tmp_path, capsys):
    pytest.importorskip("codec.model")
    manifest, out = _manifest(tmp_path), tmp_path / "run"
    args = ["train", "codec", "--config", str(TINY_CONFIG), "--manifest", str(manifest)]
    # A budget of a few microseconds: the run stops after its first step and exports it.
    assert main([*args, "--out", str(out), "--steps", "50", "--minutes", "1e-7"]) == 0
    text = capsys.readouterr().out
    assert "time budget" in text and "done: step 1 " in text
    assert (out / "model.safetensors").is_file()
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["max_seconds"] == pytest.approx(6e-6)
    assert main([*args, "--out", str(tmp_path / "x"), "--minutes", "0"]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err


def test_vocalis_train_codec_init_starts_from_a_model(tmp_path, capsys):
    pytest.importorskip("codec.model")
    from codec.model import load_codec

    manifest = _manifest(tmp_path)
    base = ["train", "codec", "--config", str(TINY_CONFIG), "--manifest", str(manifest)]
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2"]) == 0
    first = tmp_path / "a" / "model.safetensors"
    # One step at lr ~0 from --init stays next to the starting weights; a fresh start does not.
    config = json.loads(TINY_CONFIG.read_text())
    config["train"]["lr"] = 1e-12
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(config))
    slow = ["train", "codec", "--config", str(path), "--manifest", str(manifest), "--steps", "1"]
    assert main([*slow, "--out", str(tmp_path / "b"), "--init", str(first)]) == 0
    assert main([*slow, "--out", str(tmp_path / "c")]) == 0
    a, b, c = (load_codec(tmp_path / x / "model").state_dict() for x in "abc")
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in floats)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in floats)
    capsys.readouterr()
    # Run again into a folder that has checkpoints: it resumes, and says --init is unused.
    assert main([*slow, "--out", str(tmp_path / "c"), "--init", str(first)]) == 0
    assert "so --init" in capsys.readouterr().err
    c2 = load_codec(tmp_path / "c" / "model").state_dict()
    assert not all(torch.allclose(a[k], c2[k], atol=1e-6) for k in floats)
    bad = tmp_path / "other.json"
    config["codec"]["latent_dim"] = 8
    bad.write_text(json.dumps(config))
    args = ["train", "codec", "--config", str(bad), "--manifest", str(manifest)]
    assert main([*args, "--out", str(tmp_path / "d"), "--init", str(first)]) == 2
    assert "dims differ" in capsys.readouterr().err


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"train": {"lrr": 1}}, "train: unknown key 'lrr'"),
        ({"optimiser": {}}, "unknown config section 'optimiser'"),
        ({"loss": {"mel": "high"}}, "loss.mel: expected float"),
        ({"discriminator": {"periods": 2}}, "discriminator.periods: expected a list"),
        ({"data": {"crop_sconds": 1}}, "data: unknown key 'crop_sconds'"),
        ({"loss": {"adversarial_kind": "x"}}, "adversarial_kind must be one of"),
        ({"codec": {"not_a_dim": 1}}, "codec: unknown key 'not_a_dim'"),
        ({"train": {"warmup_steps": 50}}, "warmup_steps must be in [0, max_steps=3]"),
        ({"parts": {"freeze": ["encoder"]}}, "parts.freeze needs --init"),
        ({"parts": {"freeze": ["encoders"]}}, "freeze: unknown part 'encoders'"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(tmp_path, capsys, patch, message):
    pytest.importorskip("codec.model")
    config = json.loads(TINY_CONFIG.read_text())
    for section, values in patch.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    code = main(["train", "codec", "--config", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_new_decoder_for_frozen_codes_keeps_their_meaning(tmp_path, capsys):
    """`parts.freeze` with --init: a decoder of another kind trained on the codes of an
    existing codec. Encoder and codebooks come through bit for bit, so its codes equal the
    old codec's, and `.vcd` files and TTS models made with the old codec stay valid."""
    pytest.importorskip("codec.model")
    from codec import compress as C
    from codec.model import load_codec, same_codes
    from core.checkpoint import weights_sha256

    manifest = _manifest(tmp_path)
    base = ["train", "codec", "--manifest", str(manifest), "--steps", "2"]
    assert main([*base, "--config", str(TINY_CONFIG), "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "model.safetensors"
    config = json.loads(TINY_CONFIG.read_text())
    config["codec"].update(decoder="istft", istft_dim=16, istft_hidden=32, istft_layers=1)
    config["parts"] = {"freeze": ["encoder", "quantizer"]}
    path = tmp_path / "istft.json"
    path.write_text(json.dumps(config))
    args = [*base, "--config", str(path), "--out", str(tmp_path / "b"), "--init", str(first)]
    assert main(args) == 0
    assert "encoder and quantizer taken over; decoder anew" in capsys.readouterr().out
    old, new = load_codec(first), load_codec(tmp_path / "b" / "model")
    assert new.dims.decoder == "istft"
    kept = [k for k in old.state_dict() if not k.startswith("decoder.") and "unused_steps" not in k]
    assert kept and all(torch.equal(old.state_dict()[k], new.state_dict()[k]) for k in kept)
    wav = torch.randn(2, 1, 6000) * 0.1
    with torch.no_grad():
        assert torch.equal(old.encode(wav), new.encode(wav))
    second = tmp_path / "b" / "model.safetensors"
    assert same_codes(second) == {weights_sha256(second), weights_sha256(first)}
    assert same_codes(first) == {weights_sha256(first)}

    # A file compressed with the old codec decodes with the new one, not the reverse.
    options = C.CompressOptions(kbps=old.bitrate(4) / 1000, chunk_seconds=0.1)
    data = C.compress_audio(wav[0], 24000, C.load(first), options)
    audio, rate = C.decompress_bytes(data, C.load(second))
    assert rate == 24000 and audio.shape == (1, 6000)
    with pytest.raises(C.BitstreamError, match="made with codec model"):
        C.decompress_bytes(C.compress_audio(wav[0], 24000, C.load(second), options), C.load(first))


def test_a_new_encoder_takes_over_the_codebooks_and_decoder(tmp_path, capsys):
    """--init with an encoder of another kind: the quantizer and the decoder come through
    bit for bit (frozen, as `codec_stft_cpu.json` trains), only the encoder trains. A
    frozen part that does not fit the --init codec is refused."""
    pytest.importorskip("codec.model")
    from codec.model import load_codec

    manifest = _manifest(tmp_path)
    base = ["train", "codec", "--manifest", str(manifest), "--steps", "2"]
    assert main([*base, "--config", str(TINY_CONFIG), "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "model.safetensors"
    config = json.loads(TINY_CONFIG.read_text())
    config["codec"].update(encoder="stft", stft_dim=16, stft_hidden=32, stft_layers=1)
    config["parts"] = {"freeze": ["quantizer", "decoder"]}
    path = tmp_path / "stft.json"
    path.write_text(json.dumps(config))
    args = [*base, "--config", str(path), "--out", str(tmp_path / "b"), "--init", str(first)]
    capsys.readouterr()
    assert main(args) == 0
    assert "quantizer and decoder taken over; encoder anew" in capsys.readouterr().out
    old, new = load_codec(first).state_dict(), load_codec(tmp_path / "b" / "model").state_dict()
    kept = [k for k in old if not k.startswith("encoder.") and "unused_steps" not in k]
    assert kept and all(torch.equal(old[k], new[k]) for k in kept)
    assert load_codec(tmp_path / "b" / "model").dims.encoder == "stft"

    config["parts"] = {"freeze": ["encoder", "decoder"]}
    path.write_text(json.dumps(config))
    args[-3] = str(tmp_path / "c")
    assert main(args) == 2
    assert "dims differ from the config's in the frozen part(s) encoder" in capsys.readouterr().err


def test_init_turns_an_angle_phase_head_into_a_vector_head(tmp_path, capsys):
    """--init from an iSTFT codec into the same codec with a vector phase head: encoder,
    codebooks and decoder come through (the head adapted), so its codes are the old ones."""
    pytest.importorskip("codec.model")
    from codec.model import load_codec

    manifest = _manifest(tmp_path)
    base = ["train", "codec", "--manifest", str(manifest), "--steps", "1"]
    config = json.loads(TINY_CONFIG.read_text())
    config["codec"].update(decoder="istft", istft_dim=16, istft_hidden=32, istft_layers=1)
    path = tmp_path / "angle.json"
    path.write_text(json.dumps(config))
    assert main([*base, "--config", str(path), "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "model.safetensors"
    config["codec"]["istft_phase"] = "vector"
    config["train"]["lr"] = 1e-12  # the step leaves the weights where --init put them
    config["train"]["warmup_steps"] = 0
    path.write_text(json.dumps(config))
    capsys.readouterr()
    assert (
        main([*base, "--config", str(path), "--out", str(tmp_path / "b"), "--init", str(first)])
        == 0
    )
    assert "decoder (its phase head made a vector head) taken over\n" in capsys.readouterr().out
    old, new = load_codec(first), load_codec(tmp_path / "b" / "model")
    assert new.dims.istft_phase == "vector"
    wav = torch.randn(1, 1, 6000) * 0.1
    with torch.no_grad():
        assert torch.equal(old.encode(wav), new.encode(wav))
        a, b = (
            old.decoder.spectrum(old.encode_latent(wav)),
            new.decoder.spectrum(old.encode_latent(wav)),
        )
    assert torch.allclose(a.abs(), b.abs(), rtol=1e-3, atol=1e-5)
