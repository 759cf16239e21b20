"""vocalis asr (filled in by later issues)."""
