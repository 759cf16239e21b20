"""VALL-E training as a `TrainTask`: both models on pre-encoded codec tokens.

Each item is a target utterance and a prompt: another utterance of the same speaker,
drawn afresh every time the item is loaded (from the global torch RNG in the main process,
so a resumed run draws what an uninterrupted one would). The text is the prompt's
phonemes then the target's (`tts.frontend.join_phonemes`), the audio its codes (the
data cache's `CodecEncoder` entries). One step updates the AR ("ar" part) and then the
NAR ("nar" part, a random stage per item) on the same batch; `VALLEParts.freeze` leaves
one of them as it was loaded (`--init`), so a run can spend all its steps on the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from training.trainer import LossOutput, TrainTask, check_freeze
from tts.valle import VALLE, ar_loss, nar_loss


@dataclass(frozen=True)
class VALLEDataConfig:
    max_seconds: float = 12.0  # longer targets are left out
    prompt_seconds: tuple[float, float] = (2.0, 8.0)  # duration range of prompt utterances
    batch_seconds: float = 120.0  # target audio per batch (prompts come on top)

    def __post_init__(self) -> None:
        low, high = self.prompt_seconds
        if not 0 < low <= high:
            raise ValueError(
                f"prompt_seconds must be an increasing positive pair, got {self.prompt_seconds}"
            )
        if self.max_seconds <= 0 or self.batch_seconds <= 0:
            raise ValueError("max_seconds and batch_seconds must be positive")


VALLE_PARTS = ("ar", "nar")


@dataclass(frozen=True)
class VALLEParts:
    """Which of the two models a run leaves untouched (the config's "parts" section)."""

    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_freeze(self.freeze, VALLE_PARTS)


@dataclass(frozen=True)
class TTSExample:
    """One utterance ready for training: phoneme ids `(L,)`, codes `(Q, F)`."""

    id: str
    speaker: str
    phonemes: Tensor
    codes: Tensor

    @property
    def frames(self) -> int:
        return self.codes.shape[1]


@dataclass(frozen=True)
class TTSBatch:
    text: Tensor  # (B, Lt) phoneme ids: prompt's then target's, right-padded
    text_lens: Tensor  # (B,)
    prompt: Tensor  # (B, Q, P) right-padded
    prompt_lens: Tensor  # (B,)
    target: Tensor  # (B, Q, F) right-padded
    target_lens: Tensor  # (B,)
    prompt_phonemes: Tensor  # (B,) how many of an item's text ids are the prompt's phonemes


class PromptedDataset(Dataset):
    """Targets with a same-speaker prompt utterance; speakers with one usable utterance
    cannot give a prompt and are left out."""

    def __init__(
        self, examples: Sequence[TTSExample], frame_rate: float, data: VALLEDataConfig, join
    ) -> None:
        low, high = data.prompt_seconds
        prompts: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(examples):
            if low <= ex.frames / frame_rate <= high:
                prompts[ex.speaker].append(i)
        self.examples = list(examples)
        self.prompts = dict(prompts)
        self.targets = [
            i
            for i, ex in enumerate(examples)
            if ex.frames / frame_rate <= data.max_seconds and self._choices(i)
        ]
        self.frame_rate = frame_rate
        self.join = join  # (prompt ids, target ids) -> text ids

    def _choices(self, index: int) -> list[int]:
        """Prompt candidates for a target: its speaker's other utterances (a manifest
        weighted up repeats examples, so compare ids, not indices)."""
        target = self.examples[index]
        return [j for j in self.prompts.get(target.speaker, []) if self.examples[j].id != target.id]

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def durations(self) -> list[float]:
        return [self.examples[i].frames / self.frame_rate for i in self.targets]

    def __getitem__(self, index: int) -> tuple[TTSExample, TTSExample]:
        target_index = self.targets[index]
        target = self.examples[target_index]
        choices = self._choices(target_index)
        prompt = self.examples[choices[int(torch.randint(len(choices), ()))]]
        return prompt, target


def collate_prompted(pairs: Sequence[tuple[TTSExample, TTSExample]], join) -> TTSBatch:
    texts = [join(p.phonemes, t.phonemes) for p, t in pairs]
    text = _pad([t.unsqueeze(0) for t in texts])[:, 0]  # (B, Lt)
    prompt = _pad([p.codes for p, _ in pairs])  # (B, Q, P)
    target = _pad([t.codes for _, t in pairs])  # (B, Q, F)
    return TTSBatch(
        text,
        torch.tensor([len(t) for t in texts]),
        prompt,
        torch.tensor([p.frames for p, _ in pairs]),
        target,
        torch.tensor([t.frames for _, t in pairs]),
        torch.tensor([len(p.phonemes) for p, _ in pairs]),
    )


def _pad(rows: Sequence[Tensor]) -> Tensor:
    """`(C, L_i)` tensors -> `(B, C, max L)` long, zero-padded on the right."""
    out = torch.zeros(len(rows), rows[0].shape[0], max(r.shape[1] for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :, : r.shape[1]] = r
    return out


class VALLETask(TrainTask):
    kind = "valle"

    def __init__(self, model: VALLE, freeze: Sequence[str] = ()) -> None:
        self.model = model
        self.dims = model.dims
        self.freeze = frozenset(freeze)
        for name in self.freeze:  # frozen parts are exported as loaded, never stepped
            getattr(model, name).requires_grad_(False).eval()

    def parts(self) -> dict[str, nn.Module]:
        both = {"ar": self.model.ar, "nar": self.model.nar}
        return {name: m for name, m in both.items() if name not in self.freeze}

    def export(self) -> tuple[nn.Module, object]:
        return self.model, self.model.dims

    def loss(self, part: str, batch: TTSBatch, modules: dict[str, nn.Module]) -> LossOutput:
        q = self.dims.n_codebooks
        b = batch
        if part == "ar":
            loss, metrics = ar_loss(
                modules["ar"],
                b.text,
                b.text_lens,
                b.prompt[:, 0],
                b.prompt_lens,
                b.target[:, 0],
                b.target_lens,
                self.dims,
                b.prompt_phonemes,
            )
        elif part == "nar":
            loss, metrics = nar_loss(
                modules["nar"],
                b.text,
                b.text_lens,
                b.prompt[:, :q],
                b.prompt_lens,
                b.target[:, :q],
                b.target_lens,
                self.dims,
            )
        else:
            raise ValueError(f"unknown part {part!r}")
        return LossOutput(loss, metrics, items=float(b.target_lens.sum()) / self.dims.frame_rate)
