"""Every shipped training config is accepted by its command's checks: configs meant for a GPU
(codec_gan, valle_gpu, the lease configs) never run in CI, so a misspelt key would only
show once a lent GPU is already paid for."""

import argparse
from pathlib import Path

import pytest

from vocalis.commands.train import (
    ASR_SECTIONS,
    SECTIONS,
    TokenizerConfig,
    _load_run_config,
    build,
    data_section,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.json"))


def _args(path: Path) -> argparse.Namespace:
    return argparse.Namespace(config=str(path), out=None, steps=None, minutes=None, manifest=None)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_accepted(path):
    kind = path.stem.split("_")[0]
    if kind == "codec":
        from codec.model import CodecDims
        from training.codec_losses import CodecLossWeights
        from training.codec_task import CodecParts, CropConfig
        from training.discriminators import DiscriminatorDims

        config, name, train = _load_run_config(_args(path), SECTIONS)
        dims = build(CodecDims, config.get("codec", {}), name)
        build(DiscriminatorDims, config.get("discriminator", {}), name)
        build(CodecLossWeights, config.get("loss", {}), name)
        build(CodecParts, config.get("parts", {}), name)
        specs, data = data_section(config, _args(path), name)
        build(CropConfig, data, name, sample_rate=dims.sample_rate, seed=train.seed)
    elif kind == "asr":
        from asr.model import ASRDims
        from training.asr_task import ASRDataConfig, ASRLossConfig, SpecAugment

        config, name, train = _load_run_config(_args(path), ASR_SECTIONS)
        build(ASRDims, config.get("model", {}), name, n_vocab=0, tokenizer="")
        build(TokenizerConfig, config.get("tokenizer", {}), name)
        build(SpecAugment, config.get("augment", {}), name)
        build(ASRLossConfig, config.get("loss", {}), name)
        specs, data = data_section(config, _args(path), name)
        build(ASRDataConfig, data, name)
    elif kind == "valle":
        from training.valle_task import VALLEDataConfig
        from tts.valle import VALLEDims
        from vocalis.commands.train_tts import VALLE_SECTIONS

        config, name, train = _load_run_config(_args(path), VALLE_SECTIONS)
        build(VALLEDims, config.get("model", {}), name, n_phonemes=100)
        specs, data = data_section(config, _args(path), name)
        data.pop("codec", None)
        build(VALLEDataConfig, data, name)
    else:
        pytest.fail(f"{path.name}: no command takes configs named {kind}_*")
    assert specs and train.max_steps > 0 and config.get("notes")
