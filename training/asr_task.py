"""ASR training as a `TrainTask`: targets with Whisper's special tokens, no-speech examples,
SpecAugment, and the length-bucketed sampler over manifest utterances.

Every random choice of a step (which items are timed, which become no-speech noise, the
noise level, the SpecAugment masks) is drawn from the global torch RNG in the main
process, so a resumed run repeats exactly what an uninterrupted one would do.

Targets per item (inputs are the sequence without its last token, targets without its first):

    speech, untimed   SOT transcribe notimestamps text... EOT
    speech, timed     SOT transcribe <|lead|> text... <|duration|> EOT  (lead: 0 s, or the
                                                 quiet put before it, `lead_prob`)
    no speech         SOT nospeech EOT          (the audio is replaced by noise or music,
                                                 `training.nonspeech`, down to near silence)
    two utterances    SOT transcribe <|0.00|> text a <|end a|><|start b|> text b <|end b|> EOT
    ... b cut off     SOT transcribe <|0.00|> text a <|end a|><|start b|> EOT

The last two (`pack_prob`, `cut_prob`) teach what long-form transcription needs: several
segments in one window, and a window that ends inside an utterance (a lone start
timestamp, from which the next window starts).

The target after SOT (transcribe vs. nospeech) is what `no_speech_prob` reads at inference;
the given <|notimestamps|> is not a target.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from asr.ctc import CTC_UNITS, ctc_chars, n_ctc_units
from asr.model import SAMPLE_RATE, ASRModel, log_mel_features
from asr.tokenizer import Tokenizer
from core.audio import ASR_MEL, MelConfig, resample, rms_dbfs
from corpus.dataset import AudioBatch
from training.nonspeech import non_speech
from training.rooms import colour
from training.trainer import LossOutput, TrainTask

IGNORE = -100


@dataclass(frozen=True)
class ASRDataConfig:
    max_seconds: float = 30.0  # longer utterances are left out (one window each)
    batch_seconds: float = 240.0  # padded audio per batch (with train.batch_size as a cap)
    timestamp_prob: float = 0.5  # share of items trained with timestamp targets
    no_speech_prob: float = 0.03  # share of items turned into non-speech with a nospeech target
    noise_dbfs: tuple[float, float] = (-90.0, -35.0)  # RMS level range of that noise or music
    pack_prob: float = 0.0  # share of item pairs joined into one two-segment timed example
    cut_prob: float = 0.3  # share of those whose second utterance the window cuts off
    gap_seconds: tuple[float, float] = (0.1, 0.6)  # silence between the two
    # Speed perturbation (tempo and pitch together, by resampling, as Kaldi's): each speech
    # item plays at a factor drawn in this range, in steps of 0.05 (never past max_seconds).
    speed: tuple[float, float] = (1.0, 1.0)
    # Share of speech items mixed with noise or music (training.nonspeech) at an SNR drawn in
    # `snr_db`: synthetic voices are clean, real recordings are not.
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (5.0, 30.0)
    # Rooms and microphones (training.rooms), before the noise: shares of speech items
    # given a reverberant room (RT60 and direct-to-reverberant ratio drawn in `rt60` s and
    # `drr_db`), a microphone's colouration (a smooth gain curve within +- `eq_db`) and a
    # band-limited channel (a low-pass at a cutoff drawn in `lowpass_hz`).
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 15.0)
    eq_prob: float = 0.0
    eq_db: float = 6.0
    lowpass_prob: float = 0.0
    lowpass_hz: tuple[float, float] = (3400.0, 7500.0)
    # Vocal tract length perturbation (Jaitly & Hinton 2013), on the log-mel: a share of the
    # items has its frequency axis stretched by a factor drawn in `warp` (formants moved as
    # by a shorter or longer vocal tract, the pitch and tempo kept), so that a few dozen
    # synthetic voices stand for many more (`warp_vocal_tract`).
    warp_prob: float = 0.0
    warp: tuple[float, float] = (0.9, 1.1)
    # Share of speech items that start after a pause drawn in `lead_seconds` (silence, which
    # the room, noise and music stages then fill as they fill the rest): the synthetic
    # clips start within 0.15 s of their first sample, and a recogniser trained only on
    # them loses words when a recording starts earlier or later than that (`add_lead`).
    lead_prob: float = 0.0
    lead_seconds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not 0 < self.max_seconds <= 30.0:
            raise ValueError(f"max_seconds must be in (0, 30], got {self.max_seconds}")
        if self.batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be positive, got {self.batch_seconds}")
        if not 0.5 <= self.speed[0] <= self.speed[1] <= 2.0:
            raise ValueError(f"speed must be a range within [0.5, 2], got {self.speed}")
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db must be a (low, high) range, got {self.snr_db}")
        if not 0.05 <= self.rt60[0] <= self.rt60[1] <= 3.0:
            raise ValueError(f"rt60 must be a range within [0.05, 3] seconds, got {self.rt60}")
        if self.drr_db[0] > self.drr_db[1]:
            raise ValueError(f"drr_db must be a (low, high) range, got {self.drr_db}")
        if not 0.0 <= self.eq_db <= 24.0:
            raise ValueError(f"eq_db must be in [0, 24], got {self.eq_db}")
        if not 100.0 <= self.lowpass_hz[0] <= self.lowpass_hz[1] <= SAMPLE_RATE / 2:
            raise ValueError(
                f"lowpass_hz must be a range within [100, {SAMPLE_RATE // 2}], got {self.lowpass_hz}"
            )
        if not 0.5 <= self.warp[0] <= self.warp[1] <= 2.0:
            raise ValueError(f"warp must be a range within [0.5, 2], got {self.warp}")
        if not 0.0 <= self.lead_seconds[0] <= self.lead_seconds[1] <= self.max_seconds:
            raise ValueError(
                f"lead_seconds must be a range within [0, max_seconds], got {self.lead_seconds}"
            )
        probs = ("timestamp_prob", "no_speech_prob", "pack_prob", "cut_prob", "noise_prob")
        for name in probs + ("reverb_prob", "eq_prob", "lowpass_prob", "warp_prob", "lead_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class ASRLossConfig:
    # Weight of a CTC loss on the encoder output (a training-only linear head over the BPE
    # pieces plus a blank): total = (1 - w) * attention CE + w * CTC. It makes the encoder
    # learn where the words are long before cross-attention would find them alone (without
    # it, a model trained 1000 steps here still ignored the audio: the loss with the real
    # audio was 1.18, with silence 1.27).
    ctc_weight: float = 0.0
    # What the CTC head spells: "pieces" (the decoder's BPE pieces) or "chars" (letters,
    # digits, apostrophe and space; see CTC_ALPHABET). With a BPE of 1024 pieces on this
    # corpus most words are one piece, so a piece head must learn every word as a unit (its
    # loss stayed near 4 nats per piece for 1700 steps here); letters are shared between
    # words, so a character head teaches the encoder sounds that every word is made of.
    ctc_units: str = "pieces"

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        if self.ctc_units not in CTC_UNITS:
            raise ValueError(
                f"ctc_units must be one of {', '.join(CTC_UNITS)}, got {self.ctc_units!r}"
            )


class WithCTC(nn.Module):
    """The recogniser and a CTC head on its encoder, trained together. The head is the
    model's own when it has one (a checkpoint that kept its head, given to --init), else a
    new one here; `exported` is the model with the head either way."""

    def __init__(self, model: ASRModel, units: str = "pieces") -> None:
        super().__init__()
        self.model = model
        if model.ctc is not None and model.dims.ctc_units != units:
            raise ValueError(
                f"the model's CTC head spells {model.dims.ctc_units}, the loss asks for {units}"
            )
        self.units = units
        self.blank = n_ctc_units(units, model.tokenizer)  # after the units
        # Registered here only when new, so the state dict of a run that started without
        # a head keeps its names ("ctc.*") and one that started with it ("model.ctc.*").
        self.ctc = (
            None if model.ctc is not None else nn.Linear(model.dims.audio_dim, self.blank + 1)
        )

    @property
    def head(self) -> nn.Linear:
        return self.model.ctc if self.ctc is None else self.ctc

    def forward(self, mel: Tensor, frames: Tensor, tokens: Tensor):
        audio = self.model.embed_audio(mel, frames)
        logits = self.model.decoder(tokens, audio)  # (B, L, V)
        log_probs = self.head(audio.x).float().log_softmax(-1)  # (B, S, units + 1)
        return logits, log_probs, audio.lengths

    def exported(self) -> ASRModel:
        """The model with the head, sharing these parameters (so the trainer's EMA or
        Schedule-Free weights, swapped in for the export, are the ones written)."""
        if self.ctc is None:
            return self.model
        out = ASRModel(dataclasses.replace(self.model.dims, ctc_units=self.units))
        out.encoder, out.decoder, out.ctc = self.model.encoder, self.model.decoder, self.ctc
        return out


def ctc_target(seq: Sequence[int], tokenizer: Tokenizer, units: str = "pieces") -> list[int] | None:
    """The units (BPE pieces, or CTC_ALPHABET characters) a CTC head should emit for a
    training sequence; None for a window that cuts its second utterance off (its audio holds
    words the text does not)."""
    is_time = tokenizer.is_timestamp
    if len(seq) >= 3 and is_time(seq[-2]) and is_time(seq[-3]):
        return None
    if units == "pieces":
        return [t for t in seq if t < tokenizer.n_text]
    segments, current = [], []  # the text between special tokens, one utterance each
    for t in [*seq, tokenizer.eot]:
        if t < tokenizer.n_text:
            current.append(t)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    return ctc_chars(" ".join(segments))


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks (set to 0, the middle of the normalised log-mel range)."""

    freq_masks: int = 2
    freq_width: int = 15  # mel bins, at most, per mask
    time_masks: int = 2
    time_ratio: float = 0.05  # frames, at most, per mask, as a share of the item's length

    def __call__(self, mel: Tensor, frames: Tensor) -> Tensor:
        """mel `(B, M, F)` with `frames` valid frames `(B,)` -> masked copy."""
        b, m, f = mel.shape
        keep = torch.ones(b, m, f, dtype=torch.bool)
        bins, steps = torch.arange(m), torch.arange(f)
        for _ in range(self.freq_masks):
            width = torch.randint(0, self.freq_width + 1, (b,)).clamp(max=m)
            start = (torch.rand(b) * (m - width + 1)).long()
            hit = (bins >= start[:, None]) & (bins < (start + width)[:, None])  # (B, M)
            keep &= ~hit[:, :, None]
        limit = (frames.cpu().float() * self.time_ratio).long()  # (B,)
        for _ in range(self.time_masks):
            width = (torch.rand(b) * (limit + 1)).long()
            start = (torch.rand(b) * (frames.cpu() - width + 1).clamp(min=1)).long()
            hit = (steps >= start[:, None]) & (steps < (start + width)[:, None])  # (B, F)
            keep &= ~hit[:, None, :]
        return mel * keep.to(mel.device)


def _slaney_mel(hz: Tensor) -> Tensor:
    """Hz -> mels on the Slaney scale (linear to 1 kHz, logarithmic above), as `ASR_MEL`."""
    log_step = math.log(6.4) / 27.0
    return torch.where(
        hz < 1000.0, hz * 3.0 / 200.0, 15.0 + torch.log(hz.clamp(min=1e-3) / 1000.0) / log_step
    )


def mel_centres(config: MelConfig = ASR_MEL) -> Tensor:
    """Centre frequency in Hz of each band of the mel filterbank `(M,)`."""
    f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
    grid = torch.linspace(0.0, f_max, 20001, dtype=torch.float64)
    mels = _slaney_mel(grid)
    low, high = _slaney_mel(torch.tensor([config.f_min, f_max], dtype=torch.float64)).tolist()
    points = torch.linspace(low, high, config.n_mels + 2, dtype=torch.float64)[1:-1]
    index = torch.searchsorted(mels, points).clamp(max=grid.numel() - 1)
    return grid[index].float()  # to 0.05 % of the band: plenty for a warp


def warp_vocal_tract(mel: Tensor, factors: Tensor, config: MelConfig = ASR_MEL) -> Tensor:
    """Log-mel `(B, M, F)` with each item's frequency axis warped by its factor `(B,)`.

    Band m of the output reads the input at g(f_m), where g(f) = factor * f up to a knee and
    then a straight line to (Nyquist, Nyquist), so the whole band is kept (Jaitly & Hinton's
    piecewise-linear VTLP): a factor above 1 brings the formants down, as a longer vocal
    tract would, below 1 up. The input is interpolated linearly between bands; a factor of
    1 gives the input back."""
    b, m, _ = mel.shape
    centres = mel_centres(config).to(mel.device)  # (M,)
    nyquist = config.sample_rate / 2
    factors = factors.to(mel.device, torch.float32)[:, None]  # (B, 1)
    knee = 0.8 * nyquist * torch.minimum(torch.ones_like(factors), 1.0 / factors)
    slope = (nyquist - factors * knee) / (nyquist - knee)
    f = centres[None, :]
    source = torch.where(f <= knee, factors * f, factors * knee + slope * (f - knee))  # (B, M)
    # the fractional band at each source frequency: the inverse of the centres' curve
    upper = torch.searchsorted(centres, source.contiguous()).clamp(1, m - 1)
    lo_f, hi_f = centres[upper - 1], centres[upper]
    weight = ((source - lo_f) / (hi_f - lo_f)).clamp(0.0, 1.0)[:, :, None]  # (B, M, 1)
    rows = torch.arange(b, device=mel.device)[:, None]
    # lerp gives `above` itself at weight 1 (and `below` at 0): a factor of 1 is exact
    return torch.lerp(mel[rows, upper - 1], mel[rows, upper], weight)  # (B, M, F)


def perturb_speed(
    wav: Tensor, lengths: Tensor, data: ASRDataConfig, *, skip: Tensor
) -> tuple[Tensor, Tensor]:
    """Each item of `wav` `(B, T)` (`lengths` valid samples) played at a factor drawn in
    `data.speed` (items where `skip` is true stay as they are) -> new `(B, T')`, lengths."""
    low, high = data.speed
    if low == high == 1.0:  # off: no draw, so older configs see the same random numbers
        return wav, lengths
    factors = low + (high - low) * torch.rand(wav.shape[0])
    limit = int(data.max_seconds * SAMPLE_RATE)
    clips = []
    for row, n in enumerate(lengths.tolist()):
        clip = wav[row, :n]
        # the factor in twentieths (short resampling filters); slowed down, it must still fit
        steps = max(round(float(factors[row]) * 20), math.ceil(20 * n / limit))
        if not skip[row] and steps != 20:
            clip = resample(clip, steps, 20)  # heard at steps/20 times the speed
        clips.append(clip)
    out_lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
    return pad_sequence(clips, batch_first=True), out_lengths


def add_lead(
    wav: Tensor, lengths: Tensor, data: ASRDataConfig, *, skip: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """A `data.lead_prob` share of the items of `wav` `(B, T)` (not those where `skip` is
    true) moved later by a pause drawn in `data.lead_seconds`, never past `max_seconds`
    -> new `(B, T')`, lengths, and each item's pause in samples."""
    b = wav.shape[0]
    if data.lead_prob == 0:  # off: no draw, so older configs see the same random numbers
        return wav, lengths, torch.zeros(b, dtype=torch.long)
    low, high = data.lead_seconds
    rows = (torch.rand(b) < data.lead_prob) & ~skip.cpu()
    seconds = low + (high - low) * torch.rand(b)
    room = (int(data.max_seconds * SAMPLE_RATE) - lengths.cpu()).clamp(min=0)
    leads = torch.where(rows, (seconds * SAMPLE_RATE).long(), 0).minimum(room)
    if not bool(leads.any()):
        return wav, lengths, leads
    out = wav.new_zeros(b, int((lengths.cpu() + leads).max()))
    for row, (n, lead) in enumerate(zip(lengths.tolist(), leads.tolist())):
        out[row, lead : lead + n] = wav[row, :n]
    return out, lengths + leads.to(lengths.device), leads


def add_noise(wav: Tensor, lengths: Tensor, data: ASRDataConfig, *, skip: Tensor) -> Tensor:
    """A copy of `wav` `(B, T)` with noise or music under a `data.noise_prob` share of its
    items (not those where `skip` is true), at an SNR drawn in `data.snr_db`."""
    if data.noise_prob == 0:
        return wav
    rows = (torch.rand(wav.shape[0]) < data.noise_prob) & ~skip.cpu()
    low, high = data.snr_db
    snr = low + (high - low) * torch.rand(wav.shape[0])
    if not bool(rows.any()):
        return wav
    noise = non_speech(int(rows.sum()), wav.shape[1], SAMPLE_RATE, (0.0, 0.0))  # RMS 1
    wav = wav.clone()
    for k, row in enumerate(rows.nonzero().flatten().tolist()):
        n = int(lengths[row])
        scale = 10.0 ** ((rms_dbfs(wav[row, :n]) - float(snr[row])) / 20.0)  # noise RMS is 1
        wav[row, :n] += noise[k, :n].to(wav.device, wav.dtype) * scale
    return wav


def target_sequence(
    tokenizer: Tokenizer,
    text: str,
    seconds: float,
    *,
    timed: bool,
    no_speech: bool,
    start: float = 0.0,
) -> list[int]:
    """The full token sequence of one training item (see the module docstring); `start`:
    seconds of quiet before its speech (`add_lead`)."""
    tok = tokenizer
    if no_speech:
        return [tok.sot, tok.no_speech, tok.eot]
    ids = tok.encode(text)
    if timed:
        return [
            *tok.prompt(True),
            tok.timestamp_token(start),
            *ids,
            tok.timestamp_token(seconds),
            tok.eot,
        ]
    return [*tok.prompt(False), *ids, tok.eot]


def packed_example(
    tokenizer: Tokenizer,
    a: Tensor,
    text_a: str,
    b: Tensor,
    text_b: str,
    gap: int,
    keep: int | None = None,
    lead_a: int = 0,
    lead_b: int = 0,
) -> tuple[Tensor, list[int]]:
    """Two utterances `(T,)` in one timed example: a, `gap` samples of silence, then b (only
    its first `keep` samples if given: the window cuts b off, so only its start is marked).
    `lead_a` and `lead_b`: samples of quiet at the start of a and of b (`add_lead`)."""
    tok = tokenizer
    lead_b = lead_b if keep is None else min(lead_b, keep)
    start_b = a.shape[0] + gap + lead_b
    b = b if keep is None else b[:keep]
    wav = torch.cat([a, a.new_zeros(gap), b])  # (T,)
    seq = [*tok.prompt(True), tok.timestamp_token(lead_a / SAMPLE_RATE), *tok.encode(text_a)]
    seq += [
        tok.timestamp_token(a.shape[0] / SAMPLE_RATE),
        tok.timestamp_token(start_b / SAMPLE_RATE),
    ]
    if keep is None:
        seq += [*tok.encode(text_b), tok.timestamp_token(wav.shape[0] / SAMPLE_RATE)]
    return wav, [*seq, tok.eot]


def teacher_forcing(
    sequences: Sequence[Sequence[int]], tokenizer: Tokenizer, max_len: int
) -> tuple[Tensor, Tensor]:
    """Inputs `(B, L)` and targets `(B, L)` (IGNORE where padded or given) from sequences
    cut to `max_len + 1` tokens."""
    cut = [list(s[: max_len + 1]) for s in sequences]
    length = max(len(s) for s in cut) - 1
    inputs = torch.full((len(cut), length), tokenizer.eot, dtype=torch.long)
    targets = torch.full((len(cut), length), IGNORE, dtype=torch.long)
    for row, seq in enumerate(cut):
        inputs[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        targets[row, : len(seq) - 1] = torch.tensor(seq[1:])
    targets[targets == tokenizer.no_timestamps] = IGNORE  # part of the prompt, not predicted
    return inputs, targets


class ASRTask(TrainTask):
    kind = "asr"

    def __init__(
        self,
        model: ASRModel,
        data: ASRDataConfig,
        augment: SpecAugment,
        loss: ASRLossConfig = ASRLossConfig(),
    ) -> None:
        if model.tokenizer is None:
            raise ValueError("the model needs its tokenizer (ASRDims.with_tokenizer)")
        self.model, self.data, self.augment, self.weights = model, data, augment, loss
        self.tokenizer = model.tokenizer
        self.trained = WithCTC(model, loss.ctc_units) if loss.ctc_weight > 0 else model

    def parts(self) -> dict[str, nn.Module]:
        return {"model": self.trained}

    def export(self) -> tuple[nn.Module, object]:
        model = self.trained.exported() if isinstance(self.trained, WithCTC) else self.model
        return model, model.dims

    def loss(self, part: str, batch: AudioBatch, modules: dict[str, nn.Module]) -> LossOutput:
        if part != "model":
            raise ValueError(f"unknown part {part!r}")
        b = batch.wav.shape[0]
        no_speech = torch.rand(b) < self.data.no_speech_prob
        timed = torch.rand(b) < self.data.timestamp_prob
        # The features are data, not model: fp32 even under a bf16 autocast (whose
        # convolutions of long waveforms are slow on the CPU and coarse in any case).
        with torch.autocast(batch.wav.device.type, enabled=False):
            wav, clip_lengths = perturb_speed(batch.wav, batch.lengths, self.data, skip=no_speech)
            wav, clip_lengths, leads = add_lead(wav, clip_lengths, self.data, skip=no_speech)
            wav = colour(wav, clip_lengths, self.data, SAMPLE_RATE, skip=no_speech)
            wav = add_noise(wav, clip_lengths, self.data, skip=no_speech)
            wav = self._replace_with_noise(wav, no_speech)  # (B, T)
            examples = self._examples(
                wav, clip_lengths.tolist(), batch.texts, no_speech, timed, leads.tolist()
            )
            lengths = torch.tensor([w.shape[0] for w, _ in examples])
            wav = pad_sequence([w for w, _ in examples], batch_first=True)  # (B', T')
            mel, frames = log_mel_features(wav, lengths.to(wav.device))  # (B', M, F), (B',)
            mel = self._warp(mel)
            mel = self.augment(mel, frames)
        sequences = [seq for _, seq in examples]
        inputs, targets = teacher_forcing(sequences, self.tokenizer, self.model.dims.n_text_ctx)
        inputs, targets = inputs.to(mel.device), targets.to(mel.device)
        metrics = {}
        if self.weights.ctc_weight > 0:
            logits, log_probs, enc_lengths = modules["model"](mel, frames, inputs)
            ctc = self._ctc_loss(log_probs, enc_lengths, sequences)
            metrics["ctc"] = float(ctc.detach())
        else:
            logits = modules["model"](mel, frames, inputs)  # (B, L, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        valid = targets != IGNORE
        accuracy = ((logits.argmax(-1) == targets) & valid).sum() / valid.sum().clamp(min=1)
        metrics["token_accuracy"] = float(accuracy)
        metrics["attention_ce"] = float(loss.detach())
        if self.weights.ctc_weight > 0:
            w = self.weights.ctc_weight
            loss = (1 - w) * loss + w * ctc
        return LossOutput(
            loss,
            metrics,
            items=float(lengths.sum()) / SAMPLE_RATE,  # seconds of audio
        )

    def _ctc_loss(self, log_probs: Tensor, lengths: Tensor, sequences) -> Tensor:
        """CTC of the encoder head over the items whose text covers their audio."""
        units = self.weights.ctc_units
        rows = [(i, ctc_target(seq, self.tokenizer, units)) for i, seq in enumerate(sequences)]
        rows = [(i, t) for i, t in rows if t is not None]
        if not rows:
            return log_probs.sum() * 0.0
        index = torch.tensor([i for i, _ in rows], device=log_probs.device)
        flat = torch.tensor([x for _, t in rows for x in t], dtype=torch.long)
        return F.ctc_loss(
            log_probs[index].transpose(0, 1),  # (S, B', C)
            flat.to(log_probs.device),
            lengths[index],
            torch.tensor([len(t) for _, t in rows], device=log_probs.device),
            blank=log_probs.shape[-1] - 1,
            zero_infinity=True,
        )

    def _examples(
        self,
        wav: Tensor,
        lengths: list[int],
        texts: Sequence[str | None],
        no_speech: Tensor,
        timed: Tensor,
        leads: list[int] | None = None,
    ) -> list[tuple[Tensor, list[int]]]:
        """(audio `(T,)`, token sequence) per example; items 2p and 2p+1 may become one.
        `leads`: samples of quiet before each item's speech (`add_lead`)."""
        leads = leads or [0] * len(lengths)
        b, data, tok = len(lengths), self.data, self.tokenizer
        pairs = (b + 1) // 2
        pack = (torch.rand(pairs) < data.pack_prob).tolist()
        cut = (torch.rand(pairs) < data.cut_prob).tolist()
        gap_draw, cut_draw = torch.rand(pairs).tolist(), torch.rand(pairs).tolist()
        clips = [wav[i, :n] for i, n in enumerate(lengths)]
        texts = [t or "" for t in texts]
        examples = []
        i = 0
        while i < b:
            p = i // 2
            if i % 2 == 0 and i + 1 < b and pack[p] and not (no_speech[i] or no_speech[i + 1]):
                low, high = data.gap_seconds
                gap = int((low + (high - low) * gap_draw[p]) * SAMPLE_RATE)
                if lengths[i] + gap + lengths[i + 1] <= data.max_seconds * SAMPLE_RATE:
                    keep = max(1, int(cut_draw[p] * lengths[i + 1])) if cut[p] else None
                    examples.append(
                        packed_example(
                            tok,
                            clips[i],
                            texts[i],
                            clips[i + 1],
                            texts[i + 1],
                            gap,
                            keep,
                            lead_a=leads[i],
                            lead_b=leads[i + 1],
                        )
                    )
                    i += 2
                    continue
            seconds = lengths[i] / SAMPLE_RATE
            seq = target_sequence(
                tok,
                texts[i],
                seconds,
                timed=bool(timed[i]),
                no_speech=bool(no_speech[i]),
                start=leads[i] / SAMPLE_RATE,
            )
            examples.append((clips[i], seq))
            i += 1
        return examples

    def _warp(self, mel: Tensor) -> Tensor:
        """`warp_vocal_tract` on a `data.warp_prob` share of the examples (noise included:
        warped noise is still noise)."""
        if self.data.warp_prob == 0:  # off: no draw, so older configs see the same numbers
            return mel
        b = mel.shape[0]
        low, high = self.data.warp
        rows = torch.rand(b) < self.data.warp_prob
        factors = torch.where(rows, low + (high - low) * torch.rand(b), torch.ones(b))
        return warp_vocal_tract(mel, factors) if bool(rows.any()) else mel

    def _replace_with_noise(self, wav: Tensor, rows: Tensor) -> Tensor:
        if not bool(rows.any()):
            return wav
        noise = non_speech(int(rows.sum()), wav.shape[1], SAMPLE_RATE, self.data.noise_dbfs)
        wav = wav.clone()
        wav[rows.to(wav.device)] = noise.to(wav.device, wav.dtype)
        return wav
