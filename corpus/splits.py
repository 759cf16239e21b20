"""Honest train/valid/test splits, recorded in the manifest.

A split holds out whole groups: speakers (no held-out voice is heard in training), texts
(no held-out sentence is read in training) or single utterances. Several groupings can be
combined (`by=("speaker", "text")`): an utterance is `train` only if none of its groups is
held out; otherwise it takes the strictest held-out split (test before valid). The split of
each grouping is also kept as an extra (`speaker_split`, `text_split`) so evaluation can
tell unseen voices from unseen texts.

Group assignment is deterministic: groups are ordered by a SHA-256 of (seed, group) and the
first `round(test * n)` go to test, the next `round(valid * n)` to valid (at least one each
when the fraction is positive and there are three or more groups).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from corpus.manifest import Utterance

GROUPINGS = ("speaker", "text", "utterance")
_RANK = {"train": 0, "valid": 1, "test": 2}


@dataclass(frozen=True)
class SplitSpec:
    by: tuple[str, ...] = ("speaker",)
    valid: float = 0.05
    test: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [k for k in self.by if k not in GROUPINGS]
        if bad or not self.by:
            raise ValueError(f"split by one or more of {', '.join(GROUPINGS)}; got {self.by}")
        if not (0 <= self.valid < 1 and 0 <= self.test < 1 and self.valid + self.test < 1):
            raise ValueError("valid and test fractions must be in [0, 1) and sum below 1")


def group_key(utt: Utterance, grouping: str) -> str:
    if grouping == "speaker":
        return utt.speaker
    if grouping == "text":
        # Utterances without text cannot share a sentence: each is its own group.
        return " ".join(utt.text.lower().split()) if utt.text else f"\0{utt.id}"
    return utt.id


def assign_groups(keys: Sequence[str], valid: float, test: float, seed: int) -> dict[str, str]:
    """group -> split, deterministic for (set of keys, fractions, seed)."""
    unique = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n = len(unique)

    def count(fraction: float) -> int:
        if fraction <= 0:
            return 0
        return max(1, round(fraction * n)) if n >= 3 else 0

    n_test, n_valid = count(test), count(valid)
    splits = {}
    for i, key in enumerate(unique):
        splits[key] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return splits


def assign_splits(utterances: Sequence[Utterance], spec: SplitSpec) -> list[Utterance]:
    """Utterances with `split` (and `<grouping>_split` extras) set by `spec`."""
    tables = {
        g: assign_groups([group_key(u, g) for u in utterances], spec.valid, spec.test, spec.seed)
        for g in spec.by
    }
    out = []
    for u in utterances:
        per = {g: tables[g][group_key(u, g)] for g in spec.by}
        split = max(per.values(), key=_RANK.__getitem__)
        extra = dict(u.extra)
        extra.update({f"{g}_split": s for g, s in per.items() if g != "utterance"})
        out.append(replace(u, split=split, extra=extra))
    return out
