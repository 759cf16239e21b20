"""Decoding one 30-second window (or less) per item: greedy, sampling and beam search on
the decoder's KV cache, the rules that keep timestamps well formed, no-speech probability,
and temperature fallback driven by compression ratio and average log-probability.

With `ctc_weight` > 0 and a model that has a CTC head, search at temperature 0 (greedy
too, as a beam of one) is joint CTC/attention decoding: each beam's best attention
candidates are re-scored with the CTC prefix scores of `asr.ctc`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from asr.ctc import CTCPrefixScorer, Speller
from asr.lexicon import WordJudge
from asr.lm import DEFAULT_LEXICON_PENALTY, DEFAULT_LM_WEIGHT, NGramLM, shipped_lm
from asr.model import ASRModel, AudioFeatures
from asr.tokenizer import TIME_PRECISION, Tokenizer

# The CTC weight of a model that has a head, unless told otherwise (chosen on the valid
# splits: see the README's ASR section).
DEFAULT_CTC_WEIGHT = 0.1


@dataclass(frozen=True)
class DecodingOptions:
    temperature: float = 0.0  # 0: argmax (greedy or beam); > 0: sampling
    beam_size: int = 1  # > 1: beam search (temperature 0 only)
    timestamps: bool = False  # predict <|t|> text <|t|> segments
    max_tokens: int | None = None  # sampled tokens per item; default: what the context holds
    length_penalty: float | None = None  # None: rank beams by mean log-prob; else GNMT alpha
    max_initial_timestamp: float = 1.0  # seconds; the first timestamp may not be later
    suppress_blank: bool = True  # no end-of-text as the first token
    # Weight w of the CTC head's prefix scores against the decoder's log-probs, (1 - w) and
    # w, at temperature 0 (needs a model with a CTC head); 0: the decoder alone; None:
    # DEFAULT_CTC_WEIGHT if the model has a head, else 0.
    ctc_weight: float | None = None
    # Shallow fusion with a token n-gram LM (asr.lm.NGramLM) at temperature 0: every beam
    # step adds lm_weight * log P_lm(token | the beam's text) to the search score. "auto":
    # the shipped LM (models/asr/lm) when it was counted with the model's tokenizer, else none.
    lm: NGramLM | str | None = None
    lm_weight: float = DEFAULT_LM_WEIGHT
    # Subtracted from a beam's score (at temperature 0; greedy too, as a beam of one) once
    # for each word it writes outside the lexicon of `lm` (asr.lexicon), if it keeps one.
    lexicon_penalty: float = DEFAULT_LEXICON_PENALTY
    # Return each item's CTC log-probs with its result (`DecodingResult.ctc_log_probs`), from
    # the same encoder pass as the decoding: word timing needs them (a model with a CTC head).
    keep_ctc: bool = False

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.ctc_weight is not None and not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        if not self.lm_weight >= 0:
            raise ValueError(f"lm_weight must be >= 0, got {self.lm_weight}")
        if not self.lexicon_penalty >= 0:
            raise ValueError(f"lexicon_penalty must be >= 0, got {self.lexicon_penalty}")
        if isinstance(self.lm, str) and self.lm != "auto":
            raise ValueError(f"lm must be an NGramLM, 'auto' or None, got {self.lm!r}")

    @property
    def fused(self) -> bool:
        """Whether the search adds a language model's scores."""
        return isinstance(self.lm, NGramLM) and self.lm_weight > 0

    @property
    def judges_words(self) -> bool:
        """Whether the search penalises words outside the LM's lexicon."""
        return (
            isinstance(self.lm, NGramLM)
            and self.lm.lexicon is not None
            and self.lexicon_penalty > 0
        )

    def for_model(self, model: ASRModel) -> DecodingOptions:
        """These options resolved for `model`: `ctc_weight` None is its default, `lm` "auto"
        the shipped LM or None."""
        if self.lm == "auto":
            lm = shipped_lm(model.tokenizer) if model.tokenizer is not None else None
            return dataclasses.replace(self, lm=lm).for_model(model)
        if self.lm is not None and model.tokenizer is not None:
            self.lm.check_tokenizer(model.tokenizer)
        if self.keep_ctc and model.ctc is None:
            raise ValueError("keep_ctc needs a model with a CTC head")
        if self.ctc_weight is None:
            weight = DEFAULT_CTC_WEIGHT if model.ctc is not None else 0.0
            return dataclasses.replace(self, ctc_weight=weight)
        if self.ctc_weight > 0 and model.ctc is None:
            raise ValueError("ctc_weight needs a model with a CTC head")
        return self


@dataclass(frozen=True)
class DecodingResult:
    tokens: list[int]  # sampled tokens after the prompt, without end-of-text
    text: str
    avg_logprob: float  # sum of the sampled tokens' log-probs (end-of-text included) / (n + 1)
    no_speech_prob: float  # P(<|nospeech|>) right after <|startoftranscript|>
    temperature: float
    compression_ratio: float  # len(text bytes) / len(zlib(text bytes)); high = repetitive
    # With `DecodingOptions.keep_ctc`: the CTC head's log-probs over the item's frames
    # `(S, units + 1)`, fp32 on the CPU.
    ctc_log_probs: Tensor | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FallbackOptions:
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    # Above this no-speech probability a window is no speech whatever its text's
    # log-probability: pieces of white noise came out as "F" at avg_logprob -0.96 and
    # no_speech_prob 0.99998, just inside Whisper's rule; real speech stays below 0.001.
    no_speech_certain: float | None = 0.99


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def needs_fallback(result: DecodingResult, options: FallbackOptions) -> bool:
    """Retry at a higher temperature when the text is repetitive or unlikely, unless the
    window looks like silence (then the no-speech rule, not a retry, decides)."""
    if (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
    ):
        return False
    ratio_limit = options.compression_ratio_threshold
    if ratio_limit is not None and result.compression_ratio > ratio_limit:
        return True
    return options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold


def is_no_speech(result: DecodingResult, options: FallbackOptions) -> bool:
    """Whisper's rule: likely silence and no confident text; or all but certain silence."""
    if options.no_speech_certain is not None and result.no_speech_prob > options.no_speech_certain:
        return True
    if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.logprob_threshold is None or result.avg_logprob < options.logprob_threshold


DecodeFn = Callable[[Tensor, Tensor, DecodingOptions], list[DecodingResult]]


def decode_with_fallback(
    decode_fn: DecodeFn,
    mel: Tensor,
    lengths: Tensor,
    options: DecodingOptions,
    fallback: FallbackOptions,
) -> list[DecodingResult]:
    """Decode at the first temperature; items that `needs_fallback` are decoded again at the
    next one (sampling, no beams), and so on. Each item keeps its last result."""
    results: list[DecodingResult | None] = [None] * mel.shape[0]
    pending = list(range(mel.shape[0]))
    for temperature in fallback.temperatures:
        opts = dataclasses.replace(options, temperature=temperature)
        if temperature > 0:
            opts = dataclasses.replace(opts, beam_size=1)
        index = torch.tensor(pending, device=mel.device)
        for i, result in zip(pending, decode_fn(mel[index], lengths[index], opts)):
            results[i] = result
        pending = [i for i in pending if needs_fallback(results[i], fallback)]
        if not pending:
            break
    return results  # type: ignore[return-value]


def model_decode_fn(model: ASRModel) -> DecodeFn:
    """`decode` bound to a model (the usual `decode_fn`)."""

    def fn(mel: Tensor, lengths: Tensor, options: DecodingOptions) -> list[DecodingResult]:
        return decode(model, mel, lengths, options)

    return fn


# ---------------------------------------------------------------------------------------
# Logit rules


class LogitRules:
    """Sets forbidden next tokens to -inf, row by row, given the tokens sampled so far."""

    def __init__(self, tokenizer: Tokenizer, options: DecodingOptions, n_audio_frames: Tensor):
        self.tok = tokenizer
        self.options = options
        always = [tokenizer.sot, tokenizer.transcribe, tokenizer.no_speech, tokenizer.no_timestamps]
        self.always = torch.tensor(always)
        # The last timestamp each row may use: the end of its audio (one step per frame).
        self.last_timestamp = n_audio_frames.tolist()
        self.max_initial = round(options.max_initial_timestamp / TIME_PRECISION)

    def take(self, rows: Sequence[int]) -> LogitRules:
        """These rules for the given rows only, in that order (the beam search drops the rows
        of items that have finished)."""
        out = copy.copy(self)
        out.last_timestamp = [self.last_timestamp[r] for r in rows]
        return out

    def apply(self, logits: Tensor, sampled: Sequence[Sequence[int]]) -> Tensor:
        """logits `(N, V)` for the next token of each row; `sampled` the rows' tokens so far."""
        logits = logits.float().clone()
        logits[:, self.always.to(logits.device)] = -torch.inf
        tb = self.tok.timestamp_begin
        if not self.options.timestamps:
            logits[:, tb:] = -torch.inf
            if self.options.suppress_blank:
                for row, seq in enumerate(sampled):
                    if not seq:
                        logits[row, self.tok.eot] = -torch.inf
            return logits
        for row, seq in enumerate(sampled):
            self._timestamp_rules(logits[row], seq, self.last_timestamp[row])
        return logits

    def _timestamp_rules(self, logits: Tensor, seq: Sequence[int], last: int) -> None:
        tok, tb = self.tok, self.tok.timestamp_begin
        logits[tb + last + 1 :] = -torch.inf  # never past the end of the audio
        if not seq:  # the first token is a timestamp, and an early one
            logits[:tb] = -torch.inf
            logits[tb + self.max_initial + 1 :] = -torch.inf
            return
        last_ts = tok.is_timestamp(seq[-1])
        before_ts = len(seq) < 2 or tok.is_timestamp(seq[-2])
        if last_ts and before_ts:  # a segment just opened (or closed and reopened): text next
            logits[tb:] = -torch.inf
        elif last_ts:  # a segment closed: another timestamp (to open one) or the end
            logits[: tok.eot] = -torch.inf
        times = [t for t in seq if tok.is_timestamp(t)]
        if times:  # never backwards; a new segment may start where the last one closed
            floor = times[-1] if last_ts and not before_ts else times[-1] + 1
            logits[tb:floor] = -torch.inf
        logprobs = logits.log_softmax(-1)
        if logprobs[tb:].logsumexp(-1) > logprobs[:tb].max():
            logits[:tb] = -torch.inf  # a timestamp is likelier than any text token


# ---------------------------------------------------------------------------------------
# Decoding


@torch.inference_mode()
def decode(
    model: ASRModel, mel: Tensor, lengths: Tensor, options: DecodingOptions
) -> list[DecodingResult]:
    """Decode a batch of windows: mel `(B, n_mels, F)` with `lengths` valid frames each."""
    tok = model.tokenizer
    if tok is None:
        raise ValueError("the model has no tokenizer")
    audio = model.embed_audio(mel.to(model.dtype), lengths)  # features in the weights' dtype
    prompt = tok.prompt(options.timestamps)
    limit = model.dims.n_text_ctx - len(prompt)
    max_tokens = min(options.max_tokens or limit, limit)
    options = options.for_model(model)
    rules = LogitRules(tok, options, audio.lengths.repeat_interleave(options.beam_size).cpu())
    joint = options.temperature == 0 and (
        options.ctc_weight > 0 or options.fused or options.judges_words
    )
    searched = options.beam_size > 1 or joint
    ctc_log_probs = None
    if options.keep_ctc or (searched and options.ctc_weight > 0):
        ctc_log_probs = model.ctc_log_probs(audio)  # (B, S, units + 1)
    if searched:
        if options.temperature > 0:
            raise ValueError("beam search decodes at temperature 0")
        found = _beam_search(model, audio, prompt, rules, options, max_tokens, ctc_log_probs)
    else:
        found = _sample(model, audio, prompt, rules, options.temperature, max_tokens)
    kept: list[Tensor | None] = [None] * len(found)
    if options.keep_ctc:
        assert ctc_log_probs is not None
        kept = [lp[:n].cpu() for lp, n in zip(ctc_log_probs, audio.lengths.tolist())]
    results = []
    for (tokens, sum_logprob, no_speech), item_ctc in zip(found, kept):
        text = tok.decode(tokens)
        results.append(
            DecodingResult(
                tokens=tokens,
                text=text,
                avg_logprob=sum_logprob / (len(tokens) + 1),
                no_speech_prob=no_speech,
                temperature=options.temperature,
                compression_ratio=compression_ratio(text),
                ctc_log_probs=item_ctc,
            )
        )
    return results


def _prompt_pass(
    model: ASRModel, audio: AudioFeatures, prompt: list[int], beams: int = 1
) -> tuple[Tensor, Tensor, object]:
    """Run the prompt through a fresh cache of `beams` rows per item (each row of one item
    reads the item's audio, stored once): last-position logits `(N * beams, V)`,
    P(no speech) `(N * beams,)`."""
    n = audio.x.shape[0] * beams
    cache = model.new_cache(n)
    tokens = torch.tensor([prompt] * n, device=audio.x.device)  # (N, P)
    logits = model.decoder(tokens, audio, cache).float()  # (N, P, V)
    no_speech = logits[:, 0].softmax(-1)[:, model.tokenizer.no_speech]  # after SOT
    return logits[:, -1], no_speech, cache


def _sample(
    model: ASRModel,
    audio: AudioFeatures,
    prompt: list[int],
    rules: LogitRules,
    temperature: float,
    max_tokens: int,
) -> list[tuple[list[int], float, float]]:
    eot = model.tokenizer.eot
    logits, no_speech, cache = _prompt_pass(model, audio, prompt)
    n = logits.shape[0]
    sampled: list[list[int]] = [[] for _ in range(n)]
    sum_logprobs = torch.zeros(n, device=logits.device)
    done = torch.zeros(n, dtype=torch.bool, device=logits.device)
    for step in range(max_tokens):
        logits = rules.apply(logits, sampled)  # (N, V)
        logprobs = logits.log_softmax(-1)
        if temperature > 0:
            next_tokens = torch.multinomial((logits / temperature).softmax(-1), 1).squeeze(1)
        else:
            next_tokens = logits.argmax(-1)  # (N,)
        chosen = logprobs.gather(1, next_tokens.unsqueeze(1)).squeeze(1)
        sum_logprobs += torch.where(done, 0.0, chosen)
        next_tokens = torch.where(done, eot, next_tokens)
        for row, token in enumerate(next_tokens.tolist()):
            if not done[row] and token != eot:
                sampled[row].append(token)
        done |= next_tokens == eot
        if bool(done.all()) or step == max_tokens - 1:
            break
        logits = model.decoder(next_tokens.unsqueeze(1), audio, cache)[:, -1].float()
    return [(s, float(lp), float(ns)) for s, lp, ns in zip(sampled, sum_logprobs, no_speech)]


def _beam_search(
    model: ASRModel,
    audio: AudioFeatures,
    prompt: list[int],
    rules: LogitRules,
    options: DecodingOptions,
    max_tokens: int,
    ctc_log_probs: Tensor | None,
) -> list[tuple[list[int], float, float]]:
    """Beam search, `k` beams per item on `k` rows of the cache (reordered each step).

    Each live beam proposes its best continuations (`k + 1`, or with the CTC head the
    decoder's best `k + 1` (at least 3) and end-of-text, re-scored by it); per item the
    best `k` that do not end the text live on, and those that end it are kept as finished,
    until `k` have finished or the token budget is spent. An item with `k` finished beams
    leaves the batch (its rows are dropped from the cache), so a batch costs what its
    unfinished items need. The best finished beam wins (by length-normalised score).
    `ctc_log_probs` are the CTC head's `(N, S, units + 1)`, given when the head votes.
    Returns (tokens, the decoder's sum of log-probs, P(no speech)) per item."""
    k, eot, tok = options.beam_size, model.tokenizer.eot, model.tokenizer
    w = options.ctc_weight
    lm = options.lm if options.fused else None
    n_items = audio.x.shape[0]
    judge = None
    if options.judges_words:
        judge = WordJudge(options.lm.lexicon, tok.piece_texts)
        words = [WordJudge.START] * (n_items * k)  # per row: the unfinished word
    ctc = None
    if w > 0:
        assert ctc_log_probs is not None
        ctc = CTCPrefixScorer(ctc_log_probs, audio.lengths)
        speller = Speller(tok, model.dims.ctc_units)
        item_of_row = torch.arange(n_items, device=audio.x.device).repeat_interleave(k)
        state = ctc.start(item_of_row)
        spelling = [(False, False)] * (n_items * k)  # per row: spelled anything, break pending
    logits, no_speech, cache = _prompt_pass(model, audio, prompt, beams=k)
    no_speech = no_speech[::k].tolist()
    device = logits.device
    # Rows b*k .. b*k + k - 1 hold the beams of item alive[b].
    alive = list(range(n_items))
    # Only beam 0 of each item is alive at the start (the k copies are identical).
    scores = torch.full((n_items * k,), -torch.inf, device=device)
    scores[::k] = 0.0
    decoder_sums = torch.zeros(n_items * k, device=device)  # the decoder's log-probs alone
    beams: list[list[int]] = [[] for _ in range(n_items * k)]
    finished: list[list[tuple[list[int], float, float]]] = [[] for _ in range(n_items)]
    # Candidates per beam: the decoder's k + 1 best; with the CTC head, its k + 1 best (at
    # least 3) and end-of-text.
    width = k + 1 if ctc is None else min(max(k + 1, 3), logits.shape[-1] - 1) + 1
    eot_index = torch.tensor([eot], device=device)
    for step in range(max_tokens):
        logprobs = rules.apply(logits, beams).log_softmax(-1)  # (rows, V)
        if ctc is None:
            step_lp, top_tok = logprobs.topk(width, dim=-1)  # (rows, width)
        else:  # end-of-text is always a candidate: the CTC may know the words are over
            step_lp, top_tok = logprobs.index_fill(1, eot_index, -torch.inf).topk(width - 1)
            step_lp = torch.cat([step_lp, logprobs[:, eot_index]], dim=1)
            top_tok = torch.cat([top_tok, eot_index.expand(len(top_tok), 1)], dim=1)
        decoder_total = decoder_sums.unsqueeze(1) + step_lp
        lm_term = None
        if lm is not None:
            contexts = [lm.context(beam) for beam in beams]
            lm_term = options.lm_weight * lm.score(contexts, top_tok)
        if judge is not None:  # the next states of every candidate, and their penalties
            judged = [
                [judge.advance(words[r], t) for t in row] for r, row in enumerate(top_tok.tolist())
            ]
            unknown = torch.tensor([[n for _, n in row] for row in judged], device=device)
            penalty = -options.lexicon_penalty * unknown.to(step_lp.dtype)
            lm_term = penalty if lm_term is None else lm_term + penalty
        if ctc is None:
            total = scores.unsqueeze(1) + step_lp
        else:
            bound = scores.unsqueeze(1) + (1 - w) * step_lp  # the total without the CTC gain
            ctc_gain, added = _ctc_gains(
                ctc,
                speller,
                state,
                item_of_row,
                spelling,
                top_tok,
                bound if lm_term is None else bound + lm_term,
                w,
                k,
            )
            total = bound + w * ctc_gain.to(step_lp.dtype)
        if lm_term is not None:
            total = total + lm_term
        total_list, tokens_list = total.tolist(), top_tok.tolist()
        decoder_list = decoder_total.tolist()
        chosen = [
            c
            for block, item in enumerate(alive)
            for c in _next_beams(
                block, k, eot, total_list, tokens_list, decoder_list, beams, finished[item]
            )
        ]
        new_scores, source, column = (list(c) for c in zip(*chosen))
        next_tokens = [tokens_list[r][j] for r, j in zip(source, column)]
        beams = [beams[r] + [t] for r, t in zip(source, next_tokens)]
        scores = torch.tensor(new_scores, device=device)
        decoder_sums = torch.tensor(
            [decoder_list[r][j] for r, j in zip(source, column)], device=device
        )
        source_rows = torch.tensor(source, device=device)
        if ctc is not None:  # the chosen candidates' forward variables, computed again
            grown = [added[r][j] for r, j in zip(source, column)]
            state = ctc.extend(
                state, source_rows, item_of_row[source_rows], [units for units, _ in grown]
            )
            spelling = [
                (spelling[r][0] or bool(units), pending)
                for r, (units, pending) in zip(source, grown)
            ]
        if judge is not None:
            words = [judged[r][j][0] for r, j in zip(source, column)]
        if all(len(f) >= k for f in finished) or step == max_tokens - 1:
            break
        # Beams move only among the rows of their own utterance, whose audio (and so
        # cross-attention keys and values) are the same.
        going = [b for b, item in enumerate(alive) if len(finished[item]) < k]
        if len(going) < len(alive):  # items with k finished beams leave the batch
            keep = [b * k + j for b in going for j in range(k)]
            keep_rows = torch.tensor(keep, device=device)
            blocks = torch.tensor(going, device=device)
            cache.select(source_rows[keep_rows], contexts=blocks)
            audio = _take_items(audio, blocks)
            alive = [alive[b] for b in going]
            rules = rules.take(keep)
            beams = [beams[r] for r in keep]
            scores, decoder_sums = scores[keep_rows], decoder_sums[keep_rows]
            next_tokens = [next_tokens[r] for r in keep]
            if ctc is not None:
                state = state.take(keep_rows)
                item_of_row = item_of_row[keep_rows]
                spelling = [spelling[r] for r in keep]
            if judge is not None:
                words = [words[r] for r in keep]
        else:
            cache.reorder(source_rows, cross=False)
        step_tokens = torch.tensor(next_tokens, device=device).unsqueeze(1)  # (rows, 1)
        logits = model.decoder(step_tokens, audio, cache)[:, -1].float()
    results = []
    block_of = {item: b for b, item in enumerate(alive)}
    for item in range(n_items):
        pool = list(finished[item])
        if len(pool) < k:  # out of budget: the live beams compete too
            b = block_of[item]
            rows = range(b * k, b * k + k)
            pool += [
                (beams[r], float(scores[r]), float(decoder_sums[r]))
                for r in rows
                if scores[r] > -torch.inf
            ]
        tokens, _, decoder_sum = max(pool, key=lambda c: _rank(c, options.length_penalty))
        results.append((tokens, decoder_sum, no_speech[item]))
    return results


def _take_items(audio: AudioFeatures, items: Tensor) -> AudioFeatures:
    """The features of these items only."""
    mask = None if audio.mask is None else audio.mask[items]
    return AudioFeatures(audio.x[items], audio.lengths[items], mask)


def _ctc_gains(
    ctc: CTCPrefixScorer,
    speller: Speller,
    state,
    item_of_row: Tensor,
    spelling: list[tuple[bool, bool]],
    top_tok: Tensor,
    bound: Tensor,
    w: float,
    k: int,
) -> tuple[Tensor, list[list[tuple[list[int], bool]]]]:
    """log psi(beam + token) - log psi(beam) for the candidates `(N*k, width)` that can
    still win (the last column is end-of-text: log P(transcript == beam) - log psi(beam)),
    -inf for the rest, and what each candidate adds to its beam's spelling: (units, break
    pending).

    The gain is never positive (a longer prefix is never likelier), so a candidate's
    total without it, `bound`, is an upper bound on its total. Prefix scores cost a pass
    over every frame per unit, so they are computed for each item's best candidates by
    bound first, then for any other candidate whose bound reaches the item's k-th best
    total so far, until none does. Those left out rank below k continuing beams, so the
    search takes the same steps as if every candidate had been scored."""
    rows, width = top_tok.shape
    added = [
        [speller.add(*spelling[r], token) for token in top_tok[r, :-1].tolist()]
        for r in range(rows)
    ]
    gain = torch.full((rows, width), -torch.inf, dtype=torch.float64, device=top_tok.device)
    gain[:, -1] = ctc.full(state) - state.psi
    bound = bound[:, :-1].to(torch.float64)  # (N*k, width - 1): the units-adding candidates
    n_items = rows // k
    per_item = k * (width - 1)
    scored = torch.zeros_like(bound, dtype=torch.bool)
    first = min(k + 2, per_item)
    while True:
        total = torch.where(scored, bound + w * gain[:, :-1], -torch.inf)
        kth = total.view(n_items, per_item).topk(min(k, per_item), dim=1).values[:, -1]
        # 1e-3: room for rounding in a bound that ties with the k-th total
        todo = ~scored & (bound > -torch.inf) & (bound >= kth.repeat_interleave(k)[:, None] - 1e-3)
        if first:  # the first round: only each item's best few by bound
            by_bound = torch.where(todo, bound, -torch.inf).view(n_items, per_item)
            best = by_bound.topk(first, dim=1).indices
            keep = torch.zeros_like(by_bound, dtype=torch.bool).scatter_(1, best, True)
            todo &= keep.view(rows, width - 1)
            first = 0
        if not bool(todo.any()):
            break
        r, j = todo.nonzero(as_tuple=True)
        units = [added[row][col][0] for row, col in zip(r.tolist(), j.tolist())]
        psi = ctc.prefix_scores(state, r, item_of_row[r], units)
        gain[r, j] = psi - state.psi[r]
        scored |= todo
    return gain, added


def _next_beams(
    block: int,
    k: int,
    eot: int,
    total: list[list[float]],
    top_tok: list[list[int]],
    decoder_total: list[list[float]],
    beams: list[list[int]],
    finished: list[tuple[list[int], float, float]],
) -> list[tuple[float, int, int]]:
    """The `k` (score, source row, candidate column) that continue the beams on rows
    `block*k .. block*k + k - 1` (one item's); candidates that end the text go to the
    item's `finished` (up to `k` of them) with their score and the decoder's sum of
    log-probs."""
    rows = range(block * k, block * k + k)
    candidates = sorted(
        ((score, r, j) for r in rows for j, score in enumerate(total[r])),
        key=lambda c: -c[0],
    )
    live: list[tuple[float, int, int]] = []
    for score, row, j in candidates:
        if score == -math.inf:
            break
        if top_tok[row][j] != eot:
            if len(live) < k:
                live.append((score, row, j))
        elif len(finished) < k and len(live) < k:
            finished.append((beams[row], score, decoder_total[row][j]))
    while len(live) < k:  # too few candidates survive (a tiny vocabulary): pad with dead beams
        live.append((-math.inf, block * k, 0))
    return live


def _rank(candidate: tuple[list[int], float, float], length_penalty: float | None) -> float:
    tokens, score, _ = candidate
    length = len(tokens) + 1
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return score / penalty
