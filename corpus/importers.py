"""Importers: read a corpus folder in a known layout into utterances (never modifying it).

Layouts
- `ljspeech`: `metadata.csv` (`id|raw text|normalised text`) and `wavs/<id>.wav|.flac`.
- `librispeech`: `SPEAKER-CHAPTER-UTT.flac` anywhere below the folder, transcripts in
  `SPEAKER-CHAPTER.trans.txt` beside them when present; `SPEAKERS.TXT` gives genders.
- `libritts`: `SPEAKER_CHAPTER_X_Y.wav` with `.normalized.txt` (or `.original.txt`) beside.
- `vctk`: `<audio folder>/pNNN/pNNN_MMM[_micK].wav|.flac` and `txt/pNNN/pNNN_MMM.txt`
  (only `mic1` when both microphones exist); `speaker-info.txt` gives gender and accent.
- `folder`: any audio below the folder, transcript in a same-name `.txt` or `.lab`; the
  first sub-folder is the speaker (files at the top belong to one speaker).
- `digits`: spoken digits named `DIGIT_SPEAKER_INDEX.wav|.flac` (Free Spoken Digit Dataset).

Every audio file is decoded once to check it; unreadable, empty, non-finite, too short or
unexpectedly named files are skipped and listed (`SkippedFile`), never raised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import AudioError, VocalisError
from corpus.manifest import Utterance
from corpus.text import normalize_text, number_to_words

MIN_SECONDS = 0.05
DEFAULT_SPLIT_BY = {
    "ljspeech": "utterance",
    "librispeech": "speaker",
    "libritts": "speaker",
    "vctk": "speaker",
    "folder": "utterance",
    "digits": "speaker",
}


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class Scan:
    """What an importer found: good utterances (split still 'train') and skipped files."""

    utterances: list[Utterance]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class _Candidate:
    path: Path
    id: str
    speaker: str
    text: str | None
    extra: dict


def _audio_files(folder: Path) -> Iterator[Path]:
    from core.audio import AUDIO_SUFFIXES  # here, like load_audio below: torch loads lazily

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
            yield path


def _read_text(path: Path) -> str | None:
    try:
        return normalize_text(path.read_text(encoding="utf-8", errors="replace")) or None
    except OSError:
        return None


def _sentence_case(upper: str) -> str:
    text = normalize_text(upper.lower())
    return text[:1].upper() + text[1:]


def _check(candidates: list[_Candidate], source: str, skipped: list[SkippedFile]) -> Scan:
    from core.audio import load_audio

    utterances = []
    for c in candidates:
        try:
            wav, rate = load_audio(c.path, mono=False, min_seconds=MIN_SECONDS)
        except AudioError as e:
            skipped.append(SkippedFile(str(c.path), str(e)))
            continue
        utterances.append(
            Utterance(
                id=c.id,
                audio=str(c.path.resolve()),
                duration=round(wav.shape[-1] / rate, 4),
                sample_rate=rate,
                text=c.text,
                speaker=f"{source}/{c.speaker}",
                source=source,
                extra=c.extra | ({"channels": wav.shape[0]} if wav.shape[0] != 1 else {}),
            )
        )
    return Scan(utterances, skipped)


def scan_ljspeech(folder: Path, source: str) -> Scan:
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise VocalisError(f"'{folder}' is not an LJ Speech folder: no metadata.csv")
    texts: dict[str, str] = {}
    for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0].strip():
            texts[parts[0].strip()] = normalize_text(parts[2] if len(parts) > 2 else parts[1])
    skipped: list[SkippedFile] = []
    candidates = []
    audio_dir = folder / "wavs" if (folder / "wavs").is_dir() else folder
    for path in _audio_files(audio_dir):
        if path.stem not in texts:
            skipped.append(SkippedFile(str(path), "no row in metadata.csv"))
            continue
        candidates.append(_Candidate(path, path.stem, "lj", texts.pop(path.stem) or None, {}))
    skipped += [SkippedFile(str(audio_dir / k), "listed in metadata.csv, no audio") for k in texts]
    return _check(candidates, source, skipped)


def _speaker_genders(folder: Path, name: str) -> dict[str, str]:
    """speaker id -> 'male'/'female' from LibriSpeech SPEAKERS.TXT or VCTK speaker-info.txt."""
    genders: dict[str, str] = {}
    path = next((p for p in (folder / name, folder.parent / name) if p.is_file()), None)
    if path is None:
        return genders
    column = 1  # LibriSpeech: ID | SEX | ...; VCTK: ID AGE GENDER ... (found from the header)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = [f.strip() for f in (line.split("|") if "|" in line else line.split())]
        if fields and fields[0].upper() == "ID" and "GENDER" in (f.upper() for f in fields):
            column = [f.upper() for f in fields].index("GENDER")
            continue
        if len(fields) > column and not line.startswith(";"):
            sex = fields[column].upper()
            if sex in ("M", "F"):
                speaker = (
                    fields[0] if not name.startswith("speaker") else f"p{fields[0].lstrip('p')}"
                )
                genders[speaker] = "male" if sex == "M" else "female"
    return genders


_LIBRI = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_LIBRITTS = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)$")


def scan_librispeech(folder: Path, source: str) -> Scan:
    genders = _speaker_genders(folder, "SPEAKERS.TXT")
    transcripts: dict[str, str] = {}
    for trans in sorted(folder.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            if " " in line:
                key, text = line.split(" ", 1)
                transcripts[key] = _sentence_case(text)
    skipped, candidates = [], []
    for path in _audio_files(folder):
        m = _LIBRI.match(path.stem) or _LIBRITTS.match(path.stem)
        if m is None:
            skipped.append(SkippedFile(str(path), "name is not SPEAKER-CHAPTER-UTTERANCE"))
            continue
        text = transcripts.get(path.stem)
        if text is None and _LIBRITTS.match(path.stem):
            for suffix in (".normalized.txt", ".original.txt"):
                if path.with_suffix(suffix).is_file():
                    text = _read_text(path.with_suffix(suffix))
                    break
        speaker = m.group(1)
        extra = {"chapter": m.group(2)} | (
            {"gender": genders[speaker]} if speaker in genders else {}
        )
        candidates.append(_Candidate(path, path.stem, speaker, text, extra))
    return _check(candidates, source, skipped)


_VCTK = re.compile(r"^([ps]\d+)_(\d+)(?:_mic(\d))?$")


def scan_vctk(folder: Path, source: str) -> Scan:
    genders = _speaker_genders(folder, "speaker-info.txt")
    text_dir = folder / "txt"
    found: dict[str, tuple[Path, int]] = {}
    skipped = []
    for path in _audio_files(folder):
        m = _VCTK.match(path.stem)
        if m is None:
            skipped.append(SkippedFile(str(path), "name is not SPEAKER_NUMBER[_micK]"))
            continue
        key, mic = f"{m.group(1)}_{m.group(2)}", int(m.group(3) or 1)
        if key not in found or mic < found[key][1]:
            found[key] = (path, mic)
    candidates = []
    for key, (path, _) in sorted(found.items()):
        speaker = key.split("_")[0]
        text_file = text_dir / speaker / f"{key}.txt"
        text = _read_text(text_file) if text_file.is_file() else None
        extra = {"gender": genders[speaker]} if speaker in genders else {}
        candidates.append(_Candidate(path, key, speaker, text, extra))
    return _check(candidates, source, skipped)


def scan_folder(folder: Path, source: str) -> Scan:
    candidates = []
    for path in _audio_files(folder):
        rel = path.relative_to(folder)
        speaker = rel.parts[0] if len(rel.parts) > 1 else folder.name or "speaker"
        text = None
        for suffix in (".txt", ".lab"):
            if path.with_suffix(suffix).is_file():
                text = _read_text(path.with_suffix(suffix))
                break
        uid = rel.with_suffix("").as_posix().replace("/", "__")
        candidates.append(_Candidate(path, uid, speaker, text, {}))
    return _check(candidates, source, [])


_DIGIT = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)$")


def scan_digits(folder: Path, source: str) -> Scan:
    skipped, candidates = [], []
    for path in _audio_files(folder):
        m = _DIGIT.match(path.stem)
        if m is None:
            skipped.append(SkippedFile(str(path), "name is not DIGIT_SPEAKER_INDEX"))
            continue
        word = number_to_words(int(m.group(1))).capitalize()
        candidates.append(_Candidate(path, path.stem, m.group(2), word, {"digit": int(m.group(1))}))
    return _check(candidates, source, skipped)


SCANNERS: dict[str, Callable[[Path, str], Scan]] = {
    "ljspeech": scan_ljspeech,
    "librispeech": scan_librispeech,
    "libritts": scan_librispeech,
    "vctk": scan_vctk,
    "folder": scan_folder,
    "digits": scan_digits,
}


def scan(layout: str, folder: str | Path, source: str | None = None) -> Scan:
    """Read `folder` in `layout`; raises VocalisError for an unknown layout or no folder."""
    folder = Path(folder)
    if layout not in SCANNERS:
        raise VocalisError(f"unknown layout '{layout}'; choose from {', '.join(SCANNERS)}")
    if not folder.is_dir():
        raise VocalisError(f"no such folder: '{folder}'")
    return SCANNERS[layout](folder, source or layout)


@dataclass(frozen=True)
class ImportResult:
    utterances: list[Utterance]
    skipped: list[SkippedFile]
    manifest: Path
    report: Path
    hours: float
    speakers: int


def import_corpus(
    layout: str,
    folder: str | Path,
    output: str | Path,
    *,
    name: str | None = None,
    split_by: str | None = None,
    valid: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
) -> ImportResult:
    """Scan `folder`, assign splits, write the manifest and `<manifest>.skipped.json`."""
    from core.io import write_json_atomic
    from corpus.manifest import write_manifest
    from corpus.splits import SplitSpec, assign_splits

    result = scan(layout, folder, name)
    by = split_by or DEFAULT_SPLIT_BY[layout]
    utterances = result.utterances
    if by != "none":
        try:
            spec = SplitSpec(by=(by,), valid=valid, test=test, seed=seed)
        except ValueError as e:
            raise VocalisError(str(e)) from None
        utterances = assign_splits(utterances, spec)
    output = Path(output)
    if output.suffix != ".jsonl":
        raise VocalisError(f"the manifest must be a .jsonl file, got '{output}'")
    write_manifest(output, utterances)
    report = output.with_suffix(".skipped.json")
    write_json_atomic(
        report, {"skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped]}
    )
    return ImportResult(
        utterances=utterances,
        skipped=result.skipped,
        manifest=output,
        report=report,
        hours=sum(u.duration for u in utterances) / 3600,
        speakers=len({u.speaker for u in utterances}),
    )
