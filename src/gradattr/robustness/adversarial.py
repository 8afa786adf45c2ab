"""Adversarial examples (PGD), robust accuracy, adversarial training, and standard vs robust models compared.

Projected gradient descent (Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018, Sec. 2) maximises the loss over a ball around each input:

    δ^0 ~ U(ball) (random start),   δ^{t+1} = Π_ball(δ^t + α · ascent_‖·‖(∇_δ L(f(x + δ^t), y))),
    clamped so that x + δ stays in the data range; the adversarial example is x + δ^T;

with ascent = sign for L∞ and g/‖g‖₂ for L2 (:mod:`.norms`). Adversarial training solves Madry et al.'s
saddle-point problem (their Eq. 2.1) min_θ E[max_{δ ∈ ball} L(θ, x + δ, y)] by training on the PGD version
of every batch (:func:`adversarial_train`, through :func:`gradattr.training.train`'s ``perturb``). Nielsen et
al. (IEEE SPM 2022, "Robust Explainability") report that such models have gradients more aligned with the
image and more robust explanations; :func:`compare_models` measures that side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradattr.data.dataset import Dataset
from gradattr.engine import preserved_model
from gradattr.metrics import infidelity, max_sensitivity
from gradattr.robustness.attack import explanation_attack
from gradattr.robustness.norms import (
    Bounds,
    check_bounds,
    check_epsilon,
    check_inputs_within,
    get_norm,
    within_bounds,
)
from gradattr.training import TrainResult, accuracy, train

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``attack(model, x, y) -> x_adv``: adversarial inputs shaped like ``x`` (B, ...) for labels ``y`` (B,)."""


@dataclass(frozen=True)
class PGD:
    """Projected gradient descent on the cross-entropy loss (Madry et al., ICLR 2018), L∞ or L2, batched.

    Attributes:
        epsilon: radius ε > 0 of the ball.
        norm: ``"linf"`` or ``"l2"``.
        steps: number T >= 1 of gradient steps.
        step_size: α > 0; default 2.5 ε / T (Madry et al.'s setting reaches the ball's edge from anywhere).
        random_start: start from a uniform draw in the ball (Madry et al.) rather than from x.
        bounds: the data range (default [-1, 1], the scaling of :mod:`gradattr.data`), or ``None``.
        seed: seed of the random start for each call; ``None`` draws from torch's global generator (what
            adversarial training wants: :func:`gradattr.training.train` seeds it, and batches differ).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])
        >>> x_adv = PGD(epsilon=0.1, steps=3, seed=0)(model, x, y)
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """

    epsilon: float
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    bounds: Bounds = (-1.0, 1.0)
    seed: int | None = None

    def __post_init__(self) -> None:
        check_epsilon(self.epsilon)
        get_norm(self.norm)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if self.step_size is not None and not (
            isinstance(self.step_size, (int, float)) and 0 < self.step_size < math.inf
        ):
            raise ValueError(f"step_size must be a finite number > 0 or None, got {self.step_size!r}")
        check_bounds(self.bounds)

    @property
    def alpha(self) -> float:
        """The step size α actually used."""
        return 2.5 * self.epsilon / self.steps if self.step_size is None else float(self.step_size)

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, *, start: Tensor | None = None) -> Tensor:
        """Adversarial examples for ``inputs`` (B, ...) with labels ``labels`` (B,).

        The model runs in eval mode with frozen parameters while attacked, and is handed back with its modes
        and ``requires_grad`` flags as they were (also when the call raises).

        Args:
            model: a classifier mapping (B, ...) to logits (B, C).
            inputs: Tensor (B, ...) inside ``bounds``.
            labels: LongTensor(B), the classes whose loss is increased.
            start: the initial perturbation δ^0 (B, ...) instead of the random start (projected into the ball).

        Returns:
            x + δ^T, shape and dtype of ``inputs``, detached.
        """
        check_inputs_within(inputs, self.bounds)
        if labels.shape != inputs.shape[:1]:
            raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({inputs.shape[0]},)")
        norm = get_norm(self.norm)
        x = inputs.detach()
        delta = self._start(x) if start is None else norm.project(start.detach().to(x), self.epsilon)
        delta = within_bounds(x, delta, self.bounds)
        with preserved_model(model, warn=False) as model, torch.enable_grad():
            for _ in range(self.steps):
                delta = delta.requires_grad_()
                loss = F.cross_entropy(model(x + delta), labels, reduction="sum")
                gradient = torch.autograd.grad(loss, delta)[0]
                delta = norm.project(delta.detach() + norm.ascent(gradient, self.alpha), self.epsilon)
                delta = within_bounds(x, delta, self.bounds)
        adversarial = x + delta
        return adversarial if self.bounds is None else adversarial.clamp(*self.bounds)

    def _start(self, x: Tensor) -> Tensor:
        if not self.random_start:
            return torch.zeros_like(x)
        generator = None if self.seed is None else torch.Generator(device=x.device).manual_seed(self.seed)
        return get_norm(self.norm).random(x, self.epsilon, generator)


def robust_accuracy(model: nn.Module, inputs: Tensor, labels: Tensor, attack: Attack, batch_size: int = 256) -> float:
    """Accuracy on ``attack(model, x, y)`` (Madry et al.'s adversarial accuracy), in batches.

    Args:
        model: a classifier; handed back in the mode it came in.
        inputs: Tensor (N, ...); labels: LongTensor(N).
        attack: e.g. ``PGD(epsilon=0.1)``.
        batch_size: samples attacked at once.

    Returns:
        The fraction of samples still classified correctly after the attack, in [0, 1].

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> 0.0 <= robust_accuracy(model, torch.zeros(3, 4), torch.tensor([0, 1, 0]), PGD(0.1, seed=0)) <= 1.0
        True
    """
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    if len(inputs) == 0:
        raise ValueError("no samples to attack")
    adversarial = torch.cat(
        [
            attack(model, inputs[i : i + batch_size], labels[i : i + batch_size])
            for i in range(0, len(inputs), batch_size)
        ]
    )
    return accuracy(model, adversarial, labels)


def adversarial_train(
    model: nn.Module, data: Dataset, *, attack: Attack | None = None, **train_options: Any
) -> tuple[nn.Module, TrainResult]:
    """Madry et al.'s adversarial training: :func:`gradattr.training.train` on the PGD version of each batch.

    Every training batch (x, y) is replaced by ``attack(model, x, y)`` before the parameter update, which
    minimises the loss at the (approximate) worst case in the ball, Madry et al.'s Eq. 2.1. Validation and
    early stopping use clean data, as in :func:`~gradattr.training.train`; the ``train_*`` numbers of the
    history are on the adversarial batches.

    Args:
        model: the classifier to train (trained in place and returned).
        data: the data set.
        attack: the inner maximisation; default ``PGD(epsilon=0.1, steps=7)`` (L∞, for inputs in [-1, 1]).
        **train_options: passed to :func:`~gradattr.training.train` (``epochs``, ``lr``, ``seed``, ...).

    Returns:
        ``(model, result)`` as :func:`~gradattr.training.train` returns them.

    Example:
        >>> from gradattr.data import load_digits
        >>> from gradattr.models import mnist_mlp
        >>> model, result = adversarial_train(mnist_mlp((1, 8, 8), 10), load_digits(), epochs=1, progress=False)
        >>> result.test_accuracy > 0.5
        True
    """
    if "perturb" in train_options:
        raise TypeError("adversarial_train sets perturb itself; pass the attack as attack=...")
    return train(model, data, perturb=attack if attack is not None else PGD(epsilon=0.1, steps=7), **train_options)


@dataclass(frozen=True, eq=False)
class ModelComparison:
    """Standard vs robust model, one row per measure (see :func:`compare_models`).

    Attributes:
        rows: ``{"measure", "standard", "robust", "better"}`` dicts; ``better`` is ``"higher"`` or ``"lower"``.
        settings: the attacks and sample counts behind the numbers.
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def value(self, measure: str, model: str) -> float:
        """The number of ``measure`` for ``model`` (``"standard"`` or ``"robust"``)."""
        for row in self.rows:
            if row["measure"] == measure:
                return float(row[model])
        raise KeyError(f"no measure {measure!r}; measures: {', '.join(r['measure'] for r in self.rows)}")

    def to_dict(self) -> dict[str, Any]:
        """Rows and settings as JSON-ready values (NaN as ``None``)."""
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in self.rows]
        return {"columns": ["measure", "standard", "robust", "better"], "rows": rows, "settings": dict(self.settings)}

    def __str__(self) -> str:
        width = max(len("measure"), *(len(r["measure"]) for r in self.rows))
        lines = [f"{'measure':<{width}} {'standard':>9} {'robust':>9}  better"]
        lines += [f"{r['measure']:<{width}} {r['standard']:9.3f} {r['robust']:9.3f}  {r['better']}" for r in self.rows]
        return "\n".join(lines)


def compare_models(
    standard: nn.Module,
    robust: nn.Module,
    data: Dataset,
    *,
    attack: Attack,
    samples: int | None = 200,
    method: str = "saliency",
    explanation_epsilon: float = 0.1,
    explanation_steps: int = 20,
    k: int | None = None,
    bounds: Bounds = (-1.0, 1.0),
    seed: int = 0,
) -> ModelComparison:
    """Accuracy, robust accuracy and robustness of explanations of two models on the same test samples.

    Rows (each for both models): clean test accuracy; accuracy under ``attack`` (:func:`robust_accuracy`);
    for the explanation attack of Ghorbani et al. (:func:`~.attack.explanation_attack`, top-k objective, on
    ``method``'s maps): mean top-k intersection and Spearman correlation between original and attacked maps,
    the top-k intersection under random sign noise of the same ε, and the share of samples whose label the
    attack kept; max-sensitivity (Yeh et al. 2019) of the same maps over uniform noise in the same ε ball and
    their infidelity (Yeh et al. 2019, Gaussian perturbations), both with ``normalise=True`` so that models
    whose gradients differ in scale compare (:mod:`gradattr.metrics`). Every map explains the class the
    model predicts on the clean input.

    Args:
        standard, robust: two classifiers for ``data`` (e.g. from :func:`~gradattr.training.train` and
            :func:`adversarial_train`); handed back unchanged.
        data: the data set; its first ``samples`` test samples are used (``None``: all).
        attack: the attack for robust accuracy, e.g. ``PGD(epsilon=0.1)``.
        method: the attribution method attacked (one of :data:`~.attack.SECOND_ORDER_METHODS`).
        explanation_epsilon, explanation_steps, k: ε, steps and k of the explanation attack.
        bounds: the data range for the explanation attack (default [-1, 1]), or ``None``.
        seed: seed of the random baseline and of the metrics' draws.

    Returns:
        A :class:`ModelComparison`; ``str()`` of it is a table.
    """
    count = len(data.test_y) if samples is None else min(samples, len(data.test_y))
    if count < 1:
        raise ValueError(f"samples must be >= 1 or None, got {samples!r}")
    x, y = data.test_x[:count], data.test_y[:count]
    measured = [
        _measures(
            model, x, y, attack, _ExplanationMeasures(method, explanation_epsilon, explanation_steps, k, bounds, seed)
        )
        for model in (standard, robust)
    ]
    rows = [
        {"measure": name, "standard": measured[0][name], "robust": measured[1][name], "better": better}
        for name, better in _BETTER.items()
    ]
    settings = {
        "samples": count,
        "attack": repr(attack),
        "method": method,
        "explanation_epsilon": explanation_epsilon,
        "explanation_steps": explanation_steps,
        "k": k,
        "bounds": bounds,
        "seed": seed,
    }
    return ModelComparison(rows, settings)


_BETTER: dict[str, str] = {
    "accuracy": "higher",
    "robust accuracy": "higher",
    "top-k intersection under attack": "higher",
    "spearman under attack": "higher",
    "top-k intersection under noise": "higher",
    "label kept by explanation attack": "higher",
    "max-sensitivity (normalised)": "lower",
    "infidelity (normalised)": "lower",
}
"""The measures of :func:`compare_models` and which direction is better."""


@dataclass(frozen=True)
class _ExplanationMeasures:
    """How :func:`compare_models` measures the explanations of one model: the attack, sensitivity, fidelity."""

    method: str
    epsilon: float
    steps: int
    k: int | None
    bounds: Bounds
    seed: int

    def __call__(self, model: nn.Module, x: Tensor) -> dict[str, float]:
        fragility = explanation_attack(
            model, x, epsilon=self.epsilon, method=self.method, steps=self.steps, k=self.k, bounds=self.bounds,
            seed=self.seed,
        )  # fmt: skip
        summary = fragility.summary()
        labels, maps = fragility.labels, fragility.original_maps
        sensitivity = max_sensitivity(
            model, x, self.method, target=labels, radius=self.epsilon, normalise=True, seed=self.seed
        )
        unfaithful = infidelity(model, x, maps, target=labels, normalise=True, seed=self.seed)
        return {
            "top-k intersection under attack": summary["attack"]["topk_intersection"],
            "spearman under attack": summary["attack"]["spearman"],
            "top-k intersection under noise": summary["random"]["topk_intersection"],
            "label kept by explanation attack": summary["attack"]["label_kept"],
            "max-sensitivity (normalised)": float(sensitivity.mean()),
            "infidelity (normalised)": float(unfaithful.mean()),
        }


def _measures(
    model: nn.Module, x: Tensor, y: Tensor, attack: Attack, explanations: _ExplanationMeasures
) -> dict[str, float]:
    return {
        "accuracy": accuracy(model, x, y),
        "robust accuracy": robust_accuracy(model, x, y, attack),
        **explanations(model, x),
    }
