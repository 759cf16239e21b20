"""Phoneme coverage: pick sentences that cover English phonemes and diphones.

Pronunciations come from the CMU dictionary that Debian's `festlex-cmu` installs for
festival (read as text, nothing downloaded). A sentence's units are its phonemes and its
diphones (phoneme pairs, across word boundaries too). `select_for_coverage` orders a pool
greedily so the first sentences add the most units not yet covered; once every unit seen
in the pool is covered, the rest follow in their original order.
"""

from __future__ import annotations

import functools
import heapq
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import VocalisError
from corpus.text import words_of

CMUDICT_PATHS = (Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out"),)
_ENTRY = re.compile(r'^\("([^"]+)" \S+ (.*)\)\s*$')
_PHONE = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Coverage:
    phonemes: int  # distinct phonemes in the selection
    diphones: int  # distinct diphones in the selection
    pool_diphones: int  # distinct diphones in the whole pool
    oov_words: tuple[str, ...]  # words with no pronunciation


def find_cmudict() -> Path | None:
    env = os.environ.get("VOCALIS_CMUDICT")
    for path in ([Path(env)] if env else []) + list(CMUDICT_PATHS):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=2)
def load_lexicon(path: str | None = None) -> dict[str, tuple[str, ...]]:
    """word -> phonemes (first entry of each word). Raises VocalisError if missing."""
    found = Path(path) if path else find_cmudict()
    if found is None or not found.is_file():
        raise VocalisError(
            "no CMU pronouncing dictionary found (install the Debian package festlex-cmu, "
            "or set VOCALIS_CMUDICT to a festival-format cmudict file)"
        )
    lexicon: dict[str, tuple[str, ...]] = {}
    with open(found, encoding="latin-1") as f:
        for line in f:
            m = _ENTRY.match(line)
            if m and m.group(1) not in lexicon:
                lexicon[m.group(1)] = tuple(_PHONE.findall(m.group(2)))
    return lexicon


def sentence_phonemes(text: str, lexicon: dict[str, tuple[str, ...]]) -> list[str]:
    """Phonemes of a sentence with 'pau' at both ends; unknown words are skipped."""
    phones = ["pau"]
    for word in words_of(text):
        phones.extend(pronounce(word, lexicon))
    phones.append("pau")
    return phones


def pronounce(word: str, lexicon: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Dictionary phonemes, with a guess for possessives and -s/-es/-ed forms; () if unknown."""
    if word in lexicon:
        return lexicon[word]
    for ending, extra in (("'s", ("z",)), ("es", ("ax", "z")), ("s", ("z",)), ("ed", ("d",))):
        stem = word[: -len(ending)]
        if word.endswith(ending) and stem in lexicon:
            return lexicon[stem] + extra
    return ()


def units(text: str, lexicon: dict[str, tuple[str, ...]]) -> set[str]:
    phones = sentence_phonemes(text, lexicon)
    return set(phones) | {f"{a}-{b}" for a, b in zip(phones, phones[1:])}


def select_for_coverage(
    pool: Sequence[str], n: int, lexicon: dict[str, tuple[str, ...]]
) -> list[str]:
    """`n` sentences of `pool`, the ones that cover new units first (lazy greedy)."""
    pool_units = [units(s, lexicon) for s in pool]
    covered: set[str] = set()
    heap = [(-len(u), i) for i, u in enumerate(pool_units)]
    heapq.heapify(heap)
    chosen: list[int] = []
    taken: set[int] = set()
    while heap and len(chosen) < n:
        neg, i = heapq.heappop(heap)
        gain = len(pool_units[i] - covered)
        if gain == 0:
            break
        if heap and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, i))  # stale score: re-queue with the true gain
            continue
        chosen.append(i)
        taken.add(i)
        covered |= pool_units[i]
    rest = (i for i in range(len(pool)) if i not in taken)
    for i in rest:
        if len(chosen) >= n:
            break
        chosen.append(i)
    return [pool[i] for i in chosen]


def coverage(sentences: Sequence[str], pool: Sequence[str], lexicon: dict) -> Coverage:
    got: set[str] = set()
    oov: set[str] = set()
    for s in sentences:
        got |= units(s, lexicon)
        oov |= {w for w in words_of(s) if not pronounce(w, lexicon)}
    pool_units: set[str] = set()
    for s in pool:
        pool_units |= units(s, lexicon)
    return Coverage(
        phonemes=sum(1 for u in got if "-" not in u),
        diphones=sum(1 for u in got if "-" in u),
        pool_diphones=sum(1 for u in pool_units if "-" in u),
        oov_words=tuple(sorted(oov)),
    )
