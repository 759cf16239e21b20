"""On the device: the Opus set of `prepare.py --codec-opus` back to 16-bit WAV, so the
training workers read PCM instead of decoding Opus for every crop.

    python training/gpu_lease/decode.py $VOCALIS_DATA   # codec_opus.jsonl -> codec_full_SOURCE.jsonl

One manifest per source (codec_full_ljspeech.jsonl, codec_full_librispeech.jsonl), so a
config can weight them as the CPU configs weight the imports.
"""

from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from corpus.manifest import read_manifest, write_manifest


def _decode(job: tuple[str, str]) -> tuple[float, int]:
    src, dst = job
    wav, rate = sf.read(src, dtype="int16")
    sf.write(dst, wav, rate, subtype="PCM_16")
    return len(wav) / rate, rate


def main(root: str) -> None:
    base = Path(root).resolve()
    utts = read_manifest(base / "codec_opus.jsonl")  # audio: absolute paths
    (base / "codec_wav").mkdir(exist_ok=True)
    jobs = [(u.audio, str(base / "codec_wav" / f"{u.id}.wav")) for u in utts]
    with ProcessPoolExecutor() as pool:
        done = list(pool.map(_decode, jobs, chunksize=8))
    by_source: dict[str, list] = {}
    for u, (_, wav), (seconds, rate) in zip(utts, jobs, done):
        u = dataclasses.replace(u, audio=wav, duration=seconds, sample_rate=rate)
        by_source.setdefault(u.source, []).append(u)
    for source, kept in by_source.items():  # audio relative to the manifest
        write_manifest(base / f"codec_full_{source}.jsonl", kept)
    print(f"decoded {len(utts)} clips, {sum(s for s, _ in done) / 60:.1f} min")


if __name__ == "__main__":
    main(*sys.argv[1:])
