"""DeepLIFT (Rescale) as a modified gradient (Shrikumar et al. 2017; Ancona et al., ICLR 2018, Eq. 9).

R_i = (x_i - x̄_i) · g_i, where g is the gradient of S_c(x) with the derivative of every elementwise
nonlinearity replaced by the multiplier (f(z) - f(z̄)) / (z - z̄), z̄ being that op call's input when the
network runs on the baseline x̄ (f'((z + z̄)/2) where |z - z̄| <= 1e-5). Products of two input-dependent
tensors (attention, gates, SwiGLU, squeeze-excitation) get the Shapley split, softmax and normalisations
their exact decomposition (:mod:`gradattr.rulesets`, "deeplift"), so completeness holds exactly on
transformers too: Σ_i R_i = S_c(x) - S_c(x̄). Max pooling routes the gradient to the maximum as in the
paper's code (``max_pooling="route"``); ``max_pooling="exact"`` evaluates each max as a tree of
``a + relu(b - a)``, which keeps completeness exact through max pooling as well.
"""

from __future__ import annotations

from torch import Tensor

from gradattr import rulesets
from gradattr.engine import modified_gradient
from gradattr.methods._problem import AttributionProblem
from gradattr.rulesets import MaxPooling


def deeplift(
    problem: AttributionProblem, *, max_pooling: MaxPooling = "route", strict: bool = True
) -> tuple[Tensor, ...]:
    """DeepLIFT Rescale contributions of each input feature to S_c(x) - S_c(x̄).

    Args:
        problem: validated inputs x (B, ...), baselines x̄ (1 or B, ...), target c.
        max_pooling: ``"route"`` (the paper's gradient routing to the maximum) or ``"exact"`` (max as a tree
            of ReLUs with the Rescale rule: Σ R = S_c(x) - S_c(x̄) also through max pooling).
        strict: raise on an op without a rule; ``False`` warns and uses its plain gradient.

    Returns:
        One tensor per input, shape of the input, summing to S_c(x) - S_c(x̄) per sample.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        >>> x = torch.randn(3, 2, dtype=torch.float64); model.double()  # doctest: +ELLIPSIS
        Sequential(...)
        >>> r = gradattr.attribute(model, x, method="deeplift")
        >>> bool(torch.allclose(r.sum(1), (model(x) - model(torch.zeros_like(x))).squeeze(1)))
        True
    """
    rules = rulesets.deeplift().with_max_pooling(max_pooling)
    gradients = modified_gradient(
        problem, problem.inputs, problem.all_rows, rules, problem.reference_points, strict=strict
    )
    return tuple((x - b) * g for x, b, g in zip(problem.inputs, problem.baselines, gradients, strict=True))
