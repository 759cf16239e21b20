"""Transcript normalisation: the one definition of the text stored in manifests.

Every importer and the synthetic corpus pass their text through `normalize_text`, so a
transcript in a manifest is exactly the target the ASR learns and the input the TTS reads:
sentence case as written, ASCII only, single spaces, a small set of punctuation kept
(`. , ? ! ' - ; : "`), numbers written as words where the source did not already do it.
"""

from __future__ import annotations

import re
import unicodedata

ALLOWED_PUNCTUATION = ".,?!'-;:\""
_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": " - ",
        "\u2026": "...",
        "\u00a0": " ",
    }
)
_DROP = re.compile(r"[^A-Za-z0-9 .,?!'\-;:\"]")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,?!;:])")
_NUMBER = re.compile(r"\d+")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def number_to_words(n: int) -> str:
    """Cardinal number in words: 342 -> 'three hundred and forty-two'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = f"{_ONES[hundreds]} hundred"
        return head + (f" and {number_to_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            words = f"{number_to_words(head)} {name}"
            if rest:
                words += (" and " if rest < 100 else " ") + number_to_words(rest)
            return words
    raise AssertionError("unreachable")


def year_to_words(year: int) -> str:
    """A year as spoken: 1984 -> 'nineteen eighty-four', 2007 -> 'two thousand and seven'."""
    if 2000 <= year < 2010 or year < 1000 or year % 1000 == 0:
        return number_to_words(year)
    head, tail = divmod(year, 100)
    if tail == 0:
        return f"{number_to_words(head)} hundred"
    tail_words = number_to_words(tail) if tail >= 10 else f"oh {number_to_words(tail)}"
    return f"{number_to_words(head)} {tail_words}"


def normalize_text(text: str) -> str:
    """Normalise a transcript: ASCII, kept punctuation only, digits spelled out, one space."""
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = _NUMBER.sub(lambda m: f" {number_to_words(int(m.group()))} ", text)
    text = _DROP.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def words_of(text: str) -> list[str]:
    """Lower-case words of a transcript, punctuation removed (for lexicon look-ups)."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())
