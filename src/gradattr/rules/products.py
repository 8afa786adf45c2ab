"""Rules at products of two input-dependent tensors: ``c = a ⊙ b``, ``C = A B``, ``bmm``, ``einsum``.

A product ``p(a, b)`` is linear in each factor separately (bilinear). Its plain gradient sends
``∂p/∂a = b`` and ``∂p/∂b = a`` back, which is right for the gradient methods but breaks the two rule-based
methods (Achtibat et al., "AttnLRP", ICML 2024; Shrikumar et al., ICML 2017):

* :class:`Uniform` — AttnLRP's uniform rule [Achtibat et al., Eq. 7]: each of the ``k`` input-dependent
  factors receives the plain gradient divided by ``k``, so relevance ``c · g_c`` is split evenly between
  the factors (in gradient×input form; ``k = 2`` here).
* :class:`ShapleySplit` — DeepLIFT's exact rule for a two-player game: with midpoints
  ``a_m = (a + ā)/2``, ``b_m = (b + b̄)/2`` the backward uses ``∂p/∂a := p(·, b_m)`` and ``∂p/∂b := p(a_m, ·)``.
  Because ``p`` is bilinear, ``p(a, b) − p(ā, b̄) = p(Δa, b_m) + p(a_m, Δb)`` exactly (expand both sides), so
  DeepLIFT's summation-to-delta survives every product (the Shapley values of the two-factor game).
* :class:`HoldConstant` — for a normalisation ``x ⊙ s`` with ``s`` a per-row statistic (layer/RMS norm's
  ``1/σ``): ``s`` is a constant in the backward pass (AttnLRP and CP-LRP, Ali et al. ICML 2022), so all
  relevance goes to ``x`` through the centring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from gradattr.rules import normalisation
from gradattr.rules.normalisation import Norm

Bilinear = Callable[[Tensor, Tensor], Tensor]
"""The product with every argument but its two input-dependent factors bound."""


class ProductRule(Protocol):
    """How the backward pass splits a product of two input-dependent factors ``a``, ``b``."""

    needs_reference: bool

    def apply(
        self, product: Bilinear, a: Tensor, b: Tensor, references: tuple[Tensor, Tensor] | None, constant: int | None
    ) -> Tensor:
        """``product(a, b)`` with this rule's backward; ``references``: the factors' values on the baseline;
        ``constant``: index of the factor that is a per-row statistic (normalisations), else ``None``."""
        ...

    def normalise(self, x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
        """A torch norm op ``norm(x) = c · r`` with this rule at its product with the statistic, in one step
        (:mod:`gradattr.rules.normalisation`)."""
        ...


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` (a number or a tensor of ``x``'s shape) backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float | Tensor) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` whose gradient is multiplied by ``factor`` on the way back."""
    return _ScaleGradient.apply(x, factor)


def scale_gradient_by(x: Tensor, factor: Tensor) -> Tensor:
    """``x`` whose gradient is multiplied elementwise by ``factor`` (same shape) on the way back."""
    return _ScaleGradient.apply(x, factor)


@dataclass(frozen=True)
class Plain:
    """The product's plain gradient (Gradient*Input, IG, Guided Backprop: the method *is* the gradient)."""

    needs_reference: bool = False

    def apply(
        self, product: Bilinear, a: Tensor, b: Tensor, references: tuple[Tensor, Tensor] | None, constant: int | None
    ) -> Tensor:
        return product(a, b)

    def normalise(self, x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
        return normalisation.plain(x, norm, x_ref)


@dataclass(frozen=True)
class Uniform:
    """AttnLRP's uniform rule (Achtibat et al. 2024, Eq. 7): each factor gets the plain gradient ÷ 2."""

    needs_reference: bool = False

    def apply(
        self, product: Bilinear, a: Tensor, b: Tensor, references: tuple[Tensor, Tensor] | None, constant: int | None
    ) -> Tensor:
        return product(scale_gradient(a, 0.5), scale_gradient(b, 0.5))

    def normalise(self, x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
        c, _, r = norm.pieces(x)
        return scale_gradient(c, 0.5) * scale_gradient(r, 0.5)


@dataclass(frozen=True)
class HoldConstant:
    """The statistic factor of a normalisation is a constant in the backward pass (AttnLRP, CP-LRP): the
    relevance of ``x ⊙ s`` flows to ``x`` only. A product without a statistic factor gets ``otherwise``."""

    otherwise: ProductRule = Uniform()
    needs_reference: bool = False

    def apply(
        self, product: Bilinear, a: Tensor, b: Tensor, references: tuple[Tensor, Tensor] | None, constant: int | None
    ) -> Tensor:
        if constant == 0:
            return product(a.detach(), b)
        if constant == 1:
            return product(a, b.detach())
        return self.otherwise.apply(product, a, b, references, constant)

    def normalise(self, x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
        return normalisation.held_constant(x, norm, x_ref)


class _Shapley(torch.autograd.Function):
    """``p(a, b)`` forward; backward ``(J_a(b_m)ᵀ g, J_b(a_m)ᵀ g)`` by one vjp of ``p`` at the midpoints."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, a_mid: Tensor, b_mid: Tensor, product: Bilinear) -> Tensor:  # type: ignore[override]
        ctx.product = product
        ctx.save_for_backward(a_mid, b_mid)
        ctx.shapes = (a.shape, b.shape)
        return product(a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a_mid, b_mid = ctx.saved_tensors
        with torch.enable_grad():
            a_leaf = a_mid.detach().requires_grad_()
            b_leaf = b_mid.detach().requires_grad_()
            # p is bilinear: its Jacobian in a depends on b only (and vice versa), so one vjp at the midpoints
            # gives both factors' Shapley multipliers
            grad_a, grad_b = torch.autograd.grad(ctx.product(a_leaf, b_leaf), (a_leaf, b_leaf), grad)
        return _sum_to(grad_a, ctx.shapes[0]), _sum_to(grad_b, ctx.shapes[1]), None, None, None


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """``grad`` summed over the dimensions that broadcasting added (a midpoint may be larger than its factor
    when the baseline's rows were expanded)."""
    if grad.shape == shape:
        return grad
    extra = grad.dim() - len(shape)
    grad = grad.sum(dim=tuple(range(extra))) if extra else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


@dataclass(frozen=True)
class ShapleySplit:
    """DeepLIFT at a product: ``∂p/∂a := p(·, (b + b̄)/2)``, ``∂p/∂b := p((a + ā)/2, ·)`` — exact
    summation-to-delta for any bilinear ``p`` (see the module doc)."""

    needs_reference: bool = True

    def apply(
        self, product: Bilinear, a: Tensor, b: Tensor, references: tuple[Tensor, Tensor] | None, constant: int | None
    ) -> Tensor:
        assert references is not None, "the Shapley split needs the baseline's factors"
        a_ref, b_ref = references
        a_mid = (a.detach() + a_ref) / 2
        b_mid = (b.detach() + b_ref) / 2
        if a_mid.shape != a.shape:
            a_mid = a_mid.expand(a.shape)
        if b_mid.shape != b.shape:
            b_mid = b_mid.expand(b.shape)
        return _Shapley.apply(a, b, a_mid, b_mid, product)

    def normalise(self, x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
        return normalisation.shapley(x, norm, x_ref)
