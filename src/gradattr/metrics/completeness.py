"""Completeness ("summation-to-delta", Ancona et al., ICLR 2018, Sec. 3, Eq. 3): Σ_i R_i = S_c(x) - S_c(x̄)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def completeness_gap(
    model: nn.Module, inputs: Tensor, attributions: Tensor, target: Tensor, baseline: Tensor | float = 0.0
) -> Tensor:
    """Per-sample Σ_i R_i - (S_c(x) - S_c(x̄)).

    Exact zero (up to rounding) for DeepLIFT, up to the Riemann error for Integrated Gradients; other methods
    are not complete in general.

    Args:
        model: the attributed model (evaluated without gradients).
        inputs: x, shape (B, ...).
        attributions: R, same shape.
        target: LongTensor(B), the attributed class of each sample.
        baseline: x̄, a number or a tensor broadcastable to ``inputs``.

    Returns:
        Tensor(B) of gaps in the attributions' units.
    """
    reference = torch.broadcast_to(torch.as_tensor(baseline, dtype=inputs.dtype), inputs.shape)
    rows = torch.arange(inputs.shape[0])
    with torch.no_grad():
        delta = model(inputs)[rows, target] - model(reference)[rows, target]
    return attributions.reshape(inputs.shape[0], -1).sum(1) - delta
