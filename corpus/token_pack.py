"""Token packs: a corpus's codec tokens and transcripts in one small folder, without audio.

The data cache keys entries by the source audio files, so it is only usable where the
audio is. A pack is self-contained, for training the TTS on a machine that has no audio
(a lent GPU receives a few tens of MB; 7 h of speech at 8 codebooks is about 30 MB):

    pack.json           format, version, the codec's weights hash, codebooks, frame rate
    manifest.jsonl      the utterances (any split; audio paths kept only for reference)
    tokens.safetensors  tensor "u<line>" = int16 codes (n, F) of manifest line <line>

Written atomically; read without pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import VocalisError
from core.io import atomic_path, write_json_atomic
from corpus.manifest import Utterance, read_manifest, write_manifest

FORMAT = "vocalis-token-pack"
VERSION = 1


@dataclass(frozen=True)
class TokenPack:
    utterances: list[Utterance]
    codes: list[torch.Tensor]  # (n, F) int16, one per utterance
    codec_sha256: str
    frame_rate: float


def is_token_pack(path: str | os.PathLike) -> bool:
    return (Path(path) / "pack.json").is_file()


def write_token_pack(
    folder: str | os.PathLike,
    utterances: Sequence[Utterance],
    codes: Sequence[torch.Tensor],
    *,
    codec_sha256: str,
    frame_rate: float,
) -> Path:
    from safetensors.torch import save_file

    if len(utterances) != len(codes):
        raise ValueError("one code tensor per utterance is needed")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"u{i}": c.to(torch.int16).contiguous() for i, c in enumerate(codes)}
    with atomic_path(folder / "tokens.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_manifest(folder / "manifest.jsonl", utterances)
    n_codebooks = int(codes[0].shape[0]) if codes else 0
    write_json_atomic(
        folder / "pack.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "codec_sha256": codec_sha256,
            "n_codebooks": n_codebooks,
            "frame_rate": frame_rate,
            "utterances": len(utterances),
        },
    )
    return folder


def read_token_pack(folder: str | os.PathLike) -> TokenPack:
    from safetensors import safe_open

    folder = Path(folder)
    try:
        meta = json.loads((folder / "pack.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VocalisError(f"'{folder}' is not a token pack: {e}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise VocalisError(f"'{folder}' is not a version-{VERSION} vocalis token pack")
    utterances = read_manifest(folder / "manifest.jsonl")
    with safe_open(str(folder / "tokens.safetensors"), framework="pt") as f:
        names = set(f.keys())
        if names != {f"u{i}" for i in range(len(utterances))}:
            raise VocalisError(f"'{folder}': tokens and manifest do not match")
        codes = [f.get_tensor(f"u{i}") for i in range(len(utterances))]
    return TokenPack(utterances, codes, meta["codec_sha256"], float(meta["frame_rate"]))
