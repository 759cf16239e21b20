"""Transcription of whole inputs: windows with seek over long audio in bounded memory
(with a stub decoder), silence and no speech give empty text, batching does not change
the result, and the txt/srt/vtt/json writers."""

import functools
import json

import pytest
import torch

from asr.decoding import DecodingOptions, FallbackOptions, compression_ratio
from asr.decoding import DecodingResult as Result
from asr.formats import to_json, to_srt, to_txt, to_vtt
from asr.model import SAMPLE_RATE
from asr.transcribe import (
    WINDOW_SAMPLES,
    Segment,
    TranscribeOptions,
    Transcript,
    WindowReader,
    first_sound,
    quiet_to_skip,
    tensor_blocks,
    transcribe,
    transcribe_many,
)
from tests.helpers.asr import clip, one_thread, tiny_model, tiny_tokenizer

_threads = pytest.fixture(autouse=True)(one_thread)


def noise(seconds, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=g)


def test_long_input_is_windowed_with_seek():
    tok = tiny_tokenizer()
    ts = tok.timestamp_token
    windows = []  # frames of each decoded window

    def stub(mel, lengths, options):
        windows.extend(lengths.tolist())
        tokens = [ts(0.0), *tok.encode("one"), ts(10.0), ts(10.0), *tok.encode("two"), ts(20.0)]
        tokens += [ts(25.0), *tok.encode("three")]  # cut by the window: seek to 25 s
        return [Result(tokens, "", -0.1, 0.0, 0.0, 1.0) for _ in range(mel.shape[0])]

    options = TranscribeOptions(
        DecodingOptions(timestamps=True), FallbackOptions(), chunk_seconds=None
    )
    source = lambda: tensor_blocks(noise(70), block_samples=SAMPLE_RATE)  # noqa: E731
    (result,) = list(transcribe_many([source], stub, tok, options))
    assert windows == [3000, 3000, 2000]  # windows at 0, 25 and 50 s; the last holds 20 s
    assert [s.start for s in result.segments if s.text == "one"] == [0.0, 25.0, 50.0]
    assert [s.text for s in result.segments] == ["one", "two"] * 3  # "three" never closed
    assert result.segments[-1].end == pytest.approx(70.0)
    assert result.duration == pytest.approx(70.0)


def test_a_window_with_long_quiet_before_its_sound_starts_just_before_it():
    tok = tiny_tokenizer()
    ts = tok.timestamp_token
    frames = []

    def stub(mel, lengths, options):
        frames.extend(lengths.tolist())
        return [Result([ts(0.0), *tok.encode("one"), ts(1.0)], "", -0.1, 0.0, 0.0, 1.0)]

    quiet = 1e-4 * noise(1.0, seed=1)  # -100 dBFS: below the -60 dBFS floor
    timed = DecodingOptions(timestamps=True)
    for audio, max_lead, length, segment in [
        (torch.cat([quiet, noise(3.0)]), 0.25, 310, (0.9, 1.9)),  # 0.9 s skipped, 0.1 s kept
        (torch.cat([quiet, noise(3.0)]), None, 400, (0.0, 1.0)),  # decoded as it is
        (torch.cat([quiet[:3200], noise(3.0)]), 0.25, 320, (0.0, 1.0)),  # 0.2 s: as in training
    ]:
        frames.clear()
        options = TranscribeOptions(timed, max_lead=max_lead, chunk_seconds=None)
        source = functools.partial(tensor_blocks, audio)
        (result,) = transcribe_many([source], stub, tok, options)
        assert frames == [length]
        assert (result.segments[0].start, result.segments[0].end) == pytest.approx(segment)
        assert result.duration == pytest.approx(audio.shape[0] / SAMPLE_RATE)
    assert first_sound(torch.cat([quiet, noise(1.0)])) == SAMPLE_RATE
    assert first_sound(quiet) is None  # nothing above the floor
    assert quiet_to_skip(quiet, TranscribeOptions()) == 0
    with pytest.raises(ValueError, match="lead_in"):
        TranscribeOptions(max_lead=0.1, lead_in=0.2)


def _speech_with_pauses(parts):
    """Noise bursts (seconds) separated by quiet gaps (negative seconds), -100 dBFS."""
    quiet = lambda seconds: 1e-5 * noise(seconds, seed=9)  # noqa: E731
    return torch.cat([noise(p, seed=k) if p > 0 else quiet(-p) for k, p in enumerate(parts)])


def test_chunk_end_cuts_at_the_quietest_pause_in_the_second_half():
    from asr.transcribe import chunk_end

    ten = 10 * SAMPLE_RATE
    audio = _speech_with_pauses([3.0, -0.5, 4.0, -0.4, 5.0])  # pauses at 3-3.5 s, 7.5-7.9 s
    end = chunk_end(audio, ten)
    assert 7.5 * SAMPLE_RATE < end < 7.9 * SAMPLE_RATE  # the pause at 3 s lies in the first half
    assert chunk_end(audio[:ten], ten) == ten  # the input's rest fits: all of it
    end = chunk_end(noise(20.0), ten)  # no pause anywhere: still at most 10 s, at least 5
    assert 5 * SAMPLE_RATE <= end <= ten


def test_first_pause_is_the_first_long_enough_quiet_past_the_least_piece():
    from asr.transcribe import chunk_end, first_pause

    second = SAMPLE_RATE
    audio = _speech_with_pauses([1.0, -0.2, 1.5, -0.5, 4.0, -0.6, 3.0])  # 1-1.2, 2.7-3.2, 7.2-7.8 s
    at = lambda *args: first_pause(audio, *args) / second  # noqa: E731
    assert at(second, 10 * second, 0.4) == pytest.approx(2.95, abs=0.02)
    assert at(second // 2, 10 * second, 0.1) == pytest.approx(1.1, abs=0.02)  # the short one
    assert at(4 * second, 10 * second, 0.4) == pytest.approx(7.5, abs=0.02)
    assert first_pause(audio, 4 * second, 7 * second, 0.4) is None  # its middle is past 7 s
    assert first_pause(noise(10.0), second, 10 * second, 0.1) is None  # no quiet at all
    # quiet only 10 dB below the speech is no pause (a noisy room's level, not a gap)
    shallow = torch.cat([noise(2.0), 0.3 * noise(1.0, seed=5), noise(2.0, seed=6)])
    assert first_pause(shallow, second, 10 * second, 0.4) is None
    # pieces: at the first pause past 1 s, when the rest is longer than a piece
    assert chunk_end(audio, 10 * second, second, 0.4) / second == pytest.approx(2.95, abs=0.02)
    assert chunk_end(audio[: 5 * second], 10 * second, second, 0.4) == 5 * second


def test_by_default_long_audio_is_cut_at_pauses_into_pieces_of_about_an_utterance():
    tok = tiny_tokenizer()
    frames = []

    def stub(mel, lengths, options):
        frames.extend(lengths.tolist())
        return [Result(tok.encode("one"), "one", -0.1, 0.0, 0.0, 1.0)] * mel.shape[0]

    # pieces of at most 15 s (the default): the 0.5 s and 0.4 s pauses cut, the 0.3 s one
    # is no pause
    audio = _speech_with_pauses([4.0, -0.5, 5.0, -0.3, 7.0, -0.4, 3.0])
    (result,) = transcribe_many([functools.partial(tensor_blocks, audio)], stub, tok)
    cuts = [(s.start, s.end) for s in result.segments]
    assert [round(a, 1) for a, _ in cuts] == [0.0, 4.5, 17.2]
    assert [round(b, 1) for _, b in cuts] == [4.0, 16.8, 20.2]
    # pieces of at most 10 s: after the first cut no 0.4 s pause comes within 10 s, so the
    # quietest point of the piece's second half cuts, the 0.3 s pause
    frames.clear()
    ten = TranscribeOptions(chunk_seconds=10.0)
    (result,) = transcribe_many([functools.partial(tensor_blocks, audio)], stub, tok, ten)
    cuts = [(s.start, s.end) for s in result.segments]
    assert [round(a, 1) for a, _ in cuts] == [0.0, 4.5, 9.8, 17.2]
    assert [round(b, 1) for _, b in cuts] == [4.0, 9.5, 16.8, 20.2]
    # an input no longer than a piece is decoded whole, pauses and all: an utterance the
    # model can take whole is not cut
    frames.clear()
    (result,) = transcribe_many(
        [functools.partial(tensor_blocks, audio[: 9 * SAMPLE_RATE])], stub, tok, ten
    )
    assert frames == [900] and len(result.segments) == 1
    with pytest.raises(ValueError, match="pause_seconds"):
        TranscribeOptions(pause_seconds=0.0)
    with pytest.raises(ValueError, match="min_piece_seconds"):
        TranscribeOptions(chunk_seconds=5.0, min_piece_seconds=6.0)


def test_a_long_input_is_cut_at_pauses_and_its_pieces_share_one_batch():
    tok = tiny_tokenizer()
    words = ["one", "two", "three", "four"]
    batches, frames = [], []

    def stub(mel, lengths, options):
        assert not options.timestamps  # a piece is a segment: no timestamp tokens
        batches.append(mel.shape[0])
        frames.extend(lengths.tolist())
        out = []
        for row in range(mel.shape[0]):
            text = words[len(frames) - mel.shape[0] + row]
            out.append(Result(tok.encode(text), text, -0.1, 0.0, 0.0, 1.0))
        return out

    # pauses at 4-4.5, 9.5-9.8, 16.8-17.2 s; 10 s pieces: cut at 9.5-9.8 and 16.8-17.2 s
    audio = _speech_with_pauses([4.0, -0.5, 5.0, -0.3, 7.0, -0.4, 3.0])
    options = TranscribeOptions(
        DecodingOptions(timestamps=True), FallbackOptions(), chunk_seconds=10.0, pause_seconds=None
    )
    source = lambda: tensor_blocks(audio, block_samples=SAMPLE_RATE)  # noqa: E731
    (result,) = list(transcribe_many([source], stub, tok, options))
    assert batches == [3]  # the pieces of one input are decoded together
    assert [s.text for s in result.segments] == ["one", "two", "three"]
    # every sample once, but for quiet skipped before a piece's sound (`quiet_to_skip`)
    assert audio.shape[0] / 160 - 30 <= sum(frames) <= audio.shape[0] / 160
    assert all(n <= 1000 for n in frames)
    cuts = [(s.start, s.end) for s in result.segments]
    assert cuts[0][0] == 0.0 and 9.0 < cuts[0][1] <= 9.52  # the pause's quiet is left out
    assert 9.78 <= cuts[1][0] <= 9.82 and 16.78 <= cuts[1][1] <= 16.82
    assert 17.18 <= cuts[2][0] <= 17.22 and cuts[2][1] == pytest.approx(20.2)
    assert result.duration == pytest.approx(20.2)


def test_a_long_recording_is_read_in_pieces_in_bounded_memory():
    # 20 minutes of speech-like noise with a 0.3-0.9 s pause in every sixth second, made
    # block by block as it is read
    tok = tiny_tokenizer()
    g = torch.Generator().manual_seed(3)
    made = []  # samples made so far, when each block was handed out

    def recording():
        for k in range(20 * 60):
            block = 0.1 * torch.randn(SAMPLE_RATE, generator=g)
            if k % 6 == 5:  # a pause somewhere in every sixth second
                a = int(torch.randint(0, SAMPLE_RATE // 4, (1,), generator=g))
                pause = 0.3 + 0.6 * (k % 7) / 7
                block[a : a + int(SAMPLE_RATE * pause)] *= 1e-4
            made.append((made[-1] if made else 0) + SAMPLE_RATE)
            yield block

    decoded = []  # (samples made when the batch was decoded, piece lengths)

    def stub(mel, lengths, options):
        decoded.append((made[-1], lengths.tolist()))
        return [Result(tok.encode("one"), "one", -0.1, 0.0, 0.0, 1.0)] * mel.shape[0]

    (result,) = transcribe_many([recording], stub, tok)
    assert result.duration == pytest.approx(20 * 60)
    pieces = [n for _, lengths in decoded for n in lengths]
    assert max(pieces) <= 1500 and len(pieces) == len(result.segments) > 80  # at most 15 s
    assert all(len(lengths) == 8 for _, lengths in decoded[:-1])  # one input fills batches
    # a batch is decoded once its pieces have been read, not after the whole recording:
    # never more than 8 pieces of 15 s, a 30 s window and a block ahead
    done = 0  # samples decoded in earlier batches
    for made_then, lengths in decoded:
        assert made_then - done <= (8 * 15 + 31) * SAMPLE_RATE
        done += sum(lengths) * 160  # 160 samples a mel frame


def test_pieces_of_inputs_are_dealt_in_turn_and_transcripts_stay_in_order():
    tok = tiny_tokenizer()
    batches = []

    def stub(mel, lengths, options):
        batches.append([round(n / 100) for n in lengths.tolist()])
        return [Result(tok.encode("one"), "one", -0.1, 0.0, 0.0, 1.0)] * mel.shape[0]

    long = _speech_with_pauses([4.0, -0.5, 5.0, -0.3, 7.0, -0.4, 3.0])  # three pieces
    sources = [functools.partial(tensor_blocks, x) for x in (long, noise(2.0), long)]
    options = TranscribeOptions(batch_size=4, chunk_seconds=10.0, pause_seconds=None)
    results = list(transcribe_many(sources, stub, tok, options))
    assert [len(r.segments) for r in results] == [3, 1, 3]
    assert [r.duration for r in results] == pytest.approx([20.2, 2.0, 20.2])
    # round 1: a piece of each input in turn, then the first input's next; round 2: the rest
    assert batches == [[10, 2, 10, 7], [3, 7, 3]]
    with pytest.raises(ValueError, match="chunk_seconds"):
        TranscribeOptions(chunk_seconds=0.5)


def test_window_reader_holds_one_window_at_a_time():
    blocks_read = []

    def blocks():
        for block in tensor_blocks(torch.arange(200 * SAMPLE_RATE) / 1e7, SAMPLE_RATE):
            blocks_read.append(block)
            yield block

    reader = WindowReader(blocks())
    for seek_seconds in (0, 25, 50, 130, 199.5):
        seek = int(seek_seconds * SAMPLE_RATE)
        window = reader.window(seek)
        assert window[0] == pytest.approx(seek / 1e7)  # the window starts at the seek
        assert window.shape[0] == min(WINDOW_SAMPLES, 200 * SAMPLE_RATE - seek)
        assert reader._buffer.shape[0] <= WINDOW_SAMPLES + SAMPLE_RATE  # one window + a block
        assert len(blocks_read) <= seek_seconds + 31  # read only as far as needed
    assert reader.window(200 * SAMPLE_RATE).shape[0] == 0
    with pytest.raises(ValueError, match="seek back"):
        reader.window(0)


def test_silence_gives_empty_text_without_decoding():
    def stub(mel, lengths, options):
        raise AssertionError("a silent window must not be decoded")

    silent = torch.zeros(5 * SAMPLE_RATE)
    (result,) = transcribe_many([lambda: tensor_blocks(silent)], stub, tiny_tokenizer())
    assert result.text == "" and result.segments == () and result.no_speech_prob == 1.0


def test_no_speech_detection_drops_the_window():
    def stub(mel, lengths, options):
        text = "the the"
        return [Result([5, 5], text, -2.0, 0.9, 0.0, compression_ratio(text))] * mel.shape[0]

    (result,) = transcribe_many([lambda: tensor_blocks(noise(3))], stub, tiny_tokenizer())
    assert result.text == "" and result.no_speech_prob == pytest.approx(0.9)


def test_batched_transcription_equals_one_at_a_time(tmp_path):
    from core.audio import save_audio

    model = tiny_model(seed=2)
    path = tmp_path / "tone.wav"
    save_audio(path, clip(1, 0.7)[None], SAMPLE_RATE)
    inputs = [clip(0, 1.0), str(path), clip(0, 0.6)]
    options = TranscribeOptions(DecodingOptions(max_tokens=8), FallbackOptions((0.0,)))
    together = list(
        transcribe(model, inputs, TranscribeOptions(**{**vars(options), "batch_size": 3}))
    )
    alone = [next(transcribe(model, [x], options)) for x in inputs]
    assert [t.text for t in together] == [t.text for t in alone]
    assert all(t.text for t in together)
    assert [t.avg_logprob for t in together] == pytest.approx(
        [t.avg_logprob for t in alone], abs=1e-4
    )
    assert together[1].duration == pytest.approx(0.7)


def test_workers_transcribe_like_one_worker_and_give_the_threads_back(tmp_path):
    # Two threads, each with its own batches, deal out seven inputs of different lengths
    # (one of them silent): the transcripts come back in input order, as one worker's.
    model = tiny_model(seed=2)
    inputs = [clip(k % 2, 0.3 + 0.15 * k) for k in range(6)]
    inputs.insert(3, torch.zeros(SAMPLE_RATE))
    options = TranscribeOptions(
        DecodingOptions(max_tokens=8), FallbackOptions((0.0,)), batch_size=2, workers=1
    )
    one = list(transcribe(model, inputs, options))
    threads = torch.get_num_threads()
    two = list(transcribe(model, inputs, TranscribeOptions(**{**vars(options), "workers": 2})))
    assert torch.get_num_threads() == threads
    assert [t.text for t in two] == [t.text for t in one]
    assert two[3].text == "" and all(t.text for k, t in enumerate(two) if k != 3)
    assert [t.duration for t in two] == pytest.approx([t.duration for t in one])


def test_leaving_a_parallel_transcription_early_stops_its_workers():
    import threading

    model = tiny_model(seed=2)
    inputs = [clip(k % 2, 0.4) for k in range(8)]
    options = TranscribeOptions(
        DecodingOptions(max_tokens=4), FallbackOptions((0.0,)), batch_size=1, workers=2
    )
    threads, running = torch.get_num_threads(), threading.active_count()
    results = transcribe(model, inputs, options)
    first = next(results)
    results.close()  # the caller wants no more
    assert first.duration == pytest.approx(0.4)
    assert torch.get_num_threads() == threads and threading.active_count() == running


def test_workers_by_default_one_per_cpu_thread_and_full_batch():
    from asr.transcribe import default_workers

    options = TranscribeOptions(batch_size=8)
    assert default_workers("cpu", 2, 80, options) == 2
    assert default_workers("cpu", 16, 80, options) == 4  # at most 4
    assert default_workers("cpu", 2, 4, options) == 1  # fewer inputs than one batch
    assert default_workers("cpu", 2, 9, options) == 2
    assert default_workers("cpu", 1, 80, options) == 1
    assert default_workers("cuda", 8, 80, options) == 1


def test_a_workers_error_reaches_the_caller(tmp_path):
    model = tiny_model(seed=2)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    inputs = [clip(0, 0.5), clip(1, 0.5), str(broken), clip(0, 0.4)]
    options = TranscribeOptions(DecodingOptions(max_tokens=4), FallbackOptions((0.0,)))
    errors = []
    for workers in (1, 2):
        with pytest.raises(Exception) as caught:
            list(
                transcribe(
                    model, inputs, TranscribeOptions(**{**vars(options), "workers": workers})
                )
            )
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    with pytest.raises(ValueError, match="workers"):
        TranscribeOptions(workers=0)


TRANSCRIPT = Transcript(
    segments=(
        Segment(0.0, 2.5, "Hello world.", -0.2, 0.01, 0.0, 1.1),
        Segment(3661.25, 3662.0, "Good morning!", -0.3, 0.02, 0.2, 1.2),
    ),
    duration=3663.0,
    avg_logprob=-0.25,
    no_speech_prob=0.015,
)


def test_writers():
    assert to_txt(TRANSCRIPT) == "Hello world. Good morning!\n"
    assert to_srt(TRANSCRIPT) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n"
        "2\n01:01:01,250 --> 01:01:02,000\nGood morning!\n"
    )
    assert to_vtt(TRANSCRIPT) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello world.\n\n"
        "01:01:01.250 --> 01:01:02.000\nGood morning!\n"
    )
    doc = json.loads(to_json(TRANSCRIPT, "a.wav"))
    assert doc["source"] == "a.wav" and doc["text"] == "Hello world. Good morning!"
    assert doc["segments"][1] == {
        "start": 3661.25,
        "end": 3662.0,
        "text": "Good morning!",
        "avg_logprob": -0.3,
        "no_speech_prob": 0.02,
        "temperature": 0.2,
        "compression_ratio": 1.2,
    }
    empty = Transcript((), 1.0, 0.0, 1.0)
    assert to_txt(empty) == "" and to_srt(empty) == "" and to_vtt(empty) == "WEBVTT\n"
