import json
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from core.checkpoint import (
    average_checkpoints,
    dims_from_dict,
    fast_bf16,
    inference_dtype,
    load_model,
    load_tree,
    read_model_checkpoint,
    save_model,
    save_tree,
    weights_sha256,
    write_model_files,
)
from core.errors import CheckpointError
from core.io import atomic_path, write_bytes_atomic, write_json_atomic


@dataclass(frozen=True)
class Inner:
    channels: tuple[int, ...] = (4, 8)


@dataclass(frozen=True)
class Dims:
    width: int = 6
    inner: Inner = Inner()
    note: str | None = None


class Net(nn.Module):
    def __init__(self, dims: Dims):
        super().__init__()
        self.proj = nn.Linear(dims.width, dims.inner.channels[-1])
        self.norm = nn.LayerNorm(dims.inner.channels[-1])
        self.register_buffer("steps", torch.tensor(7))


def test_model_round_trip_restores_dims_and_weights(tmp_path):
    dims = Dims(width=5, inner=Inner((3, 9)), note="x")
    net = Net(dims)
    path = save_model(
        tmp_path / "net", net, dims, kind="toy", training={"steps": 12, "data": "unit test"}
    )
    assert path.name == "net.safetensors" and (tmp_path / "net.json").exists()
    meta = json.loads((tmp_path / "net.json").read_text())
    assert (
        meta["kind"] == "toy"
        and meta["version"] == 1
        and meta["dims"]["inner"]["channels"] == [3, 9]
    )
    loaded = load_model(tmp_path / "net.json", Net, Dims, kind="toy")
    ckpt = read_model_checkpoint(path, kind="toy", dims_cls=Dims)
    assert ckpt.dims == dims and isinstance(ckpt.dims.inner.channels, tuple)
    assert ckpt.training == {"steps": 12, "data": "unit test"}
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_weights_hash_is_remembered_per_file_version(tmp_path, monkeypatch):
    import hashlib

    net = Net(Dims())
    path = save_model(tmp_path / "net", net, Dims(), kind="toy")
    first = weights_sha256(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: reads.append(1) or real(*a))
    assert weights_sha256(tmp_path / "net") == first and not reads  # remembered
    # Saved again with other weights of the same size (an atomic replace): hashed anew.
    with torch.no_grad():
        net.proj.weight.add_(1.0)
    save_model(tmp_path / "net", net, Dims(), kind="toy")
    assert weights_sha256(path) == real(path.read_bytes()).hexdigest() != first


def test_fp16_storage_is_loaded_back_as_float32(tmp_path):
    dims = Dims()
    net = Net(dims)
    save_model(tmp_path / "half", net, dims, kind="toy", dtype=torch.float16)
    raw = read_model_checkpoint(tmp_path / "half", kind="toy", dims_cls=Dims).state_dict
    assert raw["proj.weight"].dtype == torch.float16 and raw["steps"].dtype == torch.int64
    loaded = load_model(tmp_path / "half", Net, Dims, kind="toy")
    assert loaded.proj.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.proj.weight, net.proj.weight, atol=1e-3, rtol=1e-3)


def test_loading_checks_kind_version_shapes_and_names(tmp_path):
    save_model(tmp_path / "net", Net(Dims()), Dims(), kind="toy")
    with pytest.raises(CheckpointError, match="holds a 'toy' model, not a 'codec' model"):
        read_model_checkpoint(tmp_path / "net", kind="codec", dims_cls=Dims)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_model_checkpoint(tmp_path / "other", kind="toy", dims_cls=Dims)
    ckpt = read_model_checkpoint(tmp_path / "net", kind="toy", dims_cls=Dims)
    wide = Net(Dims(width=7))
    from core.checkpoint import load_weights

    with pytest.raises(
        CheckpointError, match=r"shape mismatch: proj.weight \(8, 6\) vs model \(8, 7\)"
    ):
        load_weights(wide, ckpt.state_dict)
    with pytest.raises(CheckpointError, match="missing: extra.weight"):
        m = Net(Dims())
        m.extra = nn.Linear(2, 2, bias=False)
        load_weights(m, ckpt.state_dict)
    with pytest.raises(CheckpointError, match="unknown dimension"):
        dims_from_dict(Dims, {"width": 3, "depth": 2})


def test_corrupt_and_foreign_files_are_rejected(tmp_path):
    path = save_model(tmp_path / "net", Net(Dims()), Dims(), kind="toy")
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32  # wreck the header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="cannot read"):
        read_model_checkpoint(path, kind="toy", dims_cls=Dims)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a vocalis checkpoint"):
        read_model_checkpoint(tmp_path / "plain", kind="toy", dims_cls=Dims)


def test_state_tree_round_trip_with_optimizer_and_rng(tmp_path):
    net = Net(Dims())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.proj.weight.sum().backward()
    opt.step()
    tree = {
        "optimizer": opt.state_dict(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "odd": {1: (2.5, float("inf"), None, True), "__x": "dunder key"},
    }
    save_tree(tmp_path / "state", tree)
    back = load_tree(tmp_path / "state")
    assert back["odd"] == {1: (2.5, float("inf"), None, True), "__x": "dunder key"}
    assert back["python"] == random.getstate()
    assert torch.equal(back["torch"], torch.get_rng_state())
    fresh = torch.optim.AdamW(Net(Dims()).parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert fresh.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)


def test_atomic_json_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"v": float("nan")})  # not valid JSON: refused, old file kept
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_permissions_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
        with atomic_path(tmp_path / "b.wav") as tmp:
            assert tmp.name.startswith(".b.wav.") and tmp.suffix == ".wav"
            tmp.write_bytes(b"y")
        with open(tmp_path / "c.bin", "wb"):
            pass
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.bin": 0o666 & ~umask, "b.wav": 0o666 & ~umask, "c.bin": 0o666 & ~umask}


def test_inference_dtype_is_bf16_only_where_asked_or_native():
    assert inference_dtype("cpu", "fp32") == torch.float32
    assert inference_dtype("cpu", "bf16") == torch.bfloat16
    native = torch.bfloat16 if fast_bf16("cpu") else torch.float32
    assert inference_dtype("cpu") == native
    assert not fast_bf16("meta")  # nothing but CUDA and the CPU has known bf16 units
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        inference_dtype("cpu", "fp16")


def test_average_is_the_weighted_mean_and_names_its_sources(tmp_path):
    dims = Dims()
    a, b = Net(dims), Net(dims)
    pa = save_model(tmp_path / "a", a, dims, kind="toy", training={"steps": 3})
    pb = save_model(tmp_path / "b", b, dims, kind="toy", dtype=torch.float16)
    tensors, meta = average_checkpoints([pa, pb], [1.0, 3.0])
    want = 0.25 * a.proj.weight + 0.75 * b.proj.weight.half().float()
    torch.testing.assert_close(tensors["proj.weight"], want.detach())
    assert tensors["proj.weight"].dtype == torch.float32  # stored as the first one stores it
    assert tensors["steps"].item() == 7  # not averaged: equal in both
    assert meta["kind"] == "toy" and meta["training"]["steps"] == 3
    sources = meta["training"]["averaged_from"]
    assert [s["weight"] for s in sources] == [0.25, 0.75]
    assert sources[1]["weights_sha256"] == weights_sha256(pb)
    out = write_model_files(tmp_path / "soup", tensors, meta)
    loaded = load_model(out, Net, Dims, kind="toy")
    torch.testing.assert_close(loaded.proj.weight, want.detach())
    half, _ = average_checkpoints([pa, pa], dtype=torch.float16)
    assert half["proj.weight"].dtype == torch.float16


def test_average_refuses_checkpoints_of_other_models(tmp_path):
    pa = save_model(tmp_path / "a", Net(Dims()), Dims(), kind="toy")
    wide = save_model(tmp_path / "w", Net(Dims(width=7)), Dims(width=7), kind="toy")
    other = save_model(tmp_path / "o", Net(Dims()), Dims(), kind="codec")
    net = Net(Dims())
    net.steps.fill_(8)
    counted = save_model(tmp_path / "c", net, Dims(), kind="toy")
    for paths, weights, message in [
        ([pa, wide], None, "other dims"),
        ([pa, other], None, "'codec' model, not a 'toy' model"),
        ([pa, counted], None, r"steps \(not floating point\) differs"),
        ([pa, pa], [1.0], "1 weights for 2 checkpoints"),
        ([pa, pa], [1.0, -1.0], "non-negative"),
        ([pa, tmp_path / "missing"], None, "no checkpoint at"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            average_checkpoints(paths, weights)
