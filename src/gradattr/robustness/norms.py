"""Perturbation norms for projected-gradient attacks: steepest-ascent step, projection, random start.

Projected gradient ascent (Madry et al., ICLR 2018, Sec. 2, Eq. 2: x^{t+1} = Π_{x+S}(x^t + α sign(∇_x L)))
maximises a loss over perturbations δ in the ball S = {‖δ‖ ≤ ε}. Each norm says three things, per sample
(the first dimension is the batch):

* ``ascent(g, α)`` — the step of length α (in that norm) that increases the loss most to first order:
  L∞: α·sign(g);  L2: α·g/‖g‖₂;
* ``project(δ, ε)`` — the nearest point of the ball:  L∞: clamp(δ, -ε, ε);  L2: δ·min(1, ε/‖δ‖₂);
* ``random(like, ε)`` — a uniform draw from the ball (the random start):  L∞: U(-ε, ε) per feature;
  L2: a uniform direction times radius ε·U^{1/d} for d features.

The same loop then serves both norms (:class:`gradattr.robustness.adversarial.PGD`), and the explanation
attack (:mod:`gradattr.robustness.attack`) takes its L∞ steps with :data:`LINF`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

_TINY = 1e-12
"""Guards divisions by a norm that is zero (a zero gradient gives a zero step)."""


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) tensor to broadcast against ``like`` (B, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


class Norm(Protocol):
    """A perturbation norm: its name, the size of δ, the ascent step, projection and random start."""

    name: str

    def size(self, delta: Tensor) -> Tensor:
        """‖δ_i‖ per sample: Tensor(B)."""
        ...

    def ascent(self, gradient: Tensor, step_size: float) -> Tensor:
        """The step of norm ``step_size`` in the direction of steepest ascent of the loss."""
        ...

    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        """The nearest point to ``delta`` in the ball of radius ``epsilon``."""
        ...

    def random(self, like: Tensor, epsilon: float, generator: torch.Generator | None) -> Tensor:
        """A uniform draw from the ball, shaped like ``like``."""
        ...


@dataclass(frozen=True)
class LInf:
    """The L∞ norm max_i |δ_i|: sign steps, elementwise clamping."""

    name: str = "linf"

    def size(self, delta: Tensor) -> Tensor:
        return delta.reshape(delta.shape[0], -1).abs().amax(dim=1)

    def ascent(self, gradient: Tensor, step_size: float) -> Tensor:
        return step_size * gradient.sign()

    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        return delta.clamp(-epsilon, epsilon)

    def random(self, like: Tensor, epsilon: float, generator: torch.Generator | None) -> Tensor:
        uniform = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return (2 * uniform - 1) * epsilon


@dataclass(frozen=True)
class L2:
    """The Euclidean norm ‖δ‖₂ over all features of a sample: normalised-gradient steps, radial projection."""

    name: str = "l2"

    def size(self, delta: Tensor) -> Tensor:
        return delta.reshape(delta.shape[0], -1).norm(dim=1)

    def ascent(self, gradient: Tensor, step_size: float) -> Tensor:
        return step_size * gradient / _per_sample(self.size(gradient).clamp_min(_TINY), gradient)

    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        factor = (epsilon / self.size(delta).clamp_min(_TINY)).clamp_max(1.0)
        return delta * _per_sample(factor, delta)

    def random(self, like: Tensor, epsilon: float, generator: torch.Generator | None) -> Tensor:
        direction = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        direction = direction / _per_sample(self.size(direction).clamp_min(_TINY), like)
        features = like[0].numel()
        uniform = torch.rand(like.shape[0], generator=generator, dtype=like.dtype, device=like.device)
        return direction * _per_sample(epsilon * uniform.pow(1.0 / features), like)


LINF = LInf()
NORMS: dict[str, Norm] = {"linf": LINF, "l2": L2()}
"""The norms by name."""


def get_norm(name: str) -> Norm:
    """The norm called ``name`` (``"linf"`` or ``"l2"``); anything else is a ``ValueError``."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(map(repr, NORMS))}")
    return NORMS[name]


Bounds = tuple[float, float] | None
"""The valid input range (low, high), or ``None`` for none."""


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_bounds(bounds: Bounds) -> None:
    """``bounds`` must be ``None`` or two finite numbers low < high."""
    if bounds is None:
        return
    pair = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(map(_is_finite_number, bounds))
    if not pair or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be None or two finite numbers (low, high) with low < high, got {bounds!r}")


def check_inputs_within(inputs: Tensor, bounds: Bounds) -> None:
    """Inputs outside ``bounds`` cannot be perturbed within them: a ``ValueError`` naming the range found."""
    if bounds is None or inputs.numel() == 0:
        return
    low, high = float(inputs.min()), float(inputs.max())
    if low < bounds[0] or high > bounds[1]:
        raise ValueError(
            f"inputs range over [{low:.4g}, {high:.4g}], outside bounds {tuple(bounds)}; pass the data's range as "
            "bounds (or None)"
        )


def within_bounds(inputs: Tensor, delta: Tensor, bounds: Bounds) -> Tensor:
    """The perturbation that keeps ``inputs + delta`` in ``bounds``: clamp(x + δ, low, high) - x.

    For x inside the bounds every |component| only shrinks, so δ stays in any ε ball it was in.
    """
    if bounds is None:
        return delta
    return (inputs + delta).clamp(bounds[0], bounds[1]) - inputs


def check_epsilon(epsilon: float) -> float:
    """ε must be a finite number > 0; returned as a float."""
    if not _is_finite_number(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)
