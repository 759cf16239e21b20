"""Training checkpoints: everything a run needs to continue exactly where it stopped.

Layout under `out_dir/checkpoints/`:

    step_00000500/state.safetensors + state.json   modules, optimizers, schedules, EMA, counters
    step_00000500/rng_0.safetensors + rng_0.json   each process's RNG state (one file per rank)
    latest.json                                    {"step": 500, "path": "step_00000500"}

A checkpoint folder is written under a temporary name and renamed when complete, and
latest.json is replaced atomically after that, so a crash mid-save never leaves a
half-written checkpoint behind the pointer.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.checkpoint import load_tree, save_tree
from core.errors import CheckpointError
from core.io import write_json_atomic


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def staging_dir(out_dir: str | Path, step: int) -> Path:
    return checkpoint_root(out_dir) / f".step_{step:08d}.partial"


def save_rng(folder: Path, rank: int) -> None:
    save_tree(folder / f"rng_{rank}", rng_state())


def commit_checkpoint(out_dir: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the shared state into the staging folder, publish it, prune old ones (rank 0)."""
    root = checkpoint_root(out_dir)
    staging = staging_dir(out_dir, step)
    save_tree(staging / "state", state)
    final = root / f"step_{step:08d}"
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    write_json_atomic(root / "latest.json", {"step": step, "path": final.name})
    if keep > 0:
        old = sorted(p for p in root.glob("step_*") if p.is_dir() and p != final)
        for p in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    pointer = checkpoint_root(out_dir) / "latest.json"
    if not pointer.is_file():
        return None
    try:
        folder = checkpoint_root(out_dir) / json.loads(pointer.read_text())["path"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"corrupt checkpoint pointer '{pointer}'") from None
    if not folder.is_dir():
        raise CheckpointError(f"'{pointer}' points to a missing checkpoint '{folder}'")
    return folder


def load_checkpoint(folder: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(shared state, this rank's RNG state or None when it was saved by fewer processes)."""
    state = load_tree(folder / "state")
    rng_path = folder / f"rng_{rank}.safetensors"
    return state, load_tree(folder / f"rng_{rank}") if rng_path.exists() else None
