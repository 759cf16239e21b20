"""The TTS evaluation harness: choosing items, scoring a perfect and a silent fake TTS with
fake judges, `vocalis eval tts` wired to fakes, and (when installed) resemblyzer itself."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import types
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from asr.evaluate import ASRSystem
from core.audio import load_audio, save_audio
from corpus.manifest import Utterance, write_manifest
from tts import evaluate as tts_eval
from tts import text_gain
from tts.evaluate import (
    ALL,
    HELD_OUT,
    SEEN,
    WER_EPSILON,
    build_eval_items,
    cosine,
    evaluate_tts,
    judge_systems,
)
from tts.text_gain import TextGain
from vocalis.cli import main

RATE = 16000
WORDS = ("red", "green", "blue", "fox", "owl", "cat", "runs", "sleeps", "sings", "far", "near")


def _utt(speaker, j, *, text, split="train", speaker_split="train", duration=1.0, audio=""):
    source = speaker.split("-")[0]
    return Utterance(
        id=f"{speaker}_{j:03d}",
        audio=audio or f"/nowhere/{speaker}_{j}.wav",
        duration=duration,
        sample_rate=RATE,
        text=text,
        speaker=f"{source}/{speaker}",
        source=source,
        split=split,
        extra={} if speaker_split is None else {"speaker_split": speaker_split},
    )


def _sentence(k, j):
    return " ".join(WORDS[(k * 5 + j * i) % len(WORDS)] for i in range(1, 5)) + f" {k} {j}"


def _corpus():
    """Two seen synthetic speakers, one held-out synthetic speaker, one real speaker without a
    recorded speaker split; one untranscribed and one over-long utterance per synthetic one."""
    utts = []
    for k, name in enumerate(("synth-a", "synth-b", "synth-c")):
        held = "test" if name == "synth-c" else "train"
        for j in range(8):
            split = held if held != "train" else ("test" if j < 3 else "train")
            text = None if j == 6 else _sentence(k, j)
            duration = 9.0 if j == 7 else 1.0
            utts.append(
                _utt(name, j, text=text, split=split, speaker_split=held, duration=duration)
            )
    for j in range(6):
        split = "valid" if j < 2 else "train"
        utts.append(_utt("lj-lj", j, text=_sentence(3, j), split=split, speaker_split=None))
    return utts


def test_items_split_by_voice_same_speaker_distinct_clips_and_deterministic():
    utts = _corpus()
    items = build_eval_items(utts, n_speakers=5, per_speaker=2, prompt_seconds=(0.5, 2), seed=3)
    assert items == build_eval_items(
        utts, n_speakers=5, per_speaker=2, prompt_seconds=(0.5, 2), seed=3
    )
    seeds = {
        tuple(i.prompt.id for i in build_eval_items(utts, prompt_seconds=(0.5, 2), seed=s))
        for s in range(6)
    }
    assert len(seeds) > 1
    groups = {i.speaker: i.group for i in items}
    assert groups == {
        "synth/synth-a": SEEN,
        "synth/synth-b": SEEN,
        "lj/lj-lj": SEEN,  # no speaker_split: seen, since it has train utterances
        "synth/synth-c": HELD_OUT,
    }
    for item in items:
        clips = (item.target, item.prompt, item.other)
        assert len({c.id for c in clips}) == 3
        assert {c.speaker for c in clips} == {item.speaker}
        assert all(c.text for c in clips)
        assert 0.5 <= item.prompt.duration <= 2 and 0.5 <= item.other.duration <= 2
        if item.group == SEEN:
            assert item.target.split != "train"  # held-out sentence
    assert sum(i.speaker == "synth/synth-a" for i in items) == 2

    one = build_eval_items(utts, n_speakers=1, per_speaker=9, prompt_seconds=(0.5, 2))
    assert len({i.speaker for i in one if i.group == SEEN}) == 1
    assert {i.speaker for i in one if i.group == HELD_OUT} == {"synth/synth-c"}
    forced = build_eval_items(utts, seen_speakers={"synth/synth-c"}, prompt_seconds=(0.5, 2))
    assert {i.speaker for i in forced if i.group == SEEN} == {"synth/synth-c"}
    assert "synth/synth-a" in {i.speaker for i in forced if i.group == HELD_OUT}


# ---------------------------------------------------------------------------------------
# Fakes: every clip is a tone whose frequency names its text; speakers own a 1 kHz band.


def _freq(k, j):
    return 300 + 1000 * k + 50 * j


def _tone(freq, seconds=1.0):
    t = torch.arange(int(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * math.pi * freq * t)


def _spectrum(path):
    wav, _ = load_audio(path, RATE)
    return torch.fft.rfft(wav[0]).abs(), wav.shape[-1]


def _fake_asr(texts_by_freq):
    def run(paths):
        out = []
        for path in paths:
            spec, n = _spectrum(path)
            if spec.max() < 1.0:
                out.append("")  # silence
                continue
            freq = round(int(spec.argmax()) * RATE / n / 10) * 10
            out.append(texts_by_freq[freq])
        return out

    return ASRSystem("fake ASR", run)


def _fake_encoder(path):
    """Energy in eight 1 kHz bands: (8,)."""
    spec, n = _spectrum(path)
    hz = torch.arange(spec.shape[0]) * RATE / n
    bands = (hz // 1000).clamp(max=7).long()
    return torch.zeros(8).index_add_(0, bands, spec.pow(2))


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts_eval")
    utts, texts_by_freq = [], {}
    for k, name in enumerate(("synth-a", "synth-b", "synth-c")):
        held = "test" if name == "synth-c" else "train"
        for j in range(5):
            path = root / f"{name}_{j}.wav"
            save_audio(path, _tone(_freq(k, j)), RATE)
            text = _sentence(k, j)
            texts_by_freq[_freq(k, j)] = text
            split = held if held != "train" else ("test" if j < 2 else "train")
            utts.append(_utt(name, j, text=text, split=split, speaker_split=held, audio=str(path)))
    write_manifest(root / "manifest.jsonl", utts)
    items = build_eval_items(utts, n_speakers=2, per_speaker=2, prompt_seconds=(0.5, 2))
    return root, items, texts_by_freq


def _reference_tts(items):
    by_text = {i.target.text: i.target.audio for i in items}

    def synthesize(text, prompt_audio, prompt_text):
        wav, rate = load_audio(by_text[text])
        return wav[0], rate, 0.3 * wav.shape[-1] / rate

    return synthesize


def _silent_tts(text, prompt_audio, prompt_text):
    return torch.zeros(RATE // 2), RATE, 0.1


def test_a_tts_that_returns_the_reference_scores_ratio_one(tones, tmp_path):
    _, items, texts_by_freq = tones
    assert {i.group for i in items} == {SEEN, HELD_OUT} and len(items) == 6
    report = evaluate_tts(
        items,
        _reference_tts(items),
        asr_systems=[_fake_asr(texts_by_freq)],
        speaker_encoder=_fake_encoder,
        work_dir=tmp_path / "out",
    )
    assert [g.group for g in report.groups] == [SEEN, HELD_OUT, ALL]
    assert [g.items for g in report.groups] == [4, 2, 6]
    for g in report.groups:
        (wer,) = g.wer
        assert wer.output == wer.reference == 0.0 and wer.ratio == 1.0 and wer.words > 0
        assert g.similarity_output == pytest.approx(1.0)
        assert g.similarity_ratio == pytest.approx(1.0)
        assert g.rtf == pytest.approx(0.3)
    assert all(r.output_seconds == pytest.approx(1.0) for r in report.items)
    assert len(list((tmp_path / "out").glob("*.wav"))) == 6
    assert report.targets_met and report.meets(tts_eval.GOAL)
    assert "**met**" in report.to_markdown() and "fake ASR WER ratio" in report.to_markdown()
    doc = json.loads(report.to_json())
    assert doc["targets_met"] is True and doc["groups"][0]["wer"][0]["ratio"] == 1.0


def test_a_silent_tts_fails_the_targets(tones, tmp_path):
    _, items, texts_by_freq = tones
    report = evaluate_tts(
        items,
        _silent_tts,
        asr_systems=[_fake_asr(texts_by_freq)],
        speaker_encoder=_fake_encoder,
        work_dir=tmp_path,
        notes=["a note"],
    )
    seen = report.group(SEEN)
    (wer,) = seen.wer
    assert wer.output == 1.0 and wer.reference == 0.0
    assert wer.ratio == pytest.approx((1 + WER_EPSILON) / WER_EPSILON)
    assert seen.similarity_output == 0.0 and seen.similarity_ratio == 0.0
    assert report.group(ALL).rtf == pytest.approx(0.2)  # 0.1 s per 0.5 s of silence
    assert not report.targets_met
    assert report.check() == {"fake ASR WER ratio": False, "similarity ratio": False, "RTF": True}
    md = report.to_markdown()
    assert "**not met**" in md and "failing: fake ASR WER ratio, similarity ratio" in md
    assert "Note: a note" in md
    assert json.loads(report.to_json())["targets_met"] is False


def test_missing_judges_are_notes_not_failures(tones, tmp_path):
    _, items, _ = tones
    systems, notes = judge_systems(tmp_path / "no-such-asr", pocketsphinx=False)
    assert systems == [] and len(notes) == 1 and "vocalis ASR unavailable" in notes[0]
    report = evaluate_tts(
        items[:1], _silent_tts, asr_systems=[], speaker_encoder=None, work_dir=tmp_path
    )
    assert not report.targets_met  # nothing judged intelligibility
    assert report.check()["similarity ratio"] is None
    assert "not measured: WER ratio, similarity ratio" in report.to_markdown()
    doc = json.loads(report.to_json())  # NaN similarity is null, still valid JSON
    assert doc["groups"][0]["similarity_ratio"] is None


def test_cosine():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == 0.0
    assert cosine(torch.zeros(2), torch.tensor([1.0, 1.0])) == 0.0


def test_eval_tts_cli_with_fakes(tones, tmp_path, monkeypatch, capsys):
    root, items, texts_by_freq = tones

    reference, calls = _reference_tts(items), []

    def recorded(text, prompt_audio, prompt_text, **kwargs):
        calls.append(kwargs)
        return reference(text, prompt_audio, prompt_text)

    class Synthesizer:
        synthesize_file = staticmethod(recorded)

    loaded = []
    fake_module = types.ModuleType("tts.synthesize")
    fake_module.load_synthesizer = lambda path, precision, ar_precision: (
        loaded.append((path, precision, ar_precision)) or (Synthesizer())
    )
    monkeypatch.setitem(sys.modules, "tts.synthesize", fake_module)
    monkeypatch.setattr(tts_eval, "judge_systems", lambda ckpt: ([_fake_asr(texts_by_freq)], []))
    monkeypatch.setattr(tts_eval, "resemblyzer_encoder", lambda: _fake_encoder)
    gain = TextGain("all", 2, 40, 3.0, 3.5, 0.25, 0.2)
    monkeypatch.setattr(text_gain, "measure_text_gain", lambda synth, items: [gain])
    threads = torch.get_num_threads()
    out = tmp_path / "report"
    argv = ["eval", "tts", "--checkpoint", "ckpt", "--manifest", str(root / "manifest.jsonl")]
    argv += ["--speakers", "1", "--per-speaker", "1", "--prompt-seconds", "0.5", "2"]
    argv += ["--out", str(out), "--threads", "1"]
    try:
        assert main([*argv, "--temperature", "0.5", "--top-k", "7"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert loaded == [("ckpt", "auto", "auto")]
    # The sampling options and a fixed seed reach every synthesis (reproducible scores).
    assert [(c["options"].temperature, c["options"].top_k, c["seed"]) for c in calls] == [
        (0.5, 7, 0)
    ] * 2
    printed = capsys.readouterr().out
    assert printed == (out / "report.md").read_text() and "| seen voices | 1 |" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["targets_met"] is True
    assert report["text_gain"] == [asdict(gain) | {"gain": 0.5}]
    assert "| all | 2 | 40 | 3.000 | 3.500 | 0.500 | 0.250 / 0.200 |" in printed
    assert len(list((out / "audio").glob("*.wav"))) == 2
    # the report names the clips where they are, not in the working folder they left
    named = sorted(Path(i["output_audio"]) for i in report["items"])
    assert named == sorted((out / "audio").glob("*.wav"))
    # a second run into the same folder keeps only its own clips
    (out / "audio" / "9999_stale.wav").write_bytes(b"old")
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in out.iterdir()) == ["audio", "report.json", "report.md"]
    assert len(list((out / "audio").glob("*.wav"))) == 2
    # --text-gain-only: the table alone, nothing synthesised or written
    calls.clear()
    capsys.readouterr()
    try:
        assert main([*argv, "--text-gain-only", "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert json.loads(capsys.readouterr().out) == [asdict(gain) | {"gain": 0.5}]
    assert calls == [] and sorted(p.name for p in out.iterdir()) == [
        "audio",
        "report.json",
        "report.md",
    ]
    assert main(["eval", "tts", "--manifest", str(root / "manifest.jsonl"), "--speakers", "0"])
    assert "--speakers" in capsys.readouterr().err
    assert main([*argv, "--top-p", "0"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# The real speaker encoder


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("resemblyzer") is None, reason="no resemblyzer")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")
def test_resemblyzer_tells_voices_apart(tmp_path):
    clips = {
        "m3 a": ("en-us+m3", "The quick brown fox jumps over the lazy dog by the river."),
        "m3 b": ("en-us+m3", "She sells sea shells on the sea shore every summer morning."),
        "f4 b": ("en-us+f4", "She sells sea shells on the sea shore every summer morning."),
    }
    paths = {}
    for name, (voice, text) in clips.items():
        paths[name] = str(tmp_path / f"{name.replace(' ', '_')}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", paths[name], text], check=True)
    save_audio(tmp_path / "silence.wav", torch.zeros(RATE), RATE)
    encoder = tts_eval.resemblyzer_encoder()
    emb = {name: encoder(path) for name, path in paths.items()}
    assert emb["m3 a"].shape == (256,)
    same = cosine(emb["m3 a"], emb["m3 b"])
    different = cosine(emb["m3 b"], emb["f4 b"])  # same text, other voice
    assert same > different + 0.1, (same, different)
    assert cosine(emb["m3 a"], encoder(str(tmp_path / "silence.wav"))) == 0.0
