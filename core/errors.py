"""The one exception type users see: a message that names the problem, printed on one line."""


class VocalisError(Exception):
    """A problem with the user's input or files, reported without a traceback."""


class AudioError(VocalisError):
    """Audio that is missing, unreadable, empty, non-finite or too short."""


class CheckpointError(VocalisError):
    """A checkpoint that is missing, of another kind or version, or whose shapes do not match."""
