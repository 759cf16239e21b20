"""The lexicon of the LM's text and the beam search's penalty on words outside it: which
written words count as unknown, that each counts once, and what the penalty does to the
search."""

import pytest
import torch

from asr.decoding import DecodingOptions, decode
from asr.lexicon import Lexicon, WordJudge, lexicon_words
from asr.lm import NGramLM, build_lm, load_lm, save_lm
from tests.helpers.asr import TEXTS, one_thread, tiny_tokenizer

_threads = pytest.fixture(autouse=True)(one_thread)

WORDS = ["the", "train", "there", "dorothy", "o'clock", "hello", "world", "good"]


def test_its_words_are_those_the_word_error_rate_compares():
    lines = ["The train left at 8 o'clock.", "Dorothy's cafe, well-known!"]
    assert lexicon_words(lines) == [
        "at",
        "cafe",
        "dorothy's",
        "eight",
        "known",
        "left",
        "o'clock",
        "the",
        "train",
        "well",
    ]
    with pytest.raises(ValueError, match="not a lexicon word"):
        Lexicon(["two words"])


def test_known_words_prefixes_and_what_is_not_judged():
    lex = Lexicon(WORDS)
    assert all(lex.known(w) for w in ["the", "o'clock", "dorothy's", "dorothy'", "'the'"])
    assert not any(lex.known(w) for w in ["dere", "detrain", "th", "dere's"])
    # numbers and other scripts are not judged; nor is an empty run
    assert all(lex.known(w) for w in ["1913", "caf\ufffd", "'", ""])
    assert all(lex.may_continue(w) for w in ["th", "o'", "o'cl", "dorothy's", "'tr"])
    assert not any(lex.may_continue(w) for w in ["x", "thx", "dere'", "xo'"])


def _count(judge: WordJudge, tokens: list[int]) -> int:
    state, total = WordJudge.START, 0
    for t in tokens:
        state, n = judge.advance(state, t)
        total += n
    return total


def test_each_unknown_word_counts_once_whatever_the_pieces():
    tok = tiny_tokenizer()
    judge = WordJudge(Lexicon(WORDS), tok.piece_texts)
    eot = tok.eot  # a special token ends the last word
    for text, unknown in [
        ("Hello world.", 0),
        ("The train, there!", 0),
        ("Dorothy's train at 8 o'clock", 1),  # "at"
        ("Dere detrain.", 2),
        ("Hellx world", 1),
        ("hello worl", 1),  # cut short: "worl" is no word
        ("zzzz zzzz zzzz", 3),
    ]:
        assert _count(judge, [*tok.encode(text), eot]) == unknown, text
    # without the end, an unfinished word that may still become one is not counted yet
    assert _count(judge, tok.encode("hello worl")) == 0
    assert _count(judge, tok.encode("hello wx")) == 1


def test_the_lm_keeps_the_lexicon_of_its_text_in_its_files(tmp_path):
    lines = ["Hello world.", "Good morning, Anna!"] * 2
    dims, tables, record = build_lm(lines, tiny_tokenizer(), order=2)
    assert record["lexicon words"] == 5
    save_lm(tmp_path / "lm", dims, tables, record)
    lm = load_lm(tmp_path / "lm.safetensors")
    assert sorted(lm.lexicon.words) == ["anna", "good", "hello", "morning", "world"]
    # an LM counted before the lexicon was kept still loads, without one
    old = {k: v for k, v in tables.items() if k != "lexicon"}
    assert NGramLM(dims, old).lexicon is None
    assert not DecodingOptions(beam_size=3, lm=NGramLM(dims, old), lexicon_penalty=5).judges_words


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_penalty_keeps_the_search_from_writing_unknown_words(beam_size):
    from tests.helpers.asr import clip_mels, overfitted

    model, _ = overfitted()
    mel, frames = clip_mels()
    alone = decode(model, mel, frames, DecodingOptions(beam_size=beam_size))
    assert [r.text for r in alone] == list(TEXTS)
    tok = model.tokenizer

    def lm_of(lines):  # an LM whose weight is 0: only its lexicon acts
        dims, tables, _ = build_lm(lines, tok, order=2)
        return NGramLM(dims, tables)

    # A lexicon with every word said changes nothing, however heavy the penalty.
    knows_all = DecodingOptions(
        beam_size=beam_size, lm=lm_of(TEXTS), lm_weight=0.0, lexicon_penalty=50
    )
    assert [r.tokens for r in decode(model, mel, frames, knows_all)] == [r.tokens for r in alone]
    # One without "Anna": the second clip no longer says it; the first is untouched.
    no_anna = lm_of(["Hello world.", "Good morning!"])
    heavy = DecodingOptions(beam_size=beam_size, lm=no_anna, lm_weight=0.0, lexicon_penalty=50)
    first, second = decode(model, mel, frames, heavy)
    assert first.tokens == alone[0].tokens
    assert "anna" not in second.text.lower()
    # the confidence stays the decoder's own
    assert torch.isfinite(torch.tensor(second.avg_logprob))
    with pytest.raises(ValueError, match="lexicon_penalty"):
        DecodingOptions(lexicon_penalty=-1)
