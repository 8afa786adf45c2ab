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
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
        FileContentError: the file is missing, not a torch file at all (neither the zip archive ``torch.save``
            writes nor a pickle), truncated or corrupt, or holds pickled objects of other types (the reason
            names the first such global, e.g. ``builtins.open``).
    """
    path = _existing(path)
    kind = _torch_kind(path)
    if kind is None:
        head = path.read_bytes()[:4]  # torch.save writes a zip archive (legacy: a pickle); this is neither
        raise FileContentError(path, f"not a zip/torch file: it starts with {head.hex(' ')}" if head else "empty")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal says what matters
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(path, kind, str(error))
        if refused is None:
            raise FileContentError(path, f"not a complete torch file ({one_line(error)})") from error
        raise FileContentError(
            path, f"holds pickled objects, which could run code: refused without running them (global {refused})"
        ) from error
    except Exception as error:  # a damaged archive fails in many ways: RuntimeError, EOFError, KeyError, ...
        raise FileContentError(path, f"not a complete torch file ({one_line(error)})") from error


_GLOBAL_MESSAGE = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)")
"""``torch.load``'s words before the name of a global it refused."""


def _torch_kind(path: Path) -> str | None:
    """``"zip"`` (torch.save's format, possibly truncated), ``"pickle"`` (the legacy format or a plain pickle),
    or ``None`` when the first bytes are neither."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    return None


def _refused_global(path: Path, kind: str, message: str) -> str | None:
    """The global (``module.name``) that made ``weights_only`` refuse the file: from torch's message, else
    from reading the pickle's opcodes (never executing them) for the first global torch does not allow."""
    named = _GLOBAL_MESSAGE.search(message)
    if named:
        return named.group(1)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
        else:
            data = path.read_bytes()
        found = _globals(data)
    except Exception:  # not a readable pickle: a damaged file, said as such
        return None
    allowed = set(_allowed_globals())
    return next((name for name in found if name not in allowed), None)


def _globals(data: bytes) -> list[str]:
    """The globals a pickle would import, in order, read from its opcodes without running them (the strings
    pushed before a ``STACK_GLOBAL``, also through the memo)."""
    names, strings, memo, last = [], [], {}, None
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.append(str(argument).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        if isinstance(argument, str) and "UNICODE" in opcode.name:
            last = argument
            strings.append(argument)
        elif opcode.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(argument)
            if isinstance(last, str):
                strings.append(last)
        elif opcode.name == "MEMOIZE":
            memo[len(memo)] = last
        elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[argument] = last
        else:
            last = None
    return names


def _allowed_globals() -> list[str]:
    """The globals ``torch.load(weights_only=True)`` accepts (tensor rebuilding, OrderedDict, dtypes, ...)."""
    try:
        from torch import _weights_only_unpickler

        return list(_weights_only_unpickler._get_allowed_globals()) + [
            f"{getattr(g, '__module__', '')}.{getattr(g, '__name__', '')}"
            for g in torch.serialization.get_safe_globals()
        ]
    except Exception:  # a torch without these helpers: name every global
        return []


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
