"""Manifest round trip, path rule, bad lines; text normalisation; stats."""

import json

import pytest

from core.errors import VocalisError
from corpus.manifest import Utterance, read_manifest, write_manifest
from corpus.stats import format_stats, manifest_stats
from corpus.text import normalize_text, number_to_words, year_to_words


def _utt(tmp_path, i, **kw):
    fields = dict(
        id=f"u{i}",
        audio=str(tmp_path / "audio" / f"u{i}.flac"),
        duration=1.5 + i,
        sample_rate=16000,
        text=f"Sentence {i}." if i % 2 == 0 else None,
        speaker=f"test/s{i % 2}",
        source="test",
        split="train",
    )
    fields.update(kw)
    return Utterance(**fields)


def test_round_trip_and_path_rule(tmp_path):
    outside = tmp_path.parent / "elsewhere.flac"
    utts = [_utt(tmp_path, 0, extra={"gender": "female"}), _utt(tmp_path, 1, split="test"),
            _utt(tmp_path, 2, audio=str(outside))]  # fmt: skip
    path = write_manifest(tmp_path / "m.jsonl", utts)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["audio"] == "audio/u0.flac"  # inside the manifest's folder: relative
    assert lines[2]["audio"] == str(outside)  # outside: absolute
    assert lines[0]["gender"] == "female" and lines[1]["text"] is None
    back = read_manifest(path)
    assert back == utts
    assert back[0].extra == {"gender": "female"}
    # the manifest can move together with its audio
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "m.jsonl").write_text(path.read_text())
    assert read_manifest(moved / "m.jsonl")[0].audio == str(moved / "audio/u0.flac")


def test_bad_manifest_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"audio": "a.wav", "duration": 1, "sample_rate": 8000}\n')
    with pytest.raises(VocalisError, match=r"bad.jsonl:1: .*speaker"):
        read_manifest(path)
    path.write_text("not json\n")
    with pytest.raises(VocalisError, match="bad.jsonl:1"):
        read_manifest(path)
    line = '{"audio": "a", "duration": 1, "sample_rate": 1, "speaker": "s", "source": "x", '
    path.write_text(line + '"split": "dev"}\n')
    with pytest.raises(VocalisError, match="split"):
        read_manifest(path)
    with pytest.raises(VocalisError, match="no such manifest"):
        read_manifest(tmp_path / "missing.jsonl")


def test_text_normalisation():
    assert number_to_words(0) == "zero"
    assert number_to_words(342) == "three hundred and forty-two"
    assert number_to_words(2_000_017) == "two million and seventeen"
    assert year_to_words(1984) == "nineteen eighty-four"
    assert year_to_words(2007) == "two thousand and seven"
    assert year_to_words(1905) == "nineteen oh five"
    assert (
        normalize_text("  \u201cCaf\u00e9\u201d  costs 12 \u2014 ok ?")
        == '"Cafe" costs twelve - ok?'
    )


def test_stats(tmp_path):
    utts = [_utt(tmp_path, i, split="valid" if i == 3 else "train") for i in range(4)]
    stats = manifest_stats(utts)
    assert stats.utterances == 4 and stats.speakers == 2
    assert stats.with_text == 2 and stats.text_coverage == 0.5
    assert stats.sample_rates == {16000: 4}
    assert abs(stats.hours_by_split["valid"] - 4.5 / 3600) < 1e-9
    assert abs(stats.hours_by_speaker["test/s1"]["train"] - 2.5 / 3600) < 1e-9
    text = format_stats("m.jsonl", stats)
    assert "4 utterances" in text and "test/s0" in text
