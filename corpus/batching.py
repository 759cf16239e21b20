"""Length-bucketed batch sampler for `DataLoader(dataset, batch_sampler=...)`.

Each epoch (deterministic for `(seed, epoch)`):
1. shuffle the indices (or keep them in order), cut them into chunks of
   `bucket_batches` batches' worth, and sort each chunk by duration, so a batch holds
   utterances of similar length (little padding) while batches still vary between epochs;
2. fill batches greedily: at most `batch_size` items and/or at most `max_seconds` of
   padded audio (`len(batch) * longest`); an item longer than `max_seconds` on its own
   becomes a batch of one (crop it in the dataset);
3. shuffle the batch order and deal batches to ranks round-robin, dropping the last
   `len(batches) % world_size` so every rank yields the same number of batches (DDP)
   and no index appears on two ranks.

Only durations are used, never audio, so iterating (or skipping k batches to resume an
epoch) costs microseconds per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class BucketBatchSampler:
    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_seconds: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        bucket_batches: int = 50,
    ) -> None:
        if max_seconds is None and batch_size is None:
            raise ValueError("give max_seconds, batch_size or both")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.bucket_batches = bucket_batches
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _chunk_size(self) -> int:
        if self.batch_size is not None:
            per_batch = self.batch_size
        else:
            mean = float(self.durations.mean()) if len(self.durations) else 1.0
            per_batch = max(1, int(self.max_seconds / max(mean, 1e-6)))
        return max(1, per_batch * self.bucket_batches)

    def _fill(self, order: np.ndarray) -> list[list[int]]:
        """Greedy batches over indices sorted by duration."""
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0.0
        for i in order.tolist():
            d = float(self.durations[i])
            grown = max(longest, d)
            full = self.batch_size is not None and len(batch) >= self.batch_size
            over = self.max_seconds is not None and grown * (len(batch) + 1) > self.max_seconds
            if batch and (full or over):
                batches.append(batch)
                batch, grown = [], d
            batch.append(i)
            longest = grown
        if batch:
            batches.append(batch)
        if self.drop_last and self.batch_size is not None:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every rank's batches of an epoch, in the order they are dealt."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.durations)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        size = self._chunk_size() if self.shuffle else max(n, 1)
        batches: list[list[int]] = []
        for start in range(0, n, size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(self.durations[chunk], kind="stable")]
            batches.extend(self._fill(chunk))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.world_size
        batches = batches[:usable]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        yield from batches[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.all_batches()) // self.world_size
