"""The error raised when a data set on disk is missing or not in the expected format."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file or directory is missing, truncated or not in the format its loader reads.

    The message names the offending path and what was expected there, so a user can tell a
    wrong directory from a corrupted download.
    """
