"""The GPU lease's collect step: what comes back from the device must be loadable here."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import torch

from core.checkpoint import save_model
from tests.test_tts_valle import TINY
from tts.valle import VALLE, load_valle

ROOT = Path(__file__).resolve().parents[1]


def _collect():
    spec = importlib.util.spec_from_file_location(
        "collect", ROOT / "training" / "gpu_lease" / "collect.py"
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
    _collect().main(str(valle_run), str(codec_run), str(dest))

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
