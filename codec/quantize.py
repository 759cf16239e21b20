"""Residual vector quantization with factorised, L2-normalised codebooks.

Each stage projects the residual down to a small code space (e.g. 8-d), finds the nearest
codebook entry by cosine similarity, and projects that entry back up. The stages run on the
remaining residual in turn; quantizer dropout trains the first n stages to stand alone, so
one model serves several bitrates. Codes unused for `dead_code_steps` training steps are
re-seeded from the current batch's projected encoder outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class VQOutput:
    quantized: Tensor  # (B, D, F) projected back up, straight-through to the input
    codes: Tensor  # (B, F) int64
    commitment_loss: Tensor  # (B,) per item: encoder output to (frozen) code
    codebook_loss: Tensor  # (B,) per item: code to (frozen) encoder output


@dataclass
class QuantizerOutput:
    quantized: Tensor  # (B, D, F) sum of the stages each item used
    codes: Tensor  # (B, Q', F) int64; Q' = requested n, or all Q stages in training dropout
    commitment_loss: Tensor  # scalar, summed over stages, averaged over items and frames
    codebook_loss: Tensor  # scalar, same
    n_codebooks: Tensor  # (B,) int64: how many stages each item used


class FactorizedVQ(nn.Module):
    """One codebook looked up in a low-dimensional, L2-normalised space."""

    def __init__(
        self, input_dim: int, codebook_size: int, codebook_dim: int, *, dead_code_steps: int = 0
    ) -> None:
        super().__init__()
        self.in_proj = weight_norm(nn.Conv1d(input_dim, codebook_dim, 1))
        self.out_proj = weight_norm(nn.Conv1d(codebook_dim, input_dim, 1))
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))  # (K, d)
        self.codebook.no_weight_decay = True
        self.dead_code_steps = dead_code_steps
        # Training steps since each code was last chosen (kept with the weights).
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def project(self, z: Tensor) -> Tensor:  # (B, D, F) -> (B, d, F)
        return self.in_proj(z)

    def nearest(self, z_e: Tensor) -> Tensor:  # (B, d, F) -> (B, F) int64
        with torch.no_grad():
            queries = F.normalize(z_e.transpose(1, 2), dim=-1)  # (B, F, d)
            keys = F.normalize(self.codebook, dim=-1)  # (K, d)
            return (queries @ keys.T).argmax(dim=-1)  # (B, F)

    def lookup(self, codes: Tensor) -> Tensor:  # (B, F) -> (B, d, F)
        return F.embedding(codes, self.codebook).transpose(1, 2)

    def decode(self, codes: Tensor) -> Tensor:  # (B, F) -> (B, D, F)
        return self.out_proj(self.lookup(codes))

    def forward(self, z: Tensor, active: Tensor | None = None) -> VQOutput:
        """Quantize `z` (B, D, F); `active` (B,) bool marks the items this stage serves."""
        z_e = self.project(z)  # (B, d, F)
        if self.training and self.dead_code_steps > 0:
            self._replace_dead_codes(z_e, active)
        codes = self.nearest(z_e)  # (B, F)
        z_q = self.lookup(codes)  # (B, d, F)
        commitment = (z_e - z_q.detach()).pow(2).mean(dim=(1, 2))  # (B,)
        codebook = (z_q - z_e.detach()).pow(2).mean(dim=(1, 2))  # (B,)
        z_q = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, gradient to z_e
        if self.training:
            self._count_usage(codes, active)
        return VQOutput(self.out_proj(z_q), codes, commitment, codebook)

    @torch.no_grad()
    def _count_usage(self, codes: Tensor, active: Tensor | None) -> None:
        if active is not None:
            codes = codes[active]
        if codes.numel() == 0:
            return  # this stage served nobody this step: no evidence either way
        used = torch.zeros_like(self.unused_steps, dtype=torch.bool)
        used[codes.reshape(-1)] = True
        self.unused_steps.add_(1).masked_fill_(used, 0)

    @torch.no_grad()
    def _replace_dead_codes(self, z_e: Tensor, active: Tensor | None) -> None:
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(1)  # (N,)
        if active is not None:
            z_e = z_e[active]
        vectors = z_e.transpose(1, 2).reshape(-1, z_e.shape[1])  # (B * F, d)
        if dead.numel() == 0 or vectors.shape[0] == 0:
            return
        pick = torch.randint(vectors.shape[0], (dead.numel(),), device=vectors.device)
        self.codebook[dead] = vectors[pick].to(self.codebook.dtype)
        self.unused_steps[dead] = 0


class ResidualVQ(nn.Module):
    """Q factorised stages on successive residuals, with quantizer dropout in training."""

    def __init__(
        self,
        input_dim: int,
        n_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        *,
        dropout: float = 0.0,
        dead_code_steps: int = 0,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            FactorizedVQ(input_dim, codebook_size, codebook_dim, dead_code_steps=dead_code_steps)
            for _ in range(n_codebooks)
        )
        self.dropout = dropout

    @property
    def n_codebooks(self) -> int:
        return len(self.stages)

    def check_n(self, n_codebooks: int | None) -> int:
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {self.n_codebooks}], got {n}")
        return n

    def sample_n(self, batch: int, device: torch.device) -> Tensor:
        """Per-item codebook counts (B,): all Q, or with probability `dropout` in training
        a uniform draw from [1, Q]."""
        n = torch.full((batch,), self.n_codebooks, dtype=torch.long, device=device)
        if self.training and self.dropout > 0:
            drop = torch.rand(batch, device=device) < self.dropout
            draw = torch.randint(1, self.n_codebooks + 1, (batch,), device=device)
            n = torch.where(drop, draw, n)
        return n

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """Quantize the latent (B, D, F). With `n_codebooks=None`, training mode applies
        quantizer dropout; otherwise every item uses exactly `n_codebooks` stages."""
        batch = z.shape[0]
        if n_codebooks is None:
            n_used = self.sample_n(batch, z.device)  # (B,)
        else:
            n_used = torch.full((batch,), self.check_n(n_codebooks), device=z.device)
        n_run = int(n_used.max())
        residual, quantized = z, torch.zeros_like(z)
        commitment = codebook = z.new_zeros(batch)  # (B,)
        codes = []
        for i, stage in enumerate(self.stages[:n_run]):
            active = i < n_used  # (B,) bool
            out = stage(residual, active)
            mask = active.to(z.dtype)  # (B,)
            quantized = quantized + out.quantized * mask[:, None, None]
            # Not detached: the stages telescope to z - residual_n, so the gradient to z
            # tends to the identity as the residual left shrinks.
            residual = residual - out.quantized
            commitment = commitment + out.commitment_loss * mask
            codebook = codebook + out.codebook_loss * mask
            codes.append(out.codes)
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),  # (B, n_run, F)
            commitment_loss=commitment.mean(),
            codebook_loss=codebook.mean(),
            n_codebooks=n_used,
        )

    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """(B, D, F) -> (B, n, F) int64 codes, no dropout and no training side effects."""
        n = self.check_n(n_codebooks)
        residual, codes = z, []
        for stage in self.stages[:n]:
            idx = stage.nearest(stage.project(residual))  # (B, F)
            residual = residual - stage.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """(B, n, F) int64 codes -> (B, D, F) quantized latent, for any n <= Q."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, n, F), got shape {tuple(codes.shape)}")
        self.check_n(codes.shape[1])
        parts = [stage.decode(codes[:, i]) for i, stage in enumerate(self.stages[: codes.shape[1]])]
        return torch.stack(parts).sum(dim=0)
