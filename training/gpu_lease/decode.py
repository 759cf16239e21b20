"""On the device: the Opus sets of `prepare.py` back to 16-bit WAV, so the training workers
read PCM instead of decoding Opus for every crop.

    python training/gpu_lease/decode.py $VOCALIS_DATA
        # codec_opus.jsonl (--codec-opus) -> codec_full_SOURCE.jsonl
        # asr_opus/NAME.jsonl (--asr)     -> asr_real/NAME.jsonl

One codec manifest per source (codec_full_ljspeech.jsonl, codec_full_librispeech.jsonl), so
a config can weight them as the CPU configs weight the imports; the ASR's keep their names
(asr_real/fsdd.jsonl, asr_real/librispeech_pocketsphinx.jsonl) and their texts.
"""

from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from corpus.manifest import Utterance, read_manifest, write_manifest


def _decode(job: tuple[str, str]) -> tuple[float, int]:
    src, dst = job
    wav, rate = sf.read(src, dtype="int16")
    sf.write(dst, wav, rate, subtype="PCM_16")
    return len(wav) / rate, rate


def decode_manifest(manifest: Path, wav_dir: Path) -> list[Utterance]:
    """Every clip of `manifest` as WAV in `wav_dir`; the utterances with the new audio."""
    utts = read_manifest(manifest)  # audio: absolute paths
    wav_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(u.audio, str(wav_dir / f"{u.id}.wav")) for u in utts]
    with ProcessPoolExecutor() as pool:
        done = list(pool.map(_decode, jobs, chunksize=8))
    print(f"{manifest.name}: decoded {len(utts)} clips, {sum(s for s, _ in done) / 60:.1f} min")
    return [
        dataclasses.replace(u, audio=wav, duration=seconds, sample_rate=rate)
        for u, (_, wav), (seconds, rate) in zip(utts, jobs, done)
    ]


def main(root: str) -> None:
    base = Path(root).resolve()
    if (base / "codec_opus.jsonl").is_file():
        by_source: dict[str, list] = {}
        for u in decode_manifest(base / "codec_opus.jsonl", base / "codec_wav"):
            by_source.setdefault(u.source, []).append(u)
        for source, kept in by_source.items():  # audio relative to the manifest
            write_manifest(base / f"codec_full_{source}.jsonl", kept)
    for manifest in sorted((base / "asr_opus").glob("*.jsonl")):
        kept = decode_manifest(manifest, base / "asr_real" / "wav")
        write_manifest(base / "asr_real" / manifest.name, kept)


if __name__ == "__main__":
    main(*sys.argv[1:])
