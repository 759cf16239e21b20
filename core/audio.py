"""Everything about audio lives here: loading, resampling, loudness, saving, and the one
log-mel definition every model uses. Models only ever see ready tensors.

Waveforms are float32 tensors shaped (C, T) with samples in [-1, 1]; batches are (B, C, T)
or (B, T). Loading goes through libsndfile (wav, flac, ogg/vorbis, opus, mp3, aiff, ...);
a file it cannot read (AAC in .m4a or .mp4, the sound of a video, ...) is decoded by
ffmpeg when it is installed (`_FFmpegFile`), streamed through a pipe like any other.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from core.errors import AudioError
from core.io import atomic_path

SAVE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
# Readable: by libsndfile, and the rest by ffmpeg where it is installed.
FFMPEG_SUFFIXES = (".m4a", ".mp4", ".aac", ".webm", ".mkv", ".mov", ".wma", ".3gp", ".amr")
AUDIO_SUFFIXES = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    *FFMPEG_SUFFIXES,
)


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    # False for a file ffmpeg decodes: `frames` is then the container's duration times the
    # rate, which can be a few samples off.
    frames_exact: bool = True

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header only: rate, channels, length. Raises AudioError if unreadable."""
    path = _existing_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        probe = _ffprobe(path)
        if probe is None:
            raise AudioError(f"cannot read audio '{path}': {_sf_reason(e)}") from None
        return probe
    return AudioInfo(
        str(path), info.samplerate, info.channels, info.frames, info.format, info.subtype
    )


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    min_seconds: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """Load a file as float32 (C, T), optionally downmixed and resampled.

    Returns (waveform, sample_rate). Missing, unreadable, empty, non-finite or too-short
    audio raises AudioError with a message naming the file and the problem.
    """
    path = _existing_file(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        with _ffmpeg_file(path, _sf_reason(e)) as decoded:
            data, rate = decoded.read(-1), decoded.samplerate
    wav = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    check_audio(wav, rate, name=f"'{path}'", min_seconds=min_seconds)
    if mono:
        wav = wav.mean(dim=0, keepdim=True)
    if sample_rate is not None and sample_rate != rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return wav, rate


def check_audio(
    wav: torch.Tensor, sample_rate: int, *, name: str = "audio", min_seconds: float = 0.0
) -> None:
    """Raise AudioError for empty, non-finite or too-short audio."""
    if wav.numel() == 0 or wav.shape[-1] == 0:
        raise AudioError(f"{name} contains no samples")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{name} contains NaN or infinite samples")
    seconds = wav.shape[-1] / sample_rate
    if seconds < min_seconds:
        raise AudioError(f"{name} is {seconds:.3f} s long; at least {min_seconds:g} s is needed")


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling along the last axis."""
    if orig_rate <= 0 or new_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return wav
    return AF.resample(wav, orig_rate, new_rate)


def rms_dbfs(wav: torch.Tensor) -> float:
    """RMS level of all samples in dBFS (a full-scale square wave is 0); silence is -inf."""
    rms = float(wav.double().pow(2).mean().sqrt())
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, gated) of a (C, T) waveform.

    Clips shorter than one 400 ms gating block fall back to K-weighting-free RMS in dBFS.
    Digital silence gives -inf.
    """
    wav = wav if wav.dim() == 2 else wav.reshape(1, -1)
    if wav.shape[-1] >= int(0.4 * sample_rate):
        value = float(AF.loudness(wav.double(), sample_rate))
        if math.isfinite(value):
            return value
    return rms_dbfs(wav) - 0.691


def normalize_loudness(
    wav: torch.Tensor, sample_rate: int, target_lufs: float = -23.0, peak: float = 0.99
) -> torch.Tensor:
    """Scale to `target_lufs`, then lower the gain if a sample would exceed `peak`.

    Silence is returned unchanged (it has no loudness to match).
    """
    current = loudness(wav, sample_rate)
    if not math.isfinite(current):
        return wav
    gain = 10.0 ** ((target_lufs - current) / 20.0)
    max_abs = float(wav.abs().max())
    if max_abs * gain > peak:
        gain = peak / max_abs
    return wav * gain


def save_audio(
    path: str | os.PathLike, wav: torch.Tensor, sample_rate: int, *, subtype: str = "PCM_16"
) -> Path:
    """Write (C, T) or (T,) audio as .wav or .flac, atomically. Samples are clipped to [-1, 1]."""
    path = Path(path)
    fmt = _save_format(path, "save")
    wav = wav.detach().float().cpu()
    wav = wav.reshape(1, -1) if wav.dim() == 1 else wav
    if wav.dim() != 2:
        raise AudioError(
            f"cannot save '{path}': expected (channels, samples), got {tuple(wav.shape)}"
        )
    check_audio(wav, sample_rate, name=f"audio for '{path}'")
    data = wav.clamp(-1.0, 1.0).T.numpy()  # (T, C)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    return path


# ---------------------------------------------------------------------------------------
# Audio in blocks: long files and pipes with bounded memory.


class AudioBlocks:
    """An audio file, or a binary stream such as stdin, read as float32 (C, t) blocks of
    `seconds`. `sample_rate` and `channels` are known once it is open; iterate once. The
    file closes at the end of the iteration, on `close()` or on leaving a `with` block.

    An unreadable source, a read error, or a non-finite block raises AudioError."""

    def __init__(self, source: str | os.PathLike | BinaryIO, seconds: float) -> None:
        path = None
        if isinstance(source, str | os.PathLike):
            path = _existing_file(source)
            self.name, target, where = str(path), str(path), f"'{path}'"
        else:
            self.name = "stdin" if source is getattr(sys.stdin, "buffer", None) else "stream"
            target, where = _stream_target(source), f"from {self.name} (send WAV)"
        try:
            self._file: sf.SoundFile | _FFmpegFile = sf.SoundFile(target, closefd=False)
        except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as e:
            if path is None:
                raise AudioError(f"cannot read audio {where}: {_error_reason(e)}") from None
            self._file = _ffmpeg_file(path, _error_reason(e))
        self.sample_rate, self.channels = self._file.samplerate, self._file.channels
        self._size = max(1, int(seconds * self.sample_rate))

    def __iter__(self) -> Iterator[torch.Tensor]:
        with self._file:
            while True:
                try:
                    data = self._file.read(self._size, dtype="float32", always_2d=True)  # (t, C)
                except (sf.LibsndfileError, RuntimeError) as e:
                    raise AudioError(
                        f"cannot read audio '{self.name}': {_error_reason(e)}"
                    ) from None
                if len(data) == 0:
                    return
                block = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, t)
                check_audio(block, self.sample_rate, name=f"'{self.name}'")
                yield block

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_audio_blocks(
    source: str | os.PathLike | BinaryIO, seconds: float
) -> Iterator[torch.Tensor]:
    """float32 (C, t) blocks of `seconds` from a file or binary stream; their concatenation
    is what `load_audio(path, mono=False)` returns. Opens the source on the first `next`."""
    with AudioBlocks(source, seconds) as blocks:
        yield from blocks


def _stream_target(stream: BinaryIO) -> int | BinaryIO:
    """A file descriptor where there is one (libsndfile reads pipes through it), else the
    object itself (libsndfile's virtual I/O: needs read, seek and tell)."""
    try:
        return stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return stream


def write_audio_blocks(
    path: str | os.PathLike,
    blocks: Iterable[torch.Tensor],
    sample_rate: int,
    channels: int,
    *,
    subtype: str = "PCM_16",
) -> Path:
    """Write (C, t) blocks as one .wav or .flac file, atomically: a failure part way (or an
    exception from `blocks`) leaves the previous file, if any. Samples are clipped to [-1, 1].
    Raises AudioError, naming the file, for a bad suffix or a failed write."""
    path = Path(path)
    fmt = _save_format(path, "write")
    try:
        with atomic_path(path) as tmp:
            with sf.SoundFile(str(tmp), "w", sample_rate, channels, subtype, format=fmt) as f:
                for block in blocks:
                    f.write(block.detach().float().cpu().clamp(-1.0, 1.0).T.numpy())  # (t, C)
    except (OSError, sf.LibsndfileError) as e:
        raise AudioError(f"cannot write '{path}': {_error_reason(e)}") from None
    return path


def write_wav_stream(
    out: BinaryIO, blocks: Iterable[torch.Tensor], sample_rate: int, channels: int
) -> None:
    """(C, t) blocks as 16-bit WAV on a pipe, flushed block by block. The sizes are unknown
    up front, so the header says 0xFFFFFFFF (as ffmpeg and sox do), which readers take as
    "until the end of the stream"."""
    block_align = 2 * channels
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * block_align, block_align, 16
    )
    out.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16))
    out.write(fmt + b"data" + struct.pack("<I", 0xFFFFFFFF))
    for block in blocks:
        pcm = (block.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous()  # (t, C)
        out.write(pcm.numpy().astype("<i2").tobytes())
        out.flush()


class StreamResampler:
    """Band-limited resampling of a signal that arrives in blocks (C, t): each block is
    resampled with real input on both sides, so the result equals one-pass `resample`
    up to float rounding. Holds back `context` input samples until `finish`."""

    def __init__(self, orig_rate: int, new_rate: int) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise AudioError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
        g = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate, new_rate
        self.a, self.b = orig_rate // g, new_rate // g  # input and output samples per period
        # torchaudio's sinc kernel reaches 6 zero crossings of the lower rate, plus a period.
        reach = math.ceil(6 * self.a / min(self.a, self.b) / 0.99) + self.a + 16
        self.context = self.a * math.ceil(reach / self.a)
        self.buffer = torch.zeros(1, 0)  # (C, L) input from `start`
        self.start = self.done = self.total = 0  # `done`: input already turned into output
        self.emitted = 0  # output samples so far

    def push(self, block: torch.Tensor) -> torch.Tensor:  # (C, t) -> (C, t')
        if self.total == 0:
            self.buffer = block[..., :0]
        self.total += block.shape[-1]
        if self.orig == self.new:
            self.done = self.total
            return self._out(block)
        self.buffer = torch.cat([self.buffer, block], -1)
        stop = (self.total - self.context) // self.a * self.a
        return (
            self._emit(stop, stop + self.context) if stop > self.done else self._out(block[..., :0])
        )

    def finish(self) -> torch.Tensor:
        if self.done == self.total:
            return self._out(self.buffer[..., :0])
        return self._emit(self.total, self.total)

    def _emit(self, stop: int, hi: int) -> torch.Tensor:
        lo = max(0, self.done - self.context)
        out = resample(self.buffer[..., lo - self.start : hi - self.start], self.orig, self.new)
        first = (self.done - lo) // self.a * self.b
        if stop < self.total:
            count = (stop - self.done) // self.a * self.b
        else:  # the end: one-pass resampling gives ceil(total * new / orig) samples
            count = math.ceil(self.total * self.new / self.orig) - self.emitted
        self.done = stop
        keep = max(0, stop - self.context)
        self.buffer, self.start = self.buffer[..., keep - self.start :], keep
        return self._out(out[..., first : first + count])

    def _out(self, block: torch.Tensor) -> torch.Tensor:
        self.emitted += block.shape[-1]
        return block


# ---------------------------------------------------------------------------------------
# Log-mel: one definition, used by the ASR front end, the codec's mel losses and the TTS.


@dataclass(frozen=True)
class MelConfig:
    """A mel spectrogram; the default is the 16 kHz, 10 ms hop, 80-band ASR front end."""

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None means sample_rate / 2


ASR_MEL = MelConfig()


@functools.lru_cache(maxsize=64)
def _mel_filters(config: MelConfig, device: torch.device) -> torch.Tensor:
    """(M, F) filterbank, kept per device: a GPU step copies nothing from the host."""
    f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
    fb = AF.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.f_min,
        f_max=f_max,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )  # (F, M)
    return fb.T.contiguous().to(device)  # (M, F)


@functools.lru_cache(maxsize=64)
def _window(n_fft: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device)


def mel_spectrogram(wav: torch.Tensor, config: MelConfig = ASR_MEL) -> torch.Tensor:
    """Mel power spectrogram: (..., T) -> (..., n_mels, T // hop_length).

    Centred STFT with a Hann window; the last frame is dropped so that the frame count is
    exactly T // hop_length (every hop of audio is one frame).
    """
    shape = wav.shape
    x = wav.reshape(-1, shape[-1]).float()
    window = _window(config.n_fft, x.device)
    spec = torch.stft(
        x, config.n_fft, config.hop_length, window=window, center=True, return_complex=True
    )  # (N, F, frames + 1)
    power = spec[..., :-1].abs().pow(2)
    mel = _mel_filters(config, x.device) @ power  # (N, M, frames)
    return mel.reshape(*shape[:-1], config.n_mels, mel.shape[-1])


def log_mel(
    wav: torch.Tensor, config: MelConfig = ASR_MEL, *, floor: float = 1e-10
) -> torch.Tensor:
    """log10 of the mel power spectrogram, floored at `floor`: (..., T) -> (..., M, frames)."""
    return mel_spectrogram(wav, config).clamp(min=floor).log10()


def normalize_log_mel(logmel: torch.Tensor, dynamic_range: float = 8.0) -> torch.Tensor:
    """Whisper's scaling of a log-mel: keep `dynamic_range` decades below each example's
    peak, then map to roughly [-1, 1]. Works on (M, F) or batched (..., M, F)."""
    peak = logmel.amax(dim=(-2, -1), keepdim=True)
    return (torch.maximum(logmel, peak - dynamic_range) + 4.0) / 4.0


# ---------------------------------------------------------------------------------------
# Formats libsndfile cannot read, through ffmpeg


def _ffprobe(path: Path) -> AudioInfo | None:
    """The first audio stream of `path` as ffprobe sees it; None when ffprobe is missing
    or finds no media in the file. A media file without sound raises AudioError.

    The answer is kept while the file stays the same (its size and time of change), so the
    up-front check of a command and its reading probe the file once."""
    stat = path.stat()
    return _ffprobe_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(path))


@functools.lru_cache(maxsize=64)
def _ffprobe_cached(real: str, size: int, mtime_ns: int, shown: str) -> AudioInfo | None:
    path = Path(shown)
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    command = [ffprobe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        found = json.loads(done.stdout or b"{}")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    if done.returncode != 0 or "format" not in found:
        return None
    streams = [s for s in found.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise AudioError(f"cannot read audio '{path}': it has no audio stream")
    stream, container = streams[0], found["format"]
    try:
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (KeyError, ValueError):
        return None
    duration = stream.get("duration", container.get("duration"))
    try:
        frames = round(float(duration) * rate)
    except (TypeError, ValueError):
        frames = 0
    name = container.get("format_name", "ffmpeg").split(",")[0]
    return AudioInfo(str(path), rate, channels, frames, name, stream.get("codec_name", "?"), False)


def _ffmpeg_file(path: Path, reason: str) -> _FFmpegFile:
    """`path` decoded by ffmpeg; when ffmpeg is missing or cannot read it either, AudioError
    with `reason`, why libsndfile could not."""
    info = _ffprobe(path)
    if info is None or shutil.which("ffmpeg") is None:
        raise AudioError(f"cannot read audio '{path}': {reason}") from None
    return _FFmpegFile(path, info)


class _FFmpegFile:
    """The first audio stream of a file decoded by an ffmpeg process to float32 PCM at its
    own rate and channels, read through a pipe in blocks (bounded memory); it answers what
    `AudioBlocks` and `load_audio` ask of a `soundfile.SoundFile`. A decoding error raises
    AudioError with ffmpeg's last message."""

    def __init__(self, path: Path, info: AudioInfo) -> None:
        self.name, self.samplerate, self.channels = str(path), info.sample_rate, info.channels
        self._errors = tempfile.TemporaryFile()  # a file, so a chatty ffmpeg never blocks
        command = [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-i", str(path)]
        command += ["-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._errors)
        self._warned = False

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to `frames` frames `(t, C)` (all that is left when negative); (0, C) at the end."""
        assert self._process.stdout is not None
        width = 4 * self.channels
        data = self._process.stdout.read(-1 if frames < 0 else frames * width)
        if frames < 0 or len(data) < frames * width:  # the end: did ffmpeg decode it all?
            failed = self._process.wait() != 0
            self._errors.seek(0)
            lines = self._errors.read().decode(errors="replace").strip().splitlines()
            if failed:
                reason = (
                    _ffmpeg_message(lines[-1])
                    if lines
                    else f"ffmpeg exited with {self._process.returncode}"
                )
                raise AudioError(f"cannot read audio '{self.name}': {reason}")
            if lines and not self._warned:  # decoded, but not cleanly: a cut or damaged file
                self._warned = True
                warnings.warn(
                    f"'{self.name}' may be cut short or damaged: ffmpeg decoded it with "
                    f"errors ({_ffmpeg_message(lines[-1])})",
                    stacklevel=2,
                )
        data = data[: len(data) - len(data) % width]
        return np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels).astype(dtype)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._errors.close()

    def __enter__(self) -> _FFmpegFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ffmpeg_message(line: str) -> str:
    """An ffmpeg log line without its "[component @ 0x...]" prefix."""
    return re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*", "", " ".join(line.split()))


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"no such audio file: '{path}'")
    if not path.is_file():
        raise AudioError(f"not a file: '{path}'")
    return path


def _save_format(path: Path, verb: str) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"cannot {verb} '{path}': use one of {', '.join(SAVE_FORMATS)}")
    return fmt


def _error_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return _sf_reason(e)


def _sf_reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    # libsndfile prefixes its message with "Error opening '<path>': "; keep only the reason.
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
