"""vocalis demos (filled in by later issues)."""
