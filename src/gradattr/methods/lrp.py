"""Layer-wise relevance propagation with layer rules chosen per layer: LRP composites (Bach et al. 2015;
Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019, Sec. 10.2).

The target logit ``S_c(x)`` is redistributed layer by layer, each linear op with its composite's rule
(z⁺, αβ, γ, ε, flat, zB: :mod:`gradattr.rules.layers`), relevance passing unchanged through activations;
the rules sit at the op call, so functional layers (``F.conv2d``, ``F.linear``), reused modules and
``F.batch_norm`` get them too, and batch norm folds into the layer before it without editing the model.
With bias-free layers and z⁺/αβ/flat rules the relevance is conserved, ``Σ_i R_i = S_c(x)``
(``attribute(..., return_gap=True)`` gives ``Σ_i R_i − S_c(x)`` per sample).

``method="epsilon_lrp"`` stays the paper's ε-LRP (rules at the nonlinearities, Ancona et al., ICLR 2018).
"""

from __future__ import annotations

from torch import Tensor

from gradattr import composites, rulesets
from gradattr.composites import Composite, CompositeName
from gradattr.engine import modified_gradient
from gradattr.methods._problem import AttributionProblem


def lrp(
    problem: AttributionProblem,
    *,
    composite: CompositeName | Composite = "epsilon_plus_flat",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    low: float | Tensor | None = None,
    high: float | Tensor | None = None,
    strict: bool = True,
) -> tuple[Tensor, ...]:
    """LRP relevance of each input feature for the target logit under an LRP composite.

    Args:
        problem: validated inputs x (B, ...), target c.
        composite: a named composite (:data:`gradattr.composites.COMPOSITES`: ``epsilon_plus``,
            ``epsilon_plus_flat``, ``epsilon_alpha2_beta1``, ``epsilon_alpha2_beta1_flat``,
            ``epsilon_gamma_box``) or a :class:`~gradattr.composites.Composite` of your own.
        epsilon: ε of the ε rule at linear layers (Zennit's default 1e-6).
        gamma: γ of the γ rule (``epsilon_gamma_box``; Zennit's default 0.25).
        stabilizer: ε added to the denominators of z⁺, αβ, γ, flat, zB and average pooling.
        low, high: ``epsilon_gamma_box``'s input bounds for zB (numbers, or tensors broadcasting against one
            sample such as per-channel (1, C, 1, 1)); default the smallest and largest value of the inputs.
        strict: raise on an op without a rule; ``False`` warns and uses its plain gradient.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        ...                             torch.nn.Linear(8, 3))
        >>> gradattr.attribute(model, torch.rand(2, 1, 4, 4), method="lrp", composite="epsilon_plus").shape
        torch.Size([2, 1, 4, 4])
    """
    if not isinstance(composite, Composite):
        if composite == "epsilon_gamma_box":
            low = min(float(x.min()) for x in problem.inputs) if low is None else low
            high = max(float(x.max()) for x in problem.inputs) if high is None else high
        composite = composites.named(composite, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer, low=low, high=high)
    ruleset = rulesets.lrp(composite)
    return modified_gradient(problem, problem.inputs, problem.all_rows, ruleset, strict=strict, relevance=True)
