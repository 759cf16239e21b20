"""Synthetic corpus: each engine renders, bad renders are caught, plans are honest and
deterministic, rendering resumes."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from corpus.manifest import read_manifest
from corpus.phonemes import find_cmudict, load_lexicon, select_for_coverage, units
from corpus.render_check import check_render, trim_silence
from corpus.sentences import generate_sentences
from corpus.synth import _utterance, render_item, synthesize
from corpus.synth_plan import SynthConfig, plan_corpus, plan_revoice, revoice_speakers
from corpus.voices import (
    ENGINE_BINARIES,
    SPEAKERS,
    RenderSettings,
    espeak_parts,
    render_wav,
    speaker_by_id,
)

TEXT = "The quick brown fox jumps over the lazy dog."


def _needs(engine):
    if shutil.which(ENGINE_BINARIES[engine]) is None:
        pytest.skip(f"{ENGINE_BINARIES[engine]} is not installed (see apt-packages.txt)")


@pytest.mark.parametrize(
    "speaker_id", ["synth/espeak-en-us+f2", "synth/flite-slt", "synth/festival-kal-diphone"]
)
def test_each_engine_renders_one_sentence(tmp_path, speaker_id):
    speaker = speaker_by_id(speaker_id)
    _needs(speaker.engine)
    plan = plan_corpus(replace(SynthConfig(), speakers=(speaker,), valid_speakers=(),
                               test_speakers=(), utterances=1), sentences=[TEXT])  # fmt: skip
    record = render_item(plan[0], tmp_path, SynthConfig())
    assert record["ok"], record
    assert 1.5 < record["duration"] < 6.0


def test_known_bad_voice_is_rejected(tmp_path):
    _needs("flite")
    import soundfile as sf

    wav = render_wav("flite", "awb_time", RenderSettings(1.0, 0.0), TEXT * 2, tmp_path)
    data, rate = sf.read(str(wav), dtype="float32")
    assert not check_render(data, rate, TEXT * 2).ok


def test_bad_render_detection():
    rate = 16000
    t = np.arange(3 * rate) / rate
    speech = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    text = "A sentence of about forty characters, ok."
    assert check_render(speech, rate, text).ok
    assert "silence" in check_render(np.zeros(3 * rate, np.float32), rate, text).reason
    assert "clipping" in check_render(np.clip(speech * 10, -1, 1), rate, text).reason
    assert "length" in check_render(speech[: rate // 4], rate, text).reason
    assert "length" in check_render(np.tile(speech, 8), rate, text).reason
    assert "non-finite" in check_render(np.full(rate, np.nan, np.float32), rate, text).reason
    burst = np.zeros(3 * rate, np.float32)
    burst[:800] = 0.5
    assert not check_render(burst, rate, text).ok
    padded = np.concatenate([np.zeros(rate, np.float32), speech, np.zeros(rate, np.float32)])
    assert abs(len(trim_silence(padded, rate)) - len(speech) - 0.3 * rate) < 0.02 * rate


def test_sentences_deterministic_and_coverage():
    a, b = generate_sentences(300, seed=5), generate_sentences(300, seed=5)
    assert a == b and len(set(a)) == 300 and a != generate_sentences(300, seed=6)
    assert not any(ch.isdigit() for s in a for ch in s)
    if find_cmudict() is None:
        pytest.skip("festlex-cmu is not installed")
    lex = load_lexicon()
    chosen = select_for_coverage(a, 40, lex)
    greedy = set().union(*(units(s, lex) for s in chosen))
    first = set().union(*(units(s, lex) for s in a[:40]))
    assert len(greedy) > len(first)


def test_plan_is_honest_and_deterministic():
    config = SynthConfig(utterances=400, held_out_per_speaker=10, seed=1)
    sentences = generate_sentences(400, seed=1)
    plan = plan_corpus(config, sentences)
    assert plan == plan_corpus(config, sentences)
    train = [it for it in plan if it.split == "train"]
    held = [it for it in plan if it.split != "train"]
    assert {it.speaker.id for it in train}.isdisjoint(config.valid_speakers + config.test_speakers)
    assert {it.sentence for it in train}.isdisjoint({it.sentence for it in held})
    for it in plan:
        if it.speaker_split != "train":
            assert it.split == it.speaker_split
    assert len({it.id for it in plan}) == len(plan)
    voices = [it for it in plan if it.speaker_split == "train"]
    counts = [sum(it.speaker == s for it in voices) for s in {it.speaker for it in voices}]
    assert max(counts) - min(counts) <= 1


def test_synthesize_resumes_and_drops_bad(tmp_path):
    _needs("espeak")
    speakers = tuple(s for s in SPEAKERS if s.engine == "espeak")[:2]
    config = SynthConfig(utterances=6, speakers=speakers, valid_speakers=(), test_speakers=())
    texts = ["One short sentence here.", "Another one, quite short.", "... ... ..."] + [
        f"Sentence {w} of the small test corpus." for w in ("three", "four", "five")
    ]
    items = plan_corpus(config, texts)
    seen = []
    with pytest.raises(KeyboardInterrupt):  # interrupted after two renders
        synthesize(tmp_path, config, workers=1, progress=False, items=items,
                   on_record=lambda r: seen.append(r) or (len(seen) == 2 and _raise()))  # fmt: skip
    report = synthesize(tmp_path, config, workers=1, progress=False, items=items)
    assert (report.resumed, report.rendered, report.planned) == (2, 4, 6)
    assert report.rejected == 1 and report.utterances == 5
    utts = read_manifest(tmp_path / "manifest.jsonl")
    assert len(utts) == 5 and all(u.sample_rate == 24000 and u.source == "synth" for u in utts)
    rejected = json.loads((tmp_path / "report.json").read_text())["rejected_items"]
    assert rejected[0]["text"] == "... ... ..."
    assert synthesize(tmp_path, config, workers=1, progress=False, items=items).rendered == 0


def _raise():
    raise KeyboardInterrupt


def test_revoice_reads_only_training_text_in_voices_unlike_the_held_out_ones():
    config = SynthConfig(utterances=400, held_out_per_speaker=10, seed=1)
    plan = plan_corpus(config, generate_sentences(400, seed=1))
    rows = [_utterance(it, {"audio": f"/x/{it.id}.flac", "duration": 2.0}, config) for it in plan]
    held_out = config.valid_speakers + config.test_speakers  # one flite, two espeak voices
    voices = revoice_speakers(held_out)
    banned = [espeak_parts(speaker_by_id(s).voice) for s in held_out if "espeak" in s]
    assert banned == [("en-gb-x-gbclan", "f1"), ("en-029", "f5")]
    assert len(voices) > 300 and {v.engine for v in voices} == {"espeak"}
    for v in voices:
        accent, variant = espeak_parts(v.voice)
        assert accent not in {"en-gb-x-gbclan", "en-029"} and variant not in {"f1", "f5"}
    assert not {v.id for v in voices} & {s.id for s in SPEAKERS}

    revoice = SynthConfig(utterances=10_000, speakers=voices, valid_speakers=(), test_speakers=())
    items = plan_revoice(rows, revoice)
    assert items == plan_revoice(rows, revoice)
    train_text = {it.text for it in plan if it.split == "train"}
    held_text = {it.text for it in plan if it.split != "train"}
    assert len(items) == sum(it.split == "train" for it in plan)  # each training row once
    assert {it.text for it in items} == train_text and not held_text & train_text
    assert {it.split for it in items} == {"train"} and len({it.id for it in items}) == len(items)
    assert len({it.speaker.id for it in items}) == min(len(items), len(voices))
    assert len(plan_revoice(rows, replace(revoice, utterances=50))) == 50


def test_revoice_command_renders_a_corpus_in_new_voices(tmp_path):
    _needs("espeak")
    from vocalis.cli import main

    speakers = tuple(s for s in SPEAKERS if s.engine == "espeak")[:2]
    config = SynthConfig(utterances=3, speakers=speakers, valid_speakers=(), test_speakers=(),
                         valid_fraction=0, test_fraction=0)  # fmt: skip
    texts = ["One short sentence here.", "Another one, quite short.", "The third of them."]
    synthesize(tmp_path / "synth", config, workers=1, progress=False,
               items=plan_corpus(config, texts))  # fmt: skip
    out = tmp_path / "voices"
    argv = ["data", "synth", "--revoice", str(tmp_path / "synth" / "manifest.jsonl"),
            "-o", str(out), "--utterances", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    utts = read_manifest(out / "manifest.jsonl")
    assert len(utts) == 2 and {u.text for u in utts} < set(texts)
    assert not {u.speaker for u in utts} & {s.id for s in speakers}
    assert all(u.split == "train" and "_rv_" in u.id for u in utts)
    assert main(argv) == 0  # resumes: the same settings, nothing rendered again
    assert len(read_manifest(out / "manifest.jsonl")) == 2


def test_a_time_budget_stops_rendering_and_a_later_call_finishes(tmp_path):
    _needs("espeak")
    speakers = tuple(s for s in SPEAKERS if s.engine == "espeak")[:2]
    config = SynthConfig(utterances=5, speakers=speakers, valid_speakers=(), test_speakers=())
    items = plan_corpus(config, [f"Sentence {w} of a budget test." for w in "abcde"])
    cut = synthesize(tmp_path, config, workers=1, progress=False, items=items, time_budget=0)
    assert (cut.rendered, cut.utterances) == (1, 1)  # stopped after the first render
    (utt,) = read_manifest(tmp_path / "manifest.jsonl")
    assert utt.id == items[0].id
    rest = synthesize(tmp_path, config, workers=1, progress=False, items=items)
    assert (rest.resumed, rest.utterances) == (1, 5)
