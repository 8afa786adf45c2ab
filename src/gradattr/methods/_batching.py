"""Internal batching shared by the methods that evaluate many perturbed or interpolated copies."""

from __future__ import annotations

import math

from torch import Tensor

from gradattr.engine.backward import row_bytes
from gradattr.methods._problem import AttributionProblem

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


PASS_BYTES = 2**30
"""The memory a pass of many copies (gradient or forward-only) is sized to when the element budget gives few rows:
rows = ``PASS_BYTES`` / the measured memory of one row (:func:`gradattr.engine.backward.row_bytes`). Measured on
a quiet machine (2 threads, integrated gradients with 16 steps; the memory per row in parentheses; seconds for
8 / 16 / 32 / 64 rows per pass, Captum's one pass of all rows last): MobileNetV3-S (36 MB), batch 8: 1.38 / 1.15
/ 1.07 / 1.40, Captum 1.6; batch 2 (rows 4 / 8 / 16 / 32): 0.39 / 0.32 / 0.27 / 0.26, Captum 0.28; ShuffleNetV2
x0.5 (27 MB), batch 2: 0.33 / 0.27 / 0.24 / 0.31, Captum 0.29; EfficientNet-B0 (176 MB), batch 8 (8 / 16 / 32):
6.0 / 5.6 / 7.9, Captum 29.3; ResNet-50 (261 MB), batch 8 (8 / 16): 13.6 / 14.0, Captum 43.8. Small models
gain from larger passes, large ones do not (their activations leave the caches)."""


CACHED_PASS_BYTES = 2**24
"""The measured memory a forward-only pass over small inputs is sized to (when the element budget gives
fewer rows): passes of small rows run fastest while their activations stay in the CPU caches. Measured on a
quiet machine (1 thread, Occlusion-1 on a batch of 64, milliseconds for 128 / 512 / 1,024 / 4,096 rows per
pass, Captum's 1,024 last): the 784-512-512-10 MLP (23 KB per row; 738 rows) 602 / 473 / 461 / 531, Captum
563; the 1x28x28 CNN (159 KB; the element budget's 128 rows) 1,577 / 2,403 / 1,643 / 3,925, Captum 2,936."""


def copies_per_pass(problem: AttributionProblem, batch_size: int | None, min_rows: int = 1) -> int:
    """Copies of the batch per pass of a method that evaluates many copies: ``batch_size`` rows when given;
    else the element budget's rows (at least ``min_rows``: :data:`GRADIENT_ROWS_PER_PASS` for the gradient
    methods, 1 for the forward-only perturbation methods), and where that gives large inputs at most
    :data:`GRADIENT_ROWS_PER_PASS` rows, as many as :data:`PASS_BYTES` of measured memory allow. Forward-only
    passes over small inputs get at least as many rows as :data:`CACHED_PASS_BYTES` of measured memory allow.

    Forward-only passes (occlusion, Shapley sampling) use the same measured row (what autograd would save,
    doubled): their time per row follows it alike. Measured on a quiet machine (2 threads, occlusion with 56x56
    patches on a batch of 2 at 224x224, milliseconds for 2 / 4 / 8 / 16 / 32 rows per pass; the rows
    ``PASS_BYTES`` gives in parentheses): MobileNetV3-S 200 / 167 / 150 / 129 / 120 (19); ShuffleNetV2 311 / 235
    / 194 / 205 / 228 (16); ResNet-18 635 / 558 / 613 / 653 / 655 (6); MobileNetV2 369 / 378 / 422 / 900 / 1549
    (5); EfficientNet-B0 544 / 456 / 441 / 772 / 816 (4); ResNet-50 1397 / 1472 / 1473 / 2104 / 1894 (2);
    DenseNet-121 1413 / 1226 / 1351 / 1449 / 1820 (2)."""
    copies = copies_per_chunk(problem.inputs, batch_size, min_rows)
    elements = sum(math.prod(x.shape[1:]) for x in problem.inputs)
    small = ELEMENTS_PER_CHUNK // max(1, elements) > GRADIENT_ROWS_PER_PASS
    if batch_size is not None or (small and min_rows > 1):
        return copies  # gradient methods on small inputs: the element budget (larger passes: 0.61x Captum)
    per_row = row_bytes(problem, problem.inputs, problem.all_rows)
    if per_row is None:
        return copies
    return max(copies, (CACHED_PASS_BYTES if small else PASS_BYTES) // (per_row * problem.batch_size))


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
