"""Text + a voice prompt -> speech with VALL-E and the codec: the Python API behind `vocalis say`.

    synth = Synthesizer.load()                      # the shipped TTS and codec
    prompt = synth.prompt_from_file("voice.wav")    # text from voice.txt, else the ASR's
    speech = synth.synthesize("Hello there. How are you?", prompt, seed=0)
    speech.wav, speech.sample_rate, speech.rtf

Long text is normalised and split into sentences; every sentence is spoken with the same
prompt (one consistent voice), `batch_size` sentences at a time, and the pieces are joined
with a short pause. The AR's frame budget comes from the phoneme count, at the prompt's
own speaking rate.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from codec.interface import CompressionModel
from core.audio import load_audio, resample, rms_dbfs
from core.errors import VocalisError
from tts.frontend import PhonemeVocab, TextFrontend, normalize_for_speech, phonemize
from tts.generate import SamplingOptions, generate_codes
from tts.valle import VALLE, join_phonemes, load_valle

MIN_PROMPT_SECONDS = 1.0
MAX_PROMPT_SECONDS = 12.0  # longer prompts are cut (and the cut transcribed by the ASR)
SILENCE_DBFS = -50.0  # a prompt quieter than this (RMS) has no voice to clone
SENTENCE_PAUSE_SECONDS = 0.25
MAX_SENTENCE_SECONDS = 30.0
DEFAULT_SAMPLING = SamplingOptions(temperature=0.9, top_k=50, top_p=1.0)


@dataclass(frozen=True)
class VoicePrompt:
    codes: Tensor  # (Q, P) the prompt's codec tokens
    phonemes: Tensor  # (L,) phoneme ids of its transcript
    text: str  # its transcript
    seconds: float
    transcribed: bool = False  # the transcript was made by the ASR, not given


@dataclass(frozen=True)
class Speech:
    wav: Tensor  # (T,) mono float
    sample_rate: int
    sentences: tuple[str, ...]
    compute_seconds: float

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio time (below 1 is faster than real time)."""
        return self.compute_seconds / max(self.seconds, 1e-9)


class Synthesizer:
    def __init__(
        self,
        model: VALLE,
        codec: CompressionModel,
        *,
        codec_ids: Collection[str] = (),
        asr_path: str | os.PathLike | None = None,
    ) -> None:
        d = model.dims
        expected = (d.sample_rate, float(d.frame_rate), d.cardinality)
        got = (codec.sample_rate, float(codec.frame_rate), codec.cardinality)
        if expected != got or codec.num_codebooks < d.n_codebooks:
            raise VocalisError(
                f"the TTS speaks a codec of (rate, frame rate, codebook size) {expected} with "
                f"{d.n_codebooks} codebooks; this codec has {got} and {codec.num_codebooks}"
            )
        # codec_ids: the weights hashes whose codes this codec speaks, its own and those of
        # earlier codecs it kept the encoder and codebooks of (codec.model.same_codes).
        if codec_ids and d.codec_sha256 and d.codec_sha256 not in codec_ids:
            warnings.warn(
                "the codec's weights differ from those the TTS was trained with; "
                "the voice may sound wrong",
                stacklevel=2,
            )
        self.model, self.codec = model.eval(), codec.eval()
        self.vocab = PhonemeVocab.from_json(d.phoneme_vocab)
        self.frontend = TextFrontend(self.vocab)
        self.asr_path = asr_path
        self._asr = None

    @classmethod
    def load(
        cls,
        model_path: str | os.PathLike | None = None,
        codec_path: str | os.PathLike | None = None,
        *,
        asr_path: str | os.PathLike | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        ar_precision: str = "fp32",
    ) -> Synthesizer:
        """The TTS checkpoint (default: the shipped one) with the shipped or given codec.

        `precision` ("fp32", "bf16" or "auto", see `core.checkpoint.inference_dtype`) is that
        of the NAR, whose passes over whole utterances are large matrix products.
        `ar_precision` ("fp32", "int8" or "auto": int8 on the CPU, see `core.quantize`) is
        that of the AR's linears. The AR steps one frame at a time, reading every weight
        for one or two vectors: in bf16 each step took longer on the CPU (RTF 0.38 against
        0.27 for the AR's share), while int8 weights with bf16 activations halve it at the
        same teacher-forced loss."""
        from codec.model import SHIPPED_CHECKPOINT, find_codec, load_codec, same_codes
        from core.checkpoint import inference_dtype
        from core.quantize import quantize_linears_, use_int8

        try:
            int8 = use_int8(device, ar_precision)
        except ValueError as e:
            raise VocalisError(f"AR precision: {e}") from None
        model = load_valle(model_path, device=device)
        if codec_path is None:  # the shipped codec that speaks this TTS's tokens
            codec_path = find_codec(model.dims.codec_sha256) or SHIPPED_CHECKPOINT
        codec_path = Path(codec_path)
        model.nar.to(inference_dtype(device, precision))
        if int8:
            quantize_linears_(model.ar)
        codec = load_codec(codec_path).to(device)
        return cls(model, codec, codec_ids=same_codes(codec_path), asr_path=asr_path)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------
    def prompt_from_file(self, path: str | os.PathLike, text: str | None = None) -> VoicePrompt:
        """A prompt from an audio file. Without `text`, the transcript is read from a `.txt`
        file of the same name beside it (`voice.wav` -> `voice.txt`) if there is one, else
        made by the ASR."""
        wav, rate = load_audio(path)  # (1, T), any rate: resampled below
        name = f"voice prompt '{path}'"
        if text is None and (beside := transcript_beside(path)) is not None:
            text, name = read_transcript(beside), f"{name} (transcript '{beside}')"
        return self.prompt_from_audio(wav[0], rate, text, name=name)

    @torch.inference_mode()
    def prompt_from_audio(
        self, wav: Tensor, sample_rate: int, text: str | None = None, *, name: str = "voice prompt"
    ) -> VoicePrompt:
        """A prompt from mono audio `(T,)` at any rate; no `text`: transcribed by the ASR."""
        wav = wav.reshape(-1).float()
        seconds = wav.shape[0] / sample_rate
        if seconds < MIN_PROMPT_SECONDS:
            raise VocalisError(
                f"{name} is {seconds:.2f} s long; at least {MIN_PROMPT_SECONDS:g} s of speech "
                "is needed"
            )
        level = rms_dbfs(wav)
        if level < SILENCE_DBFS:
            raise VocalisError(f"{name} is silent ({level:.0f} dBFS): it holds no voice to clone")
        if seconds > MAX_PROMPT_SECONDS:
            if text is not None:
                warnings.warn(
                    f"{name} is {seconds:.1f} s long: using its first {MAX_PROMPT_SECONDS:g} s, "
                    "transcribed by the ASR (the given text covers the whole clip)",
                    stacklevel=2,
                )
            wav, text = wav[: int(MAX_PROMPT_SECONDS * sample_rate)], None
            seconds = MAX_PROMPT_SECONDS
        transcribed = text is None
        if transcribed:
            text = self._transcribe(wav, sample_rate, name)
        codes, ids = self.tokens(wav, sample_rate, text, name=name)
        return VoicePrompt(codes, ids, text, seconds, transcribed)

    @torch.inference_mode()
    def tokens(
        self, wav: Tensor, sample_rate: int, text: str, *, name: str = "utterance"
    ) -> tuple[Tensor, Tensor]:
        """Codec codes `(Q, F)` of mono audio `(T,)` at any rate and the phoneme ids `(L,)` of
        its transcript, as training reads them (normalised, then phonemised whole)."""
        normalized = normalize_for_speech(text).text
        ids = self.vocab.encode(phonemize([normalized])[0]) if normalized else []
        if not ids:
            raise VocalisError(f"{name}: its transcript has nothing to pronounce ({text!r})")
        wav = wav.reshape(-1).float()
        audio = (
            resample(wav, sample_rate, self.sample_rate) if sample_rate != self.sample_rate else wav
        )
        codes = self.codec.encode(audio.view(1, 1, -1).to(self.device), self.model.dims.n_codebooks)
        return codes[0], torch.tensor(ids, dtype=torch.long)

    def _transcribe(self, wav: Tensor, sample_rate: int, name: str) -> str:
        from asr.model import SAMPLE_RATE, load_asr
        from asr.transcribe import transcribe
        from core.errors import CheckpointError

        if self._asr is None:
            try:
                self._asr = load_asr(self.asr_path)
            except CheckpointError as e:
                raise VocalisError(
                    f"{name} has no transcript and no ASR model to make one: {e}"
                ) from None
        audio = resample(wav, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wav
        text = next(iter(transcribe(self._asr, [audio]))).text.strip()
        if not text:
            raise VocalisError(f"{name}: the ASR heard no words in it; pass its transcript")
        return text

    # ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def synthesize(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        options: SamplingOptions = DEFAULT_SAMPLING,
        seed: int | None = None,
        batch_size: int = 4,
    ) -> Speech:
        """Speech for `text` (any length) in the prompt's voice."""
        start = time.perf_counter()
        sentences = self.frontend(text)
        if not sentences:
            raise VocalisError("there is nothing to say: the text has no words")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
        pieces: list[Tensor] = []
        for first in range(0, len(sentences), batch_size):
            group = sentences[first : first + batch_size]
            pieces += self._speak(
                [torch.tensor(s.ids, dtype=torch.long) for s in group], prompt, options, generator
            )
        pause = torch.zeros(int(SENTENCE_PAUSE_SECONDS * self.sample_rate))
        joined = [p for piece in pieces for p in (piece, pause)][:-1]
        wav = torch.cat(joined).cpu()
        return Speech(
            wav, self.sample_rate, tuple(s.text for s in sentences), time.perf_counter() - start
        )

    def _speak(
        self,
        targets: list[Tensor],
        prompt: VoicePrompt,
        options: SamplingOptions,
        generator: torch.Generator,
    ) -> list[Tensor]:
        """Waveforms `(T,)` of a batch of phoneme sequences in the prompt's voice."""
        dims, device, b = self.model.dims, self.device, len(targets)
        vocab = self.vocab
        texts = [
            join_phonemes(prompt.phonemes, t, bos=vocab.bos_id, eos=vocab.eos_id) for t in targets
        ]
        text_lens = torch.tensor([len(t) for t in texts], device=device)
        text = torch.full((b, int(text_lens.max())), vocab.pad_id, dtype=torch.long)
        for i, t in enumerate(texts):
            text[i, : len(t)] = t
        frames_per_phoneme = prompt.codes.shape[1] / max(len(prompt.phonemes), 1)
        expected = torch.tensor([len(t) * frames_per_phoneme for t in targets])
        cap = int(MAX_SENTENCE_SECONDS * dims.frame_rate)
        max_frames = (expected * 2.0 + dims.frame_rate).clamp(max=cap).long().to(device)
        min_frames = (expected * 0.4).long().clamp(max=cap // 2).to(device)
        codes = generate_codes(
            self.model,
            text.to(device),
            text_lens,
            prompt.codes.unsqueeze(0).expand(b, -1, -1).to(device),
            torch.full((b,), prompt.codes.shape[1], device=device),
            min_frames=min_frames,
            max_frames=max_frames,
            options=options,
            generator=generator,
            prompt_phonemes=torch.full((b,), len(prompt.phonemes), device=device),
        )
        out = []
        for c in codes:
            if c.shape[1] == 0:
                out.append(torch.zeros(0))
                continue
            out.append(self.codec.decode(c.unsqueeze(0))[0, 0])  # (T,)
        return out

    def synthesize_file(
        self, text: str, prompt_path: str | os.PathLike, prompt_text: str | None = None, **kwargs
    ) -> tuple[Tensor, int, float]:
        """(wav `(T,)`, sample rate, compute seconds): the evaluation harness's entry point."""
        start = time.perf_counter()
        prompt = self.prompt_from_file(prompt_path, prompt_text)
        speech = self.synthesize(text, prompt, **kwargs)
        return speech.wav, speech.sample_rate, time.perf_counter() - start


def transcript_beside(audio_path: str | os.PathLike) -> Path | None:
    """The transcript file that goes with a voice prompt, `voice.wav` -> `voice.txt`, or None."""
    path = Path(audio_path).with_suffix(".txt")
    return path if path.is_file() else None


def read_transcript(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise VocalisError(f"transcript '{path}' is not UTF-8 text") from None


def load_synthesizer(path: str | os.PathLike | None = None, **kwargs) -> Synthesizer:
    return Synthesizer.load(path, **kwargs)
