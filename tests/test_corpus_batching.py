"""BucketBatchSampler: determinism, equal batches per rank, coverage, budgets."""

import random

import pytest
import torch

from corpus.batching import BucketBatchSampler
from corpus.dataset import AudioExample, collate_audio

DURATIONS = [random.Random(0).uniform(0.5, 12.0) for _ in range(1003)]


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_deterministic_per_seed_and_epoch():
    a = BucketBatchSampler(DURATIONS, max_seconds=60.0, seed=1)
    b = BucketBatchSampler(DURATIONS, max_seconds=60.0, seed=1)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert _epoch(a, 1) == _epoch(b, 1) != _epoch(a, 0)
    assert _epoch(BucketBatchSampler(DURATIONS, max_seconds=60.0, seed=2), 0) != _epoch(b, 0)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_ranks_equal_and_disjoint(world_size):
    samplers = [BucketBatchSampler(DURATIONS, max_seconds=45.0, seed=7, rank=r,
                                   world_size=world_size) for r in range(world_size)]  # fmt: skip
    epochs = [_epoch(s, 5) for s in samplers]
    assert len({len(e) for e in epochs}) == 1 and len(epochs[0]) == len(samplers[0])
    seen = [i for e in epochs for batch in e for i in batch]
    assert len(seen) == len(set(seen))
    if world_size == 1:
        assert sorted(seen) == list(range(len(DURATIONS)))


def test_budgets_respected_and_buckets_tight():
    for batch in BucketBatchSampler(DURATIONS, max_seconds=40.0, batch_size=8):
        longest = max(DURATIONS[i] for i in batch)
        assert len(batch) <= 8 and longest * len(batch) <= 40.0
    batches = list(BucketBatchSampler(DURATIONS, max_seconds=60.0))
    padding = sum(max(DURATIONS[i] for i in b) * len(b) for b in batches) / sum(DURATIONS)
    assert padding < 1.15  # length bucketing keeps padding small


def test_batch_size_drop_last_no_shuffle_and_long_items():
    s = BucketBatchSampler(DURATIONS, batch_size=10, drop_last=True, shuffle=False)
    batches = list(s)
    assert all(len(b) == 10 for b in batches) and len(batches) == 100
    flat = [DURATIONS[i] for b in batches for i in b]
    assert flat == sorted(flat)
    s = BucketBatchSampler([1.0, 30.0, 2.0], max_seconds=10.0)
    assert sorted(map(sorted, s)) == [[0, 2], [1]]  # too long alone: a batch of one
    with pytest.raises(ValueError):
        BucketBatchSampler(DURATIONS)
    with pytest.raises(ValueError):
        BucketBatchSampler(DURATIONS, batch_size=2, rank=2, world_size=2)


def test_resume_by_skipping_is_cheap_and_consistent():
    s = BucketBatchSampler(DURATIONS * 50, max_seconds=120.0, seed=0)
    s.set_epoch(3)
    full = list(s)
    import itertools

    assert list(itertools.islice(iter(s), 10, None)) == full[10:]


def test_collate_pads_and_reports_lengths():
    ex = [AudioExample(torch.ones(n), 16000, None, "s", f"u{n}", n) for n in (3, 5, 2)]
    batch = collate_audio(ex)
    assert batch.wav.shape == (3, 5) and batch.lengths.tolist() == [3, 5, 2]
    assert batch.wav[0, 3:].abs().sum() == 0 and batch.wav[1].sum() == 5
    assert batch.indices.tolist() == [3, 5, 2]
