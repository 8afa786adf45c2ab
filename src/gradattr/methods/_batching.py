"""Internal batching shared by the methods that evaluate many perturbed or interpolated copies."""

from __future__ import annotations

import math

from torch import Tensor

ELEMENTS_PER_CHUNK = 2**17
"""Default budget: attributed-tensor elements per forward pass (512 KiB in float32). Larger batches of
convolutional activations fall out of the CPU caches and run slower per row, not faster."""


GRADIENT_ROWS_PER_PASS = 4
"""Fewest rows a pass of the gradient methods (integrated gradients, SmoothGrad, GradientSHAP, DeepLiftSHAP)
is given when the element budget would allow fewer, as it does for large inputs (a 224x224 image or a
160-token embedding: 1 row). Their passes go through :func:`gradattr.engine.modified_gradient`, whose memory
budget splits a pass that does not fit. Measured on a quiet machine (2 threads, integrated gradients with 16
steps, seconds for 1 / 2 / 4 / 8 / 16 copies of the batch per pass): ResNet-18, batch 2: 2.0-2.3 / 1.7-2.1 /
1.8 / 1.7-3.2 / 2.1-3.0; MobileNetV3-S, batch 2: 0.8-1.05 / 0.62 / 0.47-0.58 / - / 0.39-0.61; a 12-layer GPT-2
(width 768) on 160 tokens, batch 1: 7.5-8.3 / 6.4 / 6.3-6.8 / 7.0-7.9 / 11-15. More rows stop paying once a
pass's activations leave the CPU caches (32 GPT-2 rows of 160 tokens: 63 MB per MLP activation)."""


def copies_per_chunk(inputs: tuple[Tensor, ...], batch_size: int | None, min_rows: int = 1) -> int:
    """How many copies of the whole batch go into one forward pass.

    ``batch_size`` caps the rows of one forward pass (at least one copy of the batch); by default the rows
    are bounded by :data:`ELEMENTS_PER_CHUNK` elements of the attributed tensors, but are at least
    ``min_rows`` (:data:`GRADIENT_ROWS_PER_PASS` for the gradient methods).
    """
    batch = inputs[0].shape[0]
    if batch_size is None:
        elements_per_row = sum(math.prod(x.shape[1:]) for x in inputs)
        batch_size = max(1, ELEMENTS_PER_CHUNK // max(1, elements_per_row), min_rows)
    elif not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return max(1, batch_size // batch)
