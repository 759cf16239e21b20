"""Optimizers and training helpers shared by every vocalis model (codec, TTS, ASR).

- :func:`param_groups`: the model decides which parameters get weight decay (matrices only).
- :func:`adamw`: torch AdamW with the fastest implementation the parameters' device allows.
- :class:`ScheduleFreeAdamW`: Schedule-Free AdamW (Defazio et al. 2024), no lr schedule needed.
- :func:`warmup_cosine`: linear warm-up then cosine decay, for plain AdamW.
- :func:`clip_gradients`, :class:`EMA`, :func:`autocast`: the rest of a training step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrize import ParametrizationList

PRECISIONS = ("fp32", "bf16")

# Modules whose own parameters never get weight decay, whatever their shape: embedding tables
# are lookups, not linear maps, and norm scales (LayerNorm with a 2-D normalized_shape has a
# 2-D weight) should stay free to set the activation scale.
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)

# Device types with a fused (single-kernel) AdamW in torch 2.14. CPU is included on purpose:
# on a 25 M-parameter model with 2 cores the fused CPU kernel takes ~15 ms per step against
# ~75 ms for foreach and ~230 ms for the per-tensor loop (see benchmarks/bench_optim.py).
_FUSED_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps")


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Ids of parameters owned by an embedding or norm module, a weight-norm magnitude, or
    marked by their module with ``p.no_weight_decay = True`` (e.g. a (1, C, 1) snake alpha)."""
    ids: set[int] = {id(p) for p in model.parameters() if getattr(p, "no_weight_decay", False)}
    for module in model.modules():
        if isinstance(module, _NO_DECAY_MODULES):
            ids.update(id(p) for p in module.parameters(recurse=False))
        if isinstance(module, ParametrizationList) and hasattr(module, "original0"):
            # parametrizations.weight_norm keeps the magnitude g (out, 1, ...) as original0.
            if any(type(m).__name__ == "_WeightNorm" for m in module):
                ids.add(id(module.original0))
        for name, p in module.named_parameters(recurse=False):
            # The legacy nn.utils.weight_norm keeps the magnitude as `<name>_g` beside `<name>_v`.
            if name.endswith("_g") and hasattr(module, name[:-2] + "_v"):
                ids.add(id(p))
    return ids


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into a decay and a no-decay group.

    Decay goes only to weight matrices and conv kernels (``ndim >= 2``) that are not embedding
    tables, norm weights or weight-norm magnitudes. Biases, norm scales, embeddings and every
    1-D parameter (a snake ``alpha``, an RMSNorm scale) get none. Frozen parameters are left
    out, tied parameters appear once, and an empty group is dropped.
    """
    skip = _no_decay_ids(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():  # yields a shared parameter once
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in skip else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _flat_tensors(params: list[Any]) -> list[torch.Tensor]:
    tensors: list[torch.Tensor] = []
    for item in params:
        if isinstance(item, dict):
            group = item["params"]
            tensors.extend([group] if isinstance(group, torch.Tensor) else group)
        else:
            tensors.append(item)
    return tensors


def adamw(
    params: Iterable[Any],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.AdamW:
    """torch AdamW, fused when all parameters sit on one device type with a fused kernel.

    ``params`` is an iterable of tensors or of groups (e.g. from :func:`param_groups`); a
    group's own ``weight_decay`` wins over the argument. Otherwise ``foreach=True``.
    """
    params = [
        {**p, "params": list(p["params"])} if isinstance(p, dict) and "params" in p else p
        for p in params
    ]
    tensors = _flat_tensors(params)
    device_types = {t.device.type for t in tensors}
    fused = (
        len(device_types) == 1
        and next(iter(device_types)) in _FUSED_DEVICE_TYPES
        and all(t.is_floating_point() for t in tensors)
    )
    options: dict[str, bool] = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **options
    )


class ScheduleFreeAdamW(torch.optim.Optimizer):
    r"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1).

    Per parameter it keeps ``z`` (the base AdamW-like sequence), ``x`` (the weighted average of
    the z's, the weights to evaluate and ship) and ``v`` (the second moment). During training
    the parameters hold ``y``, the point where gradients are taken. With step t = 1, 2, ...,
    warm-up length T_w and ``z_1 = x_1 = y_1 =`` the initial weights:

        g_t     = grad f(y_t)
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        lr_t    = lr * min(1, t / T_w) * sqrt(1 - beta2^t)   # warm-up, Adam bias correction
        z_{t+1} = z_t - lr_t * (g_t / (sqrt(v_t) + eps) + weight_decay * y_t)  # decay at y
        w_t     = t^r * lr_t^weight_lr_power,   W_t = w_1 + ... + w_t
        c_{t+1} = w_t / W_t
        x_{t+1} = (1 - c_{t+1}) * x_t + c_{t+1} * z_{t+1}
        y_{t+1} = (1 - beta1) * z_{t+1} + beta1 * x_{t+1}

    With r = 0 and weight_lr_power = 2 this is the paper's c_{t+1} = lr_t^2 / sum_i lr_i^2. As
    in the paper, Adam's bias correction is folded into lr_t (so eps meets the uncorrected
    sqrt(v_t)), and the averaging weights use that corrected, warmed-up lr_t.
    No lr schedule is needed (nor wanted); ``lr`` may still be changed between steps.

    Call ``.eval()`` before evaluating or exporting (parameters become x) and ``.train()``
    before training again (parameters become y); both are idempotent and exact, since y is
    always recomputed from the stored x and z. ``step()`` refuses to run in eval mode. Storing
    x costs one buffer more than AdamW; in exchange switching modes never loses precision and
    beta1 = 0 works. ``state_dict()`` carries the mode, step count and weight sum, so a resumed
    run continues bit-exactly. Parameters without a gradient in a step are left untouched.
    BatchNorm running statistics are gathered at y; recompute them at x if evaluation needs them.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2.5e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0 or warmup_steps < 0:
            raise ValueError("lr, eps, weight_decay and warmup_steps must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
            "step": 0,  # steps taken by this group
            "weight_sum": 0.0,  # W_t
            "train_mode": True,  # parameters hold y (True) or x (False)
        }
        super().__init__(params, defaults)

    @property
    def training(self) -> bool:
        return all(group["train_mode"] for group in self.param_groups)

    @torch.no_grad()
    def train(self) -> None:
        """Load y = (1 - beta1) z + beta1 x into the parameters (no-op if already there)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                params = [p for p in group["params"] if self.state.get(p)]
                if params:
                    xs = [self.state[p]["x"] for p in params]
                    zs = [self.state[p]["z"] for p in params]
                    torch._foreach_copy_(params, xs)
                    torch._foreach_lerp_(params, zs, 1.0 - group["betas"][0])
                group["train_mode"] = True

    @torch.no_grad()
    def eval(self) -> None:
        """Load the average x into the parameters (no-op if already there)."""
        for group in self.param_groups:
            if group["train_mode"]:
                params = [p for p in group["params"] if self.state.get(p)]
                if params:
                    torch._foreach_copy_(params, [self.state[p]["x"] for p in params])
                group["train_mode"] = False

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if not self.training:
            raise RuntimeError(
                "ScheduleFreeAdamW.step() called in eval mode: the parameters hold the average "
                "x, not the training point y. Call optimizer.train() before training steps."
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        ys = [p for p in group["params"] if p.grad is not None]
        if not ys:
            return
        if any(p.grad.is_sparse for p in ys):
            raise RuntimeError("ScheduleFreeAdamW does not support sparse gradients")
        beta1, beta2 = group["betas"]
        t = group["step"] + 1
        warmup = min(1.0, t / group["warmup_steps"]) if group["warmup_steps"] > 0 else 1.0
        lr_t = group["lr"] * warmup * math.sqrt(1.0 - beta2**t)
        weight = t ** group["r"] * lr_t ** group["weight_lr_power"]
        weight_sum = group["weight_sum"] + weight
        c = weight / weight_sum if weight_sum > 0.0 else 0.0
        group["step"], group["weight_sum"] = t, weight_sum

        for p in ys:
            state = self.state[p]
            if not state:
                state["z"] = p.detach().clone()
                state["x"] = p.detach().clone()
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        grads = [p.grad for p in ys]
        zs = [self.state[p]["z"] for p in ys]
        xs = [self.state[p]["x"] for p in ys]
        vs = [self.state[p]["exp_avg_sq"] for p in ys]

        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, group["eps"])
        if group["weight_decay"] != 0.0:  # decay taken at y, before y moves
            torch._foreach_add_(zs, ys, alpha=-lr_t * group["weight_decay"])
        torch._foreach_addcdiv_(zs, grads, denom, value=-lr_t)  # z -= lr_t g / (sqrt(v) + eps)
        del denom
        torch._foreach_lerp_(xs, zs, c)  # x <- (1 - c) x + c z
        torch._foreach_copy_(ys, xs)  # y <- x + (1 - beta1)(z - x), exactly as train() does
        torch._foreach_lerp_(ys, zs, 1.0 - beta1)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.1,
    time_progress: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``total_steps``, then flat.

    The factor at scheduler step s is (s + 1) / warmup_steps while s < warmup_steps, so the first
    step already trains at lr / warmup_steps; 1 at s = warmup_steps; (1 + min_lr_ratio) / 2
    halfway to ``total_steps``; ``min_lr_ratio`` from ``total_steps`` on. For plain AdamW only:
    :class:`ScheduleFreeAdamW` has its own warm-up and needs no schedule.

    ``time_progress`` (a training time budget: elapsed / budget) makes the decay follow
    whichever of the steps and the time is further along, so a run cut short by its time
    budget still ends at the floor.
    """
    if warmup_steps < 0 or total_steps < warmup_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps, got {warmup_steps}, {total_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if step >= total_steps:
            return min_lr_ratio
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        if time_progress is not None:
            progress = max(progress, time_progress())
        if progress >= 1.0:
            return min_lr_ratio
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Scale gradients in place so their total L2 norm is at most ``max_norm``.

    Returns the norm before clipping. ``max_norm <= 0`` only measures. A non-finite norm is
    returned as is and the gradients are left untouched, so the caller can skip the step.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    total = nn.utils.get_total_norm([p.grad for p in params])
    norm = float(total)
    if max_norm > 0.0 and math.isfinite(norm) and norm > max_norm:
        nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return norm


class EMA:
    """Exponential moving average of a model's parameters (shadow kept in float32).

    ``update`` does shadow <- d * shadow + (1 - d) * param with d = decay, or, with ``warmup``,
    d = min(decay, (1 + n) / (10 + n)) after n earlier updates, so early averages are not
    dominated by the random initialisation. Buffers (e.g. BatchNorm statistics) are copied, not
    averaged. Create the EMA after moving the model to its device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone()
            for name, p in model.named_parameters()
            if p.is_floating_point()
        }
        self.buffers: dict[str, torch.Tensor] = {
            name: b.detach().clone() for name, b in model.named_buffers()
        }

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        names = list(self.shadow)
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_(
            [self.shadow[n] for n in names], [params[n].detach().float() for n in names], weight
        )
        for name, b in model.named_buffers():
            self.buffers[name].copy_(b)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights (cast to the model's dtypes) and buffers into ``model``."""
        params = dict(model.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value)
        for name, b in model.named_buffers():
            b.copy_(self.buffers[name])

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Evaluate with the EMA weights inside the block; the originals come back afterwards."""
        with torch.no_grad():
            backup = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in model.state_dict(keep_vars=True).items():
                    v.copy_(backup[k])

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
            "buffers": {k: v.clone() for k, v in self.buffers.items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Strict: the saved names and shapes must match the model this EMA was built for."""
        for key, mine in (("shadow", self.shadow), ("buffers", self.buffers)):
            theirs = state[key]
            if set(theirs) != set(mine):
                missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
                raise KeyError(f"EMA {key} mismatch: missing {missing}, unexpected {extra}")
            for name, value in theirs.items():
                if value.shape != mine[name].shape:
                    raise ValueError(
                        f"EMA {key}[{name!r}]: shape {tuple(value.shape)} "
                        f"!= {tuple(mine[name].shape)}"
                    )
                mine[name].copy_(value)
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context: ``"bf16"`` autocasts to bfloat16, ``"fp32"`` does nothing."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
