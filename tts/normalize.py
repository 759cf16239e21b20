"""Text normalisation for speech: what a user types -> plain English words, in sentences.

`normalize_for_speech` rewrites the text as words (numbers, money, times, ordinals,
abbreviations and symbols spelled out; accents folded to ASCII) and reports the characters
it could not say (emoji, other scripts) instead of failing on them. `split_sentences` cuts
long text into sentences of at most `max_chars` characters, keeping abbreviations whole.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corpus.text import ALLOWED_PUNCTUATION, normalize_text, number_to_words, year_to_words

MAX_SENTENCE_CHARS = 200

# --- 1. normalisation ----------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizedText:
    text: str  # plain words and the punctuation of corpus.text.ALLOWED_PUNCTUATION
    skipped: tuple[str, ...]  # characters that were dropped, each once, in order of appearance


_FOLD = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u00ab\u00bb\u2033", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2212", "-"),
        **dict.fromkeys("\u2014\u2015", " - "),
        **dict.fromkeys("\u00a1\u00bf", " "),  # inverted ! and ?
        "\u2044": "/",  # fraction slash, from NFKC of \u00bd
        "\u00d7": " times ",
        # letters that NFKD does not decompose
        **dict(
            zip("\u00f8\u00d8\u0111\u0110\u0142\u0141\u00f0\u00d0\u0131", "oOdDlLdDi", strict=True)
        ),
        **{"\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE"},
        **{"\u00fe": "th", "\u00de": "Th"},
    }
)
_INVISIBLE = {"Mn", "Me", "Cf", "Cc", "Sk"}  # combining marks, format/control, emoji modifiers

_ORDINAL_IRREGULAR = dict(
    zip(
        "one two three five eight nine twelve".split(),
        "first second third fifth eighth ninth twelfth".split(),
        strict=True,
    )
)
_DIGITS = "zero one two three four five six seven eight nine".split()

# Abbreviations. Titles come before a name and never end a sentence; the others may.
_TITLES = dict(
    pair.split(":")
    for pair in "Mr:Mister Mrs:Missus Ms:Miz Dr:Doctor Prof:Professor Capt:Captain Gen:General "
    "Lt:Lieutenant Col:Colonel Sgt:Sergeant Rev:Reverend Gov:Governor Sen:Senator Mt:Mount".split()
)
_FINALS = dict(
    pair.split(":")
    for pair in "Jr:junior Sr:senior Inc:incorporated Ltd:limited Co:company Corp:corporation "
    "Ave:avenue Rd:road Blvd:boulevard Dept:department Jan:January Feb:February Mar:March "
    "Apr:April Jun:June Jul:July Aug:August Sep:September Sept:September Oct:October "
    "Nov:November Dec:December".split()
)
_LATIN = {  # matched in any letter case
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "vs": "versus",
    "cf.": "compare",
    "fig.": "figure",
    "approx.": "approximately",
}
_UNITS = {  # symbol -> (singular, plural)
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometre", "kilometres"),
    "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "ml": ("millilitre", "millilitres"),
    "lbs": ("pound", "pounds"),
    "lb": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "ms": ("millisecond", "milliseconds"),
    "\u00b0C": ("degree Celsius", "degrees Celsius"),
    "\u00b0F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "\u00b0": ("degree", "degrees"),
}
_CURRENCIES = {  # symbol -> (unit, units, hundredth, hundredths); yen has no hundredths
    "$": ("dollar", "dollars", "cent", "cents"),
    "\u00a3": ("pound", "pounds", "penny", "pence"),
    "\u20ac": ("euro", "euros", "cent", "cents"),
    "\u00a5": ("yen", "yen", "", ""),
}
_SCALE_WORDS = {"k": "thousand", "m": "million", "mn": "million", "bn": "billion", "b": "billion"}
_YEAR_CONTEXT = "in|since|from|until|till|by|of|year|circa|during|before|after|around|between"
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent "}
_SEPARATORS = {"(": ", ", ")": ", ", "[": ", ", "]": ", ", "{": ", ", "}": ", "}
_SILENT = set("*_~|\\^`<>/#")


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SCALE = r"(?:\s?(thousand|million|billion|trillion|[kK]|[mM]n?|bn|[bB])\b)?"
_NUMBER = r"\d+(?:\.\d+)?"
_RE_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_RE_MONEY_BEFORE = re.compile(rf"([$\u00a3\u20ac\u00a5])\s?(\d+)(?:\.(\d+))?(?!\d|\.\d){_SCALE}")
_RE_MONEY_AFTER = re.compile(rf"(?<![\w.])(\d+)(?:\.(\d+))?{_SCALE}\s?([\u00a3\u20ac])")
_RE_UNIT = re.compile(rf"(?<![\w.])({_NUMBER})\s?({_alternation(_UNITS)})(?![A-Za-z])")
_RE_NUMBER_SIGN = re.compile(r"(?:\b[Nn]o\.|#)\s?(?=\d)")
_RE_TIME = re.compile(
    r"\b([01]?\d|2[0-3])(?::([0-5]\d))?(?:\s?([AaPp])\.?[Mm](\.?)(?![A-Za-z]))?(?![\d:])"
)
_RE_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_RE_DECADE = re.compile(r"(?<![\w'])'?(\d{0,2}\d0)s\b")
_RE_YEAR = re.compile(rf"\b({_YEAR_CONTEXT})\s+(\d{{4}})\b(?![.,-]\d)", re.IGNORECASE)
_RE_ERA = re.compile(r"\b(\d{1,4})\s?(BC|AD|BCE|CE)\b")
# Telephone numbers (555-1234, 555-123-4567, (555) 123-4567) are read digit by digit in
# groups (North American: area code and exchange never begin with 0 or 1, so 100-1000 stays
# a range); without this rule 555-1234 would be the range "five hundred and fifty-five to ...".
_RE_PHONE = re.compile(
    r"(?<![\w.-])(?:\(([2-9]\d\d)\) ?|([2-9]\d\d)[-.])?([2-9]\d\d)-(\d{4})(?![\w-]|\.\d)"
)
_RE_RANGE = re.compile(rf"(?<![\w.-])({_NUMBER})-({_NUMBER})(?![\w-]|\.\d)")
_RE_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_RE_FRACTION = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")
_RE_DOTTED = re.compile(r"\d+(?:\.\d+)+|\.\d+")
_RE_DIGIT_STRING = re.compile(r"\b(?:0\d+|\d{13,})\b")
_RE_ACRONYM = re.compile(r"\b(?![AaPp]\.[Mm]\.)((?:[A-Za-z]\.){2,})")
_RE_TITLE = re.compile(rf"\b({_alternation(_TITLES)})\.|\b(Mrs|Mr|Ms|Dr)(?=\s+[A-Z])")
_RE_ST = re.compile(r"\bSt\b\.?")
_RE_CAPITAL_NEXT = re.compile(r"\s+[A-Z]")
_RE_PREVIOUS_NAME = re.compile(r"[\w,;:]\s+[A-Z][a-z]*\s+$")  # a capital not after "."
_RE_FINAL = re.compile(rf"\b({_alternation(_FINALS)})\.")
_RE_LATIN = re.compile(rf"(?<![\w.])({_alternation(_LATIN)})(?![\w.])", re.IGNORECASE)
_RE_DOT_WORD = re.compile(r"(?<=[A-Za-z])\.(?=[a-z]{2,}\b)")
_RE_SLASH_WORDS = re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])")
_RE_SENTENCE_END = re.compile(r"\s*$|\s+[\"']?[A-Z]")
_RE_DASH = re.compile(r"\s+-+\s+|^-+\s+")  # a spoken pause
_RE_EMPTY_QUOTES = re.compile(r"(?<!\S)\"\s*\"(?!\S)")
_RE_COMMA_BEFORE_PUNCT = re.compile(r",+\s*(?=[.?!;:,])")
_RE_EDGE_PUNCT = re.compile(r"^[\s,;:.]+|[\s,;:]+$")


def ordinal_to_words(n: int) -> str:
    """Ordinal number in words: 22 -> 'twenty-second', 100 -> 'one hundredth'."""
    head, last = re.fullmatch(r"(.*?)([a-z]+)", number_to_words(n)).groups()
    if last in _ORDINAL_IRREGULAR:
        return head + _ORDINAL_IRREGULAR[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _digits(s: str) -> str:
    return " ".join(_DIGITS[int(c)] for c in s)


def _say_number(s: str) -> str:
    """'12' -> twelve, '3.14' -> three point one four, '1.2.3' -> one point two point three."""
    whole, _, fraction = s.partition(".")
    head = number_to_words(int(whole)) if whole else ""
    if not fraction:
        return head
    if "." in fraction:  # a version number: every part read as a number
        return " point ".join(number_to_words(int(p)) for p in s.split("."))
    return f"{head} point {_digits(fraction)}".strip()


def _stop_if_sentence_end(m: re.Match[str]) -> str:
    """'.' when the abbreviation just matched also ends its sentence."""
    return "." if _RE_SENTENCE_END.match(m.string, m.end()) else ""


def _money(symbol: str, whole: str, fraction: str | None, scale: str | None) -> str:
    unit, units, cent, cents = _CURRENCIES[symbol]
    if scale:
        scale_word = _SCALE_WORDS.get(scale.lower(), scale.lower())
        number = _say_number(whole + (f".{fraction}" if fraction else ""))
        return f" {number} {scale_word} {units} "
    if fraction and (len(fraction) > 2 or not cent):
        return f" {_say_number(f'{whole}.{fraction}')} {units} "
    amount, hundredths = int(whole), int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if amount or not hundredths:
        parts.append(f"{number_to_words(amount)} {unit if amount == 1 else units}")
    if hundredths:
        parts.append(f"{number_to_words(hundredths)} {cent if hundredths == 1 else cents}")
    return f" {' and '.join(parts)} "


def _time(m: re.Match[str]) -> str:
    hour, minute, half, stop = m.groups()
    if minute is None and half is None:
        return m.group()  # a bare number
    words = number_to_words(int(hour))
    if minute and minute != "00":
        words += " " + (
            number_to_words(int(minute)) if minute[0] != "0" else f"oh {_DIGITS[int(minute[1])]}"
        )
    elif minute and not half:
        words += " o'clock"
    if half:
        words += f" {half.upper()}-M"
        if stop:
            words += _stop_if_sentence_end(m)
    return f" {words} "


def _year_or_number(s: str) -> str:
    return year_to_words(int(s)) if len(s) == 4 and 1000 <= int(s) < 2100 else _say_number(s)


def _phone(m: re.Match[str]) -> str:
    groups = [g for g in m.groups() if g]
    return " " + ", ".join(_digits(g) for g in groups) + " "


def _range(m: re.Match[str]) -> str:
    first, second = m.groups()
    if len(first) == 4 and 1000 <= int(first) < 2100 and "." not in second:
        return f" {year_to_words(int(first))} to {_year_or_number(second)} "
    return f" {_say_number(first)} to {_say_number(second)} "


def _saint_or_street(m: re.Match[str]) -> str:
    """'Baker St.' is a street, 'St. John' (not after a name) a saint."""
    after_name = _RE_PREVIOUS_NAME.search(m.string, max(0, m.start() - 40), m.start())
    if not after_name and _RE_CAPITAL_NEXT.match(m.string, m.end()):
        return "Saint"
    return "street" + (_stop_if_sentence_end(m) if m.group().endswith(".") else "")


def _expand_abbreviations(text: str) -> str:
    text = _RE_LATIN.sub(
        lambda m: (
            _LATIN[m.group(1).lower()]
            + (_stop_if_sentence_end(m) if m.group(1).lower() == "etc." else "")
        ),
        text,
    )
    text = _RE_ACRONYM.sub(
        lambda m: m.group(1).replace(".", "").upper() + ("." if m.end() == len(m.string) else ""),
        text,
    )
    text = _RE_TITLE.sub(lambda m: _TITLES[m.group(1) or m.group(2)], text)
    text = _RE_ST.sub(_saint_or_street, text)
    return _RE_FINAL.sub(lambda m: _FINALS[m.group(1)] + _stop_if_sentence_end(m), text)


def _expand_numbers(text: str) -> str:
    text = _RE_THOUSANDS.sub("", text)
    text = _RE_NEGATIVE.sub("minus ", text)
    text = _RE_MONEY_BEFORE.sub(lambda m: _money(*m.groups()), text)
    text = _RE_MONEY_AFTER.sub(lambda m: _money(m.group(4), *m.group(1, 2, 3)), text)
    text = _RE_UNIT.sub(
        lambda m: f" {m.group(1)} {_UNITS[m.group(2)][0 if m.group(1) == '1' else 1]} ", text
    )
    text = _RE_NUMBER_SIGN.sub(" number ", text)
    text = _RE_TIME.sub(_time, text)
    text = _RE_ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", text)
    text = _RE_DECADE.sub(lambda m: f" {_plural(_year_or_number(m.group(1)))} ", text)
    text = _RE_PHONE.sub(_phone, text)
    text = _RE_RANGE.sub(_range, text)
    text = _RE_YEAR.sub(lambda m: f"{m.group(1)} {_year_or_number(m.group(2))}", text)
    text = _RE_ERA.sub(lambda m: f"{year_to_words(int(m.group(1)))} {m.group(2)}", text)
    text = _RE_FRACTION.sub(_fraction, text)
    text = _RE_DOTTED.sub(lambda m: f" {_say_number(m.group())} ", text)
    return _RE_DIGIT_STRING.sub(lambda m: f" {_digits(m.group())} ", text)


def _fraction(m: re.Match[str]) -> str:
    top, bottom = int(m.group(1)), int(m.group(2))
    named = {2: ("half", "halves"), 4: ("quarter", "quarters")}
    if bottom in named and 0 < top < bottom:
        return f" {number_to_words(top)} {named[bottom][top != 1]} "
    return f" {number_to_words(top)} over {number_to_words(bottom)} "


def _fold(text: str) -> str:
    """Unicode compatibility forms, typographic punctuation and accents -> ASCII where possible."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)


def _replace_symbols(text: str) -> tuple[str, tuple[str, ...]]:
    """Spell out the symbols a reader would say; drop the rest, reporting the unsayable ones."""
    text = _RE_DOT_WORD.sub(" dot ", text)
    text = _RE_SLASH_WORDS.sub(" or ", text.replace("and/or", "and or"))
    out: list[str] = []
    skipped: dict[str, None] = {}
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch.isspace() or ch in ALLOWED_PUNCTUATION):
            out.append(ch)
        elif ch in _SYMBOLS or ch in _SEPARATORS:
            out.append(_SYMBOLS.get(ch) or _SEPARATORS[ch])
        else:
            out.append(" ")
            if ch not in _SILENT:
                skipped[ch] = None
    return "".join(out), tuple(skipped)


def normalize_for_speech(text: str) -> NormalizedText:
    """Rewrite `text` as words a TTS can read; unsupported characters are dropped and listed.

    >>> normalize_for_speech("Dr. Smith paid $5.50 on the 1st of May.").text
    'Doctor Smith paid five dollars and fifty cents on the first of May.'
    """
    text = _expand_abbreviations(_fold(text))
    text, skipped = _replace_symbols(_expand_numbers(text))
    text = _RE_EMPTY_QUOTES.sub(" ", _RE_DASH.sub(", ", text))
    text = normalize_text(text)  # remaining digits, spaces, space before punctuation
    text = _RE_COMMA_BEFORE_PUNCT.sub("", text)  # ", ," and ",." left by brackets and dashes
    return NormalizedText(_RE_EDGE_PUNCT.sub("", text), skipped)


def warn_skipped(skipped: Sequence[str]) -> None:
    if skipped:
        warnings.warn(f"skipped unsupported characters: {' '.join(skipped)}", stacklevel=3)


# --- 2. sentence splitting -----------------------------------------------------------------

# A "." after these words (lower case, without the final ".") does not end a sentence.
_NO_BREAK_AFTER = {w.lower() for w in _TITLES} | {"st", "e.g", "i.e", "vs", "cf", "fig", "no"}
# ... and after these only when the next sentence starts with a capital letter.
_BREAK_IF_CAPITAL = {w.lower() for w in _FINALS} | {"etc", "approx", "a.m", "p.m"}
_RE_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s)|\n[ \t]*\n")
_RE_NEXT_CHAR = re.compile(r"\s*[\"'(\[]*(.?)")
_RE_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|(?<=\s-)\s+")


def _is_boundary(text: str, m: re.Match[str]) -> bool:
    if m.group()[0] != "." or m.group().startswith(".."):  # ! ? ... or a blank line
        return True
    words = text[max(0, m.start() - 20) : m.start()].split()  # abbreviations are short
    token = words[-1].lstrip("\"'([").lower() if words else ""
    if len(token) == 1 and token.isalpha():  # an initial: "J. R. R. Tolkien"
        return False
    following = _RE_NEXT_CHAR.match(text, m.end())
    if token == "no":
        return not following.group(1).isdigit()
    if token in _NO_BREAK_AFTER:
        return False
    if token in _BREAK_IF_CAPITAL:
        return following.group(1).isupper()
    return True


def _pack(parts: Iterable[str], max_chars: int) -> list[str]:
    """Join consecutive parts with spaces into pieces of at most `max_chars` characters."""
    pieces: list[str] = []
    for part in parts:
        if pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
            pieces[-1] += " " + part
        else:
            pieces.append(part)
    return pieces


def _bound(sentence: str, max_chars: int) -> list[str]:
    """Split an over-long sentence at clause ends, then at spaces, then inside long words."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(_RE_CLAUSE_END.split(sentence), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for chunk in _pack(clause.split(" "), max_chars):
            pieces.extend(chunk[i : i + max_chars] for i in range(0, len(chunk), max_chars))
    return pieces


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text`, each at most `max_chars` characters, whitespace collapsed.

    A sentence ends at `.`, `!`, `?` (with any closing quotes) followed by white space, or at a
    blank line, but not after an abbreviation ("Dr. Smith") or an initial. A longer sentence
    is cut at commas and semicolons first, then between words. No piece is empty.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    sentences: list[str] = []
    start = 0
    for m in _RE_BOUNDARY.finditer(text):
        if _is_boundary(text, m):
            sentences.append(text[start : m.end()])
            start = m.end()
    sentences.append(text[start:])
    pieces: list[str] = []
    for sentence in sentences:
        words = sentence.split()
        if words:
            pieces.extend(_bound(" ".join(words), max_chars))
    return pieces
