"""Completeness ("summation-to-delta", Ancona et al., ICLR 2018, Sec. 3, Eq. 3): Σ_i R_i = S_c(x) - S_c(x̄)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._problem import Target, build_problem


def completeness_gap(
    model: nn.Module,
    inputs: Tensor,
    attributions: Tensor,
    target: Target,
    baseline: Tensor | float = 0.0,
    *,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
) -> Tensor:
    """Per-sample Σ_i R_i - (S_c(x) - S_c(x̄)).

    Exact zero (up to rounding) for DeepLIFT, up to the Riemann error for Integrated Gradients; other methods
    are not complete in general.

    Args:
        model: the attributed model (evaluated without gradients, in the mode it is in).
        inputs: x, shape (B, ...).
        attributions: R, same shape.
        target: the attributed class of each sample: LongTensor(B), a sequence or an int (``None``: the
            argmax at x, or the output itself for a one-output model).
        baseline: x̄, a number or a tensor broadcastable to ``inputs``.
        forward_kwargs, output, position: as in :func:`gradattr.attribute`.

    Returns:
        Tensor(B) of gaps in the attributions' units.
    """
    problem = build_problem(
        model, inputs, target, baseline, forward_kwargs=forward_kwargs, output=output, position=position
    )
    rows = problem.all_rows
    reference = tuple(b.expand_as(x) for b, x in zip(problem.baselines, problem.inputs, strict=True))
    with torch.no_grad():
        delta = problem.scores(problem.inputs, rows) - problem.scores(reference, rows)
    return attributions.reshape(inputs.shape[0], -1).sum(1) - delta
