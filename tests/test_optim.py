"""Tests for core.optim: decay groups, Schedule-Free AdamW, schedules, clipping, EMA, autocast."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from core.optim import (
    EMA,
    PRECISIONS,
    ScheduleFreeAdamW,
    adamw,
    autocast,
    clip_gradients,
    param_groups,
    warmup_cosine,
)

# ---------------------------------------------------------------------------- decay groups


class RMSNormLike(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))  # 1-D scale, not an nn norm class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.proj = nn.Linear(8, 8)
        self.ln = nn.LayerNorm(8)
        self.rms = RMSNormLike(8)
        self.alpha = nn.Parameter(torch.ones(8))  # e.g. a snake frequency
        self.frozen = nn.Parameter(torch.randn(4, 4), requires_grad=False)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight  # tied


def _ids(params: list[torch.Tensor]) -> list[int]:
    return [id(p) for p in params]


def test_param_groups_exact_membership() -> None:
    m = Toy()
    groups = param_groups(m, weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    decay, no_decay = (g["params"] for g in groups)
    assert sorted(_ids(decay)) == sorted(_ids([m.conv.weight, m.proj.weight]))
    expected_no_decay = [
        m.emb.weight,  # also head.weight: tied, must appear once
        m.conv.bias,
        m.proj.bias,
        m.ln.weight,
        m.ln.bias,
        m.rms.weight,
        m.alpha,
    ]
    assert sorted(_ids(no_decay)) == sorted(_ids(expected_no_decay))
    everything = _ids(decay) + _ids(no_decay)
    assert len(everything) == len(set(everything))  # each parameter exactly once
    assert id(m.frozen) not in everything


def test_param_groups_norms_weight_norm_and_empty_groups() -> None:
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 8, 3))
    m = nn.Sequential(conv, nn.LayerNorm([8, 5]))
    decay, no_decay = (g["params"] for g in param_groups(m, weight_decay=0.01))
    weight_norm = conv.parametrizations.weight
    assert _ids(decay) == [id(weight_norm.original1)]  # the direction v
    assert sorted(_ids(no_decay)) == sorted(
        _ids([weight_norm.original0, conv.bias, m[1].weight, m[1].bias])  # g, bias, 2-D LN
    )
    only_biases = param_groups(nn.LayerNorm(4), weight_decay=0.1)
    assert len(only_biases) == 1 and only_biases[0]["weight_decay"] == 0.0


def test_param_groups_honour_an_explicit_no_weight_decay_mark() -> None:
    m = nn.Conv1d(4, 4, 3)
    m.alpha = nn.Parameter(torch.ones(1, 4, 1))  # a snake frequency shaped for broadcasting
    m.alpha.no_weight_decay = True
    decay, no_decay = (g["params"] for g in param_groups(m, weight_decay=0.01))
    assert _ids(decay) == [id(m.weight)]
    assert sorted(_ids(no_decay)) == sorted(_ids([m.bias, m.alpha]))


def test_adamw_picks_implementation_and_honours_groups() -> None:
    m = Toy()
    opt = adamw(param_groups(m, 0.1), lr=1e-3)
    assert opt.defaults["fused"] is True  # torch 2.14 has a fused CPU AdamW
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    plain = adamw(m.proj.parameters(), lr=1e-3, weight_decay=0.2)
    assert plain.param_groups[0]["weight_decay"] == 0.2


# ---------------------------------------------------------------------------- Schedule-Free


def test_schedule_free_matches_hand_computed_steps() -> None:
    lr, b1, b2, eps, wd, warmup = 0.1, 0.9, 0.999, 1e-8, 0.1, 2
    grads = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5]]
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = ScheduleFreeAdamW(
        [p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, warmup_steps=warmup
    )

    # The paper's Algorithm 1 in plain floats, one coordinate at a time, x and z kept apart.
    x, z, v, weight_sum = [1.0, -2.0], [1.0, -2.0], [0.0, 0.0], 0.0
    for t, g in enumerate(grads, start=1):
        y = [(1 - b1) * z[i] + b1 * x[i] for i in range(2)]
        assert p.tolist() == pytest.approx(y, abs=1e-12)  # the model holds y while training
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        lr_t = lr * min(1.0, t / warmup) * math.sqrt(1 - b2**t)
        for i in range(2):
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            z[i] = z[i] - lr_t * g[i] / (math.sqrt(v[i]) + eps) - lr_t * wd * y[i]
        weight_sum += lr_t**2
        c = lr_t**2 / weight_sum
        x = [(1 - c) * x[i] + c * z[i] for i in range(2)]
        if t == 1:
            # By hand, ignoring eps: lr_1 = 0.1 * 1/2 * sqrt(0.001) and g / sqrt(v_1) =
            # sign(g) / sqrt(0.001), so z moves by 0.05 * (1 + sqrt(0.001) * wd * y_1); c_2 = 1.
            step1 = 0.05 * (1 + math.sqrt(1e-3) * 0.1 * 1.0)
            assert z[0] == pytest.approx(1.0 - step1, abs=1e-7)
            assert x[0] == z[0]

    y = [(1 - b1) * z[i] + b1 * x[i] for i in range(2)]
    assert p.tolist() == pytest.approx(y, abs=1e-6)
    assert y == pytest.approx([0.9814195418849729, -2.092418526795866], abs=1e-9)
    opt.eval()
    assert p.tolist() == pytest.approx(x, abs=1e-6)
    assert x == pytest.approx([0.9752643629616802, -2.0902479069425066], abs=1e-9)
    opt.train()
    assert p.tolist() == pytest.approx(y, abs=1e-6)


def _least_squares() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 32, generator=g) * torch.logspace(0, 1.5, 32)  # ill-conditioned columns
    return a, a @ torch.randn(32, generator=g)


def _train(make_opt: Callable[[list[nn.Parameter]], torch.optim.Optimizer], steps: int) -> float:
    a, b = _least_squares()
    w = nn.Parameter(torch.zeros(32))
    opt = make_opt([w])
    for _ in range(steps):
        opt.zero_grad()
        ((a @ w - b) ** 2).mean().backward()
        opt.step()
    if isinstance(opt, ScheduleFreeAdamW):
        opt.eval()
    with torch.no_grad():
        return ((a @ w - b) ** 2).mean().item()


def test_schedule_free_converges_and_beats_sgd() -> None:
    a, b = _least_squares()
    initial = (b**2).mean().item()
    steps = 300
    sf = _train(lambda p: ScheduleFreeAdamW(p, lr=0.1, warmup_steps=10), steps)
    assert sf < initial * 1e-4
    # SGD at its best step size, up to just below the stability limit 2 / L.
    smoothness = 2 * torch.linalg.matrix_norm(a, ord=2).item() ** 2 / len(a)
    best_sgd = min(
        _train(lambda p, c=c: torch.optim.SGD(p, lr=c / smoothness), steps)
        for c in (0.5, 1.0, 1.5, 1.9)
    )
    assert sf <= best_sgd


def test_schedule_free_modes_are_idempotent_and_eval_step_raises() -> None:
    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    opt = ScheduleFreeAdamW(m.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    y = [p.clone() for p in m.parameters()]
    opt.train()  # already training: nothing moves
    assert all(torch.equal(a, b) for a, b in zip(y, m.parameters()))
    opt.eval()
    x = [p.clone() for p in m.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(y, x))
    opt.eval()
    assert all(torch.equal(a, b) for a, b in zip(x, m.parameters()))
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    opt.train()
    assert all(torch.equal(a, b) for a, b in zip(y, m.parameters()))  # exact round trip


# ---------------------------------------------------------------------------- resume


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.body(x)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 6, generator=g), torch.randn(8, 2, generator=g)


def _roundtrip(obj: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


class Run:
    """A model, its optimizer and helpers, trained on a fixed stream of batches."""

    def __init__(self, kind: str, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = Net()
        self.sched = self.ema = None
        groups = param_groups(self.model, weight_decay=0.1)
        if kind == "schedule_free":
            self.opt = ScheduleFreeAdamW(groups, lr=0.01, warmup_steps=3, weight_decay=0.1)
        else:
            self.opt = adamw(groups, lr=0.01)
            self.sched = warmup_cosine(self.opt, warmup_steps=3, total_steps=8)
            self.ema = EMA(self.model, decay=0.9)

    def train(self, steps: range) -> None:
        for step in steps:
            x, target = _batch(step)
            self.opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(self.model(x), target).backward()
            clip_gradients(self.model.parameters(), 1.0)
            self.opt.step()
            if self.sched is not None:
                self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)

    def state(self) -> dict[str, Any]:
        parts = {"model": self.model.state_dict(), "opt": self.opt.state_dict()}
        if self.sched is not None:
            parts["sched"] = self.sched.state_dict()
        if self.ema is not None:
            parts["ema"] = self.ema.state_dict()
        return _roundtrip(parts)

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.sched is not None:
            self.sched.load_state_dict(state["sched"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def _assert_same(a: Run, b: Run) -> None:
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("save_in_eval", [False, True])
def test_schedule_free_resume_is_bit_exact(save_in_eval: bool) -> None:
    full = Run("schedule_free", seed=0)
    full.train(range(10))
    first = Run("schedule_free", seed=0)
    first.train(range(5))
    if save_in_eval:
        first.opt.eval()  # checkpoints usually hold x
    state = first.state()
    resumed = Run("schedule_free", seed=123)  # different init: everything must come from state
    resumed.load(state)
    assert resumed.opt.training is not save_in_eval
    resumed.opt.train()
    resumed.train(range(5, 10))
    _assert_same(full, resumed)
    full.opt.eval()
    resumed.opt.eval()
    _assert_same(full, resumed)
    assert resumed.opt.param_groups[0]["step"] == 10
    assert resumed.opt.param_groups[0]["weight_sum"] == full.opt.param_groups[0]["weight_sum"]


def test_adamw_cosine_and_ema_resume_is_bit_exact() -> None:
    full = Run("adamw", seed=0)
    full.train(range(10))
    first = Run("adamw", seed=0)
    first.train(range(5))
    resumed = Run("adamw", seed=123)
    resumed.load(first.state())
    resumed.train(range(5, 10))
    _assert_same(full, resumed)
    assert full.sched.get_last_lr() == resumed.sched.get_last_lr()
    assert resumed.ema.num_updates == 10
    for name, value in full.ema.shadow.items():
        assert torch.equal(value, resumed.ema.shadow[name]), name
    assert torch.equal(full.ema.buffers["calls"], resumed.ema.buffers["calls"])


# ---------------------------------------------------------------------------- helpers


def test_warmup_cosine_values() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = warmup_cosine(opt, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    expected = {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 60: 0.55, 110: 0.1, 500: 0.1}
    factor = sched.lr_lambdas[0]
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value, abs=1e-12), step
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == pytest.approx(2.0)
    assert lrs[60] == pytest.approx(1.1) and lrs[110] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone after warm-up
    with pytest.raises(ValueError):
        warmup_cosine(opt, warmup_steps=10, total_steps=5)


def test_warmup_cosine_follows_a_time_budget_when_it_runs_ahead_of_the_steps() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    spent = [0.0]
    factor = warmup_cosine(
        opt, warmup_steps=10, total_steps=110, min_lr_ratio=0.1, time_progress=lambda: spent[0]
    ).lr_lambdas[0]
    assert factor(4) == pytest.approx(0.5)  # warm-up is counted in steps only
    assert factor(60) == pytest.approx(0.55)  # no time spent: the step schedule
    spent[0] = 0.5
    assert factor(20) == pytest.approx(0.55)  # half the budget: halfway down the cosine
    assert factor(100) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    spent[0] = 1.3
    assert factor(20) == pytest.approx(0.1)  # past the budget: the floor


def test_clip_gradients() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])  # total norm 13
    assert clip_gradients([a, b], max_norm=0.0) == pytest.approx(13.0)
    assert a.grad.tolist() == [3.0, 4.0]  # measured only
    norm = clip_gradients(iter([a, b]), max_norm=1.0)
    assert isinstance(norm, float) and norm == pytest.approx(13.0)
    assert torch.cat([a.grad, b.grad]).norm().item() <= 1.0 + 1e-6
    assert clip_gradients([a, b], max_norm=5.0) == pytest.approx(1.0, abs=1e-5)  # no-op below
    assert clip_gradients([nn.Parameter(torch.zeros(1))], max_norm=1.0) == 0.0  # no grads


def test_ema_swapped_restores_and_warmup_decay() -> None:
    torch.manual_seed(0)
    m = nn.Linear(3, 3)
    ema = EMA(m, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    original = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    expected = original["weight"] + 0.9 * 1.0  # shadow moved 90 % of the way
    trained = {k: v.clone() for k, v in m.state_dict().items()}
    with ema.swapped(m):
        assert torch.allclose(m.weight, expected)
    assert all(torch.equal(trained[k], v) for k, v in m.state_dict().items())
    assert ema.shadow["weight"].dtype == torch.float32
    assert EMA(m, decay=0.5, warmup=False).current_decay() == 0.5


def test_autocast() -> None:
    assert PRECISIONS == ("fp32", "bf16")
    with pytest.raises(ValueError, match="fp32"):
        autocast("cpu", "fp16")
    x = torch.randn(2, 2)
    with autocast("cpu", "fp32"):
        assert (x @ x).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
