"""vocalis speech recognition: a Whisper-style encoder-decoder (`ASRModel`), its BPE
tokenizer with Whisper's special tokens, decoding (greedy, beam search, temperature
fallback) and long-form transcription: pieces of at most 15 s cut at pauses and decoded in
batches (or Whisper's 30-second windows with seek). `transcribe`'s defaults decode as
`vocalis transcribe` does: beam search with the CTC head's vote, the shipped LM and its
lexicon penalty.

    model = load_asr("models/asr/warm_start.safetensors")
    for t in transcribe(model, ["talk.wav"]):
        print(t.text)

Importing `asr` pulls in torch and the `tokenizers` library, never training code.
"""

from asr.model import ASRDims, ASRModel, load_asr, save_asr
from asr.tokenizer import Tokenizer
from asr.transcribe import Segment, TranscribeOptions, Transcript, transcribe

__all__ = [
    "ASRDims",
    "ASRModel",
    "Segment",
    "Tokenizer",
    "TranscribeOptions",
    "Transcript",
    "load_asr",
    "save_asr",
    "transcribe",
]
