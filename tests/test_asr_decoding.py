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
from tests.helpers.asr import clip_mels, one_thread, tiny_model, tiny_tokenizer

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
    # all but certain silence is no speech however sure the text (white noise as "F")
    certain = result("F", avg_logprob=-0.96, no_speech_prob=0.99998)
    assert is_no_speech(certain, options)
    assert not is_no_speech(certain, FallbackOptions(no_speech_certain=None))  # Whisper's rule


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


# ---------------------------------------------------------------------------------------
# Joint CTC/attention decoding


def test_ctc_prefix_scores_match_the_ctc_loss_and_the_recurrence():
    from asr.ctc import CTCPrefixScorer

    torch.manual_seed(0)
    units = 4
    log_probs = torch.randn(2, 12, units + 1).log_softmax(-1)  # blank last
    lengths = torch.tensor([12, 9])  # the second utterance is padded
    scorer = CTCPrefixScorer(log_probs, lengths)
    item = torch.tensor([0, 1, 0, 1])
    spellings = [[1, 2, 2], [3, 1], [0], [2, 2, 2]]  # repeats need a blank between
    rows = torch.arange(4)
    state = scorer.extend(scorer.start(item), rows, item, spellings)
    for row, spelling in enumerate(spellings):
        i, t = int(item[row]), int(lengths[item[row]])
        nll = torch.nn.functional.ctc_loss(
            log_probs[i : i + 1, :t].transpose(0, 1),
            torch.tensor([spelling]),
            torch.tensor([t]),
            torch.tensor([len(spelling)]),
            blank=units,
            reduction="sum",
        )
        assert float(scorer.full(state)[row]) == pytest.approx(-float(nll), abs=1e-5)
        psi = _prefix_probability(log_probs[i, :t].double().exp(), spelling, units)
        assert float(state.psi[row]) == pytest.approx(math.log(psi), abs=1e-9)
    # Extending one unit at a time gives what extending by all of them at once does.
    step = scorer.start(item)
    for j in range(3):
        step = scorer.extend(step, rows, item, [s[j : j + 1] for s in spellings])
    assert torch.allclose(step.psi, state.psi) and torch.allclose(step.r_b, state.r_b)
    assert torch.allclose(
        scorer.prefix_scores(scorer.start(item), rows, item, spellings), state.psi
    )


def _prefix_probability(y, spelling, blank):
    """P(the transcript starts with `spelling`), by the frame-by-frame recurrence."""
    frames = y.shape[0]
    r_n, r_b = [0.0] * (frames + 1), [1.0] + [0.0] * frames
    for t in range(1, frames + 1):
        r_b[t] = r_b[t - 1] * float(y[t - 1, blank])
    last, psi = None, 1.0
    for unit in spelling:
        phi = [r_b[t] + (r_n[t] if unit != last else 0.0) for t in range(frames + 1)]
        n, b, psi = [0.0] * (frames + 1), [0.0] * (frames + 1), 0.0
        for t in range(1, frames + 1):
            n[t] = (n[t - 1] + phi[t - 1]) * float(y[t - 1, unit])
            b[t] = (b[t - 1] + n[t - 1]) * float(y[t - 1, blank])
            psi += phi[t - 1] * float(y[t - 1, unit])
        r_n, r_b, last = n, b, unit
    return psi


def _with_ctc_head(spell, monkeypatch):
    """The overfitted tiny model with a character CTC head whose output is rigged: each
    utterance's frames spell `spell[i]` (one frame a letter, a blank after each), or only
    blanks for None."""
    import dataclasses

    from asr.ctc import CTC_ALPHABET, ctc_chars
    from asr.model import ASRModel
    from tests.helpers.asr import overfitted

    trained, _ = overfitted()
    model = ASRModel(dataclasses.replace(trained.dims, ctc_units="chars")).eval()
    model.load_state_dict({**trained.state_dict(), **model.ctc.state_dict(prefix="ctc.")})

    def rigged(audio):
        b, s, _ = audio.x.shape
        blank = len(CTC_ALPHABET)
        out = torch.full((b, s, blank + 1), -12.0)
        out[..., blank] = 0.0
        for i, text in enumerate(spell):
            for j, unit in enumerate(ctc_chars(text or "")):
                out[i, 2 * j, blank], out[i, 2 * j, unit] = -12.0, 0.0
        return out.log_softmax(-1)

    monkeypatch.setattr(model, "ctc_log_probs", rigged)
    return model


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_ctc_head_that_agrees_leaves_the_decoders_text(beam_size, monkeypatch):
    from tests.helpers.asr import TEXTS

    model = _with_ctc_head(TEXTS, monkeypatch)
    mel, frames = clip_mels()
    alone = decode(model, mel, frames, DecodingOptions(beam_size=beam_size, ctc_weight=0.0))
    joint = decode(model, mel, frames, DecodingOptions(beam_size=beam_size, ctc_weight=0.5))
    assert [r.text for r in alone] == list(TEXTS)
    assert [r.text for r in joint] == list(TEXTS)
    # The confidence stays the decoder's own log-probability.
    for a, j in zip(alone, joint):
        assert j.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-4)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_ctc_head_outvotes_text_that_no_frame_supports(beam_size, monkeypatch):
    from tests.helpers.asr import TEXTS

    # The head hears the other clip's words in each clip, or nothing at all.
    model = _with_ctc_head([TEXTS[1], None], monkeypatch)
    mel, frames = clip_mels()
    alone = decode(model, mel, frames, DecodingOptions(beam_size=beam_size, ctc_weight=0.0))
    joint = decode(model, mel, frames, DecodingOptions(beam_size=beam_size, ctc_weight=0.8))
    assert [r.text for r in alone] == list(TEXTS)
    assert joint[0].text == TEXTS[1]
    # Nothing heard: it ends as soon as it may (one word: never before a token, and
    # punctuation spells nothing), where the decoder alone says the whole sentence.
    assert len(joint[1].text.split()) <= 1


def test_ctc_weight_needs_a_head_and_a_valid_weight(monkeypatch):
    from asr.decoding import DEFAULT_CTC_WEIGHT
    from tests.helpers.asr import TEXTS

    # Unset, it is the default for a model with a head and 0 without.
    headed = _with_ctc_head([TEXTS[1], None], monkeypatch)
    assert DecodingOptions().for_model(headed).ctc_weight == DEFAULT_CTC_WEIGHT > 0
    mel, frames = clip_mels()
    unset = decode(headed, mel, frames, DecodingOptions())
    default = decode(headed, mel, frames, DecodingOptions(ctc_weight=DEFAULT_CTC_WEIGHT))
    assert [r.tokens for r in unset] == [r.tokens for r in default]
    model = tiny_model(seed=7)
    assert DecodingOptions().for_model(model).ctc_weight == 0.0
    with pytest.raises(ValueError, match="CTC head"):
        decode(model, torch.randn(1, 80, 50), torch.tensor([50]), DecodingOptions(ctc_weight=0.3))
    with pytest.raises(ValueError, match="ctc_weight"):
        DecodingOptions(ctc_weight=1.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        DecodingOptions(temperature=-0.1)


def test_spelling_piece_by_piece_equals_spelling_the_text():
    from asr.ctc import Speller, ctc_chars

    tok = tiny_tokenizer()
    speller = Speller(tok, "chars")
    for text in ("Hello world.", "Good morning, Anna!", "  one -- two... three?", "O'Brien's dog"):
        spelled, pending = [], False
        for token in [*tok.encode(text), tok.eot]:
            units, pending = speller.add(bool(spelled), pending, token)
            spelled += units
        assert spelled == ctc_chars(text), text
    assert Speller(tok, "pieces").add(False, False, 5) == ([5], False)


def _count_prefix_scores(monkeypatch) -> list[int]:
    from asr.ctc import CTCPrefixScorer

    scored: list[int] = []
    real = CTCPrefixScorer.prefix_scores

    def counting(self, state, rows, item, added):
        scored.append(len(rows))
        return real(self, state, rows, item, added)

    monkeypatch.setattr(CTCPrefixScorer, "prefix_scores", counting)
    return scored


def _score_every_candidate(monkeypatch) -> None:
    import asr.decoding as decoding

    real = decoding._ctc_gains

    def every_candidate(*args):
        *rest, bound, w, k = args
        return real(*rest, torch.zeros_like(bound), w, k)  # all bounds tie: score all

    monkeypatch.setattr(decoding, "_ctc_gains", every_candidate)


def _pruned_and_full(model, mel, frames, monkeypatch):
    options = DecodingOptions(beam_size=4, ctc_weight=0.4, max_tokens=12)
    scored = _count_prefix_scores(monkeypatch)
    pruned = decode(model, mel, frames, options)
    n_pruned = sum(scored)
    _score_every_candidate(monkeypatch)
    scored.clear()
    full = decode(model, mel, frames, options)
    assert [r.tokens for r in pruned] == [r.tokens for r in full]
    assert [r.avg_logprob for r in pruned] == pytest.approx([r.avg_logprob for r in full])
    return n_pruned, sum(scored)


@pytest.mark.parametrize("units", ["chars", "pieces"])
def test_ctc_scores_only_the_candidates_that_can_win(units, monkeypatch):
    # A prefix score costs a pass over every frame, and a candidate's score without it
    # bounds its total (the CTC gain is never positive), so the search scores only the
    # candidates that can still make the beam. It must find exactly what scoring every
    # candidate finds, here where an untrained model and head give many close candidates.
    import dataclasses

    from asr.model import ASRModel

    base = tiny_model(seed=3)
    model = ASRModel(dataclasses.replace(base.dims, ctc_units=units)).eval()
    torch.manual_seed(4)
    model.load_state_dict({**base.state_dict(), **model.ctc.state_dict(prefix="ctc.")})
    mel, frames = torch.randn(3, 80, 60), torch.tensor([60, 44, 30])
    n_pruned, n_full = _pruned_and_full(model, mel, frames, monkeypatch)
    assert n_pruned < n_full


def test_a_confident_search_skips_ctc_scores(monkeypatch):
    # With a decoder and a head that agree, the favourites settle the beam and some
    # candidates are never scored (on real speech, about three in four: see the README).
    from tests.helpers.asr import TEXTS

    model = _with_ctc_head(TEXTS, monkeypatch)
    n_pruned, n_full = _pruned_and_full(model, *clip_mels(), monkeypatch)
    assert n_pruned < 0.8 * n_full
