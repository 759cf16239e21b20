"""`vocalis transcribe`, `vocalis label` and `vocalis eval asr` end to end on a tiny
checkpoint (the model overfitted on two clips), including the one-line errors."""

import collections
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from asr.model import SAMPLE_RATE, save_asr
from core.audio import save_audio
from core.paths import EXAMPLE_VOICE
from corpus.manifest import Utterance, read_manifest, write_manifest
from tests.helpers.asr import TEXTS, clip, one_thread, overfitted
from vocalis.cli import main

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr_cli")
    model, _ = overfitted()
    checkpoint = save_asr(root / "tiny", model)
    audio = root / "audio"
    (audio / "spk").mkdir(parents=True)
    save_audio(audio / "spk" / "hello.wav", clip(0, 1.0)[None], SAMPLE_RATE)
    save_audio(audio / "spk" / "morning.wav", clip(1, 0.8)[None], SAMPLE_RATE)
    save_audio(audio / "silence.wav", torch.zeros(1, SAMPLE_RATE), SAMPLE_RATE)
    (audio / "broken.wav").write_text("not audio")
    return root, str(checkpoint), audio


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_transcribe_writes_every_format(files, capsys):
    root, checkpoint, audio = files
    hello, silence = str(audio / "spk" / "hello.wav"), str(audio / "silence.wav")
    assert main(["transcribe", hello, "--model", checkpoint]) == 0
    assert capsys.readouterr().out == f"{TEXTS[0]}\n"
    assert main(["transcribe", silence, "--model", checkpoint, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["text"] == "" and doc["segments"] == [] and doc["no_speech_prob"] == 1.0
    out = root / "subs"
    morning = str(audio / "spk" / "morning.wav")
    for fmt in ("srt", "vtt", "json"):
        argv = ["transcribe", hello, morning, "--model", checkpoint, "--format", fmt]
        assert main([*argv, "-o", str(out), "--beam-size", "2"]) == 0
    assert (out / "hello.srt").read_text() == f"1\n00:00:00,000 --> 00:00:01,000\n{TEXTS[0]}\n"
    assert (out / "morning.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.800")
    assert json.loads((out / "morning.json").read_text())["text"] == TEXTS[1]


def test_transcribe_errors_are_one_line(files, capsys, tmp_path):
    _, checkpoint, audio = files
    hello = str(audio / "spk" / "hello.wav")
    assert main(["transcribe", str(audio / "broken.wav"), "--model", checkpoint]) == 2
    _one_line_error(capsys, "cannot read audio")
    assert main(["transcribe", str(tmp_path / "nope.wav"), "--model", checkpoint]) == 2
    _one_line_error(capsys, "no such audio file")
    assert main(["transcribe", hello, "--model", str(tmp_path / "none.safetensors")]) == 2
    _one_line_error(capsys, "no ASR model at")
    assert main(["transcribe", hello, "--model", checkpoint, "--beam-size", "0"]) == 2
    _one_line_error(capsys, "--beam-size must be at least 1")
    assert main(["transcribe", hello, "--model", checkpoint, "--chunk-seconds", "0.5"]) == 2
    _one_line_error(capsys, "--chunk-seconds must be 0 or in [1, 30]")
    assert main(["transcribe", hello, "--model", checkpoint, "--pause-seconds", "-1"]) == 2
    _one_line_error(capsys, "--pause-seconds must be 0 or in (0, 5]")
    words = ["transcribe", hello, "--model", checkpoint, "--word-timestamps"]
    assert main(words) == 2  # the tiny model has no CTC head
    _one_line_error(capsys, "--word-timestamps needs a model with a CTC head")
    assert main([*words, "--chunk-seconds", "0"]) == 2
    _one_line_error(capsys, "--word-timestamps needs pieces")


def test_without_a_shipped_asr_the_error_names_the_warm_start(files, capsys, tmp_path, monkeypatch):
    import asr.model

    _, checkpoint, audio = files
    hello = str(audio / "spk" / "hello.wav")
    monkeypatch.setattr(asr.model, "SHIPPED_CHECKPOINT", tmp_path / "asr.safetensors")
    monkeypatch.setattr(asr.model, "WARM_START_CHECKPOINT", Path(checkpoint))
    assert main(["transcribe", hello]) == 2
    _one_line_error(capsys, f"or name the unfinished warm start, '{checkpoint}'")
    monkeypatch.setattr(asr.model, "WARM_START_CHECKPOINT", tmp_path / "warm_start.safetensors")
    assert main(["transcribe", hello]) == 2
    assert "warm start" not in capsys.readouterr().err  # only a file that is there


def test_label_keeps_confident_transcripts(files, capsys, tmp_path):
    _, checkpoint, audio = files
    manifest = tmp_path / "labels.jsonl"
    assert main(["label", str(audio), "-o", str(manifest), "--model", checkpoint]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.wav" in captured.err
    assert "labelled 2 of 3 files (1 dropped as doubtful" in captured.out
    utts = sorted(read_manifest(manifest), key=lambda u: u.id)
    assert [(u.id, u.text, u.speaker) for u in utts] == [
        ("spk_hello", TEXTS[0], "label/spk"),
        ("spk_morning", TEXTS[1], "label/spk"),
    ]
    assert all(u.extra["avg_logprob"] > -0.5 and u.extra["no_speech_prob"] < 0.5 for u in utts)
    strict = ["--min-logprob", "0.0"]  # nothing is that sure: everything is doubtful
    assert main(["label", str(audio), "-o", str(manifest), "--model", checkpoint, *strict]) == 0
    assert read_manifest(manifest) == []
    capsys.readouterr()
    assert main(["label", str(tmp_path / "nowhere"), "-o", str(manifest)]) == 2
    _one_line_error(capsys, "no such folder or .jsonl manifest")


def test_label_segments_turns_a_long_recording_into_clips_with_their_own_text(
    files, capsys, tmp_path
):
    _, checkpoint, _ = files
    folder = tmp_path / "long" / "reader"
    folder.mkdir(parents=True)
    quiet = torch.zeros(SAMPLE_RATE // 2)
    recording = torch.cat([clip(0, 1.0), quiet, clip(1, 0.8)])  # two utterances, a pause
    save_audio(folder / "chapter.wav", recording[None], SAMPLE_RATE)
    manifest, clips = tmp_path / "labels.jsonl", tmp_path / "clips"
    argv = ["label", str(tmp_path / "long"), "-o", str(manifest), "--model", checkpoint,
            "--segments", str(clips), "--chunk-seconds", "1.5"]  # fmt: skip
    assert main(argv) == 0
    assert "labelled 2 of 2 segments" in capsys.readouterr().out
    utts = read_manifest(manifest)
    assert [(u.id, u.text, u.speaker) for u in utts] == [
        ("reader_chapter_0000", TEXTS[0], "label/reader"),
        ("reader_chapter_0001", TEXTS[1], "label/reader"),
    ]
    first, second = utts
    assert first.extra["start"] == 0.0 and 1.05 <= first.extra["end"] <= 1.25
    assert first.extra["end"] <= second.extra["start"] <= 1.5  # never into the next one
    assert second.extra["end"] == pytest.approx(2.3, abs=0.02)
    assert all(
        u.extra["from"].endswith("chapter.wav") and u.sample_rate == SAMPLE_RATE for u in utts
    )
    from core.audio import load_audio

    wav, _ = load_audio(second.audio, SAMPLE_RATE)
    start = round(second.extra["start"] * SAMPLE_RATE)
    assert wav.shape[-1] == round(second.duration * SAMPLE_RATE)
    assert torch.allclose(wav[0], recording[start : start + wav.shape[-1]], atol=1e-4)
    assert main([*argv[:6], "--teacher", "pocketsphinx", "--segments", str(clips)]) == 2
    _one_line_error(capsys, "--segments needs the vocalis teacher")


def test_label_a_manifest_keeps_its_speakers_and_splits(files, capsys, tmp_path):
    _, checkpoint, audio = files
    source = [
        Utterance("h", str(audio / "spk" / "hello.wav"), 1.0, SAMPLE_RATE, None, "r/7", "rd"),
        Utterance(
            "m", str(audio / "spk" / "morning.wav"), 0.8, SAMPLE_RATE, None, "r/8", "rd", "test"
        ),
        Utterance("b", str(audio / "broken.wav"), 1.0, SAMPLE_RATE, None, "r/9", "rd"),
    ]
    source_manifest = write_manifest(tmp_path / "in.jsonl", source)
    out = tmp_path / "out.jsonl"
    assert main(["label", str(source_manifest), "-o", str(out), "--model", checkpoint]) == 0
    assert "labelled 2 of 2 files (0 dropped as doubtful, 1 unreadable skipped)" in (
        capsys.readouterr().out
    )
    utts = read_manifest(out)
    assert [(u.id, u.text, u.speaker, u.split, u.source) for u in utts] == [
        ("h", TEXTS[0], "r/7", "train", "rd"),
        ("m", TEXTS[1], "r/8", "test", "rd"),
    ]
    # words per second of audio: a transcript too sparse for its duration missed words
    rates = [len(u.text.split()) / u.duration for u in utts]
    assert [u.extra["words_per_second"] for u in utts] == pytest.approx(rates, abs=1e-3)
    floor = ["--min-words-per-second", str(sum(rates) / 2)]
    assert main(["label", str(source_manifest), "-o", str(out), "--model", checkpoint, *floor]) == 0
    assert [u.id for u in read_manifest(out)] == [("h", "m")[rates.index(max(rates))]]


def test_label_with_pocketsphinx_as_the_teacher(capsys, tmp_path):
    pytest.importorskip("pocketsphinx")

    example = EXAMPLE_VOICE
    source = write_manifest(
        tmp_path / "in.jsonl",
        [Utterance("lj", str(example), 4.51, 22050, None, "lj/1", "ljspeech")],
    )
    out = tmp_path / "out.jsonl"
    assert main(["label", str(source), "-o", str(out), "--teacher", "pocketsphinx"]) == 0
    (utt,) = read_manifest(out)
    assert utt.extra["teacher"] == "pocketsphinx" and utt.speaker == "lj/1"
    reference = (example.with_suffix(".txt")).read_text().lower().split()
    heard = utt.text.lower().replace(".", "").split()
    assert len(set(heard) & set(reference)) >= len(reference) // 2, utt.text
    capsys.readouterr()
    assert main(["label", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    _one_line_error(capsys, "no such folder or .jsonl manifest")


def _test_clips(audio) -> list[Utterance]:
    """The two fixture clips as test-split utterances of speaker "s" from source "t"."""
    return [
        Utterance(
            name, str(audio / "spk" / f"{name}.wav"), 1.0, SAMPLE_RATE, text, "s", "t", "test"
        )
        for name, text in (("hello", TEXTS[0]), ("morning", TEXTS[1]))
    ]


def test_eval_asr_reports_wer_beside_pocketsphinx(files, capsys, tmp_path):
    _, checkpoint, audio = files
    utts = _test_clips(audio)
    manifest = str(write_manifest(tmp_path / "test.jsonl", utts))
    # two real sources (a reader and a digit speaker, say) are scored as separate rows
    real = [utts[0], dataclasses.replace(utts[1], source="digits")]
    real_manifest = str(write_manifest(tmp_path / "real.jsonl", real))
    other = tmp_path / "natural" / "manifest.jsonl"  # a second synthetic corpus: its own row
    other.parent.mkdir()
    write_manifest(other, utts[1:])
    argv = ["eval", "asr", "--checkpoint", checkpoint, "--synth", manifest, "--real", real_manifest]
    # bf16 weights (what --precision auto picks on a CPU with AMX) decode the same words
    bf16 = ["--precision", "bf16"]
    assert main([*argv, "--synth", str(other), "--json", "--beam-size", "1", *bf16]) == 0
    rows = json.loads(capsys.readouterr().out)
    ours = [r for r in rows if r["system"].startswith("vocalis")]
    assert [(r["test_set"], r["wer"], r["clips"], r["words"]) for r in ours] == [
        ("synthetic, held-out voices", 0.0, 2, 5),
        ("synthetic (natural), held-out voices", 0.0, 1, 3),
        ("real: t", 0.0, 1, 2),
        ("real: digits", 0.0, 1, 3),
    ]
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        assert len(rows) == 4
    else:
        assert [r["system"] for r in rows] == ["vocalis (tiny, bf16)", "pocketsphinx"] * 4
        assert all(r["wer"] >= 0 for r in rows)
    argv[-1] = manifest
    assert main([*argv, "--max-clips", "1", "--no-baselines", "--precision", "fp32"]) == 0
    table = capsys.readouterr().out
    assert (
        table.startswith("| system | test set | WER |")
        and "| vocalis (tiny, fp32) | real: t | 0.0% | 1 |" in table
    )
    # --by-speaker: each set's row, then one per speaker from the same transcripts
    two = [utts[0], dataclasses.replace(utts[1], speaker="s2")]
    two_manifest = str(write_manifest(tmp_path / "two.jsonl", two))
    by = ["eval", "asr", "--checkpoint", checkpoint, "--synth", two_manifest, "--real",
          two_manifest, "--no-baselines", "--beam-size", "1", "--json", "--by-speaker"]  # fmt: skip
    clip_file = tmp_path / "clips.jsonl"  # --transcripts: every clip's words, for reading
    assert main([*by, "--transcripts", str(clip_file)]) == 0
    clips = [json.loads(line) for line in clip_file.read_text().splitlines()]
    assert [(c["test_set"], c["speaker"], c["words"], c["errors"]) for c in clips] == [
        ("synthetic, held-out voices", "s", 2, 0),
        ("synthetic, held-out voices", "s2", 3, 0),
        ("real: t", "s", 2, 0),
        ("real: t", "s2", 3, 0),
    ]
    assert clips[1]["reference"] == two[1].text
    assert clips[1]["hypothesis_normalised"] == clips[1]["reference_normalised"]
    rows = json.loads(capsys.readouterr().out)
    assert [(r["test_set"], r["clips"], r["words"]) for r in rows] == [
        ("synthetic, held-out voices", 2, 5),
        ("synthetic, held-out voices: s", 1, 2),
        ("synthetic, held-out voices: s2", 1, 3),
        ("real: t", 2, 5),
        ("real: t: s", 1, 2),
        ("real: t: s2", 1, 3),
    ]
    assert len({r["rtf"] for r in rows[:3]}) == 1
    # A synthetic set cut to --max-clips takes every held-out voice in turn, not the
    # first voice's clips by path (which had left "held-out voices" one voice).
    three = [utts[0], dataclasses.replace(utts[0], id="hello2"), two[1]]
    three_manifest = str(write_manifest(tmp_path / "three.jsonl", three))
    by[by.index("--synth") + 1] = by[by.index("--real") + 1] = three_manifest
    assert main([*by, "--max-clips", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["test_set"], r["clips"], r["words"]) for r in rows[:3]] == [
        ("synthetic, held-out voices", 2, 5),
        ("synthetic, held-out voices: s", 1, 2),
        ("synthetic, held-out voices: s2", 1, 3),
    ]


def test_eval_asr_scores_each_set_again_under_each_condition(files, capsys, tmp_path):
    _, checkpoint, audio = files
    utts = _test_clips(audio)
    manifest = str(write_manifest(tmp_path / "test.jsonl", utts))
    argv = ["eval", "asr", "--checkpoint", checkpoint, "--synth", manifest, "--real", manifest,
            "--no-baselines", "--beam-size", "1", "--json"]  # fmt: skip
    conditions = ["--condition", "room", "--condition", "phone"]
    assert main([*argv, *conditions]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["test_set"], r["clips"], r["words"]) for r in rows] == [
        ("synthetic, held-out voices", 2, 5),
        ("real: t", 2, 5),
        ("synthetic, held-out voices, room", 2, 5),
        ("real: t, room", 2, 5),
        ("synthetic, held-out voices, phone", 2, 5),
        ("real: t, phone", 2, 5),
    ]
    assert main([*argv, *conditions]) == 0  # the same rooms every run
    assert [r["wer"] for r in json.loads(capsys.readouterr().out)] == [r["wer"] for r in rows]
    with pytest.raises(SystemExit):
        main([*argv, "--condition", "tunnel"])
    assert "invalid choice: 'tunnel'" in capsys.readouterr().err


def test_eval_asr_long_form_joins_each_speakers_clips_into_one_recording(files, capsys, tmp_path):
    _, checkpoint, audio = files
    utts = _test_clips(audio)
    manifest = str(write_manifest(tmp_path / "test.jsonl", utts))
    argv = ["eval", "asr", "--checkpoint", checkpoint, "--synth", manifest, "--real", manifest,
            "--no-baselines",
            "--beam-size", "1", "--json", "--long-form", "--transcripts", str(tmp_path / "t.jsonl"),
            "--chunk-seconds", "10", "--chunk-seconds", "0"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    sets = ["synthetic, held-out voices", "real: t"]
    sets += [f"{name}, long-form" for name in sets]  # one speaker: one recording of both clips
    assert [(r["test_set"], r["clips"], r["words"]) for r in rows] == [
        (name, clips, 5) for name, clips in zip(sets, [2, 2, 1, 1]) for _ in range(2)
    ]
    assert "pieces 10 s" in rows[0]["system"] and "30 s windows" in rows[1]["system"]
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    joined = [t for t in lines if t["test_set"] == "real: t, long-form"][0]
    assert joined["reference"] == " ".join(u.text for u in utts)
    assert joined["hypothesis"]  # the overfitted model hears its two clips in the recording


def test_a_model_with_a_ctc_head_keeps_it_and_decodes_with_it(files, capsys, tmp_path):
    from asr.model import load_asr

    _, plain, audio = files
    hello = str(audio / "spk" / "hello.wav")
    model, _ = overfitted("chars")
    checkpoint = str(save_asr(tmp_path / "headed", model))
    loaded = load_asr(checkpoint)
    assert loaded.dims.ctc_units == "chars"
    assert torch.equal(loaded.ctc.weight, model.ctc.weight)
    for weight in ([], ["--ctc-weight", "0"], ["--ctc-weight", "0.5"]):
        assert main(["transcribe", hello, "--model", checkpoint, *weight]) == 0
        assert capsys.readouterr().out == f"{TEXTS[0]}\n"
    # its head times the words: in order, inside the clip's second
    timed = ["transcribe", hello, "--model", checkpoint, "--word-timestamps", "--format", "json"]
    assert main(timed) == 0
    (segment,) = json.loads(capsys.readouterr().out)["segments"]
    assert [w["word"] for w in segment["words"]] == TEXTS[0].split()
    times = [t for w in segment["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times) and 0.0 <= times[0] < times[-1] <= 1.0
    utts = [Utterance("hello", hello, 1.0, SAMPLE_RATE, TEXTS[0], "s", "t", "test")]
    manifest = str(write_manifest(tmp_path / "test.jsonl", utts))
    argv = ["eval", "asr", "--checkpoint", checkpoint, "--synth", manifest, "--real", manifest]
    argv += ["--no-baselines", "--precision", "fp32"]
    assert main([*argv, "--ctc-weight", "0", "--ctc-weight", "0.3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["system"], r["wer"]) for r in rows] == [
        ("vocalis (headed, fp32, CTC 0)", 0.0),
        ("vocalis (headed, fp32, CTC 0.3)", 0.0),
    ] * 2  # the synthetic and the real row
    # A model without a head, or a weight out of range: one-line errors.
    assert main(["transcribe", hello, "--model", plain, "--ctc-weight", "0.3"]) == 2
    _one_line_error(capsys, "--ctc-weight: ctc_weight needs a model with a CTC head")
    assert main(["transcribe", hello, "--model", checkpoint, "--ctc-weight", "1"]) == 2
    _one_line_error(capsys, "--ctc-weight must be in [0, 1)")
    assert main([*argv, "--ctc-weight", "-0.1"]) == 2
    _one_line_error(capsys, "--ctc-weight must be in [0, 1)")


def test_an_lm_counted_by_train_asr_lm_is_fused_by_transcribe_and_eval(files, capsys, tmp_path):
    _, checkpoint, audio = files
    hello = str(audio / "spk" / "hello.wav")
    # Train text: the second sentence; the first is a test sentence, so the LM never reads
    # it, not even from the text file.
    utts = _test_clips(audio)
    utts[1] = dataclasses.replace(utts[1], split="train")
    manifest = str(write_manifest(tmp_path / "m.jsonl", utts))
    text = tmp_path / "text.txt"
    text.write_text(f"{TEXTS[0]}\n{TEXTS[1]}\n")
    lm = str(tmp_path / "lm")
    argv = ["train", "asr-lm", "--model", checkpoint, "--manifest", manifest, "-o", lm]
    assert main([*argv, "--text", str(text), "--order", "3"]) == 0
    record = json.loads(Path(f"{lm}.json").read_text())["training"]
    assert record["transcripts"] == 1 and record["held-out sentences"] == 1
    assert record["text text.txt"]["held-out fragments dropped"] == 1
    capsys.readouterr()
    # (without fallback: the decoder alone finds the LM's text unlikely and would retry it
    # at a higher temperature, which samples without the LM)
    heavy = ["--lm", f"{lm}.safetensors", "--lm-weight", "20", "--beam-size", "3"]
    heavy += ["--no-fallback", "--no-timestamps"]
    assert main(["transcribe", hello, "--model", checkpoint, *heavy]) == 0
    assert capsys.readouterr().out.startswith("Good morn")  # TEXTS[1], near enough
    weightless = ["--lm", lm, "--lm-weight", "0"]
    for off in (["--lm", "none"], [*weightless, "--lexicon-penalty", "0"], []):
        assert main(["transcribe", hello, "--model", checkpoint, *off]) == 0
        assert capsys.readouterr().out == f"{TEXTS[0]}\n"
    # Its lexicon lacks "hello" and "world" (never read): a heavy penalty keeps them out.
    strict = [*weightless, "--lexicon-penalty", "50", "--beam-size", "3", "--no-fallback"]
    assert main(["transcribe", hello, "--model", checkpoint, *strict]) == 0
    assert not {"hello", "world"} & set(capsys.readouterr().out.lower().replace(".", " ").split())
    test = str(write_manifest(tmp_path / "test.jsonl", _test_clips(audio)[:1]))
    argv = ["eval", "asr", "--checkpoint", checkpoint, "--synth", test, "--real", test]
    argv += ["--no-baselines", "--precision", "fp32", "--beam-size", "3", "--json"]
    lm_args = ["--lm", lm, "--lm-weight", "0", "--lm-weight", "20", "--lexicon-penalty", "0"]
    assert main([*argv, *lm_args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["system"] for r in rows] == [
        "vocalis (tiny, fp32, LM 0, lexicon 0)",
        "vocalis (tiny, fp32, LM 20, lexicon 0)",
    ] * 2  # the synthetic and the real row
    assert rows[0]["wer"] == rows[2]["wer"] == 0.0
    # One-line errors: a weight below 0, an LM of another tokenizer, a file that is not
    # an LM, and nothing to count.
    assert main(["transcribe", hello, "--model", checkpoint, "--lm-weight", "-1"]) == 2
    _one_line_error(capsys, "--lm-weight must be >= 0")
    assert main([*argv, "--lexicon-penalty", "-1"]) == 2
    _one_line_error(capsys, "--lexicon-penalty must be >= 0")
    from asr.lm import build_lm, save_lm
    from asr.tokenizer import Tokenizer

    other = Tokenizer.train(["completely different words here"] * 3, 280)
    save_lm(tmp_path / "other", *build_lm(["completely different words"], other, order=2))
    assert main(["transcribe", hello, "--model", checkpoint, "--lm", str(tmp_path / "other")]) == 2
    _one_line_error(capsys, "counted with another tokenizer")
    assert main(["transcribe", hello, "--model", checkpoint, "--lm", checkpoint]) == 2
    _one_line_error(capsys, "not a 'asr-lm' model")
    assert main(["train", "asr-lm", "--model", checkpoint, "-o", lm]) == 2
    _one_line_error(capsys, "no text: give --manifest, --text or --templates")


def test_transcribe_fuses_the_shipped_lm_by_default_and_label_does_not():
    from vocalis.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["transcribe", "a.wav"]).lm == "auto"
    assert parser.parse_args(["eval", "asr"]).lm == "auto"
    # label's confidence thresholds are calibrated on the decoder's own choices
    assert parser.parse_args(["label", "dir", "-o", "m.jsonl"]).lm == "none"


def test_a_real_set_cut_to_max_clips_is_spread_over_the_whole_set():
    from vocalis.commands.eval import _spread

    # the spoken digits sorted by path: 50 zeros, then 50 ones, ...; the first 80 by path
    # had been zeros and ones only
    clips = [f"{digit}_speaker_{i}" for digit in range(10) for i in range(50)]
    picked = _spread(clips, 80)
    assert len(picked) == len(set(picked)) == 80 and picked[0] == clips[0]
    assert collections.Counter(c[0] for c in picked) == {str(d): 8 for d in range(10)}
    assert _spread(clips[:3], 80) == clips[:3]
