"""Finished work of long runs, kept on disk so that an interrupted run resumes where it stopped.

An *entry* is one ``torch.save`` file of plain values -- tensors, numbers, strings, and lists, tuples and dicts
of them -- tagged with a format marker, the gradattr and torch versions, and a *key*: a hash (:func:`fingerprint`)
of everything that determines the entry's content (settings, model weights, data). Entries are written
atomically (:func:`gradattr.files.atomic_path`), so a killed run leaves the previous entry or the new one, and
read back with ``torch.load(weights_only=True)`` (:func:`gradattr.files.read_torch`), which never runs code.
An entry whose key or versions differ is stale: its work is done again. An entry that cannot be used
(truncated, corrupt, not an entry, content of the wrong shape, pickled objects) is done again too, with a
:class:`ProgressWarning`; loading never raises.

:func:`gradattr.experiments.reproduce` keeps one entry per finished model study in a :class:`ProgressStore`
(``OUT/.progress`` for ``gradattr reproduce``); :func:`gradattr.evaluate` keeps the batches evaluated so far
in its ``checkpoint=`` entry.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from gradattr.files import FileContentError, atomic_path, one_line, read_torch

FORMAT = "gradattr-progress/1"
"""The format marker of an entry file."""
SUFFIX = ".pt"
T = TypeVar("T")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ProgressWarning(UserWarning):
    """A progress entry could not be used (truncated, corrupt or foreign); its work is done again."""


def fingerprint(config: Any, tensors: Iterable[Tensor] = ()) -> str:
    """16 hex digits of a SHA-256 over ``config`` and the contents of ``tensors``.

    ``config`` is hashed as JSON with sorted keys; tensors inside it (a ``state_dict``, the data) count by
    dtype, shape and every byte, other objects JSON cannot hold by their ``repr``. The bytes of ``tensors``
    follow in order (their shapes are not hashed: give those in ``config``).
    """
    found: list[Tensor] = []
    digest = hashlib.sha256(json.dumps(_canonical(config, found), sort_keys=True, default=repr).encode())
    for tensor in (*found, *tensors):
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _canonical(value: Any, tensors: list[Tensor]) -> Any:
    """``value`` as JSON-ready data: mappings with string keys in sorted order, sequences as lists, each tensor
    as its dtype and shape (its contents appended to ``tensors``)."""
    if isinstance(value, Tensor):
        tensors.append(value)
        return {"tensor": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda item: item[0])
        return {k: _canonical(v, tensors) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, tensors) for v in value]
    return value


def versions() -> dict[str, str]:
    """The versions an entry was computed with: results of another gradattr or torch are not reused."""
    from gradattr import __version__

    return {"gradattr": str(__version__), "torch": str(torch.__version__)}


def as_tensor(value: Any, what: str) -> Tensor:
    """``value`` if it is a tensor (decoding a payload), else ``ValueError`` naming ``what``."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{what}: expected a tensor, got {type(value).__name__}")
    return value


def as_floats(values: Mapping[str, Any]) -> dict[str, float]:
    """``values`` with string keys and float values (decoding a payload); raises on non-numbers."""
    return {str(k): float(v) for k, v in values.items()}


def save_entry(path: str | Path, key: str, payload: Any) -> Path:
    """Write ``payload`` as the entry for ``key`` at ``path``, atomically; return the path.

    Tensors that view a larger storage (a slice of a data set) are saved as compact copies.

    Raises:
        TypeError: ``payload`` holds something other than tensors, ``str``, ``int``, ``float``, ``bool``,
            ``None``, and lists, tuples and dicts of them (weights-only loading would refuse it).
    """
    entry = {"format": FORMAT, "versions": versions(), "key": key, "payload": _plain(payload, "payload")}
    with atomic_path(path) as partial:
        torch.save(entry, partial)
    return Path(path)


def _plain(value: Any, where: str) -> Any:
    """``value`` checked to hold only plain values, with every tensor that views a larger storage copied."""
    if isinstance(value, Tensor):
        compact = value.untyped_storage().nbytes() == value.numel() * value.element_size()
        return value.detach() if compact else value.detach().clone()
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {_plain(k, f"a key of {where}"): _plain(item, f"{where}[{k!r}]") for k, item in value.items()}
    if value is None or type(value) in (str, int, float, bool):
        return value
    raise TypeError(f"{where} is a {type(value).__qualname__}; a progress entry holds only plain values")


def load_entry(path: str | Path, key: str, decode: Callable[[Any], T]) -> T | None:
    """``decode(payload)`` of the entry at ``path`` if it was saved for ``key`` with these versions, else None.

    A missing or stale entry gives None silently; one that cannot be read or decoded gives None with a
    :class:`ProgressWarning` naming the file. Nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        entry = read_torch(path)
    except FileContentError as error:
        return _unusable(path, error.reason)
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return _unusable(path, f"not a gradattr progress entry ({FORMAT})")
    if entry.get("key") != key or entry.get("versions") != versions():
        return None
    try:
        return decode(entry.get("payload"))
    except Exception as error:  # the payload has the wrong shape: a damaged or hand-made entry
        return _unusable(path, f"its content does not fit ({one_line(error)})")


def _unusable(path: Path, reason: str) -> None:
    warnings.warn(f"ignoring progress entry {path}: {reason}; computing it again", ProgressWarning, stacklevel=3)
    return None


class ProgressStore:
    """A folder of named progress entries (``<name>.pt``), e.g. ``OUT/.progress``.

    Example:
        >>> store = ProgressStore(out / ".progress")  # doctest: +SKIP
        >>> result = store.load("digits-cnn", key, decode)
        >>> if result is None:
        ...     result = compute()
        ...     store.save("digits-cnn", key, encode(result))
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        """The file of entry ``name`` (letters, digits, ``_.-``)."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"progress entry name {name!r}: use letters, digits, '_', '.' and '-'")
        return self.directory / f"{name}{SUFFIX}"

    def load(self, name: str, key: str, decode: Callable[[Any], T]) -> T | None:
        """See :func:`load_entry`."""
        return load_entry(self.path(name), key, decode)

    def save(self, name: str, key: str, payload: Any) -> Path:
        """See :func:`save_entry`."""
        return save_entry(self.path(name), key, payload)

    def load_or_run(
        self, name: str, key: str, run: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T]
    ) -> tuple[T, bool]:
        """Entry ``name``'s result if it was saved for ``key``, else ``run()``'s, saved as the entry (with
        ``encode``) before it is returned; and whether it was loaded."""
        saved = self.load(name, key, decode)
        if saved is not None:
            return saved, True
        result = run()
        self.save(name, key, encode(result))
        return result, False

    def remove(self, name: str) -> None:
        """Delete entry ``name`` if it exists."""
        self.path(name).unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete every entry, and temporary files of killed writes, then the folder if it is left empty."""
        if not self.directory.is_dir():
            return
        for path in [*self.directory.glob(f"*{SUFFIX}"), *self.directory.glob(".*.partial")]:
            path.unlink(missing_ok=True)
        if not any(self.directory.iterdir()):
            self.directory.rmdir()
