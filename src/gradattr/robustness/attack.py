"""Attacks on explanations: small input perturbations that keep the prediction and move the map.

Ghorbani, Abid and Zou ("Interpretation of Neural Networks is Fragile", AAAI 2019, Sec. 3, Algorithm 1;
summarised in Nielsen et al., IEEE SPM 2022, "Robust Explainability") perturb an input x_t within an
L∞ ball by iterated sign-gradient steps on a dissimilarity D between its map I(x) and the original I(x_t):

    x^0 = x_t,   x^p = Π_{‖x - x_t‖∞ ≤ ε, x ∈ [low, high]}(x^{p-1} + α · sign(∇_x D(I(x^{p-1}), I(x_t)))),  p = 1..P,

and return, among the iterates whose predicted label equals that of x_t, the one of largest D (iterates that
change the label are never returned; x_t itself is the fall-back). Two dissimilarities (their Sec. 3):

* top-k attack (``"topk"``): D = -Σ_{i ∈ B} Ĩ_i(x), the share of the map on the set B of the k most important
  features of I(x_t), with Ĩ = |I| / Σ_j |I_j|;
* mass-center attack (``"mass_center"``): D = ‖C(x) - C(x_t)‖₂ with the centre of mass
  C(x) = Σ_i Ĩ_i(x) · position_i (for images (B, C, H, W), |I| is summed over channels first).

∇_x D differentiates the map, i.e. takes second derivatives of the network, which vanish almost everywhere
in a ReLU network: the gradient is taken through the softplus surrogate (:mod:`.surrogate`), while the map
that is judged — for the choice of iterate and for the reported numbers — is the real network's, computed by
:func:`gradattr.attribute`. The methods with a second-order path are those defined by plain gradients:
saliency, Gradient*Input and Integrated Gradients (:data:`SECOND_ORDER_METHODS`).

Reported per sample: label kept, top-k intersection and Spearman rank correlation between the original and
the attacked map (:mod:`gradattr.metrics.agreement`) and the L∞ size of the perturbation; the same for a
random sign perturbation x_t + ε · s, s ∈ {-1, +1}^d, Ghorbani et al.'s baseline, so the attack can be seen to
do better than noise of the same size.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods import attribute
from gradattr.metrics.agreement import spearman_per_sample, topk_intersection
from gradattr.robustness.norms import (
    LINF,
    Bounds,
    check_bounds,
    check_epsilon,
    check_inputs_within,
    within_bounds,
)
from gradattr.robustness.surrogate import softplus_surrogate

Objective = Literal["topk", "mass_center"]
OBJECTIVES: tuple[str, ...] = ("topk", "mass_center")
"""The attack's dissimilarities D (Ghorbani et al. 2019, Sec. 3)."""


# -- differentiable explanations ----------------------------------------------------------------------------


def _input_gradient(model: nn.Module, points: Tensor, target: Tensor) -> Tensor:
    """∂S_c/∂x at ``points`` (K, ...) with target classes ``target`` (K,), keeping the graph (create_graph)."""
    output = model(points)
    if output.dim() != 2 or output.shape[0] != points.shape[0]:
        raise ValueError(f"model output has shape {tuple(output.shape)}; expected ({points.shape[0]}, C)")
    scores = output.gather(1, target.unsqueeze(1)).sum()
    return torch.autograd.grad(scores, points, create_graph=True)[0]


def _saliency(model: nn.Module, inputs: Tensor, target: Tensor, *, abs: bool = True) -> Tensor:
    """|∂S_c/∂x| (``abs=False``: the signed gradient), as :func:`gradattr.methods.saliency.saliency`."""
    gradient = _input_gradient(model, inputs, target)
    return gradient.abs() if abs else gradient


def _gradient_x_input(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
    """x · ∂S_c/∂x, as :func:`gradattr.methods.gradient_x_input.gradient_x_input`."""
    return inputs * _input_gradient(model, inputs, target)


def _integrated_gradients(
    model: nn.Module, inputs: Tensor, target: Tensor, *, steps: int = 100, baseline: float | Tensor | None = None
) -> Tensor:
    """(x - x̄) · (1/m) Σ_{k=1..m} ∂S_c/∂x̃ at x̃ = x̄ + (k/m)(x - x̄), as
    :func:`gradattr.methods.integrated_gradients.integrated_gradients` (right Riemann sum)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    reference = torch.zeros_like(inputs) if baseline is None else torch.as_tensor(baseline).to(inputs).expand_as(inputs)
    delta = inputs - reference
    alphas = torch.arange(1, steps + 1, dtype=inputs.dtype, device=inputs.device).div_(steps)
    points = (reference + alphas.view(-1, *[1] * inputs.dim()) * delta).reshape(-1, *inputs.shape[1:])
    gradients = _input_gradient(model, points, target.repeat(steps))
    return delta * gradients.view(steps, *inputs.shape).mean(0)


_DIFFERENTIABLE: dict[str, Callable[..., Tensor]] = {
    "saliency": _saliency,
    "gradient_x_input": _gradient_x_input,
    "integrated_gradients": _integrated_gradients,
}

SECOND_ORDER_METHODS: tuple[str, ...] = tuple(_DIFFERENTIABLE)
"""Methods whose maps :func:`differentiable_attribution` can differentiate w.r.t. the input."""


def _check_method(method: str) -> Callable[..., Tensor]:
    if method not in _DIFFERENTIABLE:
        raise ValueError(
            f"method {method!r} has no second-order path: the explanation attack differentiates the map w.r.t. "
            "the input, which is defined for maps built from plain gradients (the modified backward rules of "
            f"eps-LRP/DeepLIFT and perturbation methods have none); choose one of {', '.join(SECOND_ORDER_METHODS)}"
        )
    return _DIFFERENTIABLE[method]


def differentiable_attribution(
    model: nn.Module, inputs: Tensor, target: Tensor, method: str = "saliency", **options: Any
) -> Tensor:
    """The attribution map of ``method`` as a differentiable function of ``inputs`` (second-order autograd).

    Same formulas and defaults as :func:`gradattr.attribute` for the methods in
    :data:`SECOND_ORDER_METHODS`, but computed with ``torch.autograd.grad(..., create_graph=True)``, so the
    result can be differentiated again (in a ReLU network, usefully only under :func:`.softplus_surrogate`).
    The model is called as it is (mode and parameter flags are the caller's to set).

    Args:
        model: a classifier mapping (B, ...) to logits (B, C).
        inputs: Tensor (B, ...); the map is differentiable w.r.t. it when it requires grad.
        target: LongTensor(B), the class attributed for each sample.
        method: ``"saliency"`` (option ``abs=True``), ``"gradient_x_input"`` or ``"integrated_gradients"``
            (options ``steps=100``, ``baseline=None`` for zeros, or a number or tensor broadcastable to x).

    Returns:
        Tensor (B, ...) with a graph back to ``inputs``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> x = torch.randn(2, 3, requires_grad=True)
        >>> saliency = differentiable_attribution(model, x, torch.tensor([0, 1]))
        >>> torch.autograd.grad(saliency.sum(), x)[0].shape
        torch.Size([2, 3])
    """
    function = _check_method(method)
    known = [p.name for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"the differentiable {method} takes the options {', '.join(known) or 'none'}, not {', '.join(unknown)}"
        )
    points = inputs if inputs.requires_grad else inputs.detach().requires_grad_()
    with torch.enable_grad():
        return function(model, points, target.to(points.device), **options)


# -- dissimilarities D --------------------------------------------------------------------------------------


def _shares(maps: Tensor) -> Tensor:
    """Ĩ = |I| / Σ|I| per sample, flattened: Tensor(B, N)."""
    magnitude = maps.reshape(maps.shape[0], -1).abs()
    return magnitude / magnitude.sum(1, keepdim=True).clamp_min(1e-12)


class _TopKShare:
    """D(I) = -Σ_{i ∈ B} Ĩ_i: minus the share of the map on the original top-k features B."""

    def __init__(self, original: Tensor, k: int) -> None:
        self.original, self.k = original, k
        flat = original.reshape(original.shape[0], -1).abs()
        self.chosen = torch.zeros_like(flat).scatter_(1, flat.topk(k, dim=1).indices, 1.0)

    def __call__(self, maps: Tensor) -> Tensor:
        return -(_shares(maps) * self.chosen).sum(1)

    def judge(self, maps: Tensor) -> Tensor:
        """Selection score of an iterate (larger is better): first a smaller top-k intersection with the
        original map (the measure reported), then a larger D. D ∈ [-1, 0] and the intersection moves in steps
        of 1/k, so -intersection + D / (k + 1) orders iterates lexicographically by the two."""
        return -topk_intersection(self.original, maps, self.k).to(maps.dtype) + self(maps) / (self.k + 1)


class _MassCenterShift:
    """D(I) = ‖C(I) - C(I(x_t))‖₂ with C(I) = Σ_i Ĩ_i · position_i over the spatial positions."""

    def __init__(self, original: Tensor) -> None:
        spatial = self._spatial(original).shape[1:]
        axes = [torch.arange(n, dtype=original.dtype, device=original.device) for n in spatial]
        grids = torch.meshgrid(*axes, indexing="ij")
        self.positions = torch.stack([g.reshape(-1) for g in grids], dim=1)  # (N, d)
        self.origin = self._center(original)

    @staticmethod
    def _spatial(maps: Tensor) -> Tensor:
        """|I| with the channels summed for images (B, C, H, W); otherwise |I| itself."""
        return maps.abs().sum(1) if maps.dim() == 4 else maps.abs()

    def _center(self, maps: Tensor) -> Tensor:
        return _shares(self._spatial(maps)) @ self.positions

    def __call__(self, maps: Tensor) -> Tensor:
        return (self._center(maps) - self.origin).norm(dim=1)

    def judge(self, maps: Tensor) -> Tensor:
        """Selection score of an iterate (larger is better): the centre's shift D itself."""
        return self(maps)


class _Dissimilarity(Protocol):
    """D (``__call__``, differentiable, per sample) and the score an iterate is selected by (``judge``)."""

    def __call__(self, maps: Tensor) -> Tensor: ...

    def judge(self, maps: Tensor) -> Tensor: ...


def _dissimilarity(objective: str, original: Tensor, k: int) -> _Dissimilarity:
    if objective == "topk":
        return _TopKShare(original, k)
    if objective == "mass_center":
        return _MassCenterShift(original)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(map(repr, OBJECTIVES))}")


# -- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PerturbationReport:
    """How one perturbation of each sample changed its prediction and its map.

    Attributes:
        inputs: the perturbed inputs (B, ...).
        label_kept: BoolTensor(B): the predicted label is the original one.
        topk_intersection: Tensor(B): share of the original top-k features still in the top k.
        spearman: Tensor(B): rank correlation of the original and the perturbed map.
        linf: Tensor(B): ‖x' - x‖∞.
    """

    inputs: Tensor
    label_kept: Tensor
    topk_intersection: Tensor
    spearman: Tensor
    linf: Tensor

    def summary(self) -> dict[str, float]:
        """Means over samples (Spearman: over samples where it is defined); ``linf``: the largest size."""
        return {
            "label_kept": float(self.label_kept.double().mean()),
            "topk_intersection": float(self.topk_intersection.mean()),
            "spearman": float(self.spearman.nanmean()),
            "linf": float(self.linf.max()),
        }


@dataclass(frozen=True, eq=False)
class ExplanationAttackResult:
    """The attack and the random baseline on the same samples.

    Attributes:
        labels: LongTensor(B), the model's predictions on the original inputs (the attributed classes).
        original_maps: the real network's maps of the original inputs (B, ...).
        attack: :class:`PerturbationReport` of the attack.
        random: :class:`PerturbationReport` of a random sign perturbation of the same ε.
        method, objective, epsilon, k: the settings.
    """

    labels: Tensor
    original_maps: Tensor
    attack: PerturbationReport
    random: PerturbationReport
    method: str
    objective: str
    epsilon: float
    k: int

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"attack": {...}, "random": {...}}`` of :meth:`PerturbationReport.summary`."""
        return {"attack": self.attack.summary(), "random": self.random.summary()}

    def __str__(self) -> str:
        samples = len(self.labels)
        header = f"{self.objective} attack on {self.method}, eps={self.epsilon:g}, k={self.k}, {samples} samples"
        rows = self.summary()
        columns = list(rows["attack"])
        lines = [header, f"{'':8}" + "".join(f"{c:>19}" for c in columns)]
        lines += [f"{name:8}" + "".join(f"{v:19.3f}" for v in values.values()) for name, values in rows.items()]
        return "\n".join(lines)


# -- the attack ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    """What every step needs: the model, the method and its options, the surrogate's β."""

    model: nn.Module
    method: str
    options: Mapping[str, Any]
    beta: float

    def real_maps(self, inputs: Tensor, labels: Tensor) -> Tensor:
        """The real (ReLU) network's maps, by :func:`gradattr.attribute`."""
        options = dict(self.options)
        baseline = options.pop("baseline", None)
        return attribute(self.model, inputs, self.method, target=labels, baseline=baseline, **options)

    def ascent_direction(self, inputs: Tensor, labels: Tensor, dissimilarity: _Dissimilarity) -> Tensor:
        """∇_x Σ_b D(I(x_b)) through the softplus surrogate."""
        point = inputs.detach().requires_grad_()
        with softplus_surrogate(self.beta), torch.enable_grad():
            maps = differentiable_attribution(self.model, point, labels, self.method, **self.options)
            return torch.autograd.grad(dissimilarity(maps).sum(), point)[0]

    @torch.no_grad()
    def predictions(self, inputs: Tensor) -> Tensor:
        """The predicted class of each sample, LongTensor(B)."""
        output = self.model(inputs)
        if output.dim() != 2 or output.shape[0] != inputs.shape[0]:
            raise ValueError(f"model output has shape {tuple(output.shape)}; expected ({inputs.shape[0]}, C) logits")
        return output.argmax(dim=1)

    def report(
        self, original: Tensor, perturbed: Tensor, labels: Tensor, original_maps: Tensor, k: int
    ) -> PerturbationReport:
        """Label kept, top-k intersection, Spearman and L∞ size of ``perturbed`` against ``original``."""
        maps = self.real_maps(perturbed, labels)
        return PerturbationReport(
            inputs=perturbed,
            label_kept=self.predictions(perturbed) == labels,
            topk_intersection=topk_intersection(original_maps, maps, k),
            spearman=spearman_per_sample(original_maps, maps),
            linf=LINF.size(perturbed - original),
        )


def _check_attack_arguments(inputs: Tensor, k: int | None, steps: int, step_size: float | None, beta: float) -> int:
    """Validate; returns k (default: a tenth of the features per sample, at least 1)."""
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point() or inputs.dim() < 2:
        raise TypeError("inputs must be a floating tensor (B, ...) with a batch dimension")
    features = inputs[0].numel()
    k = max(1, features // 10) if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= features:
        raise ValueError(f"k must be an int in 1..{features} (the features per sample), got {k!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if step_size is not None and not (isinstance(step_size, (int, float)) and 0 < step_size < math.inf):
        raise ValueError(f"step_size must be a finite number > 0 or None, got {step_size!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return k


def random_sign_perturbation(inputs: Tensor, epsilon: float, bounds: Bounds = (-1.0, 1.0), seed: int = 0) -> Tensor:
    """x + ε · s with independent random signs s_i ∈ {-1, +1}, clamped to ``bounds`` (Ghorbani et al.'s
    random baseline). Returns a tensor shaped like ``inputs``; the same ``seed`` gives the same signs."""
    epsilon = check_epsilon(epsilon)
    check_bounds(bounds)
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    signs = torch.randint(0, 2, inputs.shape, generator=generator, device=inputs.device).to(inputs.dtype) * 2 - 1
    return inputs + within_bounds(inputs, epsilon * signs, bounds)


def explanation_attack(
    model: nn.Module,
    inputs: Tensor,
    *,
    epsilon: float,
    method: str = "saliency",
    objective: Objective = "topk",
    k: int | None = None,
    steps: int = 50,
    step_size: float | None = None,
    beta: float = 10.0,
    bounds: Bounds = (-1.0, 1.0),
    method_options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> ExplanationAttackResult:
    """Ghorbani et al.'s iterative attack on the maps of ``inputs`` (AAAI 2019, Algorithm 1), batched.

    Each sample is attacked independently: P = ``steps`` projected sign-gradient steps of size α on the
    dissimilarity D (``objective``; see the module docstring) within ‖x - x_t‖∞ ≤ ε and ``bounds``, ∇D taken
    through the softplus-β surrogate; the returned input is the iterate of largest D, measured on the real
    network's map, among those that keep the predicted label (x_t when none does). The original and attacked
    maps are the real network's (:func:`gradattr.attribute`), for the originally predicted class.

    Args:
        model: a classifier mapping (B, ...) to logits (B, C); evaluated in eval mode, handed back unchanged.
        inputs: Tensor (B, ...) inside ``bounds``.
        epsilon: ε > 0, the L∞ radius of the perturbation.
        method: a method of :data:`SECOND_ORDER_METHODS`.
        objective: ``"topk"`` (lower the share of the original top-k features) or ``"mass_center"`` (move the
            map's centre of mass).
        k: size of the top-k set, for the objective and the reported intersection; default a tenth of the
            features per sample.
        steps: number P of iterations.
        step_size: α; default ε / 10 (so a sample can cross its ball several times).
        beta: β of the softplus surrogate.
        bounds: the valid input range (default [-1, 1], the scaling of :mod:`gradattr.data`), or ``None``.
        method_options: the method's options, e.g. ``{"steps": 20}`` for Integrated Gradients.
        seed: seed of the random baseline's signs.

    Returns:
        :class:`ExplanationAttackResult` with per-sample numbers for the attack and the random baseline.

    Example:
        >>> import torch
        >>> from gradattr.models import mnist_cnn
        >>> model = mnist_cnn((1, 8, 8), 10)
        >>> result = explanation_attack(model, torch.rand(4, 1, 8, 8) * 2 - 1, epsilon=0.1, steps=5)
        >>> bool(result.attack.label_kept.all())
        True
    """
    epsilon = check_epsilon(epsilon)
    k = _check_attack_arguments(inputs, k, steps, step_size, beta)
    _check_method(method)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(map(repr, OBJECTIVES))}")
    check_bounds(bounds)
    check_inputs_within(inputs, bounds)
    alpha = epsilon / 10 if step_size is None else float(step_size)
    x = inputs.detach()
    with preserved_model(model) as model:
        setting = _Setting(model, method, dict(method_options or {}), float(beta))
        labels = setting.predictions(x)
        original_maps = setting.real_maps(x, labels)
        dissimilarity = _dissimilarity(objective, original_maps, k)
        adversarial = _iterate(setting, x, labels, dissimilarity, epsilon, alpha, steps, bounds)
        noisy = random_sign_perturbation(x, epsilon, bounds, seed)
        return ExplanationAttackResult(
            labels=labels,
            original_maps=original_maps,
            attack=setting.report(x, adversarial, labels, original_maps, k),
            random=setting.report(x, noisy, labels, original_maps, k),
            method=method,
            objective=objective,
            epsilon=epsilon,
            k=k,
        )


def _iterate(
    setting: _Setting,
    x: Tensor,
    labels: Tensor,
    dissimilarity: _Dissimilarity,
    epsilon: float,
    alpha: float,
    steps: int,
    bounds: Bounds,
) -> Tensor:
    """Algorithm 1's loop: sign steps, projection, and the best label-keeping iterate per sample."""
    best = x.clone()
    best_score = dissimilarity.judge(setting.real_maps(x, labels))
    current = x
    for _ in range(steps):
        direction = setting.ascent_direction(current, labels, dissimilarity)
        delta = LINF.project(current - x + LINF.ascent(direction, alpha), epsilon)
        current = x + within_bounds(x, delta, bounds)
        score = dissimilarity.judge(setting.real_maps(current, labels))
        better = (setting.predictions(current) == labels) & (score > best_score)
        best[better] = current[better]
        best_score = torch.where(better, score, best_score)
    return best
