"""Word timestamps from the recogniser's CTC head: the transcript's letters forced onto the
audio frames by Viterbi, each word timed from its first letter's frame to its last's.

The head spells `CTC_ALPHABET` letters with a blank after them (`asr.ctc`), at the
encoder's 50 frames a second, so the times have a 20 ms grain. Alignment needs no
decoding: it finds the single likeliest path of frames through the given letters, so it
times whatever text it is given, right or wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from asr.ctc import ctc_chars


@dataclass(frozen=True)
class Word:
    word: str  # as written in the transcript, punctuation attached
    start: float  # seconds from the start of the input
    end: float


def ctc_alignment(log_probs: torch.Tensor, units: Sequence[int]) -> list[tuple[int, int]] | None:
    """The frames `[first, last + 1)` each of `units` holds on the likeliest CTC path through
    them, for `log_probs` `(S, U + 1)` (blank last); None when the frames are too few to
    spell them (a repeated unit needs a blank between)."""
    lp = log_probs.detach().float().cpu().numpy()
    frames, blank = lp.shape[0], lp.shape[1] - 1
    if not units:
        return []
    ext = np.full(2 * len(units) + 1, blank)
    ext[1::2] = units  # blank, u1, blank, u2, ..., uL, blank
    n = len(ext)
    # a unit state may be reached from two states back unless that is the same unit
    skip = np.zeros(n, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    delta = np.full(n, -np.inf)
    delta[0], delta[1] = lp[0, blank], lp[0, ext[1]]
    back = np.zeros((frames, n), dtype=np.int8)  # 0: stayed, 1: from s-1, 2: from s-2
    for t in range(1, frames):
        stay, one = delta, np.concatenate([[-np.inf], delta[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], delta[:-2]]), -np.inf)
        choices = np.stack([stay, one, two])  # (3, n)
        back[t] = choices.argmax(0)
        delta = choices.max(0) + lp[t, ext]
    state = n - 1 if delta[n - 1] >= delta[n - 2] else n - 2
    if not np.isfinite(delta[state]):
        return None
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans = []
    for k in range(len(units)):
        held = np.nonzero(path == 2 * k + 1)[0]
        spans.append((int(held[0]), int(held[-1]) + 1))
    return spans


def word_times(
    text: str, log_probs: torch.Tensor, frame_seconds: float, offset: float = 0.0
) -> list[Word]:
    """The words of `text` (split at white space) with their times in seconds from
    `offset`, aligned on `log_probs` `(S, len(CTC_ALPHABET) + 1)`. A word with no letters
    (a lone dash) joins the word before it (or after it, at the start); [] when the frames
    are too few for the text."""
    groups: list[tuple[str, list[int]]] = []
    loose = ""  # letterless words waiting for a word to join
    for word in text.split():
        units = ctc_chars(word)
        if not units:
            if groups:
                groups[-1] = (f"{groups[-1][0]} {word}", groups[-1][1])
            else:
                loose = f"{loose} {word}".strip()
            continue
        groups.append((f"{loose} {word}".strip(), units))
        loose = ""
    if not groups:
        return []
    units: list[int] = []
    bounds = []  # (first unit, last unit) of each group
    for k, (_, spelled) in enumerate(groups):
        if k:
            units.append(0)  # CTC_ALPHABET[0]: the space between words
        bounds.append((len(units), len(units) + len(spelled) - 1))
        units.extend(spelled)
    spans = ctc_alignment(log_probs, units)
    if spans is None:
        return []
    return [
        Word(
            word,
            round(offset + spans[a][0] * frame_seconds, 3),
            round(offset + spans[b][1] * frame_seconds, 3),
        )
        for (word, _), (a, b) in zip(groups, bounds)
    ]
