"""The user's own model and files, for ``gradattr explain`` and ``gradattr evaluate``.

A model is named ``MODULE:FACTORY`` (an importable module, or a ``.py`` file, and a callable in it that
returns the ``nn.Module``); weights are a state dict read with ``torch.load(weights_only=True)``. Inputs are
``.npy``/``.pt`` arrays (used as they are: scale them as the model was trained) or PNG/JPEG images (scaled to
[-1, 1] as in the paper: grey images get one channel, colour images three). Labelled data is a ``.npz`` with
arrays ``x`` and ``y``, or a directory with ``x.npy`` and ``y.npy``. Array files are read without running code
(:mod:`gradattr.files`: ``weights_only`` torch files, numpy files without pickles).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.cache import load_checkpoint
from gradattr.files import one_line, read_npy, read_npz, read_torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".pt")


class UserInputError(ValueError):
    """A model spec, weights file or input file that cannot be used, with what was expected."""


def load_model(spec: str, weights: Path | None = None) -> nn.Module:
    """Build the model ``MODULE:FACTORY`` (``FACTORY()``), load ``weights`` into it, and put it in eval mode."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise UserInputError(f"--model must be MODULE:FACTORY (e.g. mypackage.models:build), got {spec!r}")
    module = _import(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserInputError(f"{module_name} has no callable {factory_name!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise UserInputError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_checkpoint(model, weights)
    return model.eval()


def _import(name: str) -> object:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise UserInputError(f"model file not found: {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise UserInputError(f"cannot import {name}: {error}") from error


def load_array(path: Path) -> Tensor:
    """An array file (``.npy`` without pickles, or a ``.pt`` tensor) as a tensor; floats become float32.

    Raises:
        UserInputError: the file is missing, or a ``.pt`` file holds something other than one tensor.
        FileContentError: the file is truncated or corrupt, or holds pickled objects (never executed).
    """
    if not path.is_file():
        raise UserInputError(f"input not found: {path}")
    if path.suffix == ".npy":
        tensor = _numeric(path, read_npy(path))
    else:
        loaded = read_torch(path)
        if not isinstance(loaded, Tensor):
            raise UserInputError(f"{path}: expected a tensor, got {type(loaded).__name__}")
        tensor = loaded
    return tensor.float() if tensor.is_floating_point() else tensor.long()


def _numeric(path: Path, array: np.ndarray, name: str = "") -> Tensor:
    """``array`` as a tensor, if it holds numbers or booleans (not strings or bytes)."""
    if array.dtype.kind not in "biuf":
        what = f"array {name!r}" if name else "array"
        raise UserInputError(f"{path}: {what} holds {array.dtype} values; expected numbers")
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))


def load_image(path: Path) -> Tensor:
    """A PNG/JPEG image as float32 (C, H, W) scaled to [-1, 1]: C = 1 for grey, 3 for colour (alpha dropped).

    Raises:
        UserInputError: the file is missing, truncated or not an image PIL can read.
    """
    from PIL import Image

    if not path.is_file():
        raise UserInputError(f"input not found: {path}")
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("L", "LA", "1", "I", "I;16") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated data
        raise UserInputError(f"{path}: not a complete image ({one_line(error)})") from error
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array * 2.0 - 1.0))


def load_inputs(paths: Sequence[Path], batched: bool = False) -> Tensor:
    """The inputs of ``paths`` as one batch: each file one sample, or with ``batched`` each array a batch."""
    samples = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            samples.append(load_image(path)[None])
        elif suffix in ARRAY_SUFFIXES:
            array = load_array(path)
            samples.append(array if batched else array[None])
        else:
            kinds = ", ".join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)
            raise UserInputError(
                f"{path}: unsupported input type {suffix or '(none)'}; use {kinds} (text: save token ids as .npy "
                "and pass --layer embedding)"
            )
    shapes = {tuple(s.shape[1:]) for s in samples}
    if len(shapes) > 1:
        raise UserInputError(f"inputs have different shapes {sorted(shapes)}; give inputs of one shape")
    return torch.cat(samples)


def load_masks(path: Path, samples: int) -> Tensor | None:
    """Ground-truth masks beside the data of :func:`load_labelled`: the array ``masks`` of the ``.npz`` (or
    ``masks.npy`` in the directory), one mask of 0/1 per sample; None when there is none.

    Raises:
        UserInputError: the masks are not one per sample, or not 0/1.
        FileContentError: the file is truncated or corrupt, or holds pickled objects (never executed).
    """
    if path.is_dir():
        masks = load_array(path / "masks.npy") if (path / "masks.npy").is_file() else None
    else:
        arrays = read_npz(path)
        masks = _numeric(path, arrays["masks"], "masks") if "masks" in arrays else None
    if masks is None:
        return None
    if masks.dim() < 2 or masks.shape[0] != samples or not bool(((masks == 0) | (masks == 1)).all()):
        raise UserInputError(
            f"masks must hold one 0/1 mask per sample ({samples}); got {masks.dtype} {tuple(masks.shape)}"
        )
    return masks.bool()


def load_labelled(path: Path) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a ``.npz`` holding arrays ``x`` and ``y``, or a directory with ``x.npy`` and ``y.npy``.

    Raises:
        UserInputError: the path is neither, an array is missing, or ``y`` is not one label per sample.
        FileContentError: a file is truncated or corrupt, or holds pickled objects (never executed).
    """
    if path.is_dir():
        x, y = load_array(path / "x.npy"), load_array(path / "y.npy")
    elif path.suffix == ".npz" and path.is_file():
        arrays = read_npz(path)
        missing = [k for k in ("x", "y") if k not in arrays]
        if missing:
            raise UserInputError(f"{path} has no array(s) {', '.join(missing)}; it holds {', '.join(arrays)}")
        x, y = _numeric(path, arrays["x"], "x"), _numeric(path, arrays["y"], "y")
        x = x.float() if x.is_floating_point() else x.long()
    else:
        raise UserInputError(f"--data must be a .npz file with x and y, or a directory with x.npy and y.npy: {path}")
    if y.is_floating_point() or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise UserInputError(f"y must hold one integer label per sample of x; got {y.dtype} {tuple(y.shape)}")
    return x, y.long()
