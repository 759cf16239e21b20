"""A token n-gram language model for shallow fusion in the recogniser's beam search.

The decoder learns a language model only from the transcripts it was trained on, a few
tens of thousands of sentences; its errors on natural text are words spelled the way they
sound ("detrain" for "the train"). Text is far cheaper than transcribed speech, so a
separate model of the same BPE pieces, counted over much more text, adds a prior to every
beam step: score += weight * log P_lm(token | the beam's text so far) (shallow fusion).

The model is interpolated Kneser-Ney over the tokenizer's BPE pieces, with end-of-text as
the end-of-sentence symbol and start-of-transcript as the sentence start. Each order's
n-grams are packed into one int64 per n-gram (`bits` per token) and sorted, so a batch of
candidates is looked up with `torch.searchsorted`: no Python dictionary, and nothing to
unpickle. Stored as a vocalis checkpoint of kind "asr-lm" (safetensors + JSON), tied to
the tokenizer it was counted with by the SHA-256 of that tokenizer's JSON.

Lookup is the usual backoff form: P(w | h) is the stored value of the longest (h, w) seen;
otherwise the backoff weight of h times P(w | h minus its first token). In interpolated
Kneser-Ney the backoff weight of h is its interpolation weight D * N1+(h .) / c(h), so the
backoff form gives exactly the interpolated probabilities for every n-gram kept.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from asr.lexicon import Lexicon, lexicon_words
from asr.tokenizer import Tokenizer
from core.checkpoint import model_meta, read_model_checkpoint, write_model_files
from core.errors import CheckpointError
from core.paths import SHIPPED_MODELS

KIND = "asr-lm"
SHIPPED_LM = SHIPPED_MODELS / "asr" / "lm.safetensors"
# The fusion weight unless told otherwise (chosen on the valid splits: the README's ASR section).
DEFAULT_LM_WEIGHT = 0.3
# What the search subtracts per word outside the LM's lexicon (asr.lexicon), in the units of
# its log-probability score (chosen on the valid splits: docs/asr.md).
DEFAULT_LEXICON_PENALTY = 2.0
NEVER = -99.0  # the log-probability of the sentence start (only ever a context)


@dataclass(frozen=True)
class LMDims:
    order: int  # longest n-gram
    n_text: int  # BPE pieces of the tokenizer (end-of-text = n_text, sentence start = n_text + 1)
    bits: int  # bits per token in a packed key
    tokenizer_sha256: str  # of the tokenizer's JSON: the LM only fits that tokenizer


class NGramLM:
    """Log-probabilities (natural log) of next BPE pieces; see the module docstring."""

    def __init__(self, dims: LMDims, tables: dict[str, Tensor]) -> None:
        self.dims = dims
        # the words of the LM's text (asr.lexicon); None in LMs counted before it was kept
        self.lexicon = Lexicon.from_tensor(tables["lexicon"]) if "lexicon" in tables else None
        self.keys = [tables[f"keys.{n}"].long() for n in range(1, dims.order + 1)]
        self.logprobs = [tables[f"logprobs.{n}"].float() for n in range(1, dims.order + 1)]
        # (the longest n-grams are never a context: they have no backoff weights)
        self.backoffs = [tables[f"backoffs.{n}"].float() for n in range(1, dims.order)]
        self.eos = dims.n_text
        self.bos = dims.n_text + 1
        for n, (k, p) in enumerate(zip(self.keys, self.logprobs), 1):
            b = self.backoffs[n - 1] if n < dims.order else p
            if not (k.shape == p.shape == b.shape and k.dim() == 1):
                raise CheckpointError(f"asr-lm: the order-{n} tables differ in shape")

    @property
    def n_grams(self) -> int:
        return sum(len(k) for k in self.keys)

    def fits(self, tokenizer: Tokenizer) -> bool:
        """Whether the LM was counted with `tokenizer`."""
        return tokenizer.sha256 == self.dims.tokenizer_sha256

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        if not self.fits(tokenizer):
            raise CheckpointError(
                "the language model was counted with another tokenizer than this ASR model's"
            )

    def context(self, tokens: Sequence[int]) -> list[int]:
        """The LM's view of a decoded prefix: sentence start, then its text pieces (special
        and timestamp tokens are skipped), at most `order - 1` of them."""
        text = [t for t in tokens if t < self.dims.n_text]
        return [self.bos, *text][-(self.dims.order - 1) :] if self.dims.order > 1 else []

    def score(self, contexts: Sequence[Sequence[int]], candidates: Tensor) -> Tensor:
        """log P(candidate | context) `(R, W)` for contexts from `context()` and candidate
        tokens `(R, W)`. End-of-text is the end of the sentence; other special and
        timestamp tokens score 0 (the LM has no opinion on them)."""
        device = candidates.device
        cand = candidates.long().cpu()
        rows, width = cand.shape
        lm_token = (cand <= self.eos) & (cand >= 0)
        tok = torch.where(lm_token, cand, 0)
        bits = self.dims.bits
        total = torch.zeros(rows, width, dtype=torch.float64)
        done = ~lm_token
        for n in range(self.dims.order, 0, -1):
            if bool(done.all()):
                break
            ctx = []  # packed context of length n - 1 per row, or -1 when too short
            for c in contexts:
                ctx.append(_pack(c[len(c) - (n - 1) :], bits) if len(c) >= n - 1 else -1)
            ctx_key = torch.tensor(ctx, dtype=torch.long).unsqueeze(1)  # (R, 1)
            has_ctx = ctx_key >= 0
            key = (ctx_key.clamp(min=0) << bits) | tok  # (R, W)
            found, value = _lookup(self.keys[n - 1], self.logprobs[n - 1], key)
            found &= has_ctx
            hit = found & ~done
            total = torch.where(hit, total + value.double(), total)
            done = done | hit
            if n > 1:  # not found here: back off through the context's weight
                c_found, bow = _lookup(self.keys[n - 2], self.backoffs[n - 2], ctx_key.clamp(min=0))
                bow = torch.where(c_found & has_ctx, bow, 0.0).double()  # (R, 1)
                total = torch.where(done, total, total + bow)
        return torch.where(lm_token, total, 0.0).float().to(device)

    def sentence_logprob(self, tokens: Sequence[int]) -> float:
        """log P of a whole sentence of text pieces, end-of-sentence included."""
        total, history = 0.0, []
        for t in [*tokens, self.eos]:
            total += float(self.score([self.context(history)], torch.tensor([[t]]))[0, 0])
            history.append(t)
        return total


def _pack(tokens: Sequence[int], bits: int) -> int:
    key = 0
    for t in tokens:
        key = (key << bits) | int(t)
    return key


def _lookup(keys: Tensor, values: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """(found, value) for each packed key in `query`, by binary search in sorted `keys`."""
    if len(keys) == 0:
        return torch.zeros_like(query, dtype=torch.bool), torch.zeros(query.shape)
    index = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return keys[index] == query, values[index]


# ---------------------------------------------------------------------------------------
# Counting


def build_lm(
    lines: Iterable[str],
    tokenizer: Tokenizer,
    order: int = 4,
    prune: int = 1,
) -> tuple[LMDims, dict[str, Tensor], dict]:
    """Interpolated Kneser-Ney over the BPE pieces of `lines` (one sentence or utterance
    each): the dims, the tables for `NGramLM` (with the lexicon of the lines' words), and
    counts for the training record.

    N-grams of order 3 and above seen `prune` times or fewer are dropped after the
    probabilities are computed (their mass is reached through backoff instead), which
    keeps the tables small; `prune=0` keeps everything."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    n_text = tokenizer.n_text
    eos, bos = n_text, n_text + 1
    bits = (bos).bit_length()
    if bits * order > 62:
        raise ValueError(f"an order-{order} n-gram of {bits}-bit tokens does not fit 62 bits")
    texts = [line.strip() for line in lines if line.strip()]
    n_lines = len(texts)
    # the same ids as tokenizer.encode, many lines at a time
    encoded = tokenizer.bpe.encode_batch(texts) if texts else []
    seqs = [np.array([bos, *e.ids, eos], dtype=np.int64) for e in encoded]
    if not seqs:
        raise ValueError("no text to count")
    tokens = np.concatenate(seqs)
    sentence = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    vocab = n_text + 1  # what can be predicted: the pieces and the end of the sentence

    # Raw counts of every order: packed keys of windows that stay inside one sentence.
    raw: list[tuple[np.ndarray, np.ndarray]] = []
    for n in range(1, order + 1):
        starts = np.arange(len(tokens) - n + 1)
        starts = starts[sentence[starts] == sentence[starts + n - 1]]
        key = np.zeros(len(starts), dtype=np.int64)
        for i in range(n):
            key = (key << bits) | tokens[starts + i]
        if n == 1:
            key = key[tokens[starts] != bos]  # the sentence start is never predicted
        uniq, counts = np.unique(key, return_counts=True)
        raw.append((uniq, counts))

    # Kneser-Ney counts: below the top order, the number of distinct tokens seen before the
    # n-gram (raw counts for n-grams that begin at the sentence start, which has nothing
    # before it).
    adjusted: list[np.ndarray] = []
    for n in range(1, order + 1):
        keys, counts = raw[n - 1]
        if n == order:
            adjusted.append(counts.astype(np.float64))
            continue
        higher = raw[n][0]  # order n + 1 keys; their suffix of n tokens
        suffix = higher & ((1 << (bits * n)) - 1)
        suffixes, left = np.unique(suffix, return_counts=True)
        cont = np.zeros(len(keys), dtype=np.float64)
        where = np.searchsorted(keys, suffixes)
        cont[where] = left
        first = keys >> (bits * (n - 1))
        starts_sentence = first == bos if n > 1 else np.zeros(len(keys), dtype=bool)
        adjusted.append(np.where(starts_sentence, counts, cont))

    logprobs: list[np.ndarray] = []
    backoffs: list[np.ndarray] = [np.zeros(len(raw[n][0])) for n in range(order)]
    discounts = []
    for n in range(1, order + 1):
        keys = raw[n - 1][0]
        a = adjusted[n - 1]
        d = _discount(a)
        discounts.append(d)
        if n == 1:
            # every predictable token gets a unigram, seen or not
            # (and the sentence start is in the table, never predicted, for its weight)
            a_full = np.zeros(vocab)
            a_full[keys] = a
            total = a_full.sum()
            seen = (a_full > 0).sum()
            p = np.maximum(a_full - d, 0) / total + d * seen / total / vocab
            raw[0] = (np.arange(vocab + 1, dtype=np.int64), np.ones(vocab + 1, dtype=np.int64))
            logprobs.append(np.append(np.log(p), NEVER))
            backoffs[0] = np.zeros(vocab + 1)
            continue
        context = keys >> bits
        ctx, inverse = np.unique(context, return_inverse=True)
        ctx_total = np.bincount(inverse, weights=a)
        ctx_types = np.bincount(inverse, weights=(a > 0).astype(np.float64))
        gamma = d * ctx_types / ctx_total  # interpolation weight of each context
        lower_keys = raw[n - 2][0]
        lower = keys & ((1 << (bits * (n - 1))) - 1)
        lower_p = np.exp(logprobs[n - 2][np.searchsorted(lower_keys, lower)])
        p = np.maximum(a - d, 0) / ctx_total[inverse] + gamma[inverse] * lower_p
        logprobs.append(np.log(p))
        # the context's weight sits on the context as an n-gram of order n - 1
        backoffs[n - 2][np.searchsorted(lower_keys, ctx)] = np.log(gamma)

    tables: dict[str, Tensor] = {}
    kept = []
    for n in range(1, order + 1):
        keys, counts = raw[n - 1]
        keep = np.ones(len(keys), dtype=bool)
        if n >= 3 and prune > 0:
            keep = counts > prune
        if n < order and n >= 3 and prune > 0:
            # a context whose longer n-grams survive must survive too, for its weight
            longer = raw[n][0][raw[n][1] > prune] >> bits
            keep[np.searchsorted(keys, np.unique(longer))] = True
        kept.append(int(keep.sum()))
        tables[f"keys.{n}"] = torch.from_numpy(keys[keep].copy())
        tables[f"logprobs.{n}"] = torch.from_numpy(logprobs[n - 1][keep].astype(np.float32))
        if n < order:
            tables[f"backoffs.{n}"] = torch.from_numpy(backoffs[n - 1][keep].astype(np.float32))
    lexicon = Lexicon(lexicon_words(texts))
    tables["lexicon"] = lexicon.to_tensor()
    dims = LMDims(order=order, n_text=n_text, bits=bits, tokenizer_sha256=tokenizer.sha256)
    record = {
        "lines": n_lines,
        "tokens": int(len(tokens) - len(seqs)),  # pieces and ends, not the sentence starts
        "n_grams": kept,
        "discounts": [round(d, 4) for d in discounts],
        "prune": prune,
        "lexicon words": len(lexicon),
    }
    return dims, tables, record


def _discount(counts: np.ndarray) -> float:
    """The absolute discount of one order from its count-of-counts (Ney et al.)."""
    n1 = float((counts == 1).sum())
    n2 = float((counts == 2).sum())
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)


# ---------------------------------------------------------------------------------------
# Text

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences_of(text: str) -> list[str]:
    """The sentences of a transcript, as compared for held-out text: split after . ! or ?,
    lower case, punctuation and spacing normalised."""
    from corpus.text import normalize_text, words_of

    pieces = (words_of(normalize_text(s)) for s in _SENTENCE.split(text.strip()))
    return [" ".join(words) for words in pieces if words]


def drop_held_out(lines: Iterable[str], held_out: set[str]) -> tuple[list[str], int]:
    """The lines none of whose sentences is in `held_out` (from `sentences_of`), and how
    many were dropped: the LM never reads a sentence that evaluation plays."""
    kept, dropped = [], 0
    for line in lines:
        if any(s in held_out for s in sentences_of(line)):
            dropped += 1
        else:
            kept.append(line)
    return kept, dropped


def corpus_text(
    manifests: Sequence[str | os.PathLike],
    sources: Sequence[str] = (),
    generated: int = 0,
    seed: int = 0,
) -> tuple[list[str], dict]:
    """The LM's lines and a record of where they came from.

    - the transcripts of split "train" of `manifests`;
    - each text source of `sources` ("wordnet" or a text file; `corpus.text_sources`), its
      fragments composed into utterances as the synthetic corpus composes them;
    - `generated` sentences of the project's templates (`corpus.sentences`).

    Every sentence of split "valid" or "test" of `manifests` is held out: a line of a
    source or of the templates that contains one is dropped."""
    from corpus.manifest import read_manifest
    from corpus.sentences import generate_sentences
    from corpus.text_sources import clean_fragment, compose_utterances, source_fragments

    train, held_out = [], set()
    for path in manifests:
        for u in read_manifest(path):
            if not u.text:
                continue
            if u.split == "train":
                train.append(u.text)
            else:
                held_out.update(sentences_of(u.text))
    train, _ = drop_held_out(train, held_out)  # a training text may share a sentence
    # (the manifests by their last two path parts: "synth/manifest.jsonl", not a home folder)
    names = [str(Path(*Path(p).parts[-2:])) for p in manifests]
    record: dict = {"manifests": names, "transcripts": len(train)}
    lines = list(train)
    for source in sources:
        cleaned = (clean_fragment(f, max_words=24) for f in source_fragments(source))
        fragments, dropped = drop_held_out((c for c in cleaned if c), held_out)
        composed = compose_utterances(fragments, n=len(fragments), seed=seed)
        record[f"text {Path(source).name}"] = {
            "lines": len(composed),
            "held-out fragments dropped": dropped,
        }
        lines += composed
    if generated > 0:
        sentences, dropped = drop_held_out(generate_sentences(generated, seed=seed), held_out)
        record["templates"] = {"lines": len(sentences), "held-out sentences dropped": dropped}
        lines += sentences
    record["held-out sentences"] = len(held_out)
    return lines, record


# ---------------------------------------------------------------------------------------
# Files


def save_lm(
    path: str | os.PathLike, dims: LMDims, tables: dict[str, Tensor], training: dict
) -> None:
    tensors = {k: v.contiguous() for k, v in tables.items()}
    write_model_files(path, tensors, model_meta(KIND, dims, training))


def load_lm(path: str | os.PathLike) -> NGramLM:
    ckpt = read_model_checkpoint(path, kind=KIND, dims_cls=LMDims)
    order = ckpt.dims.order
    expected = {f"{t}.{n}" for t in ("keys", "logprobs") for n in range(1, order + 1)}
    expected |= {f"backoffs.{n}" for n in range(1, order)}
    if set(ckpt.state_dict) - {"lexicon"} != expected:
        raise CheckpointError(
            f"'{ckpt.path}' does not hold the tables of an order-{ckpt.dims.order} LM"
        )
    return NGramLM(ckpt.dims, ckpt.state_dict)


def shipped_lm(tokenizer: Tokenizer, path: str | os.PathLike = SHIPPED_LM) -> NGramLM | None:
    """The LM at `path` (default: the shipped one) when it is there and was counted with
    `tokenizer`, else None. Read once per file version (path, size, modification time), so
    every call of `transcribe` and every batch can ask for it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    lm = _cached_lm(os.path.realpath(path), st.st_size, st.st_mtime_ns)
    return lm if lm.fits(tokenizer) else None


@functools.lru_cache(maxsize=2)
def _cached_lm(real: str, size: int, mtime_ns: int) -> NGramLM:
    return load_lm(real)
