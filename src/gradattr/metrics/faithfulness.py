"""Faithfulness of an attribution map to the model's output: faithfulness correlation (Bhatt et al. 2020) and
monotonicity (Arya et al. 2019).

Both remove or insert features by setting them to a baseline x̄ and read the target's pre-softmax output
S_c (SPEC.md, "Notation"); both are computed for the whole batch in forward passes of at most
``max_elements`` input elements (:func:`gradattr.metrics._passes.copy_scores`), without gradients; the
perturbed copies are built block by block, never all at once.
Features may be groups (``feature_groups``, e.g. ``gradattr.patches``), the attribution of a group being
the sum over its features.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.groups import Grouping, as_grouping
from gradattr.methods._problem import Target, build_problem
from gradattr.metrics._maps import as_tensor
from gradattr.metrics._passes import budget, copies_with_baseline, copy_scores
from gradattr.metrics._sampling import flat_attributions, single_input
from gradattr.metrics.sensitivity import sensitivity_n

Reduce = Literal["indicator", "fraction"]


def model_inputs(model: nn.Module, inputs: Any) -> Tensor:
    """``inputs`` (a tensor, or a numpy array) as one batch-first tensor; a numpy array is converted to the
    dtype and device of the model's first floating-point parameter (numpy's float64 against a float32 model)."""
    x = as_tensor("inputs", inputs)
    if isinstance(inputs, np.ndarray) and x.is_floating_point():
        parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
        if parameter is not None:
            x = x.to(parameter.device, parameter.dtype)
    return single_input(x)


def faithfulness_correlation(
    model: nn.Module,
    x: Any,
    attr: Any,
    target: Target = None,
    subset_size: int | None = None,
    num_subsets: int = 100,
    baseline: float | Tensor = 0.0,
    feature_groups: Tensor | None = None,
    seed: int = 0,
    *,
    max_elements: int | None = None,
) -> Tensor:
    """Faithfulness correlation (Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model
    Explanations", IJCAI 2020), per sample.

        μ_F(x) = corr_{S ∈ (N choose |S|)} ( Σ_{i ∈ S} R_i ,  S_c(x) - S_c(x_[x_S = x̄]) ),

    the Pearson correlation, over ``num_subsets`` random subsets S of ``subset_size`` features, between the
    attribution of S and the drop of the target's output when S is set to the baseline. This is Sensitivity-n
    (Ancona et al., ICLR 2018; :func:`gradattr.sensitivity_n`) at the single n = |S|, and is computed by it:
    with the same seed it draws the same subsets and gives the same numbers. The two differ in reporting only:
    Bhatt et al. report μ_F per sample and average it over a data set at one |S|, Ancona et al. report the
    curve of the sample mean over a grid of n.

    Differences from Quantus' ``FaithfulnessCorrelation`` (whose defaults are subset_size 224, 100 runs):
    the subsets are shared by all samples of a batch (seeded, as in Sensitivity-n) rather than drawn per
    sample, and the output is the pre-softmax target rather than the softmax probability.

    Args:
        model: the attributed model, evaluated in eval mode without gradients (its modes restored).
        x: inputs (B, ...), a tensor or a numpy array (converted to the model's dtype).
        attr: attributions R of ``x``, same shape, a tensor or a numpy array.
        target: class per sample (int, sequence, LongTensor(B)) or ``None`` (the argmax; a one-output model's
            output itself).
        subset_size: |S|, features (or groups) per subset, in 1..N-1; ``None``: max(1, round(N / 10)) (our
            choice; Bhatt et al. do not fix it).
        num_subsets: subsets drawn (at least 2), the same for every sample.
        baseline: x̄, the value of removed features: a number or a tensor broadcastable to ``x``.
        feature_groups: integer group ids over a sample's features (``gradattr.patches``); then |S| counts
            groups and R of a group is the sum over its features. ``None``: every feature its own group.
        seed: seed of the subsets (:func:`gradattr.metrics.draw_subsets`).
        max_elements: input elements per forward pass (default
            :data:`gradattr.metrics.sensitivity.ELEMENTS_PER_FORWARD`).

    Returns:
        Tensor(B), float64, in [-1, 1]; NaN where the correlation is undefined (the attribution sums or the
        output drops constant over the subsets).
    """
    inputs = model_inputs(model, x)
    attributions = as_tensor("attr", attr).to(inputs.device)
    groups = as_grouping(feature_groups, inputs.shape[1:], inputs.device).num_groups
    size = max(1, round(groups / 10)) if subset_size is None else subset_size
    result = sensitivity_n(
        model, inputs, attributions, target=target, ns=[size], num_subsets=num_subsets, baseline=baseline,
        feature_groups=feature_groups, seed=seed, max_elements=max_elements,
    )  # fmt: skip
    return result.per_sample[:, 0]


def monotonicity(
    model: nn.Module,
    x: Any,
    attr: Any,
    target: Target = None,
    baseline: float | Tensor = 0.0,
    feature_groups: Tensor | None = None,
    *,
    reduce: Reduce = "indicator",
    tolerance: float = 0.0,
    max_elements: int | None = None,
) -> Tensor:
    """Monotonicity (Arya et al., "One Explanation Does Not Fit All", 2019; AIX360's ``monotonicity_metric``),
    per sample.

    Starting from the baseline x̄, the features are inserted (set to their value in x) one at a time in order
    of increasing attribution R (signed, as AIX360's ``np.argsort(coefs)``; ties in feature order). With
    p_k = S_c after the k-th insertion, k = 1..N (p_N = S_c(x)), the explanation is monotonic when

        p_{k+1} - p_k ≥ 0   for every k = 1..N-1,

    i.e. the output never drops as ever more important features are added. ``reduce="indicator"`` gives
    AIX360's verdict (1.0 monotonic, 0.0 not); ``"fraction"`` the share of the N-1 steps that do not drop
    (our graded reading of the same curve). This is Arya et al.'s metric, not Nguyen & Martínez's (2020)
    "monotonicity", which is the Spearman correlation between |R_i| and the output's sensitivity to x_i.

    Differences from AIX360: the output is the target's pre-softmax score S_c, not the predicted class's
    probability (give a model ending in a softmax for theirs); the target may be any class, not only the
    predicted one; the baseline curve's first point p_0 = S_c(x̄) is not included, as in AIX360.

    Args:
        model, x, attr, target, baseline, feature_groups, max_elements: as in
            :func:`faithfulness_correlation`; with groups, whole groups are inserted in order of their summed
            attribution.
        reduce: ``"indicator"`` or ``"fraction"``, see above.
        tolerance: a step counts as not dropping when p_{k+1} - p_k ≥ -``tolerance`` (0: AIX360's exact
            test; a small value forgives float rounding of the model's dtype).

    Returns:
        Tensor(B), float64, in [0, 1]; with a single feature (no step) the indicator is 1 and the fraction
        NaN.

    Cost: N forward evaluations per sample, in passes within the memory budget.
    """
    if reduce not in ("indicator", "fraction"):
        raise ValueError(f"reduce must be 'indicator' or 'fraction', got {reduce!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    inputs, grouping, group_attributions = grouped_attributions(x, attr, feature_groups, model)
    rank = group_attributions.argsort(dim=1, stable=True).argsort(dim=1)  # insertion step of each group
    feature_rank = rank.index_select(1, grouping.ids)  # (B, N)

    def removed(samples: slice, steps: slice) -> Tensor:  # after step k, the groups of rank > k are at x̄
        ks = torch.arange(steps.start, steps.stop, device=inputs.device)
        return feature_rank[samples].unsqueeze(1) > ks.view(1, -1, 1)

    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, inputs, target, baseline)
        build = copies_with_baseline(problem, removed)
        curve = copy_scores(problem, grouping.num_groups, build, budget(max_elements))
    kept = curve.diff(dim=1) >= -tolerance
    if reduce == "indicator":
        return kept.all(dim=1).double()
    return kept.double().mean(dim=1)


def grouped_attributions(
    x: Any, attr: Any, feature_groups: Tensor | None, model: nn.Module
) -> tuple[Tensor, Grouping, Tensor]:
    """The inputs as a tensor, their grouping, and R summed per group: float64 (B, G)."""
    inputs = model_inputs(model, x)
    grouping = as_grouping(feature_groups, inputs.shape[1:], inputs.device)
    flat = flat_attributions("attr", as_tensor("attr", attr).to(inputs.device), inputs)
    return inputs, grouping, grouping.sums(flat)


__all__ = ["faithfulness_correlation", "grouped_attributions", "model_inputs", "monotonicity"]
