"""The codec model at tiny sizes: shapes, the quantizer's gradient and bookkeeping, causality,
an overfit-one-clip run and the checkpoint round trip."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codec import Codec, CodecDims, CompressionModel, load_codec, save_codec
from codec.modules import PHASE_HEADS, IStftDecoder
from codec.quantize import FactorizedVQ, ResidualVQ
from core.audio import MelConfig, load_audio, log_mel
from tests.helpers.codec import TINY

CLIP = Path(__file__).resolve().parents[2] / "shared/data/ljspeech/wavs/LJ001-0001.flac"


def tiny(**changes) -> Codec:
    torch.manual_seed(0)
    dims = CodecDims(**{**TINY.__dict__, **changes})
    return Codec(dims)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("causal", [False, True])
def test_output_length_equals_input_length(causal):
    model = tiny(causal=causal).eval()
    hop = model.hop_length
    with torch.no_grad():
        for length in (1, hop - 1, hop + 1, 24001):
            wav = torch.randn(2, 1, length) * 0.1
            codes = model.encode(wav)
            assert codes.shape == (2, model.num_codebooks, math.ceil(length / hop))
            assert model.decode(codes).shape == (2, 1, codes.shape[-1] * hop)
            assert model.reconstruct(wav).shape == wav.shape
            assert model(wav).wav.shape == wav.shape


def test_rejects_bad_shapes():
    model = tiny().eval()
    with pytest.raises(ValueError):
        model.encode(torch.randn(1, 100))
    with pytest.raises(ValueError):
        model.encode(torch.randn(1, 1, 100), n_codebooks=model.num_codebooks + 1)


def test_codes_range_and_default_bitrates():
    model = tiny().eval()
    with torch.no_grad():
        codes = model.encode(torch.randn(3, 1, 500) * 0.1, n_codebooks=3)
    assert codes.dtype == torch.int64 and codes.shape == (3, 3, math.ceil(500 / 40))
    assert 0 <= int(codes.min()) and int(codes.max()) < model.cardinality

    full = Codec(CodecDims())
    assert isinstance(full, CompressionModel)
    assert (full.sample_rate, full.frame_rate, full.cardinality) == (24000, 75.0, 1024)
    assert [full.bitrate(n) for n in (2, 4, 8)] == [1500.0, 3000.0, 6000.0]
    assert full.bitrate(3) == 3 * full.frame_rate * math.log2(full.cardinality)


def _set_identity(conv: torch.nn.Module, dim: int) -> None:
    with torch.no_grad():
        conv.weight = torch.eye(dim)[:, :, None]  # weight-norm parametrization re-splits it
        conv.bias.zero_()


def test_straight_through_gradient_is_identity():
    # With identity projections the stages telescope, so d(quantized)/d(latent) = I exactly.
    rvq = ResidualVQ(6, n_codebooks=3, codebook_size=32, codebook_dim=6)
    for stage in rvq.stages:
        _set_identity(stage.in_proj, 6)
        _set_identity(stage.out_proj, 6)
    rvq.eval()
    latent = torch.randn(2, 6, 10, requires_grad=True)
    out = rvq(latent)
    assert not torch.equal(out.quantized, latent)  # it did quantize
    upstream = torch.randn_like(latent)
    (grad,) = torch.autograd.grad((out.quantized * upstream).sum(), latent)
    torch.testing.assert_close(grad, upstream)


def test_gradient_reaches_the_encoder_through_the_codes():
    model = tiny().train()
    out = model(torch.randn(2, 1, 400) * 0.1)
    out.wav.abs().mean().backward()
    first_conv = model.encoder.layers[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_quantizer_dropout_varies_in_training_only():
    torch.manual_seed(1)
    model = tiny(quantizer_dropout=1.0).train()
    wav = torch.randn(4, 1, 200) * 0.1
    used = {tuple(model(wav).n_codebooks.tolist()) for _ in range(6)}
    assert len(used) > 1
    assert all(1 <= n <= model.num_codebooks for ns in used for n in ns)
    assert model(wav, n_codebooks=2).n_codebooks.tolist() == [2] * 4  # explicit n: no dropout

    model.eval()
    with torch.no_grad():
        assert all(model(wav).n_codebooks.tolist() == [4] * 4 for _ in range(3))
        assert model(wav, n_codebooks=2).codes.shape[1] == 2
        codes = model.encode(wav)
        for n in (1, 2, 3):
            assert model.decode(codes[:, :n]).shape == (4, 1, 200)


def test_residual_error_shrinks_with_more_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(16, n_codebooks=4, codebook_size=64, codebook_dim=4, dropout=0.5)
    latent = torch.randn(8, 16, 40)
    opt = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    for _ in range(150):
        out = rvq(latent)
        loss = F.mse_loss(out.quantized, latent) + out.codebook_loss + 0.25 * out.commitment_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    rvq.eval()
    with torch.no_grad():
        errors = [F.mse_loss(rvq.decode(rvq.encode(latent, n)), latent).item() for n in range(1, 5)]
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.8 * F.mse_loss(torch.zeros_like(latent), latent).item()


def test_dead_codes_are_reseeded_from_encoder_outputs():
    torch.manual_seed(0)
    vq = FactorizedVQ(6, codebook_size=32, codebook_dim=3, dead_code_steps=3).train()
    z = torch.randn(2, 6, 5)
    before = vq.codebook.detach().clone()
    for _ in range(3):
        used = vq(z).codes.unique()
    assert torch.equal(vq.codebook.detach(), before)  # counters reach the threshold only
    dead = torch.ones(32, dtype=torch.bool)
    dead[used] = False
    vq(z)
    after = vq.codebook.detach()
    assert torch.equal(after[~dead], before[~dead])
    projected = vq.project(z).detach().transpose(1, 2).reshape(-1, 3)  # (B * F, d)
    distance = torch.cdist(after[dead], projected).min(dim=1).values
    assert distance.max() < 1e-6  # every dead code is now one of this batch's vectors
    assert int(vq.unused_steps[dead].max()) <= 1

    vq.eval()
    frozen = vq.codebook.detach().clone()
    for _ in range(5):
        vq(z)
    assert torch.equal(vq.codebook.detach(), frozen)  # eval: no bookkeeping, no replacement


def test_encoding_is_deterministic():
    model = tiny()
    model(torch.randn(2, 1, 300))  # a training step's bookkeeping must not matter in eval
    model.eval()
    wav = torch.randn(2, 1, 1234) * 0.1
    with torch.no_grad():
        assert torch.equal(model.encode(wav), model.encode(wav))


def test_causal_mode_has_at_most_one_frame_of_lookahead():
    # Causal convs and right-trimmed transposed convs make latent frame f depend on input
    # samples < (f + 1) * hop, and output sample n on frames <= n // hop. So changing the
    # input from sample t on leaves every output before (t // hop) * hop untouched.
    model = tiny(causal=True).eval()
    hop = model.hop_length
    wav = torch.randn(1, 1, 12 * hop) * 0.1
    for t in (5 * hop, 5 * hop + 17, 7 * hop - 1):
        changed = wav.clone()
        changed[..., t:] += torch.randn(changed.shape[-1] - t)
        with torch.no_grad():
            a, b = model.reconstruct(wav), model.reconstruct(changed)
            la, lb = model.encode_latent(wav), model.encode_latent(changed)
            ya, yb = model.decode_latent(la), model.decode_latent(lb)
        bound = (t // hop) * hop
        assert torch.equal(a[..., :bound], b[..., :bound])
        assert torch.equal(ya[..., :bound], yb[..., :bound])
        # The bound is tight: the frame holding sample t changes, and with it its samples.
        assert (la[..., t // hop] - lb[..., t // hop]).abs().max() > 1e-4
        assert (ya[..., bound : bound + hop] - yb[..., bound : bound + hop]).abs().max() > 1e-6

    centred = tiny(causal=False).eval()
    changed = wav.clone()
    changed[..., 6 * hop :] += 0.1
    with torch.no_grad():
        diff = centred.decode_latent(centred.encode_latent(wav))
        diff = diff - centred.decode_latent(centred.encode_latent(changed))
    assert diff[..., : 6 * hop].abs().max() > 1e-5  # the non-causal model does look ahead


def _clip() -> torch.Tensor:
    n = 12000  # 0.5 s at 24 kHz
    if CLIP.is_file():
        wav, _ = load_audio(CLIP, 24000)
        wav = wav[:, 6000 : 6000 + n]  # skip the leading silence
    else:
        t = torch.arange(n) / 24000
        f0 = 140 + 30 * torch.sin(2 * math.pi * 3 * t)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / 24000
        wav = sum(torch.sin(k * phase) / k for k in range(1, 8))[None]
    return (0.5 * wav / wav.abs().max())[None]  # (1, 1, T)


MELS = (MelConfig(24000, 512, 128, 40), MelConfig(24000, 128, 32, 16))


def _losses(model: Codec, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction: L1 + multi-resolution log-mel, quantizer: codebook + commitment)."""
    out = model(wav)
    recon = F.l1_loss(out.wav, wav) + sum(
        F.l1_loss(log_mel(out.wav, c, floor=1e-5), log_mel(wav, c, floor=1e-5)) for c in MELS
    )
    return recon, out.codebook_loss + 0.25 * out.commitment_loss


def test_tiny_model_overfits_one_clip():
    model = tiny(quantizer_dropout=0.0).train()
    wav = _clip()
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    history = []
    for _ in range(120):
        recon, vq = _losses(model, wav)
        opt.zero_grad()
        (recon + vq).backward()
        opt.step()
        history.append((recon.item(), vq.item()))
    start = torch.tensor(history[:5]).mean(dim=0)  # (2,) recon, vq
    end = torch.tensor(history[-5:]).mean(dim=0)
    assert end.sum() < 0.5 * start.sum(), (start, end)
    assert end[0] < 0.7 * start[0], (start, end)  # the audio itself, not just the codebooks


def test_checkpoint_round_trip_gives_identical_codes(tmp_path):
    model = tiny(causal=True)
    model(torch.randn(2, 1, 300))  # move the dead-code counters off zero
    model.eval()
    save_codec(tmp_path / "codec", model, training={"steps": 1})
    loaded = load_codec(tmp_path / "codec")
    assert loaded.dims == model.dims and not loaded.training
    assert torch.equal(
        loaded.quantizer.stages[0].unused_steps, model.quantizer.stages[0].unused_steps
    )
    wav = torch.randn(2, 1, 999) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.encode(wav), model.encode(wav))


def test_snake_alpha_gets_no_weight_decay():
    from core.optim import param_groups

    model = tiny()
    alphas = [p for n, p in model.named_parameters() if n.endswith("alpha")]
    assert alphas and all(p.no_weight_decay for p in alphas)
    no_decay = {
        id(p) for g in param_groups(model, 0.1) if g["weight_decay"] == 0 for p in g["params"]
    }
    assert all(id(p) in no_decay for p in alphas)
    assert all(id(s.codebook) in no_decay for s in model.quantizer.stages)


def test_import_codec_stays_light():
    code = (
        "import sys, codec\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('gradio', 'training', 'asr')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


ISTFT = dict(decoder="istft", istft_dim=64, istft_hidden=128, istft_layers=2, istft_n_fft=160)


def test_istft_decoder_keeps_every_length_and_is_non_causal_only():
    model = tiny(**ISTFT).eval()
    hop = model.hop_length
    with torch.no_grad():
        for length in (1, hop - 1, hop + 1, 2401):
            wav = torch.randn(2, 1, length) * 0.1
            codes = model.encode(wav)
            assert model.decode(codes).shape == (2, 1, codes.shape[-1] * hop)
            assert model.reconstruct(wav).shape == wav.shape
    with pytest.raises(ValueError, match="non-causal"):
        CodecDims(**{**TINY.__dict__, **ISTFT, "causal": True})
    with pytest.raises(ValueError, match="decoder must be one of"):
        CodecDims(**{**TINY.__dict__, "decoder": "wavenet"})
    with pytest.raises(ValueError, match="n_fft must be even"):
        tiny(**{**ISTFT, "istft_n_fft": 2 * hop - 2})


def test_vector_phase_head_starts_from_an_angle_head():
    """A (re, im) phase head taken over from a trained angle head: the same magnitudes, each
    phase bent to atan(angle) (same sign and order), every other decoder weight kept."""
    from codec.model import adopt_decoder

    torch.manual_seed(0)
    old = tiny(**ISTFT).eval()
    new = Codec(dataclasses.replace(old.dims, istft_phase="vector")).eval()
    assert new.decoder.head.out_channels == 3 * (160 // 2 + 1)
    assert adopt_decoder(new, old)
    latent = torch.randn(2, old.dims.latent_dim, 9)
    with torch.no_grad():
        a, b = old.decoder.spectrum(latent), new.decoder.spectrum(latent)
        angle = old.decoder.head(old.decoder.backbone(old.decoder.input(latent)))[:, 81:]
    assert torch.allclose(a.abs(), b.abs(), rtol=1e-4, atol=1e-6)
    assert torch.allclose(b.angle(), angle.atan(), atol=1e-4)
    assert new.decode_latent(latent).shape == (2, 1, 9 * new.hop_length)
    # Nothing else differs in the decoder; other changes of dims are not taken over.
    assert not adopt_decoder(old, new)  # only angle -> vector
    other = Codec(dataclasses.replace(old.dims, istft_phase="vector", istft_layers=3))
    assert not adopt_decoder(other, old)
    with pytest.raises(ValueError, match="istft_phase must be one of"):
        CodecDims(**{**TINY.__dict__, **ISTFT, "istft_phase": "polar"})


def test_vector_phase_head_carries_the_waveform_through_a_linear_map():
    """Why a vector head: a spectrum's phase is a direction, so a decoder that sees the
    compressed (re, im), as the STFT encoder does, can hand it on with one linear map. An
    angle head fed the same input and trained the same way fits the spectrum (its phase)
    several times worse: atan2 is not linear, and its readout wraps."""
    torch.manual_seed(0)
    hop, n_fft, frames = 16, 64, 200  # more frames than features: no memorising
    wav = torch.randn(1, 1, frames * hop) * 0.1
    window = torch.hann_window(n_fft)
    spec = torch.stft(wav[:, 0], n_fft, hop, window=window, return_complex=True)[..., :frames]
    mag = spec.abs() + 1e-5
    feats = torch.cat([mag.log(), spec.real / mag, spec.imag / mag], 1)  # (1, 3 * bins, F)
    errors = {}
    for phase in PHASE_HEADS:
        torch.manual_seed(0)
        decoder = IStftDecoder(feats.shape[1], hop, dim=8, hidden=8, layers=1, n_fft=n_fft,
                               phase=phase)  # fmt: skip
        # only a linear head on the features: the phase readout alone is compared
        decoder.input = nn.Identity()
        decoder.backbone = lambda x: x  # shadows the method on this instance
        decoder.head = nn.Conv1d(feats.shape[1], decoder.head.out_channels, 1)
        opt = torch.optim.Adam(decoder.head.parameters(), lr=1e-2)
        for _ in range(300):
            loss = (decoder.spectrum(feats) - spec).abs().square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors[phase] = loss.item() / spec.abs().square().mean().item()
    assert errors["vector"] < 0.1 and errors["angle"] > 3 * errors["vector"], errors


STFT = dict(encoder="stft", stft_dim=64, stft_hidden=128, stft_layers=2, stft_n_fft=160)


def test_stft_encoder_keeps_every_length_and_is_non_causal_only():
    model = tiny(**STFT, **ISTFT).eval()
    hop = model.hop_length
    with torch.no_grad():
        for length in (1, hop - 1, hop + 1, 2401):
            wav = torch.randn(2, 1, length) * 0.1
            codes = model.encode(wav)
            assert codes.shape == (2, model.num_codebooks, math.ceil(length / hop))
            assert model.reconstruct(wav).shape == wav.shape
            assert model(wav).wav.shape == wav.shape
        # Frame f reads the audio around sample f * hop: a click there moves frame f's
        # latent, and frames beyond the window and the blocks' reach stay as they were.
        wav = torch.randn(1, 1, 40 * hop) * 0.1
        clicked = wav.clone()
        clicked[..., 20 * hop] += 1.0
        moved = (model.encode_latent(clicked) - model.encode_latent(wav)).abs().amax(1)[0]
        reach = model.encoder.receptive_span() // hop // 2 + 1
        assert moved[20] > 0 and moved[: 20 - reach].amax() == 0 and moved[20 + reach :].amax() == 0
    with pytest.raises(ValueError, match="non-causal"):
        CodecDims(**{**TINY.__dict__, **STFT, "causal": True})
    with pytest.raises(ValueError, match="encoder must be one of"):
        CodecDims(**{**TINY.__dict__, "encoder": "wavenet"})


def test_a_new_istft_decoder_learns_to_decode_frozen_codes():
    """Decoder-only training on the codes of a fixed encoder and quantizer (what
    `parts.freeze` does): the reconstruction improves and the codes never change."""
    from training.codec_task import freeze_parts

    model = tiny(**ISTFT, quantizer_dropout=0.0).train()
    freeze_parts(model, ("encoder", "quantizer"))
    wav = _clip()
    with torch.no_grad():
        codes = model.eval().encode(wav)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.requires_grad for p in model.decoder.parameters())
    opt = torch.optim.Adam(trainable, lr=3e-3)
    history = []
    for _ in range(80):
        recon, _ = _losses(model, wav)
        opt.zero_grad()
        recon.backward()
        opt.step()
        history.append(recon.item())
    assert sum(history[-5:]) < 0.6 * sum(history[:5]), history[::10]
    with torch.no_grad():
        assert torch.equal(model.eval().encode(wav), codes)


def test_bf16_matmuls_change_only_inference_and_barely():
    """`set_matmul_dtype(bf16)` (what `compress` does on a CPU with bf16 units) runs the
    frame-rate 1x1 layers in bf16: the state dict stays as it was, training and gradients
    stay fp32, and the decoded audio stays within bf16 rounding of the fp32 output."""
    model = tiny(**STFT, **ISTFT).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    wav = torch.randn(1, 1, 4000) * 0.1
    with torch.inference_mode():
        latent = model.encode_latent(wav)
        reference = model.decode_latent(latent)
        model.set_matmul_dtype(torch.bfloat16)
        fast_latent = model.encode_latent(wav)
        fast = model.decode_latent(latent)
    assert fast.dtype == torch.float32 and not torch.equal(fast, reference)  # it did run bf16
    error = (fast - reference).pow(2).sum() / reference.pow(2).sum()
    assert error < 1e-3, error  # better than 30 dB SNR
    assert ((fast_latent - latent).norm() / latent.norm()) < 0.03
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # With gradients the blocks take the fp32 path: bit for bit what they gave before.
    model.train()
    latent = latent.clone()  # a normal tensor again, outside inference mode
    out = model.decode_latent(latent.requires_grad_())
    model.set_matmul_dtype(None)
    assert torch.equal(out.detach(), model.decode_latent(latent).detach())
    out.sum().backward()
    assert latent.grad is not None and torch.isfinite(latent.grad).all()
