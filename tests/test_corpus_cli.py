"""`vocalis data ...` through vocalis.cli.main; and the real ../shared/data folders."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from corpus.manifest import read_manifest
from vocalis.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_help_everywhere(capsys):
    for argv in (["data", "--help"], ["data", "import", "--help"], ["data", "synth", "--help"],
                 ["data", "stats", "--help"], ["data", "split", "--help"],
                 ["data", "cache", "--help"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "cache" in capsys.readouterr().out
    assert main(["data"]) == 2


def test_error_paths_are_one_line(tmp_path, capsys):
    assert main(["data", "import", "ljspeech", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("vocalis: error: no such manifest")
    assert main(["data", "synth", "--engines", "sapi", "-o", str(tmp_path)]) == 2


def test_import_split_stats_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VOCALIS_DATA", str(tmp_path / "data"))
    src = tmp_path / "plain"
    for speaker in ("ann", "bob", "cid", "dan"):
        for i in range(3):
            path = src / speaker / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), np.full(4000, 0.1 * (i + 1), np.float32), 8000)
            path.with_suffix(".txt").write_text(f"Text {i}.")
    assert main(["data", "import", "folder", str(src), "--name", "plain"]) == 0
    manifest = tmp_path / "data/imports/plain.jsonl"
    assert len(read_manifest(manifest)) == 12
    out = tmp_path / "split.jsonl"
    argv = [
        "data",
        "split",
        str(manifest),
        "-o",
        str(out),
        "--by",
        "speaker,text",
        "--valid",
        "0.25",
    ]
    assert main(argv + ["--test", "0.25"]) == 0
    assert {u.split for u in read_manifest(out)} == {"train", "valid", "test"}
    assert main(["data", "stats", str(out)]) == 0
    assert "12 utterances" in capsys.readouterr().out
    assert main(["data", "cache", str(out), "--sample-rate", "16000"]) == 0
    assert "12 encoded" in capsys.readouterr().out
    assert main(["data", "cache", str(out), "--sample-rate", "16000"]) == 0
    assert "12 reused" in capsys.readouterr().out
    assert main(["data", "split", str(out), "-o", str(out), "--by", "gender"]) == 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_shared_data_imports(tmp_path):
    from corpus.importers import import_corpus

    counts = {}
    for layout, folder, name in (("ljspeech", "ljspeech", "lj"), ("librispeech", "librispeech",
                                 "libri"), ("digits", "fsdd", "fsdd")):  # fmt: skip
        result = import_corpus(layout, SHARED / folder, tmp_path / f"{name}.jsonl", name=name)
        assert not result.skipped
        counts[name] = len(result.utterances)
        splits = {u.split for u in result.utterances}
        assert splits == {"train", "valid", "test"}
    assert counts == {"lj": 80, "libri": 251, "fsdd": 3000}
    libri = read_manifest(tmp_path / "libri.jsonl")
    assert all(u.text is None for u in libri) and len({u.speaker for u in libri}) == 251
    fsdd = read_manifest(tmp_path / "fsdd.jsonl")
    by_speaker = {}
    for u in fsdd:
        by_speaker.setdefault(u.speaker, set()).add(u.split)
    assert len(by_speaker) == 6 and all(len(s) == 1 for s in by_speaker.values())


def test_pack_subset_by_hours_is_seeded_bounded_and_ordered():
    from vocalis.commands.data import subset_by_hours

    durations = [float(1 + i % 7) for i in range(200)]
    keep = subset_by_hours(durations, 0.1)  # 360 s of the 800 s
    assert keep == sorted(keep) == subset_by_hours(durations, 0.1)
    assert 350 <= sum(durations[i] for i in keep) <= 360
    assert keep != subset_by_hours(durations, 0.1, seed=1)
    assert subset_by_hours(durations, 1.0) == list(range(200))


LABELS = Path(__file__).resolve().parents[1] / "corpus" / "labels"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_shipped_librispeech_labels_match_the_import_and_its_splits(tmp_path):
    """corpus/labels/librispeech_pocketsphinx.jsonl (pocketsphinx's transcripts, shipped so
    a fresh machine need not relabel) reads ../shared/data by a relative path and keeps
    each utterance in the split the importer gives it: no held-out reader leaks in."""
    from corpus.importers import import_corpus

    labels = read_manifest(LABELS / "librispeech_pocketsphinx.jsonl")
    result = import_corpus("librispeech", SHARED / "librispeech", tmp_path / "l.jsonl",
                           name="librispeech")  # fmt: skip
    imported = {u.id: u for u in result.utterances}
    assert 200 <= len(labels) <= len(imported)
    for u in labels:
        assert Path(u.audio).is_file() and u.text
        assert (u.split, u.speaker) == (imported[u.id].split, imported[u.id].speaker)
    assert sum(u.split == "train" for u in labels) >= 200

    from vocalis.commands.train import ASR_SECTIONS, data_section, read_config

    config_path = Path(__file__).resolve().parents[1] / "training/configs/asr_cpu_pseudo.json"
    config = read_config(config_path, ASR_SECTIONS)
    args = argparse.Namespace(config=str(config_path), manifest=None)
    specs, _ = data_section(config, args, "asr_cpu_pseudo")
    shipped = [s for s in specs if "labels" in s.path]
    assert len(shipped) == 1 and Path(shipped[0].path).resolve() == (
        LABELS / "librispeech_pocketsphinx.jsonl"
    )
