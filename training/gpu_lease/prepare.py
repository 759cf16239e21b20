"""Build the data a lent GPU needs into .lease/ (ignored by git): at most ~64 MB travel.

    python training/gpu_lease/prepare.py --pack synth=PACK_DIR --pack ljspeech=PACK_DIR
    python training/gpu_lease/prepare.py --codec-opus 40      # a codec-only lease

- `data.tar.xz`: the VALL-E token packs (`vocalis data pack`; NAME=DIR unpacks as
  packs/NAME) and a small codec training set
  (excerpts of training-split LibriSpeech, LJ Speech and synthetic speakers, FLAC at their own
  rate, with a manifest), to unpack into $VOCALIS_DATA on the device;
- `phonemes.json`: the pack's transcripts in IPA, so the device (no espeak-ng) never
  phonemizes;
- with `--codec-opus KBPS`, instead of the excerpts: every training-split clip of the two
  real-speech imports, whole, in Ogg Opus at KBPS (55 min in 16.3 MB at 40 kbps, where
  FLAC carries 12 min), manifest `codec_opus.jsonl`; `decode.py` turns it back into WAV on
  the device (`codec_full_SOURCE.jsonl`). The codec learns from Opus's output, which at 40 kbps is
  far above what it reaches itself at 6 kbps;
- with `--asr`, what an ASR lease renders and hears (`run.sh` with JOBS=asr): the speech
  engines (`engines.py`: espeak-ng and flite with their libraries, 17 MB), every training
  row of the synthetic corpora (`render.py`: speaker, text and settings; 47 503 rows for
  about 65 h of espeak and flite audio), and the real training speech in Ogg Opus at
  `--asr-kbps` (`asr_opus/`: the spoken digits, LJ Speech's training clips and the
  pocketsphinx-labelled LibriSpeech readers, about 12 MB at 24 kbps), decoded on the device
  to `asr_real/`; with `--asr-init CKPT`, that ASR checkpoint as `asr_init.safetensors` to
  continue from;
- with `--valle-init CKPT`, `valle_init.q8.safetensors`: that VALL-E in int8 (`transport.py`),
  for `VALLE_INIT=.lease/valle_init.q8.safetensors` (then move `models/tts/valle.*` out of
  the checkout for the call: the int8 copy is what travels).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import subprocess
from pathlib import Path

import soundfile as sf

from corpus.manifest import Utterance, read_manifest, write_manifest
from corpus.token_pack import read_token_pack
from training.valle_data import load_phonemes, phonemize_transcripts
from vocalis.commands.data import default_data_root

ROOT = Path(__file__).resolve().parents[2]


def excerpt(src: Path, dst: Path, seconds: float, rng: random.Random) -> float:
    info = sf.info(str(src))
    n = int(seconds * info.samplerate)
    start = rng.randrange(0, max(1, info.frames - n))
    wav, rate = sf.read(str(src), start=start, frames=n, dtype="int16")
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), wav, rate, format="FLAC")
    return len(wav) / rate


def codec_set(out: Path, budget_mb: float, seed: int = 0) -> dict:
    rng = random.Random(seed)
    data = default_data_root()
    rows, seconds = [], 0.0
    plan = [  # (manifest, seconds per excerpt, utterances per speaker, share of the budget)
        ("imports/librispeech.jsonl", 3.0, 1, 0.55),
        ("synth/manifest.jsonl", 3.0, 1, 0.15),
        ("imports/ljspeech.jsonl", 4.0, 40, 0.30),
    ]
    for manifest, length, per_speaker, share in plan:
        taken: dict[str, int] = {}
        used = 0
        utts = [u for u in read_manifest(data / manifest) if u.split == "train"]
        rng.shuffle(utts)
        for u in utts:
            if taken.get(u.speaker, 0) >= per_speaker:
                continue
            taken[u.speaker] = taken.get(u.speaker, 0) + 1
            name = f"codec_set/{u.id}.flac"
            got = excerpt(Path(u.audio), out / name, length, rng)
            seconds += got
            rows.append(
                {
                    "id": u.id,
                    "audio": name,
                    "duration": got,
                    "sample_rate": u.sample_rate,
                    "speaker": u.speaker,
                    "source": u.source,
                    "split": "train",
                }
            )
            used += (out / name).stat().st_size
            if used > share * budget_mb * 1e6:
                break
    with open(out / "codec_set.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return {"utterances": len(rows), "minutes": seconds / 60}


def to_opus(u: Utterance, dst: Path, kbps: float) -> Utterance:
    """`u` in Ogg Opus at `dst` (ffmpeg libopus), at its own rate where Opus takes it, else
    24 kHz (LJ Speech's 22.05 kHz)."""
    rate = u.sample_rate if u.sample_rate in (8000, 12000, 16000, 24000, 48000) else 24000
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", u.audio, "-ac", "1", "-ar", str(rate)]
    cmd += ["-c:a", "libopus", "-b:a", f"{kbps:g}k", "-application", "audio", str(dst)]
    subprocess.run(cmd, check=True)
    return dataclasses.replace(u, audio=str(dst.resolve()), sample_rate=rate)


# The synthetic corpora an ASR lease renders again, and its real speech (name, manifest).
ASR_CORPORA = (
    "synth",
    "synth_voices",
    "synth_wordnet",
    "synth_wordnet_voices",
    "synth_gcide",
    "synth_gcide_voices",
)
ASR_REAL = (
    ("fsdd", "imports/fsdd.jsonl"),
    ("ljspeech", "imports/ljspeech.jsonl"),
    (
        "librispeech_pocketsphinx",
        str(ROOT / "corpus" / "labels" / "librispeech_pocketsphinx.jsonl"),
    ),
)


def asr_set(out: Path, kbps: float) -> dict:
    """The engines, the corpora's training rows and the real training speech in Opus."""
    from training.gpu_lease import engines, render

    data = default_data_root()
    sizes = engines.bundle(out / "engines")
    rows = render.jobs(out / "render", {name: data / name for name in ASR_CORPORA})
    minutes = {}
    for name, manifest in ASR_REAL:
        folder = out / "asr_opus" / name
        folder.mkdir(parents=True, exist_ok=True)
        utts = [u for u in read_manifest(data / manifest) if u.split == "train"]
        kept = [to_opus(u, folder / f"{u.id}.opus", kbps) for u in utts]
        write_manifest(out / "asr_opus" / f"{name}.jsonl", kept)  # audio relative to it
        minutes[name] = round(sum(u.duration for u in kept) / 60, 1)
    return {
        "engines MB": round(sum(sizes.values()) / 1e6, 1),
        "rows": rows,
        "real minutes": minutes,
    }


def codec_set_opus(out: Path, kbps: float) -> dict:
    """Every training-split clip of the real-speech imports, whole, in Ogg Opus (ffmpeg
    libopus). LibriSpeech keeps 16 kHz; LJ Speech's 22.05 kHz goes to 24 kHz, a rate Opus
    takes."""
    data = default_data_root()
    (out / "codec_opus").mkdir(parents=True, exist_ok=True)
    kept = [
        to_opus(u, out / "codec_opus" / f"{u.id}.opus", kbps)
        for manifest in ("imports/librispeech.jsonl", "imports/ljspeech.jsonl")
        for u in read_manifest(data / manifest)
        if u.split == "train"
    ]
    write_manifest(out / "codec_opus.jsonl", kept)  # audio relative to the manifest
    return {"utterances": len(kept), "minutes": sum(u.duration for u in kept) / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pack", action="append", default=[], help="NAME=DIR: a token pack (vocalis data pack)"
    )
    p.add_argument("--codec-mb", type=float, default=18.0, help="FLAC budget of the codec set")
    p.add_argument("--codec-opus", type=float, default=None, help="KBPS: the Opus set instead")
    p.add_argument("--valle-init", default=None, help="a VALL-E checkpoint to carry in int8")
    p.add_argument("--asr", action="store_true", help="the ASR lease's engines, rows and speech")
    p.add_argument("--asr-kbps", type=float, default=24.0, help="Opus rate of its real speech")
    p.add_argument("--asr-init", default=None, help="an ASR checkpoint to continue from")
    p.add_argument("--no-codec-set", action="store_true", help="leave the codec's speech out")
    args = p.parse_args()
    lease = ROOT / ".lease"
    stage = lease / "data"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    texts = []
    for entry in args.pack:
        name, _, folder = entry.partition("=")
        shutil.copytree(folder, stage / "packs" / name)
        texts += [u.text for u in read_token_pack(folder).utterances if u.text]
    if args.asr:
        print("asr set:", asr_set(stage, args.asr_kbps))
    if args.no_codec_set:
        pass
    elif args.codec_opus:
        print("codec set:", codec_set_opus(stage, args.codec_opus))
    else:
        print("codec set:", codec_set(stage, args.codec_mb))
    if texts:
        load_phonemes(texts, lease / "phonemes.json", phonemize_transcripts)
    subprocess.run(["tar", "-cJf", str(lease / "data.tar.xz"), "-C", str(stage), "."], check=True)
    shutil.rmtree(stage)
    if args.asr_init:
        for suffix in (".safetensors", ".json"):
            shutil.copy(Path(args.asr_init).with_suffix(suffix), lease / f"asr_init{suffix}")
    if args.valle_init:
        from training.gpu_lease.transport import pack

        pack(args.valle_init, lease / "valle_init.q8.safetensors")
    for f in sorted(lease.iterdir()):
        print(f"{f.name}: {f.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
