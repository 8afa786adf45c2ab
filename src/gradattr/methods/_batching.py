"""Internal batching shared by the methods that evaluate many perturbed or interpolated copies."""

from __future__ import annotations

import math

from torch import Tensor

ELEMENTS_PER_CHUNK = 2**17
"""Default budget: attributed-tensor elements per forward pass (512 KiB in float32). Larger batches of
convolutional activations fall out of the CPU caches and run slower per row, not faster."""


def copies_per_chunk(inputs: tuple[Tensor, ...], batch_size: int | None) -> int:
    """How many copies of the whole batch go into one forward pass.

    ``batch_size`` caps the rows of one forward pass (at least one copy of the batch); by default the rows
    are bounded by :data:`ELEMENTS_PER_CHUNK` elements of the attributed tensors.
    """
    batch = inputs[0].shape[0]
    if batch_size is None:
        elements_per_row = sum(math.prod(x.shape[1:]) for x in inputs)
        batch_size = max(1, ELEMENTS_PER_CHUNK // max(1, elements_per_row))
    elif not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return max(1, batch_size // batch)
