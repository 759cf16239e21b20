"""After a lease's training: the exported VALL-E and codec in fp16 (what travels back is at
most 64 MB). Usage: python collect.py VALLE_RUN CODEC_RUN DEST"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from core.checkpoint import (
    META_KEY,
    read_model_checkpoint,
    read_safetensors,
    save_model,
    write_model_files,
)
from tts.valle import VALLEDims, load_valle


def main(valle_run: str, codec_run: str, dest: str) -> None:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(valle_run) / "model.safetensors"
    if model_path.is_file():
        training = read_model_checkpoint(model_path, kind="valle", dims_cls=VALLEDims).training
        model = load_valle(model_path)
        save_model(
            out / "valle", model, model.dims, kind="valle", training=training, dtype=torch.float16
        )
    for run, name in ((valle_run, "valle"), (codec_run, "codec")):
        for f in ("log.jsonl", "config.json"):
            if (Path(run) / f).is_file():
                shutil.copy(Path(run) / f, out / f"{name}_{f}")
    codec_path = Path(codec_run) / "model.safetensors"
    if codec_path.is_file():  # floats to fp16, the metadata as it is
        meta, tensors = read_safetensors(codec_path)
        half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        write_model_files(out / "codec_model", half, json.loads(meta[META_KEY]))


if __name__ == "__main__":
    main(*sys.argv[1:])
