"""Natural text for the synthetic corpus and the LM: WordNet, GCIDE's quotations and text
files (corpus.text_sources)."""

import json
import shutil
from dataclasses import replace

import pytest

from core.errors import VocalisError
from corpus.manifest import read_manifest
from corpus.synth import synthesize
from corpus.synth_plan import SynthConfig, plan_corpus
from corpus.text_sources import (
    WORDNET_ROOT,
    clean_fragment,
    compose_utterances,
    file_fragments,
    gcide_fragments,
    wordnet_fragments,
)
from corpus.voices import SPEAKERS
from vocalis.cli import main

# Two synsets in WordNet's data-file format, after a licence header line.
WORDNET_LINES = (
    "  1 This software and database is being provided to you, the LICENSEE, by\n"
    "02084071 05 n 01 dog 0 000 | a member of the genus Canis (probably descended from "
    'the common wolf); "the dog barked all night"\n'
    "00002098 00 a 01 unable 0 000 | not having the necessary means or skill; "
    '"unable to get to town without a car"; "unable to obtain funds"; "the U.S. army"\n'
)


def _fake_wordnet(tmp_path):
    for i, name in enumerate(("data.noun", "data.verb", "data.adj", "data.adv")):
        (tmp_path / name).write_text(WORDNET_LINES if i == 0 else "", encoding="latin-1")
    return tmp_path


# Entries in GCIDE's dictd text: a quotation over two lines with its author on a line of
# its own, one ending on its author's line, one with an author whose name goes on, one of
# the GPL-licensed additions ([PJC]) and a definition that is not a quotation.
GCIDE_TEXT = """Abate \\A*bate"\\, v. t.
   1. To beat down; to overthrow. [Obs.]
      [1913 Webster]

            The King of Scots . . . sore abated
            the walls.
                                                  --Edw. Hall.
      [1913 Webster]

   2. To lessen; to diminish.
      [1913 Webster]

            His eye was not dim, nor his force abated.  --Deut. xxxiv.
      [1913 Webster]

            Bring me the rest of the tale.
                                                  --Sir W.
                                                  Scott.
      [1913 Webster]

            A sentence of our own day.
                                                  --Someone.
      [PJC]
"""


def test_gcide_gives_the_1913_quotations_only(tmp_path):
    import gzip

    path = tmp_path / "gcide.dict.dz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(GCIDE_TEXT)
    assert gcide_fragments(path) == [
        "The King of Scots",
        "sore abated the walls.",
        "His eye was not dim, nor his force abated.",
        "Bring me the rest of the tale.",
    ]
    with pytest.raises(VocalisError, match="apt-get install dict-gcide"):
        gcide_fragments(tmp_path / "missing.dz")


def test_wordnet_glosses_and_examples_are_read(tmp_path):
    fragments = wordnet_fragments(_fake_wordnet(tmp_path))
    assert "the dog barked all night" in fragments
    assert "a member of the genus Canis (probably descended from the common wolf)" in fragments
    assert "unable to obtain funds" in fragments and "not having the necessary means or skill"
    assert not any("LICENSEE" in f for f in fragments)
    with pytest.raises(VocalisError, match="apt-get install wordnet-base"):
        wordnet_fragments(tmp_path / "missing")


def test_only_fragments_a_voice_reads_as_written_are_kept():
    assert clean_fragment("the dog barked all night", 24) == "The dog barked all night."
    assert clean_fragment("a member of the genus Canis (probably a wolf)", 24) == (
        "A member of the genus Canis."
    )
    assert clean_fragment("he paid 25 dollars", 24) == "He paid twenty-five dollars."
    for unreadable in ("the U.S. army", "a DNA test", "vitamin B complex", "salt & pepper",
                       "see http://x.org", "ok", "one two three four five six"):  # fmt: skip
        assert clean_fragment(unreadable, 5) is None, unreadable


def test_utterances_are_whole_fragments_within_bounds_and_deterministic():
    names = "apple birch cedar daisy elm fern gorse hazel iris juniper kale lime maple".split()
    fragments = [f"the {w} tree grows well" for w in names] + ["short one"] * 50
    utts = compose_utterances(fragments, 100, seed=3, min_words=6, max_words=12)
    assert utts == compose_utterances(fragments, 100, seed=3, min_words=6, max_words=12)
    assert utts != compose_utterances(fragments, 100, seed=4, min_words=6, max_words=12)
    joined = " ".join(utts)
    assert joined.count("Short one.") == 1  # a fragment is used once
    for u in utts:
        assert 6 <= len(u.split()) <= 12 and u.endswith(".")
    assert len(compose_utterances(fragments, 2, seed=3)) == 2


def test_text_file_source_splits_sentences(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("First sentence here. Second one follows!\n\nA third line\n", encoding="utf-8")
    assert file_fragments(path) == ["First sentence here.", "Second one follows!", "A third line"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(VocalisError, match="cannot read text file"):
        file_fragments(tmp_path / "bad.txt")


@pytest.mark.skipif(not (WORDNET_ROOT / "data.noun").is_file(), reason="wordnet-base missing")
def test_installed_wordnet_gives_tens_of_thousands_of_utterances():
    utts = compose_utterances(wordnet_fragments(), 100000, seed=0)
    assert len(utts) > 50000
    words = {w.strip(".,;:!?'\"").lower() for u in utts for w in u.split()}
    assert len(words) > 30000  # the generated sentences have about 3000


def test_plan_of_a_text_file_keeps_splits_honest_and_ids_apart(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(f"Line {i} is a sentence to read aloud." for i in range(200)))
    config = SynthConfig(utterances=120, held_out_per_speaker=5, text=str(path), id_prefix="t")
    plan = plan_corpus(config)
    assert plan == plan_corpus(config)
    assert all("_t" in it.id for it in plan) and len({it.id for it in plan}) == len(plan)
    train = {it.sentence for it in plan if it.split == "train"}
    assert train.isdisjoint({it.sentence for it in plan if it.split != "train"})
    assert all(it.text.endswith(".") and "Line" in it.text for it in plan)


def test_a_corpus_written_before_the_text_setting_still_resumes(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    speakers = tuple(s for s in SPEAKERS if s.engine == "espeak")[:1]
    config = SynthConfig(utterances=1, speakers=speakers, valid_speakers=(), test_speakers=())
    items = plan_corpus(config, ["One short sentence here."])
    synthesize(tmp_path, config, workers=1, progress=False, items=items)
    old = json.loads((tmp_path / "config.json").read_text())
    for key in ("text", "id_prefix"):  # an older corpus: these keys did not exist
        del old[key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert synthesize(tmp_path, config, workers=1, progress=False, items=items).rendered == 0
    other = replace(config, text="wordnet")
    with pytest.raises(VocalisError, match="other settings"):
        synthesize(tmp_path, other, workers=1, progress=False, items=items)
    assert len(read_manifest(tmp_path / "manifest.jsonl")) == 1


def test_cli_text_option_errors_in_one_line(tmp_path, capsys):
    assert main(["data", "synth", "--text", str(tmp_path / "none.txt"), "-o", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
