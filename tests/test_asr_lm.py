"""The n-gram language model for shallow fusion: exact Kneser-Ney probabilities that sum to
one, backoff for what it never read, files tied to their tokenizer, held-out sentences kept
out of its text, and its pull on the beam search."""

import json

import pytest
import torch

from asr.decoding import DecodingOptions, decode
from asr.lm import NGramLM, build_lm, corpus_text, load_lm, save_lm, sentences_of
from asr.tokenizer import Tokenizer
from core.errors import CheckpointError
from core.paths import EXAMPLE_VOICE
from tests.helpers.asr import TEXTS, one_thread, tiny_model, tiny_tokenizer

_threads = pytest.fixture(autouse=True)(one_thread)

LINES = [
    "the quick brown fox jumps over the lazy dog",
    "the quick red fox",
    "one two three four five",
    "Hello world.",
    "Good morning, Anna!",
] * 3


def _lm(lines=LINES, order=3, prune=0) -> NGramLM:
    dims, tables, _ = build_lm(lines, tiny_tokenizer(), order=order, prune=prune)
    return NGramLM(dims, tables)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_next_token_probabilities_sum_to_one_after_any_context(order):
    tok = tiny_tokenizer()
    lm = _lm(order=order)
    every = torch.arange(lm.eos + 1).unsqueeze(0)  # every piece and the sentence end
    for text in ["", "the quick", "the quick brown fox jumps", "one two", "zebra Anna"]:
        context = lm.context(tok.encode(text) if text else [])
        p = lm.score([context], every).double().exp()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5), text


def test_what_it_read_outscores_what_it_did_not():
    tok = tiny_tokenizer()
    lm = _lm()
    seen = lm.sentence_logprob(tok.encode("the quick brown fox jumps over the lazy dog"))
    shuffled = lm.sentence_logprob(tok.encode("dog lazy the over jumps fox brown quick the"))
    assert seen > shuffled + 10
    # After "the quick" the two continuations it read share the mass.
    context = lm.context(tok.encode("the quick"))
    brown, red, five = (tok.encode(w)[0] for w in (" brown", " red", " five"))
    p = lm.score([context], torch.tensor([[brown, red, five]])).exp()[0]
    assert p[0] > 0.3 and p[1] > 0.3 and p[2] < 0.05


def test_special_and_timestamp_tokens_are_neutral_and_skipped_in_context():
    tok = tiny_tokenizer()
    lm = _lm()
    words = tok.encode("the quick")
    assert lm.context([tok.timestamp_token(0.5), *words, tok.timestamp_token(1.0)]) == (
        lm.context(words)
    )
    scores = lm.score([lm.context(words)], torch.tensor([[tok.timestamp_token(1.0), tok.sot]]))
    assert scores.tolist() == [[0.0, 0.0]]


def test_pruning_keeps_small_tables_and_sensible_scores():
    lines = [f"the {w} fox" for w in ("quick", "red", "brown", "lazy")] * 2 + [
        "one two three four five six seven"
    ]
    full, pruned = _lm(lines, order=4, prune=0), _lm(lines, order=4, prune=1)
    assert pruned.n_grams < full.n_grams
    tok = tiny_tokenizer()
    kept = tok.encode("the red fox")  # read twice: kept
    assert pruned.sentence_logprob(kept) == pytest.approx(full.sentence_logprob(kept), abs=1e-4)
    once = tok.encode("one two three four five six seven")  # read once: backs off
    assert pruned.sentence_logprob(once) < full.sentence_logprob(once)
    assert pruned.sentence_logprob(once) > _lm(["the red fox"] * 2).sentence_logprob(once)


def test_files_round_trip_and_refuse_another_tokenizer(tmp_path):
    from asr.tokenizer import Tokenizer

    tok = tiny_tokenizer()
    dims, tables, record = build_lm(LINES, tok, order=3)
    save_lm(tmp_path / "lm", dims, tables, record)
    meta = json.loads((tmp_path / "lm.json").read_text())
    assert meta["kind"] == "asr-lm" and meta["dims"]["order"] == 3
    assert meta["training"]["lines"] == len(LINES)
    lm = load_lm(tmp_path / "lm.safetensors")
    ids = tok.encode("the quick brown fox")
    assert lm.sentence_logprob(ids) == pytest.approx(NGramLM(dims, tables).sentence_logprob(ids))
    lm.check_tokenizer(tok)
    other = Tokenizer.train(["completely different words here"] * 3, 280)
    with pytest.raises(CheckpointError, match="another tokenizer"):
        lm.check_tokenizer(other)
    with pytest.raises(CheckpointError, match="not a 'asr-lm' model|holds a"):
        from asr.model import load_asr
        from core.checkpoint import save_model
        from tests.helpers.asr import tiny_model

        model = tiny_model()
        save_model(tmp_path / "asr", model, model.dims, kind="asr")
        load_asr(tmp_path / "asr")  # fine as an ASR model ...
        load_lm(tmp_path / "asr")  # ... but not as an LM


def test_valid_and_test_sentences_never_reach_its_text(tmp_path):
    from corpus.manifest import Utterance, write_manifest

    def utt(i, text, split):
        return Utterance(f"u{i}", f"/x/{i}.wav", 1.0, 16000, text, "s", "synth", split)

    write_manifest(
        tmp_path / "m.jsonl",
        [
            utt(0, "The red fox ran home. It was late.", "train"),
            utt(1, "The blue bird sang.", "test"),
            utt(2, "A cold wind blew!", "valid"),
            utt(3, "It was late. The blue bird sang.", "train"),  # shares a test sentence
        ],
    )
    source = tmp_path / "text.txt"
    source.write_text(
        "The blue bird sang. A green frog jumped.\nA cold wind blew.\nThe dog slept by the fire.\n"
    )
    lines, record = corpus_text([tmp_path / "m.jsonl"], [str(source)])
    held_out = set(sentences_of("The blue bird sang. A cold wind blew!"))
    for line in lines:
        assert not held_out & set(sentences_of(line)), line
    assert "The red fox ran home. It was late." in lines
    assert any("The dog slept by the fire." in line for line in lines)
    assert any("A green frog jumped." in line for line in lines)
    assert record["transcripts"] == 1 and record["held-out sentences"] == 2


@pytest.mark.parametrize("beam_size", [1, 3])
def test_fusion_pulls_the_search_toward_what_the_lm_read(beam_size):
    from tests.helpers.asr import clip_mels, overfitted

    model, _ = overfitted()
    mel, frames = clip_mels()
    alone = decode(model, mel, frames, DecodingOptions(beam_size=beam_size))
    assert [r.text for r in alone] == list(TEXTS)
    agreeing = _lm(list(TEXTS) * 5)
    # An LM that read the same sentences, or any LM at weight 0 (and no lexicon penalty:
    # tests/test_asr_lexicon.py), changes nothing.
    for lm, weight in ((agreeing, 0.5), (_lm([TEXTS[1]] * 5), 0.0)):
        opts = DecodingOptions(beam_size=beam_size, lm=lm, lm_weight=weight, lexicon_penalty=0)
        fused = decode(model, mel, frames, opts)
        assert [r.tokens for r in fused] == [r.tokens for r in alone]
        for a, f in zip(alone, fused):  # the confidence stays the decoder's own
            assert f.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-4)
    # An LM that only ever read the second sentence, weighted heavily, pulls the first
    # clip to it: all the way with a beam, from the second piece on alone (it re-ranks the
    # decoder's best candidates; it cannot add its own).
    heavy = DecodingOptions(beam_size=beam_size, lm=_lm([TEXTS[1]] * 5), lm_weight=20.0)
    first, second = (r.text for r in decode(model, mel, frames, heavy))
    assert second == TEXTS[1]
    if beam_size > 1:
        assert first == TEXTS[1]
    else:
        assert first != TEXTS[0] and first.endswith(TEXTS[1][2:])


def test_lm_weight_must_not_be_negative_and_the_lm_must_fit_the_model():
    from asr.tokenizer import Tokenizer
    from tests.helpers.asr import tiny_model

    with pytest.raises(ValueError, match="lm_weight"):
        DecodingOptions(lm_weight=-0.1)
    other = Tokenizer.train(["completely different words here"] * 3, 280)
    dims, tables, _ = build_lm(["completely different words here"], other, order=2)
    with pytest.raises(CheckpointError, match="another tokenizer"):
        DecodingOptions(lm=NGramLM(dims, tables), lm_weight=0.3).for_model(tiny_model())


def test_the_shipped_lm_fits_the_warm_start_and_prefers_words_to_sounds():
    from asr.lm import SHIPPED_LM
    from asr.model import WARM_START_CHECKPOINT, load_asr

    if not (SHIPPED_LM.is_file() and WARM_START_CHECKPOINT.is_file()):
        pytest.skip("no shipped LM or warm-start weights")
    lm = load_lm(SHIPPED_LM)
    tok = load_asr(WARM_START_CHECKPOINT).tokenizer
    lm.check_tokenizer(tok)  # `--lm auto` takes it for the warm start
    # Errors the recogniser made on held-out voices, against what was said.
    for said, heard in (
        ("The train left the station.", "Detrain left the station."),
        ("There were three of them.", "Dere were three of them."),
    ):
        assert lm.sentence_logprob(tok.encode(said)) > lm.sentence_logprob(tok.encode(heard)) + 2


def test_lm_auto_is_the_shipped_lm_when_it_fits_and_read_once(tmp_path):
    from asr.lm import shipped_lm

    tok = tiny_tokenizer()
    texts = [t.lower() for t in TEXTS] * 3
    dims, tables, training = build_lm(texts, tok, order=3)
    path = tmp_path / "lm"
    save_lm(path, dims, tables, training)
    weights = tmp_path / "lm.safetensors"
    first = shipped_lm(tok, weights)
    assert first is not None and shipped_lm(tok, weights) is first  # read once
    other = Tokenizer.train(["completely different words here"] * 3, 280)
    assert shipped_lm(other, weights) is None  # counted with another tokenizer: no LM
    assert shipped_lm(tok, tmp_path / "missing.safetensors") is None
    with pytest.raises(ValueError, match="'auto' or None"):
        DecodingOptions(lm="shipped")
    # a model whose tokenizer the shipped LM was not counted with decodes without one
    resolved = DecodingOptions(lm="auto").for_model(tiny_model())
    assert resolved.lm is None and not resolved.fused


def test_the_api_decodes_as_the_command_does_by_default(capsys):
    """`asr.transcribe` with its default options gives the words `vocalis transcribe` prints:
    beam 5, the CTC head's vote and the shipped LM (the API used to decode greedily without
    the LM, so `vocalis say` transcribed prompts worse than `vocalis transcribe` did)."""
    from asr.decoding import DEFAULT_CTC_WEIGHT
    from asr.lm import SHIPPED_LM, shipped_lm
    from asr.model import WARM_START_CHECKPOINT, load_asr
    from asr.transcribe import TranscribeOptions, transcribe
    from vocalis import cli

    if not (SHIPPED_LM.is_file() and WARM_START_CHECKPOINT.is_file()):
        pytest.skip("no shipped LM or warm-start weights")
    example = EXAMPLE_VOICE
    model = load_asr(WARM_START_CHECKPOINT)
    resolved = TranscribeOptions().decoding.for_model(model)
    assert resolved.beam_size == 5 and resolved.ctc_weight == DEFAULT_CTC_WEIGHT
    assert resolved.fused and resolved.lm is shipped_lm(model.tokenizer)
    api = next(iter(transcribe(model, [example], TranscribeOptions(workers=1)))).text.strip()
    argv = ["transcribe", str(example), "--model", str(WARM_START_CHECKPOINT)]
    assert cli.main([*argv, "--precision", "fp32", "--workers", "1"]) == 0
    assert api and api == capsys.readouterr().out.strip()
