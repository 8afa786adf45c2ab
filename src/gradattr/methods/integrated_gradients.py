"""Integrated Gradients (Sundararajan et al. 2017; Ancona et al., ICLR 2018, Sec. 2.1, Eq. 4).

R_i = (x_i - x̄_i) · (1/m) Σ_{k=1..m} ∂S_c(x̃)/∂x̃_i at x̃ = x̄ + (k/m)(x - x̄): the right Riemann sum of the
path integral, as in the paper's reference code. Completeness Σ_i R_i = S_c(x) - S_c(x̄) holds up to the
Riemann error, which vanishes as m grows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._batching import copies_per_chunk
from gradattr.methods._problem import AttributionProblem, check_positive_int


def integrated_gradients(
    problem: AttributionProblem, *, steps: int = 100, batch_size: int | None = None
) -> tuple[Tensor, ...]:
    """Path-integrated gradients from the baseline to the input.

    Args:
        problem: validated inputs x (B, ...), baselines x̄ (1 or B, ...), target c.
        steps: number m >= 1 of Riemann steps.
        batch_size: most rows (interpolated copies) per forward pass; default from a memory budget.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 1)
        >>> r = gradattr.attribute(model, torch.ones(2, 3), method="integrated_gradients", steps=10)
        >>> torch.allclose(r, model.weight.detach().expand(2, 3))
        True
    """
    check_positive_int("steps", steps)
    problem.resolve_target()
    batch = problem.batch_size
    deltas = tuple(x - b for x, b in zip(problem.inputs, problem.baselines, strict=True))
    totals = [torch.zeros_like(x) for x in problem.inputs]
    per_chunk = copies_per_chunk(problem.inputs, batch_size)
    for first in range(1, steps + 1, per_chunk):
        stop = min(first + per_chunk, steps + 1)
        alphas = torch.arange(first, stop, dtype=deltas[0].dtype, device=deltas[0].device) / steps
        points = tuple(
            (b + alphas.to(d.dtype).view(-1, *[1] * d.dim()) * d).reshape(-1, *d.shape[1:])
            for b, d in zip(problem.baselines, deltas, strict=True)
        )
        index = problem.all_rows.repeat(alphas.numel())
        gradients = modified_gradient(problem, points, index)
        for total, g in zip(totals, gradients, strict=True):
            total += g.view(alphas.numel(), batch, *g.shape[1:]).sum(0)
    return tuple(d * total / steps for d, total in zip(deltas, totals, strict=True))
