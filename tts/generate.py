"""VALL-E inference: sample the first codebook with the AR model, fill the rest with the NAR.

`generate_codes` takes phoneme ids and a prompt's codes for a batch and returns each item's
codes `(Q, F)`. The AR decodes incrementally with the shared KV cache; the whole batch
steps together and an item stops at its EOS (or its `max_frames`). The NAR runs Q-1
bidirectional passes, greedy as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tts.valle import VALLE, prefix_lm_mask


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # nucleus mass; 1 = off

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def sample_token(
    logits: Tensor, options: SamplingOptions, generator: torch.Generator | None = None
) -> Tensor:
    """logits `(B, V)` -> token ids `(B,)` after temperature, top-k and top-p filtering."""
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / options.temperature
    if options.top_k:
        k = min(options.top_k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        sorted_logits = sorted_logits.masked_fill(before >= options.top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate_first_codebook(
    model: VALLE,
    text: Tensor,
    text_lens: Tensor,
    prompt_q0: Tensor,
    prompt_lens: Tensor,
    *,
    min_frames: Tensor,
    max_frames: Tensor,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
    prompt_phonemes: Tensor | None = None,
) -> list[Tensor]:
    """The AR's frames for each item: `(F_b,)` codes without EOS.

    text `(B, Lt)`; prompt_q0 `(B, P)` right-padded; min/max_frames `(B,)`: EOS is
    suppressed before min_frames, and an item is cut at max_frames. prompt_phonemes `(B,)`:
    the prompt's phoneme count in `text` (needed by an AR with aligned positions).
    """
    ar, dims = model.ar, model.dims
    b, device = text.shape[0], text.device
    lp = prompt_q0.shape[1] + 1
    audio = torch.full((b, lp), dims.bos, dtype=torch.long, device=device)
    for i in range(b):
        audio[i, 1 : 1 + int(prompt_lens[i])] = prompt_q0[i, : int(prompt_lens[i])]
    steps = int(max_frames.max())
    zero = torch.zeros_like(text_lens)
    layout = ar.layout(text_lens, prompt_lens + 1, zero, (text.shape[1], lp, 0), prompt_phonemes)
    total = text.shape[1] + lp + steps
    cache = ar.transformer.new_cache(b, total)
    valid = torch.zeros(b, total, dtype=torch.bool, device=device)
    valid[:, : layout.valid.shape[1]] = layout.valid

    x = ar.embed(text, audio)  # (B, Lt + Lp, D)
    h = ar.transformer(x, mask=prefix_lm_mask(layout), positions=layout.positions, cache=cache)
    last = (text.shape[1] + prompt_lens).view(b, 1, 1).expand(b, 1, h.shape[-1])
    logits = ar.head(h.gather(1, last)[:, 0])  # (B, V) at each item's last prompt token

    # Without padding (one item, or equal lengths) every cached step stays visible, and the
    # steps run without a mask (faster on the CPU).
    padded = not bool(layout.valid.all())
    frames = torch.zeros(b, steps, dtype=torch.long, device=device)
    lengths = torch.full((b,), -1, dtype=torch.long, device=device)  # -1: still going
    for step in range(steps):
        logits[step < min_frames, dims.eos] = float("-inf")
        token = sample_token(logits, options, generator)  # (B,)
        ended = (token == dims.eos) | (step >= max_frames)
        newly = ended & (lengths < 0)
        lengths[newly] = step
        frames[:, step] = token.masked_fill(token == dims.eos, 0)
        if bool((lengths >= 0).all()):
            break
        col = text.shape[1] + lp + step
        valid[:, col] = True
        h = ar.transformer(
            ar.audio_embed(token.clamp(max=dims.cardinality)).unsqueeze(1),  # (B, 1, D)
            mask=valid[:, : col + 1].view(b, 1, 1, col + 1) if padded else None,
            positions=layout.target_positions(step),  # (B, 1)
            cache=cache,
        )
        logits = ar.head(h[:, 0])  # (B, V)
    lengths[lengths < 0] = torch.minimum(max_frames, torch.tensor(steps))[lengths < 0]
    return [frames[i, : int(lengths[i])] for i in range(b)]


@torch.inference_mode()
def generate_rest(
    model: VALLE,
    text: Tensor,
    text_lens: Tensor,
    prompt: Tensor,
    prompt_lens: Tensor,
    first: list[Tensor],
) -> list[Tensor]:
    """Fill codebooks 2..Q greedily: prompt `(B, Q, P)`, first `[(F_b,)]` -> `[(Q, F_b)]`."""
    nar, q = model.nar, model.dims.n_codebooks
    b, device = text.shape[0], text.device
    target_lens = torch.tensor([len(f) for f in first], device=device)
    width = max(int(target_lens.max()), 1)
    codes = torch.zeros(b, q, width, dtype=torch.long, device=device)
    for i, f in enumerate(first):
        codes[i, 0, : len(f)] = f
    for j in range(1, q):
        stage = torch.full((b,), j, dtype=torch.long, device=device)
        logits = nar(text, text_lens, prompt, prompt_lens, codes, target_lens, stage)
        codes[:, j] = logits.argmax(dim=-1)  # (B, F)
    return [codes[i, :, : int(target_lens[i])] for i in range(b)]


def generate_codes(
    model: VALLE,
    text: Tensor,
    text_lens: Tensor,
    prompt: Tensor,
    prompt_lens: Tensor,
    *,
    min_frames: Tensor,
    max_frames: Tensor,
    options: SamplingOptions = SamplingOptions(),
    generator: torch.Generator | None = None,
    prompt_phonemes: Tensor | None = None,
) -> list[Tensor]:
    """Codes `(Q, F_b)` per item from phonemes `(B, Lt)` and prompt codes `(B, Q, P)`;
    prompt_phonemes `(B,)` as for `generate_first_codebook`."""
    first = generate_first_codebook(
        model,
        text,
        text_lens,
        prompt[:, 0],
        prompt_lens,
        min_frames=min_frames,
        max_frames=max_frames,
        options=options,
        generator=generator,
        prompt_phonemes=prompt_phonemes,
    )
    return generate_rest(model, text, text_lens, prompt, prompt_lens, first)
