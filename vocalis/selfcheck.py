"""`vocalis check`: run the foundation end to end on a real clip and report what it measured.

1. audio: load, resample to 16 kHz, normalise loudness, save as FLAC, reload, log-mel;
2. a small causal transformer (the shared blocks) learns to predict the next mel frame of
   the clip with the shared trainer and Schedule-Free AdamW; the loss must fall;
3. the exported checkpoint reloads to identical outputs;
4. decoding step by step with the KV cache equals the full causal pass;
5. with the shipped codec for compression (models/codec/codec_sisdr): the clip through a
   6 kbps `.vcd` file and back, its size, mel distance to the original and speed;
6. with the shipped recogniser (models/asr/): the shipped example voice (a held-out LJ
   Speech clip) transcribed, its word error rate and speed;
7. with the shipped TTS (models/tts/): a sentence spoken in the example voice (say.wav),
   its length and real-time factor.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from core.audio import (
    ASR_MEL,
    load_audio,
    log_mel,
    loudness,
    normalize_log_mel,
    normalize_loudness,
    resample,
    save_audio,
)
from core.checkpoint import load_model
from core.transformer import Transformer
from training.trainer import LossOutput, TrainConfig, Trainer, TrainTask

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "ljspeech" / "wavs" / "LJ001-0001.flac"


@dataclass(frozen=True)
class MelPredictorDims:
    n_mels: int = 80
    dim: int = 96
    depth: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2


class MelPredictor(nn.Module):
    """Predicts log-mel frame t+1 from frames <= t."""

    def __init__(self, dims: MelPredictorDims):
        super().__init__()
        self.inp = nn.Linear(dims.n_mels, dims.dim)
        self.body = Transformer(dims.dim, dims.depth, dims.n_heads, dims.n_kv_heads)
        self.out = nn.Linear(dims.dim, dims.n_mels)

    def forward(self, mel: torch.Tensor, cache=None) -> torch.Tensor:  # (B, T, M) -> (B, T, M)
        return self.out(self.body(self.inp(mel), is_causal=cache is None, cache=cache))


class MelWindows(Dataset):
    """Overlapping windows of one clip's frames: (T, M) -> items of (window, M)."""

    def __init__(self, frames: torch.Tensor, window: int = 64, hop: int = 8):
        self.frames, self.window = frames, window
        self.starts = list(range(0, frames.shape[0] - window, hop))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.frames[self.starts[i] : self.starts[i] + self.window]


class MelTask(TrainTask):
    kind = "mel-predictor"

    def __init__(self, dims: MelPredictorDims):
        self.dims, self.model = dims, MelPredictor(dims)

    def parts(self):
        return {"model": self.model}

    def loss(self, part, batch, modules):
        pred = modules["model"](batch[:, :-1])
        loss = (pred - batch[:, 1:]).abs().mean()
        return LossOutput(loss, items=batch.shape[0])

    def export(self):
        return self.model, self.dims


def run_check(clip: Path | None, out_dir: Path, steps: int = 60) -> bool:
    torch.manual_seed(0)
    rows: list[tuple[str, str, bool]] = []
    t0 = time.perf_counter()

    clip = clip or DEFAULT_CLIP
    if clip.exists():
        wav, rate = load_audio(clip)
        source = clip.name
    else:  # no shared data beside the checkout: a gliding tone stands in for speech
        rate, source = 22050, "a synthetic glide (no clip found)"
        t = torch.arange(3 * rate) / rate
        wav = 0.3 * torch.sin(2 * math.pi * (200 + 300 * t) * t)[None]
    wav16 = normalize_loudness(resample(wav, rate, ASR_MEL.sample_rate), ASR_MEL.sample_rate, -23.0)
    saved = save_audio(out_dir / "roundtrip.flac", wav16, ASR_MEL.sample_rate)
    back, _ = load_audio(saved)
    err = float((back - wav16).abs().max())
    lufs = loudness(back, ASR_MEL.sample_rate)
    rows.append(
        (
            "audio",
            f"{source}: {rate} Hz -> 16 kHz, {lufs:.1f} LUFS, FLAC error {err:.1e}",
            err < 1e-4 and abs(lufs + 23) < 0.1,
        )
    )

    frames = normalize_log_mel(log_mel(back))[0].T.contiguous()  # (T, M)
    rows.append(
        ("log-mel", f"{frames.shape[0]} frames x {frames.shape[1]} bands", frames.shape[1] == 80)
    )

    task = MelTask(MelPredictorDims())
    config = TrainConfig(
        out_dir=str(out_dir / "train"),
        max_steps=steps,
        batch_size=8,
        optimizer="schedulefree",
        lr=3e-3,
        warmup_steps=10,
        log_every=10,
        checkpoint_every=steps,
        progress=False,
    )
    trainer = Trainer(task, config, MelWindows(frames))
    result = trainer.fit(resume=False)
    log = [line for line in (out_dir / "train" / "log.jsonl").read_text().splitlines()]
    first, last = (json.loads(log[i])["loss"] for i in (0, -1))
    rows.append(
        (
            "training",
            f"{steps} steps in {result.seconds:.1f} s, L1 {first:.3f} -> {last:.3f}",
            last < 0.8 * first,
        )
    )

    model = load_model(result.model_path, MelPredictor, MelPredictorDims, kind=MelTask.kind)
    task.model.eval()
    x = frames[None, :48]
    with torch.no_grad(), trainer.eval_weights():
        same = torch.equal(model(x), task.model(x))
        cache = model.body.new_cache(1, x.shape[1])
        steps_out = torch.cat(
            [model(x[:, i : i + 1], cache=cache) for i in range(x.shape[1])], dim=1
        )
        diff = float((steps_out - model(x)).abs().max())
    rows.append(("checkpoint", f"{result.model_path.name} reloads to identical outputs", same))
    rows.append(
        ("KV cache", f"48 cached steps vs full pass: max difference {diff:.1e}", diff < 1e-4)
    )

    rows += _codec_rows(wav, rate, source, out_dir)
    rows += _asr_rows()
    rows += _tts_rows(out_dir)

    width = max(len(r[0]) for r in rows)
    for name, detail, ok in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<{width}}  {detail}")
    passed = all(ok for *_, ok in rows)
    print(
        f"vocalis check {'passed' if passed else 'FAILED'} in {time.perf_counter() - t0:.1f} s; files in {out_dir}"
    )
    return passed


def _codec_rows(wav: torch.Tensor, rate: int, source: str, out_dir: Path):
    """Compress the clip to a 6 kbps `.vcd` file with the shipped codec and back."""
    from codec.compress import CompressOptions, compress_audio, decompress_bytes, load
    from codec.evaluate import METRIC_RATE, mel_distance
    from codec.model import default_compress_checkpoint
    from core.io import write_bytes_atomic

    if not (weights := default_compress_checkpoint()).is_file():
        return [("codec", f"skipped: no shipped codec at {weights}", True)]
    codec = load()
    start = time.perf_counter()
    data = compress_audio(wav, rate, codec, CompressOptions(kbps=6.0))
    write_bytes_atomic(out_dir / "clip.vcd", data)
    decoded, back_rate = decompress_bytes(data, codec)
    seconds = time.perf_counter() - start
    save_audio(out_dir / "clip_6kbps.wav", decoded, back_rate)
    duration = wav.shape[-1] / rate
    distance = mel_distance(  # the metric of `vocalis eval codec`, on the first channel
        resample(wav, rate, METRIC_RATE)[0], resample(decoded, back_rate, METRIC_RATE)[0]
    )
    ok = decoded.shape == wav.shape and back_rate == rate and bool(torch.isfinite(decoded).all())
    detail = (
        f"{source} -> clip.vcd, {len(data)} bytes ({8 * len(data) / duration / 1000:.2f} kbps) "
        f"-> clip_6kbps.wav, mel distance {distance:.2f}, {duration / seconds:.0f}x real time"
    )
    return [("codec", detail, ok)]


CHECK_SENTENCE = "The birch canoe slid on the smooth planks."


def _tts_rows(out_dir: Path):
    """Speak a sentence in the shipped example voice with the shipped VALL-E and codec."""
    from core.paths import EXAMPLE_VOICE
    from tts.synthesize import Synthesizer
    from tts.valle import SHIPPED_CHECKPOINT

    if not SHIPPED_CHECKPOINT.is_file():
        return [("tts", f"skipped: no shipped TTS at {SHIPPED_CHECKPOINT}", True)]
    synth = Synthesizer.load(ar_precision="auto")  # as `vocalis say` runs the AR
    prompt = synth.prompt_from_file(EXAMPLE_VOICE)  # its transcript: ljspeech.txt beside it
    speech = synth.synthesize(CHECK_SENTENCE, prompt, seed=0)
    save_audio(out_dir / "say.wav", speech.wav.unsqueeze(0), speech.sample_rate)
    ok = 0.5 <= speech.seconds <= 20.0 and bool(torch.isfinite(speech.wav).all())
    detail = (
        f'"{CHECK_SENTENCE}" in the voice of {EXAMPLE_VOICE.name} -> say.wav, '
        f"{speech.seconds:.1f} s, real-time factor {speech.rtf:.2f}"
    )
    return [("tts", detail, ok)]


def _asr_rows():
    """Transcribe the shipped example voice (a held-out LJ Speech clip) with the shipped
    recogniser, greedily, and score it against its transcript."""
    from asr.decoding import DecodingOptions
    from asr.evaluate import word_errors
    from asr.model import SAMPLE_RATE, SHIPPED_CHECKPOINT, load_asr
    from asr.transcribe import TranscribeOptions, transcribe
    from core.paths import EXAMPLE_VOICE

    if not SHIPPED_CHECKPOINT.is_file():
        return [("asr", f"skipped: no shipped recogniser at {SHIPPED_CHECKPOINT}", True)]
    model = load_asr()
    audio = load_audio(EXAMPLE_VOICE, SAMPLE_RATE)[0][0]  # (T,)
    start = time.perf_counter()
    options = TranscribeOptions(decoding=DecodingOptions(beam_size=1))
    text = next(iter(transcribe(model, [audio], options))).text.strip()
    seconds = time.perf_counter() - start
    wer, _ = word_errors([EXAMPLE_VOICE.with_suffix(".txt").read_text()], [text])
    shown = text if len(text) <= 50 else text[:47] + "..."
    detail = (
        f'{EXAMPLE_VOICE.name} (held out): "{shown}", WER {100 * wer:.0f}%, '
        f"{audio.shape[0] / SAMPLE_RATE / seconds:.0f}x real time"
    )
    return [("asr", detail, bool(text))]
