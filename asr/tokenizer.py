"""The ASR tokenizer: byte-level BPE over the transcripts, plus Whisper-style special tokens.

Ids `0 .. n_text - 1` are BPE pieces (trained with the `tokenizers` library); after them
come the special tokens, in this order:

    <|endoftext|> <|startoftranscript|> <|transcribe|> <|nospeech|> <|notimestamps|>

and then `N_TIMESTAMPS` timestamp tokens `<|0.00|> .. <|30.00|>` in steps of
`TIME_PRECISION` seconds (one encoder frame). The specials are derived from `n_text`, so
the BPE's JSON is all a checkpoint has to store (`ASRDims.tokenizer`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer as BPETokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from core.errors import CheckpointError

SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|transcribe|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
TIME_PRECISION = 0.02  # seconds per timestamp step: one encoder frame (2 mel hops of 10 ms)
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


class Tokenizer:
    """Text <-> token ids for the ASR decoder; see the module docstring for the id layout."""

    def __init__(self, bpe: BPETokenizer) -> None:
        self.bpe = bpe
        self.n_text = bpe.get_vocab_size(with_added_tokens=True)
        self.eot = self.n_text
        self.sot = self.n_text + 1
        self.transcribe = self.n_text + 2
        self.no_speech = self.n_text + 3
        self.no_timestamps = self.n_text + 4
        self.timestamp_begin = self.n_text + len(SPECIALS)
        self.n_vocab = self.timestamp_begin + N_TIMESTAMPS

    # ------------------------------------------------------------------------------------
    # Building and storing

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train a byte-level BPE of `vocab_size` pieces (at least the 256 byte symbols)."""
        if vocab_size < 256:
            raise ValueError(
                f"vocab_size must be at least 256 (the byte alphabet), got {vocab_size}"
            )
        bpe = BPETokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator(texts, trainer)
        return cls(bpe)

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        try:
            return cls(BPETokenizer.from_str(text))
        except Exception as e:  # the tokenizers library raises plain Exceptions
            raise CheckpointError(
                f"cannot read the ASR tokenizer: {' '.join(str(e).split())}"
            ) from None

    def to_json(self) -> str:
        return self.bpe.to_str()

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of `to_json()`: the identity of this tokenizer (what an LM fits)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------------------------
    # Text

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` (a leading space is added, as between words)."""
        return self.bpe.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the BPE ids in `ids`; special and timestamp tokens are dropped."""
        return self.bpe.decode([i for i in ids if i < self.n_text]).strip()

    @functools.cached_property
    def piece_texts(self) -> list[str]:
        """The text of each BPE piece alone (a leading space where it starts a word; a
        character split across pieces decodes to U+FFFD)."""
        return [self.bpe.decode([i]) for i in range(self.n_text)]

    def decode_with_timestamps(self, ids: Sequence[int]) -> str:
        """Text with timestamp tokens written as `<|1.24|>` (other specials by name)."""
        out: list[str] = []
        run: list[int] = []
        for i in ids:
            if i < self.n_text:
                run.append(i)
                continue
            if run:
                out.append(self.bpe.decode(run))
                run = []
            out.append(self.token_name(i))
        if run:
            out.append(self.bpe.decode(run))
        return "".join(out)

    def token_name(self, token: int) -> str:
        if token < self.n_text:
            return self.bpe.id_to_token(token) or ""
        if token < self.timestamp_begin:
            return SPECIALS[token - self.n_text]
        return f"<|{self.token_time(token):.2f}|>"

    # ------------------------------------------------------------------------------------
    # Special sequences and timestamps

    def prompt(self, timestamps: bool) -> list[int]:
        """The decoder's start sequence: SOT, transcribe, and <|notimestamps|> unless timed."""
        start = [self.sot, self.transcribe]
        return start if timestamps else [*start, self.no_timestamps]

    def is_timestamp(self, token: int) -> bool:
        return token >= self.timestamp_begin

    def timestamp_token(self, seconds: float) -> int:
        """The timestamp token nearest to `seconds`, clamped to the 0-30 s range."""
        step = round(seconds / TIME_PRECISION)
        return self.timestamp_begin + min(max(step, 0), N_TIMESTAMPS - 1)

    def token_time(self, token: int) -> float:
        if not self.is_timestamp(token):
            raise ValueError(f"token {token} is not a timestamp")
        return (token - self.timestamp_begin) * TIME_PRECISION

    @property
    def special_tokens(self) -> dict[str, int]:
        return {name: self.n_text + k for k, name in enumerate(SPECIALS)}
