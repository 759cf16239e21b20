"""`vocalis train valle`: train the VALL-E TTS (AR + NAR) on codec tokens from a JSON config.

Sections (unknown keys are refused, naming the key):

    "train"  training.trainer.TrainConfig (out_dir defaults to runs/<config name>)
    "model"  tts.valle.VALLEDims: n_codebooks, dim, heads, kv_heads, ar_depth, nar_depth,
             dropout, attn_dropout, ar_positions (the vocabulary and the codec's figures
             are filled in here; --init may come with another ar_positions)
    "parts"  training.valle_task.VALLEParts: {"freeze": ["nar"]} trains the AR alone
             (the frozen model comes from --init and is exported unchanged)
    "data"   training.valle_task.VALLEDataConfig plus "manifests" (as for the other
             models; utterances of split "train" with a transcript) and "codec" (the
             codec checkpoint whose tokens the TTS speaks in; default the shipped one)
    "notes"  free text, ignored
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path

from vocalis.commands.train import (
    _add_run_arguments,
    _export_or_fit,
    _load_run_config,
    _millions,
    build,
    data_section,
    parts_section,
    with_training_settings,
)

VALLE_SECTIONS = ("train", "model", "parts", "data", "notes")


def register_valle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "valle",
        help="train the VALL-E text-to-speech (AR + NAR) on codec tokens",
        description="Train VALL-E. Codec tokens come from the data cache (built here when "
        "missing); phonemes are kept in the output folder. Resumes from the newest checkpoint "
        "in the output folder.",
    )
    _add_run_arguments(p, "start from this VALL-E checkpoint (same dims and codec required)")
    p.set_defaults(handler=run_valle)


def run_valle(args: argparse.Namespace) -> int:
    import torch

    from codec.model import SHIPPED_CHECKPOINT as SHIPPED_CODEC
    from codec.model import find_codec
    from core.checkpoint import load_weights
    from core.errors import VocalisError
    from core.io import write_json_atomic
    from corpus.cache import CodecEncoder
    from training.sampler import bucket_sampler_factory
    from training.trainer import Trainer
    from training.valle_data import phonemize_transcripts, prepare_examples
    from training.valle_task import (
        PromptedDataset,
        VALLEDataConfig,
        VALLEParts,
        VALLETask,
        collate_prompted,
    )
    from tts.frontend import PhonemeVocab
    from tts.valle import VALLE, VALLEDims, join_phonemes, load_valle
    from vocalis.commands.data import default_data_root

    config, name, train = _load_run_config(args, VALLE_SECTIONS)
    model_values = config.get("model", {})
    specs, data_values = data_section(config, args, name)
    codec_path = data_values.pop("codec", None)
    data = build(VALLEDataConfig, data_values, f"{name}: data")
    parts = parts_section(VALLEParts, config, args, name)

    start = load_valle(args.init) if args.init is not None else None
    if codec_path is None:  # the init's codec when one is shipped, else the shipped codec
        found = find_codec(start.dims.codec_sha256) if start is not None else None
        codec_path = found or SHIPPED_CODEC
    encoder = CodecEncoder.from_checkpoint(Path(codec_path))
    codec = encoder.model
    codec_id = encoder.weights_hash
    if start is not None and encoder.speaks(start.dims.codec_sha256):
        # A codec that kept the init's codes (a new decoder) speaks its tokens: the model
        # goes on naming the codec it was trained with, so its file stays comparable.
        codec_id = start.dims.codec_sha256
    vocab = PhonemeVocab()
    join = functools.partial(join_phonemes, bos=vocab.bos_id, eos=vocab.eos_id)
    filled = {  # what the vocabulary and the codec decide, never the config
        "n_phonemes": len(vocab),
        "phoneme_pad": vocab.pad_id,
        "phoneme_vocab": vocab.to_json(),
        "cardinality": codec.cardinality,
        "frame_rate": float(codec.frame_rate),
        "sample_rate": codec.sample_rate,
        "codec_sha256": codec_id,
    }
    clash = sorted(set(model_values) & set(filled))
    if clash:
        raise VocalisError(
            f"{name}: model.{clash[0]} comes from the data and codec, not the config"
        )
    dims = build(VALLEDims, model_values, f"{name}: model", **filled)
    if dims.n_codebooks > codec.num_codebooks:
        raise VocalisError(
            f"{name}: model.n_codebooks={dims.n_codebooks} but the codec has {codec.num_codebooks}"
        )
    out_dir = Path(train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples, counts = prepare_examples(
        [(s.path, s.repeat) for s in specs],
        encoder,
        default_data_root(),
        out_dir / "phonemes.json",
        phonemize_transcripts,
        vocab,
        dims.n_codebooks,
    )
    dataset = PromptedDataset(examples, dims.frame_rate, data, join)
    if len(dataset) == 0:
        raise VocalisError(
            "no training targets: utterances need a transcript and another utterance of the "
            f"same speaker between {data.prompt_seconds[0]:g} and {data.prompt_seconds[1]:g} s"
        )

    torch.manual_seed(train.seed)  # the same initial weights for the same config
    model = VALLE(dims)
    if start is not None:
        # The AR's position layout is not in its weights: an init may start a new layout.
        if with_training_settings(start.dims, dims, ar_positions=dims.ar_positions) != dims:
            raise VocalisError(f"--init {args.init}: its dims, vocabulary or codec differ")
        load_weights(model, start.state_dict(), source=str(args.init))
    write_json_atomic(
        out_dir / "config.json",
        {
            "train": dataclasses.asdict(train),
            "model": dataclasses.asdict(dataclasses.replace(dims, phoneme_vocab="")),
            "parts": dataclasses.asdict(parts),
            "data": {
                **dataclasses.asdict(data),
                "manifests": [vars(s) for s in specs],
                "codec": str(codec_path),
            },
        },
    )
    hours = sum(dataset.durations) / 3600
    frozen = f" ({' and '.join(p.upper() for p in parts.freeze)} frozen)" if parts.freeze else ""
    print(
        f"training valle: AR {_millions(model.ar)} M + NAR {_millions(model.nar)} M parameters, "
        f"{len(dataset)} targets ({hours:.2f} h) from {counts['utterances']} utterances "
        f"({counts['no_tokens']} without tokens, {counts['no_phonemes']} without phonemes), "
        f"{dims.n_codebooks} codebooks{frozen} -> {out_dir}"
    )
    trainer = Trainer(
        VALLETask(model, parts.freeze),
        train,
        dataset,
        collate_fn=functools.partial(collate_prompted, join=join),
        sampler_factory=bucket_sampler_factory(
            dataset.durations,
            batch_seconds=data.batch_seconds,
            batch_size=train.batch_size,
            seed=train.seed,
        ),
    )
    result = _export_or_fit(trainer, args)
    if result is None:
        return 0
    m = result.metrics
    summary = "".join(
        f", {part.upper()} loss {m[f'{part}/loss']:.3f} (accuracy {m[f'{part}/accuracy']:.3f})"
        for part in ("ar", "nar")
        if f"{part}/loss" in m
    )
    print(f"done: step {result.step} in {result.seconds:.1f} s{summary}; model {result.model_path}")
    return 0
