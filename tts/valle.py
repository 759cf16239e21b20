"""VALL-E: phonemes + a voice prompt -> codec tokens, on the shared transformer blocks.

Two models share one sequence layout (per item; batches pad each region on its own):

    [ text region      ][ prompt region            ][ target region         ]
      phonemes of the     the prompt's codec frames    the frames to predict
      prompt transcript
      and the target text

Padding sits at the end of each region, and the rotary positions skip it: an item's
positions are 0..n-1 over its valid tokens, so it sees the same sequence alone or in a
padded batch. Every padded key is masked. An AR with `ar_positions="aligned"` places each
phoneme among the audio frames that say it instead (`aligned_layout`): a frame's position
says how far through the text the speech should be.

- `ARModel` (decoder-only, prefix-LM): text tokens attend to all text; audio tokens attend
  to all text and causally to the audio before them. Its audio stream is the first
  codebook: prompt region = [BOS, prompt q0...], target region = [target q0...]; each
  position predicts the next frame's q0, the last one EOS. Incremental decoding uses the
  shared KV cache.
- `NARModel` (bidirectional): for stage j in 1..Q-1, the prompt region sums the embeddings
  of all Q prompt codebooks, the target region those of the target's codebooks below j;
  the stage enters every norm through adaptive RMSNorm (`cond`), and head j predicts the
  target's codebook j.

`VALLEDims` stores the dimensions, the phoneme vocabulary (JSON) and the codec the tokens
came from (its rates, codebooks and weights hash), so a checkpoint alone is enough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.checkpoint import checkpoint_paths, load_model, save_model
from core.errors import CheckpointError
from core.paths import SHIPPED_MODELS
from core.transformer import Transformer

KIND = "valle"
# The trained TTS shipped with the repository (weights + dims JSON beside it).
SHIPPED_CHECKPOINT = SHIPPED_MODELS / "tts" / "valle.safetensors"


# "contiguous": every token one position after the last (the shipped checkpoint).
# "aligned": each phoneme among the audio frames that say it (`aligned_layout`).
AR_POSITIONS = ("contiguous", "aligned")


@dataclass(frozen=True)
class VALLEDims:
    n_phonemes: int = 0  # size of the phoneme vocabulary (padding id included)
    phoneme_pad: int = 0  # the vocabulary's padding id
    phoneme_vocab: str = field(default="", repr=False)  # tts.frontend vocabulary as JSON
    n_codebooks: int = 8  # Q: codebooks the TTS speaks in (the NAR has Q-1 stages)
    cardinality: int = 1024  # entries per codebook
    frame_rate: float = 75.0  # codec frames per second
    sample_rate: int = 24000  # codec sample rate
    codec_sha256: str = ""  # weights hash of the codec the tokens came from
    dim: int = 256
    heads: int = 4
    kv_heads: int = 4
    ar_depth: int = 6
    nar_depth: int = 6
    dropout: float = 0.1
    attn_dropout: float | None = None  # dropout on attention weights; None: `dropout`
    ar_positions: str = "contiguous"  # the AR's rotary layout: one of AR_POSITIONS

    def __post_init__(self) -> None:
        if self.ar_positions not in AR_POSITIONS:
            raise ValueError(
                f"ar_positions must be one of {', '.join(AR_POSITIONS)}, got {self.ar_positions!r}"
            )

    @property
    def eos(self) -> int:
        """AR output id for end of speech (codes are 0..cardinality-1)."""
        return self.cardinality

    @property
    def bos(self) -> int:
        """AR input id that opens the audio stream."""
        return self.cardinality + 1


@dataclass(frozen=True)
class Layout:
    """Positions and key validity of a batch laid out as [text | prompt | target]."""

    positions: Tensor  # (B, T) rotary positions (integer, or float for the aligned layout)
    valid: Tensor  # (B, T) True where the token exists
    text: int  # width of the text region
    prompt: int  # width of the prompt region
    target_start: Tensor  # (B,) position of each item's first target frame (then one apart)

    def target_positions(self, frames: Tensor | int) -> Tensor:
        """Positions `(B, N)` of target frames numbered `frames` `(N,)` or `(B, N)`; `(B, 1)`
        for one frame number."""
        return self.target_start.unsqueeze(1) + frames


def make_layout(text_lens: Tensor, prompt_lens: Tensor, target_lens: Tensor, widths) -> Layout:
    """`widths` = (text, prompt, target) region widths; lengths `(B,)` per region.
    Contiguous positions: 0..n-1 over each item's valid tokens."""
    lt, lp, lf = widths
    device = text_lens.device

    def region(lens: Tensor, width: int, start: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.arange(width, device=device).unsqueeze(0)  # (1, W)
        return start.unsqueeze(1) + idx, idx < lens.unsqueeze(1)  # (B, W) each

    zero = torch.zeros_like(text_lens)
    pos_t, ok_t = region(text_lens, lt, zero)
    pos_p, ok_p = region(prompt_lens, lp, text_lens)
    pos_f, ok_f = region(target_lens, lf, text_lens + prompt_lens)
    positions = torch.cat([pos_t, pos_p, pos_f], dim=1)  # (B, T)
    valid = torch.cat([ok_t, ok_p, ok_f], dim=1)  # (B, T)
    return Layout(positions * valid, valid, lt, lp, text_lens + prompt_lens)


def aligned_layout(
    text_lens: Tensor, prompt_phonemes: Tensor, prompt_lens: Tensor, target_lens: Tensor, widths
) -> Layout:
    """The AR's layout with each phoneme placed among the audio frames that say it.

    The audio keeps contiguous positions, `[BOS, P prompt frames | target frames]` one apart
    (`prompt_lens` = P + 1), as in the contiguous layout. The text `[bos] prompt [eos] [bos]
    target [eos]` is spread over them: prompt phoneme i sits at prompt frame i P / Lp
    (`prompt_phonemes` = Lp), target phoneme j at target frame j F / Lt, each part's [bos]
    one phoneme before its first and its [eos] where its speech ends. Relative positions (all
    rotary sees) then tell an audio frame which phonemes it is saying, where the contiguous
    layout leaves a distance that grows with both lengths.

    The target's rate F / Lt is its own when its frames are given (training, scoring real
    speech); in synthesis (`target_lens` 0) it is the prompt's, so the model speaks at the
    prompt's pace and its text ends where the prompt's rate says the speech should.
    """
    lt = widths[0]
    contiguous = make_layout(text_lens, prompt_lens, target_lens, widths)  # its mask and audio
    frames = prompt_lens - 1  # (B,) prompt frames after BOS
    prompt_rate = frames.clamp(min=1) / prompt_phonemes.clamp(min=1).double()  # frames/phoneme
    target_phonemes = (text_lens - prompt_phonemes - 4).clamp(min=1)
    own_rate = target_lens / target_phonemes.double()
    target_rate = torch.where(target_lens > 0, own_rate, prompt_rate)  # (B,)
    first = prompt_rate  # the prompt's first frame, so that the text's [bos] sits at 0
    start = first + frames  # (B,) the first target frame

    def column(b: Tensor) -> Tensor:  # (B,) -> (B, 1)
        return b.unsqueeze(1)

    idx = torch.arange(lt, device=text_lens.device).unsqueeze(0)  # (1, Lt)
    in_target = idx >= column(prompt_phonemes + 2)  # (B, Lt): from the target's [bos] on
    pos_t = torch.where(
        in_target,
        column(start) + (idx - column(prompt_phonemes + 3)) * column(target_rate),
        column(first) + (idx - 1) * column(prompt_rate),
    )
    # the contiguous audio moved so that BOS sits one frame before the first prompt frame
    pos_audio = contiguous.positions[:, lt:] + column(first - 1 - text_lens)
    positions = torch.cat([pos_t, pos_audio], dim=1)  # (B, T) float64
    valid = contiguous.valid
    return Layout(positions * valid, valid, lt, contiguous.prompt, start)


def prefix_lm_mask(layout: Layout) -> Tensor:
    """`(B, 1, T, T)`: text sees text; audio sees text and earlier audio; pads hidden."""
    valid = layout.valid
    t = valid.shape[1]
    col = torch.arange(t, device=valid.device)
    is_text = col < layout.text  # (T,)
    causal = col.unsqueeze(0) <= col.unsqueeze(1)  # (Tq, Tk)
    allowed = is_text.unsqueeze(0) | (causal & ~is_text.unsqueeze(1))  # (Tq, Tk)
    return (allowed.unsqueeze(0) & valid.unsqueeze(1)).unsqueeze(1)  # (B, 1, T, T)


class ARModel(nn.Module):
    """First-codebook language model over [phonemes | BOS prompt-q0 | target-q0]."""

    def __init__(self, dims: VALLEDims) -> None:
        super().__init__()
        self.dims = dims
        self.text_embed = nn.Embedding(dims.n_phonemes, dims.dim)
        self.audio_embed = nn.Embedding(dims.cardinality + 2, dims.dim)  # codes, EOS, BOS
        self.transformer = Transformer(
            dims.dim,
            dims.ar_depth,
            dims.heads,
            dims.kv_heads,
            dropout=dims.dropout,
            attn_dropout=dims.attn_dropout,
        )
        self.head = nn.Linear(dims.dim, dims.cardinality + 1, bias=False)  # codes + EOS
        for emb in (self.text_embed, self.audio_embed):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    def layout(
        self,
        text_lens: Tensor,
        prompt_lens: Tensor,
        target_lens: Tensor,
        widths,
        prompt_phonemes: Tensor | None = None,
    ) -> Layout:
        """The layout of `dims.ar_positions`; `prompt_phonemes` `(B,)` (the prompt's phoneme
        count in the text) is needed by the aligned one."""
        if self.dims.ar_positions == "contiguous":
            return make_layout(text_lens, prompt_lens, target_lens, widths)
        if prompt_phonemes is None:
            raise ValueError("the aligned AR layout needs prompt_phonemes")
        return aligned_layout(text_lens, prompt_phonemes, prompt_lens, target_lens, widths)

    def embed(self, text: Tensor, audio: Tensor) -> Tensor:
        """text `(B, Lt)` phoneme ids, audio `(B, La)` AR audio ids -> `(B, Lt+La, D)`."""
        return torch.cat([self.text_embed(text), self.audio_embed(audio)], dim=1)

    def forward(
        self,
        text: Tensor,
        text_lens: Tensor,
        audio: Tensor,
        prompt_lens: Tensor,
        target_lens: Tensor,
        prompt_phonemes: Tensor | None = None,
    ) -> Tensor:
        """Logits `(B, La, cardinality+1)` at every audio column (the prompt region holds
        `prompt_lens` tokens, BOS included; the target region the rest of `audio`)."""
        lp = int(prompt_lens.max())
        widths = (text.shape[1], lp, audio.shape[1] - lp)
        layout = self.layout(text_lens, prompt_lens, target_lens, widths, prompt_phonemes)
        x = self.embed(text, audio)  # (B, T, D)
        h = self.transformer(x, mask=prefix_lm_mask(layout), positions=layout.positions)
        return self.head(h[:, text.shape[1] :])  # (B, La, V)


class NARModel(nn.Module):
    """Codebooks 2..Q from phonemes, the whole prompt and the target's lower codebooks."""

    def __init__(self, dims: VALLEDims) -> None:
        super().__init__()
        self.dims = dims
        q, d = dims.n_codebooks, dims.dim
        self.text_embed = nn.Embedding(dims.n_phonemes, d)
        self.code_embed = nn.Parameter(torch.randn(q, dims.cardinality, d) * 0.02)  # (Q, V, D)
        self.stage_embed = nn.Embedding(max(q - 1, 1), d)
        self.transformer = Transformer(
            d,
            dims.nar_depth,
            dims.heads,
            dims.kv_heads,
            cond_dim=d,
            dropout=dims.dropout,
            attn_dropout=dims.attn_dropout,
        )
        self.heads = nn.Parameter(torch.randn(max(q - 1, 1), dims.cardinality, d) * 0.02)
        nn.init.normal_(self.text_embed.weight, std=0.02)
        nn.init.normal_(self.stage_embed.weight, std=0.02)

    def sum_codes(self, codes: Tensor, upto: Tensor) -> Tensor:
        """codes `(B, Q', F)` -> `(B, F, D)`: the sum of codebook embeddings q < upto[b]."""
        b, q, _ = codes.shape
        emb = self.code_embed[torch.arange(q, device=codes.device).view(1, q, 1), codes]
        keep = torch.arange(q, device=codes.device).view(1, q) < upto.view(b, 1)  # (B, Q')
        return (emb * keep.view(b, q, 1, 1)).sum(dim=1)  # (B, F, D)

    def forward(
        self,
        text: Tensor,
        text_lens: Tensor,
        prompt: Tensor,
        prompt_lens: Tensor,
        target: Tensor,
        target_lens: Tensor,
        stage: Tensor,
    ) -> Tensor:
        """Logits `(B, F, cardinality)` of codebook `stage[b]` (1..Q-1) of the target.

        prompt `(B, Q, P)` all codebooks; target `(B, Q', F)` with at least stage[b]
        codebooks (entries at and above the stage are ignored).
        """
        q = self.dims.n_codebooks
        layout = make_layout(
            text_lens, prompt_lens, target_lens, (text.shape[1], prompt.shape[2], target.shape[2])
        )
        full = torch.full_like(stage, q)
        x = torch.cat(
            [self.text_embed(text), self.sum_codes(prompt, full), self.sum_codes(target, stage)],
            dim=1,
        )  # (B, T, D)
        cond = self.stage_embed(stage - 1)  # (B, D)
        mask = layout.valid.view(x.shape[0], 1, 1, -1)  # (B, 1, 1, T)
        h = self.transformer(x, mask=mask, positions=layout.positions, cond=cond)
        h = h[:, text.shape[1] + prompt.shape[2] :]  # (B, F, D)
        return torch.einsum("bfd,bvd->bfv", h, self.heads[stage - 1])  # (B, F, V)


class VALLE(nn.Module):
    """The AR and NAR models of one TTS, saved as one checkpoint."""

    def __init__(self, dims: VALLEDims) -> None:
        super().__init__()
        if dims.n_phonemes <= 0:
            raise ValueError("VALLEDims.n_phonemes must be set from the phoneme vocabulary")
        if dims.n_codebooks < 2:
            raise ValueError(f"n_codebooks must be at least 2, got {dims.n_codebooks}")
        self.dims = dims
        self.ar = ARModel(dims)
        self.nar = NARModel(dims)


def join_phonemes(prompt: Tensor, target: Tensor, *, bos: int, eos: int) -> Tensor:
    """The text region of one item: `[bos] prompt [eos] [bos] target [eos]` `(L,)`."""
    b, e = prompt.new_tensor([bos]), prompt.new_tensor([eos])
    return torch.cat([b, prompt, e, b, target, e])


def ar_loss(
    model: nn.Module,
    text,
    text_lens,
    prompt_q0,
    prompt_lens,
    target_q0,
    target_lens,
    dims,
    prompt_phonemes: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Next-token cross-entropy of the AR over the prompt and target frames and EOS.

    prompt_q0 `(B, P)`, target_q0 `(B, F)` first-codebook codes, right-padded;
    prompt_phonemes `(B,)` the prompt's phoneme count in `text` (for the aligned layout)."""
    b = text.shape[0]
    device = text.device
    lp, lf = prompt_q0.shape[1] + 1, target_q0.shape[1]
    audio = torch.full((b, lp + lf), dims.bos, dtype=torch.long, device=device)
    targets = torch.full((b, lp + lf), -100, dtype=torch.long, device=device)
    for i in range(b):
        p, f = int(prompt_lens[i]), int(target_lens[i])
        audio[i, 1 : 1 + p] = prompt_q0[i, :p]
        audio[i, lp : lp + f] = target_q0[i, :f]
        stream = torch.cat(
            [prompt_q0[i, :p], target_q0[i, :f], torch.tensor([dims.eos], device=device)]
        )
        targets[i, : p + 1] = stream[: p + 1]  # BOS p1..pP predict p1..pP t1 (or EOS)
        targets[i, lp : lp + f] = stream[p + 1 :]  # t1..tF predict t2..tF EOS
    logits = model(text, text_lens, audio, prompt_lens + 1, target_lens, prompt_phonemes)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
    return loss, {"accuracy": _accuracy(logits, targets)}


def nar_loss(
    model: nn.Module, text, text_lens, prompt, prompt_lens, target, target_lens, dims
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy of codebook j of the target, one random stage j per item."""
    b = text.shape[0]
    stage = torch.randint(1, dims.n_codebooks, (b,), device=text.device)
    logits = model(text, text_lens, prompt, prompt_lens, target, target_lens, stage)
    labels = target.gather(1, stage.view(b, 1, 1).expand(b, 1, target.shape[2]))[:, 0]  # (B, F)
    frames = torch.arange(target.shape[2], device=text.device).unsqueeze(0)
    labels = labels.masked_fill(frames >= target_lens.unsqueeze(1), -100)
    loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    return loss, {"accuracy": _accuracy(logits, labels)}


def _accuracy(logits: Tensor, targets: Tensor) -> float:
    valid = targets != -100
    hits = (logits.argmax(-1) == targets) & valid
    return float(hits.sum() / valid.sum().clamp(min=1))


def save_valle(path: str | os.PathLike, model: VALLE, *, training: dict | None = None) -> Path:
    return save_model(path, model, model.dims, kind=KIND, training=training)


def load_valle(path: str | os.PathLike | None = None, *, device: str = "cpu") -> VALLE:
    """A VALL-E checkpoint (default: the shipped one) in eval mode."""
    weights, _ = checkpoint_paths(path or SHIPPED_CHECKPOINT)
    if not weights.is_file():
        raise CheckpointError(f"no TTS model at '{weights}'; train one with 'vocalis train valle'")
    model = load_model(weights, VALLE, VALLEDims, kind=KIND, device=device)
    if not model.dims.phoneme_vocab:
        raise CheckpointError(f"'{weights}' holds no phoneme vocabulary")
    return model
