"""The ASR model and tokenizer at tiny size: the conv stem halves the frame rate, padding
never changes an item, the KV cache reproduces the full pass, greedy equals beam search
with one beam, the tokenizer round-trips and lays out Whisper's special tokens, and a
checkpoint (tokenizer inside) reproduces the model exactly."""

import json

import pytest
import torch

from asr.decoding import DecodingOptions, decode
from asr.model import ASRModel, load_asr, log_mel_features, save_asr
from asr.tokenizer import N_TIMESTAMPS, SPECIALS, Tokenizer
from core.errors import CheckpointError
from tests.helpers.asr import (
    TEXTS,
    clip,
    clip_batch,
    one_thread,
    overfitted,
    tiny_model,
    tiny_tokenizer,
)

_threads = pytest.fixture(autouse=True)(one_thread)


def test_encoder_halves_the_frame_rate_and_ignores_padding():
    model = tiny_model()
    for frames in (100, 101):
        mel = torch.randn(1, 80, frames)
        assert model.embed_audio(mel).x.shape == (1, (frames + 1) // 2, 32)
    batch = clip_batch((1.0, 0.53))
    mel, frames = log_mel_features(batch.wav, batch.lengths)
    assert frames.tolist() == [100, 53]
    together = model.embed_audio(mel, frames)
    assert together.lengths.tolist() == [50, 27]
    alone_mel, alone_frames = log_mel_features(clip(1, 0.53)[None])
    alone = model.embed_audio(alone_mel, alone_frames)
    torch.testing.assert_close(together.x[1, :27], alone.x[0], atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_equals_the_full_pass():
    model = tiny_model()
    audio = model.embed_audio(torch.randn(2, 80, 60))
    tokens = torch.randint(0, model.dims.n_vocab, (2, 9))
    full = model.decoder(tokens, audio)  # (B, L, V)
    cache = model.new_cache(2)
    steps = [model.decoder(tokens[:, :4], audio, cache)]  # a prompt chunk, then one at a time
    steps += [model.decoder(tokens[:, i : i + 1], audio, cache) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 9


@pytest.mark.parametrize("timestamps", [False, True])
def test_greedy_equals_beam_search_with_one_beam(timestamps):
    model = tiny_model(seed=3)
    batch = clip_batch()
    mel, frames = log_mel_features(batch.wav, batch.lengths)
    greedy = decode(model, mel, frames, DecodingOptions(timestamps=timestamps, max_tokens=20))
    beam = decode(
        model, mel, frames, DecodingOptions(timestamps=timestamps, beam_size=1, max_tokens=20)
    )
    for g, b in zip(greedy, beam):
        assert g.tokens == b.tokens and len(g.tokens) > 0
        assert g.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-5)
        assert g.no_speech_prob == pytest.approx(b.no_speech_prob)


def test_beam_search_decodes_a_batch_like_single_items():
    model = tiny_model(seed=3)
    batch = clip_batch()
    mel, frames = log_mel_features(batch.wav, batch.lengths)
    options = DecodingOptions(beam_size=3, max_tokens=12)
    together = decode(model, mel, frames, options)
    for row in range(2):
        n = int(frames[row])
        alone = decode(model, mel[row : row + 1, :, :n], frames[row : row + 1], options)[0]
        assert alone.tokens == together[row].tokens
        assert alone.avg_logprob == pytest.approx(together[row].avg_logprob, abs=1e-4)


def test_items_that_finish_leave_the_batch_and_nothing_changes(monkeypatch):
    # The short clip's beams finish first; its rows leave the cache (and the CTC state) while
    # the long clips on both sides of it go on. Every item reads as it does alone.
    from core.transformer import TransformerCache

    model, _ = overfitted("chars")
    batch = clip_batch()
    mel, frames = log_mel_features(batch.wav, batch.lengths)
    order = torch.tensor([1, 0, 1])
    mel, frames = mel[order], frames[order]
    kept: list[int] = []
    select = TransformerCache.select
    monkeypatch.setattr(
        TransformerCache,
        "select",
        lambda self, rows, contexts=None: (kept.append(len(rows)), select(self, rows, contexts)),
    )
    options = DecodingOptions(beam_size=3, ctc_weight=0.3)
    together = decode(model, mel, frames, options)
    assert kept, "no item left the batch early"
    assert [r.text for r in together] == [TEXTS[1], TEXTS[0], TEXTS[1]]
    for row in range(3):
        n = int(frames[row])
        alone = decode(model, mel[row : row + 1, :, :n], frames[row : row + 1], options)[0]
        assert alone.tokens == together[row].tokens
        assert alone.avg_logprob == pytest.approx(together[row].avg_logprob, abs=1e-4)
        assert alone.no_speech_prob == pytest.approx(together[row].no_speech_prob, abs=1e-5)


def test_tokenizer_round_trip_and_special_tokens():
    tok = tiny_tokenizer()
    for text in (*TEXTS, "unseen Words, 42!"):
        ids = tok.encode(text)
        assert all(0 <= i < tok.n_text for i in ids)
        assert tok.decode(ids) == text
    assert tok.special_tokens == {name: tok.n_text + k for k, name in enumerate(SPECIALS)}
    assert (tok.eot, tok.sot, tok.transcribe, tok.no_speech, tok.no_timestamps) == tuple(
        range(tok.n_text, tok.n_text + 5)
    )
    assert tok.n_vocab == tok.n_text + len(SPECIALS) + N_TIMESTAMPS
    assert tok.prompt(False) == [tok.sot, tok.transcribe, tok.no_timestamps]
    assert tok.prompt(True) == [tok.sot, tok.transcribe]
    ts = tok.timestamp_token(1.23)
    assert tok.token_time(ts) == pytest.approx(1.24) and tok.timestamp_token(99) == tok.n_vocab - 1
    ids = [tok.sot, tok.timestamp_token(0), *tok.encode("Hello world."), ts, tok.eot]
    assert tok.decode(ids) == "Hello world."
    assert tok.decode_with_timestamps(ids[1:-1]) == "<|0.00|> Hello world.<|1.24|>"
    again = Tokenizer.from_json(tok.to_json())
    assert again.encode(TEXTS[1]) == tok.encode(TEXTS[1]) and again.n_vocab == tok.n_vocab
    with pytest.raises(CheckpointError, match="tokenizer"):
        Tokenizer.from_json("{not json")


def test_checkpoint_round_trip_keeps_the_tokenizer_and_the_output(tmp_path):
    model = tiny_model(seed=5)
    path = save_asr(tmp_path / "asr", model)
    meta = json.loads((tmp_path / "asr.json").read_text())
    assert meta["kind"] == "asr" and json.loads(meta["dims"]["tokenizer"])["model"]["type"] == "BPE"
    loaded = load_asr(path)
    assert isinstance(loaded, ASRModel) and loaded.dims == model.dims
    assert loaded.tokenizer.to_json() == model.tokenizer.to_json()
    batch = clip_batch()
    mel, frames = log_mel_features(batch.wav, batch.lengths)
    options = DecodingOptions(timestamps=True, max_tokens=15)
    assert decode(loaded, mel, frames, options) == decode(model, mel, frames, options)
    with pytest.raises(CheckpointError, match="no ASR model"):
        load_asr(tmp_path / "missing.safetensors")
