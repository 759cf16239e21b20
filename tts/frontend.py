"""Text front end of the TTS: what a user types -> phoneme ids the model reads.

Four steps, each usable alone (the first two live in `tts.normalize`):

1. `normalize_for_speech` rewrites the text as plain English words (numbers, money, times,
   ordinals, abbreviations and symbols spelled out; accents folded to ASCII) and reports the
   characters it could not say (emoji, other scripts) instead of failing on them.
2. `split_sentences` cuts long text into sentences of at most `max_chars` characters.
3. `phonemize` turns sentences into IPA with espeak-ng (language en-us, stress marks, kept
   punctuation, one space between words). The espeak library and its data come from the pip
   package `espeakng-loader`, never from a system install.
4. `PhonemeVocab` maps IPA characters to ids and is stored in the checkpoint as JSON.

`TextFrontend` chains them for the TTS. phonemizer is imported on first use only: importing
this module stays cheap.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.errors import CheckpointError, VocalisError
from tts.normalize import MAX_SENTENCE_CHARS, normalize_for_speech, split_sentences, warn_skipped

LANGUAGE = "en-us"

# --- 3. phonemes ---------------------------------------------------------------------------

_ESPEAK_LOCK = threading.Lock()  # one espeak instance: not safe to call from two threads


@functools.cache
def _espeak_backend():
    """The espeak-ng backend on the library and data shipped by `espeakng-loader` (slow to make)."""
    try:
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as e:
        raise VocalisError(
            "the TTS text front end needs the pip packages phonemizer and espeakng-loader "
            "(pip install phonemizer espeakng-loader)"
        ) from e
    # Class-wide settings: every espeak backend phonemizer makes in this process uses them.
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    logger = logging.getLogger(f"{__name__}.espeak")
    logger.setLevel(logging.ERROR)  # phonemizer warns about every removed language switch
    return EspeakBackend(
        LANGUAGE,
        preserve_punctuation=True,
        with_stress=True,
        language_switch="remove-flags",
        logger=logger,
    )


def phonemize(texts: Sequence[str]) -> list[str]:
    """IPA of each text (one space between words, punctuation kept); '' for an empty text.

    >>> phonemize(["Hello world."])
    ['həlˈoʊ wˈɜːld.']
    """
    from phonemizer.separator import Separator

    lines = [" ".join(t.split()) for t in texts]
    todo = [i for i, line in enumerate(lines) if line]
    out = [""] * len(lines)
    if not todo:
        return out
    backend = _espeak_backend()
    with _ESPEAK_LOCK:
        ipa = backend.phonemize(
            [lines[i] for i in todo],
            separator=Separator(phone="", syllable="", word=" "),
            strip=True,
            njobs=1,
        )
    for i, p in zip(todo, ipa, strict=True):
        out[i] = " ".join(p.split())
    return out


# --- 4. vocabulary -------------------------------------------------------------------------

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_SYMBOLS = (PAD, BOS, EOS, UNK)
BOUNDARY_SYMBOLS = (" ", ".", ",", "?", "!", ";", ":", "-", "'", '"')  # word boundary, punctuation
STRESS_SYMBOLS = ("\u02c8", "\u02cc", "\u02d0")  # primary, secondary stress; length
# Every other character espeak-ng 1.52 en-us printed for the 105,664 words of the CMU
# dictionary and 3,000 generated sentences, in code point order ("\u0303" and "\u0329" are
# the combining tilde and syllabic mark; "r", "x", "\u026c", "\u02b2" come from loan words).
IPA_SYMBOLS = tuple(
    "abdefhijklmnoprstuvwxz\u00e6\u00f0\u014b\u0250\u0251\u0254\u0259\u025a\u025b\u025c"
    "\u0261\u026a\u026c\u0279\u027e\u0283\u028a\u028c\u0292\u0294\u02b2\u0303\u0329\u03b8\u1d7b"
)
DEFAULT_SYMBOLS = SPECIAL_SYMBOLS + BOUNDARY_SYMBOLS + STRESS_SYMBOLS + IPA_SYMBOLS
_VOCAB_FORMAT = "vocalis-phoneme-vocab"
_VOCAB_VERSION = 1


@dataclass(frozen=True)
class PhonemeVocab:
    """Character-level phoneme ids; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3

    def __post_init__(self) -> None:
        if tuple(self.symbols[: len(SPECIAL_SYMBOLS)]) != SPECIAL_SYMBOLS:
            raise ValueError(f"a phoneme vocabulary starts with {SPECIAL_SYMBOLS}")
        rest = self.symbols[len(SPECIAL_SYMBOLS) :]
        if any(len(s) != 1 for s in rest) or len(set(rest)) != len(rest):
            raise ValueError("phoneme symbols must be distinct single characters")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, ipa: str) -> list[int]:
        """Ids of the characters of `ipa`; an unknown character becomes <unk>, with a warning."""
        chars = unicodedata.normalize("NFD", ipa)
        ids = [self._index.get(ch, self.unk_id) for ch in chars]
        unknown = {ch: None for ch in chars if ch not in self._index}
        if unknown:
            warnings.warn(f"unknown phoneme symbols: {' '.join(map(repr, unknown))}", stacklevel=2)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """IPA text of `ids`; <pad>, <bos>, <eos> and <unk> are left out."""
        out = []
        for i in ids:
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"phoneme id {i} is outside the vocabulary of {len(self)}")
            if i >= len(SPECIAL_SYMBOLS):
                out.append(self.symbols[i])
        return "".join(out)

    def to_json(self) -> str:
        data = {"format": _VOCAB_FORMAT, "version": _VOCAB_VERSION, "symbols": self.symbols}
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PhonemeVocab:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"phoneme vocabulary is not valid JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != _VOCAB_FORMAT:
            raise CheckpointError("not a vocalis phoneme vocabulary")
        if data.get("version") != _VOCAB_VERSION:
            raise CheckpointError(f"phoneme vocabulary version {data.get('version')} is unknown")
        try:
            return cls(tuple(data["symbols"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"invalid phoneme vocabulary: {e}") from e


# --- 5. the whole front end ----------------------------------------------------------------


def text_to_phoneme_ids(text: str, vocab: PhonemeVocab) -> list[int]:
    """normalise -> phonemize -> encode one text (no <bos>/<eos>); [] when nothing is sayable."""
    normalized = normalize_for_speech(text)
    warn_skipped(normalized.skipped)
    return vocab.encode(phonemize([normalized.text])[0])


@dataclass(frozen=True)
class Utterance:
    text: str  # normalised sentence
    ipa: str
    ids: tuple[int, ...]  # phoneme ids, without <bos>/<eos>


@dataclass(frozen=True)
class TextFrontend:
    """Text of any length -> utterances of at most `max_chars` normalised characters."""

    vocab: PhonemeVocab = field(default_factory=PhonemeVocab)
    max_chars: int = MAX_SENTENCE_CHARS

    def __call__(self, text: str) -> list[Utterance]:
        """Each paragraph normalised and split into sentences, all phonemized in one batch.

        Sentences without a letter or digit (a stray quote) are left out; [] for empty text.
        """
        sentences: list[str] = []
        skipped: dict[str, None] = {}
        for paragraph in re.split(r"\n[ \t]*\n", text):
            normalized = normalize_for_speech(paragraph)
            skipped.update(dict.fromkeys(normalized.skipped))
            for sentence in split_sentences(normalized.text, self.max_chars):
                if any(ch.isalnum() for ch in sentence):
                    sentences.append(sentence)
        warn_skipped(tuple(skipped))
        return [
            Utterance(s, ipa, tuple(self.vocab.encode(ipa)))
            for s, ipa in zip(sentences, phonemize(sentences), strict=True)
        ]
