"""Seeded perturbation draws and their chunking, shared by the sampled metrics (stability and infidelity).

A sampled metric draws K perturbations of the whole batch, k = 0..K-1 in order, each of shape (B, ...), from
one ``torch.Generator`` on the inputs' device seeded with ``seed``. The draws do not depend on how the K
copies are cut into passes (``batch_size``), so the same seed gives the same result at any chunk size.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from gradattr.methods._batching import copies_per_chunk

Draw = Callable[[Tensor, torch.Generator], Tensor]
"""One perturbation of the batch: ``draw(inputs (B, ...), generator) -> Tensor (B, ...)``."""


def single_input(inputs: Any) -> Tensor:
    """The inputs as one batch-first tensor (B, ...) with at least one feature; a clear error otherwise."""
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be one tensor (B, ...), got {type(inputs).__name__}; for a multi-input model, wrap it so "
            "that the measured input is its only argument"
        )
    if inputs.dim() < 2 or inputs.shape[1:].numel() == 0:
        raise ValueError(
            f"inputs must be batch-first with at least one feature, shape (B, ...), got {tuple(inputs.shape)}"
        )
    return inputs.detach()


def count(name: str, value: Any, minimum: int = 1) -> int:
    """An int >= ``minimum`` (bools rejected)."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if isinstance(value, bool) or number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def positive(name: str, value: Any) -> float:
    """A finite real number > 0 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def generator(seed: Any, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (an int >= 0)."""
    return torch.Generator(device=device).manual_seed(count("seed", seed, 0))


def chunks(inputs: Tensor, samples: int, batch_size: int | None) -> Iterator[int]:
    """Sizes of the consecutive groups of the K perturbed copies of the batch evaluated in one pass.

    ``batch_size`` caps the rows of one pass (at least one copy of the batch); by default the rows are bounded
    by the methods' element budget (:data:`gradattr.methods._batching.ELEMENTS_PER_CHUNK`).
    """
    per_pass = copies_per_chunk((inputs,), batch_size)
    for first in range(0, samples, per_pass):
        yield min(per_pass, samples - first)


def draw_batch(draw: Draw, inputs: Tensor, copies: int, rng: torch.Generator) -> Tensor:
    """``copies`` consecutive draws stacked: Tensor(copies, B, ...)."""
    return torch.stack([draw(inputs, rng) for _ in range(copies)])


def checked(draw: Draw) -> Draw:
    """A user's draw whose every result is checked: a finite tensor of the inputs' shape (moved to their dtype
    and device)."""

    def checked_draw(inputs: Tensor, rng: torch.Generator) -> Tensor:
        value = draw(inputs, rng)
        if not isinstance(value, Tensor) or value.shape != inputs.shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"the perturbation returned {shape}; expected a tensor of the inputs' shape {tuple(inputs.shape)}"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError("the perturbation returned NaN or infinite values")
        return value.to(device=inputs.device, dtype=inputs.dtype)

    return checked_draw


def flat_attributions(name: str, attributions: Tensor, inputs: Tensor) -> Tensor:
    """R as float64 (B, N), checked against the inputs."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(attributions).__name__}")
    if attributions.shape != inputs.shape:
        raise ValueError(
            f"{name} have shape {tuple(attributions.shape)}; expected the shape of the inputs, {tuple(inputs.shape)}"
        )
    if not attributions.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {attributions.dtype}")
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return attributions.detach().to(inputs.device, torch.float64).reshape(inputs.shape[0], -1)
