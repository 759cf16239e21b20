"""Deterministic, shardable batch sampling, so a resumed or distributed run sees exactly the
batches a single uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from corpus.batching import BucketBatchSampler


class RandomBatchSampler:
    """Fixed-size shuffled batches, split across processes.

    Each epoch is a permutation seeded by (seed, epoch), cut into global batches of
    `batch_size * world_size` indices; process `rank` takes its contiguous slice of each.
    So two processes with batch b see, together, exactly the batches one process with
    batch 2b sees. The last incomplete global batch is dropped, so every process yields
    the same number of batches (DDP needs that).
    """

    def __init__(
        self, num_items: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_items < batch_size * world_size:
            raise ValueError(
                f"{num_items} items cannot fill one batch of {batch_size} x {world_size} process(es)"
            )
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        step = self.batch_size * self.world_size
        for i in range(len(self)):
            start = i * step + self.rank * self.batch_size
            yield order[start : start + self.batch_size]


def bucket_sampler_factory(
    durations: Sequence[float], *, batch_seconds: float, batch_size: int, seed: int
):
    """A `Trainer` sampler factory: length-bucketed batches of similar durations (at most
    `batch_seconds` of padded audio and `batch_size` items), split across processes."""

    def factory(rank: int, world_size: int) -> BucketBatchSampler:
        return BucketBatchSampler(
            durations,
            max_seconds=batch_seconds,
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    return factory
