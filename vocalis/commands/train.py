"""`vocalis train codec|asr|valle|...`: train the codec, the recogniser or the TTS from a JSON config.

This module is the only reader of training config files. A config has these sections,
each mapped onto a frozen dataclass (unknown keys are refused, naming the key):

    "train"          training.trainer.TrainConfig (out_dir defaults to runs/<config name>)
    "codec"          codec.model.CodecDims
    "parts"          training.codec_task.CodecParts: parts kept frozen as --init gave them
    "discriminator"  training.discriminators.DiscriminatorDims
    "loss"           training.codec_losses.CodecLossWeights
    "data"           training.codec_task.CropConfig (its sample_rate is the codec's, its
                     seed the run's) plus "manifests": a list of paths, or of
                     {"path": ..., "repeat": N} to weight a small corpus up. Relative paths
                     are under $VOCALIS_DATA (default ~/.cache/vocalis/corpus), except
                     ones starting ./ or ../: those are relative to the config file
                     (manifests shipped in the repository, corpus/labels/). Only
                     utterances of split "train" are used.
    "notes"          free text, ignored

An ASR config (`vocalis train asr`) has the sections of `ASR_SECTIONS`: "train" as above,
"model" (asr.model.ASRDims, less the tokenizer), "tokenizer" (`TokenizerConfig`), "data"
(training.asr_task.ASRDataConfig plus "manifests", as above; utterances of split "train"
with a transcript), "augment" (training.asr_task.SpecAugment), "loss"
(training.asr_task.ASRLossConfig: the CTC weight) and "notes".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

SECTIONS = ("train", "codec", "parts", "discriminator", "loss", "data", "notes")
ASR_SECTIONS = ("train", "model", "tokenizer", "data", "augment", "loss", "notes")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("train", help="train a model from a JSON config")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(title="train commands", metavar="COMMAND")

    codec = sub.add_parser(
        "codec",
        help="train the neural codec (GAN: codec + discriminators)",
        description="Train the codec; resumes from the newest checkpoint in the output folder.",
    )
    _add_run_arguments(codec, "start the codec from this model checkpoint; same dims required")
    codec.set_defaults(handler=run_codec)
    from vocalis.commands.codec_prior import register_prior

    register_prior(sub)
    _register_asr(sub)
    from vocalis.commands.train_tts import register_valle  # it builds on this module

    register_valle(sub)
    _register_average(sub)
    from vocalis.commands.train_lm import register_asr_lm

    register_asr_lm(sub)


def _add_run_arguments(p: argparse.ArgumentParser, init_help: str) -> None:
    """The arguments every `vocalis train MODEL` command takes."""
    p.add_argument("--config", required=True, help="JSON config (training/configs/*.json)")
    p.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")
    p.add_argument("--steps", type=int, default=None, help="overrides train.max_steps")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training time budget (overrides train.max_seconds): stop, checkpoint and export "
        "once the run has trained this long; the learning rate decays over the budget",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="start afresh even if checkpoints exist"
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="write model.safetensors from the newest checkpoint in the output folder, no training",
    )
    p.add_argument("--init", default=None, help=init_help)
    p.add_argument(
        "--manifest",
        action="append",
        default=None,
        help="training manifest (repeatable; replaces the config's data.manifests)",
    )


# ---------------------------------------------------------------------------------------
# Config -> dataclasses


def read_config(path: str | Path, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    from core.errors import VocalisError

    path = Path(path)
    if not path.is_file():
        raise VocalisError(f"no such config: '{path}'")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise VocalisError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(config, dict):
        raise VocalisError(f"{path}: the config must be a JSON object")
    unknown = sorted(set(config) - set(sections))
    if unknown:
        raise VocalisError(
            f"{path}: unknown config section '{unknown[0]}' (known: {', '.join(sections)})"
        )
    for name in sections[:-1]:
        if not isinstance(config.get(name, {}), dict):
            raise VocalisError(f"{path}: section '{name}' must be a JSON object")
    return config


def build(cls: type, values: dict[str, Any], where: str, **fixed: Any) -> Any:
    """`cls(**values, **fixed)`, checking names and simple types; errors name `where.key`."""
    from core.errors import VocalisError

    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    kwargs = dict(fixed)
    for key, value in values.items():
        if key not in known:
            raise VocalisError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise VocalisError(f"{where}: {' '.join(str(e).split())}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    from core.errors import VocalisError

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if origin is tuple:
        if not isinstance(value, list):
            raise VocalisError(f"{where}: expected a list, got {json.dumps(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if args and len(args) != len(value):
            raise VocalisError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value)) if args else tuple(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, True)
    if not ok:
        raise VocalisError(f"{where}: expected {hint.__name__}, got {json.dumps(value)}")
    return float(value) if hint is float else value


def _load_run_config(args: argparse.Namespace, sections: tuple[str, ...]):
    """(config dict, config name, TrainConfig) with --out and --steps applied; out_dir
    defaults to runs/<config name>."""
    from core.errors import VocalisError
    from training.trainer import TrainConfig

    path = Path(args.config)
    config = read_config(path, sections)
    name = path.stem
    train_values = dict(config.get("train", {}))
    train_values.setdefault("out_dir", str(Path("runs") / name))
    if args.out is not None:
        train_values["out_dir"] = args.out
    if args.steps is not None:
        if args.steps <= 0:
            raise VocalisError(f"--steps must be positive, got {args.steps}")
        train_values["max_steps"] = args.steps
    if args.minutes is not None:
        if args.minutes <= 0:
            raise VocalisError(f"--minutes must be positive, got {args.minutes:g}")
        train_values["max_seconds"] = args.minutes * 60.0
    return config, name, build(TrainConfig, train_values, f"{name}: train")


def parts_section(cls: type, config: dict[str, Any], args: argparse.Namespace, name: str):
    """The config's "parts" section as `cls`; frozen parts keep --init's weights, so
    freezing without --init is refused."""
    from core.errors import VocalisError

    parts = build(cls, config.get("parts", {}), f"{name}: parts")
    if parts.freeze and args.init is None:
        raise VocalisError(f"{name}: parts.freeze needs --init (the weights to keep)")
    return parts


def with_training_settings(start: Any, dims: Any, **fixed: Any) -> Any:
    """--init's dims with the config's dropout (a training setting, not part of the
    architecture: the config's wins) and `fixed`, to compare with the config's dims."""
    return dataclasses.replace(start, dropout=dims.dropout, attn_dropout=dims.attn_dropout, **fixed)


@dataclasses.dataclass(frozen=True)
class ManifestSpec:
    path: str
    repeat: int = 1


def data_section(
    config: dict[str, Any], args: argparse.Namespace, name: str
) -> tuple[list[ManifestSpec], dict[str, Any]]:
    """The config's "data" section split into its manifests (--manifest replaces them) and
    the remaining values, for the model's data dataclass."""
    values = dict(config.get("data", {}))
    # a command-line path starting ./ means the working directory, a config's its folder
    config_dir = None if args.manifest else Path(args.config).resolve().parent
    if args.manifest:
        values["manifests"] = list(args.manifest)
    specs = manifest_specs(values, f"{name}: data.manifests", config_dir)
    values.pop("manifests", None)
    return specs, values


def manifest_specs(
    data: dict[str, Any], where: str, config_dir: Path | None = None
) -> list[ManifestSpec]:
    """The manifests of a data section, as absolute paths. A relative path is under the
    data root ($VOCALIS_DATA), except one that starts with ./ or ../, which is relative to
    `config_dir` (the config file's folder: a manifest shipped in the repository) or,
    without one, to the working directory."""
    from core.errors import VocalisError
    from vocalis.commands.data import default_data_root

    entries = data.get("manifests", [])
    if not isinstance(entries, list) or not entries:
        raise VocalisError(f"{where}: 'manifests' must be a non-empty list (or use --manifest)")
    specs = []
    for i, entry in enumerate(entries):
        entry = {"path": entry} if isinstance(entry, str) else entry
        spec = build(ManifestSpec, entry if isinstance(entry, dict) else {}, f"{where}[{i}]")
        if spec.repeat < 1:
            raise VocalisError(f"{where}[{i}]: repeat must be >= 1")
        path = Path(spec.path).expanduser()
        if spec.path.startswith(("./", "../")):
            path = (config_dir or Path.cwd()) / path
        elif not path.is_absolute():
            path = default_data_root() / path
        specs.append(ManifestSpec(str(path), spec.repeat))
    return specs


# ---------------------------------------------------------------------------------------
# The command


def _same_shapes(a: Any, b: Any) -> bool:
    """Whether two modules hold tensors of the same names and shapes."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def run_codec(args: argparse.Namespace) -> int:
    import torch

    from codec.model import Codec, CodecDims
    from core.errors import VocalisError
    from core.io import write_json_atomic
    from corpus.manifest import read_manifest
    from training.codec_losses import CodecLossWeights
    from training.codec_task import (
        CODEC_PARTS,
        CodecParts,
        CodecTask,
        CropConfig,
        CropDataset,
        collate_crops,
        crop_sampler_factory,
        freeze_parts,
    )
    from training.discriminators import DiscriminatorDims, Discriminators
    from training.trainer import Trainer

    config, name, train = _load_run_config(args, SECTIONS)
    dims = build(CodecDims, config.get("codec", {}), f"{name}: codec")
    disc_dims = build(DiscriminatorDims, config.get("discriminator", {}), f"{name}: discriminator")
    weights = build(CodecLossWeights, config.get("loss", {}), f"{name}: loss")
    parts = parts_section(CodecParts, config, args, name)
    specs, data = data_section(config, args, name)
    crop = build(CropConfig, data, f"{name}: data", sample_rate=dims.sample_rate, seed=train.seed)

    utterances = []
    for spec in specs:
        train_utts = [u for u in read_manifest(spec.path) if u.split == "train"]
        utterances += train_utts * spec.repeat
    if len(utterances) < train.batch_size:
        raise VocalisError(
            f"{len(utterances)} training utterance(s) cannot fill a batch of {train.batch_size}"
        )
    dataset = CropDataset(utterances, crop)
    torch.manual_seed(train.seed)  # the same initial weights for the same config
    codec = Codec(dims)
    if args.init is not None:
        from codec.model import adopt_decoder, load_codec
        from core.checkpoint import load_weights

        start = load_codec(args.init)
        if start.dims == dims:
            load_weights(codec, start.state_dict(), source=str(args.init))
        else:
            # A new encoder or decoder: the parts whose tensors fit are taken over.
            taken = [p for p in CODEC_PARTS if _same_shapes(getattr(start, p), getattr(codec, p))]
            adopted = "decoder" not in taken and adopt_decoder(codec, start)
            anew = [p for p in CODEC_PARTS if p not in taken and not (adopted and p == "decoder")]
            if not (taken or adopted) or set(parts.freeze) - set(taken):
                raise VocalisError(
                    f"--init {args.init}: its codec dims differ from the config's"
                    + (f" in the frozen part(s) {', '.join(anew)}" if taken else "")
                )
            for part in taken:
                own = getattr(start, part).state_dict()
                load_weights(getattr(codec, part), own, source=f"{args.init} ({part})")
            names = taken + ["decoder (its phase head made a vector head)"] * adopted
            fresh = f"; {', '.join(anew)} anew" if anew else ""
            print(f"--init {args.init}: {' and '.join(names)} taken over{fresh}")
    freeze_parts(codec, parts.freeze)
    kept = frozenset()  # the codecs whose codes this one keeps: encoder and codebooks frozen
    if {"encoder", "quantizer"} <= set(parts.freeze):
        from codec.model import same_codes

        kept = same_codes(args.init)
    task = CodecTask(codec, dims, Discriminators(disc_dims), weights, same_codes_as=kept)
    out_dir = Path(train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out_dir / "config.json",
        {
            "train": dataclasses.asdict(train),
            "codec": dataclasses.asdict(dims),
            "parts": dataclasses.asdict(parts),
            "discriminator": dataclasses.asdict(disc_dims),
            "loss": dataclasses.asdict(weights),
            "data": {**dataclasses.asdict(crop), "manifests": [vars(s) for s in specs]},
        },
    )
    print(
        f"training codec: {_millions(codec)} M parameters, discriminators "
        f"{_millions(task.discriminators)} M, {len(utterances)} utterances, "
        f"{crop.crop_seconds:g} s crops, batch {train.batch_size} -> {out_dir}"
    )
    trainer = Trainer(
        task,
        train,
        dataset,
        collate_fn=collate_crops,
        sampler_factory=crop_sampler_factory(len(dataset), train.batch_size, train.seed),
    )
    result = _export_or_fit(trainer, args)
    if result is None:
        return 0
    mel = result.metrics.get("generator/mel")
    mel_text = f", mel loss {mel:.3f}" if mel is not None else ""
    print(
        f"done: step {result.step} in {result.seconds:.1f} s{mel_text}; model {result.model_path}"
    )
    return 0


def _export_or_fit(trainer, args: argparse.Namespace):
    """With --export, write the newest checkpoint's model and return None; else train
    (resuming unless --no-resume) and return the TrainResult."""
    from core.errors import VocalisError

    if args.export:
        try:
            path = trainer.export_latest()
        except FileNotFoundError as e:
            raise VocalisError(str(e)) from None
        print(f"exported step {trainer.step} to {path}")
        return None
    init = args.init  # every `train MODEL` command takes --init (_add_run_arguments)
    if init is not None and not args.no_resume and trainer.dist.is_main:
        from training.state import latest_checkpoint

        # A rerun of an --init command after a crash should resume, but a folder left by
        # another run would silently replace the weights asked for: say which wins.
        found = latest_checkpoint(trainer.out_dir)
        if found is not None:
            print(
                f"warning: resuming from {found}, so --init {init} is not used "
                "(--no-resume or another --out starts from it)",
                file=sys.stderr,
            )
    return trainer.fit(resume=not args.no_resume)


def _millions(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}"


# ---------------------------------------------------------------------------------------
# ASR


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 1024  # BPE pieces, byte alphabet included (special tokens come on top)


def _register_asr(sub: argparse._SubParsersAction) -> None:
    asr = sub.add_parser(
        "asr",
        help="train the speech recogniser (encoder-decoder, BPE tokenizer)",
        description="Train the ASR model; the BPE tokenizer is trained on the training "
        "transcripts first (kept in the output folder and inside the exported checkpoint). "
        "Resumes from the newest checkpoint in the output folder.",
    )
    _add_run_arguments(asr, "start from this ASR checkpoint (its dims and tokenizer are used)")
    asr.set_defaults(handler=run_asr)


def run_asr(args: argparse.Namespace) -> int:
    import torch

    from asr.model import SAMPLE_RATE, ASRDims, ASRModel, load_asr
    from asr.tokenizer import Tokenizer
    from core.errors import VocalisError
    from core.io import write_bytes_atomic, write_json_atomic
    from corpus.dataset import ManifestDataset, collate_audio
    from corpus.manifest import read_manifest
    from training.asr_task import ASRDataConfig, ASRLossConfig, ASRTask, SpecAugment
    from training.sampler import bucket_sampler_factory
    from training.trainer import Trainer

    config, name, train = _load_run_config(args, ASR_SECTIONS)
    dims = build(
        ASRDims, config.get("model", {}), f"{name}: model", n_vocab=0, tokenizer="", ctc_units=""
    )
    tok_config = build(TokenizerConfig, config.get("tokenizer", {}), f"{name}: tokenizer")
    augment = build(SpecAugment, config.get("augment", {}), f"{name}: augment")
    loss_config = build(ASRLossConfig, config.get("loss", {}), f"{name}: loss")
    specs, data_values = data_section(config, args, name)
    data = build(ASRDataConfig, data_values, f"{name}: data")

    utterances, too_long = [], 0
    for spec in specs:
        for u in read_manifest(spec.path):
            if u.split != "train" or not u.text:
                continue
            if u.duration > data.max_seconds:
                too_long += 1
                continue
            utterances += [u] * spec.repeat
    if not utterances:
        raise VocalisError("no training utterances with a transcript in the manifests")

    out_dir = Path(train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path = out_dir / "tokenizer.json"
    if args.init is not None:
        start = load_asr(args.init)
        # A CTC head comes with the weights (the loss section says whether it trains).
        fixed = dict(n_vocab=0, tokenizer="", ctc_units="")
        if with_training_settings(start.dims, dims, **fixed) != dims:
            raise VocalisError(f"--init {args.init}: its model dims differ from the config's")
        dims = dataclasses.replace(dims, ctc_units=start.dims.ctc_units)
        tokenizer = start.tokenizer
    elif tokenizer_path.is_file() and not args.no_resume:
        tokenizer = Tokenizer.from_json(tokenizer_path.read_text())
    else:
        texts = sorted({u.text for u in utterances})
        tokenizer = Tokenizer.train(texts, tok_config.vocab_size)
    write_bytes_atomic(tokenizer_path, tokenizer.to_json().encode("utf-8"))
    torch.manual_seed(train.seed)  # the same initial weights for the same config
    model = ASRModel(dims.with_tokenizer(tokenizer))
    if args.init is not None:
        from core.checkpoint import load_weights

        load_weights(model, start.state_dict(), source=str(args.init))
    try:
        task = ASRTask(model, data, augment, loss_config)
    except ValueError as e:  # a head over other units than the loss's
        raise VocalisError(f"--init {args.init}: {e}") from None
    write_json_atomic(
        out_dir / "config.json",
        {
            "train": dataclasses.asdict(train),
            "model": dataclasses.asdict(dataclasses.replace(model.dims, tokenizer="")),
            "tokenizer": dataclasses.asdict(tok_config),
            "data": {**dataclasses.asdict(data), "manifests": [vars(s) for s in specs]},
            "augment": dataclasses.asdict(augment),
            "loss": dataclasses.asdict(loss_config),
        },
    )
    dataset = ManifestDataset(utterances, SAMPLE_RATE)
    hours = sum(dataset.durations) / 3600
    skipped = f" ({too_long} over {data.max_seconds:g} s left out)" if too_long else ""
    print(
        f"training asr: {_millions(model)} M parameters, {len(utterances)} utterances "
        f"({hours:.2f} h){skipped}, {tokenizer.n_text} BPE pieces -> {out_dir}"
    )
    trainer = Trainer(
        task,
        train,
        dataset,
        collate_fn=collate_audio,
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
    last = result.metrics
    summary = ""
    if "loss" in last:
        summary = f", loss {last['loss']:.3f}, token accuracy {last['model/token_accuracy']:.3f}"
    print(f"done: step {result.step} in {result.seconds:.1f} s{summary}; model {result.model_path}")
    return 0


# ---------------------------------------------------------------------------------------
# Averaging


def _register_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one model (a model soup)",
        description="Write the weighted average of model checkpoints of one kind and the same "
        "dims (for the recogniser: the same tokenizer), e.g. a fine-tuned model and the model "
        "it started from. The training record names every source and its weight.",
    )
    p.add_argument("checkpoints", nargs="+", help="model checkpoints (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write")
    p.add_argument(
        "--weight",
        type=float,
        action="append",
        default=None,
        help="one per checkpoint, in order (default: equal); they are normalised to sum to 1",
    )
    p.add_argument("--fp16", action="store_true", help="store float tensors as fp16")
    p.set_defaults(handler=run_average)


def run_average(args: argparse.Namespace) -> int:
    import torch

    from core.checkpoint import average_checkpoints, write_model_files

    tensors, meta = average_checkpoints(
        args.checkpoints, args.weight, dtype=torch.float16 if args.fp16 else None
    )
    path = write_model_files(args.output, tensors, meta)
    weights = ", ".join(f"{s['weight']:g}" for s in meta["training"]["averaged_from"])
    print(f"averaged {len(args.checkpoints)} {meta['kind']} checkpoints ({weights}) -> {path}")
    return 0
