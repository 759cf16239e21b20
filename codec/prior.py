"""A code prior: how often a codec uses each code of each codebook, for the range coder.

The range coder (codec/entropy.py) adapts one frequency model per codebook as a file goes.
Started uniform, it has learnt nothing useful within a short clip and sends it bit-packed;
started from a prior counted on training audio, it saves from the first frame. The
shipped codec's codes carry 8.9-9.8 bits of entropy per 10-bit code (the first codebook
least), so the prior saves about 7 % of a file.

A prior is a JSON file beside the codec's weights (`codec.safetensors` ->
`codec.prior.json`): the counts, scaled so that each codebook's total is `PRIOR_TOTAL`
(every code at least 1), and the ids of the codecs whose codes they count. A `.vcd` file
coded with it names it by its SHA-256's first 16 hex digits (`Header.prior`), so a decoder
never reads a file with another table than the one it was written with.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import CheckpointError
from core.io import write_json_atomic

FORMAT = "vocalis-code-prior"
VERSION = 1
# Each codebook's counts sum to about this: half the coder's limit on a model's total
# (entropy._LIMIT), so the adaptive model still learns from the file it codes.
PRIOR_TOTAL = 1 << 15
ID_LENGTH = 16  # hex digits of the SHA-256 that name a prior in a file's header
MAX_TOTAL = (1 << 16) - 64  # what a prior's row may sum to at most (below the coder's limit)


@dataclass(frozen=True)
class CodePrior:
    counts: tuple[tuple[int, ...], ...]  # (Q, K): per codebook, per code, >= 1
    codes_of: frozenset[str]  # SHA-256s of the codecs whose codes these are

    @property
    def sha256(self) -> str:
        """Names the table (not the codec ids): a file coded with it records this."""
        raw = json.dumps([list(row) for row in self.counts], separators=(",", ":"))
        return hashlib.sha256(raw.encode("ascii")).hexdigest()

    @property
    def id(self) -> str:
        """What a `.vcd` header records (`Header.prior`): the SHA-256's first 16 hex digits,
        enough to tell tables apart (each chunk has its own checksum against corruption)."""
        return self.sha256[:ID_LENGTH]

    @property
    def n_codebooks(self) -> int:
        return len(self.counts)

    @property
    def cardinality(self) -> int:
        return len(self.counts[0])

    @classmethod
    def fit(cls, histograms: np.ndarray, codes_of: Iterable[str]) -> CodePrior:
        """From code histograms `(Q, K)` (counts of each code in each codebook): add-one
        smoothing, then each row scaled to about PRIOR_TOTAL, none below 1."""
        h = np.asarray(histograms, dtype=np.float64) + 1.0  # (Q, K)
        scaled = np.maximum(1, np.round(h / h.sum(axis=1, keepdims=True) * PRIOR_TOTAL))
        return cls(tuple(tuple(int(c) for c in row) for row in scaled), frozenset(codes_of))

    def save(self, path: str | os.PathLike) -> Path:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "codes_of": sorted(self.codes_of),
            "sha256": self.sha256,
            "counts": [list(row) for row in self.counts],
        }
        write_json_atomic(path, data)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CodePrior:
        """Read and check a prior file; any problem is a one-line CheckpointError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CheckpointError(f"cannot read the code prior '{path}': {e}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"'{path}' is not a vocalis code prior")
        if data.get("version") != VERSION:
            raise CheckpointError(f"'{path}': code prior version {data.get('version')!r}")
        counts, ids = data.get("counts"), data.get("codes_of")
        if not (
            isinstance(counts, list)
            and counts
            and all(isinstance(row, list) and len(row) == len(counts[0]) for row in counts)
            and len(counts[0]) >= 2
            and all(isinstance(c, int) and not isinstance(c, bool) for r in counts for c in r)
            and all(min(row) >= 1 and sum(row) <= MAX_TOTAL for row in counts)
        ):
            raise CheckpointError(f"'{path}': corrupt code prior counts")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CheckpointError(f"'{path}': corrupt code prior ('codes_of')")
        prior = cls(tuple(tuple(row) for row in counts), frozenset(ids))
        if data.get("sha256") != prior.sha256:
            raise CheckpointError(f"'{path}': code prior checksum mismatch")
        return prior


def prior_path(weights: str | os.PathLike) -> Path:
    """Where a codec's prior lives: beside its weights, `<stem>.prior.json`."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.prior.json")


def code_histograms(codes: Iterable[np.ndarray], n_codebooks: int, cardinality: int) -> np.ndarray:
    """`(Q, K)` counts of each code in arrays of codes `(Q, F)` (or `(..., Q, F)`)."""
    out = np.zeros((n_codebooks, cardinality), dtype=np.int64)
    for c in codes:
        c = np.asarray(c).reshape(-1, n_codebooks, np.asarray(c).shape[-1])  # (N, Q, F)
        for q in range(n_codebooks):
            out[q] += np.bincount(c[:, q].reshape(-1), minlength=cardinality)[:cardinality]
    return out
