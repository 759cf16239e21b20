"""VALL-E models at tiny sizes: layout, masks, cache-consistent decoding, an overfit run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tts.generate import SamplingOptions, generate_codes, generate_first_codebook, sample_token
from tts.valle import (
    VALLE,
    VALLEDims,
    aligned_layout,
    ar_loss,
    load_valle,
    make_layout,
    nar_loss,
    save_valle,
)

TINY = VALLEDims(
    n_phonemes=24,
    n_codebooks=3,
    cardinality=16,
    dim=32,
    heads=2,
    kv_heads=1,
    ar_depth=2,
    nar_depth=2,
    dropout=0.0,
)


ALIGNED = dataclasses.replace(TINY, ar_positions="aligned")
PROMPT_PHONEMES = torch.tensor([2, 1])  # of each item of `batch()`'s text


def tiny(seed: int = 0, dims: VALLEDims = TINY) -> VALLE:
    torch.manual_seed(seed)
    return VALLE(dims).eval()


def batch(seed: int = 0):
    """Two items of different text, prompt and target lengths, right-padded."""
    g = torch.Generator().manual_seed(seed)
    text_lens, prompt_lens, target_lens = (
        torch.tensor([7, 4]),
        torch.tensor([5, 9]),
        torch.tensor([6, 3]),
    )
    text = torch.randint(1, TINY.n_phonemes, (2, 7), generator=g)
    prompt = torch.randint(0, TINY.cardinality, (2, TINY.n_codebooks, 9), generator=g)
    target = torch.randint(0, TINY.cardinality, (2, TINY.n_codebooks, 6), generator=g)
    return text, text_lens, prompt, prompt_lens, target, target_lens


def item(b, i):
    text, tl, prompt, pl, target, fl = b
    return (
        text[i : i + 1, : tl[i]],
        tl[i : i + 1],
        prompt[i : i + 1, :, : pl[i]],
        pl[i : i + 1],
        target[i : i + 1, :, : fl[i]],
        fl[i : i + 1],
    )


def test_layout_positions_skip_padding():
    layout = make_layout(
        torch.tensor([2, 3]), torch.tensor([1, 2]), torch.tensor([2, 1]), (3, 2, 2)
    )
    assert layout.positions[0].tolist() == [0, 1, 0, 2, 0, 3, 4]
    assert layout.valid[0].tolist() == [True, True, False, True, False, True, True]
    assert layout.positions[1].tolist() == [0, 1, 2, 3, 4, 5, 0]


def test_aligned_layout_places_the_phonemes_among_their_frames():
    # item 0: 4 prompt phonemes over 8 frames (2 a phoneme), 2 target phonemes over 3 frames;
    # item 1 is shorter everywhere (padding)
    lens = torch.tensor([10, 7]), torch.tensor([4, 2]), torch.tensor([9, 5])
    layout = aligned_layout(*lens, torch.tensor([3, 2]), (10, 9, 3))
    pos = layout.positions
    assert pos.dtype == torch.float64
    # text: [bos] at 0, prompt phonemes every 2 frames from the first prompt frame (2), [eos]
    # at the first target frame (10); target phonemes every 1.5 frames from there
    assert pos[0, :10].tolist() == [0, 2, 4, 6, 8, 10, 8.5, 10, 11.5, 13]
    assert pos[0, 10:].tolist() == list(range(1, 10)) + [10, 11, 12]  # audio: contiguous
    text_1, prompt_1, target_1 = (
        [0, 2, 4, 6, 4, 6, 8, 0, 0, 0],
        [1, 2, 3, 4, 5, 0, 0, 0, 0],
        [6, 7, 0],
    )
    assert pos[1].tolist() == text_1 + prompt_1 + target_1
    regions = [(7, 3), (5, 4), (2, 1)]  # (valid, padding) of text, prompt and target
    assert layout.valid[1].tolist() == [v for n, m in regions for v in [True] * n + [False] * m]
    assert layout.target_positions(torch.arange(4))[0].tolist() == [10, 11, 12, 13]
    # In synthesis the target's length is unknown: its phonemes follow the prompt's rate
    ahead = aligned_layout(*lens, torch.tensor([0, 0]), (10, 9, 0))
    assert ahead.positions[0, 6:10].tolist() == [8, 10, 12, 14]
    assert torch.equal(ahead.positions[:, :6], pos[:, :6])
    contiguous = make_layout(torch.tensor([10]), torch.tensor([9]), torch.tensor([3]), (10, 9, 3))
    assert contiguous.target_positions(torch.arange(4))[0].tolist() == [19, 20, 21, 22]


def test_ar_positions_are_checked():
    with pytest.raises(ValueError, match="ar_positions"):
        dataclasses.replace(TINY, ar_positions="sideways")
    model = tiny(dims=ALIGNED)
    text, tl, prompt, pl, target, fl = batch()
    audio = torch.zeros(2, 10 + 6, dtype=torch.long)
    with pytest.raises(ValueError, match="prompt_phonemes"):
        model.ar(text, tl, audio, pl + 1, fl)


@pytest.mark.parametrize("dims", [TINY, ALIGNED], ids=["contiguous", "aligned"])
def test_ar_and_nar_give_the_same_output_alone_and_in_a_padded_batch(dims):
    model = tiny(dims=dims)
    count = PROMPT_PHONEMES
    b = batch()
    text, tl, prompt, pl, target, fl = b
    stage = torch.tensor([1, 2])
    with torch.no_grad():
        nar_batch = model.nar(text, tl, prompt, pl, target, fl, stage)
        for i in range(2):
            t, l, p, plen, f, flen = item(b, i)
            alone = model.nar(t, l, p, plen, f, flen, stage[i : i + 1])
            torch.testing.assert_close(nar_batch[i, : fl[i]], alone[0], atol=1e-5, rtol=1e-4)
        lp = int(pl.max()) + 1
        audio = torch.zeros(2, lp + 6, dtype=torch.long)
        audio[:, :lp] = torch.cat([torch.full((2, 1), TINY.bos), prompt[:, 0]], 1)
        audio[:, lp:] = target[:, 0]
        ar_batch = model.ar(text, tl, audio, pl + 1, fl, count)
        for i in range(2):
            n_p, n_f = int(pl[i]) + 1, int(fl[i])
            a = torch.cat([audio[i, :n_p], audio[i, lp : lp + n_f]]).unsqueeze(0)
            one = slice(i, i + 1)
            alone = model.ar(text[one, : tl[i]], tl[one], a, pl[one] + 1, fl[one], count[one])
            torch.testing.assert_close(ar_batch[i, :n_p], alone[0, :n_p], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(
                ar_batch[i, lp : lp + n_f], alone[0, n_p:], atol=1e-5, rtol=1e-4
            )


@pytest.mark.parametrize("dims", [TINY, ALIGNED], ids=["contiguous", "aligned"])
def test_cached_greedy_decoding_matches_a_full_forward_pass(dims):
    model = tiny(1, dims)
    text, tl, prompt, pl, _, _ = batch(1)
    count = PROMPT_PHONEMES
    n = torch.tensor([8, 8])
    frames = generate_first_codebook(
        model,
        text,
        tl,
        prompt[:, 0],
        pl,
        min_frames=n,
        max_frames=n,
        options=SamplingOptions(temperature=0),
        prompt_phonemes=count,
    )
    for i in range(2):
        a = torch.cat([torch.tensor([TINY.bos]), prompt[i, 0, : pl[i]], frames[i]]).unsqueeze(0)
        one = slice(i, i + 1)
        with torch.no_grad():
            logits = model.ar(
                text[one, : tl[i]], tl[one], a, pl[one] + 1, torch.tensor([8]), count[one]
            )
        logits[..., TINY.eos] = float("-inf")
        predicted = logits[0, int(pl[i]) : int(pl[i]) + 8].argmax(-1)
        assert predicted.tolist() == frames[i].tolist()


def test_sampling_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample_token(logits, SamplingOptions(temperature=0)).item() == 1
    g = torch.Generator().manual_seed(0)
    assert all(sample_token(logits, SamplingOptions(top_k=1), g).item() == 1 for _ in range(20))
    assert all(sample_token(logits, SamplingOptions(top_p=0.1), g).item() == 1 for _ in range(20))
    draws = {sample_token(logits, SamplingOptions(top_k=2), g).item() for _ in range(200)}
    assert draws == {1, 3}
    with pytest.raises(ValueError):
        SamplingOptions(top_p=0)


@pytest.mark.slow
def test_tiny_valle_overfits_one_item_and_regenerates_it(tmp_path, one_thread):
    model = tiny(2).train()
    t, tl, p, pl, f, fl = item(batch(2), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(250):
        la, _ = ar_loss(model.ar, t, tl, p[:, 0], pl, f[:, 0], fl, TINY)
        ln, _ = nar_loss(model.nar, t, tl, p, pl, f, fl, TINY)
        opt.zero_grad()
        (la + ln).backward()
        opt.step()
        losses.append(float((la + ln).detach()))
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    codes = generate_codes(
        model,
        t,
        tl,
        p,
        pl,
        min_frames=torch.tensor([1]),
        max_frames=torch.tensor([20]),
        options=SamplingOptions(temperature=0),
    )
    assert codes[0].tolist() == f[0].tolist()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = VALLE(dataclasses.replace(ALIGNED, phoneme_vocab='{"stored": "as JSON"}')).eval()
    path = save_valle(tmp_path / "valle", model)
    loaded = load_valle(path)
    assert loaded.dims == model.dims
    text, tl, prompt, pl, target, fl = batch(3)
    stage = torch.tensor([2, 1])
    with torch.no_grad():
        a = model.nar(text, tl, prompt, pl, target, fl, stage)
        b = loaded.nar(text, tl, prompt, pl, target, fl, stage)
    assert torch.equal(a, b)


def test_a_checkpoint_without_vocabulary_is_refused(tmp_path):
    from core.errors import CheckpointError

    path = save_valle(tmp_path / "valle", tiny())
    with pytest.raises(CheckpointError, match="phoneme vocabulary"):
        load_valle(path)
