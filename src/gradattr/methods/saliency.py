"""Saliency maps (Simonyan et al. 2014; Ancona et al., ICLR 2018, Sec. 2.1): R_i = |∂S_c(x) / ∂x_i|."""

from __future__ import annotations

from torch import Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._problem import AttributionProblem


def saliency(problem: AttributionProblem, *, abs: bool = True) -> tuple[Tensor, ...]:
    """Absolute gradient of the target logit w.r.t. each input feature.

    Args:
        problem: validated inputs x (B, ...), target c.
        abs: return |∂S_c/∂x| (the paper's definition); ``False`` gives the signed gradient.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 2)
        >>> gradattr.attribute(model, torch.ones(1, 3), method="saliency", target=0).shape
        torch.Size([1, 3])
    """
    gradients = modified_gradient(problem, problem.inputs, problem.all_rows)
    return tuple(g.abs() for g in gradients) if abs else gradients
