"""On the device: the Opus set of `prepare.py --codec-opus` back to 16-bit WAV, so the
training workers read PCM instead of decoding Opus for every crop.

    python training/gpu_lease/decode.py $VOCALIS_DATA   # codec_opus.jsonl -> codec_full_SOURCE.jsonl

One manifest per source (codec_full_ljspeech.jsonl, codec_full_librispeech.jsonl), so a
config can weight them as the CPU configs weight the imports.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf


def _decode(job: tuple[str, str]) -> tuple[float, int]:
    src, dst = job
    wav, rate = sf.read(src, dtype="int16")
    sf.write(dst, wav, rate, subtype="PCM_16")
    return len(wav) / rate, rate


def main(root: str) -> None:
    base = Path(root)
    rows = [json.loads(line) for line in open(base / "codec_opus.jsonl")]
    (base / "codec_wav").mkdir(exist_ok=True)
    jobs = [(str(base / r["audio"]), str(base / "codec_wav" / (r["id"] + ".wav"))) for r in rows]
    with ProcessPoolExecutor() as pool:
        done = list(pool.map(_decode, jobs, chunksize=8))
    by_source: dict[str, list[str]] = {}
    for r, (seconds, rate) in zip(rows, done):
        r = {**r, "audio": f"codec_wav/{r['id']}.wav", "duration": seconds, "sample_rate": rate}
        by_source.setdefault(r["source"], []).append(json.dumps(r) + "\n")
    for source, lines in by_source.items():
        (base / f"codec_full_{source}.jsonl").write_text("".join(lines))
    print(f"decoded {len(rows)} clips, {sum(s for s, _ in done) / 60:.1f} min")


if __name__ == "__main__":
    main(*sys.argv[1:])
