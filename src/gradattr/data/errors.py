"""The error raised when a data set on disk is missing or not in the expected format, and decoding text
files with an error that names them."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file or directory is missing, truncated or not in the format its loader reads.

    The message names the offending path and what was expected there, so a user can tell a
    wrong directory from a corrupted download.
    """


def decode_utf8(raw: bytes, source: str) -> str:
    """``raw`` decoded as UTF-8.

    Raises:
        DataFormatError: it is not UTF-8 text; the message names ``source`` (a path) and the byte offset.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{source}: not UTF-8 text (byte {error.start}: {error.reason})") from None
