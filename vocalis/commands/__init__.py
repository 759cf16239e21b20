"""Command groups of the `vocalis` command line; each module exposes `register(subparsers)`."""
