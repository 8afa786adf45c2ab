"""Stability of explanations under small input perturbations: max- and avg-sensitivity, local Lipschitz estimate.

With Φ(x) the attribution map of ``method`` at x for a fixed class c:

- max-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019, Sec. 3):
  SENS_max(x) = max_{‖δ‖∞ ≤ r} ‖Φ(x + δ) - Φ(x)‖, estimated by the largest change over K sampled δ;
- avg-sensitivity (same paper): SENS_avg(x) = E_δ ‖Φ(x + δ) - Φ(x)‖, estimated by the mean over the K draws;
  both optionally divided by ‖Φ(x)‖ (``normalise``, as Yeh et al.'s code, Captum's ``sensitivity_max`` and
  Quantus do);
- local Lipschitz estimate (Alvarez-Melis & Jaakkola, "On the Robustness of Interpretability Methods", ICML
  WHI 2018): L(x) = max_{x'} ‖Φ(x) - Φ(x')‖₂ / ‖x - x'‖₂ over points x' near x, estimated by the largest ratio
  over K sampled x'.

Perturbation models. Sensitivity: δ uniform in the L∞ ball of radius r, each feature independently
U(-r, r), as in Yeh et al.'s code, Captum's default and Quantus' ``MaxSensitivity``. Lipschitz: x' = x + δ with
δ ~ N(0, σ² I), each feature independently, as Quantus' ``LocalLipschitzEstimate`` (default σ = 0.1); the
estimate is a lower bound of the local Lipschitz constant in the region this noise reaches (‖δ‖₂ ≈ σ √N).
Perturbed points are not clipped to a data range.

The explained class is fixed at the clean input: ``target=None`` is resolved to the argmax of the output at x
once, and the same class is explained at every perturbed copy, so a perturbation cannot switch the class.

Speed: the K perturbed copies of the batch are stacked and explained in as few calls of
:func:`gradattr.attribute` as the memory budget allows (``batch_size`` rows each), never one call per sample
or per draw; only the per-sample norms are kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods import attribute
from gradattr.methods._model_call import ForwardKwargs, ModelCall, OutputSelector, Position
from gradattr.methods._problem import Baseline, Target, build_problem
from gradattr.metrics._sampling import Draw, chunks, count, draw_batch, generator, positive, single_input

Norm = str | float

_NAMED_NORMS = {"fro": 2.0, "l1": 1.0, "l2": 2.0, "inf": math.inf}


def max_sensitivity(
    model: nn.Module,
    inputs: Tensor,
    method: str = "saliency",
    target: Target = None,
    *,
    radius: float = 0.02,
    samples: int = 10,
    norm: Norm = "fro",
    normalise: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    baseline: Baseline = None,
    method_options: Mapping[str, Any] | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    **options: Any,
) -> Tensor:
    """Max-sensitivity of ``method``'s explanations (Yeh et al., NeurIPS 2019, Sec. 3), per sample.

    SENS_max(x) = max_k ‖Φ(x + δ_k) - Φ(x)‖ over K draws δ_k, each feature of δ_k uniform in [-r, r] (the L∞
    ball of radius r); with ``normalise``, divided by ‖Φ(x)‖. A constant explanation scores 0.

    Args:
        model: the explained model; used in eval mode, its modes and parameter flags come back unchanged.
        inputs: x, Tensor (B, ...), float32 or float64.
        method: a method of :data:`gradattr.METHODS` (default ``"saliency"``).
        target: class explained: an int, a sequence or LongTensor of length B, or ``None`` for the argmax of
            the output at the clean input x (resolved once; the same class is explained at every x + δ).
        radius: r > 0, half-width of the uniform noise per feature, in input units.
        samples: K >= 1, perturbations per sample.
        norm: the norm of the change: ``"fro"`` or ``"l2"`` (Euclidean norm of the flattened map, Captum's and
            Quantus' default), ``"l1"``, ``"inf"``, or a number p >= 1.
        normalise: divide by ‖Φ(x)‖ (same norm); where Φ(x) = 0 the change is left undivided, as in Captum.
        seed: seed of the draws: δ_k = r (2U - 1), U = ``torch.rand(inputs.shape, generator=g)`` in the
            inputs' dtype and device, for k = 0..K-1 in order, g a ``torch.Generator`` seeded with ``seed``.
            The same seed gives the same result, at any ``batch_size``.
        batch_size: most rows per call of :func:`gradattr.attribute` (at least one copy of the batch); default:
            the methods' memory budget.
        baseline: the method's baseline (DeepLIFT, Integrated Gradients), as in :func:`gradattr.attribute`;
            a per-sample baseline (B, ...) is repeated for the perturbed copies.
        method_options: the method's options as a dict, needed for options named like this function's own
            parameters (``samples``, ``sigma``, ``seed``, ``batch_size`` of smoothgrad, shapley_sampling, ...).
        forward_kwargs, output, position: as in :func:`gradattr.attribute`; per-sample keyword arguments and
            positions are repeated for the perturbed copies of each sample.
        **options: the method's other options (``steps=...``, ``abs=...``), passed to :func:`gradattr.attribute`;
            an option given both here and in ``method_options`` is an error.

    Returns:
        Tensor(B), float64, on the inputs' device.

    Raises:
        ValueError / TypeError: radius <= 0, samples < 1, an unknown norm, inputs that are not one tensor, and
            the checks of :func:`gradattr.attribute` on method, options, target and baseline.

    Example:
        >>> import torch, gradattr
        >>> from gradattr.metrics import max_sensitivity
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        >>> max_sensitivity(model, torch.randn(4, 8), "saliency", radius=0.05).shape
        torch.Size([4])
    """
    return _sensitivity(
        model, inputs, method, target, lambda changes: changes.amax(0), radius, samples, norm, normalise, seed,
        batch_size, baseline, _merged(method_options, options), _call(forward_kwargs, output, position),
    )  # fmt: skip


def avg_sensitivity(
    model: nn.Module,
    inputs: Tensor,
    method: str = "saliency",
    target: Target = None,
    *,
    radius: float = 0.02,
    samples: int = 10,
    norm: Norm = "fro",
    normalise: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    baseline: Baseline = None,
    method_options: Mapping[str, Any] | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    **options: Any,
) -> Tensor:
    """Avg-sensitivity of ``method``'s explanations (Yeh et al., NeurIPS 2019, Sec. 3), per sample.

    SENS_avg(x) = (1/K) Σ_k ‖Φ(x + δ_k) - Φ(x)‖, the Monte-Carlo mean over the same draws δ_k (uniform in
    the L∞ ball of radius r) that :func:`max_sensitivity` maximises over: with equal arguments,
    ``avg_sensitivity <= max_sensitivity`` sample by sample.

    Args:
        model, inputs, method, target, radius, samples, norm, normalise, seed, batch_size, baseline,
        method_options, forward_kwargs, output, position, **options: as in :func:`max_sensitivity`.

    Returns:
        Tensor(B), float64, on the inputs' device.

    Raises:
        ValueError / TypeError: as :func:`max_sensitivity`.

    Example:
        >>> import torch
        >>> from gradattr.metrics import avg_sensitivity
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        >>> avg_sensitivity(model, torch.randn(4, 8), "gradient_x_input", samples=20).shape
        torch.Size([4])
    """
    return _sensitivity(
        model, inputs, method, target, lambda changes: changes.mean(0), radius, samples, norm, normalise, seed,
        batch_size, baseline, _merged(method_options, options), _call(forward_kwargs, output, position),
    )  # fmt: skip


def local_lipschitz(
    model: nn.Module,
    inputs: Tensor,
    method: str = "saliency",
    target: Target = None,
    *,
    sigma: float = 0.1,
    samples: int = 10,
    seed: int = 0,
    batch_size: int | None = None,
    baseline: Baseline = None,
    method_options: Mapping[str, Any] | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    **options: Any,
) -> Tensor:
    """Local Lipschitz estimate of ``method``'s explanations (Alvarez-Melis & Jaakkola 2018), per sample.

    L(x) = max_k ‖Φ(x) - Φ(x + δ_k)‖₂ / ‖δ_k‖₂ over K draws δ_k ~ N(0, σ² I) (Quantus'
    ``LocalLipschitzEstimate`` perturbation; Euclidean norms of the flattened map and input). A sampled lower
    bound of the local Lipschitz constant; more samples can only raise it.

    Args:
        model, inputs, method, target, batch_size, baseline, method_options, forward_kwargs, output, position,
            **options: as in :func:`max_sensitivity`.
        sigma: σ > 0, standard deviation of the Gaussian noise per feature, in input units.
        samples: K >= 1, perturbations per sample.
        seed: seed of the draws: δ_k = σ · ``torch.randn(inputs.shape, generator=g)`` in the inputs' dtype and
            device, k = 0..K-1 in order, g a ``torch.Generator`` seeded with ``seed``.

    Returns:
        Tensor(B), float64, on the inputs' device.

    Raises:
        ValueError / TypeError: sigma <= 0, samples < 1, and as :func:`max_sensitivity`.

    Example:
        >>> import torch
        >>> from gradattr.metrics import local_lipschitz
        >>> model = torch.nn.Linear(8, 3)  # saliency of a linear model does not change: L = 0
        >>> local_lipschitz(model, torch.randn(4, 8), "saliency").tolist()
        [0.0, 0.0, 0.0, 0.0]
    """
    sigma = positive("sigma", sigma)
    changes = _explanation_changes(
        model, inputs, method, target, _gaussian(sigma), samples, 2.0, seed, batch_size, baseline,
        _merged(method_options, options), _call(forward_kwargs, output, position),
    )  # fmt: skip
    return (changes.change / changes.step).amax(0)


@dataclass(frozen=True)
class _Changes:
    """How far the explanations moved: ``reference`` ‖Φ(x)‖ (B,), ``change`` ‖Φ(x + δ_k) - Φ(x)‖ (K, B) in the
    chosen norm, ``step`` ‖δ_k‖₂ (K, B); float64."""

    reference: Tensor
    change: Tensor
    step: Tensor


def _sensitivity(
    model: nn.Module,
    inputs: Tensor,
    method: str,
    target: Target,
    reduce: Callable[[Tensor], Tensor],
    radius: float,
    samples: int,
    norm: Norm,
    normalise: bool,
    seed: int,
    batch_size: int | None,
    baseline: Baseline,
    options: dict[str, Any],
    call: dict[str, Any],
) -> Tensor:
    """Max- or avg-sensitivity: ``reduce`` over the K draws of uniform L∞-ball noise, optionally normalised."""
    radius = positive("radius", radius)
    order = _norm_order(norm)
    changes = _explanation_changes(
        model, inputs, method, target, _uniform_ball(radius), samples, order, seed, batch_size, baseline, options, call
    )
    value = reduce(changes.change)
    if normalise:
        reference = changes.reference
        value = value / torch.where(reference > 0, reference, torch.ones_like(reference))
    return value


def _explanation_changes(
    model: nn.Module,
    inputs: Tensor,
    method: str,
    target: Target,
    draw: Draw,
    samples: int,
    order: float,
    seed: int,
    batch_size: int | None,
    baseline: Baseline,
    options: dict[str, Any],
    call: dict[str, Any],
) -> _Changes:
    """Φ at x and at K drawn perturbations x + δ_k, explained in chunks of whole copies of the batch."""
    x = single_input(inputs)
    samples = count("samples", samples)
    rng = generator(seed, x.device)
    batch = x.shape[0]
    with preserved_model(model) as model:
        fixed = _fixed_target(model, x, target, call)
        model_call = ModelCall.build(call["forward_kwargs"], call["output"], call["position"], batch)
        reference = _maps(model, x, method, fixed, baseline, options, model_call, copies=1)
        changes, steps = [], []
        for copies in chunks(x, samples, batch_size):
            deltas = draw_batch(draw, x, copies, rng)  # (copies, B, ...)
            points = (x.unsqueeze(0) + deltas).reshape(copies * batch, *x.shape[1:])
            moved = _maps(model, points, method, fixed, baseline, options, model_call, copies)
            moved = moved.view(copies, batch, -1)
            changes.append(torch.linalg.vector_norm(moved - reference, ord=order, dim=2))
            steps.append(torch.linalg.vector_norm(deltas.reshape(copies, batch, -1).double(), dim=2))
    return _Changes(torch.linalg.vector_norm(reference[0], ord=order, dim=1), torch.cat(changes), torch.cat(steps))


def _call(forward_kwargs: ForwardKwargs, output: OutputSelector, position: Position) -> dict[str, Any]:
    return {"forward_kwargs": forward_kwargs, "output": output, "position": position}


def _fixed_target(model: nn.Module, x: Tensor, target: Target, call: dict[str, Any]) -> Tensor | None:
    """The explained class per sample, LongTensor(B): ``target`` validated, or the argmax at x; ``None`` for a
    model with one output per sample (the output itself is explained)."""
    problem = build_problem(model, x, target, None, **call)
    problem.resolve_target()
    return problem.target


def _maps(
    model: nn.Module,
    points: Tensor,
    method: str,
    target: Tensor | None,
    baseline: Baseline,
    options: dict[str, Any],
    call: ModelCall,
    copies: int,
) -> Tensor:
    """Φ at ``copies`` stacked copies of the batch: Tensor(1, copies · B, N) in float64, one attribute call
    (per-sample keyword arguments and positions repeated for the copies)."""
    rows_target = None if target is None else target.repeat(copies)
    stacked = call.rows(torch.arange(len(points) // copies, device=points.device).repeat(copies))
    options = {**options, "forward_kwargs": stacked.kwargs, "output": stacked.output, "position": stacked.position}
    if isinstance(baseline, Tensor) and baseline.dim() == points.dim() and baseline.shape[0] * copies == len(points):
        baseline = baseline.repeat(copies, *(1,) * (baseline.dim() - 1))
    if baseline is not None:
        options = {**options, "baseline": baseline}
    maps = attribute(model, points, method, rows_target, **options)
    return maps.detach().reshape(1, len(points), -1).double()


def _merged(method_options: Mapping[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The method's options from the dict and the keyword arguments; a name in both is an error."""
    if method_options is None:
        return options
    if not isinstance(method_options, Mapping):
        raise TypeError(f"method_options must be a dict of the method's options, got {type(method_options).__name__}")
    twice = sorted(set(method_options) & set(options))
    if twice:
        raise TypeError(f"method option(s) {', '.join(twice)} given both in method_options and as keywords")
    return {**method_options, **options}


def _uniform_ball(radius: float) -> Draw:
    """δ uniform in the L∞ ball of radius r: each feature r (2U - 1), U ~ U[0, 1)."""

    def draw(x: Tensor, rng: torch.Generator) -> Tensor:
        return (torch.rand(x.shape, generator=rng, dtype=x.dtype, device=x.device) * 2 - 1) * radius

    return draw


def _gaussian(sigma: float) -> Draw:
    """δ ~ N(0, σ² I)."""

    def draw(x: Tensor, rng: torch.Generator) -> Tensor:
        return torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device) * sigma

    return draw


def _norm_order(norm: Norm) -> float:
    """The order p of the vector norm: ``"fro"``/``"l2"`` -> 2, ``"l1"`` -> 1, ``"inf"`` -> inf, or p >= 1."""
    if isinstance(norm, str) and norm.lower() in _NAMED_NORMS:
        return _NAMED_NORMS[norm.lower()]
    if isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm >= 1:  # NaN fails the comparison
        return float(norm)
    raise ValueError(f"norm must be one of {', '.join(map(repr, _NAMED_NORMS))} or a number p >= 1, got {norm!r}")


__all__ = ["avg_sensitivity", "local_lipschitz", "max_sensitivity"]
