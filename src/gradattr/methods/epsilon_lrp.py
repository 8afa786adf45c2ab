"""eps-LRP as a modified gradient (Bach et al. 2015; Ancona et al., ICLR 2018, Sec. 3, Eq. 7 and Table 1).

R_i = x_i · g_i, where g is the gradient of S_c(x) with the derivative of every elementwise nonlinearity
z -> f(z) replaced by f(z) / (z + ε·sign(z)) (sign(0) := +1). On ReLU networks this equals Gradient*Input
up to ε terms (Prop. 1).

Transformers get AttnLRP (Achtibat et al., ICML 2024) by default (``rules="attnlrp"``): the uniform rule at
products of two input-dependent tensors (each factor gets half), softmax in gradient×input form, the
statistic of layer/RMS norms held constant; hand-written activations (GPT-2's GELU) get the ε rule of the
whole function. ``rules="cp"`` is CP-LRP (Ali et al., ICML 2022: attention weights constant), and
``rules="epsilon"`` adds the ε rule at every linear layer (Bach et al. 2015). See :mod:`gradattr.rulesets`.

Recurrent layers (``nn.LSTM``/``nn.GRU``/``nn.RNN`` and their cells) are unrolled so that the rule reaches
every gate sigmoid and tanh. Their gate products ``gate ⊙ signal`` admit two conventions (``gates=``):

* ``"product"`` (default) — the product keeps its gradient in both factors: the setting of Ancona et al.
  (ICLR 2018, Sec. 4.2 and 5) for their LSTM experiments;
* ``"signal"`` — the gate is a constant in the backward pass, so all relevance of the product goes to the
  signal: the LRP-for-LSTM rule of Arras et al. (WASSA 2017, "Explaining Recurrent Neural Network
  Predictions in Sentiment Analysis"), whose relevances this reproduces (eps-rule, bias relevance absorbed).
"""

from __future__ import annotations

from torch import Tensor

from gradattr import rulesets
from gradattr.engine import GateProducts, modified_gradient
from gradattr.methods._problem import AttributionProblem
from gradattr.rulesets import LrpRules, RuleSet


def epsilon_lrp(
    problem: AttributionProblem,
    *,
    epsilon: float = 1e-4,
    rules: LrpRules | RuleSet = "attnlrp",
    gates: GateProducts = "product",
    strict: bool = True,
) -> tuple[Tensor, ...]:
    """epsilon-LRP relevance of each input feature for the target logit.

    Args:
        problem: validated inputs x (B, ...), target c.
        epsilon: stabiliser ε > 0 of the denominator z + ε·sign(z).
        rules: ``"attnlrp"`` (default), ``"cp"`` or ``"epsilon"`` (see the module doc), or a
            :class:`~gradattr.rulesets.RuleSet` of your own (rules by op kind, overrides by module type/path).
        gates: gate products in LSTM/GRU cells: ``"product"`` (gradient into gate and signal; Ancona et al.
            2018) or ``"signal"`` (gate held constant; Arras et al. 2017). No effect on models without
            recurrent layers.
        strict: raise on an op without a rule; ``False`` warns and uses its plain gradient.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> gradattr.attribute(model, torch.ones(5, 2), method="epsilon_lrp").shape
        torch.Size([5, 2])
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
    ruleset = rules if isinstance(rules, RuleSet) else rulesets.epsilon_lrp(rules, float(epsilon))
    gradients = modified_gradient(problem, problem.inputs, problem.all_rows, ruleset, strict=strict, gates=gates)
    return tuple(x * g for x, g in zip(problem.inputs, gradients, strict=True))
