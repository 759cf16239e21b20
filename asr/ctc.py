"""The recogniser's CTC head and the prefix scores that let it vote in beam search.

A checkpoint may carry a linear CTC head on the encoder (`ASRDims.ctc_units`), trained
beside the attention decoder (`loss.ctc_weight`). It spells either the decoder's BPE pieces
or letters (`CTC_ALPHABET`), with a blank after the units.

At inference the head scores every hypothesis of the attention decoder's beam search
(joint CTC/attention decoding, Watanabe et al. 2017): a candidate's score is

    (1 - w) * log p_attention(token | prefix) + w * (log psi(prefix + token) - log psi(prefix))

where psi(h) is the CTC probability that the audio's transcript starts with h (its prefix
probability) and, for end-of-text, psi(h + eot) is the probability that it is exactly h.
CTC scores every frame, so text that no frame supports (a loop, a sentence recited from
training) loses, and text the decoder would drop is missed by the CTC.

`CTCPrefixScorer` keeps, per hypothesis, the CTC forward variables over all frames,
r_n(t) and r_b(t) (the prefix's paths ending at frame t in a unit or in a blank), and
extends them one unit at a time. Each extension is a first-order linear recurrence in t,
which runs as cumulative sums (`torch.logcumsumexp`) over the frames of every candidate at
once instead of a Python loop over frames.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from asr.tokenizer import Tokenizer

CTC_UNITS = ("pieces", "chars")
CTC_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz0123456789"  # the "chars" units; the blank follows

# The log-probability given to a unit on a padded frame (blank gets log 1 there): finite,
# so that cumulative sums stay free of inf - inf.
_PAD_LOGPROB = -1.0e4


def ctc_chars(text: str) -> list[int]:
    """`text` as CTC_ALPHABET indices: lower case, accents dropped, every other character
    a word break ("twenty-eight" -> "twenty eight"), runs of spaces as one."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    spelled = "".join(c if c in CTC_ALPHABET else " " for c in folded)
    return [CTC_ALPHABET.index(c) for c in " ".join(spelled.split())]


def n_ctc_units(units: str, tokenizer: Tokenizer) -> int:
    """How many units (before the blank) a head over `units` has."""
    if units not in CTC_UNITS:
        raise ValueError(f"ctc_units must be one of {', '.join(CTC_UNITS)}, got {units!r}")
    return tokenizer.n_text if units == "pieces" else len(CTC_ALPHABET)


class Speller:
    """What each decoder token adds to a hypothesis's CTC units, one token at a time.

    For "chars" every BPE piece is spelled on its own (`ctc_chars`'s rules: lower case,
    accents dropped, any other character a word break, breaks collapsed and none at the
    start), with a pending word break carried from piece to piece. A piece that holds part
    of a multi-byte character spells nothing of it (accented letters split over pieces
    are rare in English; they lose the letter, not the word).
    """

    def __init__(self, tokenizer: Tokenizer, units: str) -> None:
        n_ctc_units(units, tokenizer)  # checks `units`
        self.units, self.n_text = units, tokenizer.n_text
        self._pieces: dict[int, str] = {}
        self._decode = tokenizer.bpe.decode
        self._index = {c: i for i, c in enumerate(CTC_ALPHABET)}

    def add(self, spelled_any: bool, pending: bool, token: int) -> tuple[list[int], bool]:
        """(the units `token` adds, whether a word break is pending after it), for a
        hypothesis that has spelled something (`spelled_any`) with a break `pending`."""
        if token >= self.n_text:
            return [], pending
        if self.units == "pieces":
            return [token], False
        piece = self._pieces.get(token)
        if piece is None:
            folded = unicodedata.normalize("NFKD", self._decode([token]).lower())
            folded = folded.encode("ascii", "ignore").decode()
            piece = "".join(c if c in CTC_ALPHABET else " " for c in folded)
            self._pieces[token] = piece
        added: list[int] = []
        for c in piece:
            if c == " ":
                pending = spelled_any or bool(added)
            else:
                if pending:
                    added.append(0)  # CTC_ALPHABET[0] is the space
                    pending = False
                added.append(self._index[c])
        return added, pending


@dataclass
class _State:
    """Forward variables of one set of prefixes: `(R, T + 1)` log r_n and log r_b at
    frames 0..T (frame 0: before the audio), each row's last unit (-1: none) and log psi."""

    r_n: Tensor
    r_b: Tensor
    last: Tensor
    psi: Tensor

    def take(self, rows: Tensor) -> _State:
        return _State(self.r_n[rows], self.r_b[rows], self.last[rows], self.psi[rows])


class CTCPrefixScorer:
    """CTC prefix scores of growing hypotheses over a batch of utterances.

    `log_probs` `(B, S, U + 1)` are the head's log-softmax outputs (blank last) and
    `lengths` `(B,)` the valid frames of each. Hypotheses are rows; `item[r]` says which
    utterance row r reads. `start(item)` gives the empty prefix's state, `extend` the
    states and prefix scores of the rows' prefixes plus some units, and `full` the log
    probability that each row's prefix is the whole transcript.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor) -> None:
        s = log_probs.shape[1]
        lp = log_probs.double()
        frame = torch.arange(s, device=lp.device)
        pad = frame.unsqueeze(0) >= lengths.to(lp.device).unsqueeze(1)  # (B, S)
        self.blank = lp.shape[-1] - 1
        self.units = lp[..., : self.blank].masked_fill(pad.unsqueeze(-1), _PAD_LOGPROB)
        self.blanks = lp[..., self.blank].masked_fill(pad, 0.0)  # (B, S)

    def start(self, item: Tensor) -> _State:
        """The empty prefix for each row: only blanks so far, psi = 1."""
        cum_blank = self.blanks[item].cumsum(-1)  # (R, S)
        r_b = torch.cat([cum_blank.new_zeros(len(item), 1), cum_blank], dim=1)
        r_n = torch.full_like(r_b, -torch.inf)
        zeros = torch.zeros(len(item), dtype=torch.float64, device=r_b.device)
        return _State(r_n, r_b, torch.full_like(item, -1), zeros)

    def extend(
        self, state: _State, rows: Tensor, item: Tensor, added: Sequence[Sequence[int]]
    ) -> _State:
        """The prefixes of `state`'s `rows`, each followed by its `added` units (possibly
        none); `item` `(len(rows),)` the utterance each reads."""
        return self._grow(state, rows, item, added, keep=True)

    def prefix_scores(
        self, state: _State, rows: Tensor, item: Tensor, added: Sequence[Sequence[int]]
    ) -> Tensor:
        """log psi of what `extend` would give, without keeping its forward variables."""
        return self._grow(state, rows, item, added, keep=False).psi

    def _grow(self, state, rows, item, added, *, keep: bool) -> _State:
        # Longest first, so the rows that still grow at unit j are always the first ones.
        order = sorted(range(len(added)), key=lambda r: -len(added[r]))
        index = torch.tensor(order, dtype=torch.long, device=item.device)
        work = state.take(rows[index])
        work_item = item[index]
        lengths = [len(added[r]) for r in order]
        psi = work.psi.clone()
        if keep:
            out = _State(work.r_n.clone(), work.r_b.clone(), work.last.clone(), psi)
        for j in range(lengths[0] if lengths else 0):
            m = sum(1 for n in lengths if n > j)
            going_on = sum(1 for n in lengths if n > j + 1)
            unit = torch.tensor([added[r][j] for r in order[:m]], device=item.device)
            # Scores alone need no forward variables for a row's last unit.
            grow = m if keep else going_on
            step_psi, work = self._extend_one(work.take(slice(0, m)), work_item[:m], unit, grow)
            psi[:m] = step_psi
            if keep:
                done = slice(going_on, m)  # rows ending here
                out.r_n[done], out.r_b[done] = work.r_n[done], work.r_b[done]
                out.last[done] = work.last[done]
        inverse = torch.empty_like(index)
        inverse[index] = torch.arange(len(order), device=index.device)
        if not keep:
            return _State(None, None, None, psi[inverse])  # type: ignore[arg-type]
        return out.take(inverse)

    def full(self, state: _State) -> Tensor:
        """log P(transcript == prefix) per row."""
        return torch.logaddexp(state.r_n[:, -1], state.r_b[:, -1])

    def _extend_one(
        self, state: _State, item: Tensor, unit: Tensor, grow: int
    ) -> tuple[Tensor, _State]:
        """One unit `(R,)` more on each row: log psi `(R,)`, and the forward variables of
        the first `grow` rows. With y_t the unit's and b_t the blank's probability at frame
        t, and phi_t = r_b(t) (+ r_n(t) unless the unit repeats the last one, which needs a
        blank between):

            r_n'(t) = (r_n'(t-1) + phi_{t-1}) y_t,   r_b'(t) = (r_b'(t-1) + r_n'(t-1)) b_t,
            psi' = sum_t phi_{t-1} y_t.
        """
        y = self.units[item, :, unit]  # (R, S): log y_t, t = 1..S
        repeat = (state.last == unit).unsqueeze(1)
        phi = torch.where(repeat, state.r_b, torch.logaddexp(state.r_n, state.r_b))[:, :-1]
        psi = torch.logsumexp(phi + y, dim=1)
        y, phi, unit = y[:grow], phi[:grow], unit[:grow]
        b = self.blanks[item[:grow]]  # (grow, S): log b_t
        # r_n'(t) = sum_{s <= t} phi_{s-1} prod_{u=s..t} y_u = Y_t + logcumsumexp(phi_{s-1} - Y_{s-1})
        cum_y = y.cumsum(1)  # Y_1..Y_S
        before = torch.cat([cum_y.new_zeros(len(unit), 1), cum_y[:, :-1]], dim=1)  # Y_0..Y_{S-1}
        r_n = cum_y + torch.logcumsumexp(phi - before, dim=1)  # t = 1..S
        # r_b'(t) = sum_{s < t} r_n'(s) prod_{u=s+1..t} b_u = B_t + logcumsumexp_{s<t}(r_n'(s) - B_s)
        cum_b = b.cumsum(1)
        acc = torch.logcumsumexp(r_n - cum_b, dim=1)
        none = torch.full_like(acc[:, :1], -torch.inf)
        r_b = cum_b + torch.cat([none, acc[:, :-1]], dim=1)
        grown = _State(
            torch.cat([none, r_n], dim=1), torch.cat([none, r_b], dim=1), unit.clone(), psi[:grow]
        )
        return psi, grown
