"""Completeness ("summation-to-delta", Ancona et al., ICLR 2018, Sec. 3, Eq. 3): Σ_i R_i = S_c(x) - S_c(x̄)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._problem import AttributionProblem, Target, build_problem
from gradattr.methods.integrated_gradients import CompletenessWarning

__all__ = [
    "CompletenessWarning",
    "completeness_gap",
    "conservation_gap",
    "endpoint_scores",
    "output_scores",
    "problem_gap",
]


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
    return problem_gap(problem, (attributions,))


def conservation_gap(
    model: nn.Module,
    inputs: Tensor,
    attributions: Tensor,
    target: Target,
    *,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
) -> Tensor:
    """Per-sample Σ_i R_i − S_c(x): LRP's conservation (Bach et al. 2015; Montavon et al. 2019, Sec. 10.1),
    relevance redistributes the target logit itself. Exact zero (up to rounding and stabilisers) for bias-free
    ReLU nets under z⁺, αβ and flat rules; biases absorb relevance otherwise, which this measures.

    Args and Returns as :func:`completeness_gap`, without a baseline.
    """
    call = {"forward_kwargs": forward_kwargs, "output": output, "position": position}
    problem = build_problem(model, inputs, target, None, **call)
    return problem_gap(problem, (attributions,), output_scores(problem))


def output_scores(problem: AttributionProblem) -> tuple[Tensor, Tensor]:
    """S_c(x) per sample and zeros: the endpoints of LRP's conservation Σ_i R_i = S_c(x)."""
    with torch.no_grad():
        at_input = problem.scores(problem.inputs, problem.all_rows)
    return at_input, torch.zeros_like(at_input)


def endpoint_scores(problem: AttributionProblem) -> tuple[Tensor, Tensor]:
    """S_c(x) and S_c(x̄) per sample, each Tensor(B), without gradients (passes within the memory budget).
    With a distribution of K references (GradientSHAP, DeepLiftSHAP), S_c(x̄) is their mean (1/K) Σ_k S_c(x̄_k)."""
    rows = problem.all_rows
    with torch.no_grad():
        at_input = problem.scores(problem.inputs, rows)
        if problem.references is None:
            reference = tuple(b.expand_as(x) for b, x in zip(problem.baselines, problem.inputs, strict=True))
            return at_input, problem.scores(reference, rows)
        count, batch = problem.references[0].shape[0], problem.batch_size
        points = tuple(r.repeat_interleave(batch, dim=0) for r in problem.references)  # reference-major rows
        return at_input, problem.scores(points, rows.repeat(count)).view(count, batch).mean(0)


def problem_gap(
    problem: AttributionProblem, attributions: tuple[Tensor, ...], scores: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Per-sample Σ_i R_i - (S_c(x) - S_c(x̄)) of a validated problem (all its inputs summed, or the layer's
    output when it attributes a layer); ``scores``: :func:`endpoint_scores`'s, when already computed.

    The one implementation behind :func:`completeness_gap`, ``gradattr.attribute(..., return_gap=True)`` and
    Integrated Gradients' gap check.
    """
    at_input, at_baseline = endpoint_scores(problem) if scores is None else scores
    batch = problem.batch_size
    total = sum(a.detach().reshape(batch, -1).sum(1).to(at_input.dtype) for a in attributions)
    return total - (at_input - at_baseline)
