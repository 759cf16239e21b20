"""The words of the language model's text, for a penalty on words outside them.

The token n-gram LM (asr.lm) sees BPE pieces, so it gives a word the recogniser spells the
way it sounds ("dere" for "there", "detrant" for "the train") some probability from its
pieces alone. Whole words are what the text knows: of the run-20 weights' errors on
held-out natural text, a third were words that occur nowhere in the LM's 287 000 lines,
while 1.3-1.8 % of the reference words do. So the beam search (asr.decoding) subtracts a
penalty once per word it writes that the lexicon lacks, as soon as the word's letters so
far begin no known word (or, at its end, are not one), the "unknown word" score of
word-level LM decoders.

Words are those of `corpus.text.words_of` (lower case a-z, an inner apostrophe): a written
run of letters and apostrophes is known when it is a word of the lexicon or a known word
with a suffix after an apostrophe ("dorothy's"). Runs with digits or other scripts are not
judged. The lexicon is stored inside the LM's checkpoint (asr.lm), as the UTF-8 bytes of
its words one per line.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def lexicon_words(lines: Iterable[str]) -> list[str]:
    """The sorted words of `lines`, normalised as the word error rate's text is."""
    from corpus.text import normalize_text, words_of

    seen: Counter[str] = Counter()
    for line in lines:
        seen.update(words_of(normalize_text(line)))
    return sorted(seen)


class Lexicon:
    """A set of words and every prefix of them, for `WordJudge`."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)
        for w in self.words:
            if not _WORD.fullmatch(w):
                raise ValueError(f"not a lexicon word: {w!r}")

    def __len__(self) -> int:
        return len(self.words)

    @functools.cached_property
    def prefixes(self) -> frozenset[str]:
        return frozenset(w[:i] for w in self.words for i in range(1, len(w) + 1))

    def known(self, run: str) -> bool:
        """Whether a complete run of letters and apostrophes (lower case) is a word."""
        key = run.strip("'")
        if not key or not _judged(key):
            return True
        return all(w in self.words or w.split("'")[0] in self.words for w in _WORD.findall(key))

    def may_continue(self, run: str) -> bool:
        """Whether an unfinished run can still become a known word."""
        key = run.lstrip("'")
        if not key or not _judged(key):
            return True
        if "'" in key:
            return key in self.prefixes or key.split("'")[0] in self.words
        return key in self.prefixes

    def to_tensor(self) -> Tensor:
        data = "\n".join(sorted(self.words)).encode("utf-8")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, t: Tensor) -> Lexicon:
        text = bytes(t.to(torch.uint8).cpu().numpy()).decode("utf-8")
        return cls(text.split("\n") if text else [])


def _judged(key: str) -> bool:
    """Runs of a-z and apostrophes only: digits and other scripts are not judged."""
    return key.isascii() and not any(c.isdigit() for c in key)


def _in_run(c: str) -> bool:
    return c.isalnum() or c == "'" or not c.isascii()


class WordJudge:
    """Counts the unknown words that candidate tokens complete or start, beam by beam.

    A beam's state is its unfinished run of word characters (lower case) and whether that
    run was already counted (once per word). `advance(state, token)` counts 0 or more: a token
    that ends a run (a space, punctuation, a special token) counts it unless it is known;
    a token that leaves a run that can no longer become a word counts it at once."""

    START = ("", False)

    def __init__(self, lexicon: Lexicon, piece_texts: Sequence[str]) -> None:
        self.lexicon = lexicon
        self.texts = [t.lower() for t in piece_texts]  # text of each BPE piece; others end runs

    def advance(self, state: tuple[str, bool], token: int) -> tuple[tuple[str, bool], int]:
        """The state after `token`, and the unknown words it counts."""
        run, counted = state
        count = 0
        text = self.texts[token] if 0 <= token < len(self.texts) else " "
        for c in text:
            if _in_run(c):
                run += c
                continue
            if run and not counted and not self.lexicon.known(run):
                count += 1
            run, counted = "", False
        if run and not counted and not self.lexicon.may_continue(run):
            count += 1
            counted = True
        return (run, counted), count
