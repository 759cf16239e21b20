"""Manifests: JSONL files with one utterance per line.

Each line is a JSON object with the fields of `Utterance` (`id`, `audio`, `duration`,
`sample_rate`, `text`, `speaker`, `source`, `split`) plus optional extras, stored flat on
the same object. Path rule: `audio` is written relative to the manifest's folder when the
file lies inside that folder, and absolute otherwise; `read_manifest` always returns
absolute paths. Speakers are namespaced by source (`libri/103`, `synth/espeak-en-us+m3`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.errors import VocalisError
from core.io import write_bytes_atomic

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: str  # absolute path once read
    duration: float  # seconds
    sample_rate: int
    text: str | None
    speaker: str
    source: str
    split: str = "train"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def with_split(self, split: str) -> Utterance:
        return replace(self, split=split)


_CORE_FIELDS = tuple(f.name for f in fields(Utterance) if f.name != "extra")
_REQUIRED = ("audio", "duration", "sample_rate", "speaker", "source")


def utterance_to_json(utt: Utterance, base: Path | None = None) -> dict[str, Any]:
    """The manifest line for `utt`; `audio` made relative to `base` if it lies inside it."""
    audio = utt.audio
    if base is not None:
        path = Path(audio)
        if path.is_absolute() and path.is_relative_to(base):
            audio = path.relative_to(base).as_posix()
    line = {name: getattr(utt, name) for name in _CORE_FIELDS}
    line["audio"] = audio
    for key, value in utt.extra.items():
        if key in line:
            raise ValueError(f"extra field '{key}' shadows a manifest field")
        line[key] = value
    return line


def utterance_from_json(line: Mapping[str, Any], base: Path) -> Utterance:
    missing = [k for k in _REQUIRED if k not in line]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    audio = Path(line["audio"])
    audio = audio if audio.is_absolute() else base / audio
    split = line.get("split", "train")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    text = line.get("text")
    return Utterance(
        id=str(line.get("id") or audio.stem),
        audio=os.path.normpath(audio),
        duration=float(line["duration"]),
        sample_rate=int(line["sample_rate"]),
        text=None if text is None else str(text),
        speaker=str(line["speaker"]),
        source=str(line["source"]),
        split=split,
        extra={k: v for k, v in line.items() if k not in _CORE_FIELDS},
    )


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSONL manifest; raises VocalisError naming the file and line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise VocalisError(f"no such manifest: '{path}'")
    base = path.resolve().parent
    utterances = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                utterances.append(utterance_from_json(json.loads(raw), base))
            except (ValueError, TypeError, AttributeError) as e:
                raise VocalisError(f"{path}:{number}: bad manifest line: {e}") from None
    return utterances


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write a JSONL manifest atomically (see the module docstring for the path rule)."""
    path = Path(path)
    base = path.resolve().parent
    lines = [
        json.dumps(utterance_to_json(u, base), ensure_ascii=False, allow_nan=False)
        for u in utterances
    ]
    write_bytes_atomic(path, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return path
