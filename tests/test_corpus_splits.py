"""Honest splits: held-out speakers and sentences never reach train."""

import pytest

from corpus.manifest import Utterance
from corpus.splits import SplitSpec, assign_groups, assign_splits


def _utts():
    out = []
    for s in range(20):
        for t in range(10):
            out.append(Utterance(f"s{s}_t{t}", f"/x/{s}_{t}.wav", 1.0, 16000,
                                 f"Sentence number {(s + t) % 30}.", f"c/s{s}", "c"))  # fmt: skip
    return out


def test_speaker_split_disjoint_and_deterministic():
    spec = SplitSpec(by=("speaker",), valid=0.1, test=0.1, seed=3)
    a, b = assign_splits(_utts(), spec), assign_splits(_utts(), spec)
    assert [u.split for u in a] == [u.split for u in b]
    speakers = {s: {u.speaker for u in a if u.split == s} for s in ("train", "valid", "test")}
    assert len(speakers["valid"]) == 2 and len(speakers["test"]) == 2
    assert not speakers["train"] & (speakers["valid"] | speakers["test"])
    assert not speakers["valid"] & speakers["test"]
    other = assign_splits(_utts(), SplitSpec(by=("speaker",), valid=0.1, test=0.1, seed=4))
    assert [u.split for u in other] != [u.split for u in a]


def test_speaker_and_text_split():
    utts = assign_splits(_utts(), SplitSpec(by=("speaker", "text"), valid=0.1, test=0.1))
    train = [u for u in utts if u.split == "train"]
    held = [u for u in utts if u.split != "train"]
    assert train and held
    assert not {u.speaker for u in train} & {
        u.speaker for u in held if u.extra["speaker_split"] != "train"
    }
    assert not {u.text for u in train} & {u.text for u in held if u.extra["text_split"] != "train"}
    assert all(
        u.extra["speaker_split"] == "train" and u.extra["text_split"] == "train" for u in train
    )


def test_small_and_bad_specs():
    assert set(assign_groups(["a", "b"], 0.5, 0.5, 0).values()) == {"train"}  # too few groups
    assert sorted(assign_groups(["a", "b", "c"], 0.01, 0.01, 0).values()) == [
        "test",
        "train",
        "valid",
    ]
    with pytest.raises(ValueError):
        SplitSpec(by=("gender",))
    with pytest.raises(ValueError):
        SplitSpec(valid=0.6, test=0.5)
