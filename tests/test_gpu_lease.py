"""The GPU lease's collect step: what comes back from the device must be loadable here."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec import Codec, CodecDims, load_codec, save_codec
from core.audio import load_audio
from core.checkpoint import read_safetensors, save_model
from tests.helpers.codec import TINY as TINY_CODEC
from tests.test_corpus_synth import _needs
from tests.test_tts_valle import TINY
from tts.valle import VALLE, load_valle

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    """A training/gpu_lease script as a module (the device runs them as plain files)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "training" / "gpu_lease" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_collect_brings_back_an_fp16_valle_and_codec_with_their_records(tmp_path):
    valle_run, codec_run, dest = tmp_path / "valle", tmp_path / "codec", tmp_path / "back"
    torch.manual_seed(3)
    model = VALLE(dataclasses.replace(TINY, phoneme_vocab='{"a": 1}'))
    save_model(valle_run / "model", model, model.dims, kind="valle", training={"steps": 7})
    (valle_run / "log.jsonl").write_text('{"step": 7}\n')
    codec = Codec(CodecDims(**TINY_CODEC.__dict__))
    with torch.no_grad():
        for p in codec.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_codec(codec_run / "model", codec, training={"steps": 5, "notes": "lease"})
    _script("collect").main(str(valle_run), str(codec_run), str(dest))

    back = load_valle(dest / "valle.safetensors")
    assert back.dims == model.dims
    for name, value in model.state_dict().items():
        got = back.state_dict()[name]
        if value.is_floating_point():
            assert torch.equal(got, value.half().float())  # stored in fp16, loaded as fp32
    meta = json.loads((dest / "valle.json").read_text())
    assert meta["training"]["steps"] == 7
    assert (dest / "valle_log.jsonl").read_text() == '{"step": 7}\n'
    # the codec in fp16 too (fp32 the 22 M-parameter codec is 88 MB, over the 64 MB that
    # comes back), its metadata unchanged
    stored = read_safetensors(dest / "codec_model.safetensors")[1]
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    codec_back = load_codec(dest / "codec_model.safetensors")
    assert codec_back.dims == codec.dims
    for name, value in codec.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(codec_back.state_dict()[name], value.half().float()), name
    codec_meta = json.loads((dest / "codec_model.json").read_text())
    assert codec_meta["training"] == {"steps": 5, "notes": "lease"}


def test_int8_transport_halves_the_bytes_and_unpacks_to_a_loadable_checkpoint(tmp_path, capsys):
    transport = _script("transport")
    torch.manual_seed(4)
    model = VALLE(dataclasses.replace(TINY, phoneme_vocab='{"a": 1}'))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # norms and biases are not all ones and zeros
    fp16 = save_model(tmp_path / "v", model, model.dims, kind="valle", dtype=torch.float16)
    packed = tmp_path / "v.q8.safetensors"
    assert transport.main(["pack", str(fp16), str(packed)]) == 0
    assert packed.stat().st_size < fp16.stat().st_size  # about half for the shipped VALL-E
    stored = read_safetensors(packed)[1]
    assert {t.dtype for k, t in stored.items() if k.endswith(".q8")} == {torch.int8}
    assert transport.main(["unpack", str(packed), str(tmp_path / "back")]) == 0

    back = load_valle(tmp_path / "back.safetensors")
    assert back.dims == model.dims
    assert json.loads((tmp_path / "back.json").read_text())["kind"] == "valle"
    source = load_valle(fp16).state_dict()
    for name, want in source.items():
        got = back.state_dict()[name]
        if want.dim() >= 2 and want.numel() >= transport.MIN_NUMEL:
            rows = want.reshape(want.shape[0], -1).abs().amax(dim=1)  # half a step per row
            bound = (rows / 254 + 1e-7).reshape(-1, *([1] * (want.dim() - 1)))
            assert ((got - want).abs() <= bound).all(), name
        else:
            assert torch.equal(got, want), name  # small tensors travel as they are

    capsys.readouterr()
    assert transport.main(["unpack", str(fp16), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an int8 transport file" in err[0]
    assert transport.main(["pack", str(tmp_path / "none"), str(tmp_path / "y")]) == 2


def test_decode_turns_the_opus_set_into_wav_manifests_per_source(tmp_path):
    """prepare.py --codec-opus carries Ogg Opus; decode.py on the device writes 16-bit WAV
    and one manifest per source, with the durations and rates of the decoded audio."""
    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    (tmp_path / "codec_opus").mkdir()
    rows = []
    for i, (source, rate) in enumerate([("ljspeech", 24000), ("librispeech", 16000)]):
        wav = np.interp(np.arange(2 * rate) / rate, t, tone).astype(np.float32)
        sf.write(tmp_path / f"codec_opus/u{i}.opus", wav, rate, format="OGG", subtype="OPUS")
        rows.append(
            {
                "id": f"u{i}",
                "audio": f"codec_opus/u{i}.opus",
                "duration": 2.0,
                "sample_rate": rate,
                "speaker": f"{source}/s",
                "source": source,
                "split": "train",
            }  # fmt: skip
        )
    (tmp_path / "codec_opus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from training.gpu_lease import decode  # imported, so the process pool can pickle it

    decode.main(str(tmp_path))

    for i, (source, rate) in enumerate([("ljspeech", 24000), ("librispeech", 16000)]):
        (row,) = [json.loads(x) for x in (tmp_path / f"codec_full_{source}.jsonl").open()]
        assert row["audio"] == f"codec_wav/u{i}.wav" and row["source"] == source
        assert sf.info(tmp_path / row["audio"]).subtype == "PCM_16"
        wav, got_rate = load_audio(tmp_path / row["audio"])
        assert got_rate == row["sample_rate"] == rate
        assert (
            abs(row["duration"] - 2.0) < 0.05 and abs(wav.shape[-1] / rate - row["duration"]) < 1e-3
        )
        mid = wav[0, rate // 2 : rate]  # the tone survives the trip (past Opus's pre-skip)
        assert 0.15 < float(mid.pow(2).mean().sqrt()) < 0.25  # RMS of a 0.3 sine: 0.21


def test_collect_brings_back_the_asr_in_fp16_when_given_its_run(tmp_path):
    from asr.model import load_asr, save_asr
    from tests.helpers.asr import tiny_model

    model = tiny_model(seed=5)
    save_asr(tmp_path / "asr" / "model", model, training={"steps": 9})
    (tmp_path / "asr" / "log.jsonl").write_text('{"step": 9}\n')
    _script("collect").main(str(tmp_path / "v"), str(tmp_path / "c"), str(tmp_path / "back"),
                            str(tmp_path / "asr"))  # fmt: skip
    back = load_asr(tmp_path / "back" / "asr_model.safetensors")
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(back.state_dict()[name], value.half().float()), name
    assert (tmp_path / "back" / "asr_log.jsonl").read_text() == '{"step": 9}\n'
    assert not (tmp_path / "back" / "valle.safetensors").exists()  # runs that never trained


def test_decode_turns_the_asr_speech_into_wav_manifests_that_keep_their_texts(tmp_path):
    rate = 8000
    t = np.arange(rate) / rate
    (tmp_path / "asr_opus" / "fsdd").mkdir(parents=True)
    wav = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    sf.write(tmp_path / "asr_opus/fsdd/d0.opus", wav, rate, format="OGG", subtype="OPUS")
    row = {"id": "d0", "audio": "fsdd/d0.opus", "duration": 1.0, "sample_rate": rate,
           "text": "Zero", "speaker": "fsdd/jackson", "source": "fsdd", "split": "train"}  # fmt: skip
    (tmp_path / "asr_opus" / "fsdd.jsonl").write_text(json.dumps(row) + "\n")
    from training.gpu_lease import decode

    decode.main(str(tmp_path))
    (back,) = [json.loads(x) for x in (tmp_path / "asr_real" / "fsdd.jsonl").open()]
    assert back["audio"] == "wav/d0.wav" and back["text"] == "Zero"
    assert sf.info(tmp_path / "asr_real" / back["audio"]).samplerate == rate
    assert not (tmp_path / "codec_full_fsdd.jsonl").exists()  # no codec set was carried


def test_packed_engines_render_the_same_samples_with_nothing_else_on_the_path(tmp_path):
    """A device has no espeak-ng or flite: the packed ones must run with only themselves on
    the PATH and their own libraries, and say exactly what the installed ones say."""
    _needs("espeak")
    _needs("flite")
    import subprocess

    from corpus.voices import RenderSettings, render_command

    engines = _script("engines")
    engines.bundle(tmp_path / "eng")
    libs = [p.name for p in (tmp_path / "eng" / "lib").iterdir()]
    assert libs and not [n for n in libs if n.startswith(engines.HOST_LIBRARIES)]
    text = tmp_path / "text.txt"
    text.write_text("The packed engine reads this sentence.\n")
    bare = {"PATH": str(tmp_path / "eng" / "bin")}  # not even /usr/bin
    for engine, voice in (("espeak", "en-us+f2"), ("flite", "slt")):
        settings = RenderSettings(rate=1.05, pitch=50 if engine == "espeak" else 170)
        for name, env in (("here", None), ("packed", bare)):
            out = tmp_path / f"{engine}_{name}.wav"
            subprocess.run(render_command(engine, voice, settings, text, out), env=env,
                           check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
        here, packed = (sf.read(tmp_path / f"{engine}_{n}.wav")[0] for n in ("here", "packed"))
        assert len(here) > 8000 and np.array_equal(here, packed), engine


def test_render_rebuilds_the_training_rows_of_a_corpus_sample_for_sample(tmp_path):
    """prepare.py --asr carries a corpus's training rows, not its audio; render.py on the
    device makes the same utterances again, and never the held-out ones."""
    _needs("espeak")
    _needs("flite")
    from corpus.manifest import read_manifest
    from corpus.synth import synthesize
    from corpus.synth_plan import SynthConfig, plan_corpus
    from corpus.voices import SPEAKERS

    speakers = (
        tuple(s for s in SPEAKERS if s.engine == "espeak")[:2]
        + tuple(s for s in SPEAKERS if s.engine == "flite")[:1]
    )
    config = SynthConfig(utterances=6, speakers=speakers, valid_speakers=(speakers[1].id,),
                         test_speakers=(), valid_fraction=0.2, test_fraction=0.0)  # fmt: skip
    texts = [
        f"Sentence number {w} of a small corpus." for w in "one two three four five six".split()
    ]
    synthesize(tmp_path / "here" / "synth", config, workers=1, progress=False,
               items=plan_corpus(config, texts))  # fmt: skip
    original = {u.id: u for u in read_manifest(tmp_path / "here" / "synth" / "manifest.jsonl")}
    train = {k for k, u in original.items() if u.split == "train"}
    assert 0 < len(train) < len(original)

    render = _script("render")
    assert render.jobs(tmp_path / "jobs", {"synth": tmp_path / "here" / "synth"}) == {
        "synth": len(train)
    }
    reports = render.render(tmp_path / "jobs", tmp_path / "device", seconds=600, workers=1)
    assert reports["synth"].utterances == len(train)
    again = read_manifest(tmp_path / "device" / "synth" / "manifest.jsonl")
    assert {u.id for u in again} == train
    for u in again:
        o = original[u.id]
        assert (u.text, u.speaker, u.split, u.duration) == (o.text, o.speaker, "train", o.duration)
        assert np.array_equal(sf.read(u.audio)[0], sf.read(o.audio)[0]), u.id


def test_the_asr_lease_config_trains_on_exactly_what_prepare_packs():
    """Every manifest of asr_lease.json is a corpus prepare.py --asr renders again or real
    speech it carries, and everything it packs is trained on: a missing one would stop a
    lease at its first step, an unused one would spend the 64 MB a call carries."""
    prepare = _script("prepare")
    config = json.loads((ROOT / "training" / "configs" / "asr_lease.json").read_text())
    named = [m if isinstance(m, str) else m["path"] for m in config["data"]["manifests"]]
    packed = [f"{name}/manifest.jsonl" for name in prepare.ASR_CORPORA]
    packed += [f"asr_real/{name}.jsonl" for name, _ in prepare.ASR_REAL]
    assert sorted(named) == sorted(packed)
    cpu = json.loads((ROOT / "training" / "configs" / "asr_cpu_gcide.json").read_text())
    corpora = [m for m in cpu["data"]["manifests"] if isinstance(m, str)]
    assert corpora == packed[: len(corpora)]  # the CPU recipe's corpora, in its order
