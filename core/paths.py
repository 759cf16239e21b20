"""Where the files shipped with the repository live, for every package to import.

from core.paths import EXAMPLE_VOICE, SHIPPED_MODELS
"""

from pathlib import Path

# Trained models: one folder per system (codec/, tts/, asr/), each file's dims JSON beside it.
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"
# The example voice: LJ Speech clip LJ001-0011 (public domain, a test-split clip held out of
# all training) with its transcript beside it (ljspeech.txt); `vocalis say`'s default voice,
# `vocalis check`'s clip for the ASR row.
EXAMPLE_VOICE = SHIPPED_MODELS / "voices" / "ljspeech.wav"
