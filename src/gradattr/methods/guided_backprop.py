"""Guided Backpropagation and Deconvnet: the gradient with a modified ReLU backward.

Both are the engine's one backward pass (Ancona et al., ICLR 2018, Sec. 3) with a rule at every ReLU call
(Nielsen et al., IEEE SPM 2022, Sec. "Gradient-based methods"):

* Guided Backprop (Springenberg et al. 2015): R = ∂̃S_c/∂x with ReLU backward ``1[z > 0] · max(g, 0)``;
* Deconvnet (Zeiler & Fergus 2014): R = ∂̃S_c/∂x with ReLU backward ``max(g, 0)``.

Because the rule is attached to the op call, ``F.relu``, ``torch.relu``, ``x.relu_()`` and a reused
``nn.ReLU`` all get it (module-hook implementations give the plain gradient at functional ReLUs).
"""

from __future__ import annotations

from torch import Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._problem import AttributionProblem
from gradattr.rulesets import DECONVNET, GUIDED, RuleSet


def _rectifier_gradient(problem: AttributionProblem, rules: RuleSet) -> tuple[Tensor, ...]:
    return modified_gradient(problem, problem.inputs, problem.all_rows, rules)


def guided_backprop(problem: AttributionProblem) -> tuple[Tensor, ...]:
    """Guided Backpropagation map: the gradient of S_c with only positive signals passed back through ReLUs.

    Args:
        problem: validated inputs x (B, ...), target c.

    Returns:
        One tensor per input, shape of the input (a signed gradient-like map, not multiplied by x).

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        >>> gradattr.attribute(model, torch.ones(4, 2), method="guided_backprop").shape
        torch.Size([4, 2])
    """
    return _rectifier_gradient(problem, GUIDED)


def deconvnet(problem: AttributionProblem) -> tuple[Tensor, ...]:
    """Deconvnet map: the gradient of S_c with ReLU backward ``max(grad, 0)`` regardless of the forward sign.

    Args:
        problem: validated inputs x (B, ...), target c.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        >>> gradattr.attribute(model, torch.ones(4, 2), method="deconvnet").shape
        torch.Size([4, 2])
    """
    return _rectifier_gradient(problem, DECONVNET)
