"""Rules at elementwise nonlinearities: what replaces the local gradient of an elementwise nonlinearity ``z -> f(z)``.

Ancona et al. (ICLR 2018), Sec. 3 and Table 1, show that eps-LRP and DeepLIFT (Rescale) are backward passes
of the plain chain rule in which the derivative ``f'(z)`` of every nonlinearity is swapped for a
*multiplier*:

* eps-LRP (their Eq. 7):   g(z) = f(z) / (z + eps * sign(z)),      sign(0) := +1
* DeepLIFT Rescale (Eq. 9): g(z) = (f(z) - f(z_ref)) / (z - z_ref), with f'((z + z_ref) / 2) where
  |z - z_ref| <= 1e-5 (the limit of the quotient, as the authors' code does)

Guided Backpropagation and Deconvnet (Springenberg et al. 2015; Zeiler & Fergus 2014; Nielsen et al., IEEE
SPM 2022, Sec. "Gradient-based methods") change only the backward of the rectifier ReLU:

* Guided Backprop: g = 1[z > 0] · max(grad_out, 0)
* Deconvnet:       g = max(grad_out, 0)          (the forward input's sign is ignored)

A rule is a small object: ``needs_reference`` says whether it needs the op's input ``z_ref`` in a forward
pass of the baseline, and ``backward`` maps the incoming gradient to the outgoing one. Which rule applies
where is data: a rule set (:mod:`gradattr.rulesets`). The engine never special-cases a method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

ElementwiseFunction = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Nonlinearity:
    """One intercepted call of an elementwise nonlinearity: ``f`` bound to the call's other arguments.

    ``rectifier`` marks f(z) = max(z, 0), for which rules may use cheaper closed forms; ``pointwise`` says
    ``f`` may be applied to any subset of the elements (its other arguments hold no tensors).
    """

    f: ElementwiseFunction
    rectifier: bool = False
    pointwise: bool = True

    def slope(self, z: Tensor) -> Tensor:
        """``f'(z)``."""
        return (z > 0).to(z.dtype) if self.rectifier else derivative(self.f, z)


Complete = Callable[[Tensor], Tensor | None]
"""Completes a rule's state from ``out = f(z)`` (see :meth:`ElementwiseRule.read`)."""


class ElementwiseRule(Protocol):
    """A replacement for the chain rule's local derivative at an elementwise nonlinearity.

    When the op runs, the engine calls ``read`` with ``z`` before ``f`` runs (an in-place op then overwrites
    ``z`` with no copy of it), and the function it returns with ``out = f(z)``; only what that returns is kept
    for ``backward``. A rule that is a multiplier ``m(z)`` so makes the backward one product.
    """

    needs_reference: bool

    def changes(self, op: Nonlinearity) -> bool:
        """Whether the rule replaces ``f'(z)`` at ``op`` (where it does not, the op runs as it is)."""
        ...

    def before_gradient(self, op: Nonlinearity) -> Callable[[Tensor], Tensor] | None:
        """A map of ``grad_out`` after which the op's own backward gives the rule (the op then runs as it is,
        with this map as a hook on its output), or ``None``."""
        ...

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        """Take what the backward needs from ``z`` (and the baseline's ``z_ref``); the result, given
        ``out = f(z)``, returns the backward's state."""
        ...

    def backward(self, op: Nonlinearity, state: Tensor | None, grad_out: Tensor) -> Tensor:
        """Gradient w.r.t. ``z`` given ``grad_out`` w.r.t. ``out = f(z)`` (``state`` may be overwritten)."""
        ...


def times(multiplier: Tensor, grad_out: Tensor) -> Tensor:
    """``multiplier · grad_out``, written into ``multiplier`` (a rule's own state) when the shapes allow."""
    return multiplier.mul_(grad_out) if multiplier.shape == grad_out.shape else multiplier * grad_out


def _ready(state: Tensor | None) -> Complete:
    """A state known from ``z`` alone."""
    return lambda out: state


class MultiplierRule:
    """A rule whose gradient is ``g = m(z) · grad_out``, the multiplier known when the op runs (Ancona et al.,
    ICLR 2018, Sec. 3: eps-LRP and DeepLIFT are the chain rule with ``f'`` swapped for such an ``m``)."""

    def changes(self, op: Nonlinearity) -> bool:
        return True

    def before_gradient(self, op: Nonlinearity) -> Callable[[Tensor], Tensor] | None:
        return None

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        raise NotImplementedError

    def backward(self, op: Nonlinearity, state: Tensor | None, grad_out: Tensor) -> Tensor:
        assert state is not None
        return times(state, grad_out)


def derivative(f: ElementwiseFunction, z: Tensor) -> Tensor:
    """``f'(z)`` of an elementwise function by autograd: the gradient of Σ f(z), exact for any ``f``."""
    with torch.enable_grad():
        point = z.detach().requires_grad_()
        return torch.autograd.grad(f(point).sum(), point)[0]


@dataclass(frozen=True)
class Gradient(MultiplierRule):
    """The plain chain rule: ``g = f'(z) · grad_out``."""

    needs_reference: bool = False

    def changes(self, op: Nonlinearity) -> bool:
        return False

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        return _ready(op.slope(z))


@dataclass(frozen=True)
class Epsilon(MultiplierRule):
    """eps-LRP (Ancona et al., Eq. 7; Bach et al. 2015): ``g(z) = f(z) / (z + eps * sign(z))``, sign(0)=+1.

    For a rectifier f(z) = max(z, 0) this is ``out / (out + eps)`` (0 where z <= 0), which needs no ``z``.
    """

    epsilon: float = 1e-4
    needs_reference: bool = False

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        if op.rectifier:
            return lambda out: torch.div(out, denominator := out + self.epsilon, out=denominator)
        # z + eps·sign(z) as (|z| + eps)·sign(z): one new tensor, three passes
        denominator = z.abs().add_(self.epsilon).copysign_(z)
        if not op.pointwise or bool(op.f(z.new_zeros(1)) != 0):  # f(0) ≠ 0: sign(-0.0) := +1 matters
            denominator.masked_fill_(z == 0, self.epsilon)
        return lambda out: torch.div(out, denominator, out=denominator)


@dataclass(frozen=True)
class Identity(MultiplierRule):
    """LRP's pass rule at an activation (Zennit ``Pass``; Montavon et al. 2019): relevance passes unchanged,
    ``f(z) · g_out = z · g_z``, i.e. ``g(z) = f(z) / z`` (``f'(0)`` at ``z = 0``; ``1[z > 0]`` for a ReLU)."""

    needs_reference: bool = False

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        if op.rectifier:
            return _ready((z > 0).to(z.dtype))
        zero = z == 0
        denominator = torch.where(zero, torch.ones_like(z), z)
        slope = op.slope(z) if bool(zero.any()) else None

        def complete(out: Tensor) -> Tensor:
            multiplier = out / denominator
            return multiplier if slope is None else torch.where(zero, slope, multiplier)

        return complete


@dataclass(frozen=True)
class Rescale(MultiplierRule):
    """DeepLIFT Rescale (Ancona et al., Eq. 9; Shrikumar et al. 2017).

    ``g(z) = (f(z) - f(z_ref)) / (z - z_ref)``; where ``|z - z_ref| <= threshold`` the quotient is replaced by
    its limit ``f'((z + z_ref) / 2)``, the derivative at the midpoint.
    """

    threshold: float = 1e-5
    needs_reference: bool = True

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        assert z_ref is not None, "Rescale needs the baseline's activation"
        delta_in = z - z_ref
        close: tuple[Tensor, ...] = ()
        distance = delta_in.abs()
        if distance.numel() and bool(distance.amin() <= self.threshold):  # a reduction first: few are close
            close = distance.le_(self.threshold).nonzero(as_tuple=True)
            if op.pointwise:  # f' at the few close elements only
                limit = op.slope((z[close] + z_ref.expand_as(z)[close]) / 2)
            else:
                limit = op.slope((z + z_ref) / 2)[close]

        def complete(out: Tensor) -> Tensor:
            multiplier = (out - op.f(z_ref)).div_(delta_in)
            if close:
                multiplier[close] = limit
            return multiplier

        return complete


class _RectifierRule(MultiplierRule):
    """A rule that changes only rectifiers; every other nonlinearity keeps ``f'(z)`` (a multiplier)."""

    def changes(self, op: Nonlinearity) -> bool:
        return op.rectifier


@dataclass(frozen=True)
class Guided(_RectifierRule):
    """Guided Backpropagation (Springenberg et al. 2015): at a ReLU, ``g = 1[z > 0] · max(grad_out, 0)``.

    Only rectifiers are changed, as in the method's definition (and in Captum and Zennit); every other
    nonlinearity keeps its derivative ``f'(z) · grad_out``.
    """

    needs_reference: bool = False

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        return _ready(z > 0 if op.rectifier else op.slope(z))

    def before_gradient(self, op: Nonlinearity) -> Callable[[Tensor], Tensor] | None:
        """At a rectifier, ``max(grad_out, 0)``: the ReLU's own backward then multiplies by ``1[z > 0]``."""
        return torch.relu if op.rectifier else None

    def backward(self, op: Nonlinearity, state: Tensor | None, grad_out: Tensor) -> Tensor:
        assert state is not None
        return grad_out.relu() * state if op.rectifier else times(state, grad_out)  # (in place, ×bool is slow)


@dataclass(frozen=True)
class Deconvolution(_RectifierRule):
    """Deconvnet (Zeiler & Fergus 2014): at a ReLU, ``g = max(grad_out, 0)``, whatever the sign of ``z``.

    Only rectifiers are changed; every other nonlinearity keeps its derivative ``f'(z) · grad_out``.
    """

    needs_reference: bool = False

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Complete:
        return _ready(None if op.rectifier else op.slope(z))

    def backward(self, op: Nonlinearity, state: Tensor | None, grad_out: Tensor) -> Tensor:
        return grad_out.clamp(min=0) if state is None else times(state, grad_out)
