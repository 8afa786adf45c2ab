"""Explanation infidelity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019, Sec. 2).

For a perturbation I drawn from a distribution μ_I of perturbations of interest,

    INFD(Φ, S_c, x) = E_I [ (Iᵀ Φ(x) - (S_c(x) - S_c(x - I)))² ],

the mean squared error of the attributions' linear prediction of the drop of the target's (pre-softmax)
output. It is 0 when Φ predicts every drawn drop exactly: the gradient of a linear model under any
perturbation; Gradient*Input of a linear model when I is measured relative to x - x̄ (``multiply_by_inputs``).

Perturbation models (``perturbation``), each drawing x' = x - I for every sample, K times:

- ``"gaussian"``: x' = x - ε, ε ~ N(0, σ² I) per feature (small-noise infidelity, whose optimum tends to the
  gradient as σ -> 0; Captum's documented example);
- ``"noisy_baseline"``: x' = x̄ + ε, ε ~ N(0, σ² I): I = x - x̄ - ε, Yeh et al.'s noisy baseline (their code
  uses x̄ = 0, σ = 0.2 and clips x' to the data range; here x' is not clipped);
- ``"square"``: a square patch over the last two dimensions (all channels; an interval for 1-D inputs) set to
  the baseline x̄, Yeh et al.'s square removal. Their code averages over every square of side 1..10 at every
  position; here each draw picks one of those squares uniformly (side s with probability proportional to its
  number of positions, then a uniform position), so the mean over draws estimates their average;
- a callable ``perturbation(inputs (B, ...), generator) -> x' (B, ...)``, called K times in order.

By default I = x - x' (input units, for gradient-like maps such as signed saliency). With
``multiply_by_inputs`` I = (x - x') / (x - x̄), for attributions that carry the factor x - x̄ (Gradient*Input,
Integrated Gradients, DeepLIFT, eps-LRP, occlusion): for ``"square"`` I is then the 0/1 mask of the removed
features, Yeh et al.'s binary I. Where x = x̄ the division is skipped (I = x - x'), as in Captum's
``infidelity_perturb_func_decorator``.

``normalise`` applies Yeh et al.'s optimal scaling (their code; Captum's ``infidelity(normalize=True)``): Φ is
multiplied by β = E[IᵀΦ · Δ] / E[(IᵀΦ)²], Δ = S_c(x) - S_c(x - I), before the squared error, so the score does
not depend on the scale of the attributions.

Speed: the K perturbed copies of the batch are evaluated in forward passes of whole copies (``batch_size``
rows at most), without gradients; only the per-sample sums Iᵀ Φ and output drops are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._problem import AttributionProblem, Target, build_problem
from gradattr.metrics._sampling import (
    Draw,
    checked,
    chunks,
    count,
    draw_batch,
    flat_attributions,
    generator,
    positive,
    single_input,
)

PERTURBATIONS = ("gaussian", "noisy_baseline", "square")
"""Names of the built-in perturbation models."""

DEFAULT_SQUARE_SIDES = 10
"""Largest square side by default (Yeh et al.'s MNIST experiments: sides 1..10)."""


def infidelity(
    model: nn.Module,
    inputs: Tensor,
    attributions: Tensor,
    target: Target = None,
    *,
    perturbation: str | Draw = "gaussian",
    samples: int = 100,
    sigma: float = 0.1,
    square_sizes: Sequence[int] | None = None,
    baseline: float | Tensor = 0.0,
    multiply_by_inputs: bool = False,
    normalise: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
) -> Tensor:
    """Infidelity of ``attributions`` (Yeh et al., NeurIPS 2019, Sec. 2), per sample.

    INFD(x) = (1/K) Σ_k (I_kᵀ Φ - (S_c(x) - S_c(x'_k)))² over K perturbed inputs x'_k of x (see the module
    docstring for the perturbation models and for I_k); with ``normalise``, Φ is first scaled by the optimal
    β = Σ_k I_kᵀΦ Δ_k / Σ_k (I_kᵀΦ)² (β = 0 when every I_kᵀΦ is 0).

    Args:
        model: the attributed model; evaluated in eval mode without gradients, its modes restored afterwards.
        inputs: x, Tensor (B, ...), float32 or float64.
        attributions: Φ, Tensor of the inputs' shape.
        target: class c: an int, a sequence or LongTensor of length B, or ``None`` (the argmax of the output at
            x, or the output itself for a one-output model). S_c is taken before any softmax.
        perturbation: ``"gaussian"``, ``"noisy_baseline"``, ``"square"`` or a callable
            ``(inputs (B, ...), generator) -> perturbed inputs (B, ...)``.
        samples: K >= 1, perturbations per sample.
        sigma: σ > 0, noise standard deviation per feature for ``"gaussian"`` and ``"noisy_baseline"``, in
            input units.
        square_sizes: square sides for ``"square"``, each in 1..min(H, W); default 1..min(10, H, W).
        baseline: x̄, a number or a tensor broadcastable to the inputs: what ``"square"`` sets removed features
            to, the centre of ``"noisy_baseline"``, and the reference of ``multiply_by_inputs``.
        multiply_by_inputs: measure I relative to x - x̄ (for attributions that include the input factor).
        normalise: apply Yeh et al.'s optimal scaling β of Φ.
        seed: seed of the ``torch.Generator`` (on the inputs' device) that every draw uses, k = 0..K-1 in
            order: the same seed gives the same result, at any ``batch_size``.
        batch_size: most rows per forward pass (at least one copy of the batch); default: the methods'
            memory budget.
        forward_kwargs, output, position: as in :func:`gradattr.attribute` (per-sample keyword arguments follow
            every perturbed copy's sample).

    Returns:
        Tensor(B), float64, on the inputs' device: the squared error in squared output units.

    Raises:
        ValueError / TypeError: attributions of another shape, non-finite or not floating; samples < 1;
            sigma <= 0; an unknown perturbation name; square sizes out of range; a callable returning another
            shape; and the checks of :func:`gradattr.attribute` on inputs, target and baseline.

    Example:
        >>> import torch, gradattr
        >>> from gradattr.metrics import infidelity
        >>> model = torch.nn.Linear(16, 3).double()
        >>> x = torch.randn(4, 16, dtype=torch.float64)
        >>> r = gradattr.attribute(model, x, "saliency", target=0, abs=False)  # the exact linear model
        >>> bool((infidelity(model, x, r, target=0) < 1e-20).all())
        True
    """
    x = single_input(inputs)
    phi = flat_attributions("attributions", attributions, x)
    samples = count("samples", samples)
    rng = generator(seed, x.device)
    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(
            model, x, target, baseline, forward_kwargs=forward_kwargs, output=output, position=position
        )
        fill = problem.baselines[0]
        draw = _perturbation(perturbation, sigma, square_sizes, fill, x)
        rows = problem.all_rows
        reference = problem.scores(problem.inputs, rows).double()
        span = (x - fill).reshape(x.shape[0], -1).double() if multiply_by_inputs else None
        predicted, drops = [], []
        for copies in chunks(x, samples, batch_size):
            perturbed = draw_batch(draw, x, copies, rng)  # (copies, B, ...)
            drops.append(reference - _scores(problem, perturbed))
            moved = (x.unsqueeze(0) - perturbed).reshape(copies, x.shape[0], -1).double()
            if span is not None:
                moved = torch.where(span != 0, moved / span, moved)
            predicted.append((moved * phi).sum(2))
    return _mean_squared_error(torch.cat(predicted), torch.cat(drops), normalise)


def _scores(problem: AttributionProblem, perturbed: Tensor) -> Tensor:
    """S_c at stacked copies of the batch (copies, B, ...) in one forward pass: Tensor(copies, B), float64."""
    copies, batch = perturbed.shape[:2]
    index = problem.all_rows.repeat(copies)
    points = perturbed.reshape(copies * batch, *perturbed.shape[2:])
    return problem.scores((points,), index).double().view(copies, batch)


def _mean_squared_error(predicted: Tensor, drops: Tensor, normalise: bool) -> Tensor:
    """(1/K) Σ_k (β a_k - Δ_k)² per sample from a = IᵀΦ and Δ (K, B); β = 1, or the least-squares β."""
    if normalise:
        energy = predicted.square().sum(0)
        beta = (predicted * drops).sum(0) / torch.where(energy > 0, energy, torch.ones_like(energy))
        predicted = beta * predicted
    return (predicted - drops).square().mean(0)


def _perturbation(
    perturbation: str | Draw, sigma: float, square_sizes: Sequence[int] | None, fill: Tensor, x: Tensor
) -> Draw:
    """The draw x' for a perturbation name (checking its options) or a user callable."""
    if callable(perturbation):
        return checked(perturbation)
    if perturbation == "gaussian":
        return _gaussian(positive("sigma", sigma))
    if perturbation == "noisy_baseline":
        return _noisy_baseline(positive("sigma", sigma), fill)
    if perturbation == "square":
        return _square(_square_sides(square_sizes, x), fill)
    raise ValueError(f"unknown perturbation {perturbation!r}; choose one of {', '.join(PERTURBATIONS)} or a callable")


def _gaussian(sigma: float) -> Draw:
    """x' = x - ε, ε ~ N(0, σ² I)."""

    def draw(x: Tensor, rng: torch.Generator) -> Tensor:
        return x - sigma * torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device)

    return draw


def _noisy_baseline(sigma: float, fill: Tensor) -> Draw:
    """x' = x̄ + ε, ε ~ N(0, σ² I)."""

    def draw(x: Tensor, rng: torch.Generator) -> Tensor:
        return fill + sigma * torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device)

    return draw


def _spatial(x: Tensor) -> tuple[int, ...]:
    """The extents a square spans: the last two feature dimensions, or the only one of 1-D inputs."""
    return tuple(x.shape[-2:]) if x.dim() >= 3 else (x.shape[-1],)


def _square_sides(square_sizes: Sequence[int] | None, x: Tensor) -> Tensor:
    """Validated square sides, LongTensor(S), each within 1..min(spatial extents)."""
    largest = min(_spatial(x))
    if square_sizes is None:
        return torch.arange(1, min(DEFAULT_SQUARE_SIDES, largest) + 1)
    if isinstance(square_sizes, int) or not isinstance(square_sizes, Sequence) or not square_sizes:
        raise TypeError(f"square_sizes must be a non-empty sequence of ints, got {square_sizes!r}")
    sides = [count("square size", side) for side in square_sizes]
    if max(sides) > largest:
        raise ValueError(f"square size {max(sides)} does not fit the inputs' extents {_spatial(x)}")
    return torch.tensor(sides)


def _square(sides: Tensor, fill: Tensor) -> Draw:
    """One square per sample set to x̄: side s chosen with weight Π_d (n_d - s + 1), then a uniform position."""

    def draw(x: Tensor, rng: torch.Generator) -> Tensor:
        extents = _spatial(x)
        options = sides.to(x.device)
        weights = torch.ones(len(options), dtype=torch.float64, device=x.device)
        for extent in extents:
            weights = weights * (extent - options + 1)
        side = options[torch.multinomial(weights, x.shape[0], replacement=True, generator=rng)]  # (B,)
        inside = torch.ones(x.shape[0], *(1,) * len(extents), dtype=torch.bool, device=x.device)
        for axis, extent in enumerate(extents):
            uniform = torch.rand(x.shape[0], generator=rng, dtype=torch.float64, device=x.device)
            start = (uniform * (extent - side + 1)).floor().long()  # (B,), uniform over 0..n - s
            inside = inside & _interval(start, side, extent, axis, len(extents))
        inside = inside.view(x.shape[0], *(1,) * (x.dim() - 1 - len(extents)), *extents)  # all channels
        return torch.where(inside, fill, x)

    return draw


def _interval(start: Tensor, side: Tensor, extent: int, axis: int, dims: int) -> Tensor:
    """BoolTensor (B, 1.., extent at ``axis``, ..1): positions start..start + side - 1 along one of ``dims`` axes."""
    shape = [1] * dims
    shape[axis] = extent
    position = torch.arange(extent, device=start.device).view(1, *shape)
    lower = start.view(-1, *(1,) * dims)
    return (position >= lower) & (position < lower + side.view(-1, *(1,) * dims))


__all__ = ["PERTURBATIONS", "infidelity"]
