"""Codec training as a `TrainTask`: the codec (generator) and its discriminators, and the
fixed-length crop dataset they train on.

Step order. The trainer updates parts in the order `parts()` gives them, calling `loss` once
per part per micro-batch. The codec comes first (the trainer exports and averages the first
part) and runs the one generator forward of the batch: its output goes into the mel,
adversarial and feature-matching losses against the discriminators as they stand, and a
detached copy is queued. The discriminator step then takes that copy (matched to its batch)
instead of running the codec again, and learns real vs. that fake. So each batch costs one
codec forward and backward, two discriminator forwards in the generator step (real under
no_grad) and one (real and fake concatenated) with its backward in the discriminator step.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from core.audio import load_audio, resample
from corpus.manifest import Utterance
from training.codec_losses import (
    CodecLossWeights,
    balanced_loss,
    compressed_spectrum_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multiscale_mel_loss,
    si_sdr_loss,
    spectral_convergence_loss,
)
from training.discriminators import Discriminators
from training.sampler import RandomBatchSampler
from training.trainer import LossOutput, TrainTask, check_freeze

# ---------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class CropConfig:
    """Fixed-length random crops with speed, gain and noise augmentation."""

    sample_rate: int = 24000
    crop_seconds: float = 1.0
    gain_db: float = 6.0  # uniform random gain in [-gain_db, +gain_db]
    peak: float = 0.99  # lower the gain if a sample would exceed this
    noise_prob: float = 0.3  # chance of adding white noise to a crop
    noise_dbfs: tuple[float, float] = (-70.0, -50.0)  # noise RMS range, dB full scale
    # each crop played at a factor drawn in this range (in twentieths): pitch and formants
    # move together, as if another speaker had read it
    speed: tuple[float, float] = (1.0, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.crop_seconds <= 0:
            raise ValueError("sample_rate and crop_seconds must be positive")
        if self.gain_db < 0 or not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError("gain_db must be >= 0 and noise_prob in [0, 1]")
        if self.noise_dbfs[0] > self.noise_dbfs[1]:
            raise ValueError(f"noise_dbfs must be (low, high), got {self.noise_dbfs}")
        if not 0.5 <= self.speed[0] <= self.speed[1] <= 2.0:
            raise ValueError(f"speed must be a range within [0.5, 2], got {self.speed}")

    @property
    def crop_samples(self) -> int:
        return int(round(self.crop_seconds * self.sample_rate))


class CropDataset(Dataset):
    """One random crop per utterance per epoch, drawn from (seed, epoch, index).

    Items are addressed as `(index, epoch)` (see `EpochBatchSampler`), so the speed, crop,
    gain and noise of an item depend only on those and the seed: a resumed run, or a run with
    DataLoader workers, sees exactly the same audio. A plain integer index means epoch 0.
    Clips shorter than the crop are zero-padded at the end. Each item is (1, T) float32.
    """

    def __init__(self, utterances: Sequence[Utterance], config: CropConfig):
        if not utterances:
            raise ValueError("no utterances to train on")
        self.utterances = list(utterances)
        self.config = config

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch, index])
        wav, rate = load_audio(self.utterances[index].audio)  # (1, T_src) at the file's rate
        steps = 20  # the speed in twentieths (short resampling filters)
        if tuple(cfg.speed) != (1.0, 1.0):  # off: no draw, so older configs see the same crops
            steps = round(rng.uniform(*cfg.speed) * 20)
        length = math.ceil(cfg.crop_samples * steps / 20)
        crop = _random_crop(wav, rate, cfg.sample_rate, length, rng)  # (1, length)
        if steps != 20:  # heard at steps/20 times the speed
            crop = resample(crop, steps, 20)[:, : cfg.crop_samples]
            crop = torch.nn.functional.pad(crop, (0, cfg.crop_samples - crop.shape[-1]))
        gain = 10.0 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20.0)
        peak = float(crop.abs().max())
        if peak * gain > cfg.peak:
            gain = cfg.peak / max(peak, 1e-9)
        crop = crop * gain
        if rng.random() < cfg.noise_prob:
            rms = 10.0 ** (rng.uniform(*cfg.noise_dbfs) / 20.0)
            noise = rng.standard_normal(crop.shape[-1]).astype(np.float32) * rms
            crop = (crop + torch.from_numpy(noise)).clamp(-1.0, 1.0)
        return crop  # (1, T)


def _random_crop(
    wav: torch.Tensor, rate: int, target_rate: int, length: int, rng: np.random.Generator
) -> torch.Tensor:
    """A `length`-sample crop at `target_rate` of (1, T_src) audio at `rate`: cut at the
    source rate (a little wider, for the resampler's edges), then resample and trim."""
    src_length = math.ceil(length * rate / target_rate)
    margin = 64 if rate != target_rate else 0
    total = wav.shape[-1]
    if total > src_length:
        start = int(rng.integers(0, total - src_length + 1))
        lo, hi = max(0, start - margin), min(total, start + src_length + margin)
        piece = resample(wav[:, lo:hi], rate, target_rate)  # (1, ~length + 2 margin)
        offset = int(round((start - lo) * target_rate / rate))
        piece = piece[:, offset : offset + length]
    else:
        piece = resample(wav, rate, target_rate)[:, :length]
    if piece.shape[-1] < length:
        piece = torch.nn.functional.pad(piece, (0, length - piece.shape[-1]))
    return piece.contiguous()


class EpochBatchSampler:
    """RandomBatchSampler whose batches carry the epoch: [(index, epoch), ...]."""

    def __init__(self, base: RandomBatchSampler):
        self.base = base

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.base:
            yield [(i, self.base.epoch) for i in batch]


def collate_crops(items: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(items))  # (B, 1, T)


def crop_sampler_factory(num_items: int, batch_size: int, seed: int):
    """A `Trainer` sampler factory for a CropDataset of `num_items`."""

    def factory(rank: int, world_size: int) -> EpochBatchSampler:
        base = RandomBatchSampler(
            num_items, batch_size, seed=seed, rank=rank, world_size=world_size
        )
        return EpochBatchSampler(base)

    return factory


# ---------------------------------------------------------------------------------------
# The task

CODEC_PARTS = ("encoder", "quantizer", "decoder")


@dataclass(frozen=True)
class CodecParts:
    """Which parts of the codec stay as `--init` gave them.

    Freezing the encoder and the quantizer trains a new decoder for the same codes: every
    token already made with the codec (the TTS's training data, `.vcd` files) still means
    the same thing.
    """

    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_freeze(self.freeze, CODEC_PARTS)


def freeze_parts(codec: nn.Module, parts: Sequence[str]) -> None:
    """Stop gradients to the named parts; a frozen quantizer also keeps its codebooks
    (no dead-code replacement) while quantizer dropout goes on."""
    for name in parts:
        module = getattr(codec, name)
        for p in module.parameters():
            p.requires_grad_(False)
        if name == "quantizer":
            for stage in module.stages:
                stage.dead_code_steps = 0


class CodecTask(TrainTask):
    """Trains a codec (any module whose forward returns a CodecOutput) against `Discriminators`.

    Parts, in update order: "generator" (the codec; exported) then "discriminator". With
    the adversarial and feature-matching weights both 0 the discriminators take no part
    (reconstruction-only training, a cheap warm start on a CPU); a later adversarial run
    can start from its weights (`vocalis train codec --init`).
    """

    kind = "codec"

    def __init__(
        self,
        codec: nn.Module,
        dims: Any,
        discriminators: Discriminators,
        weights: CodecLossWeights,
        *,
        same_codes_as: Sequence[str] = (),
    ):
        self.codec, self.dims, self.discriminators, self.weights = (
            codec,
            dims,
            discriminators,
            weights,
        )
        self.mel_configs = weights.mel_configs(codec.sample_rate)
        # Ids of the codecs whose encoder and codebooks this one keeps frozen (see
        # codec.model.same_codes); written into the exported model's training record.
        self.same_codes_as = sorted(same_codes_as)
        # (real, detached fake) per micro-batch, from the generator step to the discriminator's
        self._fakes: collections.deque[tuple[torch.Tensor, torch.Tensor]] = collections.deque()

    @property
    def adversarial(self) -> bool:
        return self.weights.adversarial > 0 or self.weights.feature_matching > 0

    def parts(self) -> dict[str, nn.Module]:
        if not self.adversarial:
            return {"generator": self.codec}
        return {"generator": self.codec, "discriminator": self.discriminators}

    def export(self) -> tuple[nn.Module, Any]:
        return self.codec, self.dims

    def export_notes(self) -> dict[str, Any]:
        return {"same_codes_as": self.same_codes_as} if self.same_codes_as else {}

    def loss(self, part: str, batch: torch.Tensor, modules: dict[str, nn.Module]) -> LossOutput:
        wav = batch  # (B, 1, T)
        if part == "generator":
            return self._generator_loss(wav, modules)
        if part == "discriminator":
            return self._discriminator_loss(wav, modules)
        raise ValueError(f"unknown part {part!r}")

    def _generator_loss(self, wav: torch.Tensor, modules: dict[str, nn.Module]) -> LossOutput:
        w = self.weights
        out = modules["generator"](wav)  # CodecOutput; out.wav (B, 1, T)
        fake = out.wav
        terms = {"mel": multiscale_mel_loss(fake, wav, self.mel_configs, floor=w.mel_floor)}
        if w.waveform > 0:
            terms["waveform"] = (fake - wav).abs().mean()
        if w.phase > 0:
            terms["phase"] = compressed_spectrum_loss(
                fake,
                wav,
                w.phase_n_ffts,
                power=w.phase_power,
                max_hz=w.phase_max_hz,
                sample_rate=self.codec.sample_rate,
            )
        if w.si_sdr > 0:
            terms["si_sdr"] = si_sdr_loss(fake, wav)
        if w.spectral > 0:
            terms["spectral"] = spectral_convergence_loss(fake, wav, w.spectral_n_ffts)
        if self.adversarial:
            self._fakes.append((wav.detach(), fake.detach()))
            disc = _unwrap(modules["discriminator"])  # updated in its own step: no DDP sync
            with _frozen(disc):
                with torch.no_grad():
                    real_out = disc(wav)
                fake_out = disc(fake)
            terms["adversarial"] = generator_adversarial_loss(fake_out.logits, w.adversarial_kind)
            terms["feature_matching"] = feature_matching_loss(real_out.features, fake_out.features)
        weights = {
            "mel": w.mel,
            "waveform": w.waveform,
            "phase": w.phase,
            "si_sdr": w.si_sdr,
            "spectral": w.spectral,
            "adversarial": w.adversarial,
            "feature_matching": w.feature_matching,
        }
        if w.balancer:
            audio_loss = balanced_loss(terms, weights, fake, norm=w.balancer_norm)
        else:
            audio_loss = sum(weights[k] * v for k, v in terms.items())
        latent_loss = w.commitment * out.commitment_loss + w.codebook * out.codebook_loss
        metrics = {k: float(v.detach()) for k, v in terms.items()}
        metrics["commitment"] = float(out.commitment_loss.detach())
        metrics["codebook"] = float(out.codebook_loss.detach())
        metrics["n_codebooks"] = float(torch.as_tensor(out.n_codebooks, dtype=torch.float).mean())
        return LossOutput(audio_loss + latent_loss, metrics, items=wav.shape[0])

    def _discriminator_loss(self, wav: torch.Tensor, modules: dict[str, nn.Module]) -> LossOutput:
        fake = self._take_fake(wav, modules)  # (B, 1, T), detached
        both = modules["discriminator"](torch.cat([wav, fake]))  # one forward for DDP
        real_out, fake_out = both.split((wav.shape[0], fake.shape[0]))
        loss = discriminator_loss(real_out.logits, fake_out.logits, self.weights.adversarial_kind)
        metrics = {
            "real_logit": float(sum(x.detach().mean() for x in real_out.logits))
            / len(real_out.logits),
            "fake_logit": float(sum(x.detach().mean() for x in fake_out.logits))
            / len(fake_out.logits),
        }
        return LossOutput(loss, metrics, items=wav.shape[0])

    def _take_fake(self, wav: torch.Tensor, modules: dict[str, nn.Module]) -> torch.Tensor:
        """The generator step's output for this batch, or a fresh one if none was queued
        (a discriminator-only call, or a queue left behind by an interrupted step); a fresh
        one is made in eval mode, so the codec's training-time state (dead-code counters)
        is not advanced twice for one batch."""
        while self._fakes:
            real, fake = self._fakes.popleft()
            if real.shape == wav.shape and torch.equal(real, wav):
                return fake
        generator = modules["generator"]
        was_training = generator.training
        generator.eval()
        try:
            with torch.no_grad():
                return generator(wav).wav.detach()
        finally:
            generator.train(was_training)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Build the graph without weight gradients for `module` (gradients still flow through
    it to its input); restores each parameter's flag afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
