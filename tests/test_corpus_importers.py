"""Importers on tiny generated fixtures: every layout, bad files reported, sources untouched."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.errors import VocalisError
from corpus.importers import import_corpus, scan
from corpus.manifest import read_manifest


def _clip(path: Path, seconds: float = 0.3, rate: int = 16000, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_ljspeech_layout_with_bad_files(tmp_path):
    root = tmp_path / "lj"
    _clip(root / "wavs/LJ001-0001.wav", rate=22050)
    _clip(root / "wavs/LJ001-0002.flac", rate=22050)
    (root / "wavs/LJ001-0003.wav").write_bytes(b"RIFF not really a wav")
    _clip(root / "wavs/LJ009-0009.wav")  # no metadata row
    (root / "metadata.csv").write_text(
        "LJ001-0001|Raw 1st text.|Raw first text.\n"
        "LJ001-0002|Second|Second \u201cquoted\u201d text\n"
        "LJ001-0003|broken|broken\n"
        "LJ001-0004|missing|missing\n"
    )
    before = _snapshot(root)
    result = scan("ljspeech", root, "lj")
    assert [u.id for u in result.utterances] == ["LJ001-0001", "LJ001-0002"]
    assert result.utterances[0].text == "Raw first text."
    assert result.utterances[1].text == 'Second "quoted" text'
    assert result.utterances[0].speaker == "lj/lj" and result.utterances[0].sample_rate == 22050
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {"LJ001-0003.wav", "LJ009-0009.wav", "LJ001-0004"}
    assert _snapshot(root) == before


def test_librispeech_and_libritts_layouts(tmp_path):
    root = tmp_path / "libri"
    for spk, chapter in (("103", "1240"), ("1034", "121119"), ("19", "198")):
        for utt in range(2):
            _clip(root / spk / chapter / f"{spk}-{chapter}-{utt:04d}.flac")
        (root / spk / chapter / f"{spk}-{chapter}.trans.txt").write_text(
            f"{spk}-{chapter}-0000 HELLO THERE IT'S ME\n{spk}-{chapter}-0001 SECOND LINE\n"
        )
    (root / "SPEAKERS.TXT").write_text(";ID |SEX| SUBSET |MINUTES| NAME\n103 | F | x | 1 | A\n")
    _clip(root / "odd-name.flac")
    result = scan("librispeech", root, "libri")
    assert len(result.utterances) == 6
    first = next(u for u in result.utterances if u.id == "103-1240-0000")
    assert first.text == "Hello there it's me" and first.speaker == "libri/103"
    assert first.extra["gender"] == "female"
    assert [Path(s.path).name for s in result.skipped] == ["odd-name.flac"]

    tts = tmp_path / "libritts"
    wav = _clip(tts / "84/121123/84_121123_000007_000001.wav", rate=24000)
    wav.with_suffix(".normalized.txt").write_text("Normalised text, twenty-one.")
    _clip(tts / "84/121123/84_121123_000008_000000.wav", rate=24000)
    result = scan("libritts", tts, "libritts")
    texts = {u.id: u.text for u in result.utterances}
    assert texts == {"84_121123_000007_000001": "Normalised text, twenty-one.",
                     "84_121123_000008_000000": None}  # fmt: skip


def test_vctk_layout_keeps_mic1(tmp_path):
    root = tmp_path / "vctk"
    for spk in ("p225", "p226"):
        for n in (1, 2):
            for mic in (1, 2):
                _clip(root / f"wav48_silence_trimmed/{spk}/{spk}_{n:03d}_mic{mic}.flac", rate=48000)
            (root / f"txt/{spk}").mkdir(parents=True, exist_ok=True)
            (root / f"txt/{spk}/{spk}_{n:03d}.txt").write_text("Please call Stella.\n")
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS\np225  23  F  English\n")
    result = scan("vctk", root, "vctk")
    assert sorted(u.id for u in result.utterances) == [
        "p225_001",
        "p225_002",
        "p226_001",
        "p226_002",
    ]
    assert all(u.audio.endswith("_mic1.flac") for u in result.utterances)
    assert all(u.text == "Please call Stella." for u in result.utterances)
    assert result.utterances[0].extra == {"gender": "female"}


def test_plain_folder_with_txt_and_lab(tmp_path):
    root = tmp_path / "plain"
    _clip(root / "alice/one.wav").with_suffix(".txt").write_text("I have 3 cats.")
    _clip(root / "alice/two.flac").with_suffix(".lab").write_text("hello world")
    _clip(root / "bob/three.wav")
    _clip(root / "bob/short.wav", seconds=0.01)  # too short: reported
    (root / "bob/notes.md").write_text("not audio, ignored")
    result = scan("folder", root, "mine")
    by_id = {u.id: u for u in result.utterances}
    assert by_id["alice__one"].text == "I have three cats."
    assert by_id["alice__two"].text == "hello world"
    assert by_id["bob__three"].text is None and by_id["bob__three"].speaker == "mine/bob"
    assert [Path(s.path).name for s in result.skipped] == ["short.wav"]


def test_spoken_digits_and_manifest_output(tmp_path):
    root = tmp_path / "digits"
    for digit in range(3):
        for speaker in ("george", "jackson", "lucas"):
            _clip(root / f"{digit}_{speaker}_0.wav", rate=8000)
    (root / "7_theo_1.wav").write_bytes(b"")  # empty file
    _clip(root / "readme.wav", rate=8000)
    before = _snapshot(root)
    out = tmp_path / "out/digits.jsonl"
    result = import_corpus("digits", root, out, name="fsdd", valid=0.34, test=0.34)
    assert _snapshot(root) == before
    utts = read_manifest(out)
    assert len(utts) == 9 and {u.text for u in utts} == {"Zero", "One", "Two"}
    assert {u.speaker for u in utts} == {"fsdd/george", "fsdd/jackson", "fsdd/lucas"}
    # split by speaker: each speaker lies in exactly one split, all three splits used
    per_speaker = {u.speaker: u.split for u in utts}
    assert all(u.split == per_speaker[u.speaker] for u in utts)
    assert sorted(per_speaker.values()) == ["test", "train", "valid"]
    report = json.loads(result.report.read_text())["skipped"]
    assert sorted(Path(r["path"]).name for r in report) == ["7_theo_1.wav", "readme.wav"]
    assert all(os.path.isabs(u.audio) for u in utts)


def test_import_errors_are_vocalis_errors(tmp_path):
    with pytest.raises(VocalisError, match="no such folder"):
        scan("ljspeech", tmp_path / "nope")
    with pytest.raises(VocalisError, match="metadata.csv"):
        scan("ljspeech", tmp_path)
    with pytest.raises(VocalisError, match="unknown layout"):
        scan("timit", tmp_path)
