"""Natural English for the synthetic corpus, from text already on the machine.

The generated sentences (`corpus.sentences`) are grammar templates over about 3000 words.
A recogniser trained on them learns the templates as its language model and recites them
on real speech. These sources give the voices ordinary English to read instead:

- `wordnet`: the glosses and example sentences of WordNet 3.0 (Debian `wordnet-base`,
  `/usr/share/wordnet`, WordNet licence): about 166 000 fragments such as "we acquainted
  him with the melancholy truth" or "dry dock that can be submerged under a vessel".
- `gcide`: the quotations of Webster's Revised Unabridged Dictionary (1913, public domain)
  as the GNU Collaborative International Dictionary of English carries them (Debian
  `dict-gcide`, `/usr/share/dictd/gcide.dict.dz`): about 30 000 lines of English prose and
  verse from the 16th to the 19th century, such as "he abdicates all right to be his own
  governor". Only quotations marked "[1913 Webster]" are read: the dictionary's later,
  GPL-licensed additions are left alone.
- a text file: one sentence or paragraph per line (a user's own domain text).

Fragments are kept only when a voice reads them exactly as written (no abbreviations,
symbols or stray letters), normalised like every transcript (`normalize_text`), and joined
into utterances of `min_words` to `max_words` words. Everything is deterministic for a seed.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from pathlib import Path

from core.errors import VocalisError
from corpus.text import normalize_text

WORDNET_ROOT = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")

_QUOTED = re.compile(r'"([^"]*)"')
_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
# Characters a voice reads the way they are written; anything else rejects the fragment.
_READABLE = re.compile(r"^[A-Za-z0-9 ,.;:'!?\-]+$")
_ABBREVIATION = re.compile(r"\b[A-Za-z]\.|[A-Z]{2,}|\b(?![aAI]\b)[A-Za-z]\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def wordnet_fragments(root: str | os.PathLike = WORDNET_ROOT) -> list[str]:
    """Every gloss definition and example sentence of WordNet, in file order."""
    root = Path(root)
    paths = [root / name for name in WORDNET_FILES]
    if not all(p.is_file() for p in paths):
        raise VocalisError(f"WordNet not found in '{root}' (apt-get install wordnet-base)")
    fragments: list[str] = []
    for path in paths:
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # the licence header, or a synset without a gloss
                gloss = line.split(" | ", 1)[1].strip()
                fragments.extend(q.strip() for q in _QUOTED.findall(gloss))
                definition = _QUOTED.sub("", gloss).split(";")[0].strip()
                if definition:
                    fragments.append(definition)
    return fragments


# In the dictd text of GCIDE a quotation is a block of lines indented 6 or more spaces, each
# block after a blank line; its author follows far to the right, on its last line or the
# next ("--Milton."), then possibly more of the author's name and the source's tag.
_GCIDE_AUTHOR = re.compile(r"^ {20,}--\S")
_GCIDE_LAST_LINE = re.compile(r"^( {6,}\S.*?\S) {2,}--[A-Z]")
_GCIDE_ELISION = re.compile(r"\s*\.\s\.\s\.\s*")


def gcide_fragments(path: str | os.PathLike = GCIDE_PATH) -> list[str]:
    """The quotations of the 1913 Webster in GCIDE, in file order; a quotation with an
    elision (". . .") is one fragment per side."""
    import gzip

    path = Path(path)
    if not path.is_file():
        raise VocalisError(f"GCIDE not found at '{path}' (apt-get install dict-gcide)")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    fragments: list[str] = []
    block: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        last = _GCIDE_LAST_LINE.match(line)
        if last or (_GCIDE_AUTHOR.match(line) and block):
            quote = block + ([last.group(1)] if last else [])
            j = i + 1
            while j < len(lines) and lines[j].startswith(" " * 20) and lines[j].strip():
                j += 1  # the author's name goes on
            if quote and j < len(lines) and lines[j].strip() == "[1913 Webster]":
                text = " ".join(part.strip() for part in quote)
                fragments.extend(" ".join(p.split()) for p in _GCIDE_ELISION.split(text))
            block, i = [], j
            continue
        if line.startswith(" " * 6) and line.strip() and not line.lstrip().startswith("["):
            block.append(line)
        else:
            block = []
        i += 1
    return [f for f in fragments if f]


def file_fragments(path: str | os.PathLike) -> list[str]:
    """The sentences of a UTF-8 text file: each line, split after . ! or ?"""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VocalisError(f"cannot read text file '{path}': {e}") from None
    fragments = []
    for line in text.splitlines():
        fragments.extend(s.strip() for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return fragments


def clean_fragment(fragment: str, max_words: int) -> str | None:
    """The fragment as a voice will read it, or None when it is not safe to read."""
    text = _PARENS.sub(" ", fragment).replace("`", "'").strip(" ;:,-")
    if not text or not _READABLE.match(text) or _ABBREVIATION.search(text):
        return None
    text = normalize_text(text)
    words = text.split()
    if not 2 <= len(words) <= max_words:
        return None
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text = text.rstrip(",;:-") + "."
    return text


def compose_utterances(
    fragments: Iterable[str], n: int, seed: int, min_words: int = 6, max_words: int = 24
) -> list[str]:
    """Up to `n` utterances, each one or more whole fragments and about min..max words.

    Each distinct fragment is used at most once, so fewer than `n` come back when the
    source runs out.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    cleaned = {c for f in fragments if (c := clean_fragment(f, max_words)) is not None}
    pool = sorted(cleaned)
    rng = random.Random(seed)
    rng.shuffle(pool)
    utterances: list[str] = []
    current: list[str] = []
    words = 0
    target = rng.randint(min_words, max_words)
    for sentence in pool:
        if len(utterances) >= n:
            break
        count = len(sentence.split())
        if current and words + count > max_words:
            utterances.append(" ".join(current))
            current, words, target = [], 0, rng.randint(min_words, max_words)
        current.append(sentence)
        words += count
        if words >= target:
            utterances.append(" ".join(current))
            current, words, target = [], 0, rng.randint(min_words, max_words)
    if current and words >= min_words and len(utterances) < n:
        utterances.append(" ".join(current))
    return utterances[:n]


def source_fragments(source: str) -> list[str]:
    """The fragments of a text source: 'wordnet', 'gcide' or the path of a text file."""
    if source == "wordnet":
        return wordnet_fragments()
    if source == "gcide":
        return gcide_fragments()
    if source == "generated":
        raise ValueError("generated sentences come from corpus.sentences")
    return file_fragments(source)
