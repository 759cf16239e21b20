import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_model, read_model_checkpoint
from tests.helpers.toy import ToyDims, ToyModel, ToyTask, ddp_comparison_config, toy_dataset
from training.sampler import RandomBatchSampler
from training.trainer import LossOutput, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, **overrides):
    base = dict(
        out_dir=str(tmp_path),
        max_steps=10,
        batch_size=16,
        lr=5e-3,
        warmup_steps=2,
        checkpoint_every=5,
        progress=False,
        log_every=2,
    )
    return TrainConfig(**{**base, **overrides})


def test_training_lowers_the_loss_and_exports_a_loadable_model(tmp_path):
    task = ToyTask()
    result = Trainer(task, _config(tmp_path, max_steps=60, lr=1e-2), toy_dataset()).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(2, 61, 2))
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert all(r["items_per_s"] > 0 and "model/grad_norm" in r and "model/lr" in r for r in log)
    model = load_model(result.model_path, ToyModel, ToyDims, kind="toy")
    for name, value in model.state_dict().items():
        assert torch.equal(value, task.model.state_dict()[name])
    training = read_model_checkpoint(result.model_path, kind="toy", dims_cls=ToyDims).training
    assert training["steps"] == 60 and training["processes"] == 1
    assert result.metrics["step"] == 60 and result.metrics["loss"] == log[-1]["loss"]


class _Crash(Exception):
    pass


class _CrashingTask(ToyTask):
    """Dies on its n-th loss call, like a run killed mid-training."""

    def __init__(self, crash_at: int):
        super().__init__()
        self.calls, self.crash_at = 0, crash_at

    def loss(self, part, batch, modules) -> LossOutput:
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash
        return super().loss(part, batch, modules)


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer="adamw", ema_decay=0.9),
        dict(optimizer="schedulefree", grad_accum=2),
        dict(optimizer="adamw", precision="bf16"),
    ],
    ids=["adamw-ema", "schedulefree-accum", "bf16"],
)
def test_resume_continues_exactly(tmp_path, options):
    # 16 items per batch over 256 items: 16 batches per epoch, so 10 steps with accumulation
    # cross an epoch boundary; dropout makes the result depend on the restored RNG.
    straight = Trainer(ToyTask(), _config(tmp_path / "a", **options), toy_dataset()).fit()
    accum = options.get("grad_accum", 1)
    with pytest.raises(_Crash):  # dies during step 8, after the checkpoint at step 5
        Trainer(
            _CrashingTask(crash_at=7 * accum + 1), _config(tmp_path / "b", **options), toy_dataset()
        ).fit()
    resumed = Trainer(ToyTask(seed=123), _config(tmp_path / "b", **options), toy_dataset()).fit()
    assert resumed.step == straight.step == 10
    a = read_model_checkpoint(straight.model_path, kind="toy", dims_cls=ToyDims).state_dict
    b = read_model_checkpoint(resumed.model_path, kind="toy", dims_cls=ToyDims).state_dict
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == [
        2,
        4,
        6,
        8,
        10,
    ]  # lines logged after the checkpoint were replaced, not duplicated
    kept = sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("step_*"))
    assert kept == ["step_00000005", "step_00000010"]


def test_a_stopped_run_exports_its_newest_checkpoint_and_a_finished_one_stays_finished(tmp_path):
    with pytest.raises(_Crash):  # killed during step 8: the newest checkpoint is step 5
        Trainer(_CrashingTask(crash_at=8), _config(tmp_path), toy_dataset()).fit()
    with pytest.raises(FileNotFoundError):
        Trainer(ToyTask(), _config(tmp_path / "empty"), toy_dataset()).export_latest()
    trainer = Trainer(ToyTask(seed=9), _config(tmp_path), toy_dataset())
    path = trainer.export_latest()
    training = read_model_checkpoint(path, kind="toy", dims_cls=ToyDims).training
    assert trainer.step == training["steps"] == 5 and training["wall_time_s"] >= 0
    # Resuming at max_steps trains no further step and exports the same weights.
    exported = read_model_checkpoint(path, kind="toy", dims_cls=ToyDims).state_dict
    again = Trainer(ToyTask(seed=3), _config(tmp_path, max_steps=5), toy_dataset()).fit()
    assert again.step == 5
    model = read_model_checkpoint(again.model_path, kind="toy", dims_cls=ToyDims).state_dict
    assert all(torch.equal(exported[k], model[k]) for k in exported)


def test_a_time_budget_stops_checkpoints_and_exports_and_decays_the_lr(tmp_path):
    # A budget every step overruns: one step, then a checkpoint, the model and a log line.
    result = Trainer(ToyTask(), _config(tmp_path, max_seconds=1e-9), toy_dataset()).fit()
    assert result.step == 1 and result.model_path is not None and result.model_path.exists()
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*")] == ["step_00000001"]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]
    # Past warm-up, a budget that is spent puts the learning rate at the cosine's floor.
    config = _config(tmp_path / "b", max_seconds=1e-9, warmup_steps=0, min_lr_ratio=0.1)
    result = Trainer(ToyTask(), config, toy_dataset()).fit()
    assert result.metrics["model/lr"] == pytest.approx(0.1 * config.lr)
    # A resumed run counts the time it trained before: a spent budget trains no further.
    again = Trainer(ToyTask(), config, toy_dataset()).fit()
    assert again.step == 1


def test_samplers_of_two_processes_split_the_doubled_batch():
    one = RandomBatchSampler(100, 8, seed=3)
    two = [RandomBatchSampler(100, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):
        for s in (one, *two):
            s.set_epoch(epoch)
        for full, a, b in zip(one, *two, strict=True):
            assert full == a + b
    assert len(one) == len(two[0]) == 12
    one.set_epoch(0)
    first = list(one)
    one.set_epoch(1)
    assert list(one) != first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_with_doubled_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(ROOT / "tests/helpers/ddp_train.py"),
        str(tmp_path / "ddp"),
        "8",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    task = ToyTask(ToyDims(dropout=0.0))
    Trainer(task, ddp_comparison_config(str(tmp_path / "single"), 16), toy_dataset()).fit()

    ddp = read_model_checkpoint(tmp_path / "ddp" / "model", kind="toy", dims_cls=ToyDims)
    single = read_model_checkpoint(tmp_path / "single" / "model", kind="toy", dims_cls=ToyDims)
    assert ddp.training["processes"] == 2 and ddp.training["effective_batch"] == 16
    for name, value in single.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[name], value, rtol=1e-5, atol=1e-6)
    # Both processes wrote their RNG state into the shared checkpoint.
    assert {p.name for p in (tmp_path / "ddp/checkpoints/step_00000012").glob("rng_*.json")} == {
        "rng_0.json",
        "rng_1.json",
    }


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_steps=0),
        dict(optimizer="sgd"),
        dict(precision="fp8"),
        dict(grad_accum=0),
        dict(ema_decay=1.0),
        dict(max_seconds=-1.0),
    ],
)
def test_config_rejects_bad_values(tmp_path, bad):
    with pytest.raises(ValueError):
        _config(tmp_path, **bad)


def test_too_little_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot fill one batch"):
        Trainer(ToyTask(), _config(tmp_path, batch_size=512), toy_dataset())


def test_a_cpu_run_hands_freed_memory_back_after_every_step(tmp_path, monkeypatch):
    """Batches of varying length leave glibc's heap fragmented; the trainer trims it after
    each step on the CPU (where there is no glibc the call says so and does nothing)."""
    import training.trainer as trainer

    assert trainer.release_free_memory() in (True, False)
    calls = []
    monkeypatch.setattr(trainer, "release_free_memory", lambda: calls.append(1) or True)
    Trainer(ToyTask(), _config(tmp_path, max_steps=6, device="cpu"), toy_dataset()).fit()
    assert len(calls) == 6


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_has_it(tmp_path, monkeypatch, native):
    import training.trainer

    monkeypatch.setattr(training.trainer, "fast_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert training.trainer.training_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert training.trainer.training_precision("bf16", cpu) == "bf16"  # as given, with a warning
    result = Trainer(ToyTask(), _config(tmp_path / "run", precision="auto"), toy_dataset()).fit()
    meta = read_model_checkpoint(result.model_path, kind="toy", dims_cls=ToyDims).training
    assert meta["precision"] == ("bf16" if native else "fp32")
