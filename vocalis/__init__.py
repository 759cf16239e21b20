"""vocalis: an offline speech toolkit. This package holds the command line only."""

__version__ = "0.1.0"
