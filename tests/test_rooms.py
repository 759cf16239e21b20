"""Rooms and microphones for the ASR's training audio (training.rooms)."""

import math

import pytest
import torch

from asr.model import SAMPLE_RATE
from tests.helpers.asr import clip_batch, tiny_model
from training.asr_task import ASRDataConfig, ASRTask, SpecAugment
from training.rooms import colour, fast_fft_size, filtered, mic_gains, room_response


def _rt60_from_decay(response: torch.Tensor, rate: int) -> float:
    """RT60 from the Schroeder backward integral of the tail, fitted between -5 and -25 dB
    (T20, times 3), as room acousticians measure it."""
    tail = response.clone()
    tail[0] = 0.0
    decay = tail.pow(2).flip(0).cumsum(0).flip(0)
    db = 10 * torch.log10(decay / decay[0])
    t = torch.arange(len(db)) / rate
    fit = (db <= -5) & (db >= -25)
    slope = torch.linalg.lstsq(
        torch.stack([t[fit], torch.ones(int(fit.sum()))], 1).double(), db[fit, None].double()
    ).solution[0, 0]
    return float(-60.0 / slope)


@pytest.mark.parametrize("rt60, drr_db", [(0.3, 3.0), (0.8, 12.0)])
def test_room_response_decays_at_its_rt60_and_keeps_its_direct_to_reverberant_ratio(rt60, drr_db):
    torch.manual_seed(0)
    response = room_response(rt60, drr_db, SAMPLE_RATE)
    assert response[0] == 1.0  # the direct sound
    assert torch.all(response[1:40] == 0)  # then 2.5 ms before the first reflection
    assert _rt60_from_decay(response, SAMPLE_RATE) == pytest.approx(rt60, rel=0.15)
    tail_energy = response[1:].pow(2).sum()
    assert float(10 * torch.log10(1.0 / tail_energy)) == pytest.approx(drr_db, abs=1e-3)


def test_mic_gains_stay_within_their_range_and_the_low_pass_cuts_above_its_cutoff():
    torch.manual_seed(0)
    freqs = torch.fft.rfftfreq(4096, 1 / SAMPLE_RATE)
    for _ in range(20):
        db = 20 * torch.log10(mic_gains(freqs, 6.0, None))
        assert float(db.abs().max()) <= 6.0 + 1e-4
    flat = mic_gains(freqs, 0.0, 4000.0)
    assert float(flat[freqs < 2000].min()) > 0.99  # the pass band is left alone
    assert float(20 * torch.log10(flat[freqs > 6000].max())) < -25  # 8th order: 28 dB at 1.5 fc


def _band_energy(x: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(x).abs().pow(2)
    freqs = torch.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_colour_changes_only_the_drawn_items_and_keeps_their_level_and_length():
    torch.manual_seed(0)
    batch = clip_batch((1.0, 0.8))
    batch.wav[0] = 0.1 * torch.randn(SAMPLE_RATE)  # white: energy in every band
    data = ASRDataConfig(reverb_prob=1.0, eq_prob=1.0, lowpass_prob=1.0, lowpass_hz=(3000, 3000))
    skip = torch.tensor([False, True])
    out = colour(batch.wav, batch.lengths, data, SAMPLE_RATE, skip=skip)
    assert out.shape == batch.wav.shape and out is not batch.wav
    assert torch.equal(out[1], batch.wav[1])  # skipped (a no-speech item)
    clean, coloured = batch.wav[0], out[0]
    assert not torch.allclose(coloured, clean, atol=1e-3)
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    assert rms(coloured) == pytest.approx(rms(clean), rel=1e-4)
    # the channel is band-limited at 3 kHz: far less energy above it than the clean clip has
    above = _band_energy(coloured, 4500, 8000) / _band_energy(clean, 4500, 8000)
    assert above < 1e-2
    # the shorter item's padding stays silent
    short = colour(batch.wav, batch.lengths, data, SAMPLE_RATE, skip=~skip)
    n = int(batch.lengths[1])
    assert torch.all(short[1, n:] == 0) and not torch.equal(short[1, :n], batch.wav[1, :n])


def test_reverb_spreads_a_click_into_a_tail():
    torch.manual_seed(0)
    click = torch.zeros(1, SAMPLE_RATE)
    click[0, 1000] = 1.0
    data = ASRDataConfig(reverb_prob=1.0, rt60=(0.5, 0.5), drr_db=(0.0, 0.0))
    out = colour(click, torch.tensor([SAMPLE_RATE]), data, SAMPLE_RATE, skip=torch.tensor([False]))
    energy = out[0].pow(2)
    assert float(energy[:1000].sum()) < 1e-6 * float(energy.sum())  # nothing before the click
    # at 0 dB DRR half the energy follows the click, and it decays: 100-200 ms holds more
    # than 300-400 ms, by about 60 dB * 0.2 s / 0.5 s = 24 dB
    assert float(energy[1001:].sum()) == pytest.approx(0.5 * float(energy.sum()), rel=0.05)
    early = float(energy[1000 + 1600 : 1000 + 3200].sum())
    late = float(energy[1000 + 4800 : 1000 + 6400].sum())
    assert 10 * math.log10(early / late) == pytest.approx(24.0, abs=4.0)


def test_fft_sizes_are_the_smallest_with_only_factors_2_3_5():
    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 2000):
        size = fast_fft_size(n)
        assert size >= n and smooth(size) and not any(smooth(k) for k in range(n, size))
    assert fast_fft_size(250_001) == 253_125  # 3^4 * 5^5, not 262 144


def test_a_room_is_a_linear_convolution_whatever_the_fft_size():
    torch.manual_seed(0)
    clip = torch.randn(12_347)  # a prime length: the FFT is padded to a 2-3-5 size
    torch.manual_seed(1)
    out = filtered(clip, SAMPLE_RATE, room=(0.3, 6.0))
    torch.manual_seed(1)
    response = room_response(0.3, 6.0, SAMPLE_RATE)
    direct = torch.nn.functional.conv1d(
        clip.double().view(1, 1, -1),
        response.double().flip(0).view(1, 1, -1),
        padding=len(response) - 1,
    ).view(-1)[: len(clip)]
    direct = direct * clip.double().pow(2).mean().sqrt() / direct.pow(2).mean().sqrt()
    assert out.shape == clip.shape
    torch.testing.assert_close(out.double(), direct, atol=1e-4, rtol=1e-4)


def test_colour_off_draws_nothing_and_returns_the_batch():
    batch = clip_batch()
    state = torch.get_rng_state()
    assert (
        colour(batch.wav, batch.lengths, ASRDataConfig(), SAMPLE_RATE, skip=~batch.lengths.bool())
        is batch.wav
    )
    assert torch.equal(torch.get_rng_state(), state)  # older configs see the same random numbers


def test_loss_with_rooms_and_microphones_is_finite():
    torch.manual_seed(0)
    model = tiny_model(seed=2).train()
    data = ASRDataConfig(reverb_prob=0.5, eq_prob=0.5, lowpass_prob=0.5, noise_prob=0.5)
    task = ASRTask(model, data, SpecAugment())
    for _ in range(3):
        assert torch.isfinite(task.loss("model", clip_batch(), {"model": model}).loss)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("reverb_prob", 1.5, "reverb_prob must be in"),
        ("rt60", (0.9, 0.2), "rt60 must be a range"),
        ("drr_db", (10.0, 0.0), "drr_db must be a"),
        ("eq_db", -1.0, "eq_db must be in"),
        ("lowpass_hz", (3000.0, 9000.0), "lowpass_hz must be a range"),
    ],
)
def test_room_settings_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        ASRDataConfig(**{field: value})


def test_conditions_are_the_same_every_run_and_leave_the_global_rng_alone():
    from training.rooms import CONDITIONS, under_condition
    from vocalis.commands.eval import ASR_CONDITIONS

    assert ASR_CONDITIONS == tuple(CONDITIONS)  # the CLI names them without importing torch
    wav = 0.1 * torch.randn(SAMPLE_RATE)
    state = torch.get_rng_state()
    room = under_condition(wav, SAMPLE_RATE, "room", 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(room, under_condition(wav, SAMPLE_RATE, "room", 3))
    assert not torch.equal(room, under_condition(wav, SAMPLE_RATE, "room", 4))  # another tail
    phone = under_condition(wav, SAMPLE_RATE, "phone", 3)
    assert _band_energy(phone, 5000, 8000) < 1e-3 * _band_energy(wav, 5000, 8000)
    pause = under_condition(wav, SAMPLE_RATE, "pause", 3)  # half a second of hiss, then wav
    assert torch.equal(pause[SAMPLE_RATE // 2 :], wav)
    assert -72 < 10 * torch.log10(pause[: SAMPLE_RATE // 2].pow(2).mean()) < -68
    with pytest.raises(ValueError, match="condition must be one of room, phone, pause"):
        under_condition(wav, SAMPLE_RATE, "tunnel", 0)
