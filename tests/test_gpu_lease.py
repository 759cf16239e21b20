"""The GPU lease's collect step: what comes back from the device must be loadable here."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import torch

from core.checkpoint import read_safetensors, save_model
from tests.test_tts_valle import TINY
from tts.valle import VALLE, load_valle

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    """A training/gpu_lease script as a module (the device runs them as plain files)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "training" / "gpu_lease" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_collect_brings_back_an_fp16_valle_with_its_record_and_the_codec_run(tmp_path):
    valle_run, codec_run, dest = tmp_path / "valle", tmp_path / "codec", tmp_path / "back"
    torch.manual_seed(3)
    model = VALLE(dataclasses.replace(TINY, phoneme_vocab='{"a": 1}'))
    save_model(valle_run / "model", model, model.dims, kind="valle", training={"steps": 7})
    (valle_run / "log.jsonl").write_text('{"step": 7}\n')
    codec_run.mkdir()
    (codec_run / "model.safetensors").write_bytes(b"weights")  # copied as they are
    _script("collect").main(str(valle_run), str(codec_run), str(dest))

    back = load_valle(dest / "valle.safetensors")
    assert back.dims == model.dims
    for name, value in model.state_dict().items():
        got = back.state_dict()[name]
        if value.is_floating_point():
            assert torch.equal(got, value.half().float())  # stored in fp16, loaded as fp32
    meta = json.loads((dest / "valle.json").read_text())
    assert meta["training"]["steps"] == 7
    assert (dest / "valle_log.jsonl").read_text() == '{"step": 7}\n'
    assert (dest / "codec_model.safetensors").read_bytes() == b"weights"


def test_int8_transport_halves_the_bytes_and_unpacks_to_a_loadable_checkpoint(tmp_path, capsys):
    transport = _script("transport")
    torch.manual_seed(4)
    model = VALLE(dataclasses.replace(TINY, phoneme_vocab='{"a": 1}'))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # norms and biases are not all ones and zeros
    fp16 = save_model(tmp_path / "v", model, model.dims, kind="valle", dtype=torch.float16)
    packed = tmp_path / "v.q8.safetensors"
    assert transport.main(["pack", str(fp16), str(packed)]) == 0
    assert packed.stat().st_size < fp16.stat().st_size  # about half for the shipped VALL-E
    stored = read_safetensors(packed)[1]
    assert {t.dtype for k, t in stored.items() if k.endswith(".q8")} == {torch.int8}
    assert transport.main(["unpack", str(packed), str(tmp_path / "back")]) == 0

    back = load_valle(tmp_path / "back.safetensors")
    assert back.dims == model.dims
    assert json.loads((tmp_path / "back.json").read_text())["kind"] == "valle"
    source = load_valle(fp16).state_dict()
    for name, want in source.items():
        got = back.state_dict()[name]
        if want.dim() >= 2 and want.numel() >= transport.MIN_NUMEL:
            rows = want.reshape(want.shape[0], -1).abs().amax(dim=1)  # half a step per row
            bound = (rows / 254 + 1e-7).reshape(-1, *([1] * (want.dim() - 1)))
            assert ((got - want).abs() <= bound).all(), name
        else:
            assert torch.equal(got, want), name  # small tensors travel as they are

    capsys.readouterr()
    assert transport.main(["unpack", str(fp16), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an int8 transport file" in err[0]
    assert transport.main(["pack", str(tmp_path / "none"), str(tmp_path / "y")]) == 2
