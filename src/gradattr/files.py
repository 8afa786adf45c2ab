"""Writing result files so that an interrupted run never leaves half a file behind, and reading array files
without ever running code from them.

Every file gradattr writes (reports, results, CSV tables, checkpoints, maps, progress entries) goes through
:func:`atomic_path`: the content is written to a hidden temporary file in the same folder, which then
replaces the target in one ``rename`` (atomic on POSIX and Windows file systems). A reader sees the old
file or the new one, never a truncated one, also when the process is killed midway.

Every ``.pt``/``.npy``/``.npz`` file gradattr reads goes through :func:`read_torch`, :func:`read_npy` or
:func:`read_npz`: ``torch.load(weights_only=True)`` and ``numpy.load(allow_pickle=False)``, which refuse
pickled objects (unpickling can run arbitrary code). A file that is truncated, corrupt or holds such objects
raises :class:`FileContentError` naming the file.
"""

from __future__ import annotations

import csv
import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

_REFUSED = "WeightsUnpickler error:"
"""What precedes the reason in ``torch.load``'s message when ``weights_only`` refuses a pickled object."""


class FileContentError(ValueError):
    """A file is missing, truncated, corrupt, or holds objects whose loading would run code.

    Attributes:
        path: the file.
        reason: what is wrong with it, one line (the message is ``"{path}: {reason}"``).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters (for one-line error reports)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 200 else text[:197] + "..."


def read_torch(path: str | Path) -> Any:
    """The content of a ``torch.save`` file, loaded on the CPU with ``weights_only=True``: tensors, numbers,
    strings, and lists, tuples and dicts of them. Pickled objects of any other type are refused unexecuted.

    Raises:
        FileContentError: the file is missing, truncated or corrupt, or holds other pickled objects.
    """
    path = _existing(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = [line.split(_REFUSED, 1)[1].split(". ")[0] for line in str(error).splitlines() if _REFUSED in line]
        if not refused:
            raise FileContentError(path, f"not a complete torch file ({one_line(error)})") from error
        raise FileContentError(
            path, f"holds pickled objects, which could run code: refused without running them ({refused[0].strip()})"
        ) from error
    except Exception as error:  # a damaged archive fails in many ways: RuntimeError, EOFError, KeyError, ...
        raise FileContentError(path, f"not a complete torch file ({one_line(error)})") from error


def read_npy(path: str | Path) -> np.ndarray:
    """The array of a ``.npy`` file, read with ``allow_pickle=False`` (object arrays are refused unexecuted).

    Raises:
        FileContentError: the file is missing, truncated or corrupt, not a ``.npy`` array, or an object array.
    """
    path = _existing(path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # ValueError (pickled objects, bad header, short data), OSError, EOFError
        raise FileContentError(path, f"not a readable .npy array ({one_line(error)})") from error
    if not isinstance(array, np.ndarray):
        array.close()
        raise FileContentError(path, "not a .npy array but a .npz archive of several arrays")
    return array


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` archive by name, read with ``allow_pickle=False`` (object arrays are refused
    unexecuted).

    Raises:
        FileContentError: the file is missing, truncated or corrupt, not a ``.npz`` archive, or holds an
            object array.
    """
    path = _existing(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, EOFError
        raise FileContentError(path, f"not a readable .npz archive ({one_line(error)})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise FileContentError(path, "not a .npz archive but a single .npy array")
    with loaded:
        try:
            return {name: loaded[name] for name in loaded.files}
        except Exception as error:  # an object array, or a damaged member (BadZipFile, zlib.error, ValueError)
            raise FileContentError(path, f"not a readable .npz archive ({one_line(error)})") from error


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileContentError(path, "file not found")
    return path
