"""Rules at ``softmax`` and ``log_softmax``, which couple all elements along their dimension.

* :class:`PlainSoftmax` — the plain gradient. For eps-LRP this *is* AttnLRP's softmax rule in
  gradient×input form (Achtibat et al., ICML 2024, Prop. 3.1: relevance ``x ⊙ J_softmax(x)ᵀ g``).
* :class:`ConstantSoftmax` — CP-LRP (Ali et al., ICML 2022): the attention weights are constants in the
  backward pass, so no relevance flows through ``softmax`` into queries and keys.
* :class:`DeepLiftSoftmax` — DeepLIFT through the decomposition ``e = exp(x)`` (Rescale), ``s = Σ e``
  (linear), ``r = 1/s`` (Rescale), ``y = e ⊙ r`` (Shapley split): exact summation-to-delta. Written out,
  with ``y = softmax(x)``, ``ȳ = softmax(x̄)``, ``ρ = exp(lse(x) − lse(x̄))`` and
  ``φ(t) = (1 − e^{−t}) / t`` (``φ(0) = 1``), the multiplier of that chain is

      g_x,i = φ(Δx_i) · y_i / 2 · [ g_i (1 + ρ) − Σ_j g_j (ρ y_j + ȳ_j) ]

  (at ``x̄ = x`` the plain softmax gradient). For ``log_softmax = x − log Σ exp(x)`` with ``δ = lse(x) −
  lse(x̄)``: ``g_x,i = g_i − (Σ_j g_j) · φ(Δx_i) y_i / φ(δ)``. Both are computed from ``y``, ``ȳ`` and
  log-sum-exps, so no ``exp`` overflows; masked entries (``−inf`` in both passes) get 0.
  ``tests/test_rules_modern.py`` checks them against the decomposition written out op by op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class SoftmaxCall:
    """One softmax call: the dimension, whether it is ``log_softmax``, and the result dtype."""

    dim: int
    log: bool = False
    dtype: torch.dtype | None = None

    def __call__(self, x: Tensor) -> Tensor:
        function = torch.log_softmax if self.log else torch.softmax
        return function(x, self.dim, dtype=self.dtype)


class SoftmaxRule(Protocol):
    needs_reference: bool

    def apply(self, call: SoftmaxCall, x: Tensor, x_ref: Tensor | None) -> Tensor:
        """``call(x)`` with this rule's backward."""
        ...


@dataclass(frozen=True)
class PlainSoftmax:
    """The plain gradient (AttnLRP's softmax rule in gradient×input form)."""

    needs_reference: bool = False

    def apply(self, call: SoftmaxCall, x: Tensor, x_ref: Tensor | None) -> Tensor:
        return call(x)


@dataclass(frozen=True)
class ConstantSoftmax:
    """CP-LRP: softmax outputs are constants in the backward pass (``log_softmax`` keeps its gradient)."""

    needs_reference: bool = False

    def apply(self, call: SoftmaxCall, x: Tensor, x_ref: Tensor | None) -> Tensor:
        return call(x) if call.log else call(x).detach()


def _phi(t: Tensor) -> Tensor:
    """``(1 − e^{−t}) / t`` with its limit 1 at ``t = 0``."""
    small = t.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 - t / 2, -torch.expm1(-safe) / safe)


def _centred(grad: Tensor, log_p: Tensor, dim: int) -> Tensor:
    """``g_i − Σ_j p_j g_j`` for the distribution ``p = exp(log_p)`` along ``dim``, without the cancellation of
    the plain formula where one ``p_top ≈ 1``: there it is ``Σ_{j≠top} p_j (g_top − g_j)``, from the other
    entries alone (the DeepLIFT multiplier scales this entry by up to e^{|Δx|}, so 1 − p_top must not be
    formed as a difference: on a row of logits near 30 that cost 1e-11 relative, 2e-4 of the completeness)."""
    p = torch.exp(log_p)
    centred = grad - (grad * p).sum(dim, keepdim=True)
    top = p.argmax(dim, keepdim=True)
    others = p.masked_fill(torch.zeros_like(p, dtype=torch.bool).scatter_(dim, top, True), 0.0)
    at_top = (others * (grad.gather(dim, top) - grad)).sum(dim, keepdim=True)
    return centred.scatter(dim, top, at_top)


class _DeepLiftSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, x_ref: Tensor, call: SoftmaxCall) -> Tensor:  # type: ignore[override]
        dim = call.dim
        lse, lse_ref = torch.logsumexp(x, dim, keepdim=True), torch.logsumexp(x_ref, dim, keepdim=True)
        log_y, log_y_ref = x - lse, (x_ref - lse_ref).expand_as(x)
        y = torch.exp(log_y)
        phi_y = torch.where(y > 0, _phi(x - x_ref) * y, torch.zeros_like(y))  # masked (-inf) entries: 0
        delta = lse - lse_ref
        ctx.call = call
        ctx.save_for_backward(log_y, log_y_ref, phi_y, delta)
        return call(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        log_y, log_y_ref, phi_y, delta = ctx.saved_tensors
        dim = ctx.call.dim
        grad = grad.to(log_y.dtype)
        if ctx.call.log:
            return grad - grad.sum(dim, keepdim=True) * phi_y / _phi(delta), None, None
        # g (1 + ρ) − Σ_j g_j (ρ y_j + ȳ_j) = (g − Σ ȳ_j g_j) + ρ (g − Σ y_j g_j), each centred stably
        bracket = _centred(grad, log_y_ref, dim) + torch.exp(delta) * _centred(grad, log_y, dim)
        return phi_y / 2 * bracket, None, None


@dataclass(frozen=True)
class DeepLiftSoftmax:
    """DeepLIFT through softmax's decomposition exp → sum → reciprocal → product (see the module doc)."""

    needs_reference: bool = True

    def apply(self, call: SoftmaxCall, x: Tensor, x_ref: Tensor | None) -> Tensor:
        assert x_ref is not None, "DeepLIFT's softmax rule needs the baseline's input"
        return _DeepLiftSoftmax.apply(x, x_ref.to(x.dtype), call)
