"""Does the AR read the text? Its loss on real recordings, given their own text and another's.

A VALL-E AR learns two things from the same loss: to continue the prompt's audio (voice,
room, rhythm), which comes early, and to say the phonemes it is given, which comes late.
Sampled speech mixes both, and judging it takes minutes and an ASR. This measure takes
seconds and isolates the second: for each item, the AR's cross-entropy on the first-codebook
frames of the target's real recording (and its end of speech), teacher-forced after the
prompt, once with the target's own phonemes and once with another item's, repeated or cut to
the same length (so that every position is the same in both and only the phonemes differ).
The **text gain** is the difference, in nats per frame: 0 means the AR ignores the text; it
grows as the AR learns to follow it.

    gains = measure_text_gain(synthesizer, items)   # tts.evaluate.TTSEvalItem list
    print(text_gain_markdown(gains))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from tts.evaluate import TTSEvalItem
    from tts.synthesize import Synthesizer
    from tts.valle import ARModel, VALLEDims


@dataclass(frozen=True)
class TextGain:
    group: str
    items: int
    frames: int  # target frames scored (end of speech included)
    loss_own: float  # nats per frame with the target's own phonemes
    loss_other: float  # the same frames with another item's phonemes
    accuracy_own: float
    accuracy_other: float

    @property
    def gain(self) -> float:
        return self.loss_other - self.loss_own


@torch.inference_mode()
def target_frame_loss(
    ar: ARModel,
    dims: VALLEDims,
    text: Tensor,
    prompt_q0: Tensor,
    target_q0: Tensor,
    prompt_phonemes: int,
) -> tuple[Tensor, Tensor]:
    """Per-frame cross-entropy `(F+1,)` and correctness `(F+1,)` of the AR's predictions of
    the target's first-codebook frames `(F,)` and its EOS, after BOS and the prompt's frames
    `(P,)`; `text` `(L,)` is the joined [prompt | target] phoneme sequence, the first
    `prompt_phonemes` of them the prompt's."""
    p, f = prompt_q0.shape[0], target_q0.shape[0]
    device = prompt_q0.device
    bos = torch.tensor([dims.bos], device=device)
    audio = torch.cat([bos, prompt_q0, target_q0]).unsqueeze(0)  # (1, 1+P+F)
    text_len, prompt_len, target_len, count = (
        torch.tensor([n], device=device) for n in (text.shape[0], p + 1, f, prompt_phonemes)
    )
    text = text.unsqueeze(0).to(device)
    logits = ar(text, text_len, audio, prompt_len, target_len, count)[0]  # (1+P+F, V)
    # the column of the last prompt frame predicts the first target frame; the last target
    # frame's column predicts EOS
    logits = logits[p : p + f + 1].float()  # (F+1, V)
    targets = torch.cat([target_q0, torch.tensor([dims.eos], device=device)])  # (F+1,)
    loss = F.cross_entropy(logits, targets, reduction="none")
    return loss.cpu(), (logits.argmax(-1) == targets).float().cpu()


def other_index(texts: Sequence[str], i: int) -> int | None:
    """The next item after `i` (cyclically) whose text differs from item i's, or None."""
    n = len(texts)
    for step in range(1, n):
        j = (i + step) % n
        if texts[j].strip().lower() != texts[i].strip().lower():
            return j
    return None


def same_length(ids: Tensor, n: int) -> Tensor:
    """`ids` `(L,)` repeated as often as needed and cut to `n` `(n,)`."""
    return ids.repeat(n // len(ids) + 1)[:n]


def measure_text_gain(synth: Synthesizer, items: Sequence[TTSEvalItem]) -> list[TextGain]:
    """One `TextGain` per group of `items` (in their order) and one over all of them. An item
    whose text no other item differs from is left out."""
    from core.audio import load_audio
    from tts.valle import join_phonemes

    model, vocab = synth.model, synth.vocab
    encoded = []
    for item in items:
        prompt = synth.tokens(*_mono(load_audio(item.prompt.audio)), item.prompt.text or "")
        target = synth.tokens(*_mono(load_audio(item.target.audio)), item.target.text or "")
        encoded.append((prompt, target))
    texts = [item.target.text or "" for item in items]
    per_item: list[tuple[str, Tensor, Tensor, Tensor, Tensor]] = []
    for i, item in enumerate(items):
        j = other_index(texts, i)
        if j is None:
            continue
        (p_codes, p_ids), (t_codes, t_ids) = encoded[i]
        scores = []
        for ids in (t_ids, same_length(encoded[j][1][1], len(t_ids))):
            text = join_phonemes(p_ids, ids, bos=vocab.bos_id, eos=vocab.eos_id)
            scores += target_frame_loss(
                model.ar, model.dims, text, p_codes[0], t_codes[0], len(p_ids)
            )
        per_item.append((item.group, *scores))
    groups = list(dict.fromkeys(g for g, *_ in per_item))
    out = [_pool(g, [r for r in per_item if r[0] == g]) for g in groups]
    if per_item:
        out.append(_pool("all", per_item))
    return out


def _mono(loaded: tuple[Tensor, int]) -> tuple[Tensor, int]:
    wav, rate = loaded  # (C, T)
    return wav.mean(0), rate


def _pool(group: str, rows: list) -> TextGain:
    """Frame-weighted means over the items of one group."""
    own_loss = torch.cat([r[1] for r in rows])
    own_ok = torch.cat([r[2] for r in rows])
    other_loss = torch.cat([r[3] for r in rows])
    other_ok = torch.cat([r[4] for r in rows])
    return TextGain(
        group=group,
        items=len(rows),
        frames=own_loss.numel(),
        loss_own=float(own_loss.mean()),
        loss_other=float(other_loss.mean()),
        accuracy_own=float(own_ok.mean()),
        accuracy_other=float(other_ok.mean()),
    )


def text_gain_markdown(gains: Sequence[TextGain]) -> str:
    lines = [
        "| group | items | frames | AR loss, own text | AR loss, other text | text gain "
        "(nats/frame) | accuracy own / other |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in gains:
        lines.append(
            f"| {g.group} | {g.items} | {g.frames} | {g.loss_own:.3f} | {g.loss_other:.3f} | "
            f"{g.gain:.3f} | {g.accuracy_own:.3f} / {g.accuracy_other:.3f} |"
        )
    lines += [
        "",
        "The AR's cross-entropy on the first-codebook frames of the real recordings, "
        "teacher-forced after the prompt, with each target's own phonemes and with another "
        "item's cut to the same length; text gain = the difference (0: the AR ignores the "
        "text).",
    ]
    return "\n".join(lines) + "\n"
