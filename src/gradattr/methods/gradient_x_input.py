"""Gradient * Input (Shrikumar et al. 2016; Ancona et al., ICLR 2018, Sec. 2.1): R_i = x_i · ∂S_c(x)/∂x_i."""

from __future__ import annotations

from torch import Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._problem import AttributionProblem


def gradient_x_input(problem: AttributionProblem) -> tuple[Tensor, ...]:
    """Elementwise product of each input with the gradient of the target logit.

    Args:
        problem: validated inputs x (B, ...), target c.

    Returns:
        One tensor per input, shape of the input: x · ∂S_c/∂x.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 1, bias=False)
        >>> r = gradattr.attribute(model, torch.ones(1, 3), method="gradient_x_input")
        >>> torch.allclose(r, model.weight.detach())
        True
    """
    gradients = modified_gradient(problem, problem.inputs, problem.all_rows)
    return tuple(x * g for x, g in zip(problem.inputs, gradients, strict=True))
