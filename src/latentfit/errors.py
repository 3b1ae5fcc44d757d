"""Errors that the CLI turns into one-line messages and a non-zero exit code."""


class LatentfitError(Exception):
    """A problem the user can fix: bad input, missing model, corrupt file.

    The message is a single line that names the problem and, where there is one, the file.
    """


class BitstreamError(LatentfitError):
    """A `.lfc` file is truncated, corrupted, or made for another format or model."""


class ModelNotAvailableError(LatentfitError):
    """The requested model or its weights cannot be found locally."""
