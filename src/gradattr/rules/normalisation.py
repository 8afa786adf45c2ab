"""Rules at the normalisation ops of torch (layer, RMS, group and instance norm), in one fused step.

A norm computes ``y = c · r`` with ``c = x − μ`` (no centring for RMS norm) and ``r = (w)^(−½)``,
``w = mean(c²) + ε``, over the normalised dimensions. Its rule is that of its decomposition — square (Rescale),
mean (linear), rsqrt (Rescale), product with the statistic ``r`` — which the engine applies op by op to norms
written by hand (:mod:`gradattr.engine.provenance`). For ``F.layer_norm`` and friends the same multipliers
are computed in one step, which is several times cheaper than dispatching the nine ops:

* held constant (AttnLRP, CP-LRP; Achtibat et al. 2024, Ali et al. 2022): ``r`` is a constant, so
  ``g_c = g · r`` and ``g_x = g_c − mean(g_c)`` (the centring's gradient);
* Shapley (DeepLIFT, exact): ``g_c = g (r + r̄)/2 + (c + c̄)/N · m_r · Σ g (c + c̄)/2`` with the rsqrt's
  Rescale multiplier ``m_r = (r − r̄)/(w − w̄)`` (its derivative at the midpoint where ``|w − w̄| ≤ 10⁻⁵``)
  and the square's ``c + c̄``; then ``g_x = g_c − mean(g_c)``;
* plain: the gradient.

``tests/test_rules_modern.py`` checks each against the decomposition written out by hand and against the
op-by-op path of a hand-written norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

RESCALE_THRESHOLD = 1e-5
"""As :class:`~gradattr.rules.elementwise.Rescale`: below it the secant becomes the midpoint derivative."""


@dataclass(frozen=True)
class Norm:
    """One normalisation: over ``dims`` of ``x``, with ``eps``, centred or not (RMS norm)."""

    dims: tuple[int, ...]
    eps: float
    centre: bool = True

    def pieces(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(c, w, r)``: the centred input, ``mean(c²) + ε`` and ``w^(−½)``."""
        c = x - x.mean(self.dims, keepdim=True) if self.centre else x
        w = c.square().mean(self.dims, keepdim=True) + self.eps
        return c, w, torch.rsqrt(w)

    def __call__(self, x: Tensor) -> Tensor:
        c, _, r = self.pieces(x)
        return c * r

    def uncentre(self, g_c: Tensor) -> Tensor:
        """The centring's backward: ``g − mean(g)`` (identity without centring)."""
        return g_c - g_c.mean(self.dims, keepdim=True) if self.centre else g_c


class _HeldStatistic(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, norm: Norm) -> Tensor:  # type: ignore[override]
        c, _, r = norm.pieces(x)
        ctx.norm = norm
        ctx.save_for_backward(r)
        return c * r

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (r,) = ctx.saved_tensors
        return ctx.norm.uncentre(grad * r), None


class _ShapleyNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, x_ref: Tensor, norm: Norm) -> Tensor:  # type: ignore[override]
        c, w, r = norm.pieces(x)
        c_ref, w_ref, r_ref = norm.pieces(x_ref)
        delta = w - w_ref
        close = delta.abs() <= RESCALE_THRESHOLD
        secant = (r - r_ref) / torch.where(close, torch.ones_like(delta), delta)
        m_r = torch.where(close, -0.5 * ((w + w_ref) / 2) ** -1.5, secant)
        ctx.norm = norm
        ctx.save_for_backward(c + c_ref, (r + r_ref) / 2, m_r)
        return c * r

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        c_sum, r_mid, m_r = ctx.saved_tensors
        norm: Norm = ctx.norm
        count = c_sum[(0,) * c_sum.dim()].new_tensor(1.0)
        for d in norm.dims:
            count = count * c_sum.shape[d]
        g_w = (grad * c_sum / 2).sum(norm.dims, keepdim=True) * m_r
        g_c = grad * r_mid + g_w * c_sum / count
        return norm.uncentre(g_c), None, None


def held_constant(x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
    """``norm(x)`` with the statistic held constant in the backward pass."""
    return _HeldStatistic.apply(x, norm)


def shapley(x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
    """``norm(x)`` with DeepLIFT's exact multipliers of its decomposition."""
    assert x_ref is not None, "DeepLIFT's normalisation rule needs the baseline's input"
    return _ShapleyNorm.apply(x, x_ref.to(x.dtype), norm)


def plain(x: Tensor, norm: Norm, x_ref: Tensor | None) -> Tensor:
    """``norm(x)`` with its gradient."""
    return norm(x)
