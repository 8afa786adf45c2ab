"""Random logit test (Sixt, Granz, Landgraf, "When Explanations Lie: Why Many Modified BP Attributions
Fail", ICML 2020): does the explanation depend on the class it explains?

Model-parameter randomisation, the other randomisation test of SPEC.md, is
:func:`gradattr.robustness.model_randomisation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gradattr.methods._problem import Target
from gradattr.metrics._sampling import count
from gradattr.metrics.axioms import method_explainer
from gradattr.metrics.faithfulness import model_inputs

if TYPE_CHECKING:
    from gradattr.robustness._explainers import Explainer


def random_logit(
    model: nn.Module,
    x: Any,
    method: str | Explainer = "saliency",
    target: Target = None,
    *,
    method_options: Mapping[str, Any] | None = None,
    similarity: str = "ssim",
    top_features: int | None = None,
    seed: int = 0,
) -> Tensor:
    """Random logit similarity, per sample: sim(R^c(x), R^{c'}(x)) between the explanation of the target
    class c and of a class c' ≠ c drawn uniformly from the other C - 1 classes (Sixt et al. 2020,
    who use SSIM). A class-sensitive method gives dissimilar maps (low values); a method whose maps do not
    depend on the class (Sixt et al.'s finding for LRP-z+, PatternAttribution, DeepTaylor, ...) gives
    similarity near 1.

    Args:
        model: a classifier with a (B, C) output, C ≥ 2.
        x: inputs (B, ...), a tensor or a numpy array.
        method: a :data:`gradattr.METHODS` name (run by :func:`gradattr.attribute` with ``method_options``) or
            a callable ``(model, inputs, target) -> maps``, as the robustness checks take.
        target: the explained class c (``None``: the predicted class).
        method_options: options of a named method.
        similarity: ``"ssim"`` (maps scaled to [0, 1] each, the sanity checks' SSIM; image maps (B, H, W) or
            (B, C, H, W)), ``"spearman"``, ``"spearman_abs"`` (rank correlation of the signed or absolute maps)
            or ``"topk_intersection"`` (:mod:`gradattr.robustness._similarity`).
        top_features: k of the top-k intersection (default 10 % of the features).
        seed: seed of the random classes: c' = u + [u ≥ c] with u uniform in 0..C-2, drawn for the batch by a
            ``torch.Generator`` on the CPU.

    Returns:
        Tensor(B), float64; NaN where a map is constant (no defined correlation).

    Difference from Quantus' ``RandomLogit``: no normalisation or absolute value of the maps before the
    measure (SSIM scales each map to [0, 1] itself), and the classes of a batch come from one seeded draw.
    """
    # gradattr.robustness imports gradattr.metrics: its helpers are imported on use
    from gradattr.robustness._explainers import fixed_target, model_output
    from gradattr.robustness._similarity import MEASURES, resolve_top

    if similarity not in MEASURES:
        raise ValueError(f"unknown similarity {similarity!r}; choose from {', '.join(MEASURES)}")
    inputs = model_inputs(model, x)
    output = model_output(model, inputs)
    if output.dim() != 2 or output.shape[1] < 2:
        raise ValueError(f"random logit needs a classifier with a (B, C) output, C >= 2, got {tuple(output.shape)}")
    classes = fixed_target(model, inputs, target)
    draw = torch.randint(
        0, output.shape[1] - 1, classes.shape, generator=torch.Generator().manual_seed(count("seed", seed, 0))
    )
    other = draw.to(classes.device) + (draw.to(classes.device) >= classes).long()
    explain = method_explainer(method, dict(method_options or {}))
    maps = explain(model, inputs, classes).detach()
    other_maps = explain(model, inputs, other).detach()
    top = resolve_top(maps[0].numel(), top_features)
    return MEASURES[similarity](maps, other_maps, top).double()


__all__ = ["random_logit"]
