"""Lossless entropy coding of codec codes: a byte-wise range coder driven by one adaptive
frequency model per codebook.

The models start uniform, or from a code prior counted on training audio (codec/prior.py;
the file names it), and learn each codebook's code distribution as the file goes (both
sides make the same updates, so no table is stored in the file); statistics carry over from
chunk to chunk, while the coder itself is flushed at the end of each chunk so every chunk
is a whole number of bytes with its own checksum. The coder is the carry-less range coder
(32-bit low and range, byte output, totals below 2**16); its decoder accepts any bytes and
always returns symbols in range, so corrupt input can give wrong codes but never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TOP = 1 << 24
_BOT = 1 << 16
_MASK = (1 << 32) - 1
_INCREMENT = 32  # added to a symbol's count each time it is coded
_LIMIT = _BOT  # counts are halved when their total would pass this


class EntropyError(ValueError):
    """Bytes that cannot be range-decoded into the expected number of codes."""


def max_encoded_size(packed_bytes: int) -> int:
    """A generous bound on a range-coded chunk's size, for validating lengths."""
    return 2 * packed_bytes + 64


class AdaptiveModel:
    """Symbol counts in a Fenwick tree: cumulative lookups and updates in O(log K)."""

    def __init__(self, size: int, counts: Sequence[int] | None = None) -> None:
        """Uniform, or starting from `counts` (`size` of them, each >= 1, total below
        the limit): a prior learnt elsewhere (codec/prior.py)."""
        self.size = size
        self.span = 1 << max(0, (size - 1).bit_length())  # power of two for the descent
        start = [1] * size if counts is None else [int(c) for c in counts]
        if len(start) != size or min(start) < 1 or sum(start) + _INCREMENT > _LIMIT:
            raise ValueError(f"a model's counts need {size} values >= 1 totalling < {_LIMIT}")
        self.counts = start + [0] * (self.span - size)
        self._rebuild()

    def _rebuild(self) -> None:
        tree = [0] * (self.span + 1)
        for i, c in enumerate(self.counts, start=1):
            tree[i] += c
            parent = i + (i & -i)
            if parent <= self.span:
                tree[parent] += tree[i]
        self.tree = tree
        self.total = sum(self.counts)

    def cumulative(self, symbol: int) -> int:
        """Sum of the counts of symbols below `symbol`."""
        tree, total, i = self.tree, 0, symbol
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def find(self, target: int) -> int:
        """The symbol s with cumulative(s) <= target < cumulative(s) + counts[s]."""
        tree, pos, step = self.tree, 0, self.span
        while step:
            nxt = pos + step
            if tree[nxt] <= target:
                target -= tree[nxt]
                pos = nxt
            step >>= 1
        return min(pos, self.size - 1)

    def update(self, symbol: int) -> None:
        if self.total + _INCREMENT > _LIMIT:
            self.counts = [(c + 1) // 2 if c else 0 for c in self.counts]
            self._rebuild()
        self.counts[symbol] += _INCREMENT
        self.total += _INCREMENT
        tree, i = self.tree, symbol + 1
        while i <= self.span:
            tree[i] += _INCREMENT
            i += i & -i


class CodebookModels:
    """One adaptive model per codebook, shared by all channels of a file."""

    def __init__(
        self, n_codebooks: int, cardinality: int, prior: Sequence[Sequence[int]] | None = None
    ) -> None:
        """Uniform models, or models starting from `prior`'s counts (its first
        `n_codebooks` rows, one per codebook)."""
        if cardinality + _INCREMENT > _LIMIT:
            raise ValueError(f"range coding supports at most {_LIMIT - _INCREMENT} symbols")
        if prior is not None and len(prior) < n_codebooks:
            raise ValueError(f"the prior has {len(prior)} codebooks, the file {n_codebooks}")
        self.models = [
            AdaptiveModel(cardinality, None if prior is None else prior[q])
            for q in range(n_codebooks)
        ]

    def encode(self, codes: np.ndarray) -> bytes:
        """(f, C, n) codes -> bytes; the last axis selects the codebook's model."""
        f, c, n = codes.shape
        if n != len(self.models):
            raise ValueError(f"expected {len(self.models)} codebooks, got {n}")
        out = bytearray()
        low, rng = 0, _MASK
        models = self.models
        for row in codes.reshape(-1, n).tolist():
            for model, s in zip(models, row):
                start, count = model.cumulative(s), model.counts[s]
                rng //= model.total
                low = (low + start * rng) & _MASK
                rng *= count
                low, rng = _normalize(low, rng, out)
                model.update(s)
        for _ in range(4):  # flush
            out.append(low >> 24)
            low = (low << 8) & _MASK
        return bytes(out)

    def observe(self, codes: np.ndarray) -> None:
        """Update the statistics with (f, C, n) codes sent without range coding."""
        for row in codes.reshape(-1, len(self.models)).tolist():
            for model, s in zip(self.models, row):
                model.update(s)

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Bytes -> (f, C, n) int64 codes. Reading past the end gives zero bytes."""
        f, c, n = shape
        if n != len(self.models):
            raise ValueError(f"expected {len(self.models)} codebooks, got {n}")
        size, pos = len(data), 4
        code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
        low, rng = 0, _MASK
        out = []
        for _ in range(f * c):
            for model in self.models:
                rng //= model.total
                target = min(((code - low) & _MASK) // rng, model.total - 1)
                s = model.find(target)
                low = (low + model.cumulative(s) * rng) & _MASK
                rng *= model.counts[s]
                while True:  # the encoder's normalisation, shifting code bytes in
                    if (low ^ (low + rng)) >= _TOP:
                        if rng >= _BOT:
                            break
                        rng = -low & (_BOT - 1)
                    byte = data[pos] if pos < size else 0
                    pos += 1
                    code = ((code << 8) | byte) & _MASK
                    low = (low << 8) & _MASK
                    rng = (rng << 8) & _MASK
                model.update(s)
                out.append(s)
        if pos > size + 4:
            raise EntropyError("payload shorter than its codes need")
        return np.asarray(out, dtype=np.int64).reshape(f, c, n)


def _normalize(low: int, rng: int, out: bytearray) -> tuple[int, int]:
    """Emit settled top bytes; when the range is small but straddles a byte boundary,
    shrink it to the part below the boundary (the carry-less trick)."""
    while True:
        if (low ^ (low + rng)) >= _TOP:
            if rng >= _BOT:
                return low, rng
            rng = -low & (_BOT - 1)
        out.append(low >> 24)
        low = (low << 8) & _MASK
        rng = (rng << 8) & _MASK
