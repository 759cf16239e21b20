"""Decoding rules: temperature fallback (compression ratio, log-probability, the no-speech
exception), well-formed timestamps from any model, and splitting a window's tokens into
segments and the next seek."""

import math

import pytest
import torch

from asr.decoding import (
    DecodingOptions,
    DecodingResult,
    FallbackOptions,
    compression_ratio,
    decode,
    decode_with_fallback,
    is_no_speech,
    needs_fallback,
)
from asr.transcribe import parse_window
from tests.helpers.asr import one_thread, tiny_model, tiny_tokenizer

_threads = pytest.fixture(autouse=True)(one_thread)

REPETITIVE = "the the the the the the the the the the the the the the the the the the"
NORMAL = "the quick brown fox jumps over the lazy dog"


def result(text, *, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0):
    return DecodingResult(
        [1, 2], text, avg_logprob, no_speech_prob, temperature, compression_ratio(text)
    )


def test_compression_ratio_rule_flags_repetitive_text():
    options = FallbackOptions()
    assert compression_ratio(REPETITIVE) > 2.4 > compression_ratio(NORMAL)
    assert needs_fallback(result(REPETITIVE), options)
    assert not needs_fallback(result(NORMAL), options)
    assert needs_fallback(result(NORMAL, avg_logprob=-1.5), options)  # unlikely text
    # likely silence: no retry (the no-speech rule decides instead)
    silent = result(REPETITIVE, avg_logprob=-1.5, no_speech_prob=0.9)
    assert not needs_fallback(silent, options) and is_no_speech(silent, options)
    assert not is_no_speech(result(NORMAL, no_speech_prob=0.9), options)  # confident text


def test_fallback_retries_only_the_repetitive_item_at_a_higher_temperature():
    calls = []

    def stub(mel, lengths, options):
        calls.append((options.temperature, options.beam_size, mel[:, 0, 0].tolist()))
        texts = {0.0: [REPETITIVE, NORMAL], 0.2: [NORMAL]}[options.temperature]
        return [result(texts[i], temperature=options.temperature) for i in range(mel.shape[0])]

    mel = torch.arange(2.0).view(2, 1, 1).expand(2, 80, 10)
    out = decode_with_fallback(
        stub, mel, torch.tensor([10, 10]), DecodingOptions(beam_size=5), FallbackOptions()
    )
    assert [r.text for r in out] == [NORMAL, NORMAL]
    assert [r.temperature for r in out] == [0.2, 0.0]
    assert calls == [(0.0, 5, [0.0, 1.0]), (0.2, 1, [0.0])]  # sampling drops the beams


@pytest.mark.parametrize("beam_size", [1, 3])
def test_timestamps_are_well_formed_even_from_an_untrained_model(beam_size):
    tok = tiny_tokenizer()
    model = tiny_model(seed=7)
    options = DecodingOptions(timestamps=True, beam_size=beam_size, max_tokens=40)
    for r in decode(model, torch.randn(2, 80, 150), torch.tensor([150, 90]), options):
        times = [tok.token_time(t) for t in r.tokens if tok.is_timestamp(t)]
        assert r.tokens and tok.is_timestamp(r.tokens[0]) and times[0] <= 1.0
        assert times == sorted(times) and times[-1] <= 1.5
        assert all(t < tok.eot or tok.is_timestamp(t) for t in r.tokens)  # no other specials
        for a, b, c in zip(r.tokens, r.tokens[1:], r.tokens[2:]):
            assert not (tok.is_timestamp(a) and tok.is_timestamp(b) and tok.is_timestamp(c))


def test_parse_window_splits_segments_and_finds_the_next_seek():
    tok = tiny_tokenizer()
    ts, hello, good = tok.timestamp_token, tok.encode("Hello world."), tok.encode("Good morning")
    closed = [ts(0.5), *hello, ts(2.0), ts(2.0), *good, ts(3.5)]
    parsed = parse_window(closed, tok, timestamps=True)
    assert [(s, e, tok.decode(t)) for s, e, t in parsed.spans] == [
        (0.5, 2.0, "Hello world."),
        (2.0, 3.5, "Good morning"),
    ]
    assert parsed.advance is None  # everything closed: move by the whole window
    cut = [ts(0.5), *hello, ts(2.0), ts(27.0)]  # a lone start: the window cut the utterance
    parsed = parse_window(cut, tok, timestamps=True)
    assert len(parsed.spans) == 1 and parsed.advance == pytest.approx(27.0)
    budget = [ts(0.5), *hello, ts(2.0), ts(27.0), *good]  # text cut by the token budget
    assert parse_window(budget, tok, timestamps=True) == parsed
    untimed = parse_window(hello, tok, timestamps=False)
    assert untimed.spans == [(0.0, math.inf, hello)] and untimed.advance is None
    assert parse_window([], tok, timestamps=True).spans == []
