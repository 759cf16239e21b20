"""The synthetic speakers and how each engine renders one sentence to a wav file.

Three Debian engines, driven as subprocesses (nothing is downloaded):
- espeak-ng: formant synthesis; a speaker is a language voice plus a `+variant`;
  rate in words per minute (`-s`), pitch 0-99 (`-p`).
- flite: `kal16` (diphone), `awb`, `rms`, `slt` (clustergen); rate by `duration_stretch`,
  pitch by `int_f0_target_mean` (ignored by `rms`).
- festival (`text2wave`): `kal_diphone`, `ked_diphone` (pitch by `int_lr_params`,
  rate by `Duration_Stretch`) and `cmu_us_slt_arctic_hts` (rate by the HTS `-r` option).

`awb_time` (flite's limited-domain time voice) is listed as a known-bad voice: it speaks
junk for general text and is never used; the validator in `corpus.render_check` catches it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENGINE_BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}
ENGINE_PACKAGES = {
    "espeak": "espeak-ng",
    "flite": "flite",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu",
}


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice with its fixed base rate and pitch."""

    id: str  # manifest speaker id, e.g. 'synth/espeak-en-us+m3'
    engine: str  # 'espeak' | 'flite' | 'festival'
    voice: str  # engine's voice name
    gender: str  # 'male' | 'female'
    accent: str
    rate: float  # relative speaking rate, 1.0 = engine default
    pitch: float  # mean F0 in Hz (espeak: 0-99 pitch setting); 0 = engine default
    origin: str  # the human or model behind the voice (speakers sharing one are related)


@dataclass(frozen=True)
class RenderSettings:
    """Per-utterance settings: the speaker's base values with jitter applied."""

    rate: float
    pitch: float


def _s(voice: str, engine: str, gender: str, accent: str, rate: float, pitch: float, origin: str):
    name = voice.replace("_", "-")
    return Speaker(f"synth/{engine}-{name}", engine, voice, gender, accent, rate, pitch, origin)


SPEAKERS: tuple[Speaker, ...] = (
    _s("en-us+m3", "espeak", "male", "american", 1.00, 45, "espeak"),
    _s("en-us+f2", "espeak", "female", "american", 1.05, 55, "espeak"),
    _s("en-gb-x-rp+m1", "espeak", "male", "british rp", 0.95, 40, "espeak"),
    _s("en-gb-x-rp+f4", "espeak", "female", "british rp", 1.00, 60, "espeak"),
    _s("en-gb-scotland+m7", "espeak", "male", "scottish", 0.92, 50, "espeak"),
    _s("en-029+f5", "espeak", "female", "caribbean", 1.08, 45, "espeak"),
    _s("en-us-nyc+klatt", "espeak", "male", "new york", 1.10, 35, "espeak"),
    _s("en-gb-x-gbclan+f1", "espeak", "female", "lancashire", 0.97, 65, "espeak"),
    _s("en-gb-x-gbcwmd+m4", "espeak", "male", "west midlands", 1.02, 55, "espeak"),
    _s("en-us+klatt4", "espeak", "female", "american", 0.90, 70, "espeak"),
    _s("kal16", "flite", "male", "american", 1.00, 100, "kal"),
    _s("awb", "flite", "male", "scottish", 0.95, 115, "awb"),
    _s("rms", "flite", "male", "american", 1.05, 0, "rms"),
    _s("slt", "flite", "female", "american", 1.00, 175, "slt"),
    _s("kal_diphone", "festival", "male", "american", 0.95, 120, "kal"),
    _s("ked_diphone", "festival", "male", "american", 1.05, 95, "ked"),
    _s("cmu_us_slt_arctic_hts", "festival", "female", "american", 1.00, 0, "slt"),
)

# Never used for general text: flite's limited-domain talking clock returns junk.
KNOWN_BAD_VOICES = (("flite", "awb_time"),)


def speaker_by_id(speaker_id: str) -> Speaker:
    for speaker in SPEAKERS:
        if speaker.id == speaker_id:
            return speaker
    raise KeyError(speaker_id)


def engine_available(engine: str) -> bool:
    return shutil.which(ENGINE_BINARIES[engine]) is not None


def render_command(
    engine: str, voice: str, settings: RenderSettings, text_file: Path, out: Path
) -> list[str]:
    """The command line that renders the text in `text_file` to the wav `out`."""
    if engine == "espeak":
        wpm = round(155 * settings.rate)
        pitch = round(min(99, max(0, settings.pitch)))
        return ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(out),
                "-f", str(text_file)]  # fmt: skip
    if engine == "flite":
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / settings.rate:.3f}"]
        if settings.pitch > 0:
            cmd += ["--setf", f"int_f0_target_mean={settings.pitch:.1f}"]
        return cmd + ["-f", str(text_file), "-o", str(out)]
    if engine == "festival":
        evals = [f"(voice_{voice})"]
        if voice.endswith("_hts"):
            evals.append(
                f'(set! hts_engine_params (append hts_engine_params (list (list "-r" '
                f"{settings.rate:.3f}))))"
            )
        else:
            evals.append(f"(Parameter.set 'Duration_Stretch {1 / settings.rate:.3f})")
            if settings.pitch > 0:
                evals.append(
                    f"(set! int_lr_params (list (list 'target_f0_mean {settings.pitch:.1f}) "
                    f"(list 'target_f0_std {settings.pitch * 0.15:.1f}) "
                    "(list 'model_f0_mean 170) (list 'model_f0_std 34)))"
                )
        cmd = ["text2wave"]
        for e in evals:
            cmd += ["-eval", e]
        return cmd + [str(text_file), "-o", str(out)]
    raise ValueError(f"unknown engine '{engine}'")


def render_wav(
    engine: str, voice: str, settings: RenderSettings, text: str, workdir: Path, timeout: float = 60
) -> Path:
    """Render `text` to a wav in `workdir`; raises RuntimeError if the engine fails."""
    text_file = workdir / "text.txt"
    out = workdir / "out.wav"
    text_file.write_text(text + "\n", encoding="utf-8")
    out.unlink(missing_ok=True)
    cmd = render_command(engine, voice, settings, text_file, out)
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.is_file():
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{engine} {voice} failed (exit {proc.returncode}): {tail[0]}")
    return out


# espeak-ng's English accents and its voice variants (`espeak-ng --voices=variant`), the
# material of `variety_speakers`. Variants left out: the whispers (no voicing), `fast`
# (a test voice) and `Demonic` (pitched far below speech).
ESPEAK_ACCENTS = {
    "en": "british",
    "en-us": "american",
    "en-gb-x-rp": "british rp",
    "en-gb-scotland": "scottish",
    "en-gb-x-gbclan": "lancashire",
    "en-gb-x-gbcwmd": "west midlands",
    "en-us-nyc": "new york",
    "en-029": "caribbean",
}
_FEMALE_VARIANTS = (
    "f1 f2 f3 f4 f5 Alicia Andrea Annie aunty belinda grandma linda steph steph2 steph3 "
    "anika anikaRobot shelby klatt4"
).split()
_MALE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 adam Alex Andy antonio benjamin boris caleb david Denis Diogo "
    "ed edward edward2 Gene Gene2 gustave Henrique Hugo iven iven2 iven3 iven4 Jacky john "
    "kaukovalta Lee marcelo Marco Mario max Michael michel miguel Mike Nguyen pablo paul "
    "pedro quincy RicishayMax RicishayMax2 RicishayMax3 rob robert robosoft robosoft2 "
    "robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 Storm Tweaky UniRobot zac "
    "AnxiousAndy grandpa klatt klatt2 klatt3 klatt5 klatt6 norbert sandro travis victor croak "
    "announcer"
).split()
ESPEAK_VARIANTS = {v: "female" for v in _FEMALE_VARIANTS} | {v: "male" for v in _MALE_VARIANTS}


def espeak_parts(voice: str) -> tuple[str, str]:
    """'en-us+m3' -> ('en-us', 'm3'); a voice without a variant gives ''."""
    accent, _, variant = voice.partition("+")
    return accent, variant


def variety_speakers(
    exclude_accents: set[str] | frozenset[str] = frozenset(),
    exclude_variants: set[str] | frozenset[str] = frozenset(),
    exclude_ids: set[str] | frozenset[str] = frozenset(),
    seed: int = 0,
) -> tuple[Speaker, ...]:
    """Every espeak accent x variant pair not excluded, as training-only speakers.

    Hundreds of voices that differ in formants, pitch, voice quality and accent rules, for
    a recogniser that must hear voices it never met. Leave out the accents and variants of
    every held-out voice (not just the pairs), so a held-out voice stays unseen in both
    respects. Rate and pitch setting per pair are drawn from `seed`.
    """
    rng = random.Random(seed * 104729 + 17)
    speakers = []
    for accent, accent_name in ESPEAK_ACCENTS.items():
        if accent in exclude_accents:
            continue
        for variant, gender in ESPEAK_VARIANTS.items():
            rate, pitch = round(rng.uniform(0.88, 1.12), 3), rng.randint(30, 70)
            voice = f"{accent}+{variant}"
            speaker = _s(voice, "espeak", gender, accent_name, rate, pitch, "espeak")
            if variant in exclude_variants or speaker.id in exclude_ids:
                continue
            speakers.append(speaker)
    return tuple(speakers)
