"""Writing result files so that an interrupted run never leaves half a file behind.

Every file gradattr writes (reports, results, CSV tables, checkpoints, maps) goes through
:func:`atomic_path`: the content is written to a hidden temporary file in the same folder, which then
replaces the target in one ``rename`` (atomic on POSIX and Windows file systems). A reader sees the old
file or the new one, never a truncated one, also when the process is killed midway.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    Parent folders are created.

    Example:
        >>> with atomic_path("out/maps.npy") as partial:  # doctest: +SKIP
        ...     numpy.save(partial, maps)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as a CSV table atomically; the header is ``columns`` (default: every key, in order of
    first appearance). NaN is written as ``nan``."""
    header = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
