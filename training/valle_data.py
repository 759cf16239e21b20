"""Training examples for VALL-E: codec tokens from the data cache, phonemes from the front end.

Tokens come from `corpus.cache.encoded_manifest` with a `CodecEncoder`, in the folder
`vocalis data cache MANIFEST --codec CKPT` uses (`corpus.cache.default_folder`), so a
cache built by that command is reused and a missing one is built here. Phonemes are
kept in a JSON file (`{text: IPA}`) in the run folder, so a resumed run does not
phonemize the corpus again. A manifest entry may also be a token pack folder
(`vocalis data pack`): tokens and transcripts without the audio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from core.errors import VocalisError
from core.io import write_json_atomic
from corpus.cache import CodecEncoder, encoded_manifest
from corpus.manifest import Utterance
from corpus.token_pack import is_token_pack, read_token_pack
from training.valle_task import TTSExample


def phonemize_transcripts(texts: Sequence[str]) -> list[str]:
    """IPA of manifest transcripts, read the way `vocalis say` reads its input."""
    from tts.frontend import normalize_for_speech, phonemize

    return phonemize([normalize_for_speech(t).text for t in texts])


def load_phonemes(texts: Sequence[str], path: Path, phonemize, *, batch: int = 256) -> dict:
    """{text: IPA} for every text, phonemizing only those `path` does not hold yet."""
    known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    missing = sorted({t for t in texts if t not in known})
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        known.update(zip(chunk, phonemize(chunk)))
    if missing:
        write_json_atomic(path, known)
    return known


def _pack_pairs(path: str, encoder: CodecEncoder) -> list[tuple[Utterance, torch.Tensor]]:
    """A token pack's utterances with their codes, checking it came from `encoder`'s codec."""
    pack = read_token_pack(path)
    if not encoder.speaks(pack.codec_sha256):
        raise VocalisError(
            f"token pack '{path}' was made with another codec (weights "
            f"{pack.codec_sha256[:12]}, this one {encoder.weights_hash[:12]})"
        )
    return list(zip(pack.utterances, pack.codes))


def prepare_examples(
    manifests: Sequence[tuple[str, int]],
    encoder: CodecEncoder,
    data_root: Path,
    phoneme_path: Path,
    phonemize,
    vocab,
    n_codebooks: int,
    *,
    progress: bool = True,
) -> tuple[list[TTSExample], dict[str, int]]:
    """Examples of the "train" utterances with a transcript, each manifest `repeat` times,
    and counts of what was used and left out."""
    per_manifest: list[tuple[list[tuple[Utterance, torch.Tensor | None]], int]] = []
    for path, repeat in manifests:
        if is_token_pack(path):
            pairs = _pack_pairs(path, encoder)
        else:
            pairs = encoded_manifest(path, encoder, data_root, progress=progress)
        pairs = [(u, c) for u, c in pairs if u.split == "train" and u.text]
        per_manifest.append((pairs, repeat))
    texts = [u.text for pairs, _ in per_manifest for u, _ in pairs]
    ipa = load_phonemes(texts, phoneme_path, phonemize)
    examples: list[TTSExample] = []
    counts = {"utterances": 0, "no_tokens": 0, "no_phonemes": 0}
    for pairs, repeat in per_manifest:
        for u, codes in pairs:
            ids = vocab.encode(ipa[u.text])
            if codes is None:
                counts["no_tokens"] += 1
                continue
            if not ids:
                counts["no_phonemes"] += 1
                continue
            ex = TTSExample(
                u.id,
                u.speaker or u.id,
                torch.tensor(ids, dtype=torch.long),
                codes[:n_codebooks].long(),
            )
            examples += [ex] * repeat
            counts["utterances"] += 1
    return examples, counts
