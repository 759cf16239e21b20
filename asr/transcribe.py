"""Transcribing audio of any length: 30-second windows with seek, batched across inputs.

Each input is read block by block (`core.audio.AudioBlocks`, resampled as it streams), and
only the current window is held, so a two-hour file needs the memory of one window. Per
round, the current window of up to `batch_size` inputs is decoded in one batch (with
temperature fallback). A window then moves the input's seek:

- with timestamps, up to the start of a segment the window cut off (it is decoded again
  at the start of the next window), else by the whole window;
- without timestamps, or when the window is silence, by the whole window.

Windows quieter than `silence_dbfs` are taken as silence without running the model;
the others are dropped as no speech by the no-speech rule (`decoding.is_no_speech`).

By default (`TranscribeOptions.chunk_seconds`) long audio is not decoded in Whisper's 30 s
windows moved by the decoded timestamps but in pieces of about one utterance: audio longer
than `chunk_seconds` is cut at the first pause of at least `pause_seconds` (`first_pause`),
or failing one at the quietest 100 ms of the piece's second half (`chunk_end`); each piece
is a segment. The recogniser learnt from utterances of up to 15 s; on 30 s windows of
continuous reading it lost its place and looped. Pieces do not depend on what was decoded,
so the pieces of one long input are decoded together in one batch.

A window with more than `max_lead` seconds of quiet before its first sound (`first_sound`)
starts `lead_in` seconds before that sound instead. The recogniser learnt from clips whose
speech starts within 0.15 s, and half a second of quiet before the first word took its WER
on held-out synthetic voices from 9.9 % to 20.6 % (10.3 % with the window moved up).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from asr.align import Word, word_times
from asr.decoding import (
    DecodeFn,
    DecodingOptions,
    DecodingResult,
    FallbackOptions,
    decode_with_fallback,
    is_no_speech,
    model_decode_fn,
)
from asr.model import HOP_LENGTH, SAMPLE_RATE, ASRModel, log_mel_features
from asr.tokenizer import TIME_PRECISION, Tokenizer
from core.audio import AudioBlocks, StreamResampler, rms_dbfs

WINDOW_SECONDS = 30.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
STEP_SAMPLES = int(TIME_PRECISION * SAMPLE_RATE)  # one timestamp step: 320 samples
MIN_WINDOW_SAMPLES = 2 * HOP_LENGTH  # a shorter tail is not worth a window
DEFAULT_CHUNK_SECONDS = 15.0
DEFAULT_PAUSE_SECONDS = 0.4
PAUSE_STEPS = 5  # a pause to cut at: the quietest run of this many 20 ms steps (100 ms)
PAUSE_RISE_DB = 15.0  # a pause step: within this of the quietest step ...
PAUSE_DEPTH_DB = 25.0  # ... and at least this below the loud ones


@dataclass(frozen=True)
class TranscribeOptions:
    # The defaults of `vocalis transcribe`: beam search of 5, the CTC head's vote when the
    # model has one, the shipped LM when it fits the model's tokenizer.
    decoding: DecodingOptions = DecodingOptions(timestamps=True, beam_size=5, lm="auto")
    fallback: FallbackOptions = FallbackOptions()
    silence_dbfs: float = -60.0  # RMS below this: a silent window, not decoded
    batch_size: int = 8  # windows decoded together
    # Threads that each decode their own batches, the inputs dealt out as they free up
    # (`transcribe_parallel`); None: `default_workers` (on a CPU one per torch thread, at
    # most 4 and at most one per full batch of inputs; else 1).
    workers: int | None = None
    # A window with more quiet than `max_lead` s before its first sound (`first_sound`)
    # starts `lead_in` s before the sound instead; None decodes every window where seek put it.
    max_lead: float | None = 0.25
    lead_in: float = 0.1
    # Longer audio is cut at pauses into pieces of at most this many seconds, decoded
    # independently (several of one input in a batch), each a segment; an input no longer
    # is decoded whole. None decodes 30 s windows moved by the decoded timestamps (Whisper's
    # long-form rule).
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
    # Audio longer than a piece is cut at the first pause of at least this many seconds
    # once the piece holds `min_piece_seconds` (`first_pause`), so that a piece is about
    # one utterance, as the recogniser learnt; None: at the quietest point of its second half.
    pause_seconds: float | None = DEFAULT_PAUSE_SECONDS
    min_piece_seconds: float = 1.0
    # Time every word of a piece from the model's CTC head (`asr.align`); pieces only.
    word_timestamps: bool = False

    def __post_init__(self) -> None:
        if self.chunk_seconds is not None and not 1.0 <= self.chunk_seconds <= WINDOW_SECONDS:
            raise ValueError(
                f"chunk_seconds must be in [1, {WINDOW_SECONDS:g}] or None, got {self.chunk_seconds}"
            )
        if self.pause_seconds is not None and not 0 < self.pause_seconds <= 5.0:
            raise ValueError(f"pause_seconds must be in (0, 5] or None, got {self.pause_seconds}")
        if self.chunk_seconds is not None and not 0 < self.min_piece_seconds < self.chunk_seconds:
            raise ValueError(
                f"min_piece_seconds must be in (0, chunk_seconds), got {self.min_piece_seconds}"
            )
        if self.word_timestamps and self.chunk_seconds is None:
            raise ValueError("word_timestamps needs pieces (chunk_seconds), not 30 s windows")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_lead is not None and not 0 <= self.lead_in <= self.max_lead:
            raise ValueError(
                f"lead_in must be in [0, max_lead], got {self.lead_in} with max_lead "
                f"{self.max_lead}"
            )


def _step_power(audio: Tensor, steps: int) -> Tensor:
    """Mean power of the first `steps` 20 ms steps of `audio` `(T,)` -> `(steps,)`."""
    return audio[: steps * STEP_SAMPLES].reshape(steps, STEP_SAMPLES).pow(2).mean(1)


def _step_db(audio: Tensor, steps: int) -> Tensor:
    """Level in dBFS (of power) of the first `steps` 20 ms steps of `audio` -> `(steps,)`."""
    return 10 * torch.log10(_step_power(audio, steps) + 1e-12)


def _sound_steps(window: Tensor, floor_dbfs: float, range_db: float) -> Tensor:
    """Indices of the 20 ms steps of `window` that hold sound: RMS above `floor_dbfs` and
    within `range_db` of the loudest step."""
    steps = window.shape[0] // STEP_SAMPLES
    if steps == 0:
        return torch.zeros(0, dtype=torch.long)
    db = _step_db(window, steps)
    return torch.nonzero(db > max(floor_dbfs, float(db.max()) - range_db)).view(-1)


def first_sound(window: Tensor, floor_dbfs: float = -60.0, range_db: float = 40.0) -> int | None:
    """The first sample of `window` (mono 16 kHz) in a 20 ms timestamp step that holds sound
    (a multiple of 320 samples), or None if none does. A step is sound when its RMS is above
    `floor_dbfs` and within `range_db` of the window's loudest step."""
    sound = _sound_steps(window, floor_dbfs, range_db)
    return int(sound[0]) * STEP_SAMPLES if len(sound) else None


def sound_span(audio: Tensor, floor_dbfs: float = -60.0, range_db: float = 40.0) -> tuple[int, int]:
    """(first, end) sample of the sound in `audio`, on the 20 ms steps of `first_sound`;
    the whole of it when no step holds sound."""
    sound = _sound_steps(audio, floor_dbfs, range_db)
    if not len(sound):
        return 0, audio.shape[0]
    return int(sound[0]) * STEP_SAMPLES, min(audio.shape[0], (int(sound[-1]) + 1) * STEP_SAMPLES)


def first_pause(
    window: Tensor, min_samples: int, max_samples: int, pause_seconds: float
) -> int | None:
    """The middle of the first pause in `window` whose middle lies in [min_samples,
    max_samples], or None. A pause is a run of at least `pause_seconds` of 20 ms steps
    within `PAUSE_RISE_DB` of the window's quietest step (taken as no lower than -70 dBFS,
    the room's noise rather than digital silence) and at least `PAUSE_DEPTH_DB` below its
    loud steps (the 95th percentile): with no step that quiet there is no pause."""
    steps = window.shape[0] // STEP_SAMPLES
    need = max(1, round(pause_seconds / TIME_PRECISION))
    if steps < need:
        return None
    db = _step_db(window, steps)  # (steps,)
    loud = float(torch.quantile(db, 0.95))
    level = min(max(float(db.min()), -70.0) + PAUSE_RISE_DB, loud - PAUSE_DEPTH_DB)
    quiet = (db <= level).int()
    # runs of quiet steps: [start, end) in steps
    edges = torch.diff(quiet, prepend=quiet.new_zeros(1), append=quiet.new_zeros(1))
    starts = torch.nonzero(edges == 1).view(-1).tolist()
    ends = torch.nonzero(edges == -1).view(-1).tolist()
    for a, b in zip(starts, ends):
        middle = (a + b) * STEP_SAMPLES // 2
        if b - a >= need and min_samples <= middle <= max_samples:
            return middle
        if middle > max_samples:
            break
    return None


def chunk_end(
    window: Tensor,
    max_samples: int,
    min_samples: int | None = None,
    pause_seconds: float | None = None,
) -> int:
    """Where a piece of at most `max_samples` that starts at `window[0]` ends: all of
    `window` when it is no longer than that (the input's rest: an utterance the model can
    take whole is not cut); else, with `pause_seconds`, in the middle of the first pause
    (`first_pause`) past `min_samples`; else in the middle of the quietest run of
    `PAUSE_STEPS` 20 ms steps (by mean power) in the second half of `max_samples`, the
    earliest of equals."""
    if window.shape[0] <= max_samples:
        return window.shape[0]
    if pause_seconds is not None:
        low = max_samples // 2 if min_samples is None else min_samples
        pause = first_pause(window, low, max_samples, pause_seconds)
        if pause is not None:
            return pause
    steps = max_samples // STEP_SAMPLES
    run = F.avg_pool1d(_step_power(window, steps).view(1, 1, steps), PAUSE_STEPS, stride=1)
    run = run.view(-1)  # (steps - PAUSE_STEPS + 1,): mean power of steps i .. i + 4
    lowest = steps // 2
    i = lowest + int(run[lowest:].argmin())
    return (i + PAUSE_STEPS // 2) * STEP_SAMPLES + STEP_SAMPLES // 2


def quiet_to_skip(window: Tensor, options: TranscribeOptions) -> int:
    """Samples of quiet to skip at the start of `window`: 0 unless its first sound comes more
    than `options.max_lead` s in, else all but `options.lead_in` s of them."""
    if options.max_lead is None:
        return 0
    onset = first_sound(window, options.silence_dbfs)
    if onset is None or onset <= options.max_lead * SAMPLE_RATE:
        return 0
    return onset - round(options.lead_in * SAMPLE_RATE)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the input
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    words: tuple[Word, ...] = ()  # with `TranscribeOptions.word_timestamps`


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    duration: float  # seconds of audio read
    avg_logprob: float  # over every decoded token of the input (0.0 if none was decoded)
    no_speech_prob: float  # mean over its windows (a silent window counts 1.0)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


# ---------------------------------------------------------------------------------------
# Audio sources: mono 16 kHz blocks


def file_blocks(path: str | os.PathLike, block_seconds: float = 10.0) -> Iterator[Tensor]:
    """Mono 16 kHz `(t,)` blocks of an audio file, resampled as they stream."""
    with AudioBlocks(path, block_seconds) as blocks:
        resampler = StreamResampler(blocks.sample_rate, SAMPLE_RATE)
        for block in blocks:  # (C, t)
            out = resampler.push(block.mean(dim=0, keepdim=True))
            if out.shape[-1]:
                yield out[0]
        tail = resampler.finish()
        if tail.shape[-1]:
            yield tail[0]


def tensor_blocks(wav: Tensor, block_samples: int = WINDOW_SAMPLES) -> Iterator[Tensor]:
    """Blocks of a mono 16 kHz waveform `(T,)` already in memory."""
    for start in range(0, wav.shape[-1], block_samples):
        yield wav[start : start + block_samples]


class WindowReader:
    """Serves `window(seek)`: up to `WINDOW_SAMPLES` samples from sample `seek` on, reading
    blocks only as far as needed and forgetting everything before `seek` (seek only grows)."""

    def __init__(self, blocks: Iterable[Tensor]) -> None:
        self._blocks = iter(blocks)
        self._buffer = torch.zeros(0)  # (L,) samples from `_start`
        self._start = 0
        self._eof = False
        self._read = 0  # samples read so far

    def window(self, seek: int) -> Tensor:
        if seek < self._start:
            raise ValueError(f"cannot seek back to sample {seek} (at {self._start})")
        while self._start + self._buffer.shape[0] < seek and not self._eof:
            self._start += self._buffer.shape[0]  # skip whole blocks before the seek
            self._buffer = self._next_block()
        self._buffer = self._buffer[seek - self._start :]
        self._start = seek
        parts = [self._buffer]
        have = self._buffer.shape[0]
        while have < WINDOW_SAMPLES and not self._eof:
            block = self._next_block()
            parts.append(block)
            have += block.shape[0]
        self._buffer = torch.cat(parts) if len(parts) > 1 else self._buffer
        return self._buffer[:WINDOW_SAMPLES]

    def _next_block(self) -> Tensor:
        block = next(self._blocks, None)
        if block is None:
            self._eof = True
            return torch.zeros(0)
        self._read += block.shape[0]
        return block.float()

    @property
    def read_samples(self) -> int:
        return self._read


# ---------------------------------------------------------------------------------------
# One window's tokens -> segments and the next seek


@dataclass(frozen=True)
class WindowSegments:
    spans: list[tuple[float, float, list[int]]]  # (start, end) seconds in the window, tokens
    advance: float | None  # seconds to move the seek; None: the whole window


def parse_window(tokens: Sequence[int], tokenizer: Tokenizer, timestamps: bool) -> WindowSegments:
    """Split decoded tokens into timed spans. A span opens at a timestamp and closes at the
    next one after some text. A span left open (a lone start timestamp at the end: the
    window cuts the utterance; or text cut by the token budget) is dropped, and the seek
    stops at its start so that the next window decodes it whole."""
    text_tokens = [t for t in tokens if not tokenizer.is_timestamp(t)]
    if not timestamps or not any(tokenizer.is_timestamp(t) for t in tokens):
        return WindowSegments([(0.0, math.inf, text_tokens)] if text_tokens else [], None)
    spans: list[tuple[float, float, list[int]]] = []
    start: float | None = None
    current: list[int] = []
    for t in tokens:
        if not tokenizer.is_timestamp(t):
            if start is not None:
                current.append(t)
            continue
        time = tokenizer.token_time(t)
        if start is not None and current:
            spans.append((start, time, current))
            start, current = None, []
        else:
            start = time  # opens a span (or reopens an empty one)
    if start is not None and start > 0:  # a span left open: cut by the window (or budget)
        return WindowSegments(spans, start)
    if start is not None and current:  # one span, never closed, from the window's start
        spans.append((start, math.inf, current))
    return WindowSegments(spans, None)


# ---------------------------------------------------------------------------------------
# The loop


@dataclass
class _Stream:
    index: int
    reader: WindowReader
    seek: int = 0
    segments: list[Segment] = field(default_factory=list)
    logprob_sum: float = 0.0
    token_count: int = 0
    no_speech: list[float] = field(default_factory=list)
    exhausted: bool = False  # every piece of the input has been handed out (piece mode)

    def result(self) -> Transcript:
        return Transcript(
            tuple(self.segments),
            self.reader.read_samples / SAMPLE_RATE,
            self.logprob_sum / self.token_count if self.token_count else 0.0,
            sum(self.no_speech) / len(self.no_speech) if self.no_speech else 1.0,
        )

    def silent(self, window: Tensor) -> None:
        self.no_speech.append(1.0)
        self.seek += window.shape[0]

    def next_window(self, options: TranscribeOptions) -> Tensor | None:
        """The window (up to 30 s) from the seek, after passing over silent windows and moving
        the seek up to long quiet's end (`quiet_to_skip`); None at the input's end."""
        while True:
            window = self.reader.window(self.seek)
            if window.shape[0] < MIN_WINDOW_SAMPLES:
                return None
            if rms_dbfs(window) < options.silence_dbfs:
                self.silent(window)
                continue
            skip = quiet_to_skip(window, options)
            if skip:
                self.seek += skip
                window = self.reader.window(self.seek)
            return window

    def next_piece(self, options: TranscribeOptions) -> tuple[int, Tensor] | None:
        """The next piece to decode (its first sample in the input, its audio), cut at a
        pause (`chunk_end`), with the seek moved past it; silent windows and pieces are
        passed over. None, and `exhausted` set, when the input has no more."""
        assert options.chunk_seconds is not None
        max_samples = round(options.chunk_seconds * SAMPLE_RATE)
        while True:
            window = self.next_window(options)
            if window is None:
                self.exhausted = True
                return None
            start = self.seek
            end = chunk_end(
                window,
                max_samples,
                round(options.min_piece_seconds * SAMPLE_RATE),
                options.pause_seconds,
            )
            piece = window[:end]
            self.seek += end
            if rms_dbfs(piece) < options.silence_dbfs:
                self.no_speech.append(1.0)
                continue
            return start, piece

    def _count(self, result: DecodingResult) -> None:
        self.no_speech.append(result.no_speech_prob)
        self.logprob_sum += result.avg_logprob * (len(result.tokens) + 1)
        self.token_count += len(result.tokens) + 1

    def _segment(self, start: float, end: float, text: str, result: DecodingResult) -> Segment:
        return Segment(
            start=round(start, 3),
            end=round(end, 3),
            text=text,
            avg_logprob=result.avg_logprob,
            no_speech_prob=result.no_speech_prob,
            temperature=result.temperature,
            compression_ratio=result.compression_ratio,
        )

    def apply_piece(
        self,
        start: int,
        piece: Tensor,
        result: DecodingResult,
        tokenizer: Tokenizer,
        opts: TranscribeOptions,
    ) -> None:
        """A decoded piece: one segment over its sound (timestamp tokens, if any, dropped),
        with `opts.word_timestamps` its words timed by the CTC log-probs of the pass that
        decoded it (`result.ctc_log_probs`)."""
        self._count(result)
        if is_no_speech(result, opts.fallback):
            return
        text = tokenizer.decode([t for t in result.tokens if not tokenizer.is_timestamp(t)])
        if text:
            first, end = sound_span(piece, opts.silence_dbfs)
            segment = self._segment(
                (start + first) / SAMPLE_RATE, (start + end) / SAMPLE_RATE, text, result
            )
            if opts.word_timestamps:
                if result.ctc_log_probs is None:
                    raise ValueError("word timestamps need the CTC log-probs of the decoding")
                offset = start / SAMPLE_RATE
                words = word_times(text, result.ctc_log_probs, TIME_PRECISION, offset)
                segment = replace(segment, words=tuple(words))
            self.segments.append(segment)

    def apply(
        self, window: Tensor, result: DecodingResult, tokenizer: Tokenizer, opts: TranscribeOptions
    ) -> None:
        self._count(result)
        length = window.shape[0]
        if is_no_speech(result, opts.fallback):
            self.seek += length
            return
        parsed = parse_window(result.tokens, tokenizer, opts.decoding.timestamps)
        offset, window_end = self.seek / SAMPLE_RATE, length / SAMPLE_RATE
        for start, end, tokens in parsed.spans:
            text = tokenizer.decode(tokens)
            if text:
                self.segments.append(
                    self._segment(
                        offset + min(start, window_end), offset + min(end, window_end), text, result
                    )
                )
        advance = length
        if parsed.advance is not None:
            advance = min(
                length, max(STEP_SAMPLES, round(parsed.advance / TIME_PRECISION) * STEP_SAMPLES)
            )
        self.seek += advance


def transcribe_many(
    sources: Iterable[Callable[[], Iterable[Tensor]]],
    decode_fn: DecodeFn,
    tokenizer: Tokenizer,
    options: TranscribeOptions = TranscribeOptions(),
    stop: threading.Event | None = None,
) -> Iterator[Transcript]:
    """Transcripts of `sources` in their order. Each source is a function that opens the
    input and returns its mono 16 kHz blocks; it is called when the input's turn comes.
    A set `stop` ends the work before the next round."""
    pending = iter(enumerate(sources))
    active: list[_Stream] = []
    done: dict[int, Transcript] = {}
    next_out = 0
    exhausted = False
    while active or not exhausted:
        if stop is not None and stop.is_set():
            return
        while len(active) < options.batch_size and not exhausted:
            item = next(pending, None)
            if item is None:
                exhausted = True
            else:
                active.append(_Stream(item[0], WindowReader(item[1]())))
        if options.chunk_seconds is None:
            batch = _window_round(active, done, options)
        else:
            batch = _piece_round(active, options)
        if batch:
            _decode_round(batch, decode_fn, tokenizer, options)
        for stream in [s for s in active if s.exhausted]:
            active.remove(stream)
            done[stream.index] = stream.result()
        while next_out in done:
            yield done.pop(next_out)
            next_out += 1


def transcribe_parallel(
    sources: Iterable[Callable[[], Iterable[Tensor]]],
    decode_fn: DecodeFn,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    workers: int,
) -> Iterator[Transcript]:
    """`transcribe_many` on `workers` threads, each with its own batches; transcripts in
    the order of `sources`.

    A beam step on a CPU is many small operations, which two threads speed up far less
    than twofold; two workers with one thread each keep both cores busy (one's Python runs
    while the other's kernels do), about 1.4x the throughput on 2 cores. A worker takes the
    next input whenever a slot of its batch frees, so a long file does not hold the others
    up. The torch threads are split among the workers while it runs."""
    lock, stop = threading.Lock(), threading.Event()
    queue_in = iter(enumerate(sources))
    results: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        taken: list[int] = []  # the inputs this worker pulled, in its order

        def pull() -> Iterator[Callable[[], Iterable[Tensor]]]:
            while not stop.is_set():
                with lock:
                    item = next(queue_in, None)
                if item is None:
                    return
                taken.append(item[0])
                yield item[1]

        try:
            mine = transcribe_many(pull(), decode_fn, tokenizer, options, stop=stop)
            for n, transcript in enumerate(mine):
                results.put((taken[n], transcript, None))
        except BaseException as error:  # handed to the caller's thread
            results.put((None, None, error))
        results.put((None, None, None))  # this worker is done

    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads_before // workers))
    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    try:
        for thread in threads:
            thread.start()
        ready: dict[int, Transcript] = {}
        next_out, running = 0, workers
        while running:
            index, transcript, error = results.get()
            if error is not None:
                raise error
            if index is None:
                running -= 1
                continue
            ready[index] = transcript
            while next_out in ready:
                yield ready.pop(next_out)
                next_out += 1
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        torch.set_num_threads(threads_before)


_Round = list[tuple[_Stream, int, Tensor]]  # (stream, first sample of the audio, audio)


def _window_round(
    active: list[_Stream], done: dict[int, Transcript], options: TranscribeOptions
) -> _Round:
    """One 30 s window from the seek of each active input (silent ones passed over);
    finished inputs go to `done`."""
    batch: _Round = []
    for stream in list(active):
        window = stream.next_window(options)
        if window is None:
            active.remove(stream)
            done[stream.index] = stream.result()
        else:
            batch.append((stream, stream.seek, window))
    return batch


def _piece_round(active: list[_Stream], options: TranscribeOptions) -> _Round:
    """Up to `batch_size` pieces, dealt one per input in turn, so that a single long input
    fills the batch with its own pieces and several inputs share it."""
    batch: _Round = []
    wanting = [s for s in active if not s.exhausted]
    while wanting and len(batch) < options.batch_size:
        for stream in list(wanting):
            if len(batch) == options.batch_size:
                break
            piece = stream.next_piece(options)
            if piece is None:
                wanting.remove(stream)
            else:
                batch.append((stream, *piece))
    return batch


def _decode_round(
    batch: _Round,
    decode_fn: DecodeFn,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
) -> None:
    lengths = torch.tensor([w.shape[0] for _, _, w in batch])
    wav = torch.zeros(len(batch), int(lengths.max()))  # (B, T)
    for row, (_, _, audio) in enumerate(batch):
        wav[row, : audio.shape[0]] = audio
    mel, frames = log_mel_features(wav, lengths)  # (B, M, F), (B,)
    decoding = options.decoding
    if options.chunk_seconds is not None and decoding.timestamps:
        decoding = replace(decoding, timestamps=False)  # a piece is a segment
    if options.word_timestamps:
        decoding = replace(decoding, keep_ctc=True)
    results = decode_with_fallback(decode_fn, mel, frames, decoding, options.fallback)
    for (stream, start, audio), result in zip(batch, results):
        if options.chunk_seconds is None:
            stream.apply(audio, result, tokenizer, options)
        else:
            stream.apply_piece(start, audio, result, tokenizer, options)


def default_workers(
    device_type: str, threads: int, n_inputs: int, options: TranscribeOptions
) -> int:
    """How many workers `transcribe` uses unless told: on a CPU one per torch thread, at
    most 4, and no more than there are full batches of inputs; elsewhere 1.

    Workers pay off where a beam step's many small operations leave a thread idle. Four
    long LJ Speech clips, fewer than one batch, decoded at RTF 0.064-0.067 on one worker
    with 2 threads and 0.073-0.080 on two workers with one thread each: their kernels over
    some 400 audio frames already keep two threads busy, and halving the batch loses more
    than the overlap wins."""
    if device_type != "cpu":
        return 1
    batches = math.ceil(n_inputs / options.batch_size)
    return max(1, min(threads, 4, batches))


def transcribe(
    model: ASRModel,
    inputs: Sequence[str | os.PathLike | Tensor],
    options: TranscribeOptions = TranscribeOptions(),
) -> Iterator[Transcript]:
    """Transcripts of audio files (any rate, any length) or mono 16 kHz tensors `(T,)`."""
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer")
    device = model.device
    decode_fn = model_decode_fn(model)

    def on_device(mel: Tensor, lengths: Tensor, opts: DecodingOptions) -> list[DecodingResult]:
        return decode_fn(mel.to(device), lengths.to(device), opts)

    if options.word_timestamps and model.ctc is None:
        raise ValueError("word timestamps need a model with a CTC head")
    # resolved once ("auto" LM, default CTC weight), not per batch
    options = replace(options, decoding=options.decoding.for_model(model))

    def opener(x: str | os.PathLike | Tensor) -> Callable[[], Iterable[Tensor]]:
        if isinstance(x, Tensor):
            return lambda: tensor_blocks(x.reshape(-1))
        return lambda: file_blocks(x)

    openers = [opener(x) for x in inputs]
    workers = options.workers
    if workers is None:
        workers = default_workers(device.type, torch.get_num_threads(), len(openers), options)
    workers = min(workers, len(openers))
    if workers > 1:
        return transcribe_parallel(openers, on_device, model.tokenizer, options, workers)
    return transcribe_many(openers, on_device, model.tokenizer, options)
