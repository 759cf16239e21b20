"""The TTS text front end: normalisation, sentence splitting, espeak phonemes, phoneme ids."""

import json
import random
import warnings

import pytest

from core.errors import CheckpointError
from tts import frontend
from tts.frontend import (
    DEFAULT_SYMBOLS,
    PhonemeVocab,
    TextFrontend,
    phonemize,
    text_to_phoneme_ids,
)
from tts.normalize import normalize_for_speech, ordinal_to_words, split_sentences


def said(text: str) -> str:
    return normalize_for_speech(text).text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.14", "three point one four"),
        (
            "1,234,567",
            "one million two hundred and thirty-four thousand five hundred and sixty-seven",
        ),
        ("-5", "minus five"),
        ("007", "zero zero seven"),
        ("Version 1.2.3", "Version one point two point three"),
        ("$5.50", "five dollars and fifty cents"),
        ("$1", "one dollar"),
        ("$0.99", "ninety-nine cents"),
        ("$2.5 million", "two point five million dollars"),
        ("\u00a33", "three pounds"),
        ("\u20ac20", "twenty euros"),
        ("20\u20ac", "twenty euros"),
        ("50%", "fifty percent"),
        ("the 1st, 22nd, 3rd and 12th", "the first, twenty-second, third and twelfth"),
        ("in 1984", "in nineteen eighty-four"),
        ("1984 cats", "one thousand nine hundred and eighty-four cats"),
        ("the 1980s", "the nineteen eighties"),
        ("from 1990-2000", "from nineteen ninety to two thousand"),
        ("pages 10-20.", "pages ten to twenty."),
        ("call 555-1234", "call five five five, one two three four"),
        ("(212) 555-0187", "two one two, five five five, zero one eight seven"),
        ("212-555-0187.", "two one two, five five five, zero one eight seven."),
        ("100-1000", "one hundred to one thousand"),
        ("at 10:30", "at ten thirty"),
        ("at 10:05", "at ten oh five"),
        ("at 10:00", "at ten o'clock"),
        ("at 5 p.m. Then", "at five P-M. Then"),
        ("1/2 and 3/4", "one half and three quarters"),
        (
            "30 km/h, 1 kg, -5\u00b0C",
            "thirty kilometres per hour, one kilogram, minus five degrees Celsius",
        ),
        ("Tom & Jerry + me @ home = fun", "Tom and Jerry plus me at home equals fun"),
        ("john@example.com", "john at example dot com"),
    ],
)
def test_numbers_money_times_and_symbols_are_spelled_out(text: str, expected: str) -> None:
    assert said(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith met Mr Jones and Mrs. Brown.",
            "Doctor Smith met Mister Jones and Missus Brown.",
        ),
        (
            "Cats vs. dogs, e.g. pets, i.e. animals",
            "Cats versus dogs, for example pets, that is animals",
        ),
        ("Apples, pears, etc.", "Apples, pears, et cetera."),
        ("See No. 5 and #7.", "See number five and number seven."),
        ("He said No.", "He said No."),
        ("In St. Louis on Baker St. We met.", "In Saint Louis on Baker street. We met."),
        ("The U.S.A. is big.", "The USA is big."),
        ("It costs (about) $5.", "It costs, about, five dollars."),
        ("\u201cYes\u201d \u2014 he\u2019s sure\u2026", '"Yes", he\'s sure...'),
    ],
)
def test_abbreviations_and_punctuation(text: str, expected: str) -> None:
    assert said(text) == expected


def test_ordinals() -> None:
    assert [ordinal_to_words(n) for n in (1, 2, 5, 11, 20, 21, 100, 1000)] == [
        "first",
        "second",
        "fifth",
        "eleventh",
        "twentieth",
        "twenty-first",
        "one hundredth",
        "one thousandth",
    ]


def test_accents_are_folded_to_ascii() -> None:
    result = normalize_for_speech("Caf\u00e9 na\u00efve Zo\u00eb stra\u00dfe \u0141\u00f3d\u017a")
    assert result.text == "Cafe naive Zoe strasse Lodz"
    assert result.skipped == ()


def test_emoji_and_other_scripts_are_dropped_and_reported_once() -> None:
    result = normalize_for_speech("Thanks \U0001f44d\U0001f3fd a lot \U0001f600\U0001f44d \u4e2d!")
    assert result.text == "Thanks a lot!"
    assert result.skipped == ("\U0001f44d", "\U0001f600", "\u4e2d")  # skin tone modifier silent


def test_empty_or_unsayable_text_normalises_to_nothing() -> None:
    assert said("") == ""
    assert said("  \n ") == ""
    assert normalize_for_speech("\U0001f600").skipped == ("\U0001f600",)


def test_split_keeps_abbreviations_and_initials_inside_sentences() -> None:
    text = (
        "Dr. Smith went home. He said hi! Did J. R. R. Tolkien write it, e.g. the Hobbit? "
        "No. 5 is here. I said no. Then apples etc. and pears etc. Next one.\n\nHeading\n\nBody"
    )
    assert split_sentences(text) == [
        "Dr. Smith went home.",
        "He said hi!",
        "Did J. R. R. Tolkien write it, e.g. the Hobbit?",
        "No. 5 is here.",
        "I said no.",
        "Then apples etc. and pears etc.",
        "Next one.",
        "Heading",
        "Body",
    ]


def test_split_bounds_length_at_clauses_then_words() -> None:
    sentence = "one two three, four five six; seven eight nine ten eleven twelve."
    assert split_sentences(sentence, max_chars=20) == [
        "one two three,",
        "four five six;",
        "seven eight nine ten",  # exactly 20
        "eleven twelve.",
    ]
    assert split_sentences("a" * 25, max_chars=10) == ["a" * 10, "a" * 10, "a" * 5]


def test_split_long_text_keeps_every_word_within_bounds() -> None:
    rng = random.Random(0)
    vocabulary = "the a cat sat on mat Dr. Smith e.g. went home, and then; quickly".split()
    words = []
    for _ in range(4000):
        word = rng.choice(vocabulary)
        words.append(word + rng.choice(["", "", "", "", ".", "!", "?", ","]))
    text = " ".join(words)
    pieces = split_sentences(text, max_chars=120)
    assert all(0 < len(p) <= 120 for p in pieces)
    assert " ".join(pieces).split() == words


def test_split_empty_text() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\n ") == []


def test_phonemize_gives_ipa_with_word_boundaries_and_punctuation() -> None:
    hello, empty, question = phonemize(["Hello world.", "", "Is it raining?"])
    assert empty == ""
    assert hello.count(" ") == 1 and hello.endswith(".")
    assert "\u02c8" in hello  # primary stress
    assert question.endswith("?") and len(question.split()) == 3


def test_phonemize_never_looks_for_a_system_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    import espeakng_loader
    from phonemizer.backend.espeak import wrapper

    def no_system_library(name: str) -> None:
        raise AssertionError(f"looked for a system {name}")

    monkeypatch.setattr(wrapper, "_find_library", no_system_library)
    backend = frontend._espeak_backend.__wrapped__()  # a fresh backend, not the cached one
    assert wrapper.EspeakWrapper.library() == espeakng_loader.get_library_path()
    assert backend.phonemize(["yes"])[0].strip()


def test_vocab_layout_and_round_trip() -> None:
    vocab = PhonemeVocab()
    assert len(vocab) == len(DEFAULT_SYMBOLS)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    ipa = phonemize(["The quick brown fox jumps over the lazy dog; doesn't it?"])[0]
    ids = vocab.encode(ipa)
    assert vocab.unk_id not in ids
    assert vocab.decode(ids) == ipa
    assert vocab.decode([vocab.bos_id, *ids, vocab.eos_id, vocab.pad_id]) == ipa


def test_vocab_json_round_trip() -> None:
    vocab = PhonemeVocab()
    text = vocab.to_json()
    assert json.loads(text)["symbols"] == list(DEFAULT_SYMBOLS)
    assert PhonemeVocab.from_json(text) == vocab
    with pytest.raises(CheckpointError):
        PhonemeVocab.from_json('{"format": "something else"}')
    with pytest.raises(CheckpointError):
        PhonemeVocab.from_json("not json")


def test_unknown_phoneme_becomes_unk_with_a_warning() -> None:
    vocab = PhonemeVocab()
    with pytest.warns(UserWarning, match="unknown phoneme symbols"):
        ids = vocab.encode("a\u03b2b")
    assert ids == [vocab.encode("a")[0], vocab.unk_id, vocab.encode("b")[0]]
    assert vocab.decode(ids) == "ab"
    with pytest.raises(ValueError):
        vocab.decode([len(vocab)])


def test_text_to_phoneme_ids() -> None:
    vocab = PhonemeVocab()
    ids = text_to_phoneme_ids("Dr. Smith paid $5.", vocab)
    assert ids and vocab.unk_id not in ids
    assert vocab.decode(ids).startswith("d\u02c8\u0251\u02d0kt\u025a sm")  # "Doctor Smith"
    assert text_to_phoneme_ids("", vocab) == []


def test_frontend_splits_warns_once_and_skips_empty_sentences() -> None:
    frontend = TextFrontend(max_chars=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utterances = frontend(
            "Hello \U0001f600 world. \U0001f600 \"\" It's 10:30, and Dr. Smith isn't here yet, "
            "so we wait.\n\nNew paragraph \u4e2d"
        )
    messages = [str(w.message) for w in caught]
    assert messages == ["skipped unsupported characters: \U0001f600 \u4e2d"]
    assert [u.text for u in utterances] == [
        "Hello world.",
        "It's ten thirty,",
        "and Doctor Smith isn't here yet,",
        "so we wait.",
        "New paragraph",
    ]
    assert all(u.ids and len(u.text) <= 40 for u in utterances)
    assert frontend("") == []
