"""After a lease's training: the exported VALL-E, codec and ASR in fp16 (what travels back is
at most 64 MB). Usage: python collect.py VALLE_RUN CODEC_RUN DEST [ASR_RUN]"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from core.checkpoint import META_KEY, read_safetensors, write_model_files


def fp16_copy(src: Path, dst: Path) -> None:
    """The checkpoint `src` with its floats in fp16 and its metadata as it is."""
    meta, tensors = read_safetensors(src)
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    write_model_files(dst, half, json.loads(meta[META_KEY]))


def main(valle_run: str, codec_run: str, dest: str, asr_run: str = "") -> None:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(valle_run, "valle", "valle"), (codec_run, "codec_model", "codec")]
    runs += [(asr_run, "asr_model", "asr")] if asr_run else []
    for run, name, _ in runs:
        if (Path(run) / "model.safetensors").is_file():
            fp16_copy(Path(run) / "model.safetensors", out / name)
    for run, _, name in runs:
        for f in ("log.jsonl", "config.json"):
            if (Path(run) / f).is_file():
                shutil.copy(Path(run) / f, out / f"{name}_{f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
