"""The plan of a synthetic corpus: which speaker says which sentence, with what settings.

Splits are honest by construction. Sentences are split into train/valid/test; speakers
into training speakers and held-out (valid or test) speakers. Training speakers read
every training sentence once (shared round-robin) plus some valid/test sentences (seen
voice, unseen text); held-out speakers read only sentences of their own split (unseen
voice, unseen text). So no `train` utterance shares a sentence or a voice with valid/test.
The plan depends only on the config: the same seed gives the same corpus.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from corpus.manifest import Utterance
from corpus.phonemes import find_cmudict, load_lexicon, select_for_coverage
from corpus.sentences import generate_sentences
from corpus.text_sources import compose_utterances, source_fragments
from corpus.voices import (
    SPEAKERS,
    RenderSettings,
    Speaker,
    espeak_parts,
    speaker_by_id,
    variety_speakers,
)

DEFAULT_VALID_SPEAKERS = ("synth/espeak-en-gb-x-gbclan+f1",)
DEFAULT_TEST_SPEAKERS = ("synth/flite-rms", "synth/espeak-en-029+f5")


@dataclass(frozen=True)
class SynthConfig:
    utterances: int = 24000
    seed: int = 0
    sample_rate: int = 24000
    speakers: tuple[Speaker, ...] = SPEAKERS
    valid_speakers: tuple[str, ...] = DEFAULT_VALID_SPEAKERS
    test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS
    valid_fraction: float = 0.03  # of sentences
    test_fraction: float = 0.03
    held_out_per_speaker: int = 300  # utterances read by each held-out speaker (at most)
    rate_jitter: float = 0.08  # +-8 % speaking rate per utterance
    pitch_jitter: float = 0.08
    varispeed_jitter: float = 0.02  # +-2 % tape-speed change (pitch and formants)
    lufs: float = -23.0
    text: str = "generated"  # `corpus.sentences`, "wordnet", "gcide" or a text file (text_sources)
    id_prefix: str = ""  # keeps ids unique when corpora of other text are used together
    revoice: str = ""  # the manifest whose training text `plan_revoice` reads again


@dataclass(frozen=True)
class SynthItem:
    id: str
    speaker: Speaker
    text: str
    split: str  # train / valid / test
    speaker_split: str
    sentence: int  # index in the sentence list
    settings: RenderSettings
    varispeed: float


def speaker_split(config: SynthConfig, speaker_id: str) -> str:
    if speaker_id in config.test_speakers:
        return "test"
    if speaker_id in config.valid_speakers:
        return "valid"
    return "train"


def choose_sentences(n: int, seed: int, text: str = "generated") -> list[str]:
    """`n` sentences of the text source.

    Generated ones are ordered for phoneme coverage when a lexicon is installed; natural
    text (`corpus.text_sources`) comes in the shuffled order of its seed.
    """
    if text != "generated":
        return compose_utterances(source_fragments(text), n, seed)
    pool = generate_sentences(max(3 * n, 200), seed)
    if find_cmudict() is None:
        return pool[:n]
    return select_for_coverage(pool, n, load_lexicon())


def _split_sentences(n: int, config: SynthConfig, rng: random.Random) -> list[str]:
    order = list(range(n))
    rng.shuffle(order)
    n_test = math.ceil(config.test_fraction * n) if config.test_fraction > 0 else 0
    n_valid = math.ceil(config.valid_fraction * n) if config.valid_fraction > 0 else 0
    splits = ["train"] * n
    for i in order[:n_test]:
        splits[i] = "test"
    for i in order[n_test : n_test + n_valid]:
        splits[i] = "valid"
    return splits


def _item(
    config: SynthConfig, speaker: Speaker, index: int, text: str, split: str, rng: random.Random
) -> SynthItem:
    def jitter(amount: float) -> float:
        return 1.0 + rng.uniform(-amount, amount)

    settings = RenderSettings(
        rate=round(speaker.rate * jitter(config.rate_jitter), 4),
        pitch=round(speaker.pitch * jitter(config.pitch_jitter), 2),
    )
    slug = speaker.id.split("/", 1)[1]
    return SynthItem(
        id=f"{slug}_{config.id_prefix}{index:06d}",
        speaker=speaker,
        text=text,
        split=split,
        speaker_split=speaker_split(config, speaker.id),
        sentence=index,
        settings=settings,
        varispeed=round(jitter(config.varispeed_jitter), 4),
    )


def plan_corpus(config: SynthConfig, sentences: Sequence[str] | None = None) -> list[SynthItem]:
    """Every item of the corpus, in a fixed order (held-out speakers last)."""
    speakers = list(config.speakers)
    held_out = [s for s in speakers if speaker_split(config, s.id) != "train"]
    trainers = [s for s in speakers if speaker_split(config, s.id) == "train"]
    if not trainers:
        raise ValueError("at least one training speaker is needed")
    per_held_out = min(config.held_out_per_speaker, config.utterances // len(speakers))
    n_sentences = max(1, config.utterances - per_held_out * len(held_out))
    if sentences is None:
        sentences = choose_sentences(n_sentences, config.seed, config.text)
    sentences = list(sentences)[:n_sentences]
    rng = random.Random(config.seed * 7919 + 1)
    splits = _split_sentences(len(sentences), config, rng)

    items: list[SynthItem] = []
    order = list(range(len(sentences)))
    rng.shuffle(order)
    for k, i in enumerate(order):
        speaker = trainers[k % len(trainers)]
        items.append(_item(config, speaker, i, sentences[i], splits[i], rng))
    for speaker in held_out:
        own = speaker_split(config, speaker.id)
        pool = [i for i in range(len(sentences)) if splits[i] == own]
        for i in sorted(rng.sample(pool, min(per_held_out, len(pool)))):
            items.append(_item(config, speaker, i, sentences[i], own, rng))
    items.sort(key=lambda it: (it.speaker_split != "train", it.sentence, it.speaker.id))
    return items


def revoice_speakers(held_out: Sequence[str], seed: int = 0) -> tuple[Speaker, ...]:
    """The espeak voices that may read a corpus again: none shares an accent or a variant
    with a held-out speaker of it (`held_out`: speaker ids), none is one of its own voices."""
    accents, variants = set(), set()
    for speaker_id in held_out:
        try:
            speaker = speaker_by_id(speaker_id)
        except KeyError:
            continue
        if speaker.engine == "espeak":
            accent, variant = espeak_parts(speaker.voice)
            accents.add(accent)
            variants.add(variant)
    base = {s.id for s in SPEAKERS}
    return variety_speakers(accents, variants, base, seed)


def plan_revoice(utterances: Sequence[Utterance], config: SynthConfig) -> list[SynthItem]:
    """Training items that read the training text of `utterances` again in new voices.

    Only `train` rows whose speaker is a training speaker are read again, so no held-out
    text or voice leaks in; every row of it gets a voice of `config.speakers` in turn (in
    a seeded order), at most `config.utterances` rows. Ids are `<voice>_rv_<source id>`.
    """
    rows = [
        u for u in utterances
        if u.split == "train" and u.text and u.extra.get("speaker_split", "train") == "train"
    ]  # fmt: skip
    if not config.speakers:
        raise ValueError("no voices to read the corpus again")
    rng = random.Random(config.seed * 7919 + 3)
    rng.shuffle(rows)
    voices = list(config.speakers)
    rng.shuffle(voices)
    items = []
    for k, utt in enumerate(rows[: config.utterances]):
        item = _item(config, voices[k % len(voices)], k, utt.text, "train", rng)
        slug = item.speaker.id.split("/", 1)[1]
        items.append(
            replace(item, id=f"{slug}_rv_{utt.id}", sentence=int(utt.extra.get("sentence", k)))
        )
    items.sort(key=lambda it: it.id)
    return items
