"""After a lease's training: the exported VALL-E in fp16 (it travels back under 64 MB), the
codec as exported. Usage: python collect.py VALLE_RUN CODEC_RUN DEST"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from core.checkpoint import read_model_checkpoint, save_model
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
    for f in ("model.safetensors", "model.json"):
        if (Path(codec_run) / f).is_file():
            shutil.copy(Path(codec_run) / f, out / f"codec_{f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
