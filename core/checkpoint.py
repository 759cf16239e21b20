"""One checkpoint format for every vocalis model, with no pickle anywhere.

A model checkpoint is a pair of files with one stem:

    name.safetensors   the weights (optionally stored as fp16)
    name.json          {"format": "vocalis-checkpoint", "version": 1, "kind": "codec",
                        "dims": {...the model's frozen dimensions dataclass...},
                        "training": {...a summary: data, steps, hardware, time...},
                        "weights_sha256": "..."}

The JSON is also embedded in the safetensors header, so the weights file alone is enough
to load; the side file is there for people and tools that read JSON. Both are written
atomically. Loading checks the kind, the format version and every tensor's shape, and says
exactly what does not match.

Training state (optimizer, schedule, step, RNG) is saved with `save_tree`: any nest of
dicts, lists, tuples, numbers, strings and tensors, stored as safetensors plus a JSON
skeleton that names each tensor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from core.errors import CheckpointError
from core.io import atomic_path, write_bytes_atomic, write_json_atomic

FORMAT = "vocalis-checkpoint"
FORMAT_VERSION = 1
META_KEY = "vocalis"  # the safetensors header entry holding the JSON metadata

D = TypeVar("D")


@dataclasses.dataclass(frozen=True)
class ModelCheckpoint:
    kind: str
    dims: Any  # the model's dimensions dataclass
    state_dict: dict[str, torch.Tensor]
    training: dict
    path: Path


# ---------------------------------------------------------------------------------------
# Dimensions dataclasses <-> JSON


def dims_to_dict(dims: Any) -> dict:
    if not dataclasses.is_dataclass(dims) or isinstance(dims, type):
        raise TypeError(f"model dimensions must be a dataclass instance, got {type(dims).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(dims)))


def dims_from_dict(cls: type[D], data: dict) -> D:
    """Build a (possibly nested) dimensions dataclass from JSON, checking the field names."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{cls.__name__}: unknown dimension(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {name: _from_json(hints[name], value) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise CheckpointError(f"{cls.__name__}: {e}") from None


def _from_json(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return (
            None if value is None else _from_json(options[0], value) if len(options) == 1 else value
        )
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return dims_from_dict(hint, value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        return tuple(_from_json(a, v) for a, v in zip(args, value)) if args else tuple(value)
    return value


# ---------------------------------------------------------------------------------------
# Model checkpoints


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The (weights, json) pair for a stem or either file name."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_model(
    path: str | os.PathLike,
    model: torch.nn.Module,
    dims: Any,
    *,
    kind: str,
    training: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save weights and metadata atomically; `dtype=torch.float16` stores floats as fp16."""
    weights_path, json_path = checkpoint_paths(path)
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous().clone()  # safetensors refuses shared storage
    return write_model_files(path, tensors, model_meta(kind, dims, training))


def model_meta(kind: str, dims: Any, training: dict | None = None) -> dict:
    """The metadata of a checkpoint of `kind` (for `write_model_files`)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "dims": dims_to_dict(dims),
        "training": training or {},
    }


def write_model_files(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict
) -> Path:
    """The checkpoint pair for `tensors` and `meta` (format, version, kind, dims, training):
    safetensors with the metadata in its header, and the JSON side file with its hash."""
    weights_path, json_path = checkpoint_paths(path)
    data = safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    write_bytes_atomic(weights_path, data)
    write_json_atomic(json_path, {**meta, "weights_sha256": hashlib.sha256(data).hexdigest()})
    return weights_path


def average_checkpoints(
    paths: list[str | os.PathLike], weights: list[float] | None = None, *, dtype=None
) -> tuple[dict[str, torch.Tensor], dict]:
    """The weighted average of model checkpoints of one kind and identical dims (a "model
    soup": runs fine-tuned from one start, or a fine-tuned model and its start, averaged
    weight by weight). Returns (tensors, meta) for `write_model_files`; the meta is the
    first checkpoint's with a training record that names every source, its hash and its
    weight. Float tensors are averaged in float32 (stored as `dtype` if given, else as the
    first checkpoint stores them); every other tensor must be equal in all of them."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    weights = [1.0 / len(paths)] * len(paths) if weights is None else list(weights)
    if len(weights) != len(paths):
        raise CheckpointError(f"{len(weights)} weights for {len(paths)} checkpoints")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError("weights must be non-negative numbers with a positive sum")
    weights = [w / sum(weights) for w in weights]
    first_meta, sums, stored, sources = None, {}, {}, []
    for path, w in zip(paths, weights):
        weights_path = _existing_weights(path)
        meta, tensors = _read_safetensors(weights_path)
        _check_meta(meta, weights_path, (first_meta or meta).get("kind"))
        if first_meta is None:
            first_meta = meta
            sums = {k: torch.zeros(t.shape) for k, t in tensors.items() if t.is_floating_point()}
            stored = {k: t for k, t in tensors.items() if not t.is_floating_point()}
            dtypes = {k: t.dtype for k, t in tensors.items()}
        else:
            if meta.get("dims") != first_meta.get("dims"):
                raise CheckpointError(f"'{weights_path}' has other dims than '{paths[0]}'")
            if set(tensors) != set(dtypes):
                raise CheckpointError(f"'{weights_path}' holds other tensors than '{paths[0]}'")
        for k, t in tensors.items():
            if k in sums:
                if t.shape != sums[k].shape:
                    raise CheckpointError(f"'{weights_path}': {k} has another shape")
                sums[k] += w * t.float()
            elif not torch.equal(t, stored[k]):
                raise CheckpointError(f"'{weights_path}': {k} (not floating point) differs")
        sources.append(
            {
                "path": str(path),
                "weights_sha256": weights_sha256(weights_path),
                "weight": round(w, 6),
            }
        )
    out = {k: t.to(dtype or dtypes[k]).contiguous() for k, t in sums.items()}
    out.update(stored)
    training = {**first_meta.get("training", {}), "averaged_from": sources}
    meta = {**first_meta, "training": training}
    return out, meta


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's safetensors file: the identity of its weights (computed
    from the file, so it is right even if the side JSON was edited or lost)."""
    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"no checkpoint at '{weights_path}'")
    # Remembered per file version: finding the codec of a .vcd file hashes every shipped
    # codec, and loading the one found hashes it again. Files are replaced by rename
    # (atomic writes), which gives a new inode, so a changed file is never taken for its
    # old self.
    st = weights_path.stat()
    key = (str(weights_path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(weights_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


_SHA256: dict[tuple[str, int, int, int], str] = {}


def read_model_checkpoint(
    path: str | os.PathLike, *, kind: str, dims_cls: type[D]
) -> ModelCheckpoint:
    """Read weights and metadata, checking format, version and kind."""
    weights_path = _existing_weights(path)
    meta, tensors = _read_safetensors(weights_path)
    _check_meta(meta, weights_path, kind)
    dims = dims_from_dict(dims_cls, meta.get("dims", {}))
    return ModelCheckpoint(kind, dims, tensors, meta.get("training", {}), weights_path)


def read_model_training(path: str | os.PathLike, *, kind: str) -> dict:
    """A checkpoint's training record from its safetensors header alone (no tensors read),
    checking format, version and kind as `read_model_checkpoint` does."""
    weights_path = _existing_weights(path)
    with _open_safetensors(weights_path) as f:
        header = dict(f.metadata() or {})
    meta = _parse_meta(header, weights_path)
    _check_meta(meta, weights_path, kind)
    return meta.get("training", {})


def _existing_weights(path: str | os.PathLike) -> Path:
    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"no checkpoint at '{weights_path}'")
    return weights_path


def _check_meta(meta: dict, weights_path: Path, kind: str) -> None:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{weights_path}' is not a vocalis checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"'{weights_path}' has checkpoint format version {meta.get('version')}; "
            f"this vocalis reads version {FORMAT_VERSION}"
        )
    if meta.get("kind") != kind:
        raise CheckpointError(
            f"'{weights_path}' holds a '{meta.get('kind')}' model, not a '{kind}' model"
        )


def load_weights(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Strict load that names missing, unexpected and mis-shaped tensors; casts dtypes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", wrong),
    ):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state_dict[k].to(dtype=t.dtype))


def load_model(
    path: str | os.PathLike, model_cls: type, dims_cls: type, *, kind: str, device: str = "cpu"
):
    """Construct `model_cls(dims)` from a checkpoint and load its weights (eval mode)."""
    ckpt = read_model_checkpoint(path, kind=kind, dims_cls=dims_cls)
    model = model_cls(ckpt.dims)
    load_weights(model, ckpt.state_dict, source=f"'{ckpt.path}'")
    return model.to(device).eval()


INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")


def fast_bf16(device: str | torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively: a CUDA GPU that supports
    bf16, or a CPU with AMX or AVX-512 BF16 units (elsewhere bf16 is emulated, and slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def inference_dtype(device: str | torch.device, precision: str = "auto") -> torch.dtype:
    """The weights' dtype for inference: "fp32", "bf16", or "auto" (bf16 where the device
    has native bf16 units, `fast_bf16`, else fp32)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {', '.join(INFERENCE_PRECISIONS)}"
        )
    if precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors) of any safetensors file; an unreadable one is a
    CheckpointError that says why."""
    with _open_safetensors(path) as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}


@contextlib.contextmanager
def _open_safetensors(path: str | os.PathLike):
    """`safe_open`, with whatever goes wrong while reading turned into a CheckpointError
    that names the file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read '{path}': {' '.join(str(e).split())}") from None


def _read_safetensors(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    header, tensors = read_safetensors(path)
    return _parse_meta(header, path), tensors


def _parse_meta(header: dict[str, str], path: Path) -> dict:
    raw = header.get(META_KEY)
    try:
        return json.loads(raw) if raw is not None else {}
    except json.JSONDecodeError:
        raise CheckpointError(f"'{path}' has corrupt metadata") from None


# ---------------------------------------------------------------------------------------
# Arbitrary state trees (optimizer, scheduler, RNG): safetensors + a JSON skeleton


def save_tree(path: str | os.PathLike, tree: Any) -> None:
    """Save a nest of dicts/lists/tuples/scalars/tensors as `path`.safetensors + `path`.json."""
    weights_path, json_path = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(tree, tensors)
    write_bytes_atomic(weights_path, safetensors_bytes(tensors))
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({"format": "vocalis-tree", "version": 1, "tree": skeleton}))


def load_tree(path: str | os.PathLike) -> Any:
    weights_path, json_path = checkpoint_paths(path)
    for p in (weights_path, json_path):
        if not p.is_file():
            raise CheckpointError(f"missing training-state file '{p}'")
    try:
        doc = json.loads(json_path.read_text())
        with safe_open(str(weights_path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(
            f"cannot read training state '{path}': {' '.join(str(e).split())}"
        ) from None
    if doc.get("format") != "vocalis-tree":
        raise CheckpointError(f"'{json_path}' is not a vocalis training state")
    return _decode(doc["tree"], tensors)


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return _encode(obj.tolist(), tensors)
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: _decode(v, tensors) for k, v in obj.items()}
