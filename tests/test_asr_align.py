"""Word timestamps: Viterbi alignment of CTC letters onto frames, words timed from it,
the pieces of a transcription carrying them, and subtitle cues split at word boundaries."""

import functools

import pytest
import torch

from asr.align import Word, ctc_alignment, word_times
from asr.ctc import CTC_ALPHABET, ctc_chars
from asr.decoding import DecodingOptions, decode
from asr.decoding import DecodingResult as Result
from asr.formats import cues, to_srt
from asr.model import SAMPLE_RATE, log_mel_features
from asr.transcribe import Segment, TranscribeOptions, Transcript, tensor_blocks, transcribe_many
from tests.helpers.asr import clip, overfitted, tiny_model, tiny_tokenizer

BLANK = len(CTC_ALPHABET)


def _log_probs(held: list[tuple[int, int, int]], frames: int) -> torch.Tensor:
    """`(frames, units + 1)` log-probs: blank everywhere but for (unit, first, end) spans."""
    scores = torch.full((frames, BLANK + 1), -9.0)
    scores[:, BLANK] = 0.0
    for unit, a, b in held:
        scores[a:b] = -9.0
        scores[a:b, unit] = 0.0
    return scores.log_softmax(-1)


def test_viterbi_finds_the_frames_each_unit_holds():
    assert ctc_alignment(_log_probs([(1, 2, 4), (2, 6, 8)], 10), [1, 2]) == [(2, 4), (6, 8)]
    # a repeated unit needs a blank between its two emissions
    assert ctc_alignment(_log_probs([(1, 2, 4), (1, 5, 8)], 10), [1, 1]) == [(2, 4), (5, 8)]
    assert ctc_alignment(_log_probs([], 2), [1, 1]) is None  # 2 frames cannot spell "a_a"
    assert ctc_alignment(_log_probs([], 4), []) == []


def test_words_are_timed_from_their_first_letter_to_their_last():
    text = "Hello, world - again!"
    held, t = [], 1
    for unit in ctc_chars(text):  # every letter (and space) 2 frames, then a blank
        held.append((unit, t, t + 2))
        t += 3
    words = word_times(text, _log_probs(held, t + 2), 0.02, offset=10.0)
    # "hello" is frames 1-15, the space 16-17, "world" 19-33; the dash has no letters
    assert words == [
        Word("Hello,", 10.02, 10.3),
        Word("world -", 10.38, 10.66),
        Word("again!", 10.74, 11.02),
    ]
    assert word_times("- ok", _log_probs(held, t + 2), 0.02)[0].word == "- ok"
    assert word_times("far too many words", _log_probs([], 5), 0.02) == []


def test_pieces_carry_their_words_timed_from_the_input_start():
    tok = tiny_tokenizer()
    asked = []

    def stub(mel, lengths, options):
        asked.append(options.keep_ctc)
        spell = ctc_chars("one two")
        held = [(u, 2 * k + 1, 2 * k + 2) for k, u in enumerate(spell)]
        return [  # the CTC frames are 20 ms, two mel frames
            Result(tok.encode("one two"), "one two", -0.1, 0.0, 0.0, 1.0)
            if not options.keep_ctc
            else Result(
                tok.encode("one two"), "one two", -0.1, 0.0, 0.0, 1.0, _log_probs(held, n // 2)
            )
            for n in lengths.tolist()
        ]

    g = torch.Generator().manual_seed(0)
    speech = lambda s: 0.1 * torch.randn(int(s * SAMPLE_RATE), generator=g)  # noqa: E731
    audio = torch.cat([speech(3.0), torch.zeros(SAMPLE_RATE // 2), speech(3.0)])
    source = functools.partial(tensor_blocks, audio)
    options = TranscribeOptions(chunk_seconds=5.0, word_timestamps=True)
    (result,) = transcribe_many([source], stub, tok, options)
    assert asked == [True] and [len(s.words) for s in result.segments] == [2, 2]
    first, second = result.segments
    assert (first.words[0].start, first.words[1].end) == pytest.approx((0.02, 0.28))
    cut = 3.25  # the middle of the pause, where the second piece starts
    assert second.words[0].start == pytest.approx(cut + 0.02, abs=0.021)
    plain = TranscribeOptions(chunk_seconds=5.0)
    (result,) = transcribe_many([source], stub, tok, plain)
    assert asked == [True, False] and all(s.words == () for s in result.segments)  # not asked
    with pytest.raises(ValueError, match="word_timestamps needs pieces"):
        TranscribeOptions(chunk_seconds=None, word_timestamps=True)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decoding_keeps_the_ctc_log_probs_of_its_own_encoder_pass(beam_size):
    """Word times come from the pass that decoded the piece, not a second run of the
    encoder: each item's kept log-probs are those of its audio encoded alone."""
    model, _ = overfitted("chars")
    wavs = [clip(0, 1.0), clip(1, 0.7)]
    lengths = torch.tensor([w.shape[0] for w in wavs])
    mel, frames = log_mel_features(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths)
    options = DecodingOptions(beam_size=beam_size, keep_ctc=True)
    results = decode(model, mel, frames, options)
    for wav, result in zip(wavs, results):
        alone, n = log_mel_features(wav[None])
        with torch.no_grad():
            features = model.embed_audio(alone, n)
            expected = model.ctc_log_probs(features)[0, : int(features.lengths[0])]
        assert result.ctc_log_probs.shape == expected.shape
        torch.testing.assert_close(result.ctc_log_probs, expected, atol=1e-4, rtol=1e-4)
    assert decode(model, mel, frames, DecodingOptions())[0].ctc_log_probs is None
    with pytest.raises(ValueError, match="keep_ctc needs a model with a CTC head"):
        decode(tiny_model(), mel, frames, options)


def test_subtitle_cues_split_a_long_segment_at_word_boundaries():
    words = tuple(Word(f"word{k:02d}", 0.5 * k, 0.5 * k + 0.4) for k in range(30))  # 15 s
    segment = Segment(0.0, 15.0, " ".join(w.word for w in words), -0.1, 0.0, 0.0, 1.0, words)
    plain = Segment(20.0, 22.0, "No words here.", -0.1, 0.0, 0.0, 1.0)
    transcript = Transcript((segment, plain), 22.0, -0.1, 0.0)
    out = cues(transcript)
    assert all(len(text) <= 84 and end - start <= 7.0 for start, end, text in out)
    assert " ".join(text for _, _, text in out[:-1]) == segment.text  # every word, in order
    assert out[0][0] == 0.0 and out[-2][1] == pytest.approx(14.9)
    assert out[-1] == (20.0, 22.0, "No words here.")
    assert to_srt(transcript).count(" --> ") == len(out)
    # a cue ends after a punctuation mark in its second half (word 8 of the 12 that fit)
    marked = tuple(
        Word(w.word + ("," if k == 8 else ""), w.start, w.end) for k, w in enumerate(words)
    )
    text = " ".join(w.word for w in marked)
    split = cues(Transcript((Segment(0.0, 15.0, text, -0.1, 0.0, 0.0, 1.0, marked),), 15.0, 0, 0))
    assert split[0][2].endswith("word08,") and split[0][1] == pytest.approx(4.4)
    assert " ".join(t for _, _, t in split) == text
