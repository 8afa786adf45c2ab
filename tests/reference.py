"""Independent, deliberately naive reference implementations (no ``gradattr`` import).

Scope: ``nn.Sequential`` networks built from

* linear layers ``Linear``, ``Conv2d``, ``Flatten``, ``AvgPool2d`` (their backward is the exact
  vector-Jacobian product, computed with :func:`torch.autograd.functional.vjp`), and
* elementwise nonlinearities ``ReLU``, ``Tanh``, ``Sigmoid``, ``Softplus`` (their backward is replaced by
  a *multiplier* chosen by the attribution rule, Ancona et al. ICLR 2018, Table 1).

Notation follows ``/work/shared/SPEC.md``: ``S_c`` is the target logit, ``x̄`` the baseline, ``z`` the
input of a nonlinearity ``f`` for ``x`` and ``z̄`` its input for ``x̄``.

The modified gradient is propagated layer by layer, from ``g_L = onehot(c)`` at the output down to the
input::

    linear layer  a_out = h(a_in):   g_in = (∂h/∂a_in)^T g_out          (exact VJP)
    nonlinearity  a_out = f(z):      g_in = m(z, z̄) * g_out             (rule multiplier m)

with the multipliers

    gradient   m = f'(z)
    eps-LRP    m = f(z) / (z + ε·sign(z)),  sign(0) := +1
    Rescale    m = (f(z) - f(z̄)) / (z - z̄),   or f'((z + z̄) / 2) where |z - z̄| <= 1e-5

Also brute-force Occlusion (a Python loop over window positions), right-Riemann Integrated Gradients
(every path point written out, alphas k/m in float64) and "exact" Integrated Gradients by Gauss-Legendre
quadrature. Short and easy to check by eye rather than fast.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

LINEAR_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.Flatten, nn.AvgPool2d)
ELEMENTWISE_LAYERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus)

RESCALE_THRESHOLD = 1e-5
"""``|z - z̄|`` at or below which Rescale uses ``f'((z + z̄) / 2)`` (SPEC)."""

Multiplier = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``(f, z, z̄) -> m``: the local backward multiplier of the elementwise layer ``f``."""


def _as_targets(target: int | Sequence[int] | Tensor, batch: int) -> Tensor:
    """Target class per sample as a LongTensor of shape ``(batch,)``."""
    t = torch.as_tensor(target, dtype=torch.long)
    return t.expand(batch) if t.dim() == 0 else t


def target_logits(model: nn.Module, x: Tensor, target: int | Sequence[int] | Tensor) -> Tensor:
    """``S_c(x)`` per sample, shape ``(B,)`` (differentiable when ``x`` requires grad)."""
    out = model(x)
    return out.gather(1, _as_targets(target, x.shape[0]).view(-1, 1)).squeeze(1)


def derivative(f: nn.Module, z: Tensor) -> Tensor:
    """``f'(z)`` of an elementwise layer, elementwise (autograd of ``Σ f(z)``)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(z).sum(), z)
    return g


def gradient_multiplier(f: nn.Module, z: Tensor, z_ref: Tensor) -> Tensor:
    """Plain chain rule: ``m = f'(z)``."""
    return derivative(f, z)


def epsilon_multiplier(epsilon: float) -> Multiplier:
    """eps-LRP: ``m = f(z) / (z + ε·sign(z))`` with ``sign(0) = +1``."""

    def m(f: nn.Module, z: Tensor, z_ref: Tensor) -> Tensor:
        sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
        return f(z) / (z + epsilon * sign)

    return m


def rescale_multiplier(f: nn.Module, z: Tensor, z_ref: Tensor) -> Tensor:
    """DeepLIFT Rescale: ``m = (f(z) - f(z̄)) / (z - z̄)``; ``f'((z + z̄) / 2)`` where ``|z - z̄| <= 1e-5``."""
    dz = z - z_ref
    close = dz.abs() <= RESCALE_THRESHOLD
    secant = (f(z) - f(z_ref)) / torch.where(close, torch.ones_like(dz), dz)
    return torch.where(close, derivative(f, (z + z_ref) / 2), secant)


def activations(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    """``[a_0 = x, a_1, ..., a_L]``: the input and every layer's output, detached."""
    acts = [x.detach()]
    with torch.no_grad():
        for layer in model:
            acts.append(layer(acts[-1]))
    return acts


def modified_gradient(
    model: nn.Sequential,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    multiplier: Multiplier,
    baseline: Tensor | None = None,
) -> Tensor:
    """``∂S_c/∂x`` with every elementwise layer's local derivative replaced by ``multiplier``.

    ``baseline`` (default zeros) only feeds ``z̄`` to the multiplier. Layers outside
    ``LINEAR_LAYERS + ELEMENTWISE_LAYERS`` raise ``TypeError``.
    """
    x_ref = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    acts, ref_acts = activations(model, x), activations(model, x_ref)
    out = acts[-1]
    grad = torch.zeros_like(out)
    grad[torch.arange(x.shape[0]), _as_targets(target, x.shape[0])] = 1.0
    for i in reversed(range(len(model))):
        layer = model[i]
        if isinstance(layer, ELEMENTWISE_LAYERS):
            grad = grad * multiplier(layer, acts[i], ref_acts[i])
        elif isinstance(layer, LINEAR_LAYERS):
            _, grad = torch.autograd.functional.vjp(layer, acts[i], grad)
        else:
            raise TypeError(f"reference does not handle layer {type(layer).__name__}")
    return grad.detach()


def gradient(model: nn.Sequential, x: Tensor, target: int | Sequence[int] | Tensor) -> Tensor:
    """Plain ``∂S_c/∂x``, propagated layer by layer."""
    return modified_gradient(model, x, target, gradient_multiplier)


def epsilon_lrp(model: nn.Sequential, x: Tensor, target: int | Sequence[int] | Tensor, epsilon: float = 1e-4) -> Tensor:
    """eps-LRP in Ancona's modified-gradient form: ``R = x ⊙ g_ε``."""
    return x * modified_gradient(model, x, target, epsilon_multiplier(epsilon))


def deeplift_rescale(
    model: nn.Sequential,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    baseline: Tensor | None = None,
) -> Tensor:
    """DeepLIFT (Rescale): ``R = (x - x̄) ⊙ g_rescale``."""
    x_ref = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    return (x - x_ref) * modified_gradient(model, x, target, rescale_multiplier, x_ref)


def min_rescale_gap(model: nn.Sequential, x: Tensor, baseline: Tensor | None = None) -> float:
    """``min |z - z̄|`` over all inputs of elementwise layers.

    Above ``RESCALE_THRESHOLD`` no implementation's small-difference fallback is active, so
    different fallback conventions (SPEC's midpoint derivative, Captum's ``|Δ| < 1e-10``) coincide.
    """
    x_ref = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    acts, ref_acts = activations(model, x), activations(model, x_ref)
    gaps = [
        (acts[i] - ref_acts[i]).abs().min().item()
        for i, layer in enumerate(model)
        if isinstance(layer, ELEMENTWISE_LAYERS)
    ]
    return min(gaps)


def path_gradient_sum(
    model: nn.Module,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    x_ref: Tensor,
    alphas: Sequence[float],
    weights: Sequence[float],
) -> Tensor:
    """``Σ_k w_k ∇S_c(x̄ + α_k (x - x̄))`` with Python-float (float64) ``α_k``, ``w_k``.

    All path points go through the model as one stacked batch (rows are independent in eval mode), so the
    gradient of point k of sample b is row ``k·B + b``.
    """
    batch = x.shape[0]
    points = torch.cat([x_ref + a * (x - x_ref) for a in alphas])
    targets = _as_targets(target, batch).repeat(len(alphas))
    grads = plain_gradient(model, points, targets).view(len(alphas), *x.shape)
    return sum((w * g for w, g in zip(weights, grads, strict=True)), torch.zeros_like(x))


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    baseline: Tensor | None = None,
    steps: int = 100,
) -> Tensor:
    """Right Riemann sum with alphas ``k/m`` computed in float64:

    ``R = (x - x̄) ⊙ (1/m) Σ_{k=1..m} ∇S_c(x̄ + (k/m)(x - x̄))``.
    """
    x_ref = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    alphas = [k / steps for k in range(1, steps + 1)]
    return (x - x_ref) * path_gradient_sum(model, x, target, x_ref, alphas, [1 / steps] * steps)


def integrated_gradients_exact(
    model: nn.Module,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    baseline: Tensor | None = None,
    nodes: int = 200,
) -> Tensor:
    """``R = (x - x̄) ⊙ ∫_0^1 ∇S_c(x̄ + α(x - x̄)) dα`` by ``nodes``-point Gauss-Legendre quadrature
    (nodes ``(t + 1)/2``, weights ``w/2`` mapped from [-1, 1] to [0, 1]).

    Converges to machine precision for smooth (tanh/sigmoid/softplus) networks; for piecewise-linear
    networks it is only as good as any quadrature across kinks.
    """
    x_ref = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    points, weights = np.polynomial.legendre.leggauss(nodes)
    alphas = [0.5 * (float(t) + 1.0) for t in points]
    return (x - x_ref) * path_gradient_sum(model, x, target, x_ref, alphas, [0.5 * float(w) for w in weights])


def plain_gradient(model: nn.Module, x: Tensor, target: int | Sequence[int] | Tensor) -> Tensor:
    """``∂S_c/∂x`` by ordinary autograd (works for any module, not only ``nn.Sequential``)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(target_logits(model, x, target).sum(), x)
    return g


def _window_starts(size: int, window: int, stride: int) -> range:
    """Start indices of full windows along one axis: 0, s, 2s, ... <= size - w."""
    return range(0, size - window + 1, stride)


def _window_slices(shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list[tuple[slice, ...]]:
    """Every full window over a per-sample shape, as index slices (no partial windows at the edge)."""
    starts = [_window_starts(n, w, s) for n, w, s in zip(shape, window, stride, strict=True)]
    return [
        tuple(slice(b, b + w) for b, w in zip(corner, window, strict=True)) for corner in itertools.product(*starts)
    ]


def occlusion(
    model: nn.Module,
    x: Tensor,
    target: int | Sequence[int] | Tensor,
    window: Sequence[int],
    stride: Sequence[int],
    value: float = 0.0,
) -> Tensor:
    """SPEC Occlusion: feature ``i`` gets ``Σ_{windows W ∋ i} (S_c(x) - S_c(x with W := value)) / |W|``.

    ``window`` and ``stride`` are per-sample shapes (no batch axis); only full windows are used.
    """
    with torch.no_grad():
        base = target_logits(model, x, target)
        result = torch.zeros_like(x)
        size = int(np.prod(window))
        for idx in _window_slices(x.shape[1:], window, stride):
            occluded = x.clone()
            occluded[(slice(None), *idx)] = value
            delta = base - target_logits(model, occluded, target)
            result[(slice(None), *idx)] += delta.view(-1, *([1] * len(window))) / size
    return result


def window_counts(shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> Tensor:
    """Number of full windows covering each feature of a per-sample ``shape`` (float64)."""
    counts = torch.zeros(tuple(shape), dtype=torch.float64)
    for idx in _window_slices(shape, window, stride):
        counts[idx] += 1.0
    return counts
