"""`vocalis train valle` and `vocalis say` end to end at tiny sizes: a corpus of tones, a
random tiny codec, a few training steps, then synthesis and its bad-input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.model import Codec, CodecDims, save_codec
from corpus.manifest import Utterance, write_manifest
from vocalis.cli import main

CODEC = CodecDims(
    strides=(4, 5, 8),  # 150 frames per second at 24 kHz
    encoder_channels=(4, 8, 16, 32),
    decoder_channels=(32, 16, 8, 4),
    latent_dim=16,
    n_codebooks=3,
    codebook_size=32,
    codebook_dim=4,
    dilations=(1,),
    compress=2,
)
TEXTS = ("Hello world.", "Good morning.", "See you soon.", "Thank you.")
MODEL = {"n_codebooks": 3, "dim": 32, "heads": 2, "kv_heads": 1, "ar_depth": 1, "nar_depth": 1}


def tone(path, pitch: float, seconds: float, rate: int = 16000, level: float = 0.3):
    t = torch.arange(int(seconds * rate)) / rate
    wav = level * torch.sin(2 * math.pi * pitch * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))
    sf.write(str(path), wav.numpy(), rate)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, monkeypatch_module):
    """A tiny codec, a two-speaker corpus and a VALL-E trained on it for a few steps."""
    root = tmp_path_factory.mktemp("tts")
    monkeypatch_module.setenv("VOCALIS_DATA", str(root / "data"))
    torch.manual_seed(0)
    codec_path = save_codec(root / "codec", Codec(CODEC).eval())
    utts = []
    for s, pitch in enumerate((140.0, 220.0)):
        for i, text in enumerate(TEXTS):
            path = tone(root / f"s{s}_{i}.wav", pitch * (1 + 0.05 * i), 0.8 + 0.1 * i)
            utts.append(
                Utterance(f"s{s}_{i}", str(path), 0.8 + 0.1 * i, 16000, text, f"spk{s}", "test")
            )
    manifest = write_manifest(root / "tones.jsonl", utts)
    config = {
        "train": {
            "max_steps": 3,
            "batch_size": 4,
            "lr": 1e-3,
            "checkpoint_every": 3,
            "progress": False,
            "device": "cpu",
        },
        "model": MODEL,
        "data": {
            "manifests": [str(manifest)],
            "codec": str(codec_path),
            "prompt_seconds": [0.5, 5.0],
            "batch_seconds": 10.0,
        },
    }
    (root / "valle.json").write_text(json.dumps(config))
    run = root / "run"
    assert main(["train", "valle", "--config", str(root / "valle.json"), "--out", str(run)]) == 0
    return root, codec_path, run / "model.safetensors"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def say(trained, *extra, text="Hello world.", voice=None, out="out.wav"):
    root, codec_path, model = trained
    voice = voice or str(root / "s0_3.wav")
    argv = [
        "say",
        text,
        "-o",
        str(root / out),
        "--voice",
        voice,
        "--model",
        str(model),
        "--codec",
        str(codec_path),
        "--seed",
        "0",
        *extra,
    ]
    return main(argv)


def test_training_writes_a_model_with_the_codec_and_vocabulary(trained):
    root, _, model = trained
    from tts.valle import load_valle

    m = load_valle(model)
    assert m.dims.n_codebooks == 3 and m.dims.cardinality == 32
    assert m.dims.frame_rate == 150.0 and len(m.dims.codec_sha256) == 64
    assert json.loads((root / "run" / "phonemes.json").read_text())  # kept for resumes
    log = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    assert {"ar/loss", "nar/loss"} <= set(log[-1])


def test_say_writes_speech_at_the_codec_rate_and_is_repeatable(trained, capsys):
    root = trained[0]
    assert say(trained, "--prompt-text", "Good morning.") == 0
    assert "real-time factor" in capsys.readouterr().out
    a, rate = sf.read(str(root / "out.wav"))
    assert rate == 24000 and len(a) > 0
    assert say(trained, "--prompt-text", "Good morning.", out="again.wav") == 0
    b, _ = sf.read(str(root / "again.wav"))
    assert (a == b).all()  # the same seed gives the same speech
    # In fp32 the NAR fills the same frames the AR sampled: the same length of speech
    assert say(trained, "--prompt-text", "Good morning.", "--precision", "fp32", out="f.wav") == 0
    c, _ = sf.read(str(root / "f.wav"))
    assert len(c) == len(a)


def test_the_nar_and_the_ar_run_in_the_precisions_asked(trained):
    from core.quantize import Int8Linear
    from tts.synthesize import Synthesizer

    _, codec_path, model = trained
    for precision, nar in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        synth = Synthesizer.load(model, codec_path, precision=precision)
        assert {p.dtype for p in synth.model.nar.parameters()} == {nar}
        assert {p.dtype for p in synth.model.ar.parameters()} == {torch.float32}
        assert not any(isinstance(m, Int8Linear) for m in synth.model.modules())
    synth = Synthesizer.load(model, codec_path, ar_precision="int8")
    assert not any(isinstance(m, torch.nn.Linear) for m in synth.model.ar.modules())
    assert any(isinstance(m, Int8Linear) for m in synth.model.ar.modules())
    assert not any(isinstance(m, Int8Linear) for m in synth.model.nar.modules())


def test_the_ar_in_int8_speaks_and_an_impossible_precision_is_one_line(trained, capsys):
    root = trained[0]
    args = ("--prompt-text", "Good morning.", "--ar-precision")
    assert say(trained, *args, "int8", out="q.wav") == 0
    q, rate = sf.read(str(root / "q.wav"))
    assert rate == 24000 and len(q) > 0 and np.isfinite(q).all()
    capsys.readouterr()
    assert say(trained, *args, "int8", "--device", "cuda", out="bad.wav") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8" in err[0] and "CPU" in err[0]
    assert not (root / "bad.wav").exists()


def test_long_text_is_split_and_a_prompt_at_another_rate_is_resampled(trained, capsys):
    root = trained[0]
    voice = tone(root / "8k.wav", 150.0, 1.5, rate=8000)
    text = "One sentence here. " * 3 + "And a last one!"
    assert say(trained, "--prompt-text", "Good morning.", voice=str(voice), text=text) == 0
    assert "4 sentence(s)" in capsys.readouterr().out


def test_emoji_are_skipped_with_a_warning(trained, capsys):
    assert say(trained, "--prompt-text", "Good morning.", text="Hello \U0001f600 world.") == 0
    assert "skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, voice_kind, message",
    [
        ("", "ok", "nothing to say"),
        ("\U0001f600\U0001f680", "ok", "nothing to say"),
        ("Hello.", "short", "at least 1 s"),
        ("Hello.", "silent", "silent"),
    ],
)
def test_bad_input_gives_a_one_line_error(trained, capsys, text, voice_kind, message):
    root = trained[0]
    voice = {
        "ok": root / "s0_3.wav",
        "short": tone(root / "short.wav", 200.0, 0.4),
        "silent": tone(root / "silent.wav", 200.0, 2.0, level=0.0),
    }[voice_kind]
    assert say(trained, "--prompt-text", "Good morning.", text=text, voice=str(voice)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("vocalis: error:")


@pytest.mark.parametrize(
    "name",
    [
        "valle_cpu",
        "valle_gpu",
        "valle_lease",
        "valle_ar_cpu",
        "valle_ar_aligned_cpu",
        "valle_lease_aligned",
    ],
)
def test_shipped_configs_build(name):
    from pathlib import Path

    from training.trainer import TrainConfig
    from training.valle_task import VALLEDataConfig, VALLEParts
    from tts.valle import VALLEDims
    from vocalis.commands.train import build, read_config
    from vocalis.commands.train_tts import VALLE_SECTIONS

    config = read_config(
        Path(__file__).parents[1] / f"training/configs/{name}.json", VALLE_SECTIONS
    )
    build(TrainConfig, {**config["train"], "out_dir": "x"}, "train")
    build(VALLEDims, config["model"], "model", n_phonemes=64)
    data = {k: v for k, v in config["data"].items() if k != "manifests"}
    build(VALLEDataConfig, data, "data")
    build(VALLEParts, config.get("parts", {}), "parts")


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("model", {"cardinality": 64}, "model.cardinality comes from the data and codec"),
        ("model", {"depth": 3}, "unknown key 'depth'"),
        ("data", {"prompt_seconds": [5, 2]}, "prompt_seconds"),
        ("parts", {"freeze": ["nar"]}, "parts.freeze needs --init"),
        ("parts", {"freeze": ["decoder"]}, "freeze: unknown part 'decoder'"),
        ("parts", {"freeze": ["ar", "nar"]}, "every part frozen"),
    ],
)
def test_bad_valle_configs_get_one_line_errors(tmp_path, capsys, section, values, message):
    config = {"train": {"max_steps": 1}, "model": {}, "data": {"manifests": ["x.jsonl"]}}
    config.setdefault(section, {}).update(values)
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main(["train", "valle", "--config", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_prompt_without_text_is_transcribed_by_the_asr(trained, capsys):
    from asr.model import SAMPLE_RATE, save_asr
    from core.audio import save_audio
    from tests.helpers.asr import TEXTS, clip, overfitted

    root = trained[0]
    asr = save_asr(root / "asr", overfitted()[0])
    voice = root / "chirp.wav"
    save_audio(voice, clip(0, 1.2)[None], SAMPLE_RATE)  # the tiny ASR hears TEXTS[0] in it
    assert say(trained, "--asr", str(asr), voice=str(voice)) == 0
    assert f"prompt heard as: {TEXTS[0]!r}" in capsys.readouterr().out
    assert say(trained, "--asr", str(root / "none.safetensors"), voice=str(voice)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no transcript and no ASR model" in err[0]


def test_a_transcript_beside_the_prompt_is_used_before_the_asr(trained, capsys):
    import shutil

    root = trained[0]
    voice = root / "beside" / "voice.wav"
    voice.parent.mkdir()
    shutil.copy(root / "s0_3.wav", voice)
    no_asr = ("--asr", str(root / "none.safetensors"))  # any use of the ASR is an error
    voice.with_suffix(".txt").write_text("Good morning.\n")
    assert say(trained, *no_asr, voice=str(voice)) == 0
    assert "prompt heard as" not in capsys.readouterr().out
    # the same prompt with the text given: the same speech
    a, _ = sf.read(str(root / "out.wav"))
    assert say(trained, "--prompt-text", "Good morning.", voice=str(voice), out="given.wav") == 0
    b, _ = sf.read(str(root / "given.wav"))
    assert (a == b).all()
    # empty text is refused before the prompt is read: no error about its transcript
    voice.with_suffix(".txt").unlink()
    assert say(trained, *no_asr, voice=str(voice), text=" ") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to say" in err[0]
    voice.with_suffix(".txt").write_bytes(b"\xff\xfe")
    assert say(trained, *no_asr, voice=str(voice)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "voice.txt' is not UTF-8 text" in err[0]


def test_a_long_prompt_says_what_the_asr_heard_in_its_cut(trained, capsys, monkeypatch):
    """Over 12 s, the prompt is cut and the cut transcribed even with a transcript beside
    it (which covers the whole clip); `say` then shows what was heard."""
    from core.audio import load_audio, save_audio
    from tts.synthesize import MAX_PROMPT_SECONDS, Synthesizer

    heard = []

    def fake_asr(self, wav, sample_rate, name):
        heard.append(wav.shape[-1] / sample_rate)
        return "Good morning."

    monkeypatch.setattr(Synthesizer, "_transcribe", fake_asr)
    root = trained[0]
    wav, rate = load_audio(root / "s0_3.wav")
    voice = root / "long" / "voice.wav"
    voice.parent.mkdir()
    reps = int(MAX_PROMPT_SECONDS * rate / wav.shape[-1]) + 2
    save_audio(voice, wav.repeat(1, reps), rate)
    voice.with_suffix(".txt").write_text("Hello world. " * reps)
    assert say(trained, voice=str(voice)) == 0
    captured = capsys.readouterr()
    assert heard == [MAX_PROMPT_SECONDS]
    assert "prompt heard as: 'Good morning.'" in captured.out
    assert f"using its first {MAX_PROMPT_SECONDS:g} s" in captured.err


def test_train_valle_from_a_token_pack_without_the_audio(trained, tmp_path, capsys):
    import shutil

    root, codec_path, _ = trained
    audio = tmp_path / "audio"
    audio.mkdir()
    utts = []
    for s in range(2):
        for i, text in enumerate(TEXTS):
            path = tone(audio / f"{s}_{i}.wav", 150.0 + 50 * s + 10 * i, 1.0)
            utts.append(Utterance(f"p{s}_{i}", str(path), 1.0, 16000, text, f"p{s}", "test"))
    manifest = write_manifest(tmp_path / "pack_src.jsonl", utts)
    pack = tmp_path / "pack"
    assert main(["data", "pack", str(manifest), "--codec", str(codec_path), "-o", str(pack)]) == 0
    assert "8 transcribed utterances" in capsys.readouterr().out
    small = ["data", "pack", str(manifest), "--codec", str(codec_path), "--max-hours", "0.0013"]
    assert main([*small, "-o", str(tmp_path / "small")]) == 0  # 4.68 s: four 1 s clips
    assert "4 transcribed utterances (0.00 h)" in capsys.readouterr().out
    assert main([*small[:-1], "0", "-o", str(tmp_path / "none")]) == 2
    assert "--max-hours must be positive" in capsys.readouterr().err
    shutil.rmtree(audio)  # the pack alone must do
    config = json.loads((root / "valle.json").read_text())
    config["train"]["max_steps"] = 1
    (tmp_path / "c.json").write_text(json.dumps(config))
    argv = ["train", "valle", "--config", str(tmp_path / "c.json"), "--manifest", str(pack)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert "from 8 utterances (0 without tokens" in capsys.readouterr().out
    other = save_codec(tmp_path / "other", Codec(CODEC))  # same dims, other weights
    config["data"]["codec"] = str(other)
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 2
    assert "made with another codec" in capsys.readouterr().err
    # A codec that kept this one's encoder and codebooks takes the pack as its own.
    from core.checkpoint import weights_sha256

    kept = {"same_codes_as": [weights_sha256(codec_path)]}
    config["data"]["codec"] = str(save_codec(tmp_path / "kept", Codec(CODEC), training=kept))
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main([*argv, "--out", str(tmp_path / "run3")]) == 0


def test_a_codec_that_kept_the_codes_speaks_for_the_tts_without_a_warning(trained, tmp_path):
    """A decoder trained anew on frozen codes (`parts.freeze`) records the codec it kept the
    codes of; the TTS trained on that codec's tokens takes it without a warning, and warns
    for any other codec."""
    import warnings

    from core.checkpoint import weights_sha256
    from tts.synthesize import Synthesizer

    _, codec_path, model = trained
    torch.manual_seed(1)
    kept = {"same_codes_as": [weights_sha256(codec_path)]}
    same = save_codec(tmp_path / "same", Codec(CODEC).eval(), training=kept)
    other = save_codec(tmp_path / "other", Codec(CODEC).eval())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Synthesizer.load(model, same)
    with pytest.warns(UserWarning, match="weights differ from those the TTS was trained with"):
        Synthesizer.load(model, other)


def test_a_frozen_nar_is_exported_unchanged_while_the_ar_trains(trained, tmp_path, capsys):
    """`parts.freeze: ["nar"]` with --init spends every step on the AR; the NAR comes out as
    it went in. Through a codec that kept the codes, the model still names the codec its
    tokens came from, so --init's dims match. The AR may move to the aligned positions on
    the way (not part of its weights), and then speaks with them."""
    import dataclasses

    from core.checkpoint import weights_sha256
    from tts.valle import load_valle

    root, codec_path, model = trained
    kept = {"same_codes_as": [weights_sha256(codec_path)]}
    torch.manual_seed(2)
    new_decoder = save_codec(tmp_path / "kept", Codec(CODEC).eval(), training=kept)
    config = json.loads((root / "valle.json").read_text())
    config["train"].update(max_steps=2, checkpoint_every=2)
    config["parts"] = {"freeze": ["nar"]}
    # a training setting and the AR's layout: --init still fits
    config["model"] = {**MODEL, "attn_dropout": 0.0, "ar_positions": "aligned"}
    config["data"]["codec"] = str(new_decoder)
    (tmp_path / "c.json").write_text(json.dumps(config))
    argv = ["train", "valle", "--config", str(tmp_path / "c.json"), "--init", str(model)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert "(NAR frozen)" in capsys.readouterr().out
    before, after = load_valle(model), load_valle(tmp_path / "run" / "model.safetensors")
    # The codec id is the init's, not the new decoder's; only the dropout and layout changed.
    assert after.dims == dataclasses.replace(before.dims, attn_dropout=0.0, ar_positions="aligned")
    for name, tensor in before.nar.state_dict().items():
        assert torch.equal(after.nar.state_dict()[name], tensor), name
    changed = [
        n for n, t in before.ar.state_dict().items() if not torch.equal(after.ar.state_dict()[n], t)
    ]
    assert changed  # the AR did train
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "ar/loss" in log[-1] and "nar/loss" not in log[-1]
    aligned = (tmp_path, codec_path, tmp_path / "run" / "model.safetensors")
    voice = str(root / "s0_3.wav")
    for precision in ("fp32", "int8"):
        argv = ["--ar-precision", precision, "--prompt-text", "Good morning."]
        assert say(aligned, *argv, voice=voice, out=f"{precision}.wav") == 0
        assert len(sf.read(str(tmp_path / f"{precision}.wav"))[0]) > 0


def test_text_gain_scores_the_target_frames_with_own_and_other_text(trained):
    from core.audio import load_audio
    from corpus.manifest import read_manifest
    from tts.evaluate import HELD_OUT, SEEN, TTSEvalItem
    from tts.synthesize import Synthesizer
    from tts.text_gain import measure_text_gain, other_index, same_length, target_frame_loss

    def mono(path):
        wav, rate = load_audio(path)  # (C, T), as measure_text_gain reads it
        return wav.mean(0), rate

    root, codec_path, model = trained
    synth = Synthesizer.load(model, codec_path)
    utts = {u.id: u for u in read_manifest(root / "tones.jsonl")}
    pairs = [("s0_0", "s0_3", SEEN), ("s0_1", "s0_2", SEEN), ("s1_0", "s1_3", HELD_OUT)]
    items = [TTSEvalItem(g, utts[t], utts[p], utts[p]) for t, p, g in pairs]
    gains = measure_text_gain(synth, items)
    assert [g.group for g in gains] == [SEEN, HELD_OUT, "all"]
    assert [g.items for g in gains] == [2, 1, 3]
    frames = [synth.tokens(*mono(utts[t].audio), utts[t].text)[0].shape[1] + 1 for t, *_ in pairs]
    assert gains[-1].frames == sum(frames)  # every target frame and its end of speech
    for g in gains:
        assert math.isfinite(g.loss_own) and math.isfinite(g.loss_other)
        assert g.gain == g.loss_other - g.loss_own and 0 <= g.accuracy_own <= 1

    # An AR blind to the phonemes (all embedded alike) gains nothing from the right text
    # when the other text is as long
    p_codes, p_ids = synth.tokens(*mono(utts["s0_3"].audio), utts["s0_3"].text)
    t_codes, t_ids = synth.tokens(*mono(utts["s0_0"].audio), utts["s0_0"].text)
    vocab, ar, dims = synth.vocab, synth.model.ar, synth.model.dims
    from tts.valle import join_phonemes

    own = join_phonemes(p_ids, t_ids, bos=vocab.bos_id, eos=vocab.eos_id)
    other = join_phonemes(p_ids, t_ids.flip(0), bos=vocab.bos_id, eos=vocab.eos_id)
    seeing = [
        target_frame_loss(ar, dims, t, p_codes[0], t_codes[0], len(p_ids))[0] for t in (own, other)
    ]
    assert not torch.equal(*seeing)  # this AR does read its text
    with torch.no_grad():
        ar.text_embed.weight.copy_(ar.text_embed.weight.mean(0))
    blind = [
        target_frame_loss(ar, dims, t, p_codes[0], t_codes[0], len(p_ids))[0] for t in (own, other)
    ]
    assert blind[0].shape == (t_codes.shape[1] + 1,)
    assert torch.allclose(*blind, atol=1e-5)

    assert same_length(torch.tensor([1, 2, 3]), 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert same_length(torch.tensor([1, 2, 3]), 2).tolist() == [1, 2]
    assert other_index(["a", "A ", "b"], 0) == 2 and other_index(["a", "b"], 1) == 0
    assert other_index(["same", "Same"], 0) is None
