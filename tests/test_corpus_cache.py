"""Feature cache: hit, miss, invalidation on source or encoder change; dataset reads it."""

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from corpus.cache import FeatureCache, FeatureEncoder, ResampleEncoder
from corpus.dataset import ManifestDataset
from corpus.manifest import Utterance


@dataclass(frozen=True)
class EnergyQuantiser:
    """A stand-in for the codec: frame energies quantised to 16 levels (int64 tokens)."""

    hop: int = 160
    levels: int = 16
    name: str = "energy"
    input_rate: int | None = 16000

    @property
    def version_hash(self) -> str:
        return hashlib.sha256(f"{self.hop}:{self.levels}".encode()).hexdigest()[:16]

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        frames = wav[0, : wav.shape[-1] // self.hop * self.hop].reshape(-1, self.hop)  # (F, hop)
        energy = frames.pow(2).mean(dim=1).sqrt()  # (F,)
        return (energy * (self.levels - 1) / 0.5).round().clamp(0, self.levels - 1).long()


def _utts(tmp_path, n=4):
    out = []
    for i in range(n):
        path = tmp_path / "src" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        t = np.arange(8000 + 800 * i) / 8000
        sf.write(str(path), (0.1 * (i + 1) * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
        out.append(Utterance(f"u{i}", str(path), len(t) / 8000, 8000, None, "s", "t"))
    return out


def test_hit_miss_and_invalidation(tmp_path):
    utts = _utts(tmp_path)
    assert isinstance(EnergyQuantiser(), FeatureEncoder)
    cache = FeatureCache(tmp_path / "cache", EnergyQuantiser(), shard_seconds=2.5)
    first = cache.build(utts)
    assert (first.encoded, first.reused, first.failed) == (4, 0, 0) and first.shards >= 2
    tokens = cache.get(utts[1])
    assert tokens.dtype == torch.int64 and tokens.shape == (110,)

    again = FeatureCache(tmp_path / "cache", EnergyQuantiser(), shard_seconds=2.5)
    assert again.build(utts).reused == 4  # read back from the index: all hits
    assert torch.equal(again.get(utts[1]), tokens)

    # source changed: that entry is stale (get -> None) and rebuilt; others reused
    sf.write(utts[2].audio, np.zeros(4000, dtype=np.float32) + 0.2, 8000)
    os.utime(utts[2].audio, ns=(1, 10**18))
    assert again.get(utts[2]) is None
    result = again.build(utts)
    assert (result.encoded, result.reused) == (1, 3) and result.entries == 4

    # encoder changed: everything re-encoded, old shards removed
    changed = FeatureCache(tmp_path / "cache", EnergyQuantiser(levels=8), shard_seconds=100)
    result = changed.build(utts)
    assert (result.encoded, result.reused, result.shards) == (4, 0, 1)
    assert len(list((tmp_path / "cache").glob("shard-*.safetensors"))) == 1
    assert int(changed.get(utts[3]).max()) <= 7


def test_unreadable_source_is_reported(tmp_path):
    utts = _utts(tmp_path, 2)
    open(utts[0].audio, "wb").close()
    missing = Utterance("gone", str(tmp_path / "gone.wav"), 1.0, 8000, None, "s", "t")
    result = FeatureCache(tmp_path / "c", EnergyQuantiser()).build(utts + [missing])
    assert (result.encoded, result.failed) == (1, 2)


def test_resample_cache_feeds_the_dataset(tmp_path):
    utts = _utts(tmp_path, 3)
    cache = FeatureCache(tmp_path / "pcm", ResampleEncoder(16000))
    cache.build(utts)
    cached = ManifestDataset(utts, 16000, cache=cache)
    direct = ManifestDataset(utts, 16000)
    for i in range(3):
        a, b = cached[i].wav, direct[i].wav
        assert a.shape == b.shape == (int(utts[i].duration * 16000),)
        assert (a - b).abs().max() < 1e-3
    cropped = ManifestDataset(utts, 16000, max_seconds=0.5, random_crop=False)
    assert cropped[2].wav.shape == (8000,) and cropped.durations == [0.5, 0.5, 0.5]


def _tiny_codec_checkpoint(path, seed):
    from codec.model import Codec, CodecDims, save_codec

    torch.manual_seed(seed)
    dims = CodecDims(
        sample_rate=8000, strides=(2, 4), encoder_channels=(2, 4, 8), decoder_channels=(8, 4, 2),
        latent_dim=8, n_codebooks=3, codebook_size=16, codebook_dim=4, dilations=(1,),
    )  # fmt: skip
    return save_codec(path, Codec(dims).eval())


def test_codec_token_cache_matches_the_codec_and_rebuilds_for_new_weights(tmp_path, capsys):
    from codec.model import load_codec
    from core.audio import load_audio
    from corpus.cache import CodecEncoder
    from corpus.manifest import write_manifest
    from vocalis.cli import main

    utts = _utts(tmp_path, 3)
    first = _tiny_codec_checkpoint(tmp_path / "a" / "codec", seed=0)
    cache = FeatureCache(tmp_path / "tok", CodecEncoder.from_checkpoint(first, n_codebooks=2))
    assert cache.build(utts).encoded == 3
    model = load_codec(first)
    wav, _ = load_audio(utts[1].audio, 8000)
    with torch.inference_mode():
        expected = model.encode(wav[None], 2)[0]  # (2, F)
    tokens = cache.get(utts[1])
    assert tokens.dtype == torch.int16 and torch.equal(tokens.long(), expected)

    # Other weights (same dims): a new encoder identity, so every entry is re-encoded.
    second = _tiny_codec_checkpoint(tmp_path / "b" / "codec", seed=1)
    again = FeatureCache(tmp_path / "tok", CodecEncoder.from_checkpoint(second, n_codebooks=2))
    assert again.build(utts).encoded == 3

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, utts)
    out = tmp_path / "cli"
    assert main(["data", "cache", str(manifest), "--codec", str(first), "-o", str(out)]) == 0
    assert "3 encoded" in capsys.readouterr().out
    bad = ["data", "cache", str(manifest), "--codec", str(first), "--codebooks", "9"]
    assert main([*bad, "-o", str(out)]) == 2
    assert "--codebooks" in capsys.readouterr().err
