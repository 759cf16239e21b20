"""ASR training: targets with special tokens, SpecAugment, a tiny model that overfits two
clips (its loss really falls and greedy decoding then gives back the text), and
`vocalis train asr` on the tiny config, which runs, exports and resumes exactly."""

import json
from pathlib import Path

import pytest
import torch

from asr.decoding import DecodingOptions, decode
from asr.model import SAMPLE_RATE, load_asr
from asr.transcribe import TranscribeOptions, transcribe
from core.audio import save_audio
from core.optim import autocast
from corpus.manifest import Utterance, write_manifest
from tests.helpers.asr import (
    STEPS,
    TEXTS,
    clip,
    clip_batch,
    clip_mels,
    one_thread,
    overfitted,
    tiny_model,
    tiny_tokenizer,
)
from training.asr_task import (
    IGNORE,
    ASRDataConfig,
    ASRTask,
    SpecAugment,
    packed_example,
    target_sequence,
    teacher_forcing,
)
from vocalis.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training/configs/asr_tiny.json"

_threads = pytest.fixture(autouse=True)(one_thread)


def test_targets_carry_the_special_tokens():
    tok = tiny_tokenizer()
    text = tok.encode(TEXTS[0])
    untimed = target_sequence(tok, TEXTS[0], 1.0, timed=False, no_speech=False)
    assert untimed == [tok.sot, tok.transcribe, tok.no_timestamps, *text, tok.eot]
    timed = target_sequence(tok, TEXTS[0], 1.0, timed=True, no_speech=False)
    assert timed == [
        tok.sot,
        tok.transcribe,
        tok.timestamp_token(0),
        *text,
        tok.timestamp_token(1.0),
        tok.eot,
    ]
    silent = target_sequence(tok, TEXTS[0], 1.0, timed=True, no_speech=True)
    assert silent == [tok.sot, tok.no_speech, tok.eot]
    inputs, targets = teacher_forcing([untimed, silent], tok, max_len=48)
    assert inputs.shape == targets.shape == (2, len(untimed) - 1)
    assert inputs[0].tolist() == untimed[:-1]
    assert targets[0, 0] == tok.transcribe and targets[0, 1] == IGNORE  # the prompt is given
    assert targets[1].tolist()[:2] == [tok.no_speech, tok.eot] and (targets[1, 2:] == IGNORE).all()
    cut, _ = teacher_forcing([untimed], tok, max_len=4)
    assert cut.shape == (1, 4)


def test_packed_examples_teach_two_segments_and_a_cut_off_one():
    tok = tiny_tokenizer()
    a, b = clip(0, 1.0), clip(1, 0.8)
    ts, hello, good = tok.timestamp_token, tok.encode(TEXTS[0]), tok.encode(TEXTS[1])
    wav, seq = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200)
    assert wav.shape == (16000 + 3200 + 12800,) and (wav[16000:19200] == 0).all()
    assert seq == [
        tok.sot,
        tok.transcribe,
        ts(0),
        *hello,
        ts(1.0),
        ts(1.2),
        *good,
        ts(2.0),
        tok.eot,
    ]
    wav, seq = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200, keep=4000)
    assert wav.shape == (16000 + 3200 + 4000,)
    assert seq == [tok.sot, tok.transcribe, ts(0), *hello, ts(1.0), ts(1.2), tok.eot]
    # in a batch: with pack_prob 1 the pairs (0, 1) and (2, 3) are joined, item 4 stays alone
    model = tiny_model()
    task = ASRTask(model, ASRDataConfig(pack_prob=1.0, no_speech_prob=0.0), SpecAugment())
    lengths = [16000, 12800, 8000, 8000, 4000]
    wav = torch.randn(5, 16000)
    examples = task._examples(
        wav,
        lengths,
        list(TEXTS) * 2 + ["x"],
        torch.zeros(5, dtype=torch.bool),
        torch.ones(5, dtype=torch.bool),
    )
    assert len(examples) == 3 and examples[2][0].shape == (4000,)
    assert 28800 < examples[0][0].shape[0] <= 28800 + 0.6 * 16000


def test_spec_augment_masks_bands_and_frames_inside_each_item():
    torch.manual_seed(0)
    mel = torch.ones(3, 80, 200)
    frames = torch.tensor([200, 120, 50])
    out = SpecAugment(freq_masks=2, freq_width=15, time_masks=2, time_ratio=0.1)(mel, frames)
    assert out.shape == mel.shape and (out == 0).any()
    assert ((out == 0).float().mean(dim=(1, 2)) < 0.5).all()
    untouched = SpecAugment(freq_masks=0, time_masks=0)(mel, frames)
    assert torch.equal(untouched, mel)


def test_a_tiny_model_overfits_two_clips():
    model, losses = overfitted()
    assert len(losses) == STEPS
    assert losses[-1] < 0.05 * losses[0] and losses[-1] < 0.2
    mel, frames = clip_mels()
    assert [r.text for r in decode(model, mel, frames, DecodingOptions())] == list(TEXTS)
    timed = decode(model, mel, frames, DecodingOptions(timestamps=True))
    assert [r.text for r in timed] == list(TEXTS)
    tok = model.tokenizer
    assert tok.token_time(timed[0].tokens[0]) == 0.0
    assert tok.token_time(timed[0].tokens[-1]) == pytest.approx(1.0)
    results = list(transcribe(model, [clip(0, 1.0), clip(1, 0.8)], TranscribeOptions()))
    assert [r.text for r in results] == list(TEXTS)
    assert [r.segments[0].end for r in results] == pytest.approx([1.0, 0.8])
    assert all(r.avg_logprob > -0.2 and r.no_speech_prob < 0.1 for r in results)


def _manifest(tmp_path, n=4):
    utts = []
    for i in range(n):
        path = tmp_path / "audio" / f"c{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, clip(i % 2, 0.5 + 0.1 * i)[None], SAMPLE_RATE)
        utts.append(
            Utterance(f"c{i}", str(path), 0.5 + 0.1 * i, SAMPLE_RATE, TEXTS[i % 2], "s", "t")
        )
    return write_manifest(tmp_path / "train.jsonl", utts)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_asr_tiny_config_runs_exports_and_resumes(tmp_path, capsys):
    manifest = str(_manifest(tmp_path))
    base = ["train", "asr", "--config", str(TINY_CONFIG), "--manifest", manifest]
    assert main([*base, "--out", str(tmp_path / "tiny")]) == 0
    assert "done: step 3" in capsys.readouterr().out
    assert load_asr(tmp_path / "tiny" / "model.safetensors").dims.audio_dim == 32

    # Two steps, then two more, equal four in one go (a flat learning rate, so that the
    # schedule does not depend on the step budget of each session).
    config = json.loads(TINY_CONFIG.read_text())
    config["train"].update(checkpoint_every=2, min_lr_ratio=1.0)
    (tmp_path / "flat.json").write_text(json.dumps(config))
    base[3] = str(tmp_path / "flat.json")
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert main([*base, "--out", str(resumed), "--steps", "2"]) == 0
    tokenizer = (resumed / "tokenizer.json").read_text()
    assert main([*base, "--out", str(resumed), "--steps", "4"]) == 0
    assert "done: step 4" in capsys.readouterr().out
    assert main([*base, "--out", str(straight), "--steps", "4"]) == 0
    assert [r["step"] for r in _log(resumed)] == [1, 2, 3, 4]
    assert [r["loss"] for r in _log(resumed)] == pytest.approx(
        [r["loss"] for r in _log(straight)], abs=1e-5
    )
    assert (resumed / "tokenizer.json").read_text() == tokenizer
    model = load_asr(resumed / "model.safetensors")
    assert model.tokenizer.to_json() == tokenizer


def test_train_asr_init_takes_the_configs_dropout_and_rejects_other_dims(tmp_path, capsys):
    manifest = str(_manifest(tmp_path, n=2))
    base = ["train", "asr", "--manifest", manifest, "--steps", "1"]
    assert main([*base, "--config", str(TINY_CONFIG), "--out", str(tmp_path / "a")]) == 0
    start = tmp_path / "a" / "model.safetensors"

    config = json.loads(TINY_CONFIG.read_text())
    config["model"].update(dropout=0.2, attn_dropout=0.0)
    (tmp_path / "dropout.json").write_text(json.dumps(config))
    argv = [*base, "--config", str(tmp_path / "dropout.json"), "--init", str(start)]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    dims = load_asr(tmp_path / "b" / "model.safetensors").dims
    assert (dims.dropout, dims.attn_dropout) == (0.2, 0.0)

    config["model"]["audio_dim"] = 48
    (tmp_path / "wider.json").write_text(json.dumps(config))
    capsys.readouterr()
    argv = [*base, "--config", str(tmp_path / "wider.json"), "--init", str(start)]
    assert main([*argv, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "model dims differ" in err and len(err.strip().splitlines()) == 1


def test_train_asr_exports_the_ctc_head_and_continues_it_with_init(tmp_path, capsys):
    manifest = str(_manifest(tmp_path, n=2))
    config = json.loads(TINY_CONFIG.read_text())
    config["loss"] = {"ctc_weight": 0.3, "ctc_units": "chars"}
    (tmp_path / "ctc.json").write_text(json.dumps(config))
    base = ["train", "asr", "--manifest", manifest, "--steps", "1"]
    argv = [*base, "--config", str(tmp_path / "ctc.json")]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    first = load_asr(tmp_path / "a" / "model.safetensors")
    assert first.dims.ctc_units == "chars" and first.ctc is not None
    # --init with the head: the config's model section needs no word of it, and the head
    # goes on training (and is exported again) ...
    start = str(tmp_path / "a" / "model.safetensors")
    assert main([*argv, "--init", start, "--out", str(tmp_path / "b")]) == 0
    again = load_asr(tmp_path / "b" / "model.safetensors")
    assert again.dims.ctc_units == "chars"
    assert not torch.equal(again.ctc.weight, first.ctc.weight)
    # ... and without a CTC loss it is kept as it was.
    assert (
        main([*base, "--config", str(TINY_CONFIG), "--init", start, "--out", str(tmp_path / "c")])
        == 0
    )
    kept = load_asr(tmp_path / "c" / "model.safetensors")
    assert torch.equal(kept.ctc.weight, first.ctc.weight)
    # A head over other units than the loss's: a one-line error.
    config["loss"]["ctc_units"] = "pieces"
    (tmp_path / "pieces.json").write_text(json.dumps(config))
    capsys.readouterr()
    argv = [*base, "--config", str(tmp_path / "pieces.json"), "--init", start]
    assert main([*argv, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "spells chars, the loss asks for pieces" in err and len(err.strip().splitlines()) == 1


def test_train_asr_reports_bad_configs_on_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"max_steps": 1}, "model": {"audio_width": 3}}))
    manifest = str(_manifest(tmp_path, n=2))
    assert main(["train", "asr", "--config", str(bad), "--manifest", manifest]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'audio_width'" in err and len(err.strip().splitlines()) == 1
    bad.write_text(json.dumps({"codec": {}}))
    assert main(["train", "asr", "--config", str(bad)]) == 2
    assert "unknown config section 'codec'" in capsys.readouterr().err


def test_ctc_targets_skip_cut_windows_and_keep_no_speech_empty():
    from training.asr_task import ctc_target, packed_example, target_sequence

    tok = tiny_tokenizer()
    a, b = clip(0, 1.0), clip(1, 0.8)
    _, full = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200)
    assert ctc_target(full, tok) == tok.encode(TEXTS[0]) + tok.encode(TEXTS[1])
    _, cut = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200, keep=4000)
    assert ctc_target(cut, tok) is None
    timed = target_sequence(tok, TEXTS[0], 1.0, timed=True, no_speech=False)
    assert ctc_target(timed, tok) == tok.encode(TEXTS[0])
    silent = target_sequence(tok, TEXTS[0], 1.0, timed=False, no_speech=True)
    assert ctc_target(silent, tok) == []


def test_character_ctc_targets_spell_each_utterance():
    from asr.ctc import CTC_ALPHABET, ctc_chars
    from training.asr_task import ctc_target, packed_example

    def spelled(ids):
        return "".join(CTC_ALPHABET[i] for i in ids)

    assert spelled(ctc_chars("Twenty-eight  Caf\u00e9s, O'Brien!")) == "twenty eight cafes o'brien"
    tok = tiny_tokenizer()
    a, b = clip(0, 1.0), clip(1, 0.8)
    _, full = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200)
    both = spelled(ctc_target(full, tok, "chars"))
    assert both == spelled(ctc_chars(TEXTS[0] + " " + TEXTS[1]))  # a word break between them
    _, cut = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200, keep=4000)
    assert ctc_target(cut, tok, "chars") is None


@pytest.mark.parametrize("units", ["pieces", "chars"])
def test_ctc_head_trains_with_the_model_and_is_exported_with_it(units):
    from asr.ctc import CTC_ALPHABET
    from training.asr_task import ASRLossConfig

    def ctc_task(model):
        return ASRTask(
            model,
            ASRDataConfig(no_speech_prob=0.0),
            SpecAugment(freq_masks=0, time_masks=0),
            ASRLossConfig(ctc_weight=0.3, ctc_units=units),
        )

    torch.manual_seed(0)
    model = tiny_model(seed=2).train()
    task = ctc_task(model)
    part = task.parts()["model"]
    assert part is not model and part.model is model
    n_units = model.tokenizer.n_text if units == "pieces" else len(CTC_ALPHABET)
    assert part.ctc.out_features == n_units + 1 and part.blank == n_units
    optimizer = torch.optim.AdamW(part.parameters(), lr=3e-3)
    batch = clip_batch()
    first = None
    for _ in range(40):
        out = task.loss("model", batch, {"model": part})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = first if first is not None else out.metrics["ctc"]
    assert out.metrics["ctc"] < 0.5 * first
    # The export carries the trained head (the same parameters) and says what it spells.
    exported, dims = task.export()
    assert dims.ctc_units == units and exported.ctc is part.ctc
    assert exported.encoder is model.encoder and exported.decoder is model.decoder
    # Started from such a model (--init), the head trained is the model's own.
    again = ctc_task(exported)
    part = again.parts()["model"]
    assert part.ctc is None and part.head is exported.ctc
    assert again.export()[0] is exported
    other = "chars" if units == "pieces" else "pieces"
    with pytest.raises(ValueError, match=f"spells {units}, the loss asks for {other}"):
        ASRTask(exported, ASRDataConfig(), SpecAugment(), ASRLossConfig(0.3, other))


def test_speed_perturbation_changes_tempo_and_keeps_within_the_window():
    from training.asr_task import perturb_speed

    batch = clip_batch((1.0, 0.8))
    keep = torch.tensor([False, True])
    fast, lengths = perturb_speed(
        batch.wav, batch.lengths, ASRDataConfig(speed=(1.25, 1.25)), skip=keep
    )
    assert lengths.tolist() == [12800, 12800]  # 1 s at 1.25x; the skipped item unchanged
    assert torch.equal(fast[1, :12800], batch.wav[1, :12800])
    # the chirp's pitch rises with its tempo: more zero crossings per second
    crossings = lambda x: int((x[:-1].sign() != x[1:].sign()).sum())  # noqa: E731
    assert crossings(fast[0, :12800]) > 1.15 * crossings(batch.wav[0, :12800])
    slow, lengths = perturb_speed(
        batch.wav, batch.lengths, ASRDataConfig(speed=(0.5, 0.5), max_seconds=1.5), skip=~keep
    )
    # 0.8 s at 0.5x would be 1.6 s: held to 0.55x (23273 samples) to fit the 1.5 s window
    assert lengths.tolist() == [16000, 23273]
    same, lengths = perturb_speed(batch.wav, batch.lengths, ASRDataConfig(), skip=~keep)
    assert same is batch.wav


def test_a_lead_moves_speech_later_and_its_timestamps_with_it():
    from training.asr_task import add_lead

    batch = clip_batch((1.0, 0.8))
    skip = torch.tensor([False, True])
    off = add_lead(batch.wav, batch.lengths, ASRDataConfig(), skip=skip)
    assert off[0] is batch.wav and off[2].tolist() == [0, 0]  # off: nothing drawn or moved
    data = ASRDataConfig(lead_prob=1.0, lead_seconds=(0.5, 0.5), max_seconds=1.2)
    wav, lengths, leads = add_lead(batch.wav, batch.lengths, data, skip=skip)
    # 0.5 s would take the 1 s clip past the 1.2 s window: 0.2 s; the skipped item stays
    assert leads.tolist() == [3200, 0] and lengths.tolist() == [19200, 12800]
    assert (wav[0, :3200] == 0).all() and torch.equal(wav[0, 3200:19200], batch.wav[0, :16000])
    assert torch.equal(wav[1, :12800], batch.wav[1, :12800])
    tok = tiny_tokenizer()
    ts = tok.timestamp_token
    timed = target_sequence(tok, TEXTS[0], 1.2, timed=True, no_speech=False, start=0.2)
    assert timed[2] == ts(0.2) and timed[-2] == ts(1.2)
    a, b = clip(0, 1.0), clip(1, 0.8)
    _, seq = packed_example(tok, a, TEXTS[0], b, TEXTS[1], gap=3200, lead_a=1600, lead_b=3200)
    assert seq[2] == ts(0.1) and ts(1.4) in seq  # b's speech: 1.0 + 0.2 gap + 0.2 lead
    with pytest.raises(ValueError, match="lead_seconds"):
        ASRDataConfig(lead_seconds=(0.5, 0.2))


def test_noise_is_mixed_at_the_drawn_snr_and_only_under_speech():
    from training.asr_task import add_noise

    torch.manual_seed(0)
    batch = clip_batch((1.0, 0.8))
    data = ASRDataConfig(noise_prob=1.0, snr_db=(10.0, 10.0))
    noisy = add_noise(batch.wav, batch.lengths, data, skip=torch.tensor([False, True]))
    noise = noisy[0] - batch.wav[0]
    snr = 20 * torch.log10(batch.wav[0].pow(2).mean().sqrt() / noise.pow(2).mean().sqrt())
    assert abs(float(snr) - 10.0) < 0.5
    assert torch.equal(noisy[1], batch.wav[1])  # skipped (a no-speech item)
    assert add_noise(batch.wav, batch.lengths, ASRDataConfig(), skip=~batch.lengths.bool()) is (
        batch.wav
    )
    with pytest.raises(ValueError, match="speed"):
        ASRDataConfig(speed=(1.1, 0.9))


def test_vocal_tract_warp_moves_formants_and_keeps_the_rest():
    """A tone's band moves by the warp factor (up for a factor below 1, down above 1), a
    factor of 1 is the identity, and padded frames stay empty."""
    import math

    from core.audio import log_mel, normalize_log_mel
    from training.asr_task import mel_centres, warp_vocal_tract

    centres = mel_centres()
    assert centres.shape == (80,) and bool((centres[1:] > centres[:-1]).all())
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (500.0, 1500.0, 3000.0):
        mel = normalize_log_mel(log_mel(torch.sin(2 * math.pi * hz * t)))[None]  # (1, M, F)
        mel = torch.cat([mel, torch.zeros_like(mel)], dim=-1)  # padded frames after the clip
        warped = warp_vocal_tract(mel.expand(3, -1, -1), torch.tensor([0.9, 1.0, 1.1]))
        peaks = centres[warped[:, :, :100].mean(-1).argmax(-1)]  # (3,) Hz
        base = float(peaks[1])
        assert torch.equal(warped[1], mel[0])
        # the tone is read where it lies: heard at hz / factor (to the band's width)
        assert abs(float(peaks[0]) - base / 0.9) < 0.06 * base
        assert abs(float(peaks[2]) - base / 1.1) < 0.06 * base
        assert bool((warped[:, :, 100:] == 0).all())
    with pytest.raises(ValueError, match="warp"):
        ASRDataConfig(warp=(1.1, 0.9))
    with pytest.raises(ValueError, match="warp_prob"):
        ASRDataConfig(warp_prob=1.5)


def test_warp_draws_nothing_when_off_and_warps_a_share_when_on():
    model = tiny_model(seed=2).train()
    mel = torch.randn(64, 80, 20)
    off = ASRTask(model, ASRDataConfig(), SpecAugment())
    torch.manual_seed(0)
    first = torch.rand(3)
    torch.manual_seed(0)
    assert off._warp(mel) is mel
    assert torch.equal(torch.rand(3), first)  # no random number drawn: old runs repeat
    on = ASRTask(model, ASRDataConfig(warp_prob=0.5, warp=(0.9, 1.1)), SpecAugment())
    warped = on._warp(mel)
    changed = (warped - mel).abs().amax(dim=(1, 2)) > 0
    assert 16 <= int(changed.sum()) <= 48  # about half of 64


def test_loss_with_speed_and_noise_augmentation_is_finite():
    torch.manual_seed(0)
    model = tiny_model(seed=2).train()
    data = ASRDataConfig(
        speed=(0.9, 1.1),
        noise_prob=0.5,
        no_speech_prob=0.5,
        pack_prob=0.5,
        warp_prob=0.5,
        lead_prob=0.5,
    )
    task = ASRTask(model, data, SpecAugment())
    for _ in range(3):
        out = task.loss("model", clip_batch(), {"model": model})
        assert torch.isfinite(out.loss)


def test_bf16_autocast_leaves_the_features_in_fp32():
    """Under the trainer's bf16 autocast the model computes in bfloat16, but the log-mel
    features it is given are fp32, as without it: the same mel either way."""
    model = tiny_model(seed=2).train()
    task = ASRTask(model, ASRDataConfig(speed=(0.9, 1.1), noise_prob=0.5), SpecAugment())
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        with autocast("cpu", precision):
            out = task.loss("model", clip_batch(), {"model": model})
        assert torch.isfinite(out.loss)
    assert [mel.dtype for mel in seen] == [torch.float32, torch.float32]
    assert torch.equal(seen[0], seen[1])


def test_config_manifests_resolve_under_the_data_root_or_beside_the_config(tmp_path, monkeypatch):
    import argparse

    from vocalis.commands.train import data_section

    monkeypatch.setenv("VOCALIS_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    config = {"data": {"manifests": ["synth/manifest.jsonl", {"path": "../labels/x.jsonl"}]}}
    args = argparse.Namespace(config=str(tmp_path / "configs" / "c.json"), manifest=None)
    specs, values = data_section(config, args, "c")
    assert [s.path for s in specs] == [
        str(tmp_path / "data" / "synth" / "manifest.jsonl"),
        str(tmp_path / "configs" / ".." / "labels" / "x.jsonl"),
    ]
    assert values == {}
    # On the command line ./ and ../ mean the working directory.
    args.manifest = ["./m.jsonl", "other.jsonl"]
    specs, _ = data_section(config, args, "c")
    assert [s.path for s in specs] == [
        str(tmp_path / "m.jsonl"),
        str(tmp_path / "data" / "other.jsonl"),
    ]
