"""Axiomatic checks of attribution maps: non-sensitivity (Nguyen & Martínez 2020) and input invariance
(Kindermans et al. 2017). Completeness is :func:`gradattr.metrics.completeness_gap`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods import _lookup
from gradattr.methods._problem import Target, build_problem
from gradattr.metrics._passes import budget, copies_with_baseline, copy_scores
from gradattr.metrics.faithfulness import grouped_attributions, model_inputs

if TYPE_CHECKING:
    from gradattr.robustness._explainers import Explainer


def non_sensitivity(
    model: nn.Module,
    x: Any,
    attr: Any,
    target: Target = None,
    baseline: float | Tensor = 0.0,
    eps: float = 1e-5,
    feature_groups: Tensor | None = None,
    *,
    output_eps: float | None = None,
    normalise: bool = False,
    max_elements: int | None = None,
) -> Tensor:
    """Non-sensitivity (Nguyen & Martínez, "On quantitative aspects of model interpretability", 2020,
    arXiv 2007.07584), per sample: the size of the symmetric difference

        | Z_R Δ Z_f |,   Z_R = { i : |R_i| ≤ eps },   Z_f = { i : |S_c(x) - S_c(x_[x_i = x̄])| ≤ output_eps },

    between the features the explanation calls irrelevant (zero attribution) and those the model does not
    depend on at x (removing the feature, i.e. setting it to the baseline, leaves the target's output
    unchanged). It counts the features with zero attribution whose removal changes the output plus those
    with non-zero attribution whose removal does not; 0 is best. Nguyen & Martínez state the sets as "zero"
    and "no functional dependence"; the tolerances and the removal by a baseline are ours, as in Quantus'
    ``NonSensitivity``. Quantus 0.6.0 calls a feature "zero" where ``a < eps`` (strict, on ``abs=True`` maps
    by default) and, with its default ``softmax=True``, reads dependence off the target's probability, not
    its logit; we use ``|a| ≤ eps`` and the model's output as it is. With ``softmax=False``, a baseline of
    0 and ``features_in_step=1`` the two agree exactly (``benchmarks/peers/QUANTUS_MAPS.md``).

    Args:
        model, x, attr, target, baseline, feature_groups, max_elements: as in
            :func:`gradattr.metrics.faithfulness_correlation`; with groups, i ranges over groups (a group is
            removed whole, its attribution is the sum over its features).
        eps: |R_i| ≤ eps counts as zero attribution.
        output_eps: |output change| ≤ output_eps counts as no dependence; ``None``: ``eps``.
        normalise: give the share of the N features (or groups) instead of the count.

    Returns:
        Tensor(B), float64: the count (an integer value) or, with ``normalise``, the share in [0, 1].

    Cost: N forward evaluations per sample (one per removed feature), in batched passes within the memory
    budget.
    """
    tolerances = [_non_negative("eps", eps), _non_negative("output_eps", eps if output_eps is None else output_eps)]
    inputs, grouping, group_attributions = grouped_attributions(x, attr, feature_groups, model)

    def removed(samples: slice, steps: slice) -> Tensor:  # copy k has group k alone at the baseline
        ks = torch.arange(steps.start, steps.stop, device=inputs.device)
        return grouping.ids.view(1, 1, -1) == ks.view(1, -1, 1)

    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, inputs, target, baseline)
        reference = problem.scores(problem.inputs, problem.all_rows).double()
        scores = copy_scores(problem, grouping.num_groups, copies_with_baseline(problem, removed), budget(max_elements))
    zero_attribution = group_attributions.abs() <= tolerances[0]
    no_dependence = (reference.unsqueeze(1) - scores).abs() <= tolerances[1]
    mismatches = (zero_attribution ^ no_dependence).double().sum(dim=1)
    return mismatches / grouping.num_groups if normalise else mismatches


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, eq=False)
class InvarianceResult:
    """Attributions of x on the model and of x + shift on the shifted model (Kindermans et al. 2017).

    Attributes:
        per_sample: Tensor(B), float64: max_i |R_i(x; f) - R_i(x + shift; f_shifted)|, 0 for an invariant
            method (up to float rounding).
        original: the maps R(x; f), (B, ...).
        shifted: the maps R(x + shift; f_shifted), (B, ...).
        output_gap: Tensor(B), float64: max |f(x) - f_shifted(x + shift)| over the outputs, the check that the
            two models compute the same function (float rounding only).
    """

    per_sample: Tensor
    original: Tensor
    shifted: Tensor
    output_gap: Tensor

    def invariant(self, atol: float = 1e-5, rtol: float = 1e-4) -> Tensor:
        """BoolTensor(B): per_sample ≤ atol + rtol · max_i |R_i(x; f)| (the maps agree within float rounding)."""
        scale = self.original.reshape(self.original.shape[0], -1).abs().amax(dim=1).double()
        return self.per_sample <= atol + rtol * scale


def input_invariance(
    model: nn.Module,
    x: Any,
    method: str | Explainer,
    shift: float | Tensor,
    target: Target = None,
    *,
    method_options: Mapping[str, Any] | None = None,
    shift_baseline: bool = True,
) -> InvarianceResult:
    """Input invariance (Kindermans et al., "The (Un)reliability of saliency methods", 2017).

    The shifted model f_2(x + m) = f_1(x) takes inputs moved by a constant m and compensates it in the bias of
    its first layer, b_2 = b_1 - W m (:func:`shifted_model`); both models compute the same function of the
    data, so an input-invariant method must give R(x; f_1) = R(x + m; f_2). Kindermans et al. find gradients
    (saliency) invariant, Gradient*Input not (it differs by m ⊙ ∇f), and Integrated Gradients and DeepLIFT
    invariant only when their baseline moves with the inputs (x̄_2 = x̄_1 + m).

    Args:
        model: a model whose first operation on its input is an ``nn.Linear`` or an ``nn.Conv*d`` (before it
            only reshaping, e.g. ``nn.Flatten``); never modified, the shifted model is a copy.
        x: inputs (B, ...), a tensor or a numpy array.
        method: a :data:`gradattr.METHODS` name (run by :func:`gradattr.attribute` with ``method_options``) or
            a callable ``(model, inputs, target) -> maps``.
        shift: m, a number or a tensor broadcastable to one sample's shape (a constant per feature).
        target: the class to explain, fixed once on the original model (``None``: its argmax).
        method_options: options of a named method (e.g. ``{"baseline": 0.0, "steps": 64}``).
        shift_baseline: for a named method with a baseline (integrated_gradients, deeplift,
            shapley_sampling), run the shifted model with the baseline x̄ + m (x̄ from ``method_options``,
            default 0), as Kindermans et al.'s invariant variant; ``False`` keeps x̄ for both (not invariant).

    Returns:
        An :class:`InvarianceResult`: ``per_sample`` max absolute difference of the maps, ``invariant()``
        the verdict within tolerances, both maps, and the models' output gap.
    """
    from gradattr.robustness._explainers import fixed_target  # gradattr.robustness imports gradattr.metrics

    inputs = model_inputs(model, x)
    moved = torch.as_tensor(shift, dtype=inputs.dtype, device=inputs.device).expand(inputs.shape[1:])
    shifted = shifted_model(model, inputs, moved)
    target = fixed_target(model, inputs, target)
    options = dict(method_options or {})
    shifted_options = dict(options)
    if isinstance(method, str) and shift_baseline and _lookup(method).uses_baseline:
        shifted_options["baseline"] = torch.as_tensor(options.get("baseline", 0.0), dtype=inputs.dtype) + moved
    original_run = method_explainer(method, options)
    shifted_run = method_explainer(method, shifted_options)
    original = original_run(model, inputs, target).detach()
    moved_maps = shifted_run(shifted, inputs + moved, target).detach()
    with preserved_model(model) as model, torch.no_grad():
        gap = (model(inputs) - shifted(inputs + moved)).reshape(inputs.shape[0], -1).abs().amax(dim=1)
    difference = (original.double() - moved_maps.double()).reshape(inputs.shape[0], -1).abs().amax(dim=1)
    return InvarianceResult(difference, original, moved_maps, gap.double())


def method_explainer(method: str | Explainer, options: dict[str, Any]) -> Explainer:
    """``method`` as a function ``(model, inputs, target) -> maps``: a method name bound to ``options`` (through
    :func:`gradattr.robustness._explainers.resolve_explainers`), or the callable itself."""
    from gradattr.robustness._explainers import resolve_explainers  # gradattr.robustness imports gradattr.metrics

    label = method if isinstance(method, str) else "method"
    return resolve_explainers({label: method}, {label: options} if isinstance(method, str) else None)[label]


def shifted_model(model: nn.Module, x: Any, shift: float | Tensor) -> nn.Module:
    """A copy of ``model`` for inputs moved by ``shift``: f_2(x + m) = f_1(x), the first layer's bias
    compensating the shift (Kindermans et al. 2017): b_2 = b_1 - W m for a linear layer, b_2 = b_1 - Σ W m per
    output channel for a convolution (a bias is added where the layer has none).

    The first layer is the first module with parameters that the forward pass of ``x`` calls; it must be an
    ``nn.Linear`` or ``nn.Conv1d/2d/3d`` and the shift must reach it as the same constant for every sample
    (only reshaping before it). For a convolution, the compensation must be the same at every position:
    zero padding breaks that (the padded border is not shifted), and is refused.

    Raises:
        ValueError: the first layer is not linear or convolutional, something other than reshaping comes
            before it, a padded convolution, or outputs that do not match after the shift.
    """
    inputs = model_inputs(model, x)
    moved = torch.as_tensor(shift, dtype=inputs.dtype, device=inputs.device).expand(inputs.shape[1:])
    with preserved_model(model) as view, torch.no_grad():
        name, layer, seen = _first_layer(view, inputs)
        if not isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
            raise ValueError(
                f"the first layer {name!r} is a {type(layer).__name__}; input invariance needs a model whose first "
                "operation is an nn.Linear or nn.Conv*d, whose bias can absorb the shift"
            )
        moved_name, _, moved_seen = _first_layer(view, inputs + moved)
        step = moved_seen - seen
        if moved_name != name or not torch.allclose(step, step[:1].expand_as(step), rtol=0.0, atol=_rounding(seen)):
            raise ValueError(
                f"the shift does not reach the first layer {name!r} as a constant: only reshaping may come first"
            )
    with torch.no_grad():
        offset = layer(step[:1]) - layer(torch.zeros_like(step[:1]))  # W m (the bias cancels)
        if isinstance(layer, nn.modules.conv._ConvNd):
            per_channel = offset.flatten(2)
            if not torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel), atol=_rounding(offset)):
                raise ValueError(f"the padding of {name!r} makes W m vary over positions; no bias compensates it")
            offset = per_channel[0, :, 0]
        else:
            offset = offset.reshape(-1, offset.shape[-1])[0]
        shifted = copy.deepcopy(model)
        copied = shifted.get_submodule(name)
        bias = torch.zeros_like(offset) if copied.bias is None else copied.bias.detach()
        copied.bias = nn.Parameter(bias - offset.to(bias.dtype), requires_grad=copied.weight.requires_grad)
    with preserved_model(model) as original, preserved_model(shifted) as moved_model, torch.no_grad():
        expected, got = original(inputs), moved_model(inputs + moved)
    if not torch.allclose(expected, got, rtol=1e-4, atol=1e-4 * float(expected.abs().max()) + _rounding(expected)):
        raise ValueError(
            "the shifted model's outputs differ from the model's: the first layer does not see the shift alone"
        )
    return shifted


def _rounding(values: Tensor) -> float:
    """A tolerance of float rounding at the scale of ``values``."""
    return 64 * torch.finfo(values.dtype).eps * max(1.0, float(values.abs().max()))


def _first_layer(view: nn.Module, inputs: Tensor) -> tuple[str, nn.Module, Tensor]:
    """(name, module, its input) of the first module with its own parameters that a forward pass of ``inputs``
    calls; ``view`` is a :func:`preserved_model` view, so the hooks never reach the user's model."""
    names = {module: name for name, module in view.named_modules()}
    calls: list[tuple[nn.Module, Tensor]] = []
    handles = [
        module.register_forward_pre_hook(lambda module, args: calls.append((module, args[0])))
        for module in names
        if any(True for _ in module.parameters(recurse=False))
    ]
    try:
        view(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ValueError("the model has no layer with parameters to compensate an input shift")
    module, received = calls[0]
    return names[module], module, received


__all__ = ["InvarianceResult", "input_invariance", "method_explainer", "non_sensitivity", "shifted_model"]
