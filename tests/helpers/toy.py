"""A tiny regression task for trainer tests: an MLP with dropout fitting a fixed function."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from training.trainer import LossOutput, TrainConfig, TrainTask


@dataclass(frozen=True)
class ToyDims:
    n_in: int = 8
    hidden: int = 32
    dropout: float = 0.1


class ToyModel(nn.Module):
    def __init__(self, dims: ToyDims):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dims.n_in, dims.hidden),
            nn.GELU(),
            nn.Dropout(dims.dropout),
            nn.LayerNorm(dims.hidden),
            nn.Linear(dims.hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_in) -> (B,)
        return self.net(x).squeeze(-1)


class ToyTask(TrainTask):
    kind = "toy"

    def __init__(self, dims: ToyDims = ToyDims(), seed: int = 0):
        torch.manual_seed(seed)
        self.dims = dims
        self.model = ToyModel(dims)

    def parts(self):
        return {"model": self.model}

    def loss(self, part, batch, modules):
        x, y = batch
        loss = nn.functional.mse_loss(modules["model"](x), y)
        return LossOutput(loss, {"mse": float(loss.detach())}, items=x.shape[0])

    def export(self):
        return self.model, self.dims


def toy_dataset(n: int = 256, n_in: int = 8, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    return TensorDataset(x, y)


def ddp_comparison_config(out_dir: str, batch_size: int) -> TrainConfig:
    """The run compared between one process and two (tests/helpers/ddp_train.py)."""
    return TrainConfig(
        out_dir=out_dir,
        max_steps=12,
        batch_size=batch_size,
        lr=1e-2,
        warmup_steps=3,
        checkpoint_every=6,
        progress=False,
        log_every=4,
    )
