"""Where trained models are cached, and reading/writing their weights safely.

Checkpoints hold only a ``state_dict`` (tensors by parameter name), written with ``torch.save``
and read back with ``torch.load(weights_only=True)`` (:func:`gradattr.files.read_torch`), which refuses
pickled objects that would run code. Never a whole pickled model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gradattr.files import FileContentError, atomic_path, read_torch

CACHE_ENV = "GRADATTR_CACHE"


class CheckpointError(ValueError):
    """A checkpoint file is missing, not a weights-only state dict, or unsafe to load."""


class CacheWarning(UserWarning):
    """A cached model could not be loaded (damaged or foreign files) and is trained again."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's parameter names or shapes do not match the model it is loaded into."""


def cache_dir() -> Path:
    """The directory for cached models: ``$GRADATTR_CACHE`` if set, else
    ``$XDG_CACHE_HOME/gradattr``, else ``~/.cache/gradattr``. It is not created here."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gradattr"


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Write ``model.state_dict()`` to ``path`` (parent folders are created; the file is replaced
    atomically, so a crash never leaves half a checkpoint). Returns the path."""
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as partial:
        torch.save(state, partial)
    return Path(path)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (on CPU) and return ``model``.

    Raises:
        CheckpointError: The file is missing, or is not a plain state dict of tensors --
            including pickles that would execute code, which ``weights_only`` loading rejects.
        CheckpointMismatchError: The checkpoint belongs to another architecture; the message
            lists missing and unexpected parameter names and mismatched shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = read_torch(path)
    except FileContentError as error:
        raise CheckpointError(f"{path}: not a weights-only state dict: {error.reason}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a state dict mapping parameter names to tensors, got {type(state).__name__}"
        )
    check_compatible(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` has exactly ``model``'s parameter
    and buffer names with the same shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label} {items}"
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", shapes),
            )
            if items
        ]
        raise CheckpointMismatchError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
