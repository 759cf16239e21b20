"""vocalis tts (filled in by later issues)."""
